//! How many job blocks name each object. A deletion looks its candidates up
//! here rather than reading every block the store keeps, so its cost does
//! not grow with the jobs kept (job blocks are most of a store's records).

use std::collections::BTreeMap;

use redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};

use crate::{BlockOutput, COUNTERS, JOB_BLOCK_REFS, JOB_BLOCKS, Result, db, record};

/// Set in `counters` while the index counts every job block. Without it (a
/// store whose blocks, as it opened, held one this release cannot read),
/// deletions read the blocks instead.
const COMPLETE: &str = "job_block_refs_complete";

/// The objects `block` names.
fn named(block: &BlockOutput) -> impl Iterator<Item = &str> {
    std::iter::once(block.output.as_str()).chain(block.errors.as_deref())
}

/// Counts the objects `block` names once more (`add`), or once less.
pub(crate) fn count(txn: &WriteTransaction, block: &BlockOutput, add: bool) -> Result<()> {
    let mut refs = txn.open_table(JOB_BLOCK_REFS).map_err(db)?;
    for id in named(block) {
        let n = refs.get(id).map_err(db)?.map_or(0, |v| v.value());
        let n = if add { n + 1 } else { n.saturating_sub(1) };
        if n == 0 {
            refs.remove(id).map_err(db)?;
        } else {
            refs.insert(id, n).map_err(db)?;
        }
    }
    Ok(())
}

/// Which of `ids` a job block names: `None` when the index is not complete.
pub(crate) fn named_by_blocks<'a>(
    txn: &WriteTransaction,
    ids: impl Iterator<Item = &'a String>,
) -> Result<Option<Vec<&'a String>>> {
    let counters = txn.open_table(COUNTERS).map_err(db)?;
    if counters.get(COMPLETE).map_err(db)?.is_none() {
        return Ok(None);
    }
    let refs = txn.open_table(JOB_BLOCK_REFS).map_err(db)?;
    let mut out = Vec::new();
    for id in ids {
        if refs.get(id.as_str()).map_err(db)?.is_some() {
            out.push(id);
        }
    }
    Ok(Some(out))
}

