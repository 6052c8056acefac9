//! The weights of a loaded ONNX graph as its products read them: packed
//! for the CPU kernel once at load, or uploaded to the GPU.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::ops::Node;
use super::proto;
use super::value::{DType, Value};
use crate::gpu::{Buffer, Gpu, GpuMatrix};
use crate::kernels::PackedB;

/// The GPU and the weights uploaded to it by initializer name, as stored
/// (`[0]`) and transposed (`[1]`, for `Gemm`s with `transB`), and the
/// other f32 initializers a node the device runs may read (biases, norm
/// weights, masks, scalars), so that no call uploads them again. The CPU
/// copies stay in [`Graph::weights`] for every other use.
#[derive(Debug)]
pub(super) struct GpuWeights {
    pub(super) gpu: Arc<Gpu>,
    matrices: [HashMap<String, GpuMatrix>; 2],
    constants: HashMap<String, Constant>,
}

/// An initializer on the device as a plain buffer.
#[derive(Debug)]
pub(super) struct Constant {
    /// The host copy it was made from (a call's value of that name is
    /// this one: the interpreter never rebinds an initializer's name).
    pub(super) value: Arc<Value>,
    pub(super) buf: Arc<Buffer>,
}

impl GpuWeights {
    /// The resident B of `node`, if it is a `MatMul` or `Gemm` that has one.
    pub(super) fn for_node(&self, node: &proto::NodeProto) -> Option<&GpuMatrix> {
        let (name, transposed) = resident_key(node)?;
        self.matrices[usize::from(transposed)].get(name)
    }

    /// The initializer `name` on the device, if it was uploaded at load.
    pub(super) fn constant(&self, name: &str) -> Option<&Constant> {
        self.constants.get(name)
    }

    pub(super) fn bytes(&self) -> u64 {
        let matrices: u64 = self
            .matrices
            .iter()
            .flat_map(HashMap::values)
            .map(GpuMatrix::bytes)
            .sum();
        let constants: u64 = self
            .constants
            .values()
            .map(|c| c.value.len().max(1) as u64 * 4)
            .sum();
        matrices + constants
    }
}

/// Operators whose f32 operands the device reads as buffers (see
/// `device.rs`): an initializer one of them reads goes up at load.
const READ_ON_DEVICE: &[&str] = &[
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "MatMul",
    "Gemm",
    "Einsum",
    "Conv",
    "ConvTranspose",
    "BatchNormalization",
    "InstanceNormalization",
    "GroupNormalization",
    "Max",
    "Min",
    "PRelu",
    "Equal",
    "Less",
    "LessOrEqual",
    "Greater",
    "GreaterOrEqual",
    "Concat",
    "Where",
    // Its table (an embedding's): the indices are the host's.
    "Gather",
    "LayerNormalization",
    "WeftLayerNorm",
    "WeftAttention",
];

/// Whether input `i` of `node` is one the device path reads on the host
/// (a fused node's epsilon or scale), never as a buffer.
fn read_on_host(node: &proto::NodeProto, i: usize) -> bool {
    matches!(
        (node.op_type.as_str(), i),
        ("WeftLayerNorm", 1) | ("WeftAttention", 6)
    )
}

/// The weight a `MatMul` or `Gemm` node would read from the GPU: its B
/// input, and whether B is used transposed (`Gemm`'s `transB`).
fn resident_key(node: &proto::NodeProto) -> Option<(&str, bool)> {
    let b = node.inputs.get(1).filter(|b| !b.is_empty())?;
    let transposed = match node.op_type.as_str() {
        "MatMul" | "WeftMatMulInteger" => false,
        // Read as the CPU `Gemm` reads it.
        "Gemm" => {
            Node {
                proto: node,
                opset: 0,
            }
            .int("transB", 0)
                != 0
        }
        _ => return None,
    };
    Some((b, transposed))
}

/// The weight a node would read as a packed B on the CPU: the B input of a
/// `MatMul` or `WeftMatMulBias`.
pub(super) fn packed_key(node: &proto::NodeProto) -> Option<&str> {
    match node.op_type.as_str() {
        "MatMul" | "WeftMatMulBias" | "WeftMatMulInteger" => node.inputs.get(1).map(String::as_str),
        _ => None,
    }
}

