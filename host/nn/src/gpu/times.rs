//! Where a [`Gpu`]'s time goes: each program's host recording and device
//! waiting ([`PassTimes`]), and, when profiled, each kernel's device time
//! ([`KernelTime`]).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Gpu;

/// Where a [`Gpu`]'s programs spent their time, from [`Gpu::pass_times`]:
/// a program (a decoder pass, an ONNX call kept on the device) records
/// its dispatches and submits them on the host, then waits for the device
/// and reads its results back. Recording is host work that grows with the
/// dispatches, whatever the device; waiting is the device's own time plus
/// the copies back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassTimes {
    /// Programs run.
    pub programs: u64,
    /// Dispatches those programs recorded.
    pub dispatches: u64,
    /// Time spent recording and submitting.
    pub recording: std::time::Duration,
    /// Time spent waiting for the device and reading back.
    pub waiting: std::time::Duration,
}

/// One kernel's share of the device's time, from [`Gpu::take_kernel_times`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelTime {
    /// The kernel's entry point (`gemv_split`, `rms_norm`, `attention`, …;
    /// `main` is the tiled product).
    pub kernel: &'static str,
    /// Its dispatches timed.
    pub dispatches: u64,
    /// The device's time running them, between timestamps around each.
    pub device: std::time::Duration,
}

/// Per-kernel device time, kept when `WEFT_NN_PROFILE` is set and the
/// device writes timestamps.
pub(super) struct Profiler {
    /// Nanoseconds per timestamp tick.
    pub(super) period_ns: f32,
    /// Per kernel: (dispatches, nanoseconds).
    pub(super) kernels: Mutex<std::collections::BTreeMap<&'static str, (u64, u64)>>,
}

impl Profiler {
    pub(super) fn add(&self, steps: impl Iterator<Item = (&'static str, u64)>) {
        let mut kernels = self.kernels.lock().unwrap_or_else(|e| e.into_inner());
        for (name, ns) in steps {
            let k = kernels.entry(name).or_default();
            k.0 += 1;
            k.1 += ns;
        }
    }
}

impl Gpu {
    /// Where the programs (decoder passes, ONNX calls kept on the device)
    /// run so far spent their time: see [`PassTimes`].
    pub fn pass_times(&self) -> PassTimes {
        let ns = |c: &AtomicU64| std::time::Duration::from_nanos(c.load(Ordering::Relaxed));
        PassTimes {
            programs: self.programs.load(Ordering::Relaxed),
            dispatches: self.dispatches.load(Ordering::Relaxed),
            recording: ns(&self.recording_ns),
            waiting: ns(&self.waiting_ns),
        }
    }

    /// The device time each kernel took in the programs run since the
    /// last call, longest first; empty unless the process started with
    /// `WEFT_NN_PROFILE=1` and the device writes timestamps. Each profiled
    /// dispatch (up to 2048 a program) runs in a compute pass of its own
    /// between two timestamps, so a profiled program runs a little slower
    /// than an unprofiled one: compare kernels with each other.
    pub fn take_kernel_times(&self) -> Vec<KernelTime> {
        let Some(profiler) = &self.profiler else {
            return Vec::new();
        };
        let kernels =
            std::mem::take(&mut *profiler.kernels.lock().unwrap_or_else(|e| e.into_inner()));
        let mut times: Vec<KernelTime> = kernels
            .into_iter()
            .map(|(kernel, (dispatches, ns))| KernelTime {
                kernel,
                dispatches,
                device: std::time::Duration::from_nanos(ns),
            })
            .collect();
        times.sort_by_key(|t| std::cmp::Reverse(t.device));
        times
    }
}
