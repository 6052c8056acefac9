//! Work that outlives its node: async invoke jobs and named actors, and the
//! `state` they checkpoint into.
//!
//! - Every `state` write and delete on a node is copied, after its local
//!   commit, into the KV bucket `weft_state` (key `s.NS.KEY`, each part
//!   escaped; values over [`INLINE`] bytes go to the object store
//!   `weft_objects` and the KV value points at them). The local redb stays
//!   what a node reads; the bucket is what a node that takes work over
//!   pulls from.
//! - Every invoke job and actor has an entry in the KV bucket `weft_work`
//!   (`job.NODE.ID` for job ID submitted on NODE, `actor.NAME`) naming its
//!   owner. Actor names are unique across the cluster: creating one takes
//!   its key with a compare-and-set.
//! - A node that has been in the cluster for one TTL looks every heartbeat
//!   for entries whose owner is not alive (no heartbeat for a TTL, or left),
//!   and claims each with a compare-and-set on the entry's revision: one
//!   node wins. It pulls the state the work checkpointed, then resumes the
//!   job (same input, same item key, so the stage finds its checkpoint) or
//!   recreates the actor. A job that finishes on its adopter stays in the
//!   bucket, marked finished, until its origin node comes back (and marks
//!   its own copy `moved`) or a job TTL passes.

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::{Context, anyhow};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use weft_runtime::{MirrorFuture, StateMirror};

use super::{Live, membership, now_ms};
use crate::api::AppState;

/// State values up to this size live in the KV bucket itself; larger ones
/// in the object store (NATS messages are limited to 1 MiB by default).
pub(super) const INLINE: usize = 256 << 10;

/// How long one mirror write may take before it is given up (and logged).
const MIRROR_TIMEOUT: Duration = Duration::from_secs(3);

/// Finished entries of adopted jobs are dropped after this long even if
/// their origin node never comes back.
const FINISHED_TTL_MS: u64 = 7 * 24 * 3600 * 1000;

/// An entry of `weft_work`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WorkEntry {
    /// The node running it (or that ran it).
    pub owner: String,
    /// What it is.
    #[serde(flatten)]
    pub what: Work,
}

/// A job or an actor.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Work {
    /// An async invoke job.
    Job {
        /// Its id on the owner.
        id: u64,
        /// Its spec (with `origin` set).
        spec: serde_json::Value,
        /// When it finished on an adopter, ms since the Unix epoch.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        finished_unix_ms: Option<u64>,
    },
    /// A named actor.
    Actor {
        /// Its stage.
        stage: String,
        /// The stage version.
        version: u32,
        /// Its config over the stage's.
        config: Vec<(String, String)>,
    },
}

/// The KV key of job `id` submitted on `node`.
pub(crate) fn job_key(node: &str, id: u64) -> String {
    format!("job.{node}.{id}")
}

/// The KV key of actor `name`.
pub(crate) fn actor_key(name: &str) -> String {
    format!("actor.{}", escape(name))
}

/// One key part: letters, digits, `-`, `_` and `/` as they are, every other
/// byte as `=XX`; the empty string as `=`.
fn escape(s: &str) -> String {
    if s.is_empty() {
        return "=".into();
    }
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    out
}

