//! Incremental results and progress, streamed to whoever waits on the job
//! before [`Stage::process`](crate::Stage::process) returns.
//!
//! # Example
//!
//! ```
//! use weft_sdk::{Config, Item, Stage, StageError, emit};
//!
//! struct Slow;
//!
//! impl Stage for Slow {
//!     fn init(_: Config) -> Result<Self, String> {
//!         Ok(Slow)
//!     }
//!
//!     fn process(&mut self, batch: Vec<Item>) -> Result<Vec<Item>, StageError> {
//!         let total = batch.len() as u64;
//!         for (i, item) in batch.iter().enumerate() {
//!             emit::partial(item.clone());
//!             emit::progress(i as u64 + 1, Some(total), format!("item {}/{total}", i + 1));
//!         }
//!         Ok(batch)
//!     }
//! }
//!
//! let mut harness = weft_sdk::testing::Harness::<Slow>::new(&[]);
//! harness.process(vec![Item::text("a"), Item::text("b")]).unwrap();
//! assert_eq!(harness.partials().len(), 2);
//! assert_eq!(harness.progress()[1].message, "item 2/2");
//! ```

use crate::{Item, host};

/// Sends one partial result to the caller now (an SSE event or a streamed chunk);
/// the returned batch is still the stage's real output.
///
/// # Example
///
/// ```
/// weft_sdk::emit::partial(weft_sdk::Item::text("first token").with_key("req-1:0"));
/// ```
pub fn partial(item: Item) {
    host::emit_partial(item);
}

/// Reports progress: `done` of `total` units (`None` when the total is unknown),
/// with a short human-readable message.
///
/// # Example
///
/// ```
/// weft_sdk::emit::progress(3, Some(10), "epoch 3/10");
/// weft_sdk::emit::progress(1_000, None, format!("{} rows read", 1_000));
/// ```
pub fn progress(done: u64, total: Option<u64>, message: impl AsRef<str>) {
    host::emit_progress(done, total, message.as_ref());
}
