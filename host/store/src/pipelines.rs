//! The pipeline registry: name → the latest spec (opaque JSON to this crate)
//! and a version that increases whenever the spec changes.

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use crate::stages::{now_ms, validate_name_of};
use crate::{PIPELINES, Result, Store, db, record};

/// A stored pipeline spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineRecord {
    /// Pipeline name.
    pub name: String,
    /// 1, then +1 per change.
    pub version: u32,
    /// The spec as JSON; its schema belongs to the daemon.
    pub spec_json: String,
    /// When this version was applied, ms since the Unix epoch.
    pub created_unix_ms: u64,
}

impl Store {
    /// Stores `spec_json` as the pipeline's latest spec; an unchanged spec
    /// keeps its version.
    pub fn put_pipeline(&self, name: &str, spec_json: &str) -> Result<PipelineRecord> {
        validate_name_of("pipeline name", name)?;
        let txn = self.write()?;
        let rec = {
            let mut table = txn.open_table(PIPELINES).map_err(db)?;
            let previous = match table.get(name).map_err(db)? {
                Some(raw) => Some(record::decode::<PipelineRecord>("pipelines", raw.value())?),
                None => None,
            };
            if let Some(prev) = previous.as_ref().filter(|p| p.spec_json == spec_json) {
                return Ok(prev.clone());
            }
            let rec = PipelineRecord {
                name: name.to_string(),
                version: previous.map_or(1, |p| p.version + 1),
                spec_json: spec_json.to_string(),
                created_unix_ms: now_ms(),
            };
            table
                .insert(name, record::encode(&rec).as_slice())
                .map_err(db)?;
            rec
        };
        txn.commit().map_err(db)?;
        Ok(rec)
    }

    /// One pipeline, or `None`.
    pub fn pipeline(&self, name: &str) -> Result<Option<PipelineRecord>> {
        self.get_named(PIPELINES, "pipelines", name)
    }

    /// Every pipeline, by name.
    pub fn list_pipelines(&self) -> Result<Vec<PipelineRecord>> {
        self.list_named(PIPELINES, "pipelines")
    }

    /// Removes a pipeline; `true` when it existed.
    pub fn delete_pipeline(&self, name: &str) -> Result<bool> {
        self.remove_named(PIPELINES, name)
    }
}

#[cfg(test)]
mod tests {
    use crate::Store;

    #[test]
    fn versions_change_only_with_the_spec_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let store = Store::open(&path).unwrap();
            assert_eq!(store.put_pipeline("text", "{}").unwrap().version, 1);
            assert_eq!(store.put_pipeline("text", "{}").unwrap().version, 1);
            assert_eq!(store.put_pipeline("text", "{\"a\":1}").unwrap().version, 2);
            store.put_pipeline("other", "{}").unwrap();
            assert!(store.delete_pipeline("other").unwrap());
            assert!(!store.delete_pipeline("other").unwrap());
            assert!(store.put_pipeline("Bad Name", "{}").is_err());
        }
        let store = Store::open(&path).unwrap();
        let all = store.list_pipelines().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].version, 2);
        assert_eq!(
            store.pipeline("text").unwrap().unwrap().spec_json,
            "{\"a\":1}"
        );
    }
}
