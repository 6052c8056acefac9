//! ONNX execution: a graph decoded once at load, then run node by node
//! (ONNX graphs are stored topologically sorted) on every call, with shapes
//! taken from the inputs of that call. On the CPU, except for a model
//! loaded for a GPU: the 2-D f32 initializers its `MatMul`s and `Gemm`s
//! read as B are uploaded once at load, and a call keeps its activations
//! on the device from the first such product on, through every node the
//! device kernels cover (`onnx/device.rs`); the rest run on the CPU.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::device::OnDevice;
use super::ops::{self, Node};
use super::proto::{self, Attr, GraphProto, ValueInfo};
use super::value::{DType, Value};
use super::weights::{GpuWeights, LoadCache, pack_weights, packed_key, upload_weights};
use crate::engine::{Placement, input};
use crate::gpu::Gpu;
use crate::kernels::PackedB;
use crate::{Model, NnError, NnErrorKind, Session, Tensor};

/// A loaded ONNX graph; its weights are shared by every session.
#[derive(Debug)]
pub(crate) struct OnnxModel {
    pub(super) graph: Arc<Graph>,
    placement: Placement,
}

#[derive(Debug)]
pub(super) struct Graph {
    opset: i64,
    nodes: Vec<proto::NodeProto>,
    pub(super) weights: HashMap<String, Arc<Value>>,
    /// Inputs the caller provides (graph inputs that are not weights),
    /// with their declared type (`None`: whatever the caller sends).
    pub(super) inputs: Vec<(ValueInfo, Option<DType>)>,
    /// How many of `inputs` are declared ones; a subgraph's others are the
    /// values it reads from the graphs around it.
    pub(super) formal: usize,
    pub(super) outputs: Vec<String>,
    /// For each node, the values no later node or output reads.
    frees: Vec<Vec<String>>,
    weight_bytes: u64,
    /// Weights resident on a GPU, when the model was loaded for one.
    gpu: Option<GpuWeights>,
    /// On the CPU, the weights products read as B, packed once for the
    /// matmul kernel, by initializer name.
    pub(super) packed: HashMap<String, Arc<PackedB>>,
    /// The graphs of control-flow nodes (`If`'s branches, `Loop`'s
    /// body), built as this one is, by node index and attribute name.
    pub(super) subgraphs: HashMap<usize, Vec<(String, Arc<Graph>)>>,
    /// The decision trees of tree-ensemble nodes, read once, by node
    /// index.
    forests: HashMap<usize, ops::Forest>,
}

impl OnnxModel {
    /// Decodes `bytes` and checks every node is one weft-nn can run.
    pub(crate) fn load(bytes: &[u8]) -> Result<Self, NnError> {
        Self::load_for(bytes, None)
    }

    /// [`OnnxModel::load`] for a target: `None` for the CPU, else the
    /// process's GPU or why there is none (the model then runs on the CPU
    /// and says so in its [`Placement`]).
    pub(crate) fn load_for(
        bytes: &[u8],
        gpu: Option<Result<Arc<Gpu>, NnError>>,
    ) -> Result<Self, NnError> {
        Self::load_with(bytes, gpu, super::fuse::enabled())
    }

    /// [`OnnxModel::load_for`], with the load-time fusion of
    /// `onnx/fuse.rs` on or off.
    pub(crate) fn load_with(
        bytes: &[u8],
        gpu: Option<Result<Arc<Gpu>, NnError>>,
        fuse: bool,
    ) -> Result<Self, NnError> {
        let model = proto::model(bytes)?;
        let GraphProto {
            nodes,
            initializers,
            inputs,
            outputs,
        } = model.graph;
        if nodes.is_empty() && outputs.is_empty() {
            return Err(NnError::new(
                NnErrorKind::InvalidEncoding,
                "malformed ONNX: the graph has no nodes",
            ));
        }
        check_nodes(&nodes, model.opset)?;
        let mut weights = HashMap::new();
        for b in initializers {
            let (name, v) = proto::tensor(b)?;
            weights.insert(name, Arc::new(v));
        }
        let mut caller_inputs = Vec::new();
        for i in inputs
            .into_iter()
            .filter(|i| !weights.contains_key(&i.name))
        {
            let dtype = tensor_type(&i)?;
            caller_inputs.push((i, dtype));
        }
        for o in &outputs {
            tensor_type(o)?;
        }
        let outputs: Vec<String> = outputs.into_iter().map(|o| o.name).collect();
        let mut nodes = nodes;
        super::control::capture(&mut nodes);
        let (device, placement) = match gpu {
            None => (None, Placement::Cpu),
            Some(Ok(gpu)) => {
                let adapter = gpu.adapter();
                (Some(gpu), Placement::Gpu(adapter))
            }
            Some(Err(e)) => (None, Placement::CpuFallback(e.message)),
        };
        let mut graph = Graph::build(
            model.opset,
            nodes,
            weights,
            caller_inputs,
            outputs,
            device,
            fuse,
            &mut LoadCache::default(),
        )?;
        graph.weight_bytes = graph.held_bytes(&mut Default::default());
        Ok(Self {
            graph: Arc::new(graph),
            placement,
        })
    }
}

