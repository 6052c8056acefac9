//! Registry replication.
//!
//! A change on a node (an upload, an apply, a delete) becomes an [`Event`]
//! put into the KV bucket `weft_registry` under `KIND.NAME` (history 1: the
//! bucket holds the latest event per name; a delete is a tombstone event, so
//! a node that was away learns about it). Stage components and model bytes
//! go first to the object store `weft_objects` under their blake3 object id
//! (content-addressed, so uploading the same bytes twice stores them once).
//!
//! Every node watches the whole bucket (replaying what is there when it
//! subscribes: a node that joins later gets everything) and imports each
//! event that differs from what it has, through the same functions an
//! upload calls (validation, compilation, trigger routes). Imports never
//! publish, so nothing loops; an event equal to the local latest changes
//! nothing, so replays are free and the same bytes make no new version.
//!
//! Conflicts resolve to the bucket's order (last writer wins, on every
//! node): a node applies its own events again when they come back, except
//! while a newer change of its own to the same name is still on its way
//! ([`Pending`](super::pending::Pending)), so its own quick successive
//! uploads never flap. A local change is marked pending before it is
//! written ([`Local`](super::pending::Local)), and events
//! for the name wait until it comes back (or fails). An import writes only
//! if the name's latest version is still the one it saw when the event
//! arrived ([`Expect`]), so an upload made here while the import fetched
//! and compiled is not replaced by the older change.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use weft_store::{Expect, StageMeta};

use super::Live;
use crate::api::AppState;
use crate::pipeline::PipelineSpec;

/// What a registry entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    /// A stage (component bytes + config and env of its latest version).
    Stage,
    /// A model (bytes + encoding).
    Model,
    /// A pipeline spec.
    Pipeline,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Stage => "stage",
            Kind::Model => "model",
            Kind::Pipeline => "pipeline",
        }
    }
}

/// A change made on this node.
#[derive(Debug, Clone)]
pub(crate) enum Change {
    /// A stage's latest version.
    Stage {
        /// Component object id.
        object: String,
        /// Its size.
        size: u64,
        /// Config and env.
        meta: StageMeta,
    },
    /// A model's latest version.
    Model {
        /// Model object id.
        object: String,
        /// Its size.
        size: u64,
        /// `onnx` or `ggml`.
        encoding: String,
    },
    /// A pipeline's spec (JSON).
    Pipeline {
        /// The spec as stored.
        spec: String,
    },
    /// Deleted.
    Deleted,
}

/// The value of a `weft_registry` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Event {
    kind: Kind,
    name: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    deleted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    object: Option<String>,
    #[serde(default)]
    size: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    config: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    env: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    spec: Option<String>,
    /// `node@started_unix_ms` of the process that published it.
    origin: String,
    /// That process's sequence number of the event.
    seq: u64,
}

/// The object a `weft_registry` value names (`None` for a deletion or a
/// pipeline); `Err` when it cannot be read.
pub(super) fn named_object(value: &[u8]) -> serde_json::Result<Option<String>> {
    let event: Event = serde_json::from_slice(value)?;
    Ok(event.object.filter(|_| !event.deleted))
}

impl Event {
    fn key(&self) -> String {
        key(self.kind, &self.name)
    }
}

pub(super) fn key(kind: Kind, name: &str) -> String {
    format!("{}.{name}", kind.as_str())
}

/// Queues `change` for publication (in order, retried until NATS takes it).
fn enqueue(live: &Live, kind: Kind, name: &str, change: Change) {
    let seq = live.pending.reserve(&key(kind, name));
    send(live, kind, name, seq, change);
}

