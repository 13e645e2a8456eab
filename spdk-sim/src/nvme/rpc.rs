//! The `bdev_nvme_*` JSON-RPC methods.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};

use super::connection::ConnectFailure;
use super::controller::{Controller, Resiliency, Trid};
use crate::nvmf::lock;
use crate::nvmf::params::decode;
use crate::rpc_error::RpcError;
use crate::sim::Sim;

/// Routes one `bdev_nvme_*` method.
pub async fn handle(
    sim: &Arc<Sim>,
    method: &str,
    params: Option<&Value>,
) -> Option<Result<Value, RpcError>> {
    let r = match method {
        "bdev_nvme_attach_controller" => attach(sim, params).await,
        "bdev_nvme_detach_controller" => detach(sim, params),
        "bdev_nvme_get_controllers" => get_controllers(sim, params),
        "bdev_nvme_set_options" => set_options(sim, params),
        "bdev_nvme_get_io_paths" => Ok(json!({"poll_groups": []})),
        _ => return None,
    };
    Some(r)
}

#[derive(Deserialize)]
struct AttachParams {
    name: String,
    trtype: String,
    traddr: String,
    #[serde(default)]
    adrfam: Option<String>,
    #[serde(default)]
    trsvcid: Option<String>,
    #[serde(default)]
    subnqn: Option<String>,
    #[serde(default)]
    hostnqn: Option<String>,
    #[serde(default)]
    multipath: Option<String>,
    ctrlr_loss_timeout_sec: Option<i64>,
    reconnect_delay_sec: Option<u64>,
    fast_io_fail_timeout_sec: Option<u64>,
}

fn normalize_adrfam(a: Option<&str>) -> String {
    match a.map(str::to_ascii_lowercase).as_deref() {
        Some("ipv6") => "IPv6".to_string(),
        _ => "IPv4".to_string(),
    }
}

/// What SPDK answers an attach under a controller name already in use.
/// Without `multipath: "disable"` SPDK would add a second path; the sim has
/// one path per controller and refuses that case as if multipath were off.
fn existing_controller(p: &AttachParams, trid: &Trid) -> RpcError {
    let name = &p.name;
    if p.multipath.as_deref() != Some("disable") {
        if trid.traddr == p.traddr && Some(&trid.trsvcid) == p.trsvcid.as_ref() {
            return RpcError::new(
                -114,
                format!("A controller named {name} already exists with the specified network path"),
            );
        }
        if p.subnqn.as_ref().is_some_and(|s| *s != trid.subnqn) {
            return RpcError::new(
                -22,
                format!(
                    "A controller named {name} already exists, but uses a different subnqn ({})",
                    trid.subnqn
                ),
            );
        }
    }
    RpcError::new(
        -114,
        format!("A controller named {name} already exists and multipath is disabled"),
    )
}

