//! What the harness records of a stage's events: progress calls and log records.

use crate::log::Level;

/// One [`emit::progress`](crate::emit::progress) call, as recorded by the harness.
///
/// # Example
///
/// ```
/// let p = weft_sdk::testing::Progress { done: 1, total: Some(4), message: "chunk 1/4".into() };
/// assert_eq!(p.total, Some(4));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Units done so far.
    pub done: u64,
    /// Units in all, when known.
    pub total: Option<u64>,
    /// The human-readable message.
    pub message: String,
}

/// One log record, as recorded by the harness.
///
/// # Example
///
/// ```
/// use weft_sdk::log::Level;
///
/// let r = weft_sdk::testing::LogRecord { level: Level::Info, message: "ready".into() };
/// assert_eq!(r.level, Level::Info);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// The severity.
    pub level: Level,
    /// The formatted message.
    pub message: String,
}
