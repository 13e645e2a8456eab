//! The controller's one error type and its single mapping to gRPC statuses.
//!
//! Every fallible function in this crate returns [`ControllerError`]; the CSI
//! services convert it into a [`tonic::Status`] through the one `From` impl
//! below, so the gRPC code an orchestrator sees is decided in one place.

use tonic::{Code, Status};

/// Convenience alias for results in this crate.
pub type Result<T, E = ControllerError> = std::result::Result<T, E>;

/// Everything that can go wrong in the controller.
///
/// Messages are written for the operator: they say what was refused and what
/// to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// The request itself is malformed (missing field, unknown parameter).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The requested size cannot be honoured within the given bounds.
    #[error("capacity out of range: {0}")]
    OutOfRange(String),
    /// A volume with that name exists with incompatible properties.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// A volume, node or other object named in the request is unknown.
    #[error("not found: {0}")]
    NotFound(String),
    /// The request conflicts with the volume's current state.
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// Not enough nodes or space to satisfy the request.
    #[error("resource exhausted: {0}")]
    ResourceExhausted(String),
    /// The request was aborted (bad pagination token, conflicting operation in flight).
    #[error("aborted: {0}")]
    Aborted(String),
    /// The request asks for a feature Shorthorn does not implement yet.
    #[error("unimplemented: {0}")]
    Unimplemented(String),
    /// A storage node could not be reached at all.
    #[error("storage node {node} is unreachable: {reason}; check that its spdk_tgt (or node agent) is running and reachable from the controller")]
    NodeUnreachable {
        /// Node name from the configuration.
        node: String,
        /// What the transport reported.
        reason: String,
    },
    /// spdk_tgt on a node answered a JSON-RPC call with an error.
    #[error("spdk_tgt on node {node} refused {method} (code {code}): {message}")]
    Spdk {
        /// Node name from the configuration.
        node: String,
        /// The JSON-RPC method that failed.
        method: String,
        /// SPDK's error code (negative errno or JSON-RPC code).
        code: i64,
        /// SPDK's error message.
        message: String,
        /// What the error means.
        kind: spdk_client::ErrorKind,
    },
    /// The state store (etcd or the embedded database) failed.
    #[error("state store error: {0}; check that etcd (or the embedded database file) is reachable and writable")]
    Store(String),
    /// The controller configuration is invalid.
    #[error("invalid controller configuration: {0}")]
    Config(String),
    /// A local I/O error (reading the config, binding the socket).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An invariant of the controller itself was violated; a bug.
    #[error(
        "internal error: {0}; this is a Shorthorn bug, please report it with the controller log"
    )]
    Internal(String),
}

impl ControllerError {
    /// Builds an [`ControllerError::Io`] with a description of what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// The gRPC code this error maps to.
    pub fn code(&self) -> Code {
        match self {
            Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::OutOfRange(_) => Code::OutOfRange,
            Self::AlreadyExists(_) => Code::AlreadyExists,
            Self::NotFound(_) => Code::NotFound,
            Self::FailedPrecondition(_) => Code::FailedPrecondition,
            Self::ResourceExhausted(_) => Code::ResourceExhausted,
            Self::Aborted(_) => Code::Aborted,
            Self::Unimplemented(_) => Code::Unimplemented,
            Self::NodeUnreachable { .. } | Self::Store(_) => Code::Unavailable,
            Self::Spdk { kind, .. } => match kind {
                spdk_client::ErrorKind::NoSpace => Code::ResourceExhausted,
                spdk_client::ErrorKind::Busy => Code::Unavailable,
                _ => Code::Internal,
            },
            Self::Config(_) | Self::Io { .. } | Self::Internal(_) => Code::Internal,
        }
    }
}

impl From<ControllerError> for Status {
    fn from(err: ControllerError) -> Self {
        Status::new(err.code(), err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_carry_the_code_and_the_operator_message() {
        let status = Status::from(ControllerError::NodeUnreachable {
            node: "node-a".into(),
            reason: "connection refused".into(),
        });
        assert_eq!(status.code(), Code::Unavailable);
        assert!(status.message().contains("node-a"));
        assert!(status.message().contains("spdk_tgt"));

        let status = Status::from(ControllerError::ResourceExhausted("3 nodes".into()));
        assert_eq!(status.code(), Code::ResourceExhausted);

        let full = ControllerError::Spdk {
            node: "node-b".into(),
            method: "bdev_lvol_create".into(),
            code: -32602,
            message: "No space left on device".into(),
            kind: spdk_client::ErrorKind::NoSpace,
        };
        assert_eq!(Status::from(full).code(), Code::ResourceExhausted);
    }
}
