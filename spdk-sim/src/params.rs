//! Decoding JSON-RPC params the way SPDK's `spdk_json_decode_object` does:
//! unknown members, wrong types and missing required members all fail with
//! -32603 "spdk_json_decode_object failed".

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::rpc_error::RpcError;

/// Decodes params that the method requires (absent params fail).
pub fn required<T: DeserializeOwned>(params: Option<&Value>) -> Result<T, RpcError> {
    match params {
        Some(v @ Value::Object(_)) => {
            serde_json::from_value(v.clone()).map_err(|_| RpcError::decode_failed())
        }
        _ => Err(RpcError::decode_failed()),
    }
}

/// Decodes params whose members are all optional (absent params give the default).
pub fn optional<T: DeserializeOwned + Default>(params: Option<&Value>) -> Result<T, RpcError> {
    match params {
        None | Some(Value::Null) => Ok(T::default()),
        Some(v) => required(Some(v)),
    }
}

/// Fails with SPDK's answer when a parameterless method is given params.
pub fn none(method: &str, params: Option<&Value>) -> Result<(), RpcError> {
    match params {
        None | Some(Value::Null) => Ok(()),
        Some(_) => Err(RpcError::new(
            -32602,
            format!("{method} method requires no parameters"),
        )),
    }
}
