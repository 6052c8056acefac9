//! An ONNX call on a model loaded for a GPU keeps its activations there.
//!
//! Nodes with a device kernel are recorded into one [`Program`] instead of
//! run: `MatMul` and `Gemm` by a resident weight, batched `MatMul` of
//! two activations and `Einsum` of one or two operands (`products.rs`), `Add`/`Sub`/`Mul`/`Div`/`Pow` and
//! two-input `Max`/`Min`/`PRelu` (a row or scalar operand at once, any
//! other broadcast after a strided copy), `Relu`, `Sigmoid`, `Tanh`,
//! `Erf`, `Gelu`, `Exp`, `Sqrt`, `Neg`, `Reciprocal`, `Abs`, `Log`, `Cos`,
//! `Sin`, `Clip`, the other activations of CNNs (`LeakyRelu` .. `Swish`:
//! [`UnaryOp`]) and `Floor`/`Ceil`/`Round`/`Sign`, every `Reduce*` over
//! any axes, `Softmax` and `LogSoftmax` over any
//! axis, `LayerNormalization` over the last axis (so RMSNorm as exporters write it stays there), a CNN's `Conv`,
//! `ConvTranspose`, `MaxPool`, `AveragePool` and `LpPool` (over one, two
//! or three spatial axes), global pools, inference `BatchNormalization`,
//! and `InstanceNormalization` and `GroupNormalization` (over one or two
//! spatial axes) (`cnn.rs`), `Where` and `Gather`
//! (host indices; of a value on the device or of a table uploaded at
//! load) (`select.rs`), the comparisons (`Equal`, `Less`, `LessOrEqual`,
//! `Greater`, `GreaterOrEqual`), `And`, `Or`, `Xor`, `Not`, `IsNaN`,
//! `IsInf` and a `Cast` to bool, which give bools, the fused
//! `WeftLayerNorm`, `WeftGelu` and `WeftAttention`, `Transpose`, `Slice`,
//! `Expand`, `Tile`, `Concat`, `Split` and a constant `Pad` as strided
//! copies, an `edge`, `reflect` or `wrap` `Pad` as a gather, and `Resize`
//! (`layout.rs`), and `Reshape`, `Identity`, `Flatten`, `Squeeze`,
//! `Unsqueeze`, an inference `Dropout` and a `Cast` to f32 (new names
//! for the same buffer); `Shape` and `Size` of a device value are answered from
//! its shape, with nothing read back (`views.rs`).
//!
//! A bool on the device is held as 1.0 or 0.0 in an f32 buffer and
//! marked as a bool ([`Dev::is_bool`]): the logical ops, `Where`'s
//! condition (and bool branches), `Cast` (to f32 it is a new name), the
//! copies `Transpose`, `Slice`, `Expand`, `Tile`, `Concat` and `Gather`
//! (`TAKES_BOOLS`) and the views read it there, and it comes back to the host as
//! a bool. Any other node that reads one runs on the CPU.
//!
//! A node is recorded when one of its data inputs is already on the
//! device (or, for a product or a `Conv`, whenever its weight is; for a
//! `Gather`, whenever its table went up at load); the
//! call's f32 inputs are, from the start (`hold_inputs`). The f32
//! initializers such nodes read (biases, norm weights, scalars) went up
//! once at load with the weights (`weights.rs`); other host operands (a
//! mask computed on the CPU, the first activations) go up with the
//! submission. Any other node runs on the CPU as before, after what it
//! reads from the device is brought back — which submits what was
//! recorded so far. A transformer encoder such as MiniLM thus runs its
//! embedding lookups (`Gather` of a table uploaded at load) and every
//! layer on the device, and reads back only its output: one round trip per call instead of one per product
//! (its attention fused or, as exporters write it, not).
//! A node the device kernels do not cover exactly (an unusual broadcast,
//! an operand that is neither f32 nor, where bools are read, a bool)
//! runs on the CPU.
//! `WEFT_NN_ONNX_RESIDENT=0` turns this off: each product then makes its
//! own round trip (to compare, or to rule this path out).