/// Queues `change`, already marked pending as `seq`.
pub(super) fn send(live: &Live, kind: Kind, name: &str, seq: u64, change: Change) {
    let mut event = Event {
        kind,
        name: name.to_string(),
        deleted: false,
        object: None,
        size: 0,
        config: Vec::new(),
        env: Vec::new(),
        encoding: None,
        spec: None,
        origin: live.instance.clone(),
        seq,
    };
    match change {
        Change::Stage { object, size, meta } => {
            event.object = Some(object);
            event.size = size;
            event.config = meta.config;
            event.env = meta.env;
        }
        Change::Model {
            object,
            size,
            encoding,
        } => {
            event.object = Some(object);
            event.size = size;
            event.encoding = Some(encoding);
        }
        Change::Pipeline { spec } => event.spec = Some(spec),
        Change::Deleted => event.deleted = true,
    }
    let outbox = live.outbox.lock().unwrap_or_else(|p| p.into_inner());
    let sent = outbox.as_ref().is_some_and(|tx| tx.send(event).is_ok());
    if !sent {
        let key = key(kind, name);
        tracing::warn!(%key, "cluster: leaving, change not replicated");
        live.pending.release(&key, seq);
    }
}

/// Whether to import `event`: not while a newer change of this process to
/// the same name is on its way.
fn should_apply(live: &Live, event: &Event) -> bool {
    live.pending
        .admits(&event.key(), event.origin == live.instance, event.seq)
}

