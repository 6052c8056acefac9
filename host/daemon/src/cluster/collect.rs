//! Frees the shared object store's copies that nothing names any more.
//!
//! A stage's or model's bytes go to `weft_objects` before the registry entry
//! naming them, and a large state value before its `weft_state` entry. A
//! stage or model deleted or given a new version, and a state value deleted
//! or overwritten by a small one, leave their object behind. Every
//! `object_grace`, each node lists the store and deletes the objects that no
//! registry entry and no state entry names and that were written longer
//! than `object_grace` ago.
//!
//! A deletion is conditional on the object's record being the one listed
//! (`Nats-Expected-Last-Subject-Sequence`): an object written again since
//! stays. That is what keeps an object named again meanwhile: the state
//! mirror writes its object each time, and a publisher writes an object
//! again unless the store holds one written within half the grace
//! ([`held`]), young enough that no round can take it before its entry is
//! written.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream;
use async_nats::jetstream::object_store::{ObjectInfo, ObjectStore};
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
    // Ages count to the round's start, before any name is read: an object
    // a publisher found young enough to keep (`held`) stays young here
    // however long the round takes.
    let now = now_s();
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
    let stream = live.js.get_stream(format!("OBJ_{OBJECTS_BUCKET}")).await?;
    let mut freed = 0;
    for (subject, sequence, info) in list(&stream).await? {
        if named.contains(&info.name) || age_s(info.modified, now) <= grace {
            continue;
        }
        if info.deleted {
            // A deletion's record, kept from an earlier round: its subject
            // goes, up to that record (a write since stays).
            stream
                .purge()
                .filter(subject)
                .sequence(sequence + 1)
                .await?;
            continue;
        }
        if delete(live, &stream, &subject, sequence, info).await? {
            freed += 1;
        }
    }
    Ok(freed)
}

/// Whether the shared store holds object `id` written within half the
/// grace (a publisher writes it again otherwise: see the module's docs).
pub(super) async fn held(live: &Live, objects: &ObjectStore, id: &str) -> bool {
    let grace = live.config.object_grace.as_secs_f64();
    objects
        .info(id)
        .await
        .is_ok_and(|i| !i.deleted && age_s(i.modified, now_s()) < grace / 2.0)
}

/// Seconds since the Unix epoch.
fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Seconds from `written` to `now` (unknown: as old as can be).
fn age_s(written: Option<async_nats::datetime::DateTime>, now: f64) -> f64 {
    written.map_or(f64::INFINITY, |t| {
        now - t.unix_timestamp_nanos() as f64 / 1e9
    })
}

/// Deletes the object whose record is message `sequence` of `subject`, as
/// `ObjectStore::delete` does but only if that record is still the last:
/// `false` when the object was written again meanwhile. (Should the answer
/// be lost after the record was stored, the chunks stay: a later write of
/// the same name, which purges its record's chunks, frees them.)
async fn delete(
    live: &Live,
    stream: &jetstream::stream::Stream,
    subject: &str,
    sequence: u64,
    mut info: ObjectInfo,
) -> anyhow::Result<bool> {
    (info.deleted, info.size, info.chunks) = (true, 0, 0);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(async_nats::header::NATS_ROLLUP, "sub");
    headers.insert(
        async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
        sequence.to_string().as_str(),
    );
    let record = serde_json::to_vec(&info)?;
    let published = live
        .js
        .publish_with_headers(subject.to_string(), headers, record.into())
        .await?
        .await;
    match published {
        Ok(_) => {}
        Err(e) if e.kind() == jetstream::context::PublishErrorKind::WrongLastSequence => {
            return Ok(false);
        }
        Err(e) => return Err(e.into()),
    }
    stream
        .purge()
        .filter(format!("$O.{OBJECTS_BUCKET}.C.{}", info.nuid))
        .await?;
    Ok(true)
}

/// Every object of `weft_objects` with its record's subject and sequence
/// (deleted ones too, whose records a later round removes):
/// the last record of each object's metadata subject, read one request at
/// a time. (async-nats's `ObjectStore::list` runs a consumer that can wait
/// forever for the end of a list whose records a deletion replaces
/// meanwhile.)
async fn list(
    stream: &jetstream::stream::Stream,
) -> anyhow::Result<Vec<(String, u64, ObjectInfo)>> {
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
        out.push((subject, message.sequence, info));
    }
    Ok(out)
}
