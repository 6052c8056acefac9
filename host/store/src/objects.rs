//! Content-addressed objects, stored in fixed-size chunks.

use std::collections::BTreeSet;

use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::{
    COMPILED, DATASETS, JOB_BLOCKS, MODELS, OBJECT_CHUNKS, OBJECT_LEASES, OBJECT_META, OBJECT_PINS,
    Result, STAGES, Store, StoreError, db, record,
};

/// Size of one stored chunk. Large enough that per-chunk overhead is
/// negligible, small enough that no single redb value gets huge.
pub const CHUNK_SIZE: usize = 1 << 20;

/// An object id: the lowercase hex blake3 hash of the object's bytes.
pub type ObjectId = String;

/// Computes the id an object with these bytes has (or will have).
///
/// ```
/// let id = weft_store::object_id(b"hello");
/// assert_eq!(id.len(), 64);
/// ```
pub fn object_id(data: &[u8]) -> ObjectId {
    blake3::hash(data).to_hex().to_string()
}

#[derive(Serialize, Deserialize)]
pub(crate) struct ObjectMeta {
    pub(crate) len: u64,
    chunks: u32,
}

/// Checks that `id` looks like an object id, so a bad id is an error the
/// caller can explain rather than a silent miss.
pub(crate) fn validate_id(id: &str) -> Result<()> {
    if id.len() == 64
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(StoreError::Invalid {
            what: "object id",
            reason: format!("`{id}` is not 64 lowercase hex characters (a blake3 hash)"),
        })
    }
}

/// Writes `data` as an object inside `txn` (a no-op when it already exists).
pub(crate) fn write_object(txn: &WriteTransaction, data: &[u8]) -> Result<ObjectId> {
    let id = object_id(data);
    let mut meta = txn.open_table(OBJECT_META).map_err(db)?;
    if meta.get(id.as_str()).map_err(db)?.is_some() {
        return Ok(id);
    }
    let mut chunks = txn.open_table(OBJECT_CHUNKS).map_err(db)?;
    let mut count = 0u32;
    for (index, chunk) in data.chunks(CHUNK_SIZE).enumerate() {
        let index = u32::try_from(index).map_err(|_| StoreError::Invalid {
            what: "object",
            reason: "too many chunks".into(),
        })?;
        chunks.insert((id.as_str(), index), chunk).map_err(db)?;
        count = index + 1;
    }
    let record = record::encode(&ObjectMeta {
        len: data.len() as u64,
        chunks: count,
    });
    meta.insert(id.as_str(), record.as_slice()).map_err(db)?;
    crate::totals::count(txn, data.len() as u64, true)?;
    Ok(id)
}

/// Frees those of `candidates` (the objects of records `txn` removed) that
/// nothing refers to any more: no stage version, compiled code, model
/// version, dataset block or job block, no pin (an object stored with
/// [`Store::put_object`], which users, stages and configurations may hold
/// the id of anywhere, or named by an `objects` dataset) and no lease (a
/// dataset block uploaded before its dataset is registered). Returns the
/// bytes freed.
///
/// In the transaction that removes the records, so that no reader ever
/// sees a record whose object is gone, and no writer can add a reference
/// in between (redb runs one write transaction at a time).
pub(crate) fn free_unreferenced(
    txn: &WriteTransaction,
    mut candidates: BTreeSet<ObjectId>,
) -> Result<u64> {
    {
        let pins = txn.open_table(OBJECT_PINS).map_err(db)?;
        let leases = txn.open_table(OBJECT_LEASES).map_err(db)?;
        let mut held = Vec::new();
        for id in &candidates {
            if pins.get(id.as_str()).map_err(db)?.is_some()
                || leases.get(id.as_str()).map_err(db)?.is_some()
            {
                held.push(id.clone());
            }
        }
        for id in held {
            candidates.remove(&id);
        }
    }
    for id in referenced(txn, &candidates)? {
        candidates.remove(&id);
    }
    let mut meta = txn.open_table(OBJECT_META).map_err(db)?;
    let mut chunks = txn.open_table(OBJECT_CHUNKS).map_err(db)?;
    let mut freed = 0;
    for id in &candidates {
        let Some(raw) = meta.remove(id.as_str()).map_err(db)? else {
            continue;
        };
        let m: ObjectMeta = record::decode("objects", raw.value())?;
        drop(raw);
        for index in 0..m.chunks {
            chunks.remove((id.as_str(), index)).map_err(db)?;
        }
        freed += m.len;
    }
    crate::totals::count(txn, freed, false)?;
    Ok(freed)
}

