//! The dataset registry: a named, immutable list of blocks. Each block is an
//! object holding newline-separated rows; the daemon decides what a row means
//! (a JSON document, a line of text, or the id of a binary object).

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use crate::objects::{free_unreferenced, validate_id};
use crate::stages::{now_ms, validate_name_of};
use crate::{DATASETS, ObjectId, Result, Store, StoreError, db};

/// One block of a dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetBlock {
    /// The object holding the block's rows, one per line.
    pub object: ObjectId,
    /// Rows in the block.
    pub rows: u32,
    /// Size of the block object in bytes.
    pub bytes: u64,
}

/// A stored dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetRecord {
    /// Dataset name.
    pub name: String,
    /// Row format, owned by the daemon (`jsonl`, `lines`, `objects`…).
    pub format: String,
    /// Blocks in row order.
    pub blocks: Vec<DatasetBlock>,
    /// Rows in all blocks.
    pub rows: u64,
    /// Bytes in all blocks.
    pub bytes: u64,
    /// When it was created, ms since the Unix epoch.
    pub created_unix_ms: u64,
}

impl DatasetRecord {
    /// A record over `blocks`, with the totals computed.
    pub fn new(name: &str, format: &str, blocks: Vec<DatasetBlock>) -> Self {
        Self {
            name: name.to_string(),
            format: format.to_string(),
            rows: blocks.iter().map(|b| u64::from(b.rows)).sum(),
            bytes: blocks.iter().map(|b| b.bytes).sum(),
            blocks,
            created_unix_ms: now_ms(),
        }
    }
}

impl Store {
    /// Registers a dataset whose block objects are already stored, and ends
    /// the leases its upload held on them (one per block: see
    /// [`Store::put_owned_object`]). Fails with [`StoreError::Exists`] when
    /// the name is taken, and with [`StoreError::Invalid`] when a block
    /// object is missing.
    pub fn put_dataset(&self, rec: &DatasetRecord) -> Result<()> {
        validate_name_of("dataset name", &rec.name)?;
        let txn = self.write()?;
        {
            let meta = txn.open_table(crate::OBJECT_META).map_err(db)?;
            for (i, block) in rec.blocks.iter().enumerate() {
                validate_id(&block.object)?;
                if meta.get(block.object.as_str()).map_err(db)?.is_none() {
                    return Err(StoreError::Invalid {
                        what: "dataset block",
                        reason: format!("block {i}: object {} is not stored", block.object),
                    });
                }
            }
        }
        Self::insert_new_named(&txn, DATASETS, "dataset", &rec.name, rec)?;
        // The dataset holds its blocks now, not the upload's leases.
        let blocks: Vec<ObjectId> = rec.blocks.iter().map(|b| b.object.clone()).collect();
        crate::objects::release(&txn, &blocks)?;
        txn.commit().map_err(db)?;
        Ok(())
    }

    /// One dataset, or `None`.
    pub fn dataset(&self, name: &str) -> Result<Option<DatasetRecord>> {
        self.get_named(DATASETS, "datasets", name)
    }

    /// Every dataset, by name.
    pub fn list_datasets(&self) -> Result<Vec<DatasetRecord>> {
        self.list_named(DATASETS, "datasets")
    }

    /// Forgets a dataset and frees its blocks (unless something else refers
    /// to the same bytes: see [`Store::put_owned_object`]); `true` when it
    /// existed.
    pub fn delete_dataset(&self, name: &str) -> Result<bool> {
        let txn = self.write()?;
        let removed = {
            let mut table = txn.open_table(DATASETS).map_err(db)?;
            let raw = table.remove(name).map_err(db)?;
            // One this release cannot read goes, and the blocks it may
            // name stay (`record::listed`).
            raw.map(|r| crate::record::listed::<DatasetRecord>("datasets", name, r.value()))
        };
        if let Some(Some(rec)) = &removed {
            let objects = rec.blocks.iter().map(|b| b.object.clone()).collect();
            free_unreferenced(&txn, objects)?;
        }
        let existed = removed.is_some();
        txn.commit().map_err(db)?;
        Ok(existed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datasets_register_once_and_need_their_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("db")).unwrap();
        let a = store.put_object(b"{\"n\":1}\n{\"n\":2}\n").unwrap();
        let block = DatasetBlock {
            object: a,
            rows: 2,
            bytes: 16,
        };
        let rec = DatasetRecord::new("corpus", "jsonl", vec![block.clone(), block]);
        assert_eq!((rec.rows, rec.bytes), (4, 32));
        store.put_dataset(&rec).unwrap();
        assert!(matches!(
            store.put_dataset(&rec).unwrap_err(),
            StoreError::Exists { .. }
        ));
        let missing = DatasetRecord::new(
            "other",
            "jsonl",
            vec![DatasetBlock {
                object: crate::object_id(b"absent"),
                rows: 1,
                bytes: 1,
            }],
        );
        let err = store.put_dataset(&missing).unwrap_err();
        assert!(err.to_string().contains("not stored"), "{err}");
        assert_eq!(store.dataset("corpus").unwrap().unwrap(), rec);
        assert_eq!(store.list_datasets().unwrap().len(), 1);
        assert!(store.delete_dataset("corpus").unwrap());
        assert!(store.dataset("corpus").unwrap().is_none());
    }
}
