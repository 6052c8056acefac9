//! What a submission keeps besides its dispatches: the bind groups a
//! decoder session's passes reuse ([`Reuse`]) and the timestamps of a
//! profiled one ([`Timed`]).

use std::sync::mpsc;

use crate::gpu::Gpu;

/// A step's bind group with the layout and the buffers it was made for.
pub(super) type Bound = (
    wgpu::BindGroupLayout,
    Vec<(wgpu::Buffer, u64, u64)>,
    wgpu::BindGroup,
);

/// What [`Program::run_reusing`](super::Program::run_reusing) keeps between runs: the parameters'
/// buffer and, per step, the bind group made for it with the buffers it
/// bound. Holding a bind group holds its buffers until the step's next
/// run binds others, a run with fewer steps drops it, or this is dropped;
/// a failed run starts it afresh.
#[derive(Default)]
pub(crate) struct Reuse {
    /// Bind groups made so far (tests).
    #[cfg(test)]
    pub(crate) made: usize,
    pub(super) params: Option<wgpu::Buffer>,
    pub(super) groups: Vec<Bound>,
}

impl Reuse {
    /// Bind groups kept (tests).
    #[cfg(test)]
    pub(crate) fn kept(&self) -> usize {
        self.groups.len()
    }
}

impl std::fmt::Debug for Reuse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reuse")
            .field("groups", &self.groups.len())
            .finish()
    }
}

/// The timestamps of one profiled submission: two per step, for the
/// first [`Timed::steps`] steps (a query set holds at most 4096).
pub(super) struct Timed {
    pub(super) steps: usize,
    queries: wgpu::QuerySet,
    resolved: wgpu::Buffer,
    staging: wgpu::Buffer,
}

impl Timed {
    pub(super) fn new(device: &wgpu::Device, steps: usize) -> Self {
        let steps = steps.clamp(1, wgpu::QUERY_SET_MAX_QUERIES as usize / 2);
        let bytes = (steps * 2 * 8) as u64;
        use wgpu::BufferUsages as U;
        let buffer = |usage| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("weft-nn timestamps"),
                size: bytes,
                usage,
                mapped_at_creation: false,
            })
        };
        Timed {
            steps,
            queries: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("weft-nn timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: (steps * 2) as u32,
            }),
            resolved: buffer(U::QUERY_RESOLVE | U::COPY_SRC),
            staging: buffer(U::MAP_READ | U::COPY_DST),
        }
    }

    /// The timestamps around step `i`'s pass.
    pub(super) fn writes(&self, i: usize) -> wgpu::ComputePassTimestampWrites<'_> {
        wgpu::ComputePassTimestampWrites {
            query_set: &self.queries,
            beginning_of_pass_write_index: Some(2 * i as u32),
            end_of_pass_write_index: Some(2 * i as u32 + 1),
        }
    }

    pub(super) fn resolve(&self, encoder: &mut wgpu::CommandEncoder) {
        let queries = (self.steps * 2) as u32;
        encoder.resolve_query_set(&self.queries, 0..queries, &self.resolved, 0);
        encoder.copy_buffer_to_buffer(&self.resolved, 0, &self.staging, 0, self.staging.size());
    }

    /// Reads the timestamps back (after the submission) and adds each
    /// step's time to its kernel's, `names` naming the steps.
    pub(super) fn collect(self, gpu: &Gpu, names: &[&'static str]) -> Result<(), String> {
        let slice = self.staging.slice(..);
        let (tx, rx) = mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        gpu.await_mapping(&rx)?;
        let ticks: Vec<u64> = slice
            .get_mapped_range()
            .map_err(|e| e.to_string())?
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect();
        if let Some(profiler) = &gpu.profiler {
            profiler.add(names.iter().zip(ticks.chunks_exact(2)).map(|(&name, t)| {
                let ns = t[1].saturating_sub(t[0]) as f64 * f64::from(profiler.period_ns);
                (name, ns as u64)
            }));
        }
        Ok(())
    }
}