/// Which of `candidates` a stage version, compiled code, model version,
/// dataset block or job block refers to (the job blocks through their
/// index, `refs`, once it is complete). A record this release cannot read
/// may refer to any of them, so then all are (their bytes stay: see
/// [`record::listed`]).
fn referenced(txn: &WriteTransaction, candidates: &BTreeSet<ObjectId>) -> Result<Vec<ObjectId>> {
    use crate::{BlockOutput, DatasetRecord, ModelRecord, StageRecord};
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let all = || Ok(candidates.iter().cloned().collect());
    let mut found = Vec::new();
    let mut see = |id: &str| {
        if candidates.contains(id) {
            found.push(id.to_string());
        }
    };
    for entry in txn.open_table(STAGES).map_err(db)?.iter().map_err(db)? {
        let (key, raw) = entry.map_err(db)?;
        let Some(rec) = record::listed::<StageRecord>("stages", key.value(), raw.value()) else {
            return all();
        };
        rec.versions.iter().for_each(|v| see(&v.digest));
    }
    for entry in txn.open_table(COMPILED).map_err(db)?.iter().map_err(db)? {
        see(entry.map_err(db)?.1.value());
    }
    for entry in txn.open_table(MODELS).map_err(db)?.iter().map_err(db)? {
        let (key, raw) = entry.map_err(db)?;
        let Some(rec) = record::listed::<ModelRecord>("models", key.value(), raw.value()) else {
            return all();
        };
        rec.versions.iter().for_each(|v| see(&v.object));
    }
    for entry in txn.open_table(DATASETS).map_err(db)?.iter().map_err(db)? {
        let (key, raw) = entry.map_err(db)?;
        let Some(rec) = record::listed::<DatasetRecord>("datasets", key.value(), raw.value())
        else {
            return all();
        };
        rec.blocks.iter().for_each(|b| see(&b.object));
    }
    if let Some(named) = crate::refs::named_by_blocks(txn, candidates.iter())? {
        found.extend(named.into_iter().cloned());
        return Ok(found);
    }
    for entry in txn.open_table(JOB_BLOCKS).map_err(db)?.iter().map_err(db)? {
        let (key, raw) = entry.map_err(db)?;
        let (job, block) = key.value();
        let Some(out) =
            record::listed::<BlockOutput>("job_blocks", format_args!("{job}/{block}"), raw.value())
        else {
            return all();
        };
        see(&out.output);
        out.errors.iter().for_each(|e| see(e));
    }
    Ok(found)
}

/// Ends one lease on each of `ids` (see [`Store::put_owned_object`]).
pub(crate) fn release(txn: &WriteTransaction, ids: &[ObjectId]) -> Result<()> {
    let mut leases = txn.open_table(OBJECT_LEASES).map_err(db)?;
    for id in ids {
        let held = leases
            .get(id.as_str())
            .map_err(db)?
            .map_or(0, |v| v.value());
        if held > 1 {
            leases.insert(id.as_str(), held - 1).map_err(db)?;
        } else {
            leases.remove(id.as_str()).map_err(db)?;
        }
    }
    Ok(())
}

/// Ends the leases of uploads a previous run left unfinished, and frees
/// their blocks where nothing else holds them. As the store opens.
/// Where a record cannot be read (the look for what names the blocks
/// decodes every record), the blocks are kept, and the store opens.
pub(crate) fn end_stale_leases(txn: &WriteTransaction) -> Result<()> {
    let mut stale = BTreeSet::new();
    txn.open_table(OBJECT_LEASES)
        .map_err(db)?
        .retain(|id, _| {
            stale.insert(id.to_string());
            false
        })
        .map_err(db)?;
    let count = stale.len();
    if let Err(e) = free_unreferenced(txn, stale) {
        tracing::warn!(
            blocks = count,
            "the blocks of uploads cut off are kept (not freed): {e}"
        );
    }
    Ok(())
}