/// Computes at load each `DequantizeLinear` whose inputs are all weights:
/// its result becomes a weight, so that calls do not dequantise the same
/// table again (a quantised model's embedding tables: 30522 x 384 for
/// MiniLM), and it is held as f32 rather than as the integers in i64s the
/// interpreter holds. One whose inputs do not fit it stays, to fail when
/// it runs with its usual error.
pub(super) fn fold_dequantized_weights(
    nodes: &mut Vec<proto::NodeProto>,
    weights: &mut HashMap<String, Arc<Value>>,
    opset: i64,
) {
    nodes.retain(|node| {
        let ([out], "DequantizeLinear", "") = (
            &node.outputs[..],
            node.op_type.as_str(),
            node.domain.as_str(),
        ) else {
            return true;
        };
        let args: Option<Vec<Option<&Value>>> = node
            .inputs
            .iter()
            .map(|i| match i.as_str() {
                "" => Some(None),
                w => weights.get(w).map(|v| Some(&**v)),
            })
            .collect();
        let Some(args) = args.filter(|a| !a.is_empty()) else {
            return true;
        };
        // An operator that panics on inputs it did not anticipate must not
        // take the load down: the node stays, to fail when it runs.
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            super::ops::run(Node { proto: node, opset }, &args)
        }));
        match run {
            Ok(Ok(mut v)) if v.len() == 1 && !out.is_empty() => {
                weights.insert(out.clone(), Arc::new(v.remove(0)));
                false
            }
            _ => true,
        }
    });
}

/// Widens the constant weights of integer products at load: a
/// `MatMulInteger` whose B is a 2-D integer initializer and whose B zero
/// point (if any) is one too becomes a `WeftMatMulInteger(A, B', a_zp)`,
/// B' the f32 initializer `B - b_zp`, which the f32 kernels read packed
/// (CPU) or resident (GPU) like any `MatMul` weight. An integer B nothing
/// else reads is dropped. (A dynamically quantised transformer's products
/// are all of this form.) Where the product's only reader is a `Cast` to
/// float, the node gives that float tensor itself (`float = 1`) and the
/// `Cast` goes: the integer results are never stored as integers.
pub(super) fn widen_integer_weights(
    nodes: &mut Vec<proto::NodeProto>,
    weights: &mut HashMap<String, Arc<Value>>,
    outputs: &[String],
    shared: &mut LoadCache,
) -> Result<(), crate::NnError> {
    let mut widened: HashMap<(String, String), String> = HashMap::new();
    let mut sources = Vec::new();
    for node in nodes.iter_mut() {
        if node.op_type != "MatMulInteger" || !node.domain.is_empty() {
            continue;
        }
        let input = |i: usize| node.inputs.get(i).filter(|n| !n.is_empty()).cloned();
        let (Some(b), zp) = (input(1), input(3).unwrap_or_default()) else {
            continue;
        };
        let Some(bv) = weights.get(&b) else {
            continue;
        };
        let zv = match zp.as_str() {
            "" => None,
            z => match weights.get(z) {
                Some(v) => Some(Arc::clone(v)),
                None => continue,
            },
        };
        if bv.shape.len() != 2 || !bv.dtype.is_int() {
            continue;
        }
        let key = (b.clone(), zp.clone());
        let name = match widened.get(&key) {
            Some(name) => name.clone(),
            None => {
                let name = format!("weft:widened:{b}:{zp}");
                let at = (
                    Arc::as_ptr(bv) as usize,
                    zv.as_ref().map_or(0, |z| Arc::as_ptr(z) as usize),
                );
                let v = match shared.widened.get(&at) {
                    Some((_, _, v)) => Arc::clone(v),
                    None => {
                        let v = super::ops::widened_weight(bv, zv.as_deref()).map_err(|e| {
                            crate::NnError::new(
                                crate::NnErrorKind::InvalidEncoding,
                                format!("node `{}` (MatMulInteger): {}", node.name, e.message),
                            )
                        })?;
                        let v = Arc::new(v);
                        shared
                            .widened
                            .insert(at, (Arc::clone(bv), zv.clone(), Arc::clone(&v)));
                        v
                    }
                };
                weights.insert(name.clone(), v);
                widened.insert(key, name.clone());
                sources.push(b.clone());
                name
            }
        };
        let a_zp = input(2).unwrap_or_default();
        node.op_type = "WeftMatMulInteger".into();
        node.inputs = vec![node.inputs[0].clone(), name, a_zp];
    }
    fold_casts(nodes, outputs);
    fuse_dynamic_quantize(nodes, outputs);
    for b in sources {
        let read = outputs.contains(&b) || nodes.iter().any(|n| n.inputs.contains(&b));
        if !read {
            weights.remove(&b);
        }
    }
    Ok(())
}