fn unescape(s: &str) -> Option<String> {
    if s == "=" {
        return Some(String::new());
    }
    let mut out = Vec::with_capacity(s.len());
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The `weft_state` key of `key` in namespace `ns`.
fn state_key(ns: &str, key: &str) -> String {
    format!("s.{}.{}", escape(ns), escape(key))
}

/// The cluster's work table and state copy, as jobs and actors use them.
#[derive(Debug, Clone)]
pub struct WorkTable {
    live: Arc<Live>,
}

impl WorkTable {
    pub(super) fn new(live: Arc<Live>) -> Self {
        Self { live }
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.live.node
    }

    /// The entry at `key` with its revision; `None` when absent or deleted.
    pub(crate) async fn get(&self, key: &str) -> anyhow::Result<Option<(WorkEntry, u64)>> {
        let b = self.live.buckets().await?;
        let Some(entry) = b.work.entry(key).await? else {
            return Ok(None);
        };
        if entry.operation != async_nats::jetstream::kv::Operation::Put {
            return Ok(None);
        }
        let work = serde_json::from_slice(&entry.value)
            .with_context(|| format!("work entry {key} is unreadable"))?;
        Ok(Some((work, entry.revision)))
    }

    /// Writes the entry at `key`.
    pub(crate) async fn put(&self, key: &str, entry: &WorkEntry) -> anyhow::Result<()> {
        let b = self.live.buckets().await?;
        b.work.put(key, serde_json::to_vec(entry)?.into()).await?;
        Ok(())
    }

    /// Writes the entry at `key` unless one exists: `Ok(Err(owner))` names
    /// the node holding it.
    pub(crate) async fn create(
        &self,
        key: &str,
        entry: &WorkEntry,
    ) -> anyhow::Result<Result<(), String>> {
        let b = self.live.buckets().await?;
        match b.work.create(key, serde_json::to_vec(entry)?.into()).await {
            Ok(_) => Ok(Ok(())),
            Err(e) if e.kind() == async_nats::jetstream::kv::CreateErrorKind::AlreadyExists => {
                let owner = self.get(key).await?.map(|(w, _)| w.owner);
                Ok(Err(owner.unwrap_or_else(|| "another node".into())))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces the entry at `key` if it is still at `revision`: `false`
    /// when another node changed it first.
    pub(crate) async fn claim(
        &self,
        key: &str,
        revision: u64,
        entry: &WorkEntry,
    ) -> anyhow::Result<bool> {
        let b = self.live.buckets().await?;
        match b
            .work
            .update(key, serde_json::to_vec(entry)?.into(), revision)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == async_nats::jetstream::kv::UpdateErrorKind::WrongLastRevision => {
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes the entry at `key` if this node owns it (a node back from
    /// the dead must not delete what another node took over).
    pub(crate) async fn remove_own(&self, key: &str) -> anyhow::Result<()> {
        let b = self.live.buckets().await?;
        if let Some((entry, revision)) = self.get(key).await?
            && entry.owner == self.live.node
        {
            b.work.delete_expect_revision(key, Some(revision)).await?;
        }
        Ok(())
    }

    /// Deletes the entry at `key`, whoever owns it.
    pub(crate) async fn remove_any(&self, key: &str) -> anyhow::Result<()> {
        let b = self.live.buckets().await?;
        b.work.delete(key).await?;
        Ok(())
    }

    /// Copies the cluster's state of namespace `ns` into the local store:
    /// with `replace`, the namespace becomes exactly the cluster's copy;
    /// without, the cluster's keys are written over the local ones.
    pub(crate) async fn pull_state(
        &self,
        store: &weft_store::Store,
        ns: &str,
        replace: bool,
    ) -> anyhow::Result<usize> {
        let b = self.live.buckets().await?;
        let prefix = format!("s.{}.", escape(ns));
        let mut entries = Vec::new();
        for k in state_keys(&b, &prefix).await? {
            let rest = &k[prefix.len()..];
            let Some(key) = unescape(rest) else {
                tracing::warn!(key = %k, "cluster: unreadable state key skipped");
                continue;
            };
            if let Some(value) = b.state.get(&k).await? {
                entries.push((key, resolve(&self.live, &value).await?));
            }
        }
        let (store, ns, n) = (store.clone(), ns.to_string(), entries.len());
        tokio::task::spawn_blocking(move || store.state_sync(&ns, &entries, replace)).await??;
        Ok(n)
    }

    /// Deletes the cluster's copy of namespace `ns` (a deleted actor's).
    pub(crate) async fn purge_state(&self, ns: &str) -> anyhow::Result<()> {
        let b = self.live.buckets().await?;
        let prefix = format!("s.{}.", escape(ns));
        for k in state_keys(&b, &prefix).await? {
            b.state.purge(&k).await?;
        }
        Ok(())
    }
}

/// The `weft_state` keys starting with `prefix` (one namespace's).
async fn state_keys(b: &super::Buckets, prefix: &str) -> anyhow::Result<Vec<String>> {
    let mut keys = b.state.keys().await?;
    let mut out = Vec::new();
    while let Some(k) = keys.next().await {
        let k = k?;
        if k.starts_with(prefix) {
            out.push(k);
        }
    }
    Ok(out)
}

/// A KV state value: tag 0 and the bytes, or tag 1 and an object name.
async fn resolve(live: &Live, value: &[u8]) -> anyhow::Result<Vec<u8>> {
    match value.split_first() {
        Some((0, bytes)) => Ok(bytes.to_vec()),
        Some((1, name)) => {
            let name = std::str::from_utf8(name)?;
            let b = live.buckets().await?;
            let mut object = b
                .objects
                .get(name)
                .await
                .map_err(|e| anyhow!("state object {name}: {e}"))?;
            let mut bytes = Vec::with_capacity(object.info().size);
            object.read_to_end(&mut bytes).await?;
            Ok(bytes)
        }
        _ => Err(anyhow!("unreadable state value")),
    }
}

/// Copies `state` writes into `weft_state`.
#[derive(Debug)]
pub(super) struct Mirror {
    live: Arc<Live>,
}

impl Mirror {
    pub(super) fn new(live: Arc<Live>) -> Self {
        Self { live }
    }
}

async fn mirror_set(live: &Live, key: &str, value: Vec<u8>) -> anyhow::Result<()> {
    let b = live.buckets().await?;
    let stored = if value.len() <= INLINE {
        let mut v = Vec::with_capacity(value.len() + 1);
        v.push(0);
        v.extend_from_slice(&value);
        v
    } else {
        b.objects
            .put(key, &mut value.as_slice())
            .await
            .map_err(|e| anyhow!("object store: {e}"))?;
        let mut v = vec![1];
        v.extend_from_slice(key.as_bytes());
        v
    };
    b.state.put(key, stored.into()).await?;
    Ok(())
}

impl StateMirror for Mirror {
    fn set(&self, ns: &str, key: &str, value: &[u8]) -> MirrorFuture {
        let (live, k, v) = (self.live.clone(), state_key(ns, key), value.to_vec());
        Box::pin(async move {
            match tokio::time::timeout(MIRROR_TIMEOUT, mirror_set(&live, &k, v)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(key = %k, "cluster: state not copied to the cluster: {e:#}")
                }
                Err(_) => tracing::warn!(key = %k, "cluster: state copy to the cluster timed out"),
            }
        })
    }

    fn delete(&self, ns: &str, key: &str) -> MirrorFuture {
        let (live, k) = (self.live.clone(), state_key(ns, key));
        Box::pin(async move {
            let delete = async {
                let b = live.buckets().await?;
                b.state.purge(&k).await?;
                anyhow::Ok(())
            };
            if let Ok(Err(e)) | Err(e) = tokio::time::timeout(MIRROR_TIMEOUT, delete)
                .await
                .map_err(anyhow::Error::from)
            {
                tracing::warn!(key = %k, "cluster: state delete not copied to the cluster: {e:#}");
            }
        })
    }
}

/// Takes over the work of dead nodes, every heartbeat, once this node has
/// been in the cluster for a TTL (long enough to have heard every live
/// peer).
pub(super) async fn adopter(live: Arc<Live>, state: Weak<AppState>) {
    let table = WorkTable::new(live.clone());
    let mut rounds = super::Rounds::new(&live);
    while rounds.next(&live).await {
        let Some(st) = state.upgrade() else { return };
        if st.cluster.draining() {
            continue;
        }
        if let Err(e) = adopt_once(&live, &table, &st).await {
            tracing::debug!("cluster: looking for work to take over: {e:#}");
        }
    }
}

async fn adopt_once(live: &Live, table: &WorkTable, st: &AppState) -> anyhow::Result<()> {
    let ttl = live.config.node_ttl;
    let mut alive: HashSet<String> = membership::peers(live)
        .into_iter()
        .filter(|(_, age)| *age <= ttl)
        .map(|(info, _)| info.name)
        .collect();
    alive.insert(live.node.clone());
    let b = live.buckets().await?;
    let mut keys = b.work.keys().await?;
    let mut all = Vec::new();
    while let Some(k) = keys.next().await {
        all.push(k?);
    }
    for key in all {
        let Some((entry, revision)) = table.get(&key).await? else {
            continue;
        };
        match &entry.what {
            Work::Job {
                finished_unix_ms: Some(at),
                ..
            } => {
                if now_ms().saturating_sub(*at) > FINISHED_TTL_MS {
                    let _ = b.work.delete_expect_revision(&key, Some(revision)).await;
                }
            }
            _ if alive.contains(&entry.owner) => {}
            Work::Job { .. } => {
                if let Err(e) = st.jobs.adopt(table, &key, revision, entry).await {
                    tracing::warn!(key, "cluster: taking over a job failed: {}", e.message);
                }
            }
            Work::Actor { .. } => {
                if let Err(e) = st.actors.adopt(table, &key, revision, entry).await {
                    tracing::warn!(key, "cluster: taking over an actor failed: {}", e.message);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_keys_escape_and_come_back() {
        for s in ["", "count", "@chat", "checkpoint/job-a-3", "a.b c=d", "ü>*"] {
            let e = escape(s);
            assert!(
                e.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_/=".contains(&b)),
                "{s:?} -> {e}"
            );
            assert_eq!(unescape(&e).as_deref(), Some(s), "{e}");
        }
        assert_eq!(state_key("@chat", "history"), "s.=40chat.history");
        assert_eq!(unescape("=4"), None);
    }

    #[test]
    fn work_entries_round_trip() {
        let e = WorkEntry {
            owner: "n1".into(),
            what: Work::Actor {
                stage: "probe".into(),
                version: 2,
                config: vec![("k".into(), "v".into())],
            },
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["kind"], "actor");
        assert_eq!(v["owner"], "n1");
        let back: WorkEntry = serde_json::from_value(v).unwrap();
        assert!(matches!(back.what, Work::Actor { version: 2, .. }));
        assert_eq!(job_key("n1", 7), "job.n1.7");
        assert_eq!(actor_key("chat.1"), "actor.chat=2E1");
    }
}
