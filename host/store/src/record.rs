//! Versioned bincode records: `[format version byte][bincode body]`.
//!
//! The version byte lets a later release migrate old records instead of
//! failing to decode them.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::StoreError;

/// Format version written by this release.
const VERSION: u8 = 1;

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![VERSION];
    // Encoding plain owned structs into a Vec cannot fail.
    let body = bincode::serde::encode_to_vec(value, bincode::config::standard())
        .expect("bincode encoding of a store record");
    out.extend_from_slice(&body);
    out
}

pub(crate) fn decode<T: DeserializeOwned>(
    table: &'static str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt { table, reason };
    match bytes.split_first() {
        Some((&VERSION, body)) => {
            bincode::serde::decode_from_slice(body, bincode::config::standard())
                .map(|(value, _)| value)
                .map_err(|e| corrupt(e.to_string()))
        }
        Some((v, _)) => Err(corrupt(format!(
            "record format version {v} is not supported by this release (expected {VERSION})"
        ))),
        None => Err(corrupt("empty record".into())),
    }
}

/// Record `key` of `table` for a listing: `None`, with a warning that names
/// it, when it cannot be decoded (a newer release's format, or damage). One
/// unreadable record must not hide the others, nor stop a daemon from
/// starting; reading it by its key still fails with the reason.
pub(crate) fn listed<T: DeserializeOwned>(
    table: &'static str,
    key: impl std::fmt::Display,
    bytes: &[u8],
) -> Option<T> {
    match decode(table, bytes) {
        Ok(value) => Some(value),
        Err(e) => {
            tracing::warn!(table, %key, "passing over a record this release cannot read: {e}");
            None
        }
    }
}

/// What a deletion does with record `key` of `table` (`bytes`).
pub(crate) enum Removal<T> {
    /// Leave it: `expect` does not hold.
    Keep,
    /// Remove it, and free what it names.
    Readable(T),
    /// Remove it (an unconditional deletion of a record this release cannot
    /// read); what it names is unknown, so its bytes stay.
    Unreadable,
}

impl<T: DeserializeOwned> Removal<T> {
    /// The removal of `bytes` by a deletion expecting `expect` of the
    /// record's latest version (`latest`).
    pub(crate) fn of(
        table: &'static str,
        key: &str,
        bytes: &[u8],
        expect: crate::Expect,
        latest: impl FnOnce(&T) -> u32,
    ) -> Self {
        match listed::<T>(table, key, bytes) {
            Some(rec) if expect.holds(Some(latest(&rec))) => Self::Readable(rec),
            None if expect == crate::Expect::Any => Self::Unreadable,
            _ => Self::Keep,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_unknown_versions() {
        let bytes = encode(&("stage", 3u32));
        assert_eq!(bytes[0], VERSION);
        let back: (String, u32) = decode("t", &bytes).unwrap();
        assert_eq!(back, ("stage".to_string(), 3));

        let mut future = bytes.clone();
        future[0] = 9;
        let err = decode::<(String, u32)>("t", &future).unwrap_err();
        assert!(err.to_string().contains("version 9"), "{err}");
        assert!(decode::<(String, u32)>("t", &[]).is_err());
    }

    /// Makes record `key` of `table` one a newer release wrote.
    fn from_a_newer_release<K: redb::Key + 'static>(
        store: &crate::Store,
        table: redb::TableDefinition<'static, K, &'static [u8]>,
        key: K::SelfType<'_>,
    ) {
        use redb::ReadableTable;
        let txn = store.write().unwrap();
        {
            let mut t = txn.open_table(table).unwrap();
            let mut bytes = t.get(&key).unwrap().unwrap().value().to_vec();
            bytes[0] = VERSION + 1;
            t.insert(&key, bytes.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }

    /// A record this release cannot read is passed over by listings (the
    /// others still show), fails when read by its key, is removed by an
    /// unconditional deletion, and keeps every object a deletion would
    /// otherwise free, since it may name them.
    #[test]
    fn unreadable_records_are_passed_over_and_can_be_deleted() {
        use crate::{DATASETS, Expect, JOBS, MODELS, STAGES, Store};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("db")).unwrap();
        let has = |bytes: &[u8]| {
            store
                .object_len(&crate::object_id(bytes))
                .unwrap()
                .is_some()
        };
        for name in ["a", "b"] {
            store.put_model(name, "onnx", name.as_bytes(), "").unwrap();
            store
                .put_stage(name, name.as_bytes(), Default::default())
                .unwrap();
            store.create_job("invoke", "{}", 0, 1).unwrap();
        }
        store.put_model("c", "onnx", b"only c's", "").unwrap();
        from_a_newer_release(&store, MODELS, "a");
        from_a_newer_release(&store, STAGES, "a");
        from_a_newer_release(&store, JOBS, 1);

        let names = |v: Vec<String>| v.join(",");
        let models = store.list_models().unwrap();
        assert_eq!(names(models.into_iter().map(|m| m.name).collect()), "b,c");
        let stages = store.list_stages().unwrap();
        assert_eq!(names(stages.into_iter().map(|s| s.name).collect()), "b");
        let jobs: Vec<u64> = store.list_jobs().unwrap().iter().map(|j| j.id).collect();
        assert_eq!(jobs, [2]);
        assert!(store.model("a").unwrap_err().is_unreadable());
        assert!(store.job(1).unwrap_err().is_unreadable());

        // Another record's deletion frees nothing while `a` may name it.
        assert!(store.delete_model("c").unwrap());
        assert!(has(b"only c's"), "an unreadable record may name it");
        store
            .put_stage("d", b"only d's", Default::default())
            .unwrap();
        assert!(store.delete_stage("d").unwrap());
        assert!(has(b"only d's"), "an unreadable record may name it");
        // A replica's conditional deletion leaves what it cannot check.
        assert!(!store.delete_model_if("a", Expect::Latest(Some(1))).unwrap());
        assert!(!store.delete_stage_if("a", Expect::Latest(Some(1))).unwrap());
        assert!(store.delete_model("a").unwrap());
        assert!(store.delete_stage("a").unwrap());
        assert_eq!(store.delete_jobs(&[1], &[]).unwrap(), 1);
        assert!(store.model("a").unwrap().is_none() && store.stage("a").unwrap().is_none());
        // Nothing unreadable is left: deletions free again.
        assert!(store.delete_model("b").unwrap());
        assert!(has(b"b"), "stage `b` names the same bytes");
        assert!(store.delete_stage("b").unwrap());
        assert!(!has(b"b"), "freed once nothing names it");

        let rec = |n: &str| crate::DatasetRecord {
            name: n.into(),
            format: "lines".into(),
            blocks: Vec::new(),
            rows: 0,
            bytes: 0,
            created_unix_ms: 0,
        };
        store.put_dataset(&rec("d")).unwrap();
        from_a_newer_release(&store, DATASETS, "d");
        assert!(store.list_datasets().unwrap().is_empty());
        assert!(store.delete_dataset("d").unwrap());
        assert!(!store.delete_dataset("d").unwrap());
    }
}
