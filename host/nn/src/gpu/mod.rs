//! weft-nn's GPU path: matrix products in a WGSL compute shader on
//! [wgpu](https://wgpu.rs) (Vulkan on Linux, Metal on macOS, DX12 on
//! Windows; no GL), and the kernels a decoder's forward pass needs between
//! them (`ops.wgsl`, recorded into a crate-internal `Program` that runs
//! with one read-back).
//!
//! One [`Gpu`] per process ([`Gpu::shared`]): the adapter, device and queue,
//! and the compiled matmul pipelines (f32 operands; a GGUF decoder's
//! quantised and half weights read in their blocks, each format's compiled
//! when its first matrix goes up). Weights go up once as [`GpuMatrix`]es
//! ([`Gpu::upload`]), which stay on the device until dropped; activations
//! travel per call ([`Gpu::matmul_weights`]), or stay on the device for a
//! whole decoder pass. The bytes held in `GpuMatrix`es and in an ONNX
//! model's constant operands (uploaded at load too) are counted
//! ([`Gpu::device_bytes`]), and so are decoder sessions' KV caches and
//! activations ([`Gpu::work_bytes`]); per-call scratch buffers (a few,
//! reused) are not.
//!
//! The adapter comes from the environment: `WGPU_BACKEND` (default: the
//! platform's native API; `vulkan` on Linux), `WGPU_ADAPTER_NAME` (a
//! substring of the adapter's name) and `WGPU_POWER_PREF` (default `high`).
//! Without a GPU, Mesa's llvmpipe (`scripts/install-vulkan.sh`) is a
//! software Vulkan device that runs the same code on the CPU: good for
//! tests, ~6 GFLOP/s, far slower than the CPU kernels. Set
//! `XDG_RUNTIME_DIR` (any writable directory) to silence the Vulkan
//! loader's complaints where it is unset.
//!
//! ```no_run
//! let gpu = weft_nn::gpu::Gpu::shared()?;
//! let w = gpu.upload(&[1.0, 2.0, 3.0, 4.0], 2, 2)?;
//! assert_eq!(gpu.device_bytes(), 16);
//! let c = gpu.matmul_weights(&[1.0, 1.0], 1, 2, &w)?;
//! assert_eq!(c, vec![4.0, 6.0]);
//! # Ok::<(), weft_nn::NnError>(())
//! ```

use std::fmt;
use std::future::Future;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::task::{Context, Poll, Wake};

use crate::{NnError, NnErrorKind};

mod encoder;
mod gemv;
mod matmul;
mod program;
mod times;

pub(crate) use encoder::{
    BinaryOp, EncoderAttention, ReduceOp, StridedCopy, UnaryOp, WindowOp, WindowShape,
};
use gemv::{GEMV_GROUP, GEMV_ROWS, Gemv};
pub use matmul::GpuMatrix;
use matmul::Scratch;
pub(crate) use matmul::{Part, WeightFormat};
pub(crate) use program::{
    Attention, Buffer, FfnAct, Mamba2, NormKind, Program, Qkv, Reuse, Selective, Xielu,
};
use times::Profiler;
pub use times::{KernelTime, PassTimes};

/// Rows and columns of C per workgroup (`matmul.wgsl`'s `TILE_M`/`TILE_N`).
const TILE: usize = 64;
/// Threads per workgroup (16 x 16) and the workgroup memory they share
/// (two 16 x 64 f32 tiles).
const WORKGROUP_THREADS: u32 = 256;
const WORKGROUP_BYTES: u32 = 2 * 16 * 64 * 4;
/// The matmul parameters (`Params` in the shader) and the stride between
/// one panel's and the next in the uniform buffer (the largest uniform
/// offset alignment WebGPU allows).
const PARAMS_BYTES: u64 = 32;
const PARAMS_STRIDE: u64 = 256;
/// The most bytes one buffer of ours spans, whatever the device allows:
/// keeps every element index in the shader within `u32`.
const MAX_BUFFER: u64 = 1 << 30;
/// Scratch buffer sets kept for reuse between calls.
const POOL: usize = 4;
/// How long a read-back may take before it is reported as stuck.
const MAPPING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// The adapter a [`Gpu`] runs on, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterSummary {
    /// As the driver names it, e.g. `llvmpipe (LLVM 15.0.6, 256 bits)`.
    pub name: String,
    /// `vulkan`, `metal` or `dx12`.
    pub backend: String,
    /// `discrete-gpu`, `integrated-gpu`, `virtual-gpu`, `cpu` (a software
    /// device such as llvmpipe) or `other`.
    pub device_type: String,
}

