//! Checkpoints for long work: save how far an item has got, so that when the
//! daemon restarts and resumes the job, the stage continues from there
//! instead of from the start.
//!
//! A checkpoint is stored in the stage's durable [`state`](crate::state),
//! under a key derived from the item's key. The daemon gives every async job's
//! input item the key `job-<id>` (`job-<node>-<id>` in a cluster, the same on
//! the node that takes the job over when its own dies), so checkpoints of
//! different jobs never mix;
//! a batch job's rows carry their row number. Clear the checkpoint when the
//! work is done.
//!
//! # Example
//!
//! ```
//! use weft_sdk::{Item, checkpoint, emit};
//!
//! let item = Item::text("train").with_key("job-7");
//! let mut step: u64 = checkpoint::load(&item)?.unwrap_or(0);
//! while step < 3 {
//!     step += 1; // ... one unit of work ...
//!     checkpoint::save(&item, &step)?;
//!     emit::progress(step, Some(3), "steps");
//! }
//! checkpoint::clear(&item);
//! assert_eq!(checkpoint::load::<u64>(&item)?, None);
//! # Ok::<(), weft_sdk::StageError>(())
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Item, StageError, state};

/// The state key of `item`'s checkpoint.
///
/// ```
/// let item = weft_sdk::Item::text("x").with_key("job-3");
/// assert_eq!(weft_sdk::checkpoint::key(&item), "checkpoint/job-3");
/// ```
pub fn key(item: &Item) -> String {
    format!("checkpoint/{}", item.key.as_deref().unwrap_or("-"))
}

/// Saves `value` as `item`'s checkpoint (bincode); durable when it returns.
///
/// ```
/// let item = weft_sdk::Item::text("x").with_key("job-1");
/// weft_sdk::checkpoint::save(&item, &(2u32, "epoch"))?;
/// # Ok::<(), weft_sdk::StageError>(())
/// ```
pub fn save<T: Serialize + ?Sized>(item: &Item, value: &T) -> Result<(), StageError> {
    state::set_bincode(&key(item), value)
}

/// `item`'s last checkpoint, or `None` when there is none.
///
/// ```
/// let item = weft_sdk::Item::text("x").with_key("job-2");
/// assert_eq!(weft_sdk::checkpoint::load::<u32>(&item)?, None);
/// # Ok::<(), weft_sdk::StageError>(())
/// ```
pub fn load<T: DeserializeOwned>(item: &Item) -> Result<Option<T>, StageError> {
    state::get_bincode(&key(item))
}

/// Removes `item`'s checkpoint (once its work is done).
///
/// ```
/// let item = weft_sdk::Item::text("x").with_key("job-4");
/// weft_sdk::checkpoint::save(&item, &1u8)?;
/// weft_sdk::checkpoint::clear(&item);
/// assert_eq!(weft_sdk::checkpoint::load::<u8>(&item)?, None);
/// # Ok::<(), weft_sdk::StageError>(())
/// ```
pub fn clear(item: &Item) {
    state::delete(&key(item));
}