/// Publishes queued events in order; each is retried (with back-off) until
/// NATS takes it or the cluster stops. Ends when the queue closes.
pub(super) async fn publisher(
    live: Arc<Live>,
    state: Weak<AppState>,
    mut rx: mpsc::UnboundedReceiver<Event>,
) {
    while let Some(event) = rx.recv().await {
        let mut delay = Duration::from_millis(100);
        let mut warned = false;
        loop {
            match publish(&live, &state, &event).await {
                Ok(()) => {
                    if warned {
                        tracing::info!(key = %event.key(), "cluster: published after retrying");
                    }
                    break;
                }
                Err(Permanent(e)) => {
                    tracing::error!(key = %event.key(), "cluster: change not replicated: {e:#}");
                    live.pending.release(&event.key(), event.seq);
                    break;
                }
                Err(Transient(e)) => {
                    if !warned {
                        tracing::warn!(key = %event.key(), "cluster: publishing failed, retrying: {e:#}");
                        warned = true;
                    }
                    live.forget_buckets().await;
                    if !live.pause(delay).await {
                        return;
                    }
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
    }
}

enum Failure {
    Transient(anyhow::Error),
    Permanent(anyhow::Error),
}
use Failure::{Permanent, Transient};

async fn publish(live: &Live, state: &Weak<AppState>, event: &Event) -> Result<(), Failure> {
    let b = live.buckets().await.map_err(Transient)?;
    // Written again unless the store holds a young copy: an old one may be
    // one a collection round is deleting (see `collect`).
    if let (Some(id), false) = (&event.object, event.deleted)
        && !super::collect::held(live, &b.objects, id).await
    {
        let Some(st) = state.upgrade() else {
            return Err(Permanent(anyhow!("the daemon stopped")));
        };
        let store = st.store.clone();
        drop(st);
        let owned = id.clone();
        let bytes = tokio::task::spawn_blocking(move || store.get_object(&owned))
            .await
            .map_err(|e| Permanent(anyhow!("{e}")))?
            .map_err(|e| Transient(e.into()))?
            .ok_or_else(|| Permanent(anyhow!("object {id} is not in the local store")))?;
        b.objects
            .put(id.as_str(), &mut bytes.as_slice())
            .await
            .map_err(|e| Transient(anyhow!("object store: {e}")))?;
    }
    let value = serde_json::to_vec(event).map_err(|e| Permanent(e.into()))?;
    if value.len() > 1 << 20 {
        return Err(Permanent(anyhow!(
            "the registry entry is {} bytes, over the bucket's 1 MiB",
            value.len()
        )));
    }
    b.registry
        .put(event.key(), value.into())
        .await
        .map_err(|e| Transient(anyhow!("registry bucket: {e}")))?;
    Ok(())
}

/// Follows `weft_registry` and imports what differs; re-subscribes (and so
/// replays the bucket) after every reconnection and after any error. Events
/// whose import failed (a pipeline whose stage has not arrived yet, a fetch
/// that timed out) are retried every second until a newer event replaces
/// them.
pub(super) async fn watch(live: Arc<Live>, state: Weak<AppState>) {
    let mut connected = live.connected.subscribe();
    let mut failed: HashMap<String, Event> = HashMap::new();
    loop {
        connected.borrow_and_update();
        let opened = async {
            let b = live.buckets().await?;
            anyhow::Ok(b.registry.watch_with_history(">").await?)
        };
        let mut entries = match opened.await {
            Ok(w) => w,
            Err(e) => {
                tracing::debug!("cluster: watching the registry: {e:#}");
                live.forget_buckets().await;
                if !live.pause(Duration::from_millis(250)).await {
                    return;
                }
                continue;
            }
        };
        if let Err(e) = reconcile(&live, &state).await {
            tracing::warn!("cluster: offering local registry entries: {e:#}");
        }
        let mut retry = tokio::time::interval(Duration::from_secs(1));
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = live.stop.cancelled() => return,
                _ = connected.changed() => break,
                _ = retry.tick(), if !failed.is_empty() => {
                    let Some(st) = state.upgrade() else { return };
                    for (key, event) in std::mem::take(&mut failed) {
                        let seen = match seen(&st, &event).await {
                            Ok(seen) => seen,
                            Err(e) => {
                                tracing::debug!(%key, "cluster: reading the registry: {e:#}");
                                failed.insert(key, event);
                                continue;
                            }
                        };
                        if !should_apply(&live, &event) {
                            // Still waiting for a local change (see `handle`).
                            failed.insert(key, event);
                            continue;
                        }
                        if let Err(e) = import(&live, &st, &event, seen).await {
                            tracing::debug!(%key, "cluster: import failed again: {e:#}");
                            failed.insert(key, event);
                        }
                    }
                }
                entry = entries.next() => match entry {
                    Some(Ok(entry)) => {
                        let Some(st) = state.upgrade() else { return };
                        handle(&live, &st, entry, &mut failed).await;
                    }
                    Some(Err(e)) => {
                        tracing::debug!("cluster: registry watch: {e}");
                        break;
                    }
                    None => break,
                },
            }
        }
        if !live.pause(Duration::from_millis(100)).await {
            return;
        }
    }
}

async fn handle(
    live: &Live,
    state: &Arc<AppState>,
    entry: async_nats::jetstream::kv::Entry,
    failed: &mut HashMap<String, Event>,
) {
    use async_nats::jetstream::kv::Operation;
    if entry.operation != Operation::Put {
        return;
    }
    let event: Event = match serde_json::from_slice(&entry.value) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(key = %entry.key, "cluster: unreadable registry entry: {e}");
            return;
        }
    };
    failed.remove(&entry.key);
    if event.key() != entry.key {
        return;
    }
    // Read before asking whether a local change is on its way, so that a
    // local change made from here on makes the import yield (it comes later
    // in the bucket, so it wins everywhere).
    let seen = match seen(state, &event).await {
        Ok(seen) => seen,
        Err(e) => {
            tracing::warn!(key = %entry.key, "cluster: reading the registry (retrying): {e:#}");
            failed.insert(entry.key, event);
            return;
        }
    };
    if !should_apply(live, &event) {
        // A local change to the name is on its way and comes later in the
        // bucket, so it wins; should it fail instead, this event applies
        // after all (retried with the failed imports; the local change's
        // own event, arriving, replaces it).
        failed.insert(entry.key, event);
        return;
    }
    if let Err(e) = import(live, state, &event, seen).await {
        tracing::warn!(key = %entry.key, "cluster: import failed (retrying): {e:#}");
        failed.insert(entry.key, event);
    }
}

async fn store_call<T: Send + 'static>(
    f: impl FnOnce() -> weft_store::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    Ok(tokio::task::spawn_blocking(f).await??)
}

fn api(e: crate::ApiError) -> anyhow::Error {
    anyhow!("{} ({})", e.message, e.code)
}

/// What the import of `event` expects of the local record: its latest
/// version as it is now. Imports write only if it is still so, so that an
/// upload made here while the import fetches and compiles is not replaced
/// by the older change (which would flap: the upload's own event comes back
/// and makes yet another version).
async fn seen(state: &AppState, event: &Event) -> anyhow::Result<Expect> {
    let store = state.store.clone();
    let name = event.name.clone();
    let latest = match event.kind {
        Kind::Stage => store_call(move || store.stage(&name))
            .await?
            .map(|r| r.latest().version),
        Kind::Model => store_call(move || store.model(&name))
            .await?
            .map(|r| r.latest().version),
        Kind::Pipeline => return Ok(Expect::Any),
    };
    Ok(Expect::Latest(latest))
}