/// Where every reader of a `DynamicQuantizeLinear`'s u8 output is a
/// `WeftMatMulInteger` that takes it as A with its zero point, the readers
/// quantise the f32 input themselves (`quantize = 1`, the scale as a
/// fourth input) and the u8 tensor is never made: the int8 kernel reads
/// the f32 values once, instead of a u8 tensor held in i64s.
fn fuse_dynamic_quantize(nodes: &mut [proto::NodeProto], outputs: &[String]) {
    for i in 0..nodes.len() {
        let dql = &nodes[i];
        let ([x], [y, s, z]) = (&dql.inputs[..], &dql.outputs[..]) else {
            continue;
        };
        if dql.op_type != "DynamicQuantizeLinear"
            || !dql.domain.is_empty()
            || [x, y, s, z].iter().any(|n| n.is_empty())
            || outputs.contains(y)
        {
            continue;
        }
        let readers: Vec<usize> = (i + 1..nodes.len())
            .filter(|&j| nodes[j].inputs.contains(y))
            .collect();
        let fusable = |n: &proto::NodeProto| {
            n.op_type == "WeftMatMulInteger"
                && n.inputs.len() == 3
                && n.inputs[0] == *y
                && n.inputs[2] == *z
                && n.inputs[1] != *y
        };
        if readers.is_empty() || !readers.iter().all(|&j| fusable(&nodes[j])) {
            continue;
        }
        let (x, s) = (x.clone(), s.clone());
        for j in readers {
            let n = &mut nodes[j];
            n.inputs[0] = x.clone();
            n.inputs.push(s.clone());
            n.attrs.push(("quantize".into(), proto::Attr::Int(1)));
        }
        nodes[i].outputs[0] = String::new();
    }
}

/// Folds each `Cast` to float that is the only reader of a
/// `WeftMatMulInteger`'s output into it.
fn fold_casts(nodes: &mut Vec<proto::NodeProto>, outputs: &[String]) {
    let mut i = 0;
    while i < nodes.len() {
        let fold = (nodes[i].op_type == "WeftMatMulInteger").then(|| {
            let out = nodes[i].outputs.first()?;
            if outputs.contains(out) {
                return None;
            }
            let mut readers = nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| n.inputs.contains(out));
            let (j, cast) = readers.next()?;
            let to_float = cast.op_type == "Cast"
                && cast.domain.is_empty()
                && cast.inputs.len() == 1
                && cast
                    .attrs
                    .iter()
                    .any(|(n, a)| n == "to" && *a == proto::Attr::Int(1));
            (readers.next().is_none() && to_float && j > i).then_some(j)
        });
        if let Some(Some(j)) = fold {
            let cast = nodes.remove(j);
            let node = &mut nodes[i];
            node.outputs = cast.outputs;
            node.attrs.push(("float".into(), proto::Attr::Int(1)));
        }
        i += 1;
    }
}

/// What a model's graphs (its main graph, its control-flow subgraphs)
/// share while it loads, by the addresses of the weights they were made
/// from, which it holds (so that no other value takes an address while
/// the model loads): weights packed, and integer weights widened.
#[derive(Default)]
pub(super) struct LoadCache {
    packed: HashMap<usize, (Arc<Value>, Arc<PackedB>)>,
    /// By B's and its zero point's addresses (0: none).
    widened: HashMap<(usize, usize), WidenedFrom>,
}

/// A widened weight and the B and zero point it was made from.
type WidenedFrom = (Arc<Value>, Option<Arc<Value>>, Arc<Value>);

