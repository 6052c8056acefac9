//! Named actors: one long-lived instance of a stage per actor, called
//! serially in arrival order, with a durable state space of its own.
//!
//! An actor's instance lives between calls (fields of the stage value
//! persist until a trap or a restart); what must survive a restart goes to
//! `state`, which for an actor is its own namespace, apart from the stage's
//! and from every other actor's. After a restart every stored actor is
//! created again, and finds its state.

mod cluster;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use axum::http::StatusCode;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use weft_runtime::{Item, Runtime, StageEvent, StagePool};
use weft_store::{ActorRecord, Store};

use crate::not_running::NotRunning;
use crate::{ApiError, blocking};

/// Calls that may wait for one actor before new ones get 503.
pub const MAILBOX: usize = 64;

/// A live actor.
#[derive(Debug)]
pub struct Actor {
    /// Its record.
    pub rec: ActorRecord,
    pool: Arc<StagePool>,
    /// Held by the call running now; tokio's mutex queues the others in
    /// arrival order (the mailbox).
    turn: tokio::sync::Mutex<()>,
    waiting: AtomicUsize,
    calls: AtomicU64,
    /// Set when the actor is deleted: calls still waiting get 404.
    closed: std::sync::atomic::AtomicBool,
}

/// The actors of this node.
#[derive(Debug)]
pub struct Actors {
    runtime: Arc<Runtime>,
    store: Store,
    live: RwLock<HashMap<String, Arc<Actor>>>,
    /// Stored actors that could not start (at start-up), and why: kept
    /// with their state, listed, and started again once they can.
    broken: NotRunning<ActorRecord>,
    /// The cluster's work table (cluster mode): actor names are unique
    /// across the cluster, and a dead node's actors move (see
    /// `cluster/work.rs`).
    work: std::sync::OnceLock<Arc<crate::cluster::WorkTable>>,
}

fn no_actor(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "actor_not_found",
        format!("no actor named `{name}`"),
    )
    .hint("create it with POST /v1/actors (`weft actor create NAME --stage STAGE`)")
}

impl Actors {
    /// No actors yet.
    pub fn new(runtime: Arc<Runtime>, store: Store) -> Self {
        Self {
            runtime,
            store,
            live: RwLock::default(),
            broken: NotRunning::default(),
            work: std::sync::OnceLock::new(),
        }
    }

    /// Creates every stored actor again (daemon start). One that cannot
    /// start is logged and kept as not running (listed, its calls a 503
    /// saying why); its record and state stay.
    pub async fn load_all(&self) -> Result<(), ApiError> {
        let store = self.store.clone();
        for rec in blocking(move || store.list_actors()).await? {
            self.start_stored(rec).await;
        }
        Ok(())
    }

    /// Starts a stored actor, or keeps it as not running, with the reason.
    async fn start_stored(&self, rec: ActorRecord) {
        let started = std::time::Instant::now();
        match self.start(rec.clone()).await {
            Ok(actor) => {
                self.broken.remove(&rec.name);
                self.insert(actor);
                let ms = started.elapsed().as_millis() as u64;
                tracing::info!(actor = %rec.name, ms, "actor started");
            }
            Err(e) => {
                tracing::warn!(actor = %rec.name, "actor not started: {}", e.message);
                self.broken.insert(rec.name.clone(), rec, e.message);
            }
        }
    }

    /// Tries again to start the stored actors that could not start (an
    /// upload may be what they were missing).
    pub async fn retry_broken(&self) {
        self.broken.retry(|_, rec| self.start_stored(rec)).await;
    }

    /// Whether a stored actor could not start (and waits for a retry).
    pub fn any_broken(&self) -> bool {
        !self.broken.is_empty()
    }

    /// Stored actors that are not running: (name, stage, why), by name.
    pub fn broken(&self) -> Vec<(String, String, String)> {
        self.broken
            .list(|name, rec, why| (name.to_string(), rec.stage.clone(), why.to_string()))
    }

