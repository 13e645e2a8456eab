//! Base bdevs that hold data themselves: malloc (RAM) and aio (a file), and
//! their JSON-RPC methods.

pub mod aio;
pub mod malloc;
pub mod null;

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::bdev::{Bdev, BdevKind, IoError, IoResult};
use crate::params;
use crate::rpc_error::RpcError;
use crate::sim::Sim;

/// Every key of SPDK's `supported_io_types`, in SPDK's order.
const IO_TYPES: [&str; 21] = [
    "read",
    "write",
    "unmap",
    "flush",
    "reset",
    "nvme_admin",
    "nvme_io",
    "nvme_io_md",
    "write_zeroes",
    "zcopy",
    "get_zone_info",
    "zone_management",
    "zone_append",
    "compare",
    "compare_and_write",
    "abort",
    "seek_hole",
    "seek_data",
    "copy",
    "nvme_iov_md",
    "nvme_nssr",
];

/// A full `supported_io_types` object with `enabled` set to true, the rest false.
pub fn io_types(enabled: &[&str]) -> Value {
    let mut m = serde_json::Map::new();
    for t in IO_TYPES {
        m.insert(t.to_string(), Value::Bool(enabled.contains(&t)));
    }
    Value::Object(m)
}

/// Checks that a byte range is block-aligned and inside a device of `size` bytes.
pub fn check_range(block_size: u32, size: u64, offset: u64, len: u64) -> IoResult<()> {
    let bs = u64::from(block_size);
    if bs == 0 || !offset.is_multiple_of(bs) || !len.is_multiple_of(bs) {
        return Err(IoError::EINVAL);
    }
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(IoError::EINVAL),
    }
}