use std::collections::HashMap;
use std::sync::Arc;

use super::ops::{Node, fused};
use super::proto::NodeProto;
use super::value::{DType, Data, Value, broadcast_shape};
use super::weights::GpuWeights;
use crate::gpu::{BinaryOp, Buffer, EncoderAttention, Gpu, Program, UnaryOp};
use crate::{NnError, NnErrorKind};

/// Whether calls keep their activations on the device
/// (`WEFT_NN_ONNX_RESIDENT` unset or not `0`; read once).
pub(super) fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("WEFT_NN_ONNX_RESIDENT").is_none_or(|v| v != "0"))
}

/// A value on the device: f32, row-major; a bool is 1 or 0.
#[derive(Clone)]
struct Dev {
    buf: Arc<Buffer>,
    shape: Vec<usize>,
    /// Whether it is a bool (what comparisons give and `Where` reads).
    is_bool: bool,
}

impl Dev {
    /// An f32 value.
    fn new(buf: Arc<Buffer>, shape: Vec<usize>) -> Self {
        Self {
            buf,
            shape,
            is_bool: false,
        }
    }

    fn len(&self) -> usize {
        self.shape.iter().product()
    }
}

/// The operand a recorded node reads: on the device already, or a host
/// value (and its name) to upload.
enum Operand<'v> {
    Dev(Dev),
    Host(&'v str, &'v Value),
}

impl Operand<'_> {
    fn shape(&self) -> &[usize] {
        match self {
            Self::Dev(d) => &d.shape,
            Self::Host(_, v) => &v.shape,
        }
    }
}

/// The device side of one call; see the module docs.
pub(super) struct OnDevice<'g> {
    gpu: &'g Gpu,
    weights: &'g GpuWeights,
    /// What is recorded and not yet submitted.
    program: Option<Program<'g>>,
    /// The values on the device, by name.
    values: HashMap<String, Dev>,
    /// Host values uploaded this call, by name (a mask read by every
    /// layer goes up once).
    uploaded: HashMap<String, Dev>,
    /// Bytes of the buffers made since the last submission: the steps
    /// recorded hold them until it runs.
    pending: u64,
}

/// Buffer bytes past which what is recorded is submitted (without reading
/// anything back), so that the buffers of values no longer read are freed
/// before a long call makes more; at most one buffer's worth.
const PENDING_BYTES: u64 = 256 << 20;

impl<'g> OnDevice<'g> {
    /// `None` where the device cannot run the encoder kernels: products
    /// then make their own round trips.
    pub(super) fn new(weights: &'g GpuWeights) -> Option<Self> {
        weights.gpu.encoder_kernels_compile().ok()?;
        weights.gpu.program().ok()?;
        Some(Self {
            gpu: &weights.gpu,
            weights,
            program: None,
            values: HashMap::new(),
            uploaded: HashMap::new(),
            pending: 0,
        })
    }

