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
        "framework_get_reactors" => params::none(method, params).map(|()| reactors(sim)),
        "framework_get_subsystems" => params::none(method, params).map(|()| subsystems()),
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
    #[allow(dead_code)]
    name: String,
}

/// `bdev_examine`: spdk_tgt runs with auto-examine on, where a manual
/// examine is refused with -22 (as recorded).
async fn bdev_examine(sim: &Arc<Sim>, params: Option<&Value>) -> Result<Value, RpcError> {
    let _: ByName = params::required(params)?;
    let _ = sim;
    Err(RpcError::invalid_argument())
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

/// `framework_get_reactors`: one reactor on core 0 with spdk_tgt's three threads.
fn reactors(sim: &Sim) -> Value {
    let ticks = u64::try_from(sim.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let pid = std::process::id();
    json!({
        "tick_rate": crate::bdev_rpc::TICK_RATE,
        "pid": pid,
        "reactors": [{
            "lcore": 0, "tid": pid, "busy": 0, "idle": ticks, "in_interrupt": false,
            "irq": 0, "sys": 0, "usr": 0,
            "lw_threads": [
                {"name": "app_thread", "id": 1, "cpumask": "1", "elapsed": ticks},
                {"name": "nvmf_tgt_poll_group_000", "id": 2, "cpumask": "1", "elapsed": ticks},
                {"name": "iscsi_poll_group_0", "id": 3, "cpumask": "1", "elapsed": ticks}
            ]
        }]
    })
}

/// `framework_get_subsystems`, as spdk_tgt v25.09 lists them.
fn subsystems() -> Value {
    json!([
        {"subsystem": "keyring", "depends_on": []},
        {"subsystem": "iobuf", "depends_on": []},
        {"subsystem": "sock", "depends_on": []},
        {"subsystem": "vmd", "depends_on": []},
        {"subsystem": "accel", "depends_on": ["iobuf"]},
        {"subsystem": "bdev", "depends_on": ["accel", "keyring", "vmd", "sock", "iobuf"]},
        {"subsystem": "ublk", "depends_on": ["bdev"]},
        {"subsystem": "nbd", "depends_on": ["bdev"]},
        {"subsystem": "scheduler", "depends_on": []},
        {"subsystem": "nvmf", "depends_on": ["bdev", "keyring", "sock"]},
        {"subsystem": "scsi", "depends_on": ["bdev"]},
        {"subsystem": "iscsi", "depends_on": ["scsi", "sock"]}
    ])
}
