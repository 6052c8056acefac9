//! Structured logging into the daemon's log, tagged with the stage name.
//!
//! Use the macros [`trace!`](crate::trace), [`debug!`](crate::debug),
//! [`info!`](crate::info), [`warn!`](crate::warn) and [`error!`](crate::error):
//! they take `format!` arguments. Stdout and stderr of a stage go nowhere, so this
//! is the way to leave a trace.
//!
//! # Example
//!
//! ```
//! let rows = 12;
//! weft_sdk::info!("loaded {rows} rows");
//! weft_sdk::log::log(weft_sdk::log::Level::Warn, "cache cold");
//! ```

use std::fmt;

use crate::host;

/// Severity of a log record, lowest first.
///
/// # Example
///
/// ```
/// use weft_sdk::log::Level;
///
/// assert!(Level::Trace < Level::Error);
/// assert_eq!(Level::Warn.to_string(), "warn");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed tracing, usually off.
    Trace,
    /// Diagnostics for the stage author.
    Debug,
    /// Normal operation worth recording.
    Info,
    /// Something unexpected that the stage handled.
    Warn,
    /// Something failed.
    Error,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        })
    }
}

/// Writes one log record; the macros call this with a formatted message.
///
/// # Example
///
/// ```
/// weft_sdk::log::log(weft_sdk::log::Level::Info, "ready");
/// ```
pub fn log(level: Level, message: &str) {
    host::log(level, message);
}

/// Logs a `format!`-style message at [`Level::Trace`].
///
/// # Example
///
/// ```
/// weft_sdk::trace!("token {} of {}", 3, 128);
/// ```
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => {
        $crate::log::log($crate::log::Level::Trace, &::std::format!($($arg)+))
    };
}

/// Logs a `format!`-style message at [`Level::Debug`].
///
/// # Example
///
/// ```
/// let batch = vec![1, 2, 3];
/// weft_sdk::debug!("batch of {}", batch.len());
/// ```
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => {
        $crate::log::log($crate::log::Level::Debug, &::std::format!($($arg)+))
    };
}

/// Logs a `format!`-style message at [`Level::Info`].
///
/// # Example
///
/// ```
/// let model = "minilm";
/// weft_sdk::info!("loaded model {model}");
/// ```
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => {
        $crate::log::log($crate::log::Level::Info, &::std::format!($($arg)+))
    };
}

/// Logs a `format!`-style message at [`Level::Warn`].
///
/// # Example
///
/// ```
/// weft_sdk::warn!("item {} has no key; using its index", 4);
/// ```
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => {
        $crate::log::log($crate::log::Level::Warn, &::std::format!($($arg)+))
    };
}

/// Logs a `format!`-style message at [`Level::Error`].
///
/// # Example
///
/// ```
/// let err = "timeout";
/// weft_sdk::error!("lookup failed: {err}");
/// ```
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => {
        $crate::log::log($crate::log::Level::Error, &::std::format!($($arg)+))
    };
}