/// Makes the node's registry agree with `event`; does nothing when it does,
/// or when the local record is no longer what `seen` says.
async fn import(
    live: &Live,
    state: &Arc<AppState>,
    event: &Event,
    seen: Expect,
) -> anyhow::Result<()> {
    let name = event.name.clone();
    let store = state.store.clone();
    match (event.kind, event.deleted) {
        (Kind::Stage, true) => {
            // Only what the event found: an upload made here since wins.
            let n = name.clone();
            if store_call(move || store.delete_stage_if(&n, seen)).await? {
                state.stages.remove(&name);
                tracing::info!(stage = %name, "cluster: stage deleted (replicated)");
            }
        }
        (Kind::Model, true) => {
            let n = name.clone();
            if store_call(move || store.delete_model_if(&n, seen)).await? {
                tracing::info!(model = %name, "cluster: model deleted (replicated)");
            }
        }
        (Kind::Pipeline, true) => {
            super::schedule::track(live, &name, None);
            if state.pipelines.delete(&name).await.map_err(api)? {
                tracing::info!(pipeline = %name, "cluster: pipeline deleted (replicated)");
            }
        }
        (Kind::Stage, false) => {
            let object = event
                .object
                .clone()
                .context("a stage event without object")?;
            let meta = StageMeta {
                config: event.config.clone(),
                env: event.env.clone(),
            };
            let n = name.clone();
            let current = store_call(move || store.stage(&n)).await?;
            if current.is_some_and(|r| r.latest().digest == object && r.latest().meta == meta) {
                return Ok(());
            }
            let bytes = fetch(live, state, &object).await?;
            let deployed = crate::api::deploy_stage(state, name.clone(), meta, bytes.into(), seen)
                .await
                .map_err(api)?;
            let Some((version, created)) = deployed else {
                tracing::info!(stage = %name, "cluster: a newer local upload wins over the replicated one");
                return Ok(());
            };
            if created {
                tracing::info!(stage = %name, version = version.version, "cluster: stage imported");
            }
        }
        (Kind::Model, false) => {
            let object = event
                .object
                .clone()
                .context("a model event without object")?;
            let encoding = event.encoding.clone().unwrap_or_else(|| "onnx".into());
            let n = name.clone();
            let current = store_call(move || store.model(&n)).await?;
            if current
                .is_some_and(|r| r.latest().object == object && r.latest().encoding == encoding)
            {
                return Ok(());
            }
            let encoding = weft_nn::Encoding::parse(&encoding)
                .with_context(|| format!("unknown model encoding `{encoding}`"))?;
            let bytes = fetch(live, state, &object).await?;
            let stored = crate::api::store_model(state, name.clone(), encoding, bytes.into(), seen)
                .await
                .map_err(api)?;
            let Some((rec, added)) = stored else {
                tracing::info!(model = %name, "cluster: a newer local upload wins over the replicated one");
                return Ok(());
            };
            if added {
                tracing::info!(model = %name, version = rec.latest().version, "cluster: model imported");
            }
        }
        (Kind::Pipeline, false) => {
            let spec_json = event
                .spec
                .clone()
                .context("a pipeline event without spec")?;
            let n = name.clone();
            let current = store_call(move || store.pipeline(&n)).await?;
            if current.is_some_and(|r| r.spec_json == spec_json)
                && state.pipelines.get(&name).is_some()
            {
                return Ok(());
            }
            let spec = PipelineSpec::from_json(spec_json.as_bytes())
                .map_err(|e| anyhow!("pipeline spec: {e}"))?;
            if spec.name != name {
                bail!("the spec is named `{}`", spec.name);
            }
            // One that runs on some nodes only: the scheduler starts it here
            // if this node is among them.
            super::schedule::track(live, &name, Some(spec.clone()));
            if spec.nodes.is_some() {
                return Ok(());
            }
            // A pipeline that runs in a placement group runs on the node
            // that holds the group; one this node cannot fit is left to the
            // nodes that can. Neither is retried.
            if let Some(group) = spec
                .steps
                .iter()
                .filter_map(|s| s.placement.as_ref())
                .find(|p| {
                    state
                        .placement
                        .get(&p.group)
                        .is_none_or(|g| g.bundle(p.bundle).is_none())
                })
            {
                tracing::info!(pipeline = %name, group = %group.group, "cluster: pipeline runs in a placement group on another node; not started here");
                return Ok(());
            }
            let (handle, created) = match state.pipelines.apply(spec).await {
                Ok(applied) => applied,
                Err(e) if e.code == "insufficient_resources" => {
                    tracing::info!(pipeline = %name, "cluster: pipeline does not fit this node; not started here: {}", e.message);
                    return Ok(());
                }
                Err(e) => return Err(api(e)),
            };
            if created {
                tracing::info!(pipeline = %name, version = handle.version, "cluster: pipeline imported");
            }
        }
    }
    Ok(())
}