    /// Creates actor `name` running `stage` (latest version unless given),
    /// with `config` merged over the version's. 400 when the stage is
    /// missing or refuses the config, 409 when the name is taken.
    pub async fn create(
        &self,
        name: &str,
        stage: &str,
        version: Option<u32>,
        config: Vec<(String, String)>,
    ) -> Result<Arc<Actor>, ApiError> {
        weft_store::validate_name_of("actor name", name)
            .map_err(|e| ApiError::bad_request("invalid_argument", e.to_string()))?;
        if self.get(name).is_some() {
            return Err(weft_store::StoreError::Exists {
                what: "actor",
                name: name.into(),
            }
            .into());
        }
        let (store, s) = (self.store.clone(), stage.to_string());
        let stage_rec = blocking(move || store.stage(&s)).await?.ok_or_else(|| {
            ApiError::bad_request(
                "invalid_actor",
                format!("`stage`: no stage named `{stage}`"),
            )
            .hint("deploy it first (`weft stage deploy NAME FILE`)")
        })?;
        let version = match version {
            Some(v) => stage_rec.version(v).map(|v| v.version).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_actor",
                    format!("`version`: stage `{stage}` has no version {v}"),
                )
            })?,
            None => stage_rec.latest().version,
        };
        let rec = ActorRecord::new(name, stage, version, config);
        let actor = self.start(rec.clone()).await?;
        self.claim_name(&rec).await?;
        let store = self.store.clone();
        blocking(move || store.put_actor(&rec)).await?;
        Ok(self.insert(actor))
    }

    /// Builds the actor's pool and starts its instance (running `init`).
    async fn start(&self, rec: ActorRecord) -> Result<Actor, ApiError> {
        let (runtime, store, r) = (self.runtime.clone(), self.store.clone(), rec.clone());
        let pool = blocking(move || -> Result<_, ApiError> {
            let stage = store.stage(&r.stage)?.ok_or_else(|| {
                ApiError::bad_request("invalid_actor", format!("stage `{}` is gone", r.stage))
            })?;
            let mut v = stage.version(r.version).cloned().ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_actor",
                    format!("stage `{}` has no version {}", r.stage, r.version),
                )
            })?;
            for (k, val) in &r.config {
                v.meta.config.retain(|(key, _)| key != k);
                v.meta.config.push((k.clone(), val.clone()));
            }
            Ok(runtime.actor_pool(&r.name, &r.stage, &v)?)
        })
        .await?;
        pool.prewarm(1).await.map_err(|e| {
            let message = match &e {
                weft_runtime::InvokeError::InitFailed { message, .. } => message.clone(),
                other => other.to_string(),
            };
            ApiError::bad_request(
                "invalid_actor",
                format!("`config`: stage `{}` did not start: {message}", rec.stage),
            )
            .hint("fix the config (merged over the stage's deploy-time config)")
        })?;
        Ok(Actor {
            rec,
            pool,
            turn: tokio::sync::Mutex::new(()),
            waiting: AtomicUsize::new(0),
            calls: AtomicU64::new(0),
            closed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn insert(&self, actor: Actor) -> Arc<Actor> {
        let actor = Arc::new(actor);
        self.live
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(actor.rec.name.clone(), actor.clone());
        actor
    }

    /// A live actor.
    pub fn get(&self, name: &str) -> Option<Arc<Actor>> {
        self.live
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// A live actor; 503 for a stored one that could not start, else 404.
    pub fn find(&self, name: &str) -> Result<Arc<Actor>, ApiError> {
        self.get(name).ok_or_else(|| match self.broken.why(name) {
            Some(why) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "actor_not_running",
                format!("actor `{name}` is stored (with its state) but could not start: {why}"),
            )
            .hint(
                "upload what the message says is missing (a stage, a model): the actor \
                     starts again by itself, with its state",
            ),
            None => no_actor(name),
        })
    }

    /// Every live actor, by name.
    pub fn all(&self) -> Vec<Arc<Actor>> {
        let mut v: Vec<_> = self
            .live
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.rec.name.cmp(&b.rec.name));
        v
    }

    /// Removes an actor with its state. 404 when there is none.
    pub async fn delete(&self, name: &str) -> Result<(), ApiError> {
        self.broken.remove(name);
        let live = self
            .live
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        // Let the running call finish and turn away the waiting ones, so
        // nothing writes the actor's state after it is removed.
        let _turn = match &live {
            Some(actor) => {
                actor.closed.store(true, Ordering::Relaxed);
                Some(actor.turn.lock().await)
            }
            None => None,
        };
        let (store, n) = (self.store.clone(), name.to_string());
        let existed = blocking(move || store.delete_actor(&n)).await?;
        if existed {
            self.release_name(name).await;
        }
        if existed || live.is_some() {
            Ok(())
        } else {
            Err(no_actor(name))
        }
    }
}

/// Decrements the waiting count when dropped.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Actor {
    /// Calls the actor with `item` once the calls before it have finished.
    /// 503 when its mailbox is full.
    pub async fn call(
        &self,
        item: Item,
        sink: Option<mpsc::Sender<StageEvent>>,
    ) -> Result<Vec<Item>, ApiError> {
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= MAILBOX {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            let mut e = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                format!("actor `{}` has {MAILBOX} calls waiting", self.rec.name),
            )
            .hint("an actor runs one call at a time: retry later, or spread the work over more actors");
            e.retry_after = Some(1);
            return Err(e);
        }
        // Counted as waiting until it has its turn, or until the caller
        // gives up (the future is dropped): a guard, so no exit leaks it.
        let waiting = Waiting(&self.waiting);
        let turn = self.turn.lock().await;
        drop(waiting);
        if self.closed.load(Ordering::Relaxed) {
            return Err(no_actor(&self.rec.name));
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        let result = self.pool.invoke(vec![item], sink).await;
        drop(turn);
        result.map_err(|e| {
            let mut api = ApiError::from(e);
            api.message = format!("actor `{}`: {}", self.rec.name, api.message);
            api
        })
    }

    /// The actor as the API shows it.
    pub fn json(&self) -> Value {
        let config: serde_json::Map<String, Value> = self
            .rec
            .config
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        json!({
            "name": self.rec.name,
            "stage": self.rec.stage,
            "version": self.rec.version,
            "config": config,
            "created_unix_ms": self.rec.created_unix_ms,
            "calls": self.calls.load(Ordering::Relaxed),
            "waiting": self.waiting.load(Ordering::Relaxed),
            "live": self.pool.stats().live,
        })
    }
}
