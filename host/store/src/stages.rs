//! The stage registry (name → versions → component digest) and the cache of
//! compiled components.

use std::time::{SystemTime, UNIX_EPOCH};

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use std::collections::BTreeSet;

use crate::objects::{ObjectId, free_unreferenced, write_object};
use crate::record::Removal;
use crate::{COMPILED, Result, STAGES, STATE, Store, StoreError, db, record};

/// What a deployment says about how to run a stage version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageMeta {
    /// Passed to the stage's `init` export, in order.
    pub config: Vec<(String, String)>,
    /// Environment variables granted to the stage (none by default).
    pub env: Vec<(String, String)>,
}

/// One deployed version of a stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageVersion {
    /// 1 for the first deployment, then +1 per deployment that changed something.
    pub version: u32,
    /// Object id of the component bytes.
    pub digest: ObjectId,
    /// Component size in bytes.
    pub size: u64,
    /// Deployment time, milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
    /// Config and grants of this version.
    pub meta: StageMeta,
}

/// A stage and every version deployed under its name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageRecord {
    /// The stage name.
    pub name: String,
    /// Versions, oldest first; never empty.
    pub versions: Vec<StageVersion>,
}

impl StageRecord {
    /// The version new calls use.
    pub fn latest(&self) -> &StageVersion {
        self.versions
            .last()
            .expect("a stage record always has a version")
    }

    /// A specific version, if it exists.
    pub fn version(&self, version: u32) -> Option<&StageVersion> {
        self.versions.iter().find(|v| v.version == version)
    }
}

/// What a conditional write ([`Store::put_stage_if`],
/// [`Store::put_model_if`]) expects of a record's latest version: a replica
/// importing a change made elsewhere uses it so that a local change made
/// meanwhile is never overwritten by the older one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Expect {
    /// Whatever it is (an unconditional write).
    #[default]
    Any,
    /// This latest version number; `None`: no record.
    Latest(Option<u32>),
}

impl Expect {
    pub(crate) fn holds(self, latest: Option<u32>) -> bool {
        match self {
            Expect::Any => true,
            Expect::Latest(v) => v == latest,
        }
    }
}

/// Checks a stage name: 1–63 characters of `a-z 0-9 - _`, starting with a
/// letter or digit, so names are safe in URLs, file names and metrics labels.
pub fn validate_name(name: &str) -> Result<()> {
    validate_name_of("stage name", name)
}

