//! Actors in a cluster: each name is taken once across the cluster (a
//! compare-and-set on `actor.NAME` in the work table), its state is copied
//! to the cluster, and when its node dies another node recreates it from
//! that state (see `cluster/work.rs`).

use std::sync::Arc;

use axum::http::StatusCode;
use weft_store::{ActorRecord, actor_state_namespace};

use super::Actors;
use crate::cluster::{Work, WorkEntry, WorkTable, actor_key};
use crate::{ApiError, blocking};

fn entry(table: &WorkTable, rec: &ActorRecord) -> WorkEntry {
    WorkEntry {
        owner: table.node().to_string(),
        what: Work::Actor {
            stage: rec.stage.clone(),
            version: rec.version,
            config: rec.config.clone(),
        },
    }
}

impl Actors {
    /// Joins the cluster's work table (cluster mode).
    pub(crate) fn join(&self, table: Arc<WorkTable>) {
        let _ = self.work.set(table);
    }

    /// Takes the actor's name in the cluster: 409 when another node has
    /// an actor of that name. A node cut off from NATS creates it locally.
    pub(super) async fn claim_name(&self, rec: &ActorRecord) -> Result<(), ApiError> {
        let Some(table) = self.work.get() else {
            return Ok(());
        };
        match table.create(&actor_key(&rec.name), &entry(table, rec)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(owner)) => Err(ApiError::new(
                StatusCode::CONFLICT,
                "exists",
                format!("actor `{}` already exists (on node `{owner}`)", rec.name),
            )
            .hint("actor names are unique across the cluster: pick another name, or delete that one first")),
            Err(e) => {
                tracing::warn!(actor = %rec.name, "cluster: actor not listed in the work table: {e:#}");
                Ok(())
            }
        }
    }

    /// Gives the name back and deletes the cluster's copy of the state.
    pub(super) async fn release_name(&self, name: &str) {
        let Some(table) = self.work.get() else {
            return;
        };
        let done = async {
            table.remove_own(&actor_key(name)).await?;
            table.purge_state(&actor_state_namespace(name)).await
        };
        if let Err(e) = done.await {
            tracing::warn!(
                actor = name,
                "cluster: actor not removed from the cluster: {e:#}"
            );
        }
    }

    /// After joining: lists this node's actors in the work table, and
    /// drops those another node took over while this one was away.
    pub async fn reconcile(&self) {
        let Some(table) = self.work.get() else {
            return;
        };
        for actor in self.all() {
            let key = actor_key(&actor.rec.name);
            match table.get(&key).await {
                Ok(Some((e, _))) if e.owner != table.node() => {
                    tracing::info!(
                        actor = %actor.rec.name,
                        owner = %e.owner,
                        "cluster: actor moved to another node while this one was away; dropping it here"
                    );
                    self.live
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&actor.rec.name);
                    let (store, n) = (self.store.clone(), actor.rec.name.clone());
                    let _ = blocking(move || store.delete_actor(&n)).await;
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    if let Err(e) = table.put(&key, &entry(table, &actor.rec)).await {
                        tracing::warn!(actor = %actor.rec.name, "cluster: actor not listed: {e:#}");
                    }
                }
                Err(e) => tracing::warn!("cluster: work table unreadable: {e:#}"),
            }
        }
    }

    /// Where actor `name` lives when it is not here: its owner's node name.
    pub async fn owner_elsewhere(&self, name: &str) -> Option<String> {
        let table = self.work.get()?;
        match table.get(&actor_key(name)).await {
            Ok(Some((e, _))) if e.owner != table.node() => Some(e.owner),
            _ => None,
        }
    }

    /// Recreates the actor at `key` of the work table, whose node is dead:
    /// claims it (one node wins), pulls its state, starts it here.
    pub(crate) async fn adopt(
        &self,
        table: &WorkTable,
        key: &str,
        revision: u64,
        entry_now: WorkEntry,
    ) -> Result<(), ApiError> {
        let Work::Actor {
            stage,
            version,
            config,
        } = &entry_now.what
        else {
            return Ok(());
        };
        let Some(name) = key.strip_prefix("actor.") else {
            return Ok(());
        };
        let rec = ActorRecord::new(name, stage, *version, config.clone());
        let claimed = table.claim(key, revision, &entry(table, &rec)).await;
        match claimed {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(e) => return Err(ApiError::internal(format!("claiming {key}: {e:#}"))),
        }
        table
            .pull_state(&self.store, &actor_state_namespace(name), true)
            .await
            .map_err(|e| ApiError::internal(format!("pulling actor `{name}`'s state: {e:#}")))?;
        let actor = self.start(rec.clone()).await?;
        let store = self.store.clone();
        blocking(move || store.put_actor(&rec)).await?;
        self.insert(actor);
        tracing::info!(actor = name, from = %entry_now.owner, "cluster: took over an actor of a dead node");
        Ok(())
    }
}
