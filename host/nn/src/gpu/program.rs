//! Whole computations on the device: a [`Program`] records kernel
//! dispatches (weight products and the kernels of `ops.wgsl`) on buffers
//! that stay there, then submits them (in chunks, as they are recorded)
//! and reads one result back. Between dispatches nothing leaves the device, so a
//! decoder's forward pass costs one round trip, not one per product.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Instant;

mod decoder;
mod products;
mod submission;

pub(crate) use decoder::{Attention, FfnAct, Mamba2, NormKind, Qkv, Selective, Xielu};
pub(crate) use submission::Reuse;
use submission::Timed;

use super::matmul::binding;
use super::{Gpu, PARAMS_STRIDE, runtime};
use crate::NnError;

/// Threads per workgroup of the `ops.wgsl` kernels.
const THREADS: usize = 64;
/// Workgroups an element-wise dispatch uses at most (each thread loops).
const SPREAD: usize = 1024;
/// Dispatches a program submits first, and at most at once later: see
/// [`Program::run_reads`].
const FIRST_CHUNK: usize = 16;
const MAX_CHUNK: usize = 128;

/// The compiled `ops.wgsl` (and `ssm.wgsl`) kernels.
pub(super) struct Ops {
    rms_norm: Kernel,
    head_norm: Kernel,
    add_rms_norm: Kernel,
    rope: Kernel,
    add: Kernel,
    clamp: Kernel,
    swiglu: Kernel,
    attention: Kernel,
    short_conv: Kernel,
    ssm_scan: Kernel,
    selective_scan: Kernel,
    copy_rows: Kernel,
}

pub(super) struct Kernel {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
    /// The entry point, which names its dispatches in [`Gpu::take_kernel_times`].
    name: &'static str,
}

impl Ops {
    pub(super) fn compile(device: &wgpu::Device) -> Self {
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("weft-nn ops"),
            source: wgpu::ShaderSource::Wgsl(
                concat!(
                    include_str!("reduce.wgsl"),
                    include_str!("ops.wgsl"),
                    include_str!("ssm.wgsl")
                )
                .into(),
            ),
        });
        let kernel = |name| Kernel::new(device, &module, name);
        Self {
            rms_norm: kernel("rms_norm"),
            head_norm: kernel("head_norm"),
            add_rms_norm: kernel("add_rms_norm"),
            rope: kernel("rope"),
            add: kernel("add"),
            clamp: kernel("clamp_values"),
            swiglu: kernel("swiglu"),
            attention: kernel("attention"),
            short_conv: kernel("short_conv"),
            ssm_scan: kernel("ssm_scan"),
            selective_scan: kernel("selective_scan"),
            copy_rows: kernel("copy_rows"),
        }
    }
}

impl Kernel {
    /// The entry point `name` of `module`.
    pub(super) fn new(
        device: &wgpu::Device,
        module: &wgpu::ShaderModule,
        name: &'static str,
    ) -> Self {
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(name),
            layout: None,
            module,
            entry_point: Some(name),
            compilation_options: wgpu::PipelineCompilationOptions::default(),
            cache: None,
        });
        let layout = pipeline.get_bind_group_layout(0);
        Kernel {
            pipeline,
            layout,
            name,
        }
    }
}

/// A device buffer of f32s, made by [`Gpu::buffer`]; counted in
/// [`Gpu::work_bytes`] until dropped.
#[derive(Debug)]
pub(crate) struct Buffer {
    raw: wgpu::Buffer,
    /// The owning `Gpu`'s count.
    owner: Arc<AtomicU64>,
}

impl Buffer {
    /// How many values (4 bytes each) it holds.
    pub(crate) fn floats(&self) -> usize {
        (self.raw.size() / 4) as usize
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        self.owner.fetch_sub(self.raw.size(), Ordering::Relaxed);
    }
}

/// One recorded dispatch.
struct Step<'a> {
    /// The kernel's entry point.
    name: &'static str,
    pipeline: &'a wgpu::ComputePipeline,
    layout: &'a wgpu::BindGroupLayout,
    /// Storage bindings 0.., as (buffer, first byte, bytes): handles of
    /// their own, so a value may be dropped once its last step is recorded.
    buffers: Vec<(wgpu::Buffer, u64, u64)>,
    params: Params,
    groups: [u32; 2],
}

