//! The `ublk_*` JSON-RPC methods.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};

use super::StartedDisk;
use crate::nvmf::lock;
use crate::nvmf::params::decode;
use crate::rpc_error::RpcError;
use crate::sim::Sim;

/// Routes one `ublk_*` method.
pub async fn handle(
    sim: &Arc<Sim>,
    method: &str,
    params: Option<&Value>,
) -> Option<Result<Value, RpcError>> {
    let r = match method {
        "ublk_create_target" => create_target(sim, params),
        "ublk_destroy_target" => destroy_target(sim).await,
        "ublk_start_disk" => start_disk(sim, params).await,
        "ublk_stop_disk" => stop_disk(sim, params).await,
        "ublk_get_disks" => get_disks(sim, params),
        _ => return None,
    };
    Some(r)
}

#[derive(Deserialize)]
struct CreateTargetParams {
    #[serde(default)]
    #[allow(dead_code)]
    cpumask: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    disable_user_copy: Option<bool>,
}

fn create_target(sim: &Sim, params: Option<&Value>) -> Result<Value, RpcError> {
    let _p: CreateTargetParams = decode(params)?;
    let mut inner = lock(&sim.ublk.inner);
    if inner.target {
        return Err(RpcError::new(-32603, crate::rpc_error::strerror(16)));
    }
    inner.target = true;
    Ok(json!(true))
}

async fn destroy_target(sim: &Sim) -> Result<Value, RpcError> {
    let disks = {
        let mut inner = lock(&sim.ublk.inner);
        if !inner.target {
            return Err(RpcError::new(-32603, crate::rpc_error::strerror(2)));
        }
        inner.target = false;
        std::mem::take(&mut inner.disks)
    };
    let running: Vec<StartedDisk> = disks.into_values().flatten().collect();
    if !running.is_empty() {
        let _ =
            tokio::task::spawn_blocking(move || running.into_iter().for_each(StartedDisk::stop))
                .await;
    }
    Ok(json!(true))
}

#[derive(Deserialize)]
struct StartParams {
    bdev_name: String,
    ublk_id: u32,
    #[serde(default = "one")]
    num_queues: u32,
    #[serde(default = "default_depth")]
    queue_depth: u32,
}

fn one() -> u32 {
    1
}

fn default_depth() -> u32 {
    128
}

async fn start_disk(sim: &Sim, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: StartParams = decode(params)?;
    if p.num_queues == 0 || p.queue_depth == 0 {
        return Err(RpcError::invalid_argument());
    }
    {
        let mut inner = lock(&sim.ublk.inner);
        if !inner.target {
            return Err(RpcError::no_such_device());
        }
        if inner.disks.contains_key(&p.ublk_id) {
            return Err(RpcError::exists());
        }
        inner.disks.insert(p.ublk_id, None);
    }
    let bdev = lock(&sim.bdevs)
        .lookup(&p.bdev_name)
        .map(|e| e.bdev.clone());
    let Some(bdev) = bdev else {
        lock(&sim.ublk.inner).disks.remove(&p.ublk_id);
        return Err(RpcError::no_such_device());
    };
    let data_dir = sim.config.data_dir.clone();
    let rt = tokio::runtime::Handle::current();
    let (id, name, nq, qd) = (p.ublk_id, p.bdev_name.clone(), p.num_queues, p.queue_depth);
    let started = tokio::task::spawn_blocking(move || {
        StartedDisk::start(&data_dir, id, name, bdev, nq, qd, rt)
    })
    .await
    .map_err(|_| RpcError::new(-5, "Input/output error"))
    .and_then(|r| {
        r.map_err(|e| {
            tracing::warn!(id, error = %e, "ublk disk start failed");
            RpcError::new(-32603, e.to_string())
        })
    });
    let mut inner = lock(&sim.ublk.inner);
    match started {
        Ok(disk) => {
            inner.disks.insert(p.ublk_id, Some(disk));
            Ok(json!(p.ublk_id))
        }
        Err(e) => {
            inner.disks.remove(&p.ublk_id);
            Err(e)
        }
    }
}

#[derive(Deserialize)]
struct IdParams {
    ublk_id: u32,
}

async fn stop_disk(sim: &Sim, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: IdParams = decode(params)?;
    let disk = {
        let mut inner = lock(&sim.ublk.inner);
        match inner.disks.get_mut(&p.ublk_id) {
            Some(slot @ Some(_)) => slot.take(),
            _ => return Err(RpcError::no_such_device()),
        }
    };
    if let Some(disk) = disk {
        let _ = tokio::task::spawn_blocking(move || disk.stop()).await;
    }
    lock(&sim.ublk.inner).disks.remove(&p.ublk_id);
    Ok(json!(true))
}

#[derive(Deserialize, Default)]
struct GetParams {
    ublk_id: Option<u32>,
}

fn get_disks(sim: &Sim, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: GetParams = decode(params)?;
    let inner = lock(&sim.ublk.inner);
    let list: Vec<Value> = inner
        .disks
        .values()
        .flatten()
        .filter(|d| p.ublk_id.is_none_or(|id| id == d.id()))
        .map(StartedDisk::info)
        .collect();
    if p.ublk_id.is_some() && list.is_empty() {
        return Err(RpcError::no_such_device());
    }
    Ok(Value::Array(list))
}
