//! The weft daemon and CLI.
//!
//! `weft serve` opens the node store ([`weft_store`]), builds the Wasm runtime
//! ([`weft_runtime`]) and serves the HTTP API; every other subcommand is a
//! client of that API. Tests and embedders start a daemon in-process with
//! [`Daemon::start`]:
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let daemon = weft::Daemon::start(weft::ServeConfig::ephemeral("/tmp/weft-data")).await?;
//! println!("listening on http://{}", daemon.addr());
//! daemon.shutdown().await?;
//! # Ok(()) }
//! ```

pub mod actors;
pub mod api;
pub mod cli;
mod client;
pub mod cluster;
mod config;
pub mod datasets;
mod error;
pub mod jobs;
mod metrics;
mod not_running;
pub mod pipeline;
pub mod placement;
pub mod resources;
mod server;
mod stages;

pub use config::ServeConfig;
pub use error::ApiError;
pub use server::Daemon;

/// Runs blocking work (a store call: redb does file I/O) off the async
/// executor; its error, or a panic in it, becomes an [`ApiError`].
pub(crate) async fn blocking<T, E>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    E: Into<ApiError> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(Into::into),
        Err(e) => Err(ApiError::internal(e.to_string())),
    }
}