/// [`validate_name`] for a name of another kind (`what`: "model name",
/// "actor name", ...), which the error names.
pub fn validate_name_of(what: &'static str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid {
            what,
            reason: format!(
                "`{name}`: use 1-63 characters of lowercase letters, digits, '-' and '_', \
                 starting with a letter or digit"
            ),
        })
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Store {
    /// Registers `component` under `name` in one transaction: the bytes as an
    /// object and a new version in the registry. Deploying the same bytes and
    /// meta as the latest version returns that version unchanged.
    ///
    /// The caller validates the component first; nothing is written on error.
    pub fn put_stage(&self, name: &str, component: &[u8], meta: StageMeta) -> Result<StageVersion> {
        Ok(self
            .put_stage_if(name, component, meta, Expect::Any)?
            .expect("`Expect::Any` always holds"))
    }

    /// [`Store::put_stage`] only if the stage's latest version is what
    /// `expect` says, checked in the same transaction; `None` (and nothing
    /// written) otherwise.
    pub fn put_stage_if(
        &self,
        name: &str,
        component: &[u8],
        meta: StageMeta,
        expect: Expect,
    ) -> Result<Option<StageVersion>> {
        validate_name(name)?;
        let txn = self.write()?;
        let version = {
            let mut stages = txn.open_table(STAGES).map_err(db)?;
            let existing = match stages.get(name).map_err(db)? {
                Some(raw) => Some(record::decode::<StageRecord>("stages", raw.value())?),
                None => None,
            };
            if !expect.holds(existing.as_ref().map(|r| r.latest().version)) {
                return Ok(None);
            }
            let digest = write_object(&txn, component)?;
            let mut rec = existing.unwrap_or_else(|| StageRecord {
                name: name.to_string(),
                versions: Vec::new(),
            });
            if let Some(last) = rec.versions.last()
                && last.digest == digest
                && last.meta == meta
            {
                return Ok(Some(last.clone()));
            }
            let version = StageVersion {
                version: rec.versions.last().map_or(1, |v| v.version + 1),
                digest,
                size: component.len() as u64,
                created_unix_ms: now_ms(),
                meta,
            };
            rec.versions.push(version.clone());
            stages
                .insert(name, record::encode(&rec).as_slice())
                .map_err(db)?;
            version
        };
        txn.commit().map_err(db)?;
        Ok(Some(version))
    }

    /// The registry record of one stage, or `None`.
    pub fn stage(&self, name: &str) -> Result<Option<StageRecord>> {
        let txn = self.read()?;
        let stages = txn.open_table(STAGES).map_err(db)?;
        match stages.get(name).map_err(db)? {
            Some(raw) => Ok(Some(record::decode("stages", raw.value())?)),
            None => Ok(None),
        }
    }

    /// Every registered stage this release can read, by name.
    pub fn list_stages(&self) -> Result<Vec<StageRecord>> {
        let txn = self.read()?;
        let stages = txn.open_table(STAGES).map_err(db)?;
        let mut out = Vec::new();
        for entry in stages.iter().map_err(db)? {
            let (key, raw) = entry.map_err(db)?;
            out.extend(record::listed("stages", key.value(), raw.value()));
        }
        Ok(out)
    }

    /// Removes a stage and its durable state; `true` when it existed.
    ///
    /// Its components, and their compiled code, are freed unless another
    /// stage's version has the same bytes.
    pub fn delete_stage(&self, name: &str) -> Result<bool> {
        self.delete_stage_if(name, Expect::Any)
    }

    /// [`Store::delete_stage`] if the stage's latest version is what
    /// `expect` says, checked in the same transaction; `false` (nothing
    /// removed) otherwise, or when there is no such stage. A record this
    /// release cannot read is removed by an unconditional deletion only, and
    /// its components stay (see [`crate::record::Removal`]).
    pub fn delete_stage_if(&self, name: &str, expect: Expect) -> Result<bool> {
        let txn = self.write()?;
        let removal = {
            let mut stages = txn.open_table(STAGES).map_err(db)?;
            let removal = match stages.get(name).map_err(db)? {
                Some(raw) => Removal::of("stages", name, raw.value(), expect, |r: &StageRecord| {
                    r.latest().version
                }),
                None => Removal::Keep,
            };
            if !matches!(removal, Removal::Keep) {
                stages.remove(name).map_err(db)?;
            }
            removal
        };
        let removed = !matches!(removal, Removal::Keep);
        if removed {
            let mut state = txn.open_table(STATE).map_err(db)?;
            state.retain(|(stage, _), _| stage != name).map_err(db)?;
            let mut freed: BTreeSet<ObjectId> = match removal {
                Removal::Readable(rec) => rec.versions.into_iter().map(|v| v.digest).collect(),
                _ => BTreeSet::new(),
            };
            freed.extend(forget_compiled(&txn)?);
            free_unreferenced(&txn, freed)?;
        }
        txn.commit().map_err(db)?;
        Ok(removed)
    }

    /// Compiled code cached under `key` (component digest + engine fingerprint).
    pub fn compiled(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let object = {
            let txn = self.read()?;
            let compiled = txn.open_table(COMPILED).map_err(db)?;
            compiled
                .get(key)
                .map_err(db)?
                .map(|v| v.value().to_string())
        };
        match object {
            Some(id) => self.get_object(&id),
            None => Ok(None),
        }
    }

    /// Caches compiled code under `key`; stored as a chunked object.
    pub fn put_compiled(&self, key: &str, code: &[u8]) -> Result<()> {
        let txn = self.write()?;
        let id = write_object(&txn, code)?;
        txn.open_table(COMPILED)
            .map_err(db)?
            .insert(key, id.as_str())
            .map_err(db)?;
        txn.commit().map_err(db)?;
        Ok(())
    }
}

