//! Starting and stopping a daemon: store, runtime, HTTP server.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use weft_runtime::{EngineBackend, Runtime};
use weft_store::Store;

use crate::ServeConfig;
use crate::actors::Actors;
use crate::api::{self, AppState};
use crate::jobs::Jobs;
use crate::metrics::Metrics;
use crate::pipeline::Pipelines;
use crate::stages::Stages;

/// A running daemon. Dropping it without [`Daemon::shutdown`] leaves the
/// server running until the runtime stops.
#[derive(Debug)]
pub struct Daemon {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
    state: Arc<AppState>,
}

impl Daemon {
    /// Opens the store in `config.data_dir`, builds the runtime and starts
    /// serving on `config.listen`. Returns once the socket is bound.
    pub async fn start(config: ServeConfig) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
        let db_path = config.data_dir.join("weft.redb");
        // A daemon stopped a moment ago in this process may still be
        // dropping its last handles (a blocking store call of a request
        // that was cut off): wait briefly for the file lock before failing.
        let mut opened = Store::open_with_cache(&db_path, config.store_cache);
        let until = std::time::Instant::now() + std::time::Duration::from_secs(3);
        while opened.as_ref().is_err_and(|e| e.is_locked()) && std::time::Instant::now() < until {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            opened = Store::open_with_cache(&db_path, config.store_cache);
        }
        let store = opened.with_context(|| {
            format!(
                "opening {} (is another weft daemon using this data directory?)",
                db_path.display()
            )
        })?;
        let nn = Arc::new(EngineBackend::new(config.nn_batch));
        let runtime = Runtime::with_nn(store.clone(), config.runtime.clone(), nn.clone())?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let addr = listener.local_addr()?;

        let cluster = Arc::new(crate::cluster::Cluster::new(config.cluster.clone(), addr)?);
        let placement = Arc::new(crate::placement::PlacementGroups::new(
            store.clone(),
            config.capacity.resolve(),
            cluster.enabled().then(|| cluster.node().to_string()),
        ));
        placement
            .load_all()
            .await
            .map_err(|e| anyhow::anyhow!("placing stored placement groups: {}", e.message))?;
        let pipelines = Arc::new(Pipelines::new(
            runtime.clone(),
            store.clone(),
            placement.clone(),
        ));
        let state = Arc::new(AppState {
            stages: Stages::new(runtime.clone(), store.clone()),
            jobs: Jobs::new(store.clone(), pipelines.clone(), config.jobs.clone()),
            actors: Actors::new(runtime.clone(), store.clone()),
            pipelines,
            runtime,
            store,
            metrics: Metrics::default(),
            nn,
            placement,
            cluster,
            config,
        });
        state
            .pipelines
            .load_all()
            .await
            .map_err(|e| anyhow::anyhow!("starting stored pipelines: {}", e.message))?;
        state
            .actors
            .load_all()
            .await
            .map_err(|e| anyhow::anyhow!("starting stored actors: {}", e.message))?;
        // Join the cluster (with `--cluster`): heartbeats, the registry
        // replicated both ways, the batch block work queue. Before jobs
        // resume, so a resumed batch job can run across the cluster.
        if let Err(e) = state.cluster.start(Arc::downgrade(&state)).await {
            state.jobs.shutdown().await;
            state.pipelines.shutdown().await;
            return Err(e);
        }
        // Actors another node took over while this one was away go; the
        // others are listed in the cluster's work table.
        state.actors.reconcile().await;
        if let Err(e) = state.jobs.start().await {
            state.cluster.leave().await;
            state.jobs.shutdown().await;
            state.pipelines.shutdown().await;
            return Err(anyhow::anyhow!("resuming jobs: {}", e.message));
        }
        let router = api::router(state.clone());
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move { token.cancelled().await })
                .await
        });
        tracing::info!(%addr, "weft daemon listening");
        Ok(Self {
            addr,
            shutdown,
            task,
            state,
        })
    }

    /// The bound address (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// This node's cluster membership.
    pub fn cluster(&self) -> &crate::cluster::Cluster {
        &self.state.cluster
    }

    /// Stops accepting, lets in-flight requests finish, and closes the store.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        // Leave the cluster first: peers drop this node at once.
        self.state.cluster.leave().await;
        self.shutdown.cancel();
        // Jobs stop where they are (and resume on the next start); first,
        // so that open job event streams end and the server can finish.
        self.state.jobs.shutdown().await;
        self.task.await.context("server task panicked")??;
        // Pipeline steps hold instance pools (and through them the store):
        // wait for them so the data directory is free when this returns.
        self.state.pipelines.shutdown().await;
        Ok(())
    }

    /// Serves until `shutdown` resolves (e.g. Ctrl-C), then stops cleanly.
    pub async fn run_until(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        tokio::select! {
            _ = shutdown => {}
            res = &mut self.task => {
                res.context("server task panicked")??;
                self.state.cluster.leave().await;
                self.state.jobs.shutdown().await;
                self.state.pipelines.shutdown().await;
                return Ok(());
            }
        }
        self.shutdown().await
    }
}
