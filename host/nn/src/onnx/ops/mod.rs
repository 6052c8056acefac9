//! The operators: a dispatch table from `op_type` to its implementation,
//! and the attribute and input accessors they share.

mod arrange;
mod attention;
mod binary;
mod boxes;
mod deform;
pub(crate) mod einsum;
pub(crate) use shape::unpermuted;
mod elementwise;
pub(super) mod fused;
pub(super) use nn::{Window, conv_transpose_window, conv_window, pool_window};
pub(super) use reduce::reduce_axes;
pub(super) use shape::{broadcast_strides, split_sizes, strided_view, view_shape};
mod index;
mod loss;
mod matmul;
mod ml;
mod ngrams;
mod nn;
mod optim;
pub(crate) use ml::{Forest, ML, forest, run_forest};
pub(crate) use optim::TRAINING;
mod quant;
mod random;
mod reduce;
mod resize;
mod rnn;
pub(crate) use resize::resize_plan;
mod sample;
mod sequence;
mod shape;
mod signal;
mod spectral;
mod unpool;

use super::proto::{Attr, NodeProto};
use super::value::{DType, Value, fail, round_to_half};
use crate::NnError;

/// Every operator [`run`] implements in the default domain, but for the
/// sequence ones ([`supported`] adds those).
const SUPPORTED: &[&str] = &[
    // elementwise.rs
    "Abs",
    "Acos",
    "Acosh",
    "Add",
    "And",
    "Asin",
    "Asinh",
    "Atan",
    "Atanh",
    "BitShift",
    "BitwiseAnd",
    "BitwiseNot",
    "BitwiseOr",
    "BitwiseXor",
    "Cast",
    "CastLike",
    "Ceil",
    "Celu",
    "Clip",
    "Cos",
    "Cosh",
    "Div",
    "Elu",
    "Equal",
    "Erf",
    "Exp",
    "Floor",
    "Gelu",
    "Greater",
    "GreaterOrEqual",
    "HardSigmoid",
    "HardSwish",
    "IsInf",
    "IsNaN",
    "LeakyRelu",
    "Less",
    "LessOrEqual",
    "Log",
    "Max",
    "Mean",
    "Min",
    "Mish",
    "Mod",
    "Mul",
    "Neg",
    "Not",
    "Or",
    "Pow",
    "PRelu",
    "Reciprocal",
    "Relu",
    "Round",
    "Selu",
    "Shrink",
    "Sigmoid",
    "Sign",
    "Sin",
    "Sinh",
    "Softplus",
    "Softsign",
    "Sqrt",
    "Sub",
    "Sum",
    "Swish",
    "Tan",
    "Tanh",
    "ThresholdedRelu",
    "Where",
    "Xor",
    // shape.rs
    "Compress",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "CumSum",
    "DepthToSpace",
    "Dropout",
    "Expand",
    "EyeLike",
    "Flatten",
    "Gather",
    "GatherElements",
    "GatherND",
    "Identity",
    "NonZero",
    "OneHot",
    "Pad",
    "Range",
    "Reshape",
    "ScatterElements",
    "ScatterND",
    "Shape",
    "Size",
    "Slice",
    "SpaceToDepth",
    "Split",
    "Squeeze",
    "Tile",
    "Transpose",
    "Trilu",
    "Unsqueeze",
    // reduce.rs
    "ArgMax",
    "ArgMin",
    "Hardmax",
    "InstanceNormalization",
    "LayerNormalization",
    "LogSoftmax",
    "LpNormalization",
    "MeanVarianceNormalization",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceMax",
    "ReduceMean",
    "ReduceMin",
    "ReduceProd",
    "ReduceSum",
    "ReduceSumSquare",
    "RMSNormalization",
    "Softmax",
    "TopK",
    // nn.rs
    "AveragePool",
    "BatchNormalization",
    "Conv",
    "Gemm",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "LRN",
    "MatMul",
    "MaxPool",
    "Resize",
    "Upsample",
    "ConvTranspose",
    "LpPool",
    "GroupNormalization",
    // loss.rs, signal.rs
    "NegativeLogLikelihoodLoss",
    "SoftmaxCrossEntropyLoss",
    "HannWindow",
    "HammingWindow",
    "BlackmanWindow",
    "Det",
    // spectral.rs
    "DFT",
    "STFT",
    "MelWeightMatrix",
    // unpool.rs, boxes.rs, deform.rs
    "Col2Im",
    "MaxUnpool",
    "RoiAlign",
    "DeformConv",
    // ngrams.rs
    "TfIdfVectorizer",
    // random.rs
    "RandomUniform",
    "RandomNormal",
    "RandomUniformLike",
    "RandomNormalLike",
    "Bernoulli",
    "Multinomial",
    "ReverseSequence",
    "Scatter",
    // attention.rs
    "Attention",
    // quant.rs
    "DequantizeLinear",
    "QuantizeLinear",
    "DynamicQuantizeLinear",
    "RotaryEmbedding",
    "CenterCropPad",
    "Einsum",
    "GridSample",
    "NonMaxSuppression",
    "QLinearMatMul",
    "MatMulInteger",
    "ConvInteger",
    "QLinearConv",
    "TensorScatter",
    "If",
    "Loop",
    "Scan",
    "RNN",
    "GRU",
    "LSTM",
    "AffineGrid",
    "Unique",
];