/// Packs every 2-D f32 initializer some `MatMul`/`WeftMatMulBias` reads as
/// B, so that calls do not repack it. A weight that nothing else reads (no
/// other input slot, not a graph output) keeps only its packed form: its
/// entry in `weights` becomes a placeholder of the same shape and no data,
/// so the model does not hold it twice; the rare product the packed form
/// does not suit unpacks it (see `OnnxSession::compute`).
///
/// A weight several of a model's graphs read is packed once (`shared`).
pub(super) fn pack_weights(
    nodes: &[proto::NodeProto],
    weights: &mut HashMap<String, Arc<Value>>,
    outputs: &[String],
    shared: &mut LoadCache,
) -> HashMap<String, Arc<PackedB>> {
    let mut packed = HashMap::new();
    // Weights only integer products read may be packed as int8.
    let float_read: HashSet<&str> = nodes
        .iter()
        .filter(|n| n.op_type != "WeftMatMulInteger")
        .filter_map(packed_key)
        .collect();
    for name in nodes.iter().filter_map(packed_key) {
        if packed.contains_key(name) {
            continue;
        }
        let Some(w) = weights.get(name) else {
            continue;
        };
        // Halves are held as f32 (exact), so they pack as f32 do; the
        // products round their results back to the type.
        if let (super::value::Data::F32(data), DType::F32 | DType::F16 | DType::Bf16, &[k, n]) =
            (&w.data, w.dtype, w.shape.as_slice())
        {
            let integer = w.dtype == DType::F32 && !float_read.contains(name);
            let (_, p) = shared
                .packed
                .entry(Arc::as_ptr(w) as usize)
                .or_insert_with(|| {
                    let p = match integer {
                        true => PackedB::integer(data, k, n),
                        false => PackedB::new(data, k, n),
                    };
                    (Arc::clone(w), Arc::new(p))
                });
            packed.insert(name.to_string(), Arc::clone(p));
        }
    }
    for (name, p) in &packed {
        let only_packed = !outputs.contains(name)
            && nodes.iter().all(|node| {
                node.inputs
                    .iter()
                    .enumerate()
                    .all(|(i, input)| input != name || (i == 1 && packed_key(node).is_some()))
            });
        if only_packed {
            weights.insert(
                name.clone(),
                Arc::new(Value::f32(vec![p.k(), p.n()], Vec::new())),
            );
        }
    }
    packed
}

/// Uploads every 2-D f32 initializer some `MatMul`/`Gemm` reads as B. One
/// that fails to upload (too large for the device, out of memory) stays
/// on the CPU, as do the products that use it.
pub(super) fn upload_weights(
    gpu: Arc<Gpu>,
    nodes: &[proto::NodeProto],
    weights: &HashMap<String, Arc<Value>>,
) -> GpuWeights {
    let mut matrices = [HashMap::new(), HashMap::new()];
    for node in nodes {
        let Some((name, transposed)) = resident_key(node) else {
            continue;
        };
        if matrices[usize::from(transposed)].contains_key(name) {
            continue;
        }
        let Some(w) = weights.get(name) else {
            continue;
        };
        // (Halves are held in f32: they go up as f32.)
        let (super::value::Data::F32(data), DType::F32 | DType::F16 | DType::Bf16, &[rows, cols]) =
            (&w.data, w.dtype, w.shape.as_slice())
        else {
            continue;
        };
        let uploaded = if transposed {
            let mut t = vec![0.0; data.len()];
            for (r, row) in data.chunks_exact(cols.max(1)).enumerate() {
                for (c, &v) in row.iter().enumerate() {
                    t[c * rows + r] = v;
                }
            }
            gpu.upload(&t, cols, rows)
        } else {
            gpu.upload(data, rows, cols)
        };
        match uploaded {
            Ok(m) => {
                matrices[usize::from(transposed)].insert(name.to_string(), m);
            }
            Err(e) => eprintln!(
                "weft-nn: weight `{name}` stays on the CPU (node `{}`): {e}",
                node.name
            ),
        }
    }
    let mut constants = HashMap::new();
    // Only where calls will keep values on the device (`device.rs`).
    let resident = super::device::enabled() && gpu.encoder_kernels_compile().is_ok();
    for node in nodes
        .iter()
        .filter(|n| resident && READ_ON_DEVICE.contains(&n.op_type.as_str()))
    {
        // A product's resident B is there already, as a matrix.
        let b = resident_key(node)
            .filter(|(name, t)| matrices[usize::from(*t)].contains_key(*name))
            .map(|(name, _)| name);
        // A table that is also a product's weight (tied embeddings) is
        // there once, as the matrix: its lookups stay on the CPU.
        let tied = |name: &String| {
            node.op_type == "Gather" && matrices.iter().any(|m| m.contains_key(name))
        };
        for (i, name) in node.inputs.iter().enumerate() {
            if name.is_empty()
                || Some(name.as_str()) == b
                || read_on_host(node, i)
                || constants.contains_key(name)
                || tied(name)
            {
                continue;
            }
            let Some(v) = weights.get(name) else {
                continue;
            };
            let (super::value::Data::F32(data), DType::F32) = (&v.data, v.dtype) else {
                continue;
            };
            match gpu.constant(data, "weft-nn ONNX constant") {
                Ok(buf) => {
                    constants.insert(
                        name.clone(),
                        Constant {
                            value: Arc::clone(v),
                            buf: Arc::new(buf),
                        },
                    );
                }
                // The call uploads it, or runs the node on the CPU.
                Err(e) => eprintln!(
                    "weft-nn: constant `{name}` stays on the CPU (node `{}`): {e}",
                    node.name
                ),
            }
        }
    }
    GpuWeights {
        gpu,
        matrices,
        constants,
    }
}
