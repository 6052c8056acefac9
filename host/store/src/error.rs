//! The store's error type.

/// Everything that can go wrong in [`crate::Store`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// redb failed: I/O, a lock held by another process, a corrupt file.
    #[error("database: {0}")]
    Database(#[from] redb::Error),
    /// A stored record could not be decoded (newer format or corruption).
    #[error("corrupt record in table `{table}`: {reason}")]
    Corrupt {
        /// The table holding the record.
        table: &'static str,
        /// What failed to decode.
        reason: String,
    },
    /// A name or key the caller passed is not acceptable.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was invalid ("stage name", "object id").
        what: &'static str,
        /// Why, and how to fix it.
        reason: String,
    },
    /// Something with this name already exists and cannot be replaced.
    #[error("{what} `{name}` already exists")]
    Exists {
        /// What kind of thing ("dataset").
        what: &'static str,
        /// Its name.
        name: String,
    },
}

impl StoreError {
    /// The database file is open elsewhere (another daemon, or this process
    /// still releasing it).
    pub fn is_locked(&self) -> bool {
        matches!(self, Self::Database(redb::Error::DatabaseAlreadyOpen))
    }

    /// A record this release cannot read (see [`StoreError::Corrupt`]).
    pub fn is_unreadable(&self) -> bool {
        matches!(self, Self::Corrupt { .. })
    }
}