/// Whether [`run`] implements `op` of the default domain.
pub(crate) fn supported(op: &str) -> bool {
    SUPPORTED.contains(&op) || sequence::OPS.contains(&op)
}

/// Whether `op` may be given values that are not tensors (sequences and
/// absent optionals): the sequence and optional operators, `Identity`
/// and control flow; every other operator is refused them before it runs.
pub(crate) fn takes_non_tensors(op: &str) -> bool {
    sequence::OPS.contains(&op) || matches!(op, "Identity" | "If" | "Loop" | "Scan")
}

/// A node being run: its proto and the model's opset.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Node<'a> {
    pub(crate) proto: &'a NodeProto,
    pub(crate) opset: i64,
}

impl Node<'_> {
    fn attr(&self, name: &str) -> Option<&Attr> {
        self.proto
            .attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a)
    }
    pub(crate) fn int(&self, name: &str, default: i64) -> i64 {
        match self.attr(name) {
            Some(Attr::Int(i)) => *i,
            Some(Attr::Float(f)) => *f as i64,
            _ => default,
        }
    }
    pub(crate) fn float(&self, name: &str, default: f32) -> f32 {
        match self.attr(name) {
            Some(Attr::Float(f)) => *f,
            Some(Attr::Int(i)) => *i as f32,
            _ => default,
        }
    }
    pub(crate) fn ints(&self, name: &str) -> Option<Vec<i64>> {
        match self.attr(name) {
            Some(Attr::Ints(v)) => Some(v.clone()),
            Some(Attr::Int(i)) => Some(vec![*i]),
            _ => None,
        }
    }
    pub(crate) fn floats(&self, name: &str) -> Option<Vec<f32>> {
        match self.attr(name) {
            Some(Attr::Floats(v)) => Some(v.clone()),
            _ => None,
        }
    }
    pub(crate) fn strings(&self, name: &str) -> Option<Vec<String>> {
        match self.attr(name) {
            Some(Attr::Strings(v)) => Some(
                v.iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect(),
            ),
            _ => None,
        }
    }
    pub(crate) fn string(&self, name: &str, default: &str) -> String {
        match self.attr(name) {
            Some(Attr::Str(s)) => String::from_utf8_lossy(s).into_owned(),
            _ => default.to_string(),
        }
    }
    pub(crate) fn tensor(&self, name: &str) -> Option<&Value> {
        match self.attr(name) {
            Some(Attr::Tensor(t)) => Some(t),
            _ => None,
        }
    }
    pub(crate) fn has(&self, name: &str) -> bool {
        self.attr(name).is_some()
    }
}