impl fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}, {})", self.name, self.backend, self.device_type)
    }
}

/// A GPU: device, queue and the compiled kernels, shared by every model of
/// the process.
pub struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    adapter: AdapterSummary,
    /// `matmul.wgsl`'s tiled kernel and the `gemv` kernel that runs
    /// products of a few rows (the one alone is compiled), for f32
    /// matrices; and which `gemv` it is.
    pipeline: wgpu::ComputePipeline,
    gemv_pipeline: wgpu::ComputePipeline,
    gemv: Gemv,
    layout: wgpu::BindGroupLayout,
    pipeline_layout: wgpu::PipelineLayout,
    /// The same two for each of [`WeightFormat::PACKED`], compiled when
    /// the first matrix of it is uploaded.
    packed: [OnceLock<Result<[wgpu::ComputePipeline; 2], NnError>>; 5],
    /// Whether a GGUF decoder's packed weights (quantised or halves) stay
    /// in their blocks here (the default) or go up as f32 (`WEFT_NN_GPU_WEIGHTS=f32`).
    keeps_blocks: bool,
    /// Bytes one buffer (and so one binding) may hold.
    max_buffer: u64,
    /// Workgroups one dispatch may have along x or y.
    max_groups: usize,
    /// Bytes held by live [`GpuMatrix`]es (counted ones) and constant
    /// buffers; also identifies this `Gpu` to the matrices it made.
    resident: Arc<AtomicU64>,
    /// Products run so far.
    matmuls: AtomicU64,
    /// Submissions waited for and read back so far.
    round_trips: AtomicU64,
    /// Bytes programs uploaded with their submissions so far.
    written: AtomicU64,
    /// Buffers made (tests: a decoder's pass makes none once warm).
    #[cfg(test)]
    made: AtomicU64,
    /// Programs run so far, and their dispatches.
    programs: AtomicU64,
    dispatches: AtomicU64,
    /// Nanoseconds programs spent on the host recording and submitting
    /// their dispatches, and then waiting for the device and reading back.
    recording_ns: AtomicU64,
    waiting_ns: AtomicU64,
    scratch: Mutex<Vec<Scratch>>,
    /// Why the device was lost, once it has been.
    lost: Arc<Mutex<Option<String>>>,
    /// The decoder kernels, compiled on first use.
    ops: OnceLock<Result<program::Ops, NnError>>,
    /// The ONNX encoder kernels, compiled on first use.
    encoder: OnceLock<Result<encoder::Kernels, NnError>>,
    /// Bytes held by live [`program::Buffer`]s (KV caches, activations).
    work: Arc<AtomicU64>,
    /// Per-kernel device times (`WEFT_NN_PROFILE`).
    profiler: Option<Profiler>,
    /// Whether programs submit in chunks as they record (hardware GPUs).
    /// A software device runs on the cores that record: chunks gained
    /// nothing there (SmolLM2 on llvmpipe, 1.22 s a token either way), and
    /// one submission keeps its recording and waiting times apart.
    chunked: bool,
}

impl fmt::Debug for Gpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gpu")
            .field("adapter", &self.adapter)
            .field("device_bytes", &self.device_bytes())
            .field("matmuls", &self.matmuls())
            .field("max_buffer", &self.max_buffer)
            .finish_non_exhaustive()
    }
}

