//! Prometheus metrics in the text exposition format, kept in atomics so the
//! invoke path never takes a global lock once a stage has been seen.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use weft_runtime::PoolStats;

/// Latency bucket upper bounds, in seconds.
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0, 5.0, 30.0,
];

/// Outcomes a call is counted under (the error codes of the API plus `ok`).
const OUTCOMES: [&str; 12] = [
    "ok",
    "bad_input",
    "retryable",
    "stage_failed",
    "init_failed",
    "trap",
    "memory_limit",
    "deadline_exceeded",
    "busy",
    "host_error",
    "cancelled",
    "other",
];

#[derive(Default)]
struct StageMetrics {
    outcomes: [AtomicU64; OUTCOMES.len()],
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

/// All metrics of one daemon.
#[derive(Default)]
pub struct Metrics {
    stages: RwLock<BTreeMap<String, Arc<StageMetrics>>>,
    uploads: Mutex<BTreeMap<&'static str, u64>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    fn stage(&self, name: &str) -> Arc<StageMetrics> {
        if let Some(m) = self
            .stages
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            return m.clone();
        }
        let mut map = self.stages.write().unwrap_or_else(|e| e.into_inner());
        map.entry(name.to_string()).or_default().clone()
    }

    /// Records one call of `stage` that ended with `outcome` (an API error code
    /// or `ok`) after `elapsed`.
    pub fn record_call(&self, stage: &str, outcome: &str, elapsed: Duration) {
        let m = self.stage(stage);
        let index = OUTCOMES
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(OUTCOMES.len() - 1);
        m.outcomes[index].fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        if let Some(b) = BUCKETS.iter().position(|&le| secs <= le) {
            m.buckets[b].fetch_add(1, Ordering::Relaxed);
        }
        m.count.fetch_add(1, Ordering::Relaxed);
        m.sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// Records a stage upload that ended with `outcome`.
    pub fn record_upload(&self, outcome: &'static str) {
        *self
            .uploads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(outcome)
            .or_default() += 1;
    }

    /// Renders everything, with the current pool counters per stage and the
    /// runtime's count of component compilations.
    pub fn render(&self, pools: &[(String, PoolStats)], compiles: u64) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP weft_component_compiles_total Components compiled (compile-cache misses).\n",
        );
        out.push_str("# TYPE weft_component_compiles_total counter\n");
        let _ = writeln!(out, "weft_component_compiles_total {compiles}");
        let stages = self.stages.read().unwrap_or_else(|e| e.into_inner());
        out.push_str("# HELP weft_stage_calls_total Stage invocations by outcome.\n");
        out.push_str("# TYPE weft_stage_calls_total counter\n");
        for (name, m) in stages.iter() {
            for (i, outcome) in OUTCOMES.iter().enumerate() {
                let n = m.outcomes[i].load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "weft_stage_calls_total{{stage=\"{name}\",outcome=\"{outcome}\"}} {n}"
                    );
                }
            }
        }
        out.push_str("# HELP weft_stage_call_duration_seconds Stage invocation latency.\n");
        out.push_str("# TYPE weft_stage_call_duration_seconds histogram\n");
        for (name, m) in stages.iter() {
            let mut cumulative = 0;
            for (i, le) in BUCKETS.iter().enumerate() {
                cumulative += m.buckets[i].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "weft_stage_call_duration_seconds_bucket{{stage=\"{name}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let count = m.count.load(Ordering::Relaxed);
            let sum = m.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(
                out,
                "weft_stage_call_duration_seconds_bucket{{stage=\"{name}\",le=\"+Inf\"}} {count}\n\
                 weft_stage_call_duration_seconds_sum{{stage=\"{name}\"}} {sum}\n\
                 weft_stage_call_duration_seconds_count{{stage=\"{name}\"}} {count}"
            );
        }
        out.push_str("# HELP weft_stage_instances Instances per stage by state.\n");
        out.push_str("# TYPE weft_stage_instances gauge\n");
        for (name, s) in pools {
            let busy = s.live.saturating_sub(s.idle);
            let _ = writeln!(
                out,
                "weft_stage_instances{{stage=\"{name}\",state=\"idle\"}} {}\n\
                 weft_stage_instances{{stage=\"{name}\",state=\"busy\"}} {busy}",
                s.idle
            );
        }
        out.push_str(
            "# HELP weft_stage_traps_total Calls that trapped and discarded their instance.\n",
        );
        out.push_str("# TYPE weft_stage_traps_total counter\n");
        for (name, s) in pools {
            let _ = writeln!(
                out,
                "weft_stage_traps_total{{stage=\"{name}\"}} {}",
                s.traps
            );
        }
        out.push_str("# HELP weft_stage_uploads_total Stage uploads by outcome.\n");
        out.push_str("# TYPE weft_stage_uploads_total counter\n");
        for (outcome, n) in self
            .uploads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(out, "weft_stage_uploads_total{{outcome=\"{outcome}\"}} {n}");
        }
        out
    }
}