/// A step's parameters: its kernel's uniform, up to 16 words (most take 8,
/// [`wide`] pads them).
type Params = [u32; 16];

/// Bytes of a step's uniform binding.
const PARAMS_BINDING: u64 = 64;

/// Eight words of parameters, as a step's 16.
fn wide(eight: [u32; 8]) -> Params {
    let mut p = [0; 16];
    p[..8].copy_from_slice(&eight);
    p
}

/// Dispatches recorded to run in order, read back once; see the module
/// docs. Made by [`Gpu::program`].
pub(crate) struct Program<'a> {
    gpu: &'a Gpu,
    ops: &'a Ops,
    steps: Vec<Step<'a>>,
    writes: Vec<(wgpu::Buffer, Vec<f32>)>,
    products: u64,
}

impl Gpu {
    /// The `ops.wgsl` kernels, compiled on first use.
    fn ops(&self) -> Result<&Ops, NnError> {
        self.ops
            .get_or_init(|| {
                let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
                let ops = Ops::compile(&self.device);
                match super::block_on(scope.pop()) {
                    Some(e) => Err(runtime(format!(
                        "compiling weft-nn's decoder kernels on {}: {e}",
                        self.adapter
                    ))),
                    None => Ok(ops),
                }
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// A device buffer of `floats` f32s (zeros), for a [`Program`]'s
    /// activations and caches: counted in [`Gpu::work_bytes`], not in
    /// [`Gpu::device_bytes`].
    ///
    /// # Errors
    ///
    /// `TooLarge` past the device's buffer size.
    pub(crate) fn buffer(&self, floats: usize, label: &str) -> Result<Buffer, NnError> {
        self.counted_buffer(floats, None, label, &self.work)
    }

    /// A device buffer holding `data` from now on, for a model's constant
    /// operands (biases, norm weights): uploaded once at load, counted in
    /// [`Gpu::device_bytes`] with the weights. Nothing writes to it.
    ///
    /// # Errors
    ///
    /// `TooLarge` past the device's buffer size or memory.
    pub(crate) fn constant(&self, data: &[f32], label: &str) -> Result<Buffer, NnError> {
        self.counted_buffer(data.len(), Some(data), label, &self.resident)
    }

    fn counted_buffer(
        &self,
        floats: usize,
        data: Option<&[f32]>,
        label: &str,
        owner: &Arc<AtomicU64>,
    ) -> Result<Buffer, NnError> {
        let bytes = (floats.max(1) * 4) as u64;
        if bytes > self.max_buffer {
            return Err(super::too_large(format!(
                "{label}: {bytes} bytes is more than one GPU buffer may hold ({} on {})",
                self.max_buffer, self.adapter
            )));
        }
        use wgpu::BufferUsages as U;
        let scopes = self.push_scopes();
        let raw = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes,
            usage: U::STORAGE | U::COPY_SRC | U::COPY_DST,
            mapped_at_creation: false,
        });
        if let Some(data) = data.filter(|d| !d.is_empty()) {
            self.queue.write_buffer(&raw, 0, bytemuck::cast_slice(data));
        }
        self.pop_scopes(scopes, label)?;
        owner.fetch_add(bytes, Ordering::Relaxed);
        #[cfg(test)]
        self.made.fetch_add(1, Ordering::Relaxed);
        Ok(Buffer {
            raw,
            owner: Arc::clone(owner),
        })
    }

    /// How many buffers it has made (tests).
    #[cfg(test)]
    pub(crate) fn buffers_made(&self) -> u64 {
        self.made.load(Ordering::Relaxed)
    }

    /// Floats a buffer's binding offset is a multiple of.
    pub(crate) fn offset_alignment(&self) -> usize {
        (self.device.limits().min_storage_buffer_offset_alignment as usize / 4).max(1)
    }

    /// Bytes one buffer may hold.
    pub(crate) fn max_buffer(&self) -> u64 {
        self.max_buffer
    }

    /// Bytes of live working buffers: decoder sessions' KV caches and
    /// activations.
    pub fn work_bytes(&self) -> u64 {
        self.work.load(Ordering::Relaxed)
    }

    /// Copies the first `floats` of `from` into `to` (growing a cache).
    pub(crate) fn copy(&self, from: &Buffer, to: &Buffer, floats: usize) -> Result<(), NnError> {
        self.check_alive()?;
        let scopes = self.push_scopes();
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
        encoder.copy_buffer_to_buffer(&from.raw, 0, &to.raw, 0, (floats * 4) as u64);
        self.queue.submit([encoder.finish()]);
        self.pop_scopes(scopes, "copying on the GPU")
    }

    /// The entry point of [`Gpu::product_kernel`].
    pub(super) fn product_name(&self, few: bool) -> &'static str {
        if few { self.gemv.entry_point() } else { "main" }
    }

