//! JSON-RPC handlers of the lvol module: parameter decoding, lookups and
//! result shapes as spdk_tgt v25.09 has them.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};

use super::{copy, find_lvol, ops, Lvs};
use crate::params;
use crate::rpc_error::RpcError;
use crate::sim::Sim;

/// Handles lvol methods; `None` when the method is not one of them.
pub async fn handle(
    sim: &Arc<Sim>,
    method: &str,
    params: Option<&Value>,
) -> Option<Result<Value, RpcError>> {
    Some(match method {
        "bdev_lvol_create_lvstore" => create_lvstore(sim, params).await,
        "bdev_lvol_delete_lvstore" => delete_lvstore(sim, params).await,
        "bdev_lvol_get_lvstores" => get_lvstores(sim, params),
        "bdev_lvol_rename_lvstore" => rename_lvstore(sim, params).await,
        "bdev_lvol_grow_lvstore" => grow_lvstore(sim, params).await,
        "bdev_lvol_create" => create(sim, params).await,
        "bdev_lvol_delete" => delete(sim, params).await,
        "bdev_lvol_get_lvols" => get_lvols(sim, params),
        "bdev_lvol_resize" => resize(sim, params).await,
        "bdev_lvol_rename" => rename(sim, params).await,
        "bdev_lvol_snapshot" => snapshot(sim, params).await,
        "bdev_lvol_clone" => clone(sim, params).await,
        "bdev_lvol_clone_bdev" => clone_bdev(sim, params).await,
        "bdev_lvol_inflate" => by_name_op(sim, params, Op::Inflate).await,
        "bdev_lvol_decouple_parent" => by_name_op(sim, params, Op::Decouple).await,
        "bdev_lvol_set_read_only" => by_name_op(sim, params, Op::ReadOnly).await,
        "bdev_lvol_set_parent" => set_parent(sim, params, false).await,
        "bdev_lvol_set_parent_bdev" => set_parent(sim, params, true).await,
        "bdev_lvol_start_shallow_copy" => start_shallow_copy(sim, params),
        "bdev_lvol_check_shallow_copy" => check_shallow_copy(sim, params),
        _ => return None,
    })
}

fn lvol(sim: &Sim, name: &str) -> Result<(Arc<Lvs>, u64), RpcError> {
    find_lvol(sim, name).ok_or_else(RpcError::no_such_device)
}

fn ok() -> Result<Value, RpcError> {
    Ok(json!(true))
}