/// Pins every stored object: a store written before objects were freed
/// does not say which of its objects users stored (and may hold the id
/// of), so none of them is ever freed. Once per store, as it opens.
pub(crate) fn pin_unowned(txn: &WriteTransaction) -> Result<()> {
    const KEY: &str = "objects_pinned_before_freeing";
    let mut counters = txn.open_table(crate::COUNTERS).map_err(db)?;
    if counters.get(KEY).map_err(db)?.is_some() {
        return Ok(());
    }
    let meta = txn.open_table(OBJECT_META).map_err(db)?;
    let mut pins = txn.open_table(OBJECT_PINS).map_err(db)?;
    let mut n = 0;
    for entry in meta.iter().map_err(db)? {
        pins.insert(entry.map_err(db)?.0.value(), ()).map_err(db)?;
        n += 1;
    }
    counters.insert(KEY, n).map_err(db)?;
    Ok(())
}

impl Store {
    /// Stores `data` and returns its id; storing the same bytes twice is free.
    ///
    /// The object is kept for as long as the store: its id may be held
    /// anywhere (a stage's state, a configuration, an `objects` dataset),
    /// so it is never freed. Committed to disk before it returns.
    pub fn put_object(&self, data: &[u8]) -> Result<ObjectId> {
        let txn = self.write()?;
        let id = write_object(&txn, data)?;
        txn.open_table(OBJECT_PINS)
            .map_err(db)?
            .insert(id.as_str(), ())
            .map_err(db)?;
        txn.commit().map_err(db)?;
        Ok(id)
    }

    /// Stores `data` as a block of a dataset being uploaded, and returns
    /// its id: unlike [`Store::put_object`]'s, the object is freed when the
    /// last record that names it is deleted.
    ///
    /// Until [`Store::put_dataset`] registers it, a lease holds it (a
    /// deletion of other records with the same bytes leaves it be). A
    /// lease that upload does not end ([`Store::put_dataset`] or
    /// [`Store::release_objects`]) ends when the store next opens.
    pub fn put_owned_object(&self, data: &[u8]) -> Result<ObjectId> {
        let txn = self.write()?;
        let id = write_object(&txn, data)?;
        {
            let mut leases = txn.open_table(OBJECT_LEASES).map_err(db)?;
            let held = leases
                .get(id.as_str())
                .map_err(db)?
                .map_or(0, |v| v.value());
            leases.insert(id.as_str(), held + 1).map_err(db)?;
        }
        txn.commit().map_err(db)?;
        Ok(id)
    }

    /// Ends the leases of an upload that registered nothing (one for each
    /// time [`Store::put_owned_object`] returned the id), freeing what
    /// nothing else holds.
    pub fn release_objects(&self, ids: &[ObjectId]) -> Result<()> {
        let txn = self.write()?;
        release(&txn, ids)?;
        free_unreferenced(&txn, ids.iter().cloned().collect())?;
        txn.commit().map_err(db)?;
        Ok(())
    }

    /// Pins objects, so that they are never freed (an `objects` dataset
    /// names them), in one transaction; their total size, or `Err(id)`
    /// naming the first that is not stored (and nothing pinned).
    pub fn pin_objects(&self, ids: &[&str]) -> Result<std::result::Result<u64, String>> {
        let txn = self.write()?;
        let mut total = 0;
        {
            let meta = txn.open_table(OBJECT_META).map_err(db)?;
            let mut pins = txn.open_table(OBJECT_PINS).map_err(db)?;
            for &id in ids {
                validate_id(id)?;
                let Some(raw) = meta.get(id).map_err(db)? else {
                    return Ok(Err(id.to_string()));
                };
                total += record::decode::<ObjectMeta>("objects", raw.value())?.len;
                pins.insert(id, ()).map_err(db)?;
            }
        }
        txn.commit().map_err(db)?;
        Ok(Ok(total))
    }

    /// How many objects are stored, and their bytes (counted as they are
    /// written and freed: two reads, whatever the store holds).
    pub fn object_totals(&self) -> Result<(u64, u64)> {
        crate::totals::read(&self.read()?)
    }