fn runtime(message: String) -> NnError {
    NnError::new(NnErrorKind::RuntimeError, message)
}

fn too_large(message: String) -> NnError {
    NnError::new(NnErrorKind::TooLarge, message)
}

/// The hardware GPUs wgpu can see on Vulkan, Metal or DX12, one entry per
/// device (an adapter listed by two backends counts once); software
/// adapters such as llvmpipe are left out. Used to detect a node's GPU
/// count. wgpu reports no device memory size, so none is given here.
pub fn hardware_gpus() -> Vec<AdapterSummary> {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = wgpu::Backends::PRIMARY;
    desc.flags = wgpu::InstanceFlags::empty();
    let desc = desc.with_env();
    let backends = desc.backends;
    let instance = wgpu::Instance::new(desc);
    let mut seen = std::collections::BTreeSet::new();
    block_on(instance.enumerate_adapters(backends))
        .into_iter()
        .map(|a| a.get_info())
        .filter(|i| i.device_type != wgpu::DeviceType::Cpu)
        .filter(|i| {
            let id = if i.device_pci_bus_id.is_empty() {
                format!("{:x}:{:x}:{}", i.vendor, i.device, i.name)
            } else {
                i.device_pci_bus_id.clone()
            };
            seen.insert(id)
        })
        .map(|i| summary(&i))
        .collect()
}

/// `matmul.wgsl`'s tiled kernel and `gemv`'s, compiled to read B in
/// `format` (`weights.wgsl`).
fn compile_products(
    device: &wgpu::Device,
    layout: &wgpu::PipelineLayout,
    format: WeightFormat,
    gemv: Gemv,
) -> Result<[wgpu::ComputePipeline; 2], String> {
    let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let source = format.source() + include_str!("matmul.wgsl");
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("weft-nn matmul"),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    });
    let entry = |name| {
        device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("weft-nn matmul"),
            layout: Some(layout),
            module: &module,
            entry_point: Some(name),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &[],
                // Every tile entry is written before it is read.
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        })
    };
    let pipelines = [entry("main"), entry(gemv.entry_point())];
    match block_on(scope.pop()) {
        Some(e) => Err(format!(
            "compiling weft-nn's matmul kernel for {format:?} weights: {e}"
        )),
        None => Ok(pipelines),
    }
}

fn summary(info: &wgpu::AdapterInfo) -> AdapterSummary {
    AdapterSummary {
        name: info.name.clone(),
        backend: info.backend.to_str().to_string(),
        device_type: match info.device_type {
            wgpu::DeviceType::DiscreteGpu => "discrete-gpu",
            wgpu::DeviceType::IntegratedGpu => "integrated-gpu",
            wgpu::DeviceType::VirtualGpu => "virtual-gpu",
            wgpu::DeviceType::Cpu => "cpu",
            wgpu::DeviceType::Other => "other",
        }
        .to_string(),
    }
}

/// The process's GPU, once set up (or why it could not be).
static SHARED: OnceLock<Result<Arc<Gpu>, NnError>> = OnceLock::new();

impl Gpu {
    /// The process's GPU, set up on first use; every later call returns the
    /// same one, or the same error (no retry: the environment does not
    /// change while the process runs).
    ///
    /// # Errors
    ///
    /// `UnsupportedOperation` when no adapter is usable, with the fix (a
    /// Vulkan driver, or `WGPU_BACKEND`); `RuntimeError` when the device or
    /// the kernels cannot be set up.
    pub fn shared() -> Result<Arc<Gpu>, NnError> {
        SHARED.get_or_init(|| Gpu::new().map(Arc::new)).clone()
    }

    /// The process's GPU if something has set it up already; never sets it
    /// up (for metrics, which must not start a device).
    pub fn if_started() -> Option<Arc<Gpu>> {
        SHARED.get().and_then(|g| g.as_ref().ok()).cloned()
    }