/// Counts every job block as the store opens, and puts the index right
/// where it differs from that: a store from before the index has none, and
/// an older release that wrote to the store since did not keep it (a stale
/// count could free what a block names). One read of the blocks per start.
pub(crate) fn build(txn: &WriteTransaction) -> Result<()> {
    let mut counters = txn.open_table(COUNTERS).map_err(db)?;
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for entry in txn.open_table(JOB_BLOCKS).map_err(db)?.iter().map_err(db)? {
        let (key, raw) = entry.map_err(db)?;
        let (job, block) = key.value();
        let at = format_args!("{job}/{block}");
        let Some(block) = record::listed::<BlockOutput>("job_blocks", at, raw.value()) else {
            counters.remove(COMPLETE).map_err(db)?;
            return Ok(());
        };
        for id in named(&block) {
            *counts.entry(id.to_string()).or_default() += 1;
        }
    }
    let mut refs = txn.open_table(JOB_BLOCK_REFS).map_err(db)?;
    let mut same = refs.len().map_err(db)? == counts.len() as u64;
    for entry in refs.iter().map_err(db)? {
        let (id, n) = entry.map_err(db)?;
        same = same && counts.get(id.value()) == Some(&n.value());
    }
    if !same {
        refs.retain(|_, _| false).map_err(db)?;
        for (id, n) in &counts {
            refs.insert(id.as_str(), n).map_err(db)?;
        }
    }
    counters.insert(COMPLETE, 1).map_err(db)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BlockCommit, Store, object_id};

    /// The index as it is, and as a count of every block would make it.
    fn index_and_truth(store: &Store) -> (BTreeMap<String, u64>, BTreeMap<String, u64>) {
        let txn = store.write().unwrap();
        let mut truth = BTreeMap::new();
        for entry in txn.open_table(JOB_BLOCKS).unwrap().iter().unwrap() {
            let block: BlockOutput =
                record::decode("job_blocks", entry.unwrap().1.value()).unwrap();
            for id in named(&block) {
                *truth.entry(id.to_string()).or_default() += 1;
            }
        }
        let index = txn
            .open_table(JOB_BLOCK_REFS)
            .unwrap()
            .iter()
            .unwrap()
            .map(|e| {
                let (k, v) = e.unwrap();
                (k.value().to_string(), v.value())
            })
            .collect();
        (index, truth)
    }

    fn commit(store: &Store, job: u64, block: u32, output: &str, errors: &str) {
        let commit = BlockCommit {
            rows_in: 1,
            output: output.as_bytes().to_vec(),
            errors: errors.as_bytes().to_vec(),
            ..Default::default()
        };
        store.commit_block(job, block, &commit).unwrap().unwrap();
    }

    /// Committing and deleting blocks keeps the index what counting every
    /// block gives; a store from before the index counts its blocks as it
    /// opens; and deletions free what the index says nothing names.
    #[test]
    fn the_index_counts_what_the_blocks_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let store = Store::open(&path).unwrap();
        let has = |store: &Store, bytes: &str| {
            store
                .object_len(&object_id(bytes.as_bytes()))
                .unwrap()
                .is_some()
        };
        let (a, b, c) = (1, 2, 3);
        for _ in [a, b, c] {
            store.create_job("batch", "{}", 3, 3).unwrap();
        }
        // Shared outputs, an output equal to another block's errors, and a
        // block whose output and errors are the same bytes.
        commit(&store, a, 0, "x\n", "");
        commit(&store, a, 1, "shared\n", "oops\n");
        commit(&store, b, 0, "shared\n", "");
        commit(&store, b, 1, "oops\n", "oops\n");
        commit(&store, c, 0, "only c\n", "");
        let (index, truth) = index_and_truth(&store);
        assert_eq!(index, truth);
        assert_eq!(index[&object_id(b"oops\n")], 3);

        assert_eq!(store.delete_jobs(&[a], &[]).unwrap(), 1);
        assert!(!has(&store, "x\n"));
        assert!(has(&store, "shared\n") && has(&store, "oops\n"));
        let (index, truth) = index_and_truth(&store);
        assert_eq!(index, truth);

        // As a store from before the index was.
        {
            let txn = store.write().unwrap();
            txn.delete_table(JOB_BLOCK_REFS).unwrap();
            txn.open_table(COUNTERS).unwrap().remove(COMPLETE).unwrap();
            txn.commit().unwrap();
        }
        // Without it, deletions read the blocks.
        assert_eq!(store.delete_jobs(&[c], &[]).unwrap(), 1);
        assert!(!has(&store, "only c\n"));
        drop(store);
        let store = Store::open(&path).unwrap();
        let (index, truth) = index_and_truth(&store);
        assert_eq!(index, truth);
        assert!(!index.is_empty());
        assert_eq!(store.delete_jobs(&[b], &[]).unwrap(), 1);
        assert!(!has(&store, "shared\n") && !has(&store, "oops\n"));
        assert!(index_and_truth(&store).0.is_empty());

        // An older release committed a block since (it keeps no index):
        // the next open counts it.
        store.create_job("batch", "{}", 1, 1).unwrap();
        commit(&store, 4, 0, "older\n", "");
        {
            let txn = store.write().unwrap();
            txn.open_table(JOB_BLOCK_REFS)
                .unwrap()
                .retain(|_, _| false)
                .unwrap();
            txn.commit().unwrap();
        }
        drop(store);
        let store = Store::open(&path).unwrap();
        let (index, truth) = index_and_truth(&store);
        assert_eq!(index, truth);
        store.put_model("m", "onnx", b"older\n", "").unwrap();
        assert!(store.delete_model("m").unwrap());
        assert!(has(&store, "older\n"), "the block names it");
    }

    /// A block this release cannot read leaves the index incomplete, so
    /// deletions go on reading the blocks (and keep what it may name).
    #[test]
    fn an_unreadable_block_leaves_the_index_to_the_scan() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let store = Store::open(&path).unwrap();
        store.create_job("batch", "{}", 2, 2).unwrap();
        store.create_job("batch", "{}", 1, 1).unwrap();
        commit(&store, 1, 0, "kept\n", "");
        commit(&store, 2, 0, "freed?\n", "");
        {
            let txn = store.write().unwrap();
            {
                let mut blocks = txn.open_table(JOB_BLOCKS).unwrap();
                let mut bytes = blocks.get((1, 0)).unwrap().unwrap().value().to_vec();
                bytes[0] += 1;
                blocks.insert((1, 0), bytes.as_slice()).unwrap();
            }
            txn.commit().unwrap();
        }
        drop(store);
        let store = Store::open(&path).unwrap();
        let txn = store.write().unwrap();
        let ids = [object_id(b"freed?\n")];
        assert_eq!(named_by_blocks(&txn, ids.iter()).unwrap(), None);
        drop(txn);
        assert_eq!(store.delete_jobs(&[2], &[]).unwrap(), 1);
        let freed = store.object_len(&ids[0]).unwrap().is_none();
        assert!(!freed, "an unreadable block may name it");
    }
}
