//! The crate's error type for process-level failures (socket, files, startup).

use std::path::PathBuf;

/// Why the sim could not start or keep serving.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The RPC socket could not be created or bound.
    #[error("cannot listen on {path}: {source}")]
    Listen {
        /// Socket path.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// A stale socket file could not be removed.
    #[error("cannot remove stale socket {path}: {source}")]
    StaleSocket {
        /// Socket path.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The data directory could not be created.
    #[error("cannot create data dir {path}: {source}")]
    DataDir {
        /// Directory path.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// Accepting a connection failed.
    #[error("accept failed: {0}")]
    Accept(std::io::Error),
    /// Bad command-line arguments.
    #[error("usage: spdk-sim --rpc-socket PATH --data-dir DIR ({0})")]
    Usage(String),
}
