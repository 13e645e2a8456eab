//! The crate's single error type and the classification of SPDK error codes.
//!
//! SPDK answers failures in two ways: with a negative errno as the JSON-RPC
//! code (`-19 "No such device"`), or with a generic JSON-RPC code and the
//! errno only in the message (`-32602 "No space left on device"`). Callers
//! must branch on meaning, so [`ErrorKind::classify`] folds both forms into
//! one [`ErrorKind`]. The whole table lives in this module.

use thiserror::Error;

/// Result alias used throughout the crate.
pub type Result<T, E = SpdkError> = std::result::Result<T, E>;

/// Every way a call to SPDK can fail.
#[derive(Debug, Error)]
pub enum SpdkError {
    /// SPDK answered with a JSON-RPC error object.
    #[error("SPDK RPC error {code}: {message}")]
    Rpc {
        /// The JSON-RPC error code as sent by SPDK.
        code: i32,
        /// The error message as sent by SPDK.
        message: String,
        /// What the error means, see [`ErrorKind::classify`].
        kind: ErrorKind,
    },
    /// No answer arrived within the client's per-call timeout.
    #[error("SPDK call timed out")]
    Timeout,
    /// The connection to SPDK could not be made, broke, or was closed.
    #[error("transport error: {0}")]
    Transport(String),
    /// The HTTP endpoint answered with a non-success status.
    #[error("HTTP status {status}")]
    Http {
        /// The HTTP status code.
        status: u16,
    },
    /// The peer sent something that is not a valid JSON-RPC response.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// Request parameters could not be encoded as JSON.
    #[error("cannot encode parameters for {method}: {source}")]
    Encode {
        /// The RPC method.
        method: String,
        /// The underlying serde error.
        #[source]
        source: serde_json::Error,
    },
    /// A successful result did not have the expected shape.
    #[error("cannot decode result of {method}: {source}")]
    Decode {
        /// The RPC method.
        method: String,
        /// The underlying serde error.
        #[source]
        source: serde_json::Error,
    },
    /// The client was configured with an unusable endpoint.
    #[error("invalid endpoint: {0}")]
    InvalidEndpoint(String),
    /// `bdev_get_histogram` answered a histogram that does not match its
    /// own layout (bad base64, wrong length, impossible ranges).
    #[error("malformed histogram from SPDK: {0}")]
    BadHistogram(String),
}

/// The meaning of an SPDK error, independent of how SPDK encoded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The named object does not exist (ENODEV, ENOENT).
    NotFound,
    /// An object with that name already exists (EEXIST).
    AlreadyExists,
    /// Not enough free space (ENOSPC), e.g. a thick lvol larger than the lvstore.
    NoSpace,
    /// SPDK rejected a parameter value (EINVAL), e.g. cloning a non-snapshot.
    InvalidArgument,
    /// The operation is not allowed in the current state (EPERM).
    NotPermitted,
    /// The object is busy (EBUSY).
    Busy,
    /// The operation is not supported (EOPNOTSUPP), e.g. NVMe/TCP in interrupt mode.
    NotSupported,
    /// An I/O error (EIO), e.g. the remote NVMe-oF target is unreachable.
    Io,
    /// SPDK itself timed out (ETIMEDOUT), e.g. `bdev_get_bdevs` with a timeout.
    TimedOut,
    /// The RPC method does not exist (-32601).
    MethodNotFound,
    /// The parameters could not be decoded, or referenced an unknown object
    /// where SPDK does not say which (-32602/-32603 "Invalid parameters",
    /// "spdk_json_decode_object failed").
    InvalidParams,
    /// The request was not a valid JSON-RPC request (-32600).
    InvalidRequest,
    /// Anything not covered above.
    Other,
}

/// JSON-RPC 2.0 reserved codes used by SPDK.
mod code {
    pub const PARSE_ERROR: i32 = -32700;
    pub const INVALID_REQUEST: i32 = -32600;
    pub const METHOD_NOT_FOUND: i32 = -32601;
    pub const INVALID_PARAMS: i32 = -32602;
}