    /// Puts the call's f32 inputs named in `names` on the device (they go
    /// up with the first submission), so that what reads them runs there
    /// from the first node on; their host copies stay for the nodes the
    /// CPU runs, which thus read nothing back. (An input only such nodes
    /// read costs its upload: small beside the products that follow.)
    pub(super) fn hold_inputs<'n>(
        &mut self,
        names: impl IntoIterator<Item = &'n str>,
        host: &HashMap<&str, Arc<Value>>,
    ) -> Result<(), NnError> {
        for name in names {
            if let Some(op @ Operand::Host(_, v)) = self.operand(name, host)
                && v.len() > 0
            {
                // (One the device has no room for stays on the host.)
                match self.up(op) {
                    Ok(d) => drop(self.values.insert(name.to_string(), d)),
                    Err(e) if e.kind == NnErrorKind::TooLarge => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Whether `name` is on the device.
    pub(super) fn holds(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// `node`'s first input, if it is on the device.
    fn first_input(&self, node: Node<'_>) -> Option<Dev> {
        self.values.get(input(node.proto, 0)?).cloned()
    }

    /// Forgets `name` (the call no longer reads it).
    pub(super) fn free(&mut self, name: &str) {
        self.values.remove(name);
        self.uploaded.remove(name);
    }

    fn program(&mut self) -> Result<&mut Program<'g>, NnError> {
        if self.program.is_none() {
            self.program = Some(self.gpu.program()?);
        }
        Ok(self.program.as_mut().expect("just made"))
    }

    fn buffer(&mut self, floats: usize, label: &str) -> Result<Arc<Buffer>, NnError> {
        let buf = self.gpu.buffer(floats, label)?;
        self.pending += floats as u64 * 4;
        Ok(Arc::new(buf))
    }

    /// Submits what is recorded and waits for it, reading nothing back.
    fn submit(&mut self) -> Result<(), NnError> {
        self.pending = 0;
        match self.program.take() {
            Some(p) => p.run_reads(&[]).map(drop),
            None => Ok(()),
        }
    }

    /// `name` as an f32 on the device, or the host f32 to upload (`None`:
    /// not one the device path takes, a bool among them).
    fn operand<'v>(
        &self,
        name: &'v str,
        host: &'v HashMap<&str, Arc<Value>>,
    ) -> Option<Operand<'v>> {
        if let Some(d) = self.values.get(name) {
            return (!d.is_bool).then(|| Operand::Dev(d.clone()));
        }
        let v = host.get(name)?;
        (matches!((&v.data, v.dtype), (Data::F32(_), DType::F32)) && self.fits(v.len()))
            .then_some(Operand::Host(name, v))
    }

    /// `name` as a bool on the device, or the host bool to upload (`None`:
    /// not a bool, or one too large for a buffer); [`OnDevice::operand`]
    /// is its f32 twin.
    fn logical_operand<'v>(
        &self,
        name: &'v str,
        host: &'v HashMap<&str, Arc<Value>>,
    ) -> Option<Operand<'v>> {
        if let Some(d) = self.values.get(name) {
            return d.is_bool.then(|| Operand::Dev(d.clone()));
        }
        let v = host.get(name)?;
        (v.dtype == DType::Bool && self.fits(v.len())).then_some(Operand::Host(name, v))
    }

    /// Whether one buffer may hold `floats` (a larger value stays on the
    /// CPU, whose product path splits it).
    fn fits(&self, floats: usize) -> bool {
        (floats as u64).saturating_mul(4) <= self.gpu.max_buffer()
    }

    /// A one-float buffer holding `v`, written with the submission.
    fn scalar(&mut self, v: f32) -> Result<Dev, NnError> {
        let buf = self.buffer(1, "weft-nn ONNX scalar")?;
        self.program()?.write(&buf, vec![v]);
        Ok(Dev::new(buf, vec![]))
    }

    /// The initializer `name` (whose value is `v`) as uploaded at load,
    /// if it was.
    fn uploaded_at_load(&self, name: &str, v: &Value) -> Option<Dev> {
        let c = self
            .weights
            .constant(name)
            .filter(|c| std::ptr::eq(&*c.value, v))?;
        Some(Dev::new(Arc::clone(&c.buf), v.shape.clone()))
    }

    /// The operand on the device, uploading a host one with the submission.
    fn up(&mut self, op: Operand<'_>) -> Result<Dev, NnError> {
        match op {
            Operand::Dev(d) => Ok(d),
            Operand::Host(name, v) => {
                if let Some(d) = self.uploaded.get(name) {
                    return Ok(d.clone());
                }
                if let Some(d) = self.uploaded_at_load(name, v) {
                    return Ok(d);
                }
                // (A bool as 1s and 0s.)
                let (data, is_bool) = match &v.data {
                    Data::F32(data) => (data.clone(), false),
                    Data::Bool(b) => (b.iter().map(|&b| f32::from(u8::from(b))).collect(), true),
                    _ => unreachable!("operands are f32 or bool"),
                };
                let buf = self.buffer(data.len(), "weft-nn ONNX input")?;
                self.program()?.write(&buf, data);
                let d = Dev {
                    buf,
                    shape: v.shape.clone(),
                    is_bool,
                };
                self.uploaded.insert(name.to_string(), d.clone());
                Ok(d)
            }
        }
    }

    /// Records `node` on the device if it has a kernel there that suits
    /// its inputs (see the module docs): `None` to run it on the CPU, as a
    /// node is when the device has no memory left for it.
    pub(super) fn record(
        &mut self,
        node: Node<'_>,
        host: &HashMap<&str, Arc<Value>>,
    ) -> Option<Result<(), NnError>> {
        if self.pending > PENDING_BYTES.min(self.gpu.max_buffer())
            && let Err(e) = self.submit()
        {
            return Some(Err(e));
        }
        match self.record_node(node, host) {
            Some(Err(e)) if e.kind == NnErrorKind::TooLarge => None,
            recorded => recorded,
        }
    }

    fn record_node(
        &mut self,
        node: Node<'_>,
        host: &HashMap<&str, Arc<Value>>,
    ) -> Option<Result<(), NnError>> {
        let p = node.proto;
        let name = |i: usize| input(p, i);
        let on_device = |i: usize| name(i).is_some_and(|n| self.holds(n));
        let is_bool = |i: usize| {
            name(i)
                .and_then(|n| self.values.get(n))
                .is_some_and(|d| d.is_bool)
        };
        // A bool on the device is read only by what takes bools (and the
        // copies that move any value); other nodes run on the CPU, as an
        // ill-typed one does, which says why.
        let reads_bool = (0..p.inputs.len()).any(is_bool);
        if reads_bool && !TAKES_BOOLS.contains(&p.op_type.as_str()) {
            return None;
        }
        let gives_bool = match p.op_type.as_str() {
            // (Recorded only to bool.)
            "Cast" => true,
            "Where" => is_bool(1),
            op => {
                BinaryOp::of(op).is_some_and(BinaryOp::gives_bool)
                    || UnaryOp::of(op, String::new).is_some_and(UnaryOp::gives_bool)
                    || reads_bool
            }
        };
        let out = match p.op_type.as_str() {
            "MatMul" if self.weights.for_node(p).is_none() => {
                (on_device(0) || on_device(1)).then_some(())?;
                self.product_of_two(node, host)
            }
            "Gemm" => self.gemm(node, host),
            "Einsum" if on_device(0) || on_device(1) => self.einsum(node, host),
            "Transpose" | "Slice" | "Expand" if on_device(0) => self.strided(node, host),
            "Concat" if p.inputs.iter().any(|n| self.holds(n)) => self.concat(node, host),
            "Resize" | "Upsample" if on_device(0) => self.resize(node, host),
            "Tile" if on_device(0) => self.tile(node, host),
            "Pad" if on_device(0) => self.pad(node, host),
            // Several outputs, recorded there.
            "Split" if on_device(0) => return self.split(node, host),
            "MatMul" => {
                let w = self.weights.for_node(p)?;
                let a = self.operand(name(0)?, host)?;
                let shape = a.shape();
                if shape.len() < 2 || shape.last() != Some(&w.rows()) {
                    return None;
                }
                let rows = shape[..shape.len() - 1].iter().product::<usize>();
                let mut out_shape = shape.to_vec();
                *out_shape.last_mut()? = w.cols();
                self.try_record(out_shape, |me, out| {
                    let a = me.up(a)?;
                    me.program()?.product(&a.buf, rows, w, out);
                    Ok(())
                })
            }
            "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Max" | "Min" | "PRelu" | "Equal" | "Less"
            | "LessOrEqual" | "Greater" | "GreaterOrEqual" | "And" | "Or" | "Xor"
                if (on_device(0) || on_device(1)) && p.inputs.len() == 2 =>
            {
                let op = BinaryOp::of(&p.op_type)?;
                // Both bools (`And`, or `Equal` of bools) or both f32.
                let operand = |n| match op.reads_bools() || reads_bool {
                    true => self.logical_operand(n, host),
                    false => self.operand(n, host),
                };
                let (a, b) = (operand(name(0)?)?, operand(name(1)?)?);
                self.binary(op, a, b)
            }
            "WeftLayerNorm" if on_device(0) => {
                let eps = host_scalar(host, name(1)?)?;
                let (w, b) = (self.operand(name(2)?, host)?, self.operand(name(3)?, host)?);
                self.layer_norm(self.operand(name(0)?, host)?, (w, Some(b)), eps)
            }
            // Over the last axis, and only `Y` asked for.
            "LayerNormalization"
                if on_device(0) && p.outputs.iter().skip(1).all(String::is_empty) =>
            {
                let x = self.operand(name(0)?, host)?;
                let last = x.shape().len() as i64 - 1;
                if ![-1, last].contains(&node.int("axis", -1)) {
                    return None;
                }
                let w = self.operand(name(1)?, host)?;
                let b = match name(2) {
                    Some(n) => Some(self.operand(n, host)?),
                    None => None,
                };
                self.layer_norm(x, (w, b), node.float("epsilon", 1e-5))
            }
            "Softmax" | "LogSoftmax" if on_device(0) => self.softmax(node),
            "Relu" | "Sigmoid" | "Tanh" | "Erf" | "Gelu" | "Exp" | "Sqrt" | "Neg"
            | "Reciprocal" | "Abs" | "Log" | "Cos" | "Sin" | "LeakyRelu" | "Elu" | "Selu"
            | "HardSigmoid" | "HardSwish" | "Softplus" | "Softsign" | "Mish" | "Celu"
            | "ThresholdedRelu" | "Floor" | "Ceil" | "Round" | "Sign" | "Swish" | "Not"
            | "IsNaN" | "IsInf" | "Cast"
                if on_device(0) =>
            {
                let op = match p.op_type.as_str() {
                    // To bool (`describe` takes the casts that keep the bits).
                    "Cast" if !reads_bool && cast_to(node) == Some(DType::Bool) => UnaryOp::NonZero,
                    "Cast" => return None,
                    op => UnaryOp::of(op, || node.string("approximate", "none"))?,
                };
                let op = (
                    op,
                    op.params(
                        |a, default| node.float(a, default),
                        |a, default| node.int(a, default),
                    ),
                );
                let x = match op.0 {
                    UnaryOp::Not => self.logical_operand(name(0)?, host)?,
                    _ => self.operand(name(0)?, host)?,
                };
                let shape = x.shape().to_vec();
                let count = shape.iter().product();
                self.try_record(shape, |me, out| {
                    let x = me.up(x)?;
                    me.program()?.unary(op, &x.buf, count, out);
                    Ok(())
                })
            }
            "WeftGelu" if on_device(0) => {
                let x = self.operand(name(0)?, host)?;
                let consts = [1, 2, 3].map(|i| name(i).and_then(|n| host_scalar(host, n)));
                let [Some(root2), Some(one), Some(half)] = consts else {
                    return None;
                };
                let shape = x.shape().to_vec();
                let count = shape.iter().product();
                self.try_record(shape, |me, out| {
                    let x = me.up(x)?;
                    me.program()?.gelu(&x.buf, count, [root2, one, half], out);
                    Ok(())
                })
            }
            "WeftAttention" if on_device(0) => self.attention(node, host),
            // A `Conv` by a weight on the device runs there, as a product does.
            "Conv" | "ConvTranspose"
                if on_device(0) || name(1).is_some_and(|w| self.weights.constant(w).is_some()) =>
            {
                self.window(node, host)
            }
            "MaxPool" | "AveragePool" | "LpPool" if on_device(0) => self.window(node, host),
            "GlobalAveragePool" | "GlobalMaxPool" if on_device(0) => self.global_pool(node),
            "BatchNormalization" if on_device(0) => self.batch_norm(node, host),
            "InstanceNormalization" | "GroupNormalization" if on_device(0) => {
                self.channel_norm(node, host)
            }
            "Clip" if on_device(0) => self.clip(node, host),
            "Where" if on_device(0) || on_device(1) || on_device(2) => self.pick(node, host),
            // Of a value on the device, or of a table uploaded at load
            // (embeddings).
            "Gather" => self.gather(node, host),
            "ReduceSum" | "ReduceMean" | "ReduceMax" | "ReduceMin" | "ReduceSumSquare"
            | "ReduceL1" | "ReduceL2" | "ReduceLogSum" | "ReduceLogSumExp" | "ReduceProd"
                if on_device(0) =>
            {
                self.reduce(node, host)
            }
            "Reshape" if on_device(0) => {
                let x = self.values.get(name(0)?)?.clone();
                let target = host.get(name(1)?)?;
                // The CPU's `Reshape` says what is wrong with an empty one.
                if x.len() == 0 {
                    return None;
                }
                let zero_is_zero = node.int("allowzero", 0) != 0;
                if zero_is_zero && matches!(&target.data, Data::I64(t) if t.contains(&0)) {
                    return None;
                }
                let shape = fused::reshape_target(target, &x.shape).ok()?;
                self.values
                    .insert(p.outputs.first()?.clone(), Dev { shape, ..x });
                return Some(Ok(()));
            }
            _ => None,
        }?;
        Some(out.map(|out| {
            if let Some(n) = p.outputs.first().filter(|n| !n.is_empty()) {
                self.values.insert(
                    n.clone(),
                    Dev {
                        is_bool: gives_bool,
                        ..out
                    },
                );
            }
        }))
    }

    /// Makes the output buffer of `shape` and records into it with `f`.
    fn try_record(
        &mut self,
        shape: Vec<usize>,
        f: impl FnOnce(&mut Self, &Buffer) -> Result<(), NnError>,
    ) -> Option<Result<Dev, NnError>> {
        let floats = shape.iter().product();
        if !self.fits(floats) {
            return None;
        }
        let run = || {
            let buf = self.buffer(floats, "weft-nn ONNX activations")?;
            f(self, &buf)?;
            Ok(Dev::new(buf, shape))
        };
        Some(run())
    }

    /// `a op b`: at once where `b` is `a`'s shape, a row of it or a
    /// scalar (or `a` is, and `op` commutes); otherwise after a strided
    /// copy broadcasts each operand to the output's shape.
    fn binary<'v>(
        &mut self,
        op: BinaryOp,
        mut a: Operand<'v>,
        mut b: Operand<'v>,
    ) -> Option<Result<Dev, NnError>> {
        if !row_broadcast(b.shape(), a.shape()) {
            if !op.commutes() || !row_broadcast(a.shape(), b.shape()) {
                let shape = broadcast_shape(a.shape(), b.shape()).ok()?;
                if shape.contains(&0) {
                    return None;
                }
                let count = shape.iter().product();
                return self.try_record(shape.clone(), |me, out| {
                    let (a, b) = (me.broadcast(a, &shape)?, me.broadcast(b, &shape)?);
                    me.program()?
                        .binary(op, (&a.buf, &b.buf), count, count, out);
                    Ok(())
                });
            }
            std::mem::swap(&mut a, &mut b);
        }
        let shape = a.shape().to_vec();
        let (count, period) = (shape.iter().product(), b.shape().iter().product());
        self.try_record(shape, |me, out| {
            let (a, b) = (me.up(a)?, me.up(b)?);
            me.program()?
                .binary(op, (&a.buf, &b.buf), period, count, out);
            Ok(())
        })
    }

    /// `WeftAttention` (see `ops/fused.rs`) on the device.
    fn attention(
        &mut self,
        node: Node<'_>,
        host: &HashMap<&str, Arc<Value>>,
    ) -> Option<Result<Dev, NnError>> {
        let p = node.proto;
        let name = |i: usize| input(p, i);
        let [q, k, v] = [0, 1, 2].map(|i| name(i).and_then(|n| self.operand(n, host)));
        let (q, k, v) = (q?, k?, v?);
        let dims = fused::reshape_target(host.get(name(3)?)?, q.shape()).ok()?;
        let &[batch, seq, heads, head_dim] = dims.as_slice() else {
            return None;
        };
        for (i, x) in [&k, &v].into_iter().enumerate() {
            if fused::reshape_target(host.get(name(4 + i)?)?, x.shape()).ok()? != dims {
                return None;
            }
        }
        let scale = host_scalar(host, name(6)?)?;
        let mask = self.operand(name(7)?, host)?;
        let mask_strides = fused::mask_strides(mask.shape(), [batch, heads, seq, seq]).ok()?;
        if !self.fits(batch * seq * heads * seq) {
            return None;
        }
        let shape = EncoderAttention {
            batch,
            seq,
            heads,
            head_dim,
            scale,
            mask_strides,
        };
        self.try_record(dims, |me, out| {
            let (q, k, v, mask) = (me.up(q)?, me.up(k)?, me.up(v)?, me.up(mask)?);
            let scores = me.buffer(batch * seq * heads * seq, "weft-nn attention scores")?;
            me.program()?.encoder_attention(
                (&q.buf, &k.buf, &v.buf),
                &mask.buf,
                &scores,
                out,
                shape,
            );
            Ok(())
        })
    }

    /// Brings the named values that are only on the device back into
    /// `host`, submitting what is recorded (one round trip for all).
    pub(super) fn bring_back<'n>(
        &mut self,
        names: impl IntoIterator<Item = &'n str>,
        host: &mut HashMap<&'n str, Arc<Value>>,
    ) -> Result<(), NnError> {
        let wanted: Vec<(&str, Dev)> = names
            .into_iter()
            .filter(|n| !host.contains_key(n))
            .filter_map(|n| Some((n, self.values.get(n)?.clone())))
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let program = match self.program.take() {
            Some(p) => p,
            None => self.gpu.program()?,
        };
        self.pending = 0;
        let reads: Vec<(&Buffer, usize)> = wanted.iter().map(|(_, d)| (&*d.buf, d.len())).collect();
        let data = program.run_reads(&reads)?;
        for ((name, d), data) in wanted.into_iter().zip(data) {
            let v = match d.is_bool {
                true => Value::bool(d.shape, data.into_iter().map(|x| x != 0.0).collect()),
                false => Value::f32(d.shape, data),
            };
            host.insert(name, Arc::new(v));
        }
        Ok(())
    }
}