impl Graph {
    /// A graph ready to run: integer weights widened, patterns fused (when
    /// `fuse`), weights packed for the CPU or uploaded to `gpu`, and the
    /// graphs of its control-flow nodes built the same way, each reading
    /// the weights of this one it names as its own.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn build(
        opset: i64,
        mut nodes: Vec<proto::NodeProto>,
        mut weights: HashMap<String, Arc<Value>>,
        inputs: Vec<(ValueInfo, Option<DType>)>,
        outputs: Vec<String>,
        gpu: Option<Arc<Gpu>>,
        fuse: bool,
        shared: &mut LoadCache,
    ) -> Result<Self, NnError> {
        super::weights::fold_dequantized_weights(&mut nodes, &mut weights, opset);
        super::weights::widen_integer_weights(&mut nodes, &mut weights, &outputs, shared)?;
        let mut nodes = if fuse {
            super::fuse::fuse(nodes, &weights, &outputs, gpu.is_none())
        } else {
            nodes
        };
        let mut subgraphs = HashMap::new();
        for (i, node) in nodes.iter_mut().enumerate() {
            let mut built = Vec::new();
            for (name, attr) in &node.attrs {
                if let Attr::Graph(sub) = attr {
                    let g = super::control::body(
                        opset,
                        node,
                        sub,
                        &weights,
                        gpu.clone(),
                        fuse,
                        shared,
                    )?;
                    built.push((name.clone(), Arc::new(g)));
                }
            }
            if !built.is_empty() {
                // The weights the subgraphs read are theirs now: the node
                // need not keep them alive.
                let declared = super::control::declared(node);
                let mut k = 0;
                node.inputs.retain(|name| {
                    k += 1;
                    k <= declared || !weights.contains_key(name)
                });
                subgraphs.insert(i, built);
            }
        }
        // A weight no node here reads (one only subgraphs read is theirs,
        // with their own copy) is dropped.
        let read: std::collections::HashSet<&str> = (nodes.iter().flat_map(|n| &n.inputs))
            .chain(&outputs)
            .map(String::as_str)
            .collect();
        weights.retain(|w, _| read.contains(w.as_str()));
        let frees = plan_frees(&nodes, &outputs);
        let mut forests = HashMap::new();
        for (i, node) in nodes.iter().enumerate() {
            if let Some(forest) = ops::forest(Node { proto: node, opset }) {
                let forest = forest.map_err(|e| {
                    NnError::new(
                        NnErrorKind::InvalidEncoding,
                        format!("node `{}` ({}): {}", node.name, node.op_type, e.message),
                    )
                })?;
                forests.insert(i, forest);
            }
        }
        let packed = match gpu {
            Some(_) => HashMap::new(),
            None => pack_weights(&nodes, &mut weights, &outputs, shared),
        };
        let gpu = gpu.map(|gpu| upload_weights(gpu, &nodes, &weights));
        Ok(Self {
            opset,
            nodes,
            weights,
            formal: inputs.len(),
            inputs,
            outputs,
            frees,
            weight_bytes: 0,
            gpu,
            packed,
            subgraphs,
            forests,
        })
    }

    /// Host memory this graph and its subgraphs hold: what they store
    /// (placeholders hold nothing) and the packed copies, each counted
    /// once however many graphs share it.
    fn held_bytes(&self, seen: &mut std::collections::HashSet<usize>) -> u64 {
        let weights: u64 = self
            .weights
            .values()
            .filter(|v| seen.insert(Arc::as_ptr(v) as usize))
            .map(|v| (v.len() * v.dtype.element_type().size()) as u64)
            .sum();
        let packed: u64 = self
            .packed
            .values()
            .filter(|p| seen.insert(Arc::as_ptr(p) as usize))
            .map(|p| p.bytes() as u64)
            .sum();
        let own = weights + packed;
        let subs: Vec<Arc<Graph>> = self
            .subgraphs
            .values()
            .flatten()
            .map(|(_, g)| Arc::clone(g))
            .collect();
        own + subs.iter().map(|g| g.held_bytes(seen)).sum::<u64>()
    }

    /// Device memory this graph and its subgraphs hold (each uploads the
    /// weights it reads).
    fn device_bytes(&self) -> u64 {
        let subs: u64 = self
            .subgraphs
            .values()
            .flatten()
            .map(|(_, g)| g.device_bytes())
            .sum();
        self.gpu.as_ref().map_or(0, GpuWeights::bytes) + subs
    }
}

