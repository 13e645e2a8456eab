//! Placeholder: filled in by the network side of the sim.

use std::sync::Arc;

use serde_json::Value;

use crate::rpc_error::RpcError;
use crate::sim::Sim;

/// State of this module inside one sim process.
#[derive(Default)]
pub struct UblkState {}

/// Handles this module's JSON-RPC methods; `None` when the method is not one of them.
pub async fn handle(
    sim: &Arc<Sim>,
    method: &str,
    params: Option<&Value>,
) -> Option<Result<Value, RpcError>> {
    let _ = (sim, method, params);
    None
}