fn check_clear_method(m: Option<&str>, msg: &str) -> Result<(), RpcError> {
    match m.map(str::to_ascii_lowercase).as_deref() {
        None | Some("none" | "unmap" | "write_zeroes") => Ok(()),
        Some(_) => Err(RpcError::new(-22, msg)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct CreateLvstore {
    bdev_name: String,
    lvs_name: String,
    cluster_sz: Option<u32>,
    clear_method: Option<String>,
    num_md_pages_per_cluster_ratio: Option<u32>,
    md_page_size: Option<u32>,
}

async fn create_lvstore(sim: &Arc<Sim>, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: CreateLvstore = params::required(params)?;
    check_clear_method(p.clear_method.as_deref(), "Invalid clear_method parameter")?;
    let uuid = ops::create_lvstore(
        sim,
        &p.bdev_name,
        &p.lvs_name,
        u64::from(p.cluster_sz.unwrap_or(0)),
    )
    .await?;
    Ok(json!(uuid.to_string()))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LvsRef {
    uuid: Option<String>,
    lvs_name: Option<String>,
}

async fn delete_lvstore(sim: &Arc<Sim>, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: LvsRef = params::required(params)?;
    let lvs = sim
        .lvol
        .by_uuid_xor_name(p.uuid.as_deref(), p.lvs_name.as_deref())?;
    ops::delete_lvstore(sim, &lvs).await?;
    ok()
}

fn lvstore_json(l: &Lvs) -> Option<Value> {
    l.with_meta(|m| {
        json!({
            "uuid": m.uuid.to_string(),
            "name": m.name,
            "base_bdev": l.base_name,
            "total_data_clusters": m.data_clusters(),
            "free_clusters": m.free_clusters(),
            "block_size": l.base.block_size(),
            "cluster_size": m.cluster_size,
        })
    })
    .ok()
}

fn get_lvstores(sim: &Arc<Sim>, params: Option<&Value>) -> Result<Value, RpcError> {
    let stores = match params {
        None | Some(Value::Null) => sim.lvol.all(),
        Some(_) => {
            let p: LvsRef = params::required(params)?;
            vec![sim
                .lvol
                .by_uuid_xor_name(p.uuid.as_deref(), p.lvs_name.as_deref())?]
        }
    };
    Ok(Value::Array(
        stores.iter().filter_map(|l| lvstore_json(l)).collect(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RenameLvstore {
    old_name: String,
    new_name: String,
}

async fn rename_lvstore(sim: &Arc<Sim>, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: RenameLvstore = params::required(params)?;
    ops::rename_lvstore(sim, &p.old_name, &p.new_name).await?;
    ok()
}

async fn grow_lvstore(sim: &Arc<Sim>, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: LvsRef = params::required(params)?;
    let lvs = sim
        .lvol
        .by_uuid_xor_name(p.uuid.as_deref(), p.lvs_name.as_deref())?;
    ops::grow_lvstore(&lvs).await?;
    ok()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Create {
    uuid: Option<String>,
    lvs_name: Option<String>,
    lvol_name: String,
    size_in_mib: u64,
    thin_provision: Option<bool>,
    clear_method: Option<String>,
}

async fn create(sim: &Arc<Sim>, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: Create = params::required(params)?;
    let lvs = sim
        .lvol
        .by_uuid_xor_name(p.uuid.as_deref(), p.lvs_name.as_deref())?;
    check_clear_method(p.clear_method.as_deref(), "Invalid clean_method option")?;
    let size = p
        .size_in_mib
        .checked_mul(1 << 20)
        .ok_or_else(RpcError::invalid_argument)?;
    let uuid = ops::create_lvol(
        sim,
        &lvs,
        &p.lvol_name,
        size,
        p.thin_provision.unwrap_or(false),
    )
    .await?;
    Ok(json!(uuid.to_string()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ByName {
    name: String,
}

async fn delete(sim: &Arc<Sim>, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: ByName = params::required(params)?;
    let (lvs, id) = lvol(sim, &p.name)?;
    ops::delete_lvol(sim, &lvs, id).await?;
    ok()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct GetLvols {
    lvs_uuid: Option<String>,
    lvs_name: Option<String>,
}

fn get_lvols(sim: &Arc<Sim>, params: Option<&Value>) -> Result<Value, RpcError> {
    let stores = match params {
        None | Some(Value::Null) => sim.lvol.all(),
        Some(_) => {
            let p: GetLvols = params::required(params)?;
            vec![sim
                .lvol
                .by_uuid_xor_name(p.lvs_uuid.as_deref(), p.lvs_name.as_deref())?]
        }
    };
    let mut out = Vec::new();
    for l in stores {
        let entries = l
            .with_meta(|m| {
                m.blobs
                    .iter()
                    .map(|b| {
                        json!({
                            "alias": format!("{}/{}", m.name, b.name),
                            "uuid": b.uuid.to_string(),
                            "name": b.name,
                            "is_thin_provisioned": b.thin,
                            "is_snapshot": b.snapshot,
                            "is_clone": matches!(b.parent, super::meta::Parent::Snapshot(_)),
                            "is_esnap_clone": matches!(b.parent, super::meta::Parent::External(_)),
                            "is_degraded": false,
                            "num_allocated_clusters": b.allocated(),
                            "lvs": {"name": m.name, "uuid": m.uuid.to_string()},
                        })
                    })
                    .collect::<Vec<_>>()
            })
            .map_err(|_| RpcError::errno(-5))?;
        out.extend(entries);
    }
    Ok(Value::Array(out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Resize {
    name: String,
    size_in_mib: u64,
}

async fn resize(sim: &Arc<Sim>, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: Resize = params::required(params)?;
    let (lvs, id) = lvol(sim, &p.name)?;
    let size = p
        .size_in_mib
        .checked_mul(1 << 20)
        .ok_or_else(RpcError::invalid_argument)?;
    ops::resize(&lvs, id, size).await?;
    ok()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rename {
    old_name: String,
    new_name: String,
}

async fn rename(sim: &Arc<Sim>, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: Rename = params::required(params)?;
    let (lvs, id) = lvol(sim, &p.old_name)?;
    ops::rename_lvol(&lvs, id, &p.new_name).await?;
    ok()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Snapshot {
    lvol_name: String,
    snapshot_name: String,
}

async fn snapshot(sim: &Arc<Sim>, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: Snapshot = params::required(params)?;
    let (lvs, id) = lvol(sim, &p.lvol_name)?;
    let uuid = ops::snapshot(sim, &lvs, id, &p.snapshot_name).await?;
    Ok(json!(uuid.to_string()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Clone {
    snapshot_name: String,
    clone_name: String,
}

async fn clone(sim: &Arc<Sim>, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: Clone = params::required(params)?;
    let (lvs, id) = lvol(sim, &p.snapshot_name)?;
    let uuid = ops::clone(sim, &lvs, id, &p.clone_name).await?;
    Ok(json!(uuid.to_string()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CloneBdev {
    bdev: String,
    lvs_name: String,
    clone_name: String,
}

async fn clone_bdev(sim: &Arc<Sim>, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: CloneBdev = params::required(params)?;
    let (ext_uuid, ext_size) = {
        let reg = sim.bdevs.lock().map_err(|_| RpcError::errno(-5))?;
        let e = reg.lookup(&p.bdev).ok_or_else(RpcError::no_such_device)?;
        (e.bdev.uuid(), e.bdev.size_bytes())
    };
    let lvs = sim
        .lvol
        .by_name(&p.lvs_name)
        .ok_or_else(RpcError::no_such_device)?;
    let uuid = ops::clone_bdev(sim, &lvs, ext_uuid, ext_size, &p.clone_name).await?;
    Ok(json!(uuid.to_string()))
}

enum Op {
    Inflate,
    Decouple,
    ReadOnly,
}

async fn by_name_op(sim: &Arc<Sim>, params: Option<&Value>, op: Op) -> Result<Value, RpcError> {
    let p: ByName = params::required(params)?;
    let (lvs, id) = lvol(sim, &p.name)?;
    match op {
        Op::Inflate => ops::inflate(&lvs, id).await?,
        Op::Decouple => ops::decouple(&lvs, id).await?,
        Op::ReadOnly => ops::set_read_only(&lvs, id).await?,
    }
    ok()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetParent {
    lvol_name: String,
    parent_name: String,
}

async fn set_parent(
    sim: &Arc<Sim>,
    params: Option<&Value>,
    external: bool,
) -> Result<Value, RpcError> {
    let p: SetParent = params::required(params)?;
    let (lvs, id) = lvol(sim, &p.lvol_name)?;
    if external {
        let (ext, extra) = sim
            .bdevs
            .lock()
            .map_err(|_| RpcError::errno(-5))?
            .lookup(&p.parent_name)
            .map(|e| (e.bdev.uuid(), e.bdev.extra_info()))
            .ok_or_else(RpcError::no_such_device)?;
        ops::set_parent_bdev(&lvs, id, ext).await?;
        lvs.note_external(&ext.to_string(), &extra);
    } else {
        let (plvs, pid) = lvol(sim, &p.parent_name)?;
        if !Arc::ptr_eq(&plvs, &lvs) {
            return Err(RpcError::new(-32602, crate::rpc_error::strerror(22)));
        }
        ops::set_parent(&lvs, id, pid).await?;
    }
    ok()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartCopy {
    src_lvol_name: String,
    dst_bdev_name: String,
}

fn start_shallow_copy(sim: &Arc<Sim>, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: StartCopy = params::required(params)?;
    let op = copy::start(sim, &p.src_lvol_name, &p.dst_bdev_name)?;
    Ok(json!({"operation_id": op}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckCopy {
    operation_id: u32,
}

fn check_shallow_copy(sim: &Arc<Sim>, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: CheckCopy = params::required(params)?;
    copy::check(sim, p.operation_id)
}