    fn new() -> Result<Self, NnError> {
        Self::with_gemv(None)
    }

    /// [`Gpu::new`] running the few-row products with `gemv`, or with
    /// the kernel its device calls for (see [`Gemv::for_device`]).
    fn with_gemv(gemv: Option<Gemv>) -> Result<Self, NnError> {
        let profile = std::env::var("WEFT_NN_PROFILE").is_ok_and(|v| !v.is_empty() && v != "0");
        Self::open(gemv, profile)
    }

    /// [`Gpu::with_gemv`], keeping per-kernel device times when `profile`
    /// and the device writes timestamps.
    fn open(gemv: Option<Gemv>, profile: bool) -> Result<Self, NnError> {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        // Vulkan, Metal and DX12: GL is not compiled in (on Linux its
        // llvmpipe would shadow the Vulkan one).
        desc.backends = wgpu::Backends::PRIMARY;
        // Not the debug-build default (validation layers, debug labels):
        // `WGPU_DEBUG=1` / `WGPU_VALIDATION=1` turn them on.
        desc.flags = wgpu::InstanceFlags::empty();
        let desc = desc.with_env();
        let backends = desc.backends;
        let instance = wgpu::Instance::new(desc);
        let adapter = if std::env::var_os("WGPU_ADAPTER_NAME").is_some() {
            block_on(wgpu::util::initialize_adapter_from_env(&instance, None))
        } else {
            block_on(
                instance.request_adapter(&wgpu::RequestAdapterOptions {
                    power_preference: wgpu::PowerPreference::from_env()
                        .unwrap_or(wgpu::PowerPreference::HighPerformance),
                    ..Default::default()
                }),
            )
        }
        .map_err(|e| {
            NnError::new(
                NnErrorKind::UnsupportedOperation,
                format!(
                    "no GPU adapter for backends {} ({e}): install a Vulkan driver \
                     (`scripts/install-vulkan.sh`, i.e. `apt-get install mesa-vulkan-drivers \
                     libvulkan1` on Debian, whose llvmpipe device needs no GPU) or choose a \
                     backend built in (vulkan, metal, dx12) with WGPU_BACKEND",
                    backends
                        .iter_names()
                        .map(|(n, _)| n.to_lowercase())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
        let info = adapter.get_info();
        let summary = summary(&info);
        let limits = adapter.limits();
        let needs = [
            (
                "invocations per workgroup",
                limits.max_compute_invocations_per_workgroup,
                WORKGROUP_THREADS,
            ),
            ("workgroup size x", limits.max_compute_workgroup_size_x, 16),
            ("workgroup size y", limits.max_compute_workgroup_size_y, 16),
            (
                "workgroup storage bytes",
                limits.max_compute_workgroup_storage_size,
                WORKGROUP_BYTES,
            ),
            (
                "storage buffers per stage",
                limits.max_storage_buffers_per_shader_stage,
                3,
            ),
        ];
        for (what, has, need) in needs {
            if has < need {
                return Err(NnError::new(
                    NnErrorKind::UnsupportedOperation,
                    format!(
                        "GPU adapter {summary} allows {has} {what}; weft-nn's matmul needs {need}"
                    ),
                ));
            }
        }
        // Timestamps around each dispatch, when asked for and offered.
        let profile = profile && adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY);
        // Everything the adapter offers: large storage bindings matter.
        let (device, queue) = block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("weft-nn"),
            required_features: if profile {
                wgpu::Features::TIMESTAMP_QUERY
            } else {
                wgpu::Features::empty()
            },
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| runtime(format!("opening GPU {summary}: {e}")))?;
        // Calls capture their errors in scopes; this only sees strays.
        device.on_uncaptured_error(Arc::new(|e| {
            eprintln!("weft-nn: uncaptured GPU error: {e}");
        }));
        let lost = Arc::new(Mutex::new(None));
        let lost_cb = Arc::clone(&lost);
        device.set_device_lost_callback(move |reason, message| {
            *lost_cb.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(format!("{reason:?}: {message}"));
        });

        let buffer = |binding, ty, min| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty,
                has_dynamic_offset: false,
                min_binding_size: NonZeroU64::new(min),
            },
            count: None,
        };
        let storage = |read_only| wgpu::BufferBindingType::Storage { read_only };
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("weft-nn matmul"),
            entries: &[
                buffer(0, storage(true), 4),
                buffer(1, storage(true), 4),
                buffer(2, storage(false), 4),
                buffer(3, wgpu::BufferBindingType::Uniform, PARAMS_BYTES),
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("weft-nn matmul"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let gemv = gemv.unwrap_or_else(|| Gemv::for_device(info.device_type));
        let [pipeline, gemv_pipeline] =
            compile_products(&device, &pipeline_layout, WeightFormat::F32, gemv)
                .map_err(|e| runtime(format!("{e} on {summary}")))?;
        let max_buffer = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size)
            .min(MAX_BUFFER)
            & !3;
        let profiler = profile.then(|| Profiler {
            period_ns: queue.get_timestamp_period(),
            kernels: Mutex::default(),
        });
        Ok(Self {
            profiler,
            chunked: info.device_type != wgpu::DeviceType::Cpu,
            device,
            queue,
            adapter: summary,
            pipeline,
            gemv_pipeline,
            gemv,
            layout,
            pipeline_layout,
            packed: Default::default(),
            keeps_blocks: !std::env::var("WEFT_NN_GPU_WEIGHTS")
                .is_ok_and(|v| v.eq_ignore_ascii_case("f32")),
            max_buffer,
            max_groups: limits.max_compute_workgroups_per_dimension as usize,
            resident: Arc::new(AtomicU64::new(0)),
            matmuls: AtomicU64::new(0),
            round_trips: AtomicU64::new(0),
            written: AtomicU64::new(0),
            #[cfg(test)]
            made: AtomicU64::new(0),
            programs: AtomicU64::new(0),
            dispatches: AtomicU64::new(0),
            recording_ns: AtomicU64::new(0),
            waiting_ns: AtomicU64::new(0),
            scratch: Mutex::new(Vec::new()),
            lost,
            ops: OnceLock::new(),
            encoder: OnceLock::new(),
            work: Arc::new(AtomicU64::new(0)),
        })
    }

    /// A separate `Gpu` that acts as if its device allowed only
    /// `max_buffer` bytes per buffer and `max_groups` workgroups per
    /// dispatch dimension: the tests of chunking and panels.
    #[cfg(test)]
    fn limited(max_buffer: u64, max_groups: usize, gemv: Option<Gemv>) -> Result<Self, NnError> {
        let mut gpu = Self::with_gemv(gemv)?;
        gpu.max_buffer = max_buffer;
        gpu.max_groups = max_groups;
        Ok(gpu)
    }

    /// Whether a GGUF decoder's weights in F16, BF16, Q8_0, Q4_0 or Q4_1
    /// stay in their blocks on this device: yes, unless
    /// `WEFT_NN_GPU_WEIGHTS=f32` was set when it was opened (they then go
    /// up as f32, as before: the same products in 2-6.4x the bytes).
    pub(crate) fn keeps_blocks(&self) -> bool {
        self.keeps_blocks
    }

    /// The adapter this runs on.
    pub fn adapter(&self) -> AdapterSummary {
        self.adapter.clone()
    }

    /// Bytes held on the device by live [`GpuMatrix`]es (weights) and
    /// ONNX models' constant operands.
    pub fn device_bytes(&self) -> u64 {
        self.resident.load(Ordering::Relaxed)
    }

    /// Products ([`Gpu::matmul`], [`Gpu::matmul_weights`]) run so far.
    pub fn matmuls(&self) -> u64 {
        self.matmuls.load(Ordering::Relaxed)
    }

    /// Submissions read back so far: one per product run alone, one per
    /// decoder pass or ONNX call kept on the device (whatever it runs).
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// Bytes that programs (ONNX calls, decoder passes) uploaded with
    /// their submissions so far: each call's inputs and small tables
    /// (indices, strided-copy layouts), not the weights and constants a
    /// model uploaded once at load. Products run one at a time
    /// (`WEFT_NN_ONNX_RESIDENT=0`) upload through their own path and are
    /// not counted.
    pub fn bytes_written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Waits for everything submitted so far.
    fn wait(&self) -> Result<(), NnError> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| runtime(format!("waiting for the GPU: {e}")))?;
        Ok(())
    }

    /// Waits until the mapping whose callback sends on `rx` completes.
    ///
    /// Another thread's poll of the shared device may be the one that
    /// runs the callback, and it may run it after our own poll returned,
    /// so one poll and a `try_recv` is not enough: poll, then wait a
    /// little for the callback, until it comes or the device is lost.
    fn await_mapping(
        &self,
        rx: &mpsc::Receiver<Result<(), wgpu::BufferAsyncError>>,
    ) -> Result<(), String> {
        let give_up = std::time::Instant::now() + MAPPING_TIMEOUT;
        loop {
            self.wait().map_err(|e| e.message)?;
            match rx.recv_timeout(std::time::Duration::from_millis(20)) {
                Ok(r) => return r.map_err(|e| e.to_string()),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.check_alive().map_err(|e| e.message)?;
                    return Err("the mapping was dropped before it completed".into());
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.check_alive().map_err(|e| e.message)?;
                    if std::time::Instant::now() > give_up {
                        return Err(format!(
                            "the mapping did not complete within {MAPPING_TIMEOUT:?}"
                        ));
                    }
                }
            }
        }
    }

    fn check_alive(&self) -> Result<(), NnError> {
        match &*self.lost.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(why) => Err(runtime(format!(
                "the GPU device ({}) was lost: {why}",
                self.adapter
            ))),
            None => Ok(()),
        }
    }

    /// Error scopes catching what the calls until [`Gpu::pop_scopes`]
    /// cause on this thread: out of memory, internal, validation.
    fn push_scopes(&self) -> Scopes {
        Scopes(
            [
                wgpu::ErrorFilter::OutOfMemory,
                wgpu::ErrorFilter::Internal,
                wgpu::ErrorFilter::Validation,
            ]
            .map(|f| self.device.push_error_scope(f))
            .into(),
        )
    }

    /// Pops the scopes and turns what they caught into an error:
    /// `TooLarge` for out of memory, else `RuntimeError`.
    fn pop_scopes(&self, mut scopes: Scopes, doing: &str) -> Result<(), NnError> {
        let mut caught = Vec::new();
        while let Some(g) = scopes.0.pop() {
            caught.push(block_on(g.pop()));
        }
        let [invalid, internal, oom] = <[_; 3]>::try_from(caught).expect("three scopes");
        if let Some(e) = oom {
            return Err(too_large(format!(
                "{doing}: the GPU ({}) is out of memory: {e}",
                self.adapter
            )));
        }
        match internal.or(invalid) {
            Some(e) => Err(runtime(format!(
                "{doing} on the GPU ({}): {e}",
                self.adapter
            ))),
            None => Ok(()),
        }
    }
}

/// wgpu error scopes, pushed in order; wgpu requires them popped in
/// reverse, which dropping them (on an early return) does too.
struct Scopes(Vec<wgpu::ErrorScopeGuard>);

impl Drop for Scopes {
    fn drop(&mut self) {
        while let Some(g) = self.0.pop() {
            drop(g);
        }
    }
}

/// Runs a future to completion on this thread (wgpu's native futures are
/// ready at once or after a device poll; no executor needed).
fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        match f.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