    /// Reads a whole object, or `None` when no object has this id.
    ///
    /// Fails with [`StoreError::Invalid`] when `id` is not a well-formed id.
    pub fn get_object(&self, id: &str) -> Result<Option<Vec<u8>>> {
        validate_id(id)?;
        let txn = self.read()?;
        let meta = txn.open_table(OBJECT_META).map_err(db)?;
        let Some(raw) = meta.get(id).map_err(db)? else {
            return Ok(None);
        };
        let meta: ObjectMeta = record::decode("objects", raw.value())?;
        let chunks = txn.open_table(OBJECT_CHUNKS).map_err(db)?;
        let mut out = Vec::with_capacity(meta.len as usize);
        for index in 0..meta.chunks {
            let chunk =
                chunks
                    .get((id, index))
                    .map_err(db)?
                    .ok_or_else(|| StoreError::Corrupt {
                        table: "object_chunks",
                        reason: format!("object {id} is missing chunk {index}"),
                    })?;
            out.extend_from_slice(chunk.value());
        }
        if out.len() as u64 != meta.len {
            return Err(StoreError::Corrupt {
                table: "object_chunks",
                reason: format!("object {id} has {} bytes, expected {}", out.len(), meta.len),
            });
        }
        Ok(Some(out))
    }

    /// Size in bytes of an object, or `None` when absent.
    pub fn object_len(&self, id: &str) -> Result<Option<u64>> {
        validate_id(id)?;
        let txn = self.read()?;
        let meta = txn.open_table(OBJECT_META).map_err(db)?;
        match meta.get(id).map_err(db)? {
            Some(raw) => Ok(Some(
                record::decode::<ObjectMeta>("objects", raw.value())?.len,
            )),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("db")).unwrap();
        (dir, store)
    }

    #[test]
    fn large_objects_are_chunked_and_reassembled() {
        let (_dir, store) = store();
        let data: Vec<u8> = (0..CHUNK_SIZE * 2 + 17).map(|i| (i % 251) as u8).collect();
        let id = store.put_object(&data).unwrap();
        assert_eq!(id, object_id(&data));
        assert_eq!(store.get_object(&id).unwrap().unwrap(), data);
        assert_eq!(store.object_len(&id).unwrap(), Some(data.len() as u64));
        // Idempotent.
        assert_eq!(store.put_object(&data).unwrap(), id);
    }

    #[test]
    fn empty_object_round_trips() {
        let (_dir, store) = store();
        let id = store.put_object(b"").unwrap();
        assert_eq!(store.get_object(&id).unwrap(), Some(vec![]));
    }

