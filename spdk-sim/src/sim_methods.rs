//! Sim-only methods (names start with `sim_`) that let tests do raw I/O on
//! any bdev and inject I/O errors. Not part of SPDK's surface.
//!
//! - `sim_bdev_write {name, offset, data}`: writes base64 `data` at byte `offset`; returns true.
//! - `sim_bdev_read {name, offset, length}`: returns `{"data": <base64>}`.
//! - `sim_bdev_flush {name}`: flushes; returns true.
//! - `sim_fail_bdev {name, errno?, enable?}`: while enabled, every I/O on the bdev fails
//!   with `errno` (a negated errno, default -5); `enable: false` clears it.
//! - `sim_set_copy_pace {cluster_delay_ms}`: every shallow copy waits this
//!   long before each cluster it copies (real copies take time; tests that
//!   act mid-copy need one that lasts); 0 clears it. Returns true.
//!
//! Offsets and lengths are bytes and must be multiples of the block size.
//! I/O errors answer with the negated errno as code and its strerror text.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::bdev::{Bdev, IoError};
use crate::params;
use crate::rpc_error::RpcError;
use crate::sim::Sim;

/// Handles `sim_*` methods; `None` when the method is not one of them.
pub async fn handle(
    sim: &Arc<Sim>,
    method: &str,
    params: Option<&Value>,
) -> Option<Result<Value, RpcError>> {
    Some(match method {
        "sim_bdev_write" => write(sim, params).await,
        "sim_bdev_read" => read(sim, params).await,
        "sim_bdev_flush" => flush(sim, params).await,
        "sim_fail_bdev" => fail(sim, params),
        "sim_set_copy_pace" => copy_pace(sim, params),
        _ => return None,
    })
}

fn io_err(e: IoError) -> RpcError {
    RpcError::errno(e.0)
}

fn bdev(sim: &Sim, name: &str) -> Result<Arc<dyn Bdev>, RpcError> {
    sim.bdevs
        .lock()
        .map_err(|_| RpcError::errno(-5))?
        .lookup(name)
        .map(|e| e.bdev.clone())
        .ok_or_else(RpcError::no_such_device)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Write {
    name: String,
    offset: u64,
    data: String,
}

async fn write(sim: &Arc<Sim>, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: Write = params::required(params)?;
    let data = base64::engine::general_purpose::STANDARD
        .decode(p.data.as_bytes())
        .map_err(|_| RpcError::decode_failed())?;
    bdev(sim, &p.name)?
        .write(p.offset, &data)
        .await
        .map_err(io_err)?;
    Ok(json!(true))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Read {
    name: String,
    offset: u64,
    length: u64,
}

async fn read(sim: &Arc<Sim>, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: Read = params::required(params)?;
    let data = bdev(sim, &p.name)?
        .read(p.offset, p.length)
        .await
        .map_err(io_err)?;
    Ok(json!({"data": base64::engine::general_purpose::STANDARD.encode(data)}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ByName {
    name: String,
}

async fn flush(sim: &Arc<Sim>, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: ByName = params::required(params)?;
    bdev(sim, &p.name)?.flush().await.map_err(io_err)?;
    Ok(json!(true))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fail {
    name: String,
    errno: Option<i32>,
    enable: Option<bool>,
}

fn fail(sim: &Arc<Sim>, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: Fail = params::required(params)?;
    let errno = p.errno.unwrap_or(-5);
    if errno >= 0 {
        return Err(RpcError::invalid_argument());
    }
    let reg = sim.bdevs.lock().map_err(|_| RpcError::errno(-5))?;
    let e = reg.lookup(&p.name).ok_or_else(RpcError::no_such_device)?;
    let v = if p.enable.unwrap_or(true) { errno } else { 0 };
    e.fault.store(v, Ordering::SeqCst);
    Ok(json!(true))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CopyPace {
    cluster_delay_ms: u64,
}

fn copy_pace(sim: &Arc<Sim>, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: CopyPace = params::required(params)?;
    sim.lvol
        .copy_cluster_delay_ms
        .store(p.cluster_delay_ms, Ordering::SeqCst);
    Ok(json!(true))
}
