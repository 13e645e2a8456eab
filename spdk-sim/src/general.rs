//! Framework-level methods: version, method list, examine, kill.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::params;
use crate::rpc_error::RpcError;
use crate::sim::Sim;

/// Handles framework methods; `None` when the method is not one of them.
pub async fn handle(
    sim: &Arc<Sim>,
    method: &str,
    params: Option<&Value>,
) -> Option<Result<Value, RpcError>> {
    Some(match method {
        "spdk_get_version" => params::none(method, params).map(|()| version()),
        "rpc_get_methods" => rpc_get_methods(params),
        "bdev_wait_for_examine" => match params::none(method, params) {
            Ok(()) => {
                crate::lvol::wait_for_examine(sim).await;
                Ok(json!(true))
            }
            Err(e) => Err(e),
        },
        "bdev_examine" => bdev_examine(sim, params).await,
        "spdk_kill_instance" => kill(sim, params),
        "env_dpdk_get_mem_stats" => {
            params::none(method, params).map(|()| json!({"filename": "/tmp/spdk_mem_dump.txt"}))
        }
        _ => return None,
    })
}

/// `spdk_get_version`, shaped like v25.09's answer.
fn version() -> Value {
    json!({
        "version": "SPDK v25.09",
        "fields": {"major": 25, "minor": 9, "patch": 0, "suffix": ""}
    })
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct GetMethods {
    current: Option<bool>,
    include_aliases: Option<bool>,
}

/// `rpc_get_methods`: the methods this sim answers (a subset of spdk_tgt's),
/// as a flat list of names like SPDK's.
fn rpc_get_methods(params: Option<&Value>) -> Result<Value, RpcError> {
    let _: GetMethods = params::optional(params)?;
    Ok(json!(crate::methods::implemented()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ByName {
    name: String,
}

async fn bdev_examine(sim: &Arc<Sim>, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: ByName = params::required(params)?;
    let exists = sim
        .bdevs
        .lock()
        .map_err(|_| RpcError::errno(-5))?
        .lookup(&p.name)
        .is_some();
    if !exists {
        return Err(RpcError::no_such_device());
    }
    crate::lvol::examine(sim, &p.name).await;
    Ok(json!(true))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Kill {
    sig_name: Option<String>,
}

/// `spdk_kill_instance`: answers true, then the server stops and the process exits.
fn kill(sim: &Arc<Sim>, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: Kill = params::required(params)?;
    match p.sig_name.as_deref() {
        Some("SIGINT" | "SIGTERM" | "SIGQUIT" | "SIGHUP" | "SIGKILL") => {}
        Some(_) => return Err(RpcError::new(-32602, "signal is not supported")),
        None => return Err(RpcError::decode_failed()),
    }
    tracing::info!("spdk_kill_instance: shutting down");
    let sim = sim.clone();
    tokio::spawn(async move {
        // Let the response reach the client before the server stops.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        sim.killed.notify_one();
    });
    Ok(json!(true))
}