async fn attach(sim: &Arc<Sim>, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: AttachParams = decode(params)?;
    let trtype = p.trtype.to_ascii_uppercase();
    if trtype != "TCP" {
        return Err(RpcError::invalid_argument());
    }
    if let Some(m) = p.multipath.as_deref() {
        if !["disable", "failover", "multipath"].contains(&m) {
            return Err(RpcError::decode_failed());
        }
    }
    let defaults = lock(&sim.nvme.inner).options.resiliency;
    let opts = Resiliency {
        ctrlr_loss_timeout_sec: p
            .ctrlr_loss_timeout_sec
            .unwrap_or(defaults.ctrlr_loss_timeout_sec),
        reconnect_delay_sec: p
            .reconnect_delay_sec
            .unwrap_or(defaults.reconnect_delay_sec),
        fast_io_fail_timeout_sec: p
            .fast_io_fail_timeout_sec
            .unwrap_or(defaults.fast_io_fail_timeout_sec),
    };
    if !opts.is_valid() {
        return Err(RpcError::invalid_argument());
    }
    let existing = lock(&sim.nvme.inner).controllers.get(&p.name).cloned();
    if let Some(existing) = existing {
        return Err(existing_controller(&p, &existing.trid));
    }
    let trid = Trid {
        trtype,
        adrfam: normalize_adrfam(p.adrfam.as_deref()),
        traddr: p.traddr,
        trsvcid: p.trsvcid.unwrap_or_else(|| "4420".to_string()),
        subnqn: p
            .subnqn
            .unwrap_or_else(|| crate::nvmf::subsystem::DISCOVERY_NQN.to_string()),
    };
    let hostnqn = p.hostnqn.unwrap_or_else(|| sim.nvme.default_hostnqn());
    let ctrlr = Controller::connect(Arc::downgrade(sim), p.name.clone(), trid, hostnqn, opts)
        .await
        .map_err(|e| {
            tracing::warn!(ctrlr = %p.name, ?e, "attach failed");
            match e {
                ConnectFailure::Unreachable | ConnectFailure::Rejected(_) => {
                    RpcError::new(-5, "Input/output error")
                }
            }
        })?;
    {
        let mut inner = lock(&sim.nvme.inner);
        if inner.controllers.contains_key(&p.name) {
            ctrlr.shutdown();
            return Err(RpcError::new(
                -114,
                format!(
                    "A controller named {} already exists and multipath is disabled",
                    p.name
                ),
            ));
        }
        inner.controllers.insert(p.name.clone(), ctrlr.clone());
    }
    let names: Vec<String> = ctrlr
        .nsids()
        .into_iter()
        .filter_map(|nsid| super::register_ns_bdev(sim, &ctrlr, nsid))
        .collect();
    tracing::info!(ctrlr = %p.name, bdevs = ?names, "controller attached");
    // The new namespace bdevs are examined (a raid superblock on a remote
    // replica assembles its raid here, as on SPDK).
    for n in &names {
        crate::raid::examine(sim, n).await;
    }
    Ok(json!(names))
}

#[derive(Deserialize)]
struct NameParams {
    name: String,
}

fn detach(sim: &Sim, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: NameParams = decode(params)?;
    if super::remove_controller(sim, &p.name) {
        Ok(json!(true))
    } else {
        Err(RpcError::no_such_device())
    }
}

#[derive(Deserialize, Default)]
struct GetControllersParams {
    name: Option<String>,
}

fn get_controllers(sim: &Sim, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: GetControllersParams = decode(params)?;
    let inner = lock(&sim.nvme.inner);
    let list: Vec<Value> = inner
        .controllers
        .values()
        .filter(|c| p.name.as_ref().is_none_or(|n| *n == c.name))
        .map(|c| {
            json!({
                "name": c.name,
                "ctrlrs": [{
                    "state": c.state_str(),
                    "trid": c.trid.to_json(),
                    "cntlid": c.info().cntlid,
                    "host": {"nqn": c.hostnqn, "addr": "", "svcid": ""}
                }]
            })
        })
        .collect();
    if p.name.is_some() && list.is_empty() {
        return Err(RpcError::no_such_device());
    }
    Ok(Value::Array(list))
}

fn set_options(sim: &Sim, params: Option<&Value>) -> Result<Value, RpcError> {
    let raw: serde_json::Map<String, Value> = decode(params)?;
    let mut inner = lock(&sim.nvme.inner);
    if !inner.controllers.is_empty() {
        return Err(RpcError::new(
            -1,
            "RPC not permitted with nvme controllers already attached",
        ));
    }
    let mut r = inner.options.resiliency;
    let int = |k: &str| {
        raw.get(k)
            .map(|v| v.as_i64().ok_or_else(RpcError::decode_failed))
    };
    if let Some(v) = int("ctrlr_loss_timeout_sec") {
        r.ctrlr_loss_timeout_sec = v?;
    }
    if let Some(v) = int("reconnect_delay_sec") {
        r.reconnect_delay_sec = u64::try_from(v?).map_err(|_| RpcError::decode_failed())?;
    }
    if let Some(v) = int("fast_io_fail_timeout_sec") {
        r.fast_io_fail_timeout_sec = u64::try_from(v?).map_err(|_| RpcError::decode_failed())?;
    }
    if !r.is_valid() {
        return Err(RpcError::new(-32602, "Invalid parameters"));
    }
    inner.options.resiliency = r;
    inner.options.raw.extend(raw);
    Ok(json!(true))
}