/// Input `i`, which must be present.
pub(crate) fn req<'a>(inputs: &[Option<&'a Value>], i: usize) -> Result<&'a Value, NnError> {
    inputs
        .get(i)
        .copied()
        .flatten()
        .ok_or_else(|| fail(format!("input {i} is required")))
}

/// Input `i` if present.
pub(crate) fn opt<'a>(inputs: &[Option<&'a Value>], i: usize) -> Option<&'a Value> {
    inputs.get(i).copied().flatten()
}

/// A possibly negative axis resolved against `rank`.
pub(crate) fn axis(a: i64, rank: usize) -> Result<usize, NnError> {
    let r = rank as i64;
    if a < -r || a >= r.max(1) {
        return Err(fail(format!("axis {a} is out of range for rank {rank}")));
    }
    Ok(if a < 0 { (a + r) as usize } else { a as usize })
}

/// Whether [`run_owned`] can reuse an input's buffer for `op_type`.
pub(crate) fn in_place(op_type: &str) -> bool {
    elementwise::IN_PLACE.contains(&op_type) || fused::IN_PLACE.contains(&op_type)
}

/// [`run`] with input `i` handed over (its slot in `inputs` is `None`):
/// the graph reads it no more, so its buffer may hold the output.
pub(crate) fn run_owned(
    node: Node<'_>,
    inputs: &[Option<&Value>],
    i: usize,
    v: Value,
) -> Result<Vec<Value>, NnError> {
    let op = node.proto.op_type.as_str();
    if fused::IN_PLACE.contains(&op) {
        if i == 0 && matches!(v.dtype, DType::F32 | DType::F16 | DType::Bf16) {
            let dtype = v.dtype;
            let mut out = fused::run(op, inputs, v)?;
            round_to_half(&mut out, dtype);
            return Ok(vec![out]);
        }
        let mut args = inputs.to_vec();
        args[i] = Some(&v);
        return run(node, &args);
    }
    elementwise::run_owned(node, inputs, i, v).map(|v| vec![v])
}

/// Runs a `MatMul` or `Gemm` whose B is `w`, resident on `gpu`; `None`
/// when this node or its inputs do not suit the GPU path (run it with
/// [`run`] then).
pub(crate) fn run_resident(
    node: Node<'_>,
    inputs: &[Option<&Value>],
    gpu: &crate::gpu::Gpu,
    w: &crate::gpu::GpuMatrix,
) -> Option<Result<Vec<Value>, NnError>> {
    let out = match node.proto.op_type.as_str() {
        "MatMul" => matmul::matmul_resident(inputs, gpu, w),
        "Gemm" => matmul::gemm_resident(node, inputs, gpu, w),
        "WeftMatMulInteger" => Some(quant::matmul_widened(node, inputs, |a| {
            matmul::matmul_resident(&[Some(a)], gpu, w)
        })),
        _ => None,
    };
    out.map(|r| r.map(|v| vec![v]))
}

/// Runs a `MatMul` or `WeftMatMulBias` whose B is `w`, packed at load;
/// `None` when this node or its inputs do not suit (run it with [`run`]).
pub(crate) fn run_packed(
    node: Node<'_>,
    inputs: &[Option<&Value>],
    w: &crate::kernels::PackedB,
) -> Option<Result<Vec<Value>, NnError>> {
    let out = match node.proto.op_type.as_str() {
        "MatMul" => matmul::matmul_packed(inputs, w)?,
        "WeftMatMulBias" => fused::widened(inputs, |args| fused::matmul_bias(args, Some(w))),
        // Only where the packed form suits A: the B it is given otherwise
        // may be a placeholder.
        "WeftMatMulInteger" => {
            let a = opt(inputs, 0)?;
            if a.shape.len() < 2 || a.shape.last() != Some(&w.k()) {
                return None;
            }
            if let Some(w) = w.int8() {
                return quant::matmul_int8(node, inputs, w).map(|r| r.map(|v| vec![v]));
            }
            quant::matmul_widened(node, inputs, |a| matmul::matmul_packed(&[Some(a)], w))
        }
        _ => return None,
    };
    Some(out.map(|v| vec![v]))
}

