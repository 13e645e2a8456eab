//! Placeholder: lvstores and lvols, filled in by the storage side of the sim.

use std::sync::Arc;

use serde_json::Value;

use crate::rpc_error::RpcError;
use crate::sim::Sim;

/// State of the lvol module inside one sim process.
#[derive(Default)]
pub struct LvolState {}

/// Handles this module's JSON-RPC methods; `None` when the method is not one of them.
pub async fn handle(
    sim: &Arc<Sim>,
    method: &str,
    params: Option<&Value>,
) -> Option<Result<Value, RpcError>> {
    let _ = (sim, method, params);
    None
}

/// Looks for an lvstore on a newly registered bdev and loads it (SPDK's examine).
pub async fn examine(sim: &Arc<Sim>, bdev_name: &str) {
    let _ = (sim, bdev_name);
}

/// Called before a base bdev holding an lvstore is deleted: unloads the lvstore.
pub async fn base_removed(sim: &Arc<Sim>, bdev_name: &str) {
    let _ = (sim, bdev_name);
}

/// Waits until every examine started so far has finished.
pub async fn wait_for_examine(sim: &Arc<Sim>) {
    let _ = sim;
}
