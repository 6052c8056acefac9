//! The node's content-addressed object store: large inputs and outputs travel as
//! object ids instead of item payloads.
//!
//! # Example
//!
//! ```
//! use weft_sdk::objects;
//!
//! let id = objects::put(b"a large blob");
//! assert_eq!(objects::get(&id).unwrap(), b"a large blob");
//! assert_eq!(objects::put(b"a large blob"), id, "same bytes, same id");
//! ```

use crate::host;

/// Stores `data` and returns its id; storing the same bytes twice gives the same
/// id. In the daemon the id is the hex blake3 of the bytes; the native test host
/// uses a cheaper hash, so never hard-code ids.
///
/// # Example
///
/// ```
/// let id = weft_sdk::objects::put(vec![0u8; 1024]);
/// assert!(!id.is_empty());
/// ```
pub fn put(data: impl AsRef<[u8]>) -> String {
    host::objects_put(data.as_ref())
}

/// Fetches an object by id; `Err` carries the host's reason (unknown id, not
/// granted to this stage, …).
///
/// # Example
///
/// ```
/// let err = weft_sdk::objects::get("no-such-object").unwrap_err();
/// assert!(err.contains("not found"));
/// ```
pub fn get(id: &str) -> Result<Vec<u8>, String> {
    host::objects_get(id)
}
