//! weft-store: the node's single source of truth, on [redb].
//!
//! One redb file holds everything a node must not lose:
//!
//! - **objects**: content-addressed blobs (hex blake3 ids), split into
//!   fixed-size chunks so a large object never becomes one giant value;
//! - **stages**: the registry, name → versions → component digest + metadata;
//! - **compiled**: native code compiled from components, keyed by component
//!   digest and engine fingerprint, so a restart never recompiles;
//! - **state**: the durable per-stage key/value space a stage reads and writes;
//! - **pipelines**: pipeline specs by name, versioned;
//! - **models**: the model registry (name → versions of ONNX or GGUF bytes);
//! - **datasets**: named lists of blocks of rows, for batch jobs;
//! - **actors**: named long-lived instances of a stage (their state lives in
//!   `state` under `@<name>`);
//! - **placement groups**: named resource bundles reserved together (specs);
//! - **jobs**: batch and async job records, each finished block's output
//!   (committed atomically with the job's counters), and each job's events.
//!
//! Every write is one redb transaction committed before the call returns, so a
//! caller may acknowledge a user as soon as a method here returns `Ok`.
//! Internal records are bincode with a leading format-version byte.
//!
//! This crate knows nothing of Wasm or HTTP.
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! let store = weft_store::Store::open(dir.path().join("weft.redb")).unwrap();
//! let id = store.put_object(b"hello").unwrap();
//! assert_eq!(store.get_object(&id).unwrap().as_deref(), Some(&b"hello"[..]));
//! ```

mod actors;
mod datasets;
mod error;
mod jobs;
mod models;
mod objects;
mod pipelines;
mod placement;
mod record;
mod refs;
mod stages;
mod state;
mod totals;

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, TableDefinition};

pub use actors::{ActorRecord, actor_state_namespace};
pub use datasets::{DatasetBlock, DatasetRecord};
pub use error::StoreError;
pub use jobs::{BlockCommit, BlockOutput, JobRecord, JobState};
pub use models::{ModelRecord, ModelVersion};
pub use objects::{CHUNK_SIZE, ObjectId, object_id};
pub use pipelines::PipelineRecord;
pub use placement::PlacementGroupRecord;
pub use stages::{Expect, StageMeta, StageRecord, StageVersion, validate_name, validate_name_of};

/// Shorthand for results of this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

pub(crate) const OBJECT_META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("objects");
pub(crate) const OBJECT_CHUNKS: TableDefinition<'_, (&str, u32), &[u8]> =
    TableDefinition::new("object_chunks");
/// Objects stored with `Store::put_object` or named by an `objects`
/// dataset (`Store::pin_objects`), never freed (see
/// `objects::free_unreferenced`).
pub(crate) const OBJECT_PINS: TableDefinition<'_, &str, ()> = TableDefinition::new("object_pins");
/// Dataset blocks uploaded and not yet registered: how many uploads hold
/// each (see `Store::put_owned_object`).
pub(crate) const OBJECT_LEASES: TableDefinition<'_, &str, u64> =
    TableDefinition::new("object_leases");
pub(crate) const STAGES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("stages");
pub(crate) const COMPILED: TableDefinition<'_, &str, &str> = TableDefinition::new("compiled");
pub(crate) const STATE: TableDefinition<'_, (&str, &str), &[u8]> = TableDefinition::new("state");
pub(crate) const PIPELINES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("pipelines");
pub(crate) const DATASETS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("datasets");
pub(crate) const JOBS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("jobs");
pub(crate) const JOB_BLOCKS: TableDefinition<'_, (u64, u32), &[u8]> =
    TableDefinition::new("job_blocks");
/// How many job blocks name each object (see `refs`).
pub(crate) const JOB_BLOCK_REFS: TableDefinition<'_, &str, u64> =
    TableDefinition::new("job_block_refs");
pub(crate) const JOB_EVENTS: TableDefinition<'_, (u64, u64), &str> =
    TableDefinition::new("job_events");
pub(crate) const ACTORS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("actors");
pub(crate) const PLACEMENT_GROUPS: TableDefinition<'_, &str, &[u8]> =
    TableDefinition::new("placement_groups");
pub(crate) const MODELS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("models");
pub(crate) const COUNTERS: TableDefinition<'_, &str, u64> = TableDefinition::new("counters");

/// Page cache of [`Store::open`]: 64 MiB.
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;

