//! [`StageError`]: why a batch failed, and so what the host should do about it.

/// Why [`Stage::process`](crate::Stage::process) failed; each case maps to a
/// different host policy, so pick by what a retry would achieve.
///
/// # Example
///
/// ```
/// use weft_sdk::StageError;
///
/// fn lookup(id: &str) -> Result<Vec<u8>, StageError> {
///     if id.is_empty() {
///         return Err(StageError::bad_input("`id` must not be empty"));
///     }
///     weft_sdk::objects::get(id).map_err(StageError::retryable)
/// }
///
/// assert!(matches!(lookup(""), Err(StageError::BadInput(_))));
/// assert_eq!(lookup("").unwrap_err().to_string(), "bad input: `id` must not be empty");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, thiserror::Error)]
pub enum StageError {
    /// The input is wrong; retrying will not help (the caller gets HTTP 400).
    #[error("bad input: {0}")]
    BadInput(String),
    /// A transient failure; the host may retry the batch per its policy.
    #[error("retryable: {0}")]
    Retryable(String),
    /// The stage cannot go on; the host discards this instance.
    #[error("fatal: {0}")]
    Fatal(String),
}

impl StageError {
    /// A [`StageError::BadInput`].
    ///
    /// # Example
    ///
    /// ```
    /// let err = weft_sdk::StageError::bad_input(format!("item {}: expected `text`", 3));
    /// assert_eq!(err.message(), "item 3: expected `text`");
    /// ```
    pub fn bad_input(message: impl Into<String>) -> Self {
        StageError::BadInput(message.into())
    }

    /// A [`StageError::Retryable`].
    ///
    /// # Example
    ///
    /// ```
    /// let err = weft_sdk::StageError::retryable("model still loading");
    /// assert!(matches!(err, weft_sdk::StageError::Retryable(_)));
    /// ```
    pub fn retryable(message: impl Into<String>) -> Self {
        StageError::Retryable(message.into())
    }

    /// A [`StageError::Fatal`].
    ///
    /// # Example
    ///
    /// ```
    /// let err = weft_sdk::StageError::fatal("checkpoint is corrupt");
    /// assert_eq!(err.to_string(), "fatal: checkpoint is corrupt");
    /// ```
    pub fn fatal(message: impl Into<String>) -> Self {
        StageError::Fatal(message.into())
    }

    /// The message, without the case prefix that `Display` adds.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(weft_sdk::StageError::retryable("busy").message(), "busy");
    /// ```
    pub fn message(&self) -> &str {
        match self {
            StageError::BadInput(m) | StageError::Retryable(m) | StageError::Fatal(m) => m,
        }
    }
}
