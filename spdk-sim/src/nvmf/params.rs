//! Decoding of JSON-RPC parameters shared by the network-side modules.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::rpc_error::RpcError;

/// Decodes `params` into `T`; absent params decode as `{}`. A mismatch gives
/// SPDK's -32603 "spdk_json_decode_object failed".
pub fn decode<T: DeserializeOwned>(params: Option<&Value>) -> Result<T, RpcError> {
    let v = match params {
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(v) => v.clone(),
    };
    serde_json::from_value(v).map_err(|e| {
        tracing::debug!(error = %e, "decoding parameters failed");
        RpcError::decode_failed()
    })
}

/// -32602 "Invalid parameters": how nvmf RPCs answer most bad requests.
pub fn invalid_params() -> RpcError {
    RpcError::new(-32602, "Invalid parameters")
}
