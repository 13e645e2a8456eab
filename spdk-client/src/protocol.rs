//! JSON-RPC 2.0 request and response envelopes as spoken by SPDK.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Result, SpdkError};

/// One JSON-RPC 2.0 request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Always `"2.0"`.
    pub jsonrpc: String,
    /// Identifier that the response echoes.
    pub id: u64,
    /// RPC method name.
    pub method: String,
    /// Parameters; omitted entirely when `None` (SPDK rejects `null` for
    /// methods without parameters).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub params: Option<Value>,
}

impl Request {
    /// Builds a request with the JSON-RPC version filled in.
    pub fn new(id: u64, method: impl Into<String>, params: Option<Value>) -> Request {
        Request {
            jsonrpc: "2.0".to_owned(),
            id,
            method: method.into(),
            params,
        }
    }
}

/// The error object of a failed JSON-RPC call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RpcErrorObject {
    /// JSON-RPC or negative errno code.
    pub code: i32,
    /// Human-readable message.
    #[serde(default)]
    pub message: String,
}

/// One JSON-RPC 2.0 response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// The id of the request this answers; `None` when SPDK could not read it.
    #[serde(default)]
    pub id: Option<Value>,
    /// Present on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Present on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RpcErrorObject>,
}

impl Response {
    /// Builds a success response.
    pub fn success(id: u64, result: Value) -> Response {
        Response {
            id: Some(Value::from(id)),
            result: Some(result),
            error: None,
        }
    }

    /// Builds an error response.
    pub fn failure(id: u64, code: i32, message: impl Into<String>) -> Response {
        Response {
            id: Some(Value::from(id)),
            result: None,
            error: Some(RpcErrorObject {
                code,
                message: message.into(),
            }),
        }
    }

    /// The numeric id, if the response carries one.
    pub fn numeric_id(&self) -> Option<u64> {
        self.id.as_ref().and_then(Value::as_u64)
    }

    /// Turns the envelope into the call's outcome.
    pub fn into_result(self) -> Result<Value> {
        match (self.error, self.result) {
            (Some(err), _) => Err(SpdkError::rpc(err.code, err.message)),
            (None, Some(result)) => Ok(result),
            (None, None) => Err(SpdkError::Protocol(
                "response has neither result nor error".to_owned(),
            )),
        }
    }
}
