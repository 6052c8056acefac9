//! The objects' total size, kept in `counters` by the transactions that
//! write and free objects, so that `GET /v1/node` reads two numbers rather
//! than every object's record.

use redb::{ReadTransaction, ReadableTable, ReadableTableMetadata, WriteTransaction};

use crate::objects::ObjectMeta;
use crate::{COUNTERS, OBJECT_META, Result, db, record};

/// The bytes of every object stored.
const BYTES: &str = "object_bytes";

/// Counts `len` bytes more (`add`) or fewer.
pub(crate) fn count(txn: &WriteTransaction, len: u64, add: bool) -> Result<()> {
    let mut counters = txn.open_table(COUNTERS).map_err(db)?;
    let now = counters.get(BYTES).map_err(db)?.map_or(0, |v| v.value());
    let now = if add {
        now + len
    } else {
        now.saturating_sub(len)
    };
    counters.insert(BYTES, now).map_err(db)?;
    Ok(())
}

/// Sums the objects as the store opens: a store from before the total has
/// none, and an older release that wrote to the store since did not keep it.
pub(crate) fn build(txn: &WriteTransaction) -> Result<()> {
    let mut bytes = 0;
    for entry in txn
        .open_table(OBJECT_META)
        .map_err(db)?
        .iter()
        .map_err(db)?
    {
        let (id, raw) = entry.map_err(db)?;
        let meta = record::listed::<ObjectMeta>("objects", id.value(), raw.value());
        bytes += meta.map_or(0, |m| m.len);
    }
    let mut counters = txn.open_table(COUNTERS).map_err(db)?;
    if counters.get(BYTES).map_err(db)?.map(|v| v.value()) != Some(bytes) {
        counters.insert(BYTES, bytes).map_err(db)?;
    }
    Ok(())
}

/// How many objects are stored, and their bytes.
pub(crate) fn read(txn: &ReadTransaction) -> Result<(u64, u64)> {
    let count = txn.open_table(OBJECT_META).map_err(db)?.len().map_err(db)?;
    let counters = txn.open_table(COUNTERS).map_err(db)?;
    let bytes = counters.get(BYTES).map_err(db)?.map_or(0, |v| v.value());
    Ok((count, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    /// Counting every object's record, as `object_totals` once did.
    fn scanned(store: &Store) -> (u64, u64) {
        let txn = store.read().unwrap();
        let (mut count, mut bytes) = (0, 0);
        for entry in txn.open_table(OBJECT_META).unwrap().iter().unwrap() {
            let m: ObjectMeta = record::decode("objects", entry.unwrap().1.value()).unwrap();
            count += 1;
            bytes += m.len;
        }
        (count, bytes)
    }

    /// Writes (the same bytes twice among them) and frees keep the totals
    /// what counting every object gives, and a store from before them sums
    /// its objects as it opens.
    #[test]
    fn totals_follow_writes_and_frees() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let store = Store::open(&path).unwrap();
        assert_eq!(store.object_totals().unwrap(), (0, 0));
        store.put_object(b"pinned").unwrap();
        store.put_object(b"pinned").unwrap();
        store.put_model("m", "onnx", b"weights v1", "").unwrap();
        store.put_model("m", "onnx", b"weights, v2", "").unwrap();
        store.put_model("n", "onnx", b"weights v1", "").unwrap();
        let big = vec![7u8; crate::CHUNK_SIZE + 5];
        store.put_model("big", "onnx", &big, "").unwrap();
        let expect = (4, (6 + 10 + 11 + big.len()) as u64);
        assert_eq!(store.object_totals().unwrap(), expect);
        assert_eq!(scanned(&store), expect);
        assert!(store.delete_model("m").unwrap());
        assert!(store.delete_model("big").unwrap());
        assert_eq!(store.object_totals().unwrap(), (2, 16));
        assert_eq!(scanned(&store), (2, 16));

        // As a store from before the totals was.
        {
            let txn = store.write().unwrap();
            txn.open_table(COUNTERS).unwrap().remove(BYTES).unwrap();
            txn.commit().unwrap();
        }
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.object_totals().unwrap(), (2, 16));
    }
}
