//! The live stage table: one instance pool per deployed stage, kept in step
//! with the registry in the store.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use weft_runtime::{PoolStats, Runtime, StagePool};
use weft_store::Store;

use crate::ApiError;

/// Maps stage names to the pool of their latest version.
///
/// Deploy and delete update it; the first call after a restart loads the pool
/// from the store (from the compile cache: no recompilation). A redeploy swaps
/// the pool; calls already running finish on the old one.
#[derive(Debug)]
pub struct Stages {
    runtime: Arc<Runtime>,
    store: Store,
    pools: RwLock<HashMap<String, Arc<StagePool>>>,
}

impl Stages {
    /// An empty table over `store`.
    pub fn new(runtime: Arc<Runtime>, store: Store) -> Self {
        Self {
            runtime,
            store,
            pools: RwLock::new(HashMap::new()),
        }
    }

    /// The pool serving `name`, loading it from the store when needed.
    pub async fn get(&self, name: &str) -> Result<Arc<StagePool>, ApiError> {
        if let Some(pool) = self
            .pools
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            return Ok(pool.clone());
        }
        let (runtime, store, owned) = (self.runtime.clone(), self.store.clone(), name.to_string());
        let pool = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
            let record = store
                .stage(&owned)?
                .ok_or_else(|| ApiError::no_stage(&owned))?;
            Ok(runtime.pool(&owned, record.latest())?)
        })
        .await
        .map_err(|e| ApiError::internal(format!("loading stage: {e}")))??;
        let mut pools = self.pools.write().unwrap_or_else(|e| e.into_inner());
        // Another caller may have loaded it meanwhile; keep one pool.
        Ok(pools.entry(name.to_string()).or_insert(pool).clone())
    }

    /// Installs a freshly deployed pool (replacing an older version's).
    pub fn install(&self, pool: Arc<StagePool>) {
        let mut pools = self.pools.write().unwrap_or_else(|e| e.into_inner());
        pools.insert(pool.name().to_string(), pool);
    }

    /// Forgets the pool of a deleted stage.
    pub fn remove(&self, name: &str) {
        self.pools
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }

    /// Stats of every loaded pool, for metrics and listings.
    pub fn stats(&self) -> Vec<(String, PoolStats)> {
        let pools = self.pools.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<_> = pools.iter().map(|(n, p)| (n.clone(), p.stats())).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Stats of one loaded pool.
    pub fn stats_of(&self, name: &str) -> Option<PoolStats> {
        let pools = self.pools.read().unwrap_or_else(|e| e.into_inner());
        pools.get(name).map(|p| p.stats())
    }
}