/// Removes the compiled code of components no stage version has any more
/// (keyed `digest:fingerprint`); returns the objects that held it.
fn forget_compiled(txn: &redb::WriteTransaction) -> Result<Vec<ObjectId>> {
    let mut kept = BTreeSet::new();
    for entry in txn.open_table(STAGES).map_err(db)?.iter().map_err(db)? {
        let (name, raw) = entry.map_err(db)?;
        // One this release cannot read may be any component's: all stay.
        let Some(rec) = record::listed::<StageRecord>("stages", name.value(), raw.value()) else {
            return Ok(Vec::new());
        };
        kept.extend(rec.versions.into_iter().map(|v| v.digest));
    }
    let mut compiled = txn.open_table(COMPILED).map_err(db)?;
    let mut objects = Vec::new();
    compiled
        .retain(|key, object| {
            let digest = key.split(':').next().unwrap_or(key);
            let keep = kept.contains(digest);
            if !keep {
                objects.push(object.to_string());
            }
            keep
        })
        .map_err(db)?;
    Ok(objects)
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
    fn conditional_deletes_check_the_latest_version() {
        let (_dir, store) = store();
        store.put_stage("s", b"one", StageMeta::default()).unwrap();
        store.put_stage("s", b"two", StageMeta::default()).unwrap();
        assert!(!store.delete_stage_if("s", Expect::Latest(Some(1))).unwrap());
        assert!(store.stage("s").unwrap().is_some(), "kept");
        assert!(store.delete_stage_if("s", Expect::Latest(Some(2))).unwrap());
        assert!(store.stage("s").unwrap().is_none());
        assert!(!store.delete_stage_if("s", Expect::Any).unwrap(), "gone");
    }

    #[test]
    fn versions_increase_only_on_change() {
        let (_dir, store) = store();
        let v1 = store
            .put_stage("upper", b"one", StageMeta::default())
            .unwrap();
        assert_eq!(v1.version, 1);
        let same = store
            .put_stage("upper", b"one", StageMeta::default())
            .unwrap();
        assert_eq!(same, v1);
        let v2 = store
            .put_stage("upper", b"two", StageMeta::default())
            .unwrap();
        assert_eq!(v2.version, 2);
        let meta = StageMeta {
            config: vec![("k".into(), "v".into())],
            env: vec![],
        };
        let v3 = store.put_stage("upper", b"two", meta).unwrap();
        assert_eq!(v3.version, 3);
        let rec = store.stage("upper").unwrap().unwrap();
        assert_eq!(rec.latest().version, 3);
        assert_eq!(rec.version(1).unwrap().digest, v1.digest);
        assert_eq!(store.get_object(&v2.digest).unwrap().unwrap(), b"two");
    }

    #[test]
    fn a_conditional_write_yields_to_a_newer_latest() {
        let (_dir, store) = store();
        let meta = StageMeta::default;
        // A replica saw no record, then a local deploy made version 1.
        assert!(
            store
                .put_stage_if("upper", b"one", meta(), Expect::Latest(None))
                .unwrap()
                .is_some()
        );
        assert!(
            store
                .put_stage_if("upper", b"old", meta(), Expect::Latest(None))
                .unwrap()
                .is_none(),
            "version 1 came after what the writer saw"
        );
        store.put_stage("upper", b"two", meta()).unwrap();
        assert!(
            store
                .put_stage_if("upper", b"old", meta(), Expect::Latest(Some(1)))
                .unwrap()
                .is_none()
        );
        let rec = store.stage("upper").unwrap().unwrap();
        assert_eq!(rec.versions.len(), 2, "nothing written when refused");
        let v3 = store
            .put_stage_if("upper", b"new", meta(), Expect::Latest(Some(2)))
            .unwrap()
            .unwrap();
        assert_eq!(v3.version, 3);
    }

    #[test]
    fn delete_removes_record_and_state() {
        let (_dir, store) = store();
        store.put_stage("a", b"x", StageMeta::default()).unwrap();
        store.put_stage("b", b"y", StageMeta::default()).unwrap();
        store.state_set("a", "k", b"1").unwrap();
        store.state_set("b", "k", b"2").unwrap();
        assert!(store.delete_stage("a").unwrap());
        assert!(!store.delete_stage("a").unwrap());
        assert_eq!(store.state_get("a", "k").unwrap(), None);
        assert_eq!(store.state_get("b", "k").unwrap().unwrap(), b"2");
        let names: Vec<_> = store
            .list_stages()
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["b"]);
    }

    #[test]
    fn bad_names_are_refused_before_writing() {
        let (_dir, store) = store();
        for bad in ["", "Upper", "-x", "a/b", &"x".repeat(64)] {
            assert!(
                store.put_stage(bad, b"x", StageMeta::default()).is_err(),
                "{bad}"
            );
        }
        assert!(store.list_stages().unwrap().is_empty());
        assert_eq!(store.get_object(&crate::object_id(b"x")).unwrap(), None);
    }

    #[test]
    fn compiled_cache_round_trips() {
        let (_dir, store) = store();
        assert_eq!(store.compiled("d:f").unwrap(), None);
        store.put_compiled("d:f", b"machine code").unwrap();
        assert_eq!(store.compiled("d:f").unwrap().unwrap(), b"machine code");
    }
}
