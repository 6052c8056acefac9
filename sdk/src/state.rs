//! Durable per-stage key/value storage: running totals, checkpoints, actor state.
//!
//! Unlike fields of the stage value, which die with the instance, state survives
//! instance restarts and daemon restarts: a write is committed before
//! [`set`] returns. The typed helpers store JSON or bincode; a value that no longer
//! decodes (say, after the stage changed the type) is [`StageError::Fatal`]: a
//! retry cannot fix it, a migration can.
//!
//! # Example
//!
//! ```
//! use weft_sdk::state;
//!
//! let seen: u64 = state::get_json("seen")?.unwrap_or(0);
//! state::set_json("seen", &(seen + 1))?;
//! assert_eq!(state::get_json::<u64>("seen")?, Some(seen + 1));
//! # Ok::<(), weft_sdk::StageError>(())
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{StageError, host};

/// Reads the raw bytes under `key`; `None` when it was never set or was deleted.
///
/// # Example
///
/// ```
/// assert_eq!(weft_sdk::state::get("never-set"), None);
/// ```
pub fn get(key: &str) -> Option<Vec<u8>> {
    host::state_get(key)
}

/// Writes raw bytes under `key`, replacing any previous value.
///
/// # Example
///
/// ```
/// weft_sdk::state::set("cursor", b"row-1200");
/// assert_eq!(weft_sdk::state::get("cursor").as_deref(), Some(&b"row-1200"[..]));
/// ```
pub fn set(key: &str, value: impl AsRef<[u8]>) {
    host::state_set(key, value.as_ref());
}

/// Removes `key`; a no-op when absent.
///
/// # Example
///
/// ```
/// weft_sdk::state::set("tmp", b"x");
/// weft_sdk::state::delete("tmp");
/// assert_eq!(weft_sdk::state::get("tmp"), None);
/// ```
pub fn delete(key: &str) {
    host::state_delete(key);
}

/// Reads and decodes a JSON value written by [`set_json`].
///
/// # Example
///
/// ```
/// use std::collections::BTreeMap;
///
/// weft_sdk::state::set("counts", br#"{"a":1}"#);
/// let counts: Option<BTreeMap<String, u32>> = weft_sdk::state::get_json("counts")?;
/// assert_eq!(counts.unwrap()["a"], 1);
/// # Ok::<(), weft_sdk::StageError>(())
/// ```
pub fn get_json<T: DeserializeOwned>(key: &str) -> Result<Option<T>, StageError> {
    get(key)
        .map(|bytes| serde_json::from_slice(&bytes).map_err(|e| corrupt::<T>(key, "JSON", e)))
        .transpose()
}

/// Encodes `value` as JSON and writes it under `key`: readable by people and by
/// other tools, at some cost in size.
///
/// # Example
///
/// ```
/// weft_sdk::state::set_json("checkpoint", &serde_json::json!({ "block": 7 }))?;
/// assert_eq!(weft_sdk::state::get("checkpoint").unwrap(), br#"{"block":7}"#);
/// # Ok::<(), weft_sdk::StageError>(())
/// ```
pub fn set_json<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<(), StageError> {
    let bytes = serde_json::to_vec(value).map_err(|e| unencodable::<T>(key, "JSON", e))?;
    set(key, bytes);
    Ok(())
}

/// Reads and decodes a bincode value written by [`set_bincode`].
///
/// # Example
///
/// ```
/// weft_sdk::state::set_bincode("totals", &(3u64, 12u64))?;
/// assert_eq!(weft_sdk::state::get_bincode::<(u64, u64)>("totals")?, Some((3, 12)));
/// # Ok::<(), weft_sdk::StageError>(())
/// ```
pub fn get_bincode<T: DeserializeOwned>(key: &str) -> Result<Option<T>, StageError> {
    get(key)
        .map(|bytes| {
            bincode::serde::decode_from_slice(&bytes, bincode::config::standard())
                .map(|(value, _read)| value)
                .map_err(|e| corrupt::<T>(key, "bincode", e))
        })
        .transpose()
}

/// Encodes `value` with bincode's standard config and writes it under `key`:
/// compact and fast, for state only this stage reads.
///
/// # Example
///
/// ```
/// weft_sdk::state::set_bincode("weights", &vec![0.5f32; 4])?;
/// assert!(weft_sdk::state::get("weights").is_some());
/// # Ok::<(), weft_sdk::StageError>(())
/// ```
pub fn set_bincode<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<(), StageError> {
    let bytes = bincode::serde::encode_to_vec(value, bincode::config::standard())
        .map_err(|e| unencodable::<T>(key, "bincode", e))?;
    set(key, bytes);
    Ok(())
}

fn corrupt<T>(key: &str, format: &str, err: impl std::fmt::Display) -> StageError {
    StageError::fatal(format!(
        "state `{key}` is not valid {format} for {}: {err} (delete or migrate the key)",
        std::any::type_name::<T>()
    ))
}

fn unencodable<T: ?Sized>(key: &str, format: &str, err: impl std::fmt::Display) -> StageError {
    StageError::fatal(format!(
        "could not encode {} as {format} for state `{key}`: {err}",
        std::any::type_name::<T>()
    ))
}