/// After which node each intermediate value is dead.
fn plan_frees(nodes: &[proto::NodeProto], outputs: &[String]) -> Vec<Vec<String>> {
    let mut last: HashMap<&str, usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for name in n.inputs.iter().chain(&n.outputs) {
            last.insert(name, i);
        }
    }
    let mut frees = vec![Vec::new(); nodes.len()];
    for (name, i) in last {
        if !name.is_empty() && !outputs.iter().any(|o| o == name) {
            frees[i].push(name.to_string());
        }
    }
    frees
}

impl Model for OnnxModel {
    fn session(&self) -> Box<dyn Session> {
        Box::new(OnnxSession {
            graph: Arc::clone(&self.graph),
        })
    }
    /// Not with control flow: merged calls would share one `If`
    /// condition or `Loop` count, each caller's own.
    fn batchable(&self) -> bool {
        self.graph.subgraphs.is_empty() && !self.graph.nodes.iter().any(mixes_rows)
    }
    fn weight_bytes(&self) -> u64 {
        self.graph.weight_bytes
    }
    fn device_bytes(&self) -> u64 {
        self.graph.device_bytes()
    }
    fn placement(&self) -> Placement {
        self.placement.clone()
    }
}

/// One caller's context: ONNX graphs hold no state between calls.
#[derive(Debug)]
struct OnnxSession {
    graph: Arc<Graph>,
}

impl Session for OnnxSession {
    fn compute(&mut self, inputs: &[(String, Tensor)]) -> Result<Vec<(String, Tensor)>, NnError> {
        // On a thread of the pool: the operators' parallel loops then wait
        // for each other on spinning latches; called from outside, each
        // would park the caller and wake it again.
        rayon::scope(|_| self.run(inputs))
    }
}

impl OnnxSession {
    fn run(&self, inputs: &[(String, Tensor)]) -> Result<Vec<(String, Tensor)>, NnError> {
        let g = &*self.graph;
        let mut values = Vec::with_capacity(g.inputs.len());
        for (pos, (info, dtype)) in g.inputs.iter().enumerate() {
            let t = input(inputs, &info.name, pos)?;
            check_shape(info, &t.shape)?;
            values.push(Arc::new(Value::from_tensor(
                t,
                dtype.unwrap_or_else(|| native(t)),
                &info.name,
            )?));
        }
        let outputs = g.execute(values)?;
        g.outputs
            .iter()
            .zip(outputs)
            .map(|(name, v)| match v.is_tensor() {
                true => Ok((name.clone(), v.to_tensor())),
                false => Err(NnError::new(
                    NnErrorKind::RuntimeError,
                    format!(
                        "output `{name}` is a sequence or an optional without an element; \
                         `wasi:nn` returns tensors only (end the graph with SequenceAt, \
                         ConcatFromSequence or OptionalGetElement)"
                    ),
                )),
            })
            .collect()
    }
}

