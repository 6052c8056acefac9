//! Run a stage natively, with `cargo test`, against an in-process host.
//!
//! [`Harness`] calls [`Stage::init`](crate::Stage::init) and
//! [`Stage::process`](crate::Stage::process) as the daemon would, while every host
//! capability the stage uses ([`emit`](crate::emit), [`state`](crate::state),
//! [`objects`](crate::objects), logging) goes to an in-memory host that the test can
//! seed and inspect. `wasi:nn` is not available here (see [`crate::nn`]). Only on
//! targets other than `wasm32`.
//!
//! # Example
//!
//! ```
//! use weft_sdk::testing::Harness;
//! use weft_sdk::{Config, Item, Stage, StageError, state};
//!
//! /// Counts items across batches in `state`.
//! struct Tally;
//!
//! impl Stage for Tally {
//!     fn init(_: Config) -> Result<Self, String> {
//!         Ok(Tally)
//!     }
//!
//!     fn process(&mut self, batch: Vec<Item>) -> Result<Vec<Item>, StageError> {
//!         let seen: u64 = state::get_json("seen")?.unwrap_or(0) + batch.len() as u64;
//!         state::set_json("seen", &seen)?;
//!         Ok(vec![Item::json(&seen)?])
//!     }
//! }
//!
//! let mut harness = Harness::<Tally>::builder().state_json("seen", &40u64).build().unwrap();
//! harness.process(vec![Item::text("a"), Item::text("b")])?;
//! assert_eq!(harness.state_json::<u64>("seen"), Some(42));
//! # Ok::<(), StageError>(())
//! ```

mod builder;
mod harness;
mod inspect;
mod records;
#[cfg(test)]
mod tests;

pub use builder::HarnessBuilder;
pub use harness::Harness;
pub use records::{LogRecord, Progress};
