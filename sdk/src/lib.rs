//! Write weft stages in plain Rust.
//!
//! A *stage* is a WebAssembly component that the weft daemon runs in a sandbox: it
//! receives batches of [`Item`]s and returns items, and may call back into the node
//! for [`objects`], [`state`], progress and partial results ([`emit`]), logging
//! ([`info!`] and friends), inference ([`nn`], the standard `wasi:nn` interface)
//! and fine-tuning ([`train`]).
//! This crate hides the component bindings: implement [`Stage`], invoke
//! [`export_stage!`] once, and build with `cargo build --target wasm32-wasip2`.
//!
//! It is not a host: it never runs components. On targets other than `wasm32` the
//! host capabilities go to an in-process test host instead, and
//! [`testing::Harness`] drives a stage natively, so `cargo test` checks a stage's
//! logic without Wasm.
//!
//! # Example
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use weft_sdk::{Config, Item, Stage, StageError};
//!
//! #[derive(Deserialize)]
//! struct In {
//!     text: String,
//! }
//!
//! #[derive(Serialize, Deserialize, Debug, PartialEq)]
//! struct Out {
//!     text: String,
//! }
//!
//! /// Upper-cases `text`, optionally adding a suffix from the config.
//! struct Upper {
//!     suffix: String,
//! }
//!
//! impl Stage for Upper {
//!     fn init(config: Config) -> Result<Self, String> {
//!         Ok(Upper { suffix: config.get_or("suffix", "").to_string() })
//!     }
//!
//!     fn process(&mut self, batch: Vec<Item>) -> Result<Vec<Item>, StageError> {
//!         weft_sdk::debug!("upper: {} items", batch.len());
//!         batch
//!             .into_iter()
//!             .map(|item| {
//!                 let input: In = item.parse_json()?;
//!                 let out = Out { text: input.text.to_uppercase() + &self.suffix };
//!                 Ok(Item::json(&out)?.with_key_from(&item))
//!             })
//!             .collect()
//!     }
//! }
//!
//! weft_sdk::export_stage!(Upper);
//!
//! // Natively, the same stage runs under the test harness:
//! let mut harness = weft_sdk::testing::Harness::<Upper>::new(&[("suffix", "!")]);
//! let input = Item::json(&serde_json::json!({ "text": "hi" }))?.with_key("row-1");
//! let output = harness.process(vec![input])?;
//! assert_eq!(output[0].parse_json::<Out>()?, Out { text: "HI!".into() });
//! assert_eq!(output[0].key.as_deref(), Some("row-1"));
//! assert_eq!(harness.logs()[0].message, "upper: 1 items");
//! # Ok::<(), StageError>(())
//! ```
//!
//! # Errors
//!
//! [`Stage::process`] returns a [`StageError`] whose case tells the host what to do:
//! [`StageError::BadInput`] answers the caller (HTTP 400) and is never retried,
//! [`StageError::Retryable`] may be retried, and [`StageError::Fatal`] discards the
//! instance. A panic traps the instance, which the host also discards.
#![warn(missing_docs)]

mod config;
mod error;
mod export;
mod host;
mod item;

pub mod checkpoint;
pub mod emit;
pub mod log;
pub mod nn;
pub mod objects;
pub mod spelling;
pub mod state;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
pub mod train;

pub use config::Config;
pub use error::StageError;
#[doc(hidden)]
pub use export::__private;
pub use item::Item;

/// A stage: built once per instance by [`Stage::init`], then fed batches.
///
/// The host calls `init` once with the pipeline step's config, then `process` for
/// every batch, on one instance at a time (an instance is never shared between
/// concurrent calls), so `&mut self` state needs no locking. State kept in `self`
/// lives as long as the instance, which the host may discard and recreate at any
/// time: keep anything that must survive in [`state`].
///
/// # Example
///
/// ```
/// use weft_sdk::{Config, Item, Stage, StageError};
///
/// /// Drops empty items and counts how many it has passed on this instance.
/// struct DropEmpty {
///     passed: u64,
/// }
///
/// impl Stage for DropEmpty {
///     fn init(_config: Config) -> Result<Self, String> {
///         Ok(DropEmpty { passed: 0 })
///     }
///
///     fn process(&mut self, batch: Vec<Item>) -> Result<Vec<Item>, StageError> {
///         let kept: Vec<Item> = batch.into_iter().filter(|i| !i.payload.is_empty()).collect();
///         self.passed += kept.len() as u64;
///         Ok(kept)
///     }
/// }
///
/// let mut harness = weft_sdk::testing::Harness::<DropEmpty>::new(&[]);
/// let out = harness.process(vec![Item::text("a"), Item::text("")]).unwrap();
/// assert_eq!(out.len(), 1);
/// assert_eq!(harness.stage().passed, 1);
/// ```
pub trait Stage: Sized + 'static {
    /// Builds the stage from its config; an `Err` tells the host why it refused,
    /// and the host reports it and never calls `process` on this instance.
    ///
    /// # Example
    ///
    /// ```
    /// use weft_sdk::{Config, Item, Stage, StageError};
    ///
    /// struct Repeat(usize);
    ///
    /// impl Stage for Repeat {
    ///     fn init(config: Config) -> Result<Self, String> {
    ///         let times: usize = config.parse_or("times", 2)?;
    ///         if times == 0 {
    ///             return Err("repeat: `times` must be at least 1".into());
    ///         }
    ///         Ok(Repeat(times))
    ///     }
    ///
    ///     fn process(&mut self, batch: Vec<Item>) -> Result<Vec<Item>, StageError> {
    ///         Ok(batch.iter().flat_map(|i| std::iter::repeat_n(i.clone(), self.0)).collect())
    ///     }
    /// }
    ///
    /// let err = weft_sdk::testing::Harness::<Repeat>::try_new(&[("times", "0")]).unwrap_err();
    /// assert!(err.contains("at least 1"));
    /// ```
    fn init(config: Config) -> Result<Self, String>;

    /// Turns one batch of input items into output items (any number, any order;
    /// copy [`Item::key`] across when callers need to match outputs to inputs).
    ///
    /// # Example
    ///
    /// ```
    /// use weft_sdk::{Config, Item, Stage, StageError};
    ///
    /// struct Reverse;
    ///
    /// impl Stage for Reverse {
    ///     fn init(_: Config) -> Result<Self, String> {
    ///         Ok(Reverse)
    ///     }
    ///
    ///     fn process(&mut self, mut batch: Vec<Item>) -> Result<Vec<Item>, StageError> {
    ///         batch.reverse();
    ///         Ok(batch)
    ///     }
    /// }
    ///
    /// let mut harness = weft_sdk::testing::Harness::<Reverse>::new(&[]);
    /// let out = harness.process(vec![Item::text("a"), Item::text("b")]).unwrap();
    /// assert_eq!(out[0].as_str().unwrap(), "b");
    /// ```
    fn process(&mut self, batch: Vec<Item>) -> Result<Vec<Item>, StageError>;
}
