//! Errors raised by the state store.

/// Failure of a state-store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached; the outcome of a write is unknown.
    #[error("state store {endpoint} unavailable: {reason}")]
    Unavailable {
        /// Endpoint or file that failed.
        endpoint: String,
        /// What went wrong.
        reason: String,
    },
    /// An expectation (`Expect`) did not hold; nothing was written.
    #[error("conflict on key {key}: expectation not met")]
    Conflict {
        /// The first key whose expectation failed.
        key: String,
    },
    /// Stored bytes could not be decoded.
    #[error("corrupt data at {key}: {reason}")]
    Corrupt {
        /// Key holding the bad data.
        key: String,
        /// Decoding problem.
        reason: String,
    },
    /// A record was written by a newer, unknown schema version.
    #[error(
        "record at {key} has schema version {found}, this build understands up to {supported}"
    )]
    UnsupportedSchema {
        /// Key holding the record.
        key: String,
        /// Version found in the record.
        found: u32,
        /// Highest version this build reads.
        supported: u32,
    },
    /// The embedded database file is held by another process (redb takes an
    /// exclusive `flock` on it): only one controller may use it.
    #[error("state file {path} is locked by {holder}: another controller is using it; stop that one, or give this controller its own file")]
    Locked {
        /// Path of the database file.
        path: String,
        /// Who holds the lock, as far as `/proc/locks` tells (`pid 123 (shorthorn)`),
        /// or `another process`.
        holder: String,
    },
    /// This controller does not hold the leader lease on etcd (it never had it,
    /// lost it, or cannot prove it still has it): the write was refused and
    /// nothing changed.
    #[error("{reason}; the write was refused and nothing changed")]
    NotLeader {
        /// Why this controller is not the leader, for the operator.
        reason: String,
    },
    /// The request was malformed (empty key, duplicate key in a transaction, ...).
    #[error("invalid store request: {0}")]
    Invalid(String),
    /// Any other backend failure.
    #[error("state store backend error: {0}")]
    Backend(String),
}

/// Result alias for store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
