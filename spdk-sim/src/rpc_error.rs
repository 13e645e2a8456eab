//! JSON-RPC errors as spdk_tgt reports them: a numeric code and a message.

use serde_json::{json, Value};

/// One JSON-RPC error object, as placed in the `error` member of a response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("JSON-RPC error {code}: {message}")]
pub struct RpcError {
    /// SPDK's error code (a negated errno or a JSON-RPC reserved code).
    pub code: i32,
    /// SPDK's message text, matching the recordings word for word.
    pub message: String,
}

impl RpcError {
    /// An error with an explicit code and message.
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// -32601 for a method spdk_tgt does not know.
    pub fn method_not_found() -> Self {
        Self::new(-32601, "Method not found")
    }

    /// -32600 for a request that is not a valid JSON-RPC 2.0 request.
    pub fn invalid_request() -> Self {
        Self::new(-32600, "Invalid request")
    }

    /// -32603 "spdk_json_decode_object failed": SPDK's answer to bad or missing parameters.
    pub fn decode_failed() -> Self {
        Self::new(-32603, "spdk_json_decode_object failed")
    }

    /// A negated errno with its strerror text, e.g. `errno(-19)` gives "No such device".
    pub fn errno(code: i32) -> Self {
        Self::new(code, strerror(-code))
    }

    /// -19 "No such device".
    pub fn no_such_device() -> Self {
        Self::errno(-19)
    }

    /// -17 "File exists".
    pub fn exists() -> Self {
        Self::errno(-17)
    }

    /// -22 "Invalid argument".
    pub fn invalid_argument() -> Self {
        Self::errno(-22)
    }

    /// The JSON object for the response's `error` member.
    pub fn to_json(&self) -> Value {
        json!({ "code": self.code, "message": self.message })
    }
}

/// glibc's strerror text for the errnos SPDK reports (SPDK's
/// `spdk_strerror` is `strerror_r`). The C library's own text, not nix's
/// table, which differs for some: EIO is "Input/output error" on real
/// spdk_tgt (a failed shallow copy onto a dead target), "I/O error" in nix.
pub fn strerror(errno: i32) -> String {
    let text = std::io::Error::from_raw_os_error(errno).to_string();
    match text.rfind(" (os error ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

#[cfg(test)]
mod strerror_tests {
    #[test]
    fn errno_texts_are_the_c_librarys_as_real_spdk_reports_them() {
        assert_eq!(super::strerror(5), "Input/output error");
        assert_eq!(super::strerror(19), "No such device");
        assert_eq!(super::strerror(28), "No space left on device");
        assert_eq!(super::strerror(17), "File exists");
    }
}