/// The ops that read a bool on the device: the logical ones, `Where`,
/// `Cast`, and those that move values without reading them.
const TAKES_BOOLS: &[&str] = &[
    "Equal",
    "And",
    "Or",
    "Xor",
    "Not",
    "Where",
    "Cast",
    "Transpose",
    "Slice",
    "Expand",
    "Concat",
    "Tile",
    "Reshape",
    "Gather",
];

/// The type a `Cast` gives.
fn cast_to(node: Node<'_>) -> Option<DType> {
    DType::from_onnx(node.int("to", 0))
}

/// The name of input `i` of `p`, unless it is omitted.
fn input(p: &NodeProto, i: usize) -> Option<&str> {
    p.inputs
        .get(i)
        .map(String::as_str)
        .filter(|n| !n.is_empty())
}

/// Whether `small` is `big`'s shape, its trailing dims (a row broadcast,
/// leading 1s aside) or a single value: what [`Program::binary`] reads.
fn row_broadcast(small: &[usize], big: &[usize]) -> bool {
    let first = small.iter().position(|&d| d != 1).unwrap_or(small.len());
    let tail = &small[first..];
    small.len() <= big.len() && big.ends_with(tail) && !big.contains(&0)
}

/// An f32 scalar on the host.
fn host_scalar(host: &HashMap<&str, Arc<Value>>, name: &str) -> Option<f32> {
    match &host.get(name)?.data {
        Data::F32(v) if v.len() == 1 => Some(v[0]),
        _ => None,
    }
}

mod cnn;
mod layout;
mod products;
mod rows;
mod select;
#[cfg(test)]
mod tests;
mod views;