    /// Columns of C per workgroup of the `gemv` kernel in use.
    pub(super) fn gemv_width(&self) -> usize {
        self.gemv.columns()
    }

    /// An empty [`Program`].
    ///
    /// # Errors
    ///
    /// `RuntimeError` when the kernels do not compile on this device.
    pub(crate) fn program(&self) -> Result<Program<'_>, NnError> {
        Ok(Program {
            gpu: self,
            ops: self.ops()?,
            steps: Vec::new(),
            writes: Vec::new(),
            products: 0,
        })
    }
}

/// Workgroups for an element-wise dispatch over `count` floats.
pub(super) fn groups(count: usize) -> [u32; 2] {
    [count.div_ceil(THREADS).clamp(1, SPREAD) as u32, 1]
}

pub(super) fn whole(b: &Buffer) -> (wgpu::Buffer, u64, u64) {
    (b.raw.clone(), 0, b.raw.size())
}

impl<'a> Program<'a> {
    /// The GPU it records for.
    pub(super) fn gpu(&self) -> &'a Gpu {
        self.gpu
    }

    /// Uploads `data` into the start of `to` before the dispatches run.
    pub(crate) fn write(&mut self, to: &Buffer, data: Vec<f32>) {
        self.writes.push((to.raw.clone(), data));
    }

    pub(super) fn step(
        &mut self,
        kernel: &'a Kernel,
        buffers: Vec<(wgpu::Buffer, u64, u64)>,
        params: [u32; 8],
        groups: [u32; 2],
    ) {
        self.step_wide(kernel, buffers, wide(params), groups);
    }

    /// [`Program::step`] of a kernel that takes 16 words of parameters.
    pub(super) fn step_wide(
        &mut self,
        kernel: &'a Kernel,
        buffers: Vec<(wgpu::Buffer, u64, u64)>,
        params: Params,
        groups: [u32; 2],
    ) {
        self.steps.push(Step {
            name: kernel.name,
            pipeline: &kernel.pipeline,
            layout: &kernel.layout,
            buffers,
            params,
            groups,
        });
    }

    /// [`Program::run_reads`] of the first `floats` of `result` (tests).
    #[cfg(test)]
    pub(crate) fn run(self, result: &Buffer, floats: usize) -> Result<Vec<f32>, NnError> {
        let mut out = self.run_reads(&[(result, floats)])?;
        Ok(out.pop().unwrap_or_default())
    }

    /// [`Program::run_reads`] of the first `floats` of `result`, for a
    /// program run again and again (a decoder's
    /// passes): its parameters go to `reuse`'s buffer, and each step whose
    /// buffers are those of the same step last time binds the bind group
    /// made then. Making a bind group is most of the host's cost of a
    /// dispatch.
    ///
    /// # Errors
    ///
    /// As [`Program::run_reads`].
    pub(crate) fn run_reusing(
        self,
        reuse: &mut Reuse,
        result: &Buffer,
        floats: usize,
    ) -> Result<Vec<f32>, NnError> {
        let mut out = self.run_reads_reusing(reuse, &[(result, floats)])?;
        Ok(out.pop().unwrap_or_default())
    }

    /// [`Program::run_reads`] with [`Program::run_reusing`]'s `reuse`.
    ///
    /// # Errors
    ///
    /// As [`Program::run_reads`].
    pub(crate) fn run_reads_reusing(
        self,
        reuse: &mut Reuse,
        reads: &[(&Buffer, usize)],
    ) -> Result<Vec<Vec<f32>>, NnError> {
        let gpu = self.gpu;
        gpu.check_alive()?;
        let scopes = gpu.push_scopes();
        let ran = self.submit(reads, Some(&mut *reuse));
        let scoped = gpu.pop_scopes(scopes, "running a pass on the GPU");
        if ran.is_err() || scoped.is_err() {
            // What a failed run made (an invalid buffer or bind group
            // among them) is not kept.
            *reuse = Reuse::default();
        }
        let out = ran?;
        scoped?;
        Ok(out)
    }

    /// Runs the recorded writes and dispatches, then reads back the first
    /// floats of several buffers: `(buffer, floats)` each. On a hardware
    /// GPU the dispatches go to the device in chunks (16, then 32, … up to
    /// 128), each submitted as soon as it is recorded, so that the device
    /// works while the host records; a software one gets them at once.
    ///
    /// # Errors
    ///
    /// `TooLarge` when the device runs out of memory; `RuntimeError` when
    /// it fails or is lost.
    pub(crate) fn run_reads(self, reads: &[(&Buffer, usize)]) -> Result<Vec<Vec<f32>>, NnError> {
        let gpu = self.gpu;
        gpu.check_alive()?;
        let scopes = gpu.push_scopes();
        let ran = self.submit(reads, None);
        let scoped = gpu.pop_scopes(scopes, "running a pass on the GPU");
        let out = ran?;
        scoped?;
        Ok(out)
    }

    fn submit(
        self,
        reads: &[(&Buffer, usize)],
        mut reuse: Option<&mut Reuse>,
    ) -> Result<Vec<Vec<f32>>, NnError> {
        let gpu = self.gpu;
        let device = &gpu.device;
        let started = Instant::now();
        for (to, data) in &self.writes {
            gpu.queue.write_buffer(to, 0, bytemuck::cast_slice(data));
            gpu.written
                .fetch_add(data.len() as u64 * 4, Ordering::Relaxed);
        }
        let stride = PARAMS_STRIDE as usize;
        let mut params = vec![0u8; self.steps.len().max(1) * stride];
        for (i, s) in self.steps.iter().enumerate() {
            params[i * stride..][..PARAMS_BINDING as usize]
                .copy_from_slice(bytemuck::cast_slice(&s.params));
        }
        use wgpu::BufferUsages as U;
        let new_uniforms = |bytes: usize| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("weft-nn program params"),
                size: bytes as u64,
                usage: U::UNIFORM | U::COPY_DST,
                mapped_at_creation: false,
            })
        };
        let uniforms = match reuse.as_deref_mut() {
            Some(r) => {
                if r.params
                    .as_ref()
                    .is_none_or(|b| b.size() < params.len() as u64)
                {
                    // Bind groups of the old buffer are stale.
                    r.groups.clear();
                    r.params = Some(new_uniforms(params.len()));
                }
                r.params.clone().expect("just made")
            }
            None => new_uniforms(params.len()),
        };
        // Ordered after the submissions that read the parameters last time.
        gpu.queue.write_buffer(&uniforms, 0, &params);
        // A staging buffer per read: together they may pass what one
        // buffer may hold.
        let staging: Vec<wgpu::Buffer> = reads
            .iter()
            .map(|&(_, floats)| {
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("weft-nn program result"),
                    size: (floats * 4).max(4) as u64,
                    usage: U::MAP_READ | U::COPY_DST,
                    mapped_at_creation: false,
                })
            })
            .collect();
        let mut bind_group = |i: usize, s: &Step<'_>| {
            if let Some(r) = reuse.as_deref_mut()
                && let Some((layout, buffers, group)) = r.groups.get(i)
                && layout == s.layout
                && *buffers == s.buffers
            {
                return group.clone();
            }
            let mut entries: Vec<_> = s
                .buffers
                .iter()
                .enumerate()
                .map(|(b, (buf, at, size))| binding(b as u32, buf, *at, *size))
                .collect();
            entries.push(binding(
                s.buffers.len() as u32,
                &uniforms,
                (i * stride) as u64,
                PARAMS_BINDING,
            ));
            let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: s.layout,
                entries: &entries,
            });
            if let Some(r) = reuse.as_deref_mut() {
                #[cfg(test)]
                {
                    r.made += 1;
                }
                let made = (s.layout.clone(), s.buffers.clone(), group.clone());
                match r.groups.get_mut(i) {
                    Some(slot) => *slot = made,
                    None => r.groups.push(made),
                }
            }
            group
        };
        let new_encoder = || {
            device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("weft-nn program"),
            })
        };
        // Profiling: the first steps each in a pass of their own between
        // two timestamps, the rest together.
        let timed = gpu
            .profiler
            .as_ref()
            .filter(|_| !self.steps.is_empty())
            .map(|_| Timed::new(device, self.steps.len()));
        // The steps go to the device in growing chunks, each submitted
        // once recorded, so that the device runs one while the host
        // records the next (recording costs a few µs a dispatch, about
        // what a small dispatch costs the device).
        let mut encoder = new_encoder();
        let first = if gpu.chunked { FIRST_CHUNK } else { usize::MAX };
        let (mut at, mut chunk) = (0, first);
        while at < self.steps.len() {
            let last = (at + chunk).min(self.steps.len());
            while at < last {
                let (end, timestamp_writes) = match &timed {
                    Some(t) if at < t.steps => (at + 1, Some(t.writes(at))),
                    _ => (last, None),
                };
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("weft-nn program"),
                    timestamp_writes,
                });
                for (i, s) in self.steps.iter().enumerate().take(end).skip(at) {
                    pass.set_pipeline(s.pipeline);
                    pass.set_bind_group(0, &bind_group(i, s), &[]);
                    pass.dispatch_workgroups(s.groups[0], s.groups[1], 1);
                }
                at = end;
            }
            if at < self.steps.len() {
                gpu.queue
                    .submit([std::mem::replace(&mut encoder, new_encoder()).finish()]);
                chunk = chunk.saturating_mul(2).min(MAX_CHUNK);
            }
        }
        if let Some(r) = reuse {
            // Steps past this run's would hold their buffers for nothing.
            r.groups.truncate(self.steps.len());
        }
        for (&(from, floats), to) in reads.iter().zip(&staging) {
            encoder.copy_buffer_to_buffer(&from.raw, 0, to, 0, (floats * 4) as u64);
        }
        if let Some(t) = &timed {
            t.resolve(&mut encoder);
        }
        gpu.queue.submit([encoder.finish()]);
        let submitted = Instant::now();
        let failed = |e: String| runtime(format!("reading a pass back from the GPU: {e}"));
        let mut out = Vec::with_capacity(reads.len());
        for (&(_, floats), read) in reads.iter().zip(&staging) {
            let slice = read.slice(..(floats * 4).max(4) as u64);
            let (tx, rx) = mpsc::channel();
            slice.map_async(wgpu::MapMode::Read, move |r| {
                let _ = tx.send(r);
            });
            gpu.await_mapping(&rx).map_err(failed)?;
            {
                let view = slice
                    .get_mapped_range()
                    .map_err(|e| failed(e.to_string()))?;
                out.push(
                    view[..floats * 4]
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect(),
                );
            }
            read.unmap();
        }
        if reads.is_empty() {
            gpu.wait()?;
        }
        if let Some(t) = timed {
            let names: Vec<_> = self.steps.iter().map(|s| s.name).collect();
            t.collect(gpu, &names).map_err(failed)?;
        }
        gpu.matmuls.fetch_add(self.products, Ordering::Relaxed);
        gpu.round_trips.fetch_add(1, Ordering::Relaxed);
        gpu.programs.fetch_add(1, Ordering::Relaxed);
        gpu.dispatches
            .fetch_add(self.steps.len() as u64, Ordering::Relaxed);
        let nanos = |d: std::time::Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        gpu.recording_ns
            .fetch_add(nanos(submitted - started), Ordering::Relaxed);
        gpu.waiting_ns
            .fetch_add(nanos(submitted.elapsed()), Ordering::Relaxed);
        Ok(out)
    }
}