    #[test]
    fn unknown_and_malformed_ids() {
        let (_dir, store) = store();
        assert_eq!(store.get_object(&object_id(b"nope")).unwrap(), None);
        let err = store.get_object("../etc/passwd").unwrap_err();
        assert!(matches!(err, StoreError::Invalid { .. }), "{err}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

        /// Any bytes, around and across chunk boundaries, come back exactly,
        /// under the id of their hash, however often they are stored.
        #[test]
        fn any_object_round_trips(
            len in proptest::prop_oneof![0usize..64, (CHUNK_SIZE - 2)..(CHUNK_SIZE + 2), (2 * CHUNK_SIZE - 1)..(2 * CHUNK_SIZE + 1)],
            seed in proptest::prelude::any::<u8>(),
        ) {
            let (_dir, store) = store();
            let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
            let id = store.put_object(&data).unwrap();
            proptest::prop_assert_eq!(&id, &object_id(&data));
            proptest::prop_assert_eq!(store.put_object(&data).unwrap(), id.clone());
            proptest::prop_assert_eq!(store.object_len(&id).unwrap(), Some(len as u64));
            proptest::prop_assert_eq!(store.get_object(&id).unwrap().unwrap(), data);
        }
    }

    /// Whether an object with these bytes is stored.
    fn has(store: &Store, bytes: &[u8]) -> bool {
        store.object_len(&object_id(bytes)).unwrap().is_some()
    }

    /// Deleting a model, stage, dataset or job frees the objects only it
    /// named, and keeps those another record names or a user stored.
    #[test]
    fn deleting_a_record_frees_the_objects_nothing_else_names() {
        use crate::{BlockCommit, DatasetBlock, DatasetRecord};
        let (_dir, store) = store();
        // Two models of the same bytes; a third whose bytes a user stored.
        store.put_model("a", "onnx", b"shared weights", "").unwrap();
        store.put_model("b", "onnx", b"shared weights", "").unwrap();
        store.put_object(b"a user's weights").unwrap();
        store
            .put_model("c", "onnx", b"a user's weights", "")
            .unwrap();
        assert!(store.delete_model("a").unwrap());
        assert!(has(&store, b"shared weights"));
        assert!(store.delete_model("b").unwrap());
        assert!(!has(&store, b"shared weights"));
        assert!(store.delete_model("c").unwrap());
        assert!(has(&store, b"a user's weights"));
        // A model's versions, each freed.
        store.put_model("m", "onnx", b"v1", "").unwrap();
        store.put_model("m", "onnx", b"v2", "").unwrap();
        // A stage of two versions with compiled code (under two engine
        // fingerprints), and one of the same bytes as its first version.
        store
            .put_stage("s", b"component 1", Default::default())
            .unwrap();
        store
            .put_stage("s", b"component 2", Default::default())
            .unwrap();
        store
            .put_stage("t", b"component 1", Default::default())
            .unwrap();
        let key = |c: &[u8], engine: &str| format!("{}:{engine}", object_id(c));
        // (The last: compiled code of the same bytes as a model's, however
        // unlikely.)
        for (component, engine, code) in [
            (&b"component 1"[..], "e1", &b"code 1"[..]),
            (b"component 2", "e1", b"code 2"),
            (b"component 2", "e2", b"code 2'"),
            (b"component 1", "e3", b"v1"),
        ] {
            store.put_compiled(&key(component, engine), code).unwrap();
        }
        // Two datasets sharing a block; a job's output and errors.
        let block = |bytes: &[u8]| DatasetBlock {
            object: store.put_owned_object(bytes).unwrap(),
            rows: 1,
            bytes: bytes.len() as u64,
        };
        let one = vec![block(b"row 1\n"), block(b"row 2\n")];
        let two = vec![block(b"row 2\n")];
        store
            .put_dataset(&DatasetRecord::new("one", "lines", one))
            .unwrap();
        store
            .put_dataset(&DatasetRecord::new("two", "lines", two))
            .unwrap();
        let job = store.create_job("batch", "{}", 1, 1).unwrap();
        let again = store.create_job("batch", "{}", 1, 1).unwrap();
        let commit = BlockCommit {
            rows_in: 1,
            rows_out: 1,
            failed: 1,
            output: b"out\n".to_vec(),
            errors: b"why\n".to_vec(),
        };
        store.commit_block(job.id, 0, &commit).unwrap().unwrap();
        store.commit_block(again.id, 0, &commit).unwrap().unwrap();
        let (count, bytes) = store.object_totals().unwrap();

        assert!(store.delete_model("m").unwrap());
        assert!(has(&store, b"v1") && !has(&store, b"v2"));
        assert!(store.delete_stage("s").unwrap());
        assert!(!has(&store, b"component 2") && !has(&store, b"code 2"));
        assert!(!has(&store, b"code 2'"));
        assert!(has(&store, b"component 1") && has(&store, b"code 1"));
        assert_eq!(store.compiled(&key(b"component 2", "e2")).unwrap(), None);
        assert!(store.delete_stage("t").unwrap());
        assert!(!has(&store, b"component 1") && !has(&store, b"code 1"));
        assert!(!has(&store, b"v1"));
        assert!(store.delete_dataset("one").unwrap());
        assert!(!has(&store, b"row 1\n") && has(&store, b"row 2\n"));
        assert!(store.delete_dataset("two").unwrap());
        assert!(!has(&store, b"row 2\n"));
        assert!(store.delete_job(job.id).unwrap());
        assert!(has(&store, b"out\n") && has(&store, b"why\n"));
        assert!(store.delete_job(again.id).unwrap());
        assert!(!has(&store, b"out\n") && !has(&store, b"why\n"));
        let freed = [
            &b"v1"[..],
            b"v2",
            b"component 1",
            b"component 2",
            b"code 1",
            b"code 2",
            b"code 2'",
            b"row 1\n",
            b"row 2\n",
            b"out\n",
            b"why\n",
        ];
        let freed_bytes: usize = freed.iter().map(|b| b.len()).sum();
        assert_eq!(
            store.object_totals().unwrap(),
            (count - freed.len() as u64, bytes - freed_bytes as u64)
        );
        // What is left: the user's object, pinned.
        assert_eq!(store.object_totals().unwrap().0, 1);
    }

    /// A block being uploaded is held by its upload's lease until its
    /// dataset is registered; a lease the upload does not end ends when it
    /// fails or, at the latest, when the store opens again. An object an
    /// `objects` dataset names is pinned.
    #[test]
    fn uploads_hold_their_blocks_and_datasets_pin_the_objects_they_name() {
        use crate::{DatasetBlock, DatasetRecord};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let store = Store::open(&path).unwrap();
        let block = |bytes: &[u8]| DatasetBlock {
            object: store.put_owned_object(bytes).unwrap(),
            rows: 1,
            bytes: bytes.len() as u64,
        };
        // Dataset `a` holds X; an upload of the same bytes leases X while
        // `a` is deleted, and registers it as `b`.
        let x = block(b"x\n");
        store
            .put_dataset(&DatasetRecord::new("a", "lines", vec![x]))
            .unwrap();
        let again = block(b"x\n");
        assert!(store.delete_dataset("a").unwrap());
        assert!(has(&store, b"x\n"), "the upload's lease holds it");
        store
            .put_dataset(&DatasetRecord::new("b", "lines", vec![again]))
            .unwrap();
        assert!(store.delete_dataset("b").unwrap());
        assert!(!has(&store, b"x\n"), "the dataset ended the lease");
        // A failed upload releases its blocks.
        let y = block(b"y\n");
        store.release_objects(&[y.object]).unwrap();
        assert!(!has(&store, b"y\n"));
        // An upload cut off (no release) holds its block until the store
        // opens again.
        block(b"z\n");
        drop(store);
        let store = Store::open(&path).unwrap();
        assert!(!has(&store, b"z\n"));
        // A model's bytes, named by an `objects` dataset, outlive it.
        store.put_model("m", "onnx", b"weights", "").unwrap();
        let (weights, nothing) = (object_id(b"weights"), object_id(b"nothing"));
        let refused = store.pin_objects(&[&weights, &nothing]).unwrap();
        assert_eq!(refused, Err(nothing.clone()));
        assert!(store.delete_model("m").unwrap());
        assert!(!has(&store, b"weights"), "a refused pin pins nothing");
        store.put_model("m", "onnx", b"weights", "").unwrap();
        assert_eq!(store.pin_objects(&[&weights, &weights]).unwrap(), Ok(14));
        assert!(store.delete_model("m").unwrap());
        assert!(has(&store, b"weights"));
    }

    /// A store written before objects were freed does not say which objects
    /// a user stored: none of them is freed after the upgrade.
    #[test]
    fn objects_stored_before_freeing_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let store = Store::open(&path).unwrap();
            store.put_model("m", "onnx", b"old weights", "").unwrap();
            store.put_model("n", "onnx", b"new weights", "").unwrap();
            // As such a store was: no pins, and no sign of the upgrade.
            let txn = store.write().unwrap();
            txn.delete_table(OBJECT_PINS).unwrap();
            txn.open_table(crate::COUNTERS)
                .unwrap()
                .remove("objects_pinned_before_freeing")
                .unwrap();
            txn.commit().unwrap();
        }
        let store = Store::open(&path).unwrap();
        store.put_model("n", "onnx", b"newer weights", "").unwrap();
        assert!(store.delete_model("m").unwrap());
        assert!(store.delete_model("n").unwrap());
        assert!(has(&store, b"old weights") && has(&store, b"new weights"));
        assert!(!has(&store, b"newer weights"));
        // Once only: what the upgraded store writes is freed as usual.
        drop(store);
        let store = Store::open(&path).unwrap();
        store.put_model("n", "onnx", b"newest weights", "").unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        assert!(store.delete_model("n").unwrap());
        assert!(!has(&store, b"newest weights"));
    }

    #[test]
    fn objects_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let id = Store::open(&path).unwrap().put_object(b"durable").unwrap();
        let store = Store::open(&path).unwrap();
        assert_eq!(store.get_object(&id).unwrap().unwrap(), b"durable");
    }
}