/// `strerror` texts SPDK puts into messages under a generic JSON-RPC code,
/// matched exactly or as the `": <text>"` suffix of a longer message.
const STRERROR_KINDS: &[(&str, ErrorKind)] = &[
    ("No such device", ErrorKind::NotFound),
    ("No such file or directory", ErrorKind::NotFound),
    ("File exists", ErrorKind::AlreadyExists),
    ("No space left on device", ErrorKind::NoSpace),
    ("Invalid argument", ErrorKind::InvalidArgument),
    ("Operation not permitted", ErrorKind::NotPermitted),
    ("Device or resource busy", ErrorKind::Busy),
    ("Operation not supported", ErrorKind::NotSupported),
    ("Input/output error", ErrorKind::Io),
    ("Connection timed out", ErrorKind::TimedOut),
];

/// Messages SPDK uses when it could not decode or resolve the parameters.
const INVALID_PARAMS_MESSAGES: &[&str] = &["spdk_json_decode_object failed", "Invalid parameters"];

impl ErrorKind {
    /// Classifies an SPDK error from its code and message.
    ///
    /// Negative errno codes are classified by the errno. Generic JSON-RPC
    /// codes are classified by the errno text in the message when there is
    /// one, otherwise by the code.
    pub fn classify(code: i32, message: &str) -> ErrorKind {
        match code {
            code::METHOD_NOT_FOUND => ErrorKind::MethodNotFound,
            code::INVALID_REQUEST => ErrorKind::InvalidRequest,
            c if (-4095..0).contains(&c) => {
                Self::from_errno(-c).unwrap_or_else(|| Self::from_message(message))
            }
            code::INVALID_PARAMS | code::PARSE_ERROR => match Self::from_message(message) {
                ErrorKind::Other => ErrorKind::InvalidParams,
                kind => kind,
            },
            _ => Self::from_message(message),
        }
    }

    /// Maps a positive errno value to a kind, if it has a specific meaning.
    fn from_errno(errno: i32) -> Option<ErrorKind> {
        Some(match errno {
            1 => ErrorKind::NotPermitted,
            2 | 19 => ErrorKind::NotFound,
            5 => ErrorKind::Io,
            16 => ErrorKind::Busy,
            17 => ErrorKind::AlreadyExists,
            22 => ErrorKind::InvalidArgument,
            28 => ErrorKind::NoSpace,
            95 => ErrorKind::NotSupported,
            110 => ErrorKind::TimedOut,
            // EALREADY: bdev_nvme_attach_controller under a name in use.
            114 => ErrorKind::AlreadyExists,
            _ => return None,
        })
    }

    /// Classifies by message text alone; `Other` when nothing matches.
    fn from_message(message: &str) -> ErrorKind {
        if INVALID_PARAMS_MESSAGES.contains(&message) {
            return ErrorKind::InvalidParams;
        }
        // "Transport type 'TCP' already exists" (-32603).
        if message.ends_with(" already exists") {
            return ErrorKind::AlreadyExists;
        }
        // "error setting ANA state: -22": a negated errno at the end.
        if let Some(errno) = message
            .rsplit_once(": -")
            .and_then(|(_, n)| n.parse::<i32>().ok())
        {
            if let Some(kind) = Self::from_errno(errno) {
                return kind;
            }
        }
        STRERROR_KINDS
            .iter()
            .find(|(text, _)| {
                message == *text
                    || message
                        .strip_suffix(text)
                        .is_some_and(|head| head.ends_with(": "))
            })
            .map_or(ErrorKind::Other, |(_, kind)| *kind)
    }
}

impl SpdkError {
    /// Builds an [`SpdkError::Rpc`] from a JSON-RPC error object, classifying it.
    pub fn rpc(code: i32, message: impl Into<String>) -> SpdkError {
        let message = message.into();
        let kind = ErrorKind::classify(code, &message);
        SpdkError::Rpc {
            code,
            message,
            kind,
        }
    }

