//! Routes one JSON-RPC method call to the module that implements it.

use std::sync::Arc;

use serde_json::Value;

use crate::rpc_error::RpcError;
use crate::sim::Sim;

/// Runs `method` with `params` and returns its result or error.
pub async fn dispatch(
    sim: &Arc<Sim>,
    method: &str,
    params: Option<&Value>,
) -> Result<Value, RpcError> {
    if let Some(r) = crate::lvol::handle(sim, method, params).await {
        return r;
    }
    if let Some(r) = crate::nvmf::handle(sim, method, params).await {
        return r;
    }
    if let Some(r) = crate::nvme::handle(sim, method, params).await {
        return r;
    }
    if let Some(r) = crate::raid::handle(sim, method, params).await {
        return r;
    }
    if let Some(r) = crate::ublk::handle(sim, method, params).await {
        return r;
    }
    Err(RpcError::method_not_found())
}