/// A `MatMulInteger`'s constant B as f32s less its zero point (per
/// tensor or per column): what `WeftMatMulInteger` reads.
pub(crate) fn widened_weight(b: &Value, zp: Option<&Value>) -> Result<Value, NnError> {
    quant::less_zero_point(b, zp, 1)
}

pub(crate) use shape::{index_axis, stack};

/// Runs one node on its inputs (`None` for omitted optional inputs).
pub(crate) fn run(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, NnError> {
    let op = node.proto.op_type.as_str();
    let one = |v: Value| Ok(vec![v]);
    if sequence::OPS.contains(&op) {
        return sequence::run(node, inputs);
    }
    match op {
        "Constant" => one(shape::constant(node)?),
        "WeftGelu" | "WeftLayerNorm" => one(fused::widened(inputs, |args| {
            fused::run(op, args, req(args, 0)?.clone())
        })?),
        "WeftMatMulBias" => one(fused::widened(inputs, |args| {
            fused::matmul_bias(args, None)
        })?),
        "WeftAttention" => one(fused::widened(inputs, fused::attention)?),
        "Identity" => one(req(inputs, 0)?.clone()),
        "Dropout" => shape::dropout(node, inputs),
        "Shape" => one(shape::shape(node, inputs)?),
        "Size" => one(Value::i64(vec![], vec![req(inputs, 0)?.len() as i64])),
        "Reshape" => one(shape::reshape(node, inputs)?),
        "Flatten" => one(shape::flatten(node, inputs)?),
        "Squeeze" => one(shape::squeeze(node, inputs)?),
        "Unsqueeze" => one(shape::unsqueeze(node, inputs)?),
        "Transpose" => one(shape::transpose(node, inputs)?),
        "Concat" => one(shape::concat(node, inputs)?),
        "Split" => shape::split(node, inputs),
        "Slice" => one(shape::strided_copy(node, inputs)?),
        "Gather" => one(index::gather(node, inputs)?),
        "GatherElements" => one(index::gather_elements(node, inputs)?),
        "GatherND" => one(index::gather_nd(node, inputs)?),
        "ScatterElements" | "Scatter" => one(index::scatter_elements(node, inputs)?),
        "ReverseSequence" => one(arrange::reverse_sequence(node, inputs)?),
        "ScatterND" => one(index::scatter_nd(node, inputs)?),
        "Expand" => one(shape::strided_copy(node, inputs)?),
        "Tile" => one(shape::tile(inputs)?),
        "ConstantOfShape" => one(arrange::constant_of_shape(node, inputs)?),
        "Range" => one(arrange::range(inputs)?),
        "Pad" => one(arrange::pad(node, inputs)?),
        "EyeLike" => one(arrange::eye_like(node, inputs)?),
        "Trilu" => one(arrange::trilu(node, inputs)?),
        "OneHot" => one(arrange::one_hot(node, inputs)?),
        "NonZero" => one(arrange::non_zero(inputs)?),
        "Compress" => one(arrange::compress(node, inputs)?),
        "CumSum" => one(arrange::cumsum(node, inputs)?),
        "DepthToSpace" | "SpaceToDepth" => one(arrange::depth_space(node, inputs)?),
        "ArgMax" | "ArgMin" => one(reduce::arg(node, inputs)?),
        "Softmax" | "LogSoftmax" | "Hardmax" => one(reduce::softmax(node, inputs)?),
        "LayerNormalization" => reduce::layer_norm(node, inputs),
        "RMSNormalization" => one(reduce::rms_norm(node, inputs)?),
        "InstanceNormalization" => one(reduce::instance_norm(node, inputs)?),
        "MeanVarianceNormalization" => one(reduce::mvn(node, inputs)?),
        "LpNormalization" => one(reduce::lp_norm(node, inputs)?),
        "TopK" => reduce::top_k(node, inputs),
        r if r.starts_with("Reduce") => one(reduce::reduce(node, inputs)?),
        "MatMul" => one(matmul::matmul(inputs)?),
        "Gemm" => one(matmul::gemm(node, inputs)?),
        "Conv" => one(nn::conv(node, inputs)?),
        "MaxPool" | "AveragePool" | "LpPool" => nn::pool(node, inputs),
        "ConvTranspose" => one(nn::conv_transpose(node, inputs)?),
        "GroupNormalization" => one(reduce::group_norm(node, inputs)?),
        "NegativeLogLikelihoodLoss" => one(loss::nll_loss(node, inputs)?),
        "SoftmaxCrossEntropyLoss" => loss::softmax_cross_entropy(node, inputs),
        "HannWindow" | "HammingWindow" | "BlackmanWindow" => one(signal::window(node, inputs)?),
        "Det" => one(signal::det(inputs)?),
        "DFT" => one(spectral::dft(node, inputs)?),
        "STFT" => one(spectral::stft(node, inputs)?),
        "MelWeightMatrix" => one(spectral::mel_weight_matrix(node, inputs)?),
        "Col2Im" => one(unpool::col2im(node, inputs)?),
        "RandomUniform" | "RandomNormal" | "RandomUniformLike" | "RandomNormalLike"
        | "Bernoulli" | "Multinomial" => one(random::run(node, inputs)?),
        "TfIdfVectorizer" => one(ngrams::tfidf(node, inputs)?),
        "Adagrad" | "Adam" | "Momentum" => optim::step(node, inputs),
        "Binarizer" | "ArrayFeatureExtractor" | "TreeEnsemble" | "TreeEnsembleRegressor" => {
            one(ml::run(node, inputs)?)
        }
        "MaxUnpool" => one(unpool::max_unpool(node, inputs)?),
        "RoiAlign" => one(boxes::roi_align(node, inputs)?),
        "DeformConv" => one(deform::deform_conv(node, inputs)?),
        "Attention" => attention::attention(node, inputs),
        "DequantizeLinear" => one(quant::dequantize(node, inputs)?),
        "QuantizeLinear" => one(quant::quantize(node, inputs)?),
        "DynamicQuantizeLinear" => quant::dynamic_quantize(node, inputs),
        "RotaryEmbedding" => attention::rotary(node, inputs),
        "TensorScatter" => one(attention::tensor_scatter(node, inputs)?),
        "RNN" | "GRU" | "LSTM" => rnn::recurrent(node, inputs),
        "CenterCropPad" => one(arrange::center_crop_pad(node, inputs)?),
        "Einsum" => one(einsum::einsum(node, inputs)?),
        "GridSample" => one(sample::grid_sample(node, inputs)?),
        "AffineGrid" => one(sample::affine_grid(node, inputs)?),
        "NonMaxSuppression" => one(boxes::non_max_suppression(node, inputs)?),
        "QLinearMatMul" => one(quant::qlinear_matmul(inputs)?),
        "MatMulInteger" => one(quant::matmul_integer(inputs)?),
        "WeftMatMulInteger" => one(quant::matmul_widened(node, inputs, |_| None)?),
        "ConvInteger" => one(quant::conv_integer(node, inputs)?),
        "QLinearConv" => one(quant::qlinear_conv(node, inputs)?),
        "Unique" => arrange::unique(node, inputs),
        "GlobalAveragePool" | "GlobalMaxPool" => one(nn::global_pool(node, inputs)?),
        "BatchNormalization" => nn::batch_norm(node, inputs),
        "LRN" => one(nn::lrn(node, inputs)?),
        "Resize" | "Upsample" => one(resize::resize(node, inputs)?),
        _ => elementwise::run(node, inputs).map(|v| vec![v]),
    }
}