    /// The kind of an RPC error, or `None` for transport-level failures.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            SpdkError::Rpc { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    fn kind_is(&self, wanted: ErrorKind) -> bool {
        self.kind() == Some(wanted)
    }

    /// SPDK reported that the object does not exist.
    pub fn is_not_found(&self) -> bool {
        self.kind_is(ErrorKind::NotFound)
    }

    /// SPDK reported that the object already exists.
    pub fn is_already_exists(&self) -> bool {
        self.kind_is(ErrorKind::AlreadyExists)
    }

    /// SPDK reported a lack of space.
    pub fn is_no_space(&self) -> bool {
        self.kind_is(ErrorKind::NoSpace)
    }

    /// SPDK rejected an argument value.
    pub fn is_invalid_argument(&self) -> bool {
        self.kind_is(ErrorKind::InvalidArgument)
    }

    /// SPDK refused the operation in the current state.
    pub fn is_not_permitted(&self) -> bool {
        self.kind_is(ErrorKind::NotPermitted)
    }

    /// SPDK reported the object busy.
    pub fn is_busy(&self) -> bool {
        self.kind_is(ErrorKind::Busy)
    }

    /// SPDK does not know the method.
    pub fn is_method_not_found(&self) -> bool {
        self.kind_is(ErrorKind::MethodNotFound)
    }

    /// SPDK could not decode or resolve the parameters.
    pub fn is_invalid_params(&self) -> bool {
        self.kind_is(ErrorKind::InvalidParams)
    }

    /// SPDK reported the operation unsupported.
    pub fn is_not_supported(&self) -> bool {
        self.kind_is(ErrorKind::NotSupported)
    }

    /// The client gave up waiting (not an SPDK-side ETIMEDOUT).
    pub fn is_timeout(&self) -> bool {
        matches!(self, SpdkError::Timeout)
    }

    /// The failure happened below JSON-RPC: connection, HTTP status or framing.
    pub fn is_transport(&self) -> bool {
        matches!(
            self,
            SpdkError::Transport(_) | SpdkError::Http { .. } | SpdkError::Protocol(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_code_wins_over_message() {
        assert_eq!(
            ErrorKind::classify(-19, "raid bdev r2 not found"),
            ErrorKind::NotFound
        );
        assert_eq!(
            ErrorKind::classify(
                -22,
                "Failed to add base bdev nvCn1 to RAID bdev r1: Invalid argument"
            ),
            ErrorKind::InvalidArgument
        );
    }

    #[test]
    fn generic_code_is_refined_by_message() {
        assert_eq!(
            ErrorKind::classify(-32602, "No space left on device"),
            ErrorKind::NoSpace
        );
        assert_eq!(
            ErrorKind::classify(-32603, "Operation not permitted"),
            ErrorKind::NotPermitted
        );
        assert_eq!(
            ErrorKind::classify(-32603, "spdk_json_decode_object failed"),
            ErrorKind::InvalidParams
        );
        assert_eq!(
            ErrorKind::classify(-32603, "Unable to create subsystem x"),
            ErrorKind::Other
        );
        assert_eq!(
            ErrorKind::classify(-32602, "something new"),
            ErrorKind::InvalidParams
        );
    }

    #[test]
    fn suffix_match_requires_separator() {
        assert_eq!(
            ErrorKind::classify(-32603, "xFile exists"),
            ErrorKind::Other
        );
        assert_eq!(
            ErrorKind::classify(-32603, "create failed: File exists"),
            ErrorKind::AlreadyExists
        );
    }

    #[test]
    fn unknown_errno_falls_back_to_message() {
        assert_eq!(
            ErrorKind::classify(-12, "Cannot allocate memory"),
            ErrorKind::Other
        );
        assert_eq!(
            ErrorKind::classify(-99, "x: No such device"),
            ErrorKind::NotFound
        );
    }
}
