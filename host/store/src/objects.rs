//! Content-addressed objects, stored in fixed-size chunks.

use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::{OBJECT_CHUNKS, OBJECT_META, Result, Store, StoreError, db, record};

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
struct ObjectMeta {
    len: u64,
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
    Ok(id)
}

impl Store {
    /// Stores `data` and returns its id; storing the same bytes twice is free.
    ///
    /// Committed to disk before it returns.
    pub fn put_object(&self, data: &[u8]) -> Result<ObjectId> {
        let txn = self.write()?;
        let id = write_object(&txn, data)?;
        txn.commit().map_err(db)?;
        Ok(id)
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

    #[test]
    fn objects_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let id = Store::open(&path).unwrap().put_object(b"durable").unwrap();
        let store = Store::open(&path).unwrap();
        assert_eq!(store.get_object(&id).unwrap().unwrap(), b"durable");
    }
}
