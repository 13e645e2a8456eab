//! The one mapping from [`NodeError`] to gRPC status codes, plus the
//! constructors the CSI handlers use for request-level refusals.

use tonic::{Code, Status};

use crate::error::NodeError;

impl From<NodeError> for Status {
    fn from(e: NodeError) -> Self {
        let code = match &e {
            // Without the keys the node cannot locate the volume at all:
            // per the spec (and csi-sanity) that is "volume does not exist".
            NodeError::MissingContextKey { .. } => Code::NotFound,
            NodeError::DeviceTimeout { .. } => Code::NotFound,
            NodeError::InvalidContextValue { .. }
            | NodeError::InvalidOption { .. }
            | NodeError::UnsupportedFilesystem { .. }
            | NodeError::InvalidDmName { .. }
            | NodeError::WrongFrontend { .. } => Code::InvalidArgument,
            NodeError::DeviceNotBlank { .. } | NodeError::NotBlockDevice { .. } => {
                Code::FailedPrecondition
            }
            NodeError::QuiesceUnsupported { .. } | NodeError::QuiesceConflict { .. } => {
                Code::FailedPrecondition
            }
            NodeError::Config { .. } => Code::FailedPrecondition,
            _ => Code::Internal,
        };
        Status::new(code, e.to_string())
    }
}

/// INVALID_ARGUMENT naming the missing or bad field.
pub fn invalid(message: impl Into<String>) -> Status {
    Status::invalid_argument(message)
}

/// NOT_FOUND.
pub fn not_found(message: impl Into<String>) -> Status {
    Status::not_found(message)
}

/// FAILED_PRECONDITION.
pub fn precondition(message: impl Into<String>) -> Status {
    Status::failed_precondition(message)
}

/// ALREADY_EXISTS: the volume is staged or published incompatibly.
pub fn incompatible(message: impl Into<String>) -> Status {
    Status::already_exists(message)
}

/// ABORTED: another operation on the same volume is in flight.
pub fn busy(volume_id: &str) -> Status {
    Status::aborted(format!(
        "an operation on volume {volume_id} is already in progress"
    ))
}
