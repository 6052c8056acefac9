//! Frees the shared object store's copies that nothing names any more.
//!
//! A stage's or model's bytes go to `weft_objects` before the registry entry
//! naming them, and a large state value before its `weft_state` entry. A
//! stage or model deleted or given a new version, and a state value deleted
//! or overwritten by a small one, leave their object behind. Every
//! `object_grace`, each node lists the store and deletes the objects that no
//! registry entry and no state entry names and that were written longer
//! than `object_grace` ago: an upload writes its object before the entry
//! naming it, so a young object is left for a later round.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream;
use async_nats::jetstream::object_store::ObjectInfo;
use futures_util::StreamExt;

use super::{Live, OBJECTS_BUCKET};

/// Deletes, every `object_grace`, what [`collect`] finds unnamed.
pub(super) async fn collector(live: Arc<Live>) {
    let every = live.config.object_grace.max(Duration::from_millis(100));
    while live.pause(every).await {
        match collect(&live).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(objects = n, "cluster: freed shared objects nothing names"),
            Err(e) => tracing::warn!("cluster: freeing shared objects: {e:#}"),
        }
    }
}

/// Deletes the objects of `weft_objects` that no registry or state entry
/// names and that are older than `object_grace`; how many.
pub(super) async fn collect(live: &Live) -> anyhow::Result<usize> {
    let b = live.buckets().await?;
    let mut named = HashSet::new();
    let mut keys = b.registry.keys().await?;
    while let Some(key) = keys.next().await {
        let Some(value) = b.registry.get(key?).await? else {
            continue;
        };
        // An entry this release cannot read may name any object.
        named.extend(super::registry::named_object(&value)?);
    }
    let mut keys = b.state.keys().await?;
    while let Some(key) = keys.next().await {
        if let Some(value) = b.state.get(key?).await?
            && let Some((1, name)) = value.split_first()
        {
            named.insert(String::from_utf8_lossy(name).into_owned());
        }
    }
    let grace = live.config.object_grace.as_secs_f64();
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs_f64();
    let mut unnamed = Vec::new();
    for info in list(&live.js).await? {
        let written = info.modified.map(|t| t.unix_timestamp_nanos() as f64 / 1e9);
        if !named.contains(&info.name) && written.is_some_and(|t| now - t > grace) {
            unnamed.push(info.name);
        }
    }
    for name in &unnamed {
        b.objects.delete(name).await?;
    }
    Ok(unnamed.len())
}

/// Every object of `weft_objects`: the last record of each object's
/// metadata subject, read one request at a time. (async-nats's
/// `ObjectStore::list` runs a consumer that can wait forever for the end of
/// a list whose records a deletion replaces meanwhile.)
async fn list(js: &jetstream::Context) -> anyhow::Result<Vec<ObjectInfo>> {
    let stream = js.get_stream(format!("OBJ_{OBJECTS_BUCKET}")).await?;
    let mut subjects = stream
        .info_with_subjects(format!("$O.{OBJECTS_BUCKET}.M.>"))
        .await?;
    let mut names = Vec::new();
    while let Some(subject) = subjects.next().await {
        names.push(subject?.0);
    }
    let mut out = Vec::new();
    for subject in names {
        // (Gone since the listing: replaced by a deletion's record.)
        let Ok(message) = stream.get_last_raw_message_by_subject(&subject).await else {
            continue;
        };
        let info: ObjectInfo = serde_json::from_slice(&message.payload)?;
        if !info.deleted {
            out.push(info);
        }
    }
    Ok(out)
}