impl Graph {
    /// Runs the graph on the values of its inputs (in [`Graph::inputs`]
    /// order), giving its outputs' values in order.
    pub(super) fn execute(&self, inputs: Vec<Arc<Value>>) -> Result<Vec<Arc<Value>>, NnError> {
        let g = self;
        let mut env: HashMap<&str, Arc<Value>> = HashMap::new();
        for (name, w) in &g.weights {
            env.insert(name, Arc::clone(w));
        }
        for ((info, _), v) in g.inputs.iter().zip(inputs) {
            env.insert(&info.name, v);
        }
        let mut profile = profiling().then(Profile::default);
        let mut device = g
            .gpu
            .as_ref()
            .filter(|_| super::device::enabled())
            .and_then(OnDevice::new);
        if let Some(dev) = device.as_mut() {
            dev.hold_inputs(g.inputs.iter().map(|(i, _)| i.name.as_str()), &env)?;
        }
        let named = |node: &proto::NodeProto, e: NnError| {
            NnError::new(
                e.kind,
                format!("node `{}` ({}): {}", node.name, node.op_type, e.message),
            )
        };
        for (index, (node, frees)) in g.nodes.iter().zip(&g.frees).enumerate() {
            let started = profile.as_ref().map(|_| Instant::now());
            // Sequences and absent optionals go to the operators that take
            // them only (on the GPU path too: the device holds tensors).
            if !ops::takes_non_tensors(&node.op_type)
                && let Some(i) = (node.inputs.iter())
                    .position(|n| env.get(n.as_str()).is_some_and(|v| !v.is_tensor()))
            {
                return Err(named(
                    node,
                    NnError::new(
                        NnErrorKind::RuntimeError,
                        format!(
                            "takes tensors, but its input {i} is a sequence or an optional \
                             without an element"
                        ),
                    ),
                ));
            }
            if let Some(dev) = device.as_mut() {
                let n = Node {
                    proto: node,
                    opset: g.opset,
                };
                let recorded =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| dev.record(n, &env)))
                        .unwrap_or_else(|_| {
                            Some(Err(NnError::new(
                                NnErrorKind::RuntimeError,
                                "internal error: recording the operator panicked",
                            )))
                        });
                // Host values the device path gave (`Shape`, `Size`), if it
                // took the node.
                let took = match recorded {
                    Some(Ok(())) => Some(Vec::new()),
                    Some(Err(e)) => return Err(named(node, e)),
                    None => dev.describe(n, &env).map_err(|e| named(node, e))?,
                };
                if let Some(outs) = took {
                    for (name, v) in node.outputs.iter().zip(outs) {
                        if !name.is_empty() {
                            env.insert(name, Arc::new(v));
                        }
                    }
                    for f in frees {
                        env.remove(f.as_str());
                        dev.free(f);
                    }
                    if let (Some(p), Some(t)) = (profile.as_mut(), started) {
                        p.add(&format!("{} (GPU)", node.op_type), t.elapsed());
                    }
                    continue;
                }
                // On the CPU, below, with what it reads brought back.
                dev.bring_back(node.inputs.iter().map(String::as_str), &mut env)
                    .map_err(|e| named(node, e))?;
            }
            let owned = if ops::in_place(&node.op_type) {
                take_dying(&mut env, node, frees)
            } else {
                None
            };
            let args: Vec<Option<&Value>> = node
                .inputs
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    if n.is_empty() || owned.as_ref().is_some_and(|(o, _)| *o == i) {
                        return Ok(None);
                    }
                    env.get(n.as_str()).map(|v| Some(&**v)).ok_or_else(|| {
                        NnError::new(
                            NnErrorKind::RuntimeError,
                            format!(
                                "node `{}` ({}) reads `{n}`, which no earlier node produced",
                                node.name, node.op_type
                            ),
                        )
                    })
                })
                .collect::<Result<_, _>>()?;
            // A shape inconsistency an operator did not anticipate must fail
            // the call, not the process serving it.
            let resident = g
                .gpu
                .as_ref()
                .and_then(|w| Some((&w.gpu, w.for_node(node)?)));
            let mut on_gpu = false;
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let node = Node {
                    proto: node,
                    opset: g.opset,
                };
                if let Some((gpu, w)) = resident
                    && let Some(out) = ops::run_resident(node, &args, gpu, w)
                {
                    on_gpu = true;
                    return out;
                }
                if let Some(subs) = g.subgraphs.get(&index) {
                    return super::control::run(node, &args, subs, &env);
                }
                if let Some(forest) = g.forests.get(&index) {
                    return ops::run_forest(node, &args, forest).map(|v| vec![v]);
                }
                if let Some(b) = packed_key(node.proto)
                    && let Some(w) = g.packed.get(b)
                {
                    if let Some(out) = ops::run_packed(node, &args, w) {
                        return out;
                    }
                    // A product the packed form does not suit (a 1-D A, an
                    // integer A): as written, on B unpacked if only its
                    // packed form is kept.
                    if args.get(1).copied().flatten().is_some_and(|v| v.len() == 0) {
                        let full = Value::f32(vec![w.k(), w.n()], w.unpack());
                        let mut with_b = args.clone();
                        with_b[1] = Some(&full);
                        return ops::run(node, &with_b);
                    }
                }
                match owned {
                    Some((i, v)) => ops::run_owned(node, &args, i, v),
                    None => ops::run(node, &args),
                }
            }))
            .unwrap_or_else(|_| {
                Err(NnError::new(
                    NnErrorKind::RuntimeError,
                    "internal error: the operator panicked",
                ))
            });
            let outs = run.map_err(|e| named(node, e))?;
            for (name, v) in node.outputs.iter().zip(outs) {
                if !name.is_empty() {
                    env.insert(name, Arc::new(v));
                }
            }
            for f in frees {
                env.remove(f.as_str());
                if let Some(dev) = device.as_mut() {
                    dev.free(f);
                }
            }
            if let (Some(p), Some(t)) = (profile.as_mut(), started) {
                match on_gpu {
                    true => p.add(&format!("{} (GPU)", node.op_type), t.elapsed()),
                    false => p.add(&node.op_type, t.elapsed()),
                }
            }
        }
        if let Some(dev) = device.as_mut() {
            dev.bring_back(g.outputs.iter().map(String::as_str), &mut env)?;
        }
        if let Some(p) = profile {
            p.print();
        }
        g.outputs
            .iter()
            .map(|name| {
                env.get(name.as_str()).cloned().ok_or_else(|| {
                    NnError::new(
                        NnErrorKind::RuntimeError,
                        format!("the graph never produced its output `{name}`"),
                    )
                })
            })
            .collect()
    }
}