/// The bytes of object `id`: from the local store, else from the cluster's
/// object store (checked against the id).
async fn fetch(live: &Live, state: &AppState, id: &str) -> anyhow::Result<Vec<u8>> {
    let store = state.store.clone();
    let owned = id.to_string();
    if let Some(bytes) = store_call(move || store.get_object(&owned)).await? {
        return Ok(bytes);
    }
    let b = live.buckets().await?;
    let mut object = b
        .objects
        .get(id)
        .await
        .map_err(|e| anyhow!("object {id} from the cluster's object store: {e}"))?;
    let mut bytes = Vec::with_capacity(object.info().size);
    object
        .read_to_end(&mut bytes)
        .await
        .with_context(|| format!("reading object {id} from the cluster's object store"))?;
    let got = weft_store::object_id(&bytes);
    if got != id {
        bail!("object {id} from the cluster's object store has id {got}: refused");
    }
    Ok(bytes)
}

/// Offers every local stage, model and pipeline the bucket has never heard
/// of (a node that joins with a registry of its own, or uploads made while
/// NATS was away before a restart).
async fn reconcile(live: &Live, state: &Weak<AppState>) -> anyhow::Result<()> {
    let Some(st) = state.upgrade() else {
        return Ok(());
    };
    let store = st.store.clone();
    let (stages, models, pipelines) = store_call(move || {
        Ok((
            store.list_stages()?,
            store.list_models()?,
            store.list_pipelines()?,
        ))
    })
    .await?;
    drop(st);
    let mut local: Vec<(Kind, String, Change)> = Vec::new();
    for s in stages {
        let v = s.latest().clone();
        let change = Change::Stage {
            object: v.digest,
            size: v.size,
            meta: v.meta,
        };
        local.push((Kind::Stage, s.name, change));
    }
    for m in models {
        let v = m.latest().clone();
        let change = Change::Model {
            object: v.object,
            size: v.size,
            encoding: v.encoding,
        };
        local.push((Kind::Model, m.name, change));
    }
    for p in pipelines {
        local.push((
            Kind::Pipeline,
            p.name,
            Change::Pipeline { spec: p.spec_json },
        ));
    }
    if local.is_empty() {
        return Ok(());
    }
    let b = live.buckets().await?;
    for (kind, name, change) in local {
        let k = key(kind, &name);
        if live.pending.contains(&k) {
            continue;
        }
        if b.registry.entry(k.clone()).await?.is_none() {
            tracing::info!(key = %k, "cluster: offering a local registry entry");
            enqueue(live, kind, &name, change);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_compactly() {
        let e = Event {
            kind: Kind::Pipeline,
            name: "text".into(),
            deleted: false,
            object: None,
            size: 0,
            config: vec![],
            env: vec![],
            encoding: None,
            spec: Some("{}".into()),
            origin: "a@1".into(),
            seq: 3,
        };
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(
            json,
            r#"{"kind":"pipeline","name":"text","size":0,"spec":"{}","origin":"a@1","seq":3}"#
        );
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), e);
        assert_eq!(e.key(), "pipeline.text");
    }
}
