//! Runtime configuration with documented defaults.

use std::time::Duration;

/// How stages run. Every field has a production default; see [`Default`].
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Wall-clock budget of one `process` (or `init`) call, enforced with epoch
    /// interruption. Default 30 s.
    pub deadline: Duration,
    /// Linear memory one instance may grow to. Default 512 MiB.
    pub memory_limit: usize,
    /// Most instances of one stage alive at once (the pool bound). Default 8.
    pub max_instances_per_stage: usize,
    /// How long a call waits for a free instance before failing as busy.
    /// Default 5 s.
    pub acquire_timeout: Duration,
    /// Instances of all stages together, sized into the pooling allocator.
    /// Default 128.
    pub total_instances: u32,
    /// Epoch tick: the granularity of deadlines. Default 10 ms.
    pub epoch_tick: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(30),
            memory_limit: 512 << 20,
            max_instances_per_stage: 8,
            acquire_timeout: Duration::from_secs(5),
            total_instances: 128,
            epoch_tick: Duration::from_millis(10),
        }
    }
}
