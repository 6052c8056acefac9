//! The model registry: name → versions, each an object (the model bytes)
//! with its encoding and a summary of what it holds.

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use crate::objects::{free_unreferenced, write_object};
use crate::record::Removal;
use crate::stages::{Expect, now_ms, validate_name_of};
use crate::{MODELS, ObjectId, Result, Store, db, record};

/// One version of a model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelVersion {
    /// 1, then +1 per upload of different bytes.
    pub version: u32,
    /// `onnx` or `ggml`.
    pub encoding: String,
    /// The object holding the model bytes.
    pub object: ObjectId,
    /// Size in bytes.
    pub size: u64,
    /// Upload time, ms since the Unix epoch.
    pub created_unix_ms: u64,
    /// What the model holds (JSON written by the daemon).
    pub summary: String,
}

/// A model and its versions, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRecord {
    /// Model name.
    pub name: String,
    /// Versions, oldest first; never empty.
    pub versions: Vec<ModelVersion>,
}

impl ModelRecord {
    /// The newest version.
    pub fn latest(&self) -> &ModelVersion {
        self.versions.last().expect("a model has a version")
    }

    /// Version `n`, if kept.
    pub fn version(&self, n: u32) -> Option<&ModelVersion> {
        self.versions.iter().find(|v| v.version == n)
    }
}

impl Store {
    /// Stores `bytes` as a new version of model `name` in one transaction;
    /// the same bytes and encoding as the latest version change nothing.
    /// Returns the record and whether a version was added.
    pub fn put_model(
        &self,
        name: &str,
        encoding: &str,
        bytes: &[u8],
        summary: &str,
    ) -> Result<(ModelRecord, bool)> {
        Ok(self
            .put_model_if(name, encoding, bytes, summary, Expect::Any)?
            .expect("`Expect::Any` always holds"))
    }

    /// [`Store::put_model`] only if the model's latest version is what
    /// `expect` says, checked in the same transaction; `None` (and nothing
    /// written) otherwise.
    pub fn put_model_if(
        &self,
        name: &str,
        encoding: &str,
        bytes: &[u8],
        summary: &str,
        expect: Expect,
    ) -> Result<Option<(ModelRecord, bool)>> {
        validate_name_of("model name", name)?;
        let txn = self.write()?;
        let (rec, added) = {
            let mut table = txn.open_table(MODELS).map_err(db)?;
            let existing = match table.get(name).map_err(db)? {
                Some(raw) => Some(record::decode::<ModelRecord>("models", raw.value())?),
                None => None,
            };
            if !expect.holds(existing.as_ref().map(|r| r.latest().version)) {
                return Ok(None);
            }
            let object = write_object(&txn, bytes)?;
            let mut rec = existing.unwrap_or_else(|| ModelRecord {
                name: name.to_string(),
                versions: Vec::new(),
            });
            let same = rec
                .versions
                .last()
                .is_some_and(|v| v.object == object && v.encoding == encoding);
            if !same {
                let version = rec.versions.last().map_or(1, |v| v.version + 1);
                rec.versions.push(ModelVersion {
                    version,
                    encoding: encoding.to_string(),
                    object,
                    size: bytes.len() as u64,
                    created_unix_ms: now_ms(),
                    summary: summary.to_string(),
                });
                table
                    .insert(name, record::encode(&rec).as_slice())
                    .map_err(db)?;
            }
            (rec, !same)
        };
        txn.commit().map_err(db)?;
        Ok(Some((rec, added)))
    }

    /// One model, or `None`.
    pub fn model(&self, name: &str) -> Result<Option<ModelRecord>> {
        self.get_named(MODELS, "models", name)
    }

    /// Every model, by name.
    pub fn list_models(&self) -> Result<Vec<ModelRecord>> {
        self.list_named(MODELS, "models")
    }

    /// Forgets a model and frees its versions' bytes (unless something else
    /// stored the same bytes); `true` when it existed.
    pub fn delete_model(&self, name: &str) -> Result<bool> {
        self.delete_model_if(name, Expect::Any)
    }

    /// [`Store::delete_model`] if the model's latest version is what
    /// `expect` says, checked in the same transaction; `false` (nothing
    /// removed) otherwise, or when there is no such model.
    pub fn delete_model_if(&self, name: &str, expect: Expect) -> Result<bool> {
        let txn = self.write()?;
        let removal = {
            let mut models = txn.open_table(MODELS).map_err(db)?;
            let removal = match models.get(name).map_err(db)? {
                Some(raw) => Removal::of("models", name, raw.value(), expect, |r: &ModelRecord| {
                    r.latest().version
                }),
                None => Removal::Keep,
            };
            if !matches!(removal, Removal::Keep) {
                models.remove(name).map_err(db)?;
            }
            removal
        };
        let removed = match removal {
            Removal::Keep => false,
            Removal::Readable(rec) => {
                let objects = rec.versions.into_iter().map(|v| v.object).collect();
                free_unreferenced(&txn, objects)?;
                true
            }
            Removal::Unreadable => true,
        };
        txn.commit().map_err(db)?;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditional_deletes_check_the_latest_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("db")).unwrap();
        store.put_model("m", "onnx", b"v1", "{}").unwrap();
        store.put_model("m", "onnx", b"v2", "{}").unwrap();
        assert!(!store.delete_model_if("m", Expect::Latest(Some(1))).unwrap());
        assert!(!store.delete_model_if("m", Expect::Latest(None)).unwrap());
        assert!(store.model("m").unwrap().is_some(), "kept");
        assert!(store.delete_model_if("m", Expect::Latest(Some(2))).unwrap());
        assert!(store.model("m").unwrap().is_none());
        assert!(!store.delete_model_if("m", Expect::Any).unwrap(), "gone");
    }

    #[test]
    fn versions_follow_the_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("db")).unwrap();
        let (rec, added) = store.put_model("mini", "onnx", b"v1", "{}").unwrap();
        assert!(added && rec.latest().version == 1);
        let (_, added) = store.put_model("mini", "onnx", b"v1", "{}").unwrap();
        assert!(!added, "same bytes, same version");
        let (rec, _) = store.put_model("mini", "onnx", b"v2", "{}").unwrap();
        assert_eq!(rec.latest().version, 2);
        assert_eq!(
            store
                .get_object(&rec.version(1).unwrap().object)
                .unwrap()
                .unwrap(),
            b"v1"
        );
        assert_eq!(store.list_models().unwrap().len(), 1);
        assert!(store.put_model("Bad", "onnx", b"x", "{}").is_err());
        assert!(store.delete_model("mini").unwrap());
        assert!(store.model("mini").unwrap().is_none());
    }

    #[test]
    fn a_conditional_model_write_yields_to_a_newer_latest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("db")).unwrap();
        store.put_model("mini", "onnx", b"v1", "{}").unwrap();
        let refused = store
            .put_model_if("mini", "onnx", b"old", "{}", Expect::Latest(None))
            .unwrap();
        assert!(refused.is_none());
        assert_eq!(store.model("mini").unwrap().unwrap().versions.len(), 1);
        let (rec, added) = store
            .put_model_if("mini", "onnx", b"v2", "{}", Expect::Latest(Some(1)))
            .unwrap()
            .unwrap();
        assert!(added);
        assert_eq!(rec.latest().version, 2);
    }
}
