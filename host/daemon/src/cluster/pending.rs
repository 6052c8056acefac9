//! This process's registry changes on their way to the other nodes: marked
//! before they are written locally ([`Local`]) and until they come back
//! from the bucket ([`Pending`]), so that imports of the same names wait
//! for them (see [`super::registry`]).

use std::collections::HashMap;
use std::sync::Arc;

use super::Live;
use super::registry::{Change, Kind, key, send};
use crate::pipeline::PipelineSpec;

/// This process's registry changes still on their way: per key, the seqs
/// of those not yet seen back from the bucket (nor failed). A change is
/// marked before it is written locally, so that an import cannot read the
/// store just before the write and replace it just after.
#[derive(Debug)]
pub(super) struct Pending {
    outstanding: std::sync::Mutex<HashMap<String, std::collections::BTreeSet<u64>>>,
    seq: std::sync::atomic::AtomicU64,
}

impl Default for Pending {
    fn default() -> Self {
        Self {
            outstanding: Default::default(),
            seq: std::sync::atomic::AtomicU64::new(1),
        }
    }
}

impl Pending {
    fn outstanding(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, std::collections::BTreeSet<u64>>> {
        self.outstanding.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks a change to `key` as on its way; returns its seq.
    pub(super) fn reserve(&self, key: &str) -> u64 {
        let seq = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.outstanding()
            .entry(key.to_string())
            .or_default()
            .insert(seq);
        seq
    }

    /// Change `seq` to `key` will not come back (it failed, or was never
    /// published): unmarks it.
    pub(super) fn release(&self, key: &str, seq: u64) {
        let mut outstanding = self.outstanding();
        if let Some(seqs) = outstanding.get_mut(key) {
            seqs.remove(&seq);
            if seqs.is_empty() {
                outstanding.remove(key);
            }
        }
    }

    pub(super) fn contains(&self, key: &str) -> bool {
        self.outstanding().contains_key(key)
    }

    /// Whether an event for `key` (`mine`: published by this process, as
    /// its change `seq`) may be imported: another node's only while none
    /// of this process's changes to the name is on its way, one of this
    /// process's own (which then is no longer on its way) only while none
    /// newer is.
    pub(super) fn admits(&self, key: &str, mine: bool, seq: u64) -> bool {
        let mut outstanding = self.outstanding();
        let Some(seqs) = outstanding.get_mut(key) else {
            return true;
        };
        if !mine {
            return false;
        }
        seqs.remove(&seq);
        let newer = seqs.range(seq + 1..).next().is_some();
        if seqs.is_empty() {
            outstanding.remove(key);
        }
        !newer
    }
}

/// A change to one registry name made on this node, from before it is
/// written until it is queued for the other nodes: meanwhile (and until its
/// event comes back from the bucket) imports of that name wait. Dropped
/// without [`Local::publish`] (the change failed), the name is free again.
#[derive(Debug)]
pub(crate) struct Local {
    live: Option<Arc<Live>>,
    kind: Kind,
    name: String,
    seq: u64,
    queued: bool,
}

impl Local {
    pub(super) fn begin(live: Option<Arc<Live>>, kind: Kind, name: &str) -> Self {
        let seq = live
            .as_ref()
            .map_or(0, |l| l.pending.reserve(&key(kind, name)));
        Self {
            live,
            kind,
            name: name.to_string(),
            seq,
            queued: false,
        }
    }

    /// Queues the change for the other nodes (in order, retried until NATS
    /// takes it).
    pub(crate) fn publish(mut self, change: Change) {
        self.queued = true;
        let Some(live) = self.live.as_deref() else {
            return;
        };
        if self.kind == Kind::Pipeline {
            let spec = match &change {
                Change::Pipeline { spec } => PipelineSpec::from_json(spec.as_bytes()).ok(),
                _ => None,
            };
            super::schedule::track(live, &self.name, spec);
        }
        send(live, self.kind, &self.name, self.seq, change);
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        if let (false, Some(live)) = (self.queued, &self.live) {
            live.pending.release(&key(self.kind, &self.name), self.seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_change_holds_imports_of_its_name_until_it_comes_back() {
        let p = Pending::default();
        let seq = p.reserve("stage.a");
        // Another node's event, and an older one of this process: they wait.
        assert!(!p.admits("stage.a", false, 99));
        assert!(!p.admits("stage.a", true, seq - 1));
        // Other names do not.
        assert!(p.admits("stage.b", false, 1));
        // The change itself coming back frees the name.
        assert!(p.admits("stage.a", true, seq));
        assert!(p.admits("stage.a", false, 100));
    }

    #[test]
    fn a_failed_local_change_frees_its_name_unless_another_holds_it() {
        let p = Pending::default();
        let first = p.reserve("model.m");
        let second = p.reserve("model.m");
        // Either one failing leaves the other holding the name.
        p.release("model.m", second);
        assert!(
            p.contains("model.m"),
            "the first change is still on its way"
        );
        assert!(!p.admits("model.m", false, 7));
        p.release("model.m", first);
        assert!(!p.contains("model.m"));
        assert!(p.admits("model.m", false, 7));
    }

    #[test]
    fn own_events_apply_in_the_order_the_bucket_has_them() {
        let p = Pending::default();
        let (a, b) = (p.reserve("stage.s"), p.reserve("stage.s"));
        // a comes back first: b, newer, is still on its way.
        assert!(!p.admits("stage.s", true, a));
        assert!(p.admits("stage.s", true, b));
        assert!(!p.contains("stage.s"));
        // Published the other way round, the bucket ends with a: both apply.
        let (a, b) = (p.reserve("stage.t"), p.reserve("stage.t"));
        assert!(p.admits("stage.t", true, b));
        assert!(!p.admits("stage.t", false, 1), "a is still on its way");
        assert!(p.admits("stage.t", true, a));
        assert!(p.admits("stage.t", false, 1));
    }
}