/// A handle on the node's redb database; cheap to clone and share.
///
/// All methods are blocking (redb does file I/O): async callers should use
/// `tokio::task::spawn_blocking` or a dedicated thread.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the store at `path` and makes sure every table exists.
    ///
    /// Fails with [`StoreError::Database`] if another process holds the file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// [`Store::open`] with a page cache of `cache_bytes` (the cache is most
    /// of the store's memory: bounded, it keeps a node's RSS flat however
    /// much data passes through).
    pub fn open_with_cache(path: impl AsRef<Path>, cache_bytes: usize) -> Result<Self> {
        // A store not closed cleanly (a crash, kill -9) is checked and
        // repaired as it opens, which takes a while for a large file: said,
        // with progress, rather than a silent start.
        // The tenths of the repair said so far (each once).
        let said = std::cell::Cell::new(None::<u32>);
        let db = redb::Builder::new()
            .set_cache_size(cache_bytes)
            .set_repair_callback(move |session| {
                let tenth = (session.progress() * 10.0) as u32;
                if said.get().is_none_or(|s| tenth > s) {
                    tracing::warn!(
                        progress = format!("{:.0}%", session.progress() * 100.0),
                        "the store was not closed cleanly (a crash or kill -9): checking and \
                         repairing it before starting"
                    );
                    said.set(Some(tenth));
                }
            })
            .create(path.as_ref())
            .map_err(redb::Error::from)?;
        let txn = db.begin_write().map_err(redb::Error::from)?;
        txn.open_table(OBJECT_META).map_err(redb::Error::from)?;
        txn.open_table(OBJECT_CHUNKS).map_err(redb::Error::from)?;
        txn.open_table(STAGES).map_err(redb::Error::from)?;
        txn.open_table(COMPILED).map_err(redb::Error::from)?;
        txn.open_table(STATE).map_err(redb::Error::from)?;
        txn.open_table(PIPELINES).map_err(redb::Error::from)?;
        txn.open_table(DATASETS).map_err(redb::Error::from)?;
        txn.open_table(JOBS).map_err(redb::Error::from)?;
        txn.open_table(JOB_BLOCKS).map_err(redb::Error::from)?;
        txn.open_table(JOB_EVENTS).map_err(redb::Error::from)?;
        txn.open_table(COUNTERS).map_err(redb::Error::from)?;
        txn.open_table(ACTORS).map_err(redb::Error::from)?;
        txn.open_table(PLACEMENT_GROUPS)
            .map_err(redb::Error::from)?;
        txn.open_table(MODELS).map_err(redb::Error::from)?;
        txn.open_table(OBJECT_PINS).map_err(redb::Error::from)?;
        txn.open_table(OBJECT_LEASES).map_err(redb::Error::from)?;
        txn.open_table(JOB_BLOCK_REFS).map_err(redb::Error::from)?;
        objects::pin_unowned(&txn)?;
        refs::build(&txn)?;
        totals::build(&txn)?;
        objects::end_stale_leases(&txn)?;
        txn.commit().map_err(redb::Error::from)?;
        Ok(Self { db: Arc::new(db) })
    }

    pub(crate) fn write(&self) -> Result<redb::WriteTransaction> {
        Ok(self.db.begin_write().map_err(redb::Error::from)?)
    }

    pub(crate) fn read(&self) -> Result<redb::ReadTransaction> {
        Ok(self.db.begin_read().map_err(redb::Error::from)?)
    }
}

/// A table of records keyed by name (pipelines, datasets, models, actors).
pub(crate) type Named = TableDefinition<'static, &'static str, &'static [u8]>;

impl Store {
    /// The record `name` of `table` (`label` names the table in errors).
    pub(crate) fn get_named<T: serde::de::DeserializeOwned>(
        &self,
        table: Named,
        label: &'static str,
        name: &str,
    ) -> Result<Option<T>> {
        let txn = self.read()?;
        let table = txn.open_table(table).map_err(db)?;
        let raw = table.get(name).map_err(db)?;
        raw.map(|r| record::decode(label, r.value())).transpose()
    }

    /// Every record of `table` this release can read, by name (see
    /// [`record::listed`]).
    pub(crate) fn list_named<T: serde::de::DeserializeOwned>(
        &self,
        table: Named,
        label: &'static str,
    ) -> Result<Vec<T>> {
        use redb::ReadableTable;
        let txn = self.read()?;
        let table = txn.open_table(table).map_err(db)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(db)? {
            let (key, raw) = entry.map_err(db)?;
            out.extend(record::listed(label, key.value(), raw.value()));
        }
        Ok(out)
    }

    /// Inserts `rec` as record `name` of `table` within `txn`, unless the
    /// name is taken ([`StoreError::Exists`] naming `what`).
    pub(crate) fn insert_new_named<T: serde::Serialize>(
        txn: &redb::WriteTransaction,
        table: Named,
        what: &'static str,
        name: &str,
        rec: &T,
    ) -> Result<()> {
        use redb::ReadableTable;
        let mut table = txn.open_table(table).map_err(db)?;
        if table.get(name).map_err(db)?.is_some() {
            return Err(StoreError::Exists {
                what,
                name: name.to_string(),
            });
        }
        table
            .insert(name, record::encode(rec).as_slice())
            .map_err(db)?;
        Ok(())
    }

    /// Removes record `name` of `table`; `true` when it existed.
    pub(crate) fn remove_named(&self, table: Named, name: &str) -> Result<bool> {
        let txn = self.write()?;
        let existed = txn
            .open_table(table)
            .map_err(db)?
            .remove(name)
            .map_err(db)?
            .is_some();
        txn.commit().map_err(db)?;
        Ok(existed)
    }
}

/// Converts any redb error into [`StoreError`] via [`redb::Error`].
pub(crate) fn db<E: Into<redb::Error>>(e: E) -> StoreError {
    StoreError::Database(e.into())
}