/// Handles malloc and aio methods; `None` when the method is not one of them.
pub async fn handle(
    sim: &Arc<Sim>,
    method: &str,
    params: Option<&Value>,
) -> Option<Result<Value, RpcError>> {
    Some(match method {
        "bdev_malloc_create" => malloc_create(sim, params),
        "bdev_malloc_delete" => delete(sim, params, BdevKind::Malloc).await,
        "bdev_aio_create" => aio_create(sim, params).await,
        "bdev_aio_delete" => delete(sim, params, BdevKind::Aio).await,
        "bdev_aio_rescan" => aio_rescan(sim, params),
        "bdev_null_create" => null_create(sim, params),
        "bdev_null_delete" => delete(sim, params, BdevKind::Null).await,
        _ => return None,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct MallocCreate {
    name: Option<String>,
    num_blocks: u64,
    block_size: u32,
    physical_block_size: Option<u32>,
    uuid: Option<String>,
    optimal_io_boundary: Option<u32>,
    md_size: Option<u32>,
    md_interleave: Option<bool>,
    dif_type: Option<u32>,
    dif_is_head_of_md: Option<bool>,
    dif_pi_format: Option<u32>,
    numa_id: Option<i32>,
}

fn parse_uuid(s: Option<&str>) -> Result<Option<Uuid>, RpcError> {
    s.map(|u| Uuid::parse_str(u).map_err(|_| RpcError::decode_failed()))
        .transpose()
}

fn malloc_create(sim: &Arc<Sim>, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: MallocCreate = params::required(params)?;
    let uuid = parse_uuid(p.uuid.as_deref())?;
    if p.block_size == 0 || !p.block_size.is_multiple_of(512) || p.num_blocks == 0 {
        return Err(RpcError::invalid_argument());
    }
    let mut reg = sim.bdevs.lock().map_err(|_| RpcError::errno(-5))?;
    let name = match p.name {
        Some(n) => n,
        None => (0..)
            .map(|i| format!("Malloc{i}"))
            .find(|n| reg.lookup(n).is_none())
            .unwrap_or_default(),
    };
    let bdev = malloc::MallocBdev::new(
        name.clone(),
        uuid.unwrap_or_else(Uuid::new_v4),
        p.block_size,
        p.num_blocks,
    );
    reg.register(Arc::new(bdev))?;
    tracing::info!(%name, "malloc bdev created");
    Ok(json!(name))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct NullCreate {
    name: String,
    num_blocks: u64,
    block_size: u32,
    uuid: Option<String>,
    physical_block_size: Option<u32>,
    md_size: Option<u32>,
    dif_type: Option<i32>,
    dif_is_head_of_md: Option<bool>,
    dif_pi_format: Option<u32>,
    preferred_write_alignment: Option<u32>,
    preferred_write_granularity: Option<u32>,
    optimal_write_size: Option<u32>,
    preferred_unmap_alignment: Option<u32>,
    preferred_unmap_granularity: Option<u32>,
}

/// `bdev_null_create`, with SPDK's checks: a block size that is a multiple
/// of 512, a physical block size too, at least one block, metadata of 0 to
/// 128 bytes; -17 for a name in use.
fn null_create(sim: &Arc<Sim>, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: NullCreate = params::required(params)?;
    let uuid = parse_uuid(p.uuid.as_deref())?;
    let md_ok = matches!(p.md_size.unwrap_or(0), 0 | 8 | 16 | 32 | 64 | 128);
    if !md_ok
        || !p.block_size.is_multiple_of(512)
        || !p.physical_block_size.unwrap_or(0).is_multiple_of(512)
        || p.num_blocks == 0
    {
        return Err(RpcError::invalid_argument());
    }
    let bdev = null::NullBdev::new(
        p.name.clone(),
        uuid.unwrap_or_else(Uuid::new_v4),
        p.block_size,
        p.num_blocks,
    );
    sim.bdevs
        .lock()
        .map_err(|_| RpcError::errno(-5))?
        .register(Arc::new(bdev))?;
    tracing::info!(name = %p.name, "null bdev created");
    Ok(json!(p.name))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AioCreate {
    name: String,
    filename: String,
    block_size: Option<u32>,
    readonly: Option<bool>,
    fallocate: Option<bool>,
    uuid: Option<String>,
}

async fn aio_create(sim: &Arc<Sim>, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: AioCreate = params::required(params)?;
    let uuid = parse_uuid(p.uuid.as_deref())?;
    if let Some(bs) = p.block_size {
        if bs == 0 || !bs.is_multiple_of(512) {
            return Err(RpcError::invalid_argument());
        }
    }
    if sim
        .bdevs
        .lock()
        .map_err(|_| RpcError::errno(-5))?
        .lookup(&p.name)
        .is_some()
    {
        return Err(RpcError::exists());
    }
    let bdev = Arc::new(
        aio::AioBdev::open(aio::AioOptions {
            name: p.name.clone(),
            filename: p.filename,
            block_size: p.block_size,
            readonly: p.readonly.unwrap_or(false),
            fallocate: p.fallocate.unwrap_or(false),
            uuid,
        })
        .map_err(RpcError::errno)?,
    );
    sim.bdevs
        .lock()
        .map_err(|_| RpcError::errno(-5))?
        .register(bdev.clone())?;
    remember_aio(sim, &bdev);
    tracing::info!(name = %p.name, "aio bdev created");
    crate::lvol::examine(sim, &p.name).await;
    crate::raid::examine(sim, &p.name).await;
    Ok(json!(p.name))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ByName {
    name: String,
}

async fn delete(sim: &Arc<Sim>, params: Option<&Value>, kind: BdevKind) -> Result<Value, RpcError> {
    let p: ByName = params::required(params)?;
    let found = {
        let reg = sim.bdevs.lock().map_err(|_| RpcError::errno(-5))?;
        reg.lookup(&p.name)
            .filter(|e| e.bdev.kind() == kind)
            .map(|e| (e.bdev.name(), e.claimed_by.clone()))
    };
    let (name, claimed_by) = found.ok_or_else(RpcError::no_such_device)?;
    match claimed_by.as_deref() {
        Some("lvol") => crate::lvol::base_removed(sim, &name).await,
        // A hot remove: the raid empties that slot and goes on degraded.
        Some("raid") => crate::raid::base_bdev_removed(sim, &name),
        _ => {}
    }
    sim.bdevs
        .lock()
        .map_err(|_| RpcError::errno(-5))?
        .unregister(&name);
    if let Ok(mut m) = sim.aio_files.lock() {
        m.remove(&name);
    }
    tracing::info!(%name, "base bdev deleted");
    Ok(json!(true))
}

fn aio_rescan(sim: &Arc<Sim>, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: ByName = params::required(params)?;
    let reg = sim.bdevs.lock().map_err(|_| RpcError::errno(-5))?;
    let entry = reg
        .lookup(&p.name)
        .filter(|e| e.bdev.kind() == BdevKind::Aio)
        .ok_or_else(RpcError::no_such_device)?;
    let name = entry.bdev.name();
    drop(reg);
    let aio = sim
        .aio_files
        .lock()
        .map_err(|_| RpcError::errno(-5))?
        .get(&name)
        .cloned()
        .ok_or_else(RpcError::no_such_device)?;
    aio.rescan().map_err(RpcError::errno)?;
    Ok(json!(true))
}

/// Keeps a typed handle on an aio bdev so `bdev_aio_rescan` can reach it.
pub fn remember_aio(sim: &Sim, bdev: &Arc<aio::AioBdev>) {
    if let Ok(mut m) = sim.aio_files.lock() {
        m.insert(bdev.name(), bdev.clone());
    }
}