/// The inference engine's gauges and counters.
pub fn render_inference(nn: &weft_runtime::EngineBackend, out: &mut String) {
    let engine = nn.engine().stats();
    let stats = nn.stats();
    let _ = write!(
        out,
        "# HELP weft_nn_models Models loaded by the inference engine.\n\
         # TYPE weft_nn_models gauge\nweft_nn_models {}\n\
         # HELP weft_nn_weight_bytes Bytes of weights the loaded models hold.\n\
         # TYPE weft_nn_weight_bytes gauge\nweft_nn_weight_bytes {}\n\
         # HELP weft_nn_device_bytes Bytes of those weights held on the GPU.\n\
         # TYPE weft_nn_device_bytes gauge\nweft_nn_device_bytes {}\n\
         # HELP weft_nn_computes_total wasi:nn compute calls served.\n\
         # TYPE weft_nn_computes_total counter\nweft_nn_computes_total {}\n\
         # HELP weft_nn_engine_calls_total Engine calls made for them (fewer when calls were batched together).\n\
         # TYPE weft_nn_engine_calls_total counter\nweft_nn_engine_calls_total {}\n",
        engine.models,
        engine.weight_bytes,
        engine.device_bytes,
        stats.computes.load(Ordering::Relaxed),
        stats.engine_calls.load(Ordering::Relaxed),
    );
    if let Some(gpu) = weft_nn::gpu::Gpu::if_started() {
        let times = gpu.pass_times();
        let _ = write!(
            out,
            "# HELP weft_gpu_matmuls_total Matrix products run on the GPU (models and trainers).\n\
             # TYPE weft_gpu_matmuls_total counter\nweft_gpu_matmuls_total {}\n\
             # HELP weft_gpu_round_trips_total Submissions to the GPU waited for and read back (one per ONNX call or decoder pass kept on the device).\n\
             # TYPE weft_gpu_round_trips_total counter\nweft_gpu_round_trips_total {}\n\
             # HELP weft_gpu_work_bytes Bytes held on the GPU by live decoder sessions (KV caches, activations).\n\
             # TYPE weft_gpu_work_bytes gauge\nweft_gpu_work_bytes {}\n\
             # HELP weft_gpu_dispatches_total Kernel dispatches of the programs among them (decoder passes, ONNX calls kept on the device).\n\
             # TYPE weft_gpu_dispatches_total counter\nweft_gpu_dispatches_total {}\n\
             # HELP weft_gpu_record_seconds_total Host time those programs spent recording and submitting.\n\
             # TYPE weft_gpu_record_seconds_total counter\nweft_gpu_record_seconds_total {}\n\
             # HELP weft_gpu_wait_seconds_total Time those programs spent waiting for the GPU and reading back.\n\
             # TYPE weft_gpu_wait_seconds_total counter\nweft_gpu_wait_seconds_total {}\n",
            gpu.matmuls(),
            gpu.round_trips(),
            gpu.work_bytes(),
            times.dispatches,
            times.recording.as_secs_f64(),
            times.waiting.as_secs_f64(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_and_outcomes_are_counted() {
        let m = Metrics::default();
        m.record_call("norm", "ok", Duration::from_micros(80));
        m.record_call("norm", "ok", Duration::from_millis(3));
        m.record_call("norm", "trap", Duration::from_millis(3));
        m.record_call("norm", "weird", Duration::from_secs(100));
        m.record_upload("ok");
        let pools = [(
            "norm".into(),
            PoolStats {
                live: 2,
                idle: 1,
                created: 3,
                traps: 1,
            },
        )];
        let text = m.render(&pools, 4);
        assert!(text.contains("weft_component_compiles_total 4"));
        assert!(
            text.contains("weft_stage_calls_total{stage=\"norm\",outcome=\"ok\"} 2"),
            "{text}"
        );
        assert!(text.contains("outcome=\"trap\"} 1"));
        assert!(text.contains("outcome=\"other\"} 1"));
        assert!(text.contains("le=\"0.0001\"} 1"));
        assert!(text.contains("le=\"0.005\"} 3"));
        assert!(text.contains("le=\"+Inf\"} 4"));
        assert!(text.contains("weft_stage_instances{stage=\"norm\",state=\"busy\"} 1"));
        assert!(text.contains("weft_stage_traps_total{stage=\"norm\"} 1"));
        assert!(text.contains("weft_stage_uploads_total{outcome=\"ok\"} 1"));
    }
}
