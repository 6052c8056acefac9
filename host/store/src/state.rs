//! Durable per-stage key/value state (running totals, checkpoints, actor state).

use crate::{Result, STATE, Store, db};

impl Store {
    /// Reads `key` of `stage`'s state.
    pub fn state_get(&self, stage: &str, key: &str) -> Result<Option<Vec<u8>>> {
        let txn = self.read()?;
        let table = txn.open_table(STATE).map_err(db)?;
        Ok(table
            .get((stage, key))
            .map_err(db)?
            .map(|v| v.value().to_vec()))
    }

    /// Writes `key` of `stage`'s state; durable when this returns.
    pub fn state_set(&self, stage: &str, key: &str, value: &[u8]) -> Result<()> {
        let txn = self.write()?;
        txn.open_table(STATE)
            .map_err(db)?
            .insert((stage, key), value)
            .map_err(db)?;
        txn.commit().map_err(db)?;
        Ok(())
    }

    /// Deletes `key` of `stage`'s state; a no-op when absent.
    pub fn state_delete(&self, stage: &str, key: &str) -> Result<()> {
        let txn = self.write()?;
        txn.open_table(STATE)
            .map_err(db)?
            .remove((stage, key))
            .map_err(db)?;
        txn.commit().map_err(db)?;
        Ok(())
    }

    /// Writes `entries` into namespace `ns` in one transaction; with
    /// `replace`, every other key of `ns` is deleted first, so the
    /// namespace becomes exactly `entries` (a copy pulled from the cluster).
    pub fn state_sync(&self, ns: &str, entries: &[(String, Vec<u8>)], replace: bool) -> Result<()> {
        let txn = self.write()?;
        {
            let mut table = txn.open_table(STATE).map_err(db)?;
            if replace {
                table.retain(|(owner, _), _| owner != ns).map_err(db)?;
            }
            for (key, value) in entries {
                table
                    .insert((ns, key.as_str()), value.as_slice())
                    .map_err(db)?;
            }
        }
        txn.commit().map_err(db)?;
        Ok(())
    }
}

/// Deletes `keys` from every stage's state within `txn` (a deleted job's
/// checkpoints); how many entries went.
pub(crate) fn forget(txn: &redb::WriteTransaction, keys: &[String]) -> Result<usize> {
    if keys.is_empty() {
        return Ok(0);
    }
    let keys: std::collections::HashSet<&str> = keys.iter().map(String::as_str).collect();
    let mut gone = 0;
    txn.open_table(STATE)
        .map_err(db)?
        .retain(|(_, key), _| {
            let forget = keys.contains(key);
            gone += usize::from(forget);
            !forget
        })
        .map_err(db)?;
    Ok(gone)
}

#[cfg(test)]
mod tests {
    use crate::Store;

    #[test]
    fn state_is_per_stage_and_durable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let store = Store::open(&path).unwrap();
            store.state_set("count", "totals", b"41").unwrap();
            store.state_set("other", "totals", b"x").unwrap();
            store.state_set("count", "gone", b"y").unwrap();
            store.state_delete("count", "gone").unwrap();
            store.state_delete("count", "never").unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.state_get("count", "totals").unwrap().unwrap(), b"41");
        assert_eq!(store.state_get("other", "totals").unwrap().unwrap(), b"x");
        assert_eq!(store.state_get("count", "gone").unwrap(), None);
    }

    #[test]
    fn sync_upserts_or_replaces_one_namespace() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("db")).unwrap();
        store.state_set("@a", "stale", b"old").unwrap();
        store.state_set("@a", "kept", b"old").unwrap();
        store.state_set("@b", "other", b"b").unwrap();
        let pulled = vec![("kept".to_string(), b"new".to_vec())];
        store.state_sync("@a", &pulled, false).unwrap();
        assert_eq!(store.state_get("@a", "kept").unwrap().unwrap(), b"new");
        assert_eq!(store.state_get("@a", "stale").unwrap().unwrap(), b"old");
        store.state_sync("@a", &pulled, true).unwrap();
        assert_eq!(store.state_get("@a", "stale").unwrap(), None);
        assert_eq!(store.state_get("@a", "kept").unwrap().unwrap(), b"new");
        assert_eq!(store.state_get("@b", "other").unwrap().unwrap(), b"b");
    }

    /// Deleting jobs deletes the state keys named with them, from every
    /// stage, in the same transaction.
    #[test]
    fn deleting_jobs_forgets_their_keys_in_every_stage() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("db")).unwrap();
        store.state_set("a", "checkpoint/job-1", b"1").unwrap();
        store.state_set("b", "checkpoint/job-1", b"1").unwrap();
        store.state_set("b", "checkpoint/job-2", b"2").unwrap();
        let job = store.create_job("invoke", "{}", 0, 1).unwrap();
        let keys = [
            "checkpoint/job-1".to_string(),
            "checkpoint/job-9".to_string(),
        ];
        assert_eq!(store.delete_jobs(&[job.id, 7], &keys).unwrap(), 1);
        assert_eq!(store.state_get("a", "checkpoint/job-1").unwrap(), None);
        assert_eq!(store.state_get("b", "checkpoint/job-1").unwrap(), None);
        assert_eq!(
            store.state_get("b", "checkpoint/job-2").unwrap().unwrap(),
            b"2"
        );
    }
}