/// An input of `node` (among its first two) that dies with it and that
/// nothing else holds, taken out of `env` so the operator can write over
/// it; weights are shared with the graph and never qualify.
fn take_dying(
    env: &mut HashMap<&str, Arc<Value>>,
    node: &proto::NodeProto,
    frees: &[String],
) -> Option<(usize, Value)> {
    for (i, name) in node.inputs.iter().enumerate().take(2) {
        let once = node.inputs.iter().filter(|n| *n == name).count() == 1;
        if name.is_empty() || !once || !frees.contains(name) {
            continue;
        }
        let (key, v) = env.remove_entry(name.as_str())?;
        match Arc::try_unwrap(v) {
            Ok(v) => return Some((i, v)),
            Err(v) => {
                env.insert(key, v);
            }
        }
    }
    None
}

/// Whether `WEFT_NN_PROFILE` asks for per-operator timings (read once).
fn profiling() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("WEFT_NN_PROFILE").is_some_and(|v| v != "0"))
}

/// Time spent per operator type during one call, printed to stderr when
/// `WEFT_NN_PROFILE=1`: a poor man's profiler where `perf` is unavailable.
#[derive(Debug, Default)]
struct Profile {
    ops: HashMap<String, (usize, Duration)>,
}

impl Profile {
    fn add(&mut self, op: &str, took: Duration) {
        let e = self.ops.entry(op.to_string()).or_default();
        e.0 += 1;
        e.1 += took;
    }

    fn print(self) {
        let total: Duration = self.ops.values().map(|(_, d)| *d).sum();
        let mut rows: Vec<_> = self.ops.into_iter().collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.1.1));
        let mut out = format!("weft-nn profile: {:.2} ms\n", total.as_secs_f64() * 1e3);
        for (op, (n, d)) in rows {
            out += &format!(
                "  {op:<24} {n:>5} x {:>9.3} ms {:>5.1}%\n",
                d.as_secs_f64() * 1e3,
                100.0 * d.as_secs_f64() / total.as_secs_f64().max(1e-9)
            );
        }
        eprint!("{out}");
    }
}

mod check;
pub(super) use check::tensor_type;
use check::{check_nodes, check_shape, mixes_rows, native};

#[cfg(test)]
mod tests;
