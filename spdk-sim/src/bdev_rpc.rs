//! Generic bdev methods: `bdev_get_bdevs`, `bdev_get_iostat` and the
//! latency histograms (`bdev_enable_histogram`, `bdev_get_histogram`; see
//! [`crate::histogram`]).

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::bdev::{BdevEntry, BdevKind, IoStat};
use crate::params;
use crate::rpc_error::RpcError;
use crate::sim::Sim;

/// The sim's tick rate: one tick per nanosecond.
pub const TICK_RATE: u64 = 1_000_000_000;

/// Handles generic bdev methods; `None` when the method is not one of them.
pub async fn handle(
    sim: &Arc<Sim>,
    method: &str,
    params: Option<&Value>,
) -> Option<Result<Value, RpcError>> {
    Some(match method {
        "bdev_get_bdevs" => get_bdevs(sim, params).await,
        "bdev_get_iostat" => get_iostat(sim, params),
        "bdev_enable_histogram" => enable_histogram(sim, params),
        "bdev_get_histogram" => get_histogram(sim, params),
        _ => return None,
    })
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct GetBdevs {
    name: Option<String>,
    timeout: Option<u64>,
}

async fn get_bdevs(sim: &Arc<Sim>, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: GetBdevs = params::optional(params)?;
    let Some(name) = p.name else {
        let reg = sim.bdevs.lock().map_err(|_| RpcError::errno(-5))?;
        return Ok(Value::Array(reg.iter().map(describe).collect()));
    };
    let deadline = tokio::time::Instant::now() + Duration::from_millis(p.timeout.unwrap_or(0));
    loop {
        {
            let reg = sim.bdevs.lock().map_err(|_| RpcError::errno(-5))?;
            if let Some(e) = reg.lookup(&name) {
                return Ok(json!([describe(e)]));
            }
        }
        if p.timeout.is_none() {
            return Err(RpcError::no_such_device());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(RpcError::errno(-110));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One `bdev_get_bdevs` entry, with every member spdk_tgt v25.09 reports.
pub fn describe(e: &BdevEntry) -> Value {
    let b = &e.bdev;
    let mut m = Map::new();
    m.insert("name".into(), json!(b.name()));
    m.insert("aliases".into(), json!(b.aliases()));
    m.insert("product_name".into(), json!(b.product_name()));
    m.insert("block_size".into(), json!(b.block_size()));
    m.insert("num_blocks".into(), json!(b.num_blocks()));
    for k in [
        "preferred_write_alignment",
        "preferred_write_granularity",
        "optimal_write_size",
        "preferred_unmap_alignment",
        "preferred_unmap_granularity",
    ] {
        m.insert(k.into(), json!(0));
    }
    m.insert("uuid".into(), json!(b.uuid().to_string()));
    m.insert(
        "assigned_rate_limits".into(),
        json!({"rw_ios_per_sec": 0, "rw_mbytes_per_sec": 0, "r_mbytes_per_sec": 0, "w_mbytes_per_sec": 0}),
    );
    m.insert("claimed".into(), json!(e.claimed_by.is_some()));
    if let Some(t) = e.claim_type() {
        m.insert("claim_type".into(), json!(t));
    }
    m.insert("zoned".into(), json!(false));
    m.insert("supported_io_types".into(), b.supported_io_types());
    for (k, v) in b.extra_info() {
        m.insert(k, v);
    }
    m.insert("driver_specific".into(), b.driver_specific());
    Value::Object(m)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct GetIostat {
    name: Option<String>,
    per_channel: Option<bool>,
}

fn stat_members(s: &IoStat, m: &mut Map<String, Value>) {
    let pairs: [(&str, u64); 20] = [
        ("bytes_read", s.bytes_read),
        ("num_read_ops", s.num_read_ops),
        ("bytes_written", s.bytes_written),
        ("num_write_ops", s.num_write_ops),
        ("bytes_unmapped", s.bytes_unmapped),
        ("num_unmap_ops", s.num_unmap_ops),
        ("bytes_copied", 0),
        ("num_copy_ops", 0),
        ("read_latency_ticks", s.read_latency_ticks),
        ("max_read_latency_ticks", s.max_read_latency_ticks),
        ("min_read_latency_ticks", s.min_read_latency_ticks),
        ("write_latency_ticks", s.write_latency_ticks),
        ("max_write_latency_ticks", s.max_write_latency_ticks),
        ("min_write_latency_ticks", s.min_write_latency_ticks),
        ("unmap_latency_ticks", s.unmap_latency_ticks),
        ("max_unmap_latency_ticks", s.max_unmap_latency_ticks),
        ("min_unmap_latency_ticks", s.min_unmap_latency_ticks),
        ("copy_latency_ticks", 0),
        ("max_copy_latency_ticks", 0),
        ("min_copy_latency_ticks", 0),
    ];
    for (k, v) in pairs {
        m.insert(k.into(), json!(v));
    }
}

fn iostat_entry(e: &BdevEntry) -> Value {
    let stats = e.stats.lock().map(|s| s.clone()).unwrap_or_default();
    let mut m = Map::new();
    m.insert("name".into(), json!(e.bdev.name()));
    stat_members(&stats, &mut m);
    // spdk_tgt lists only the error kinds that happened: `{}`, `{"failed": 3}`.
    let errors = if stats.failed_ops > 0 {
        json!({ "failed": stats.failed_ops })
    } else {
        json!({})
    };
    m.insert("io_error".into(), errors);
    if e.bdev.kind() == BdevKind::Nvme {
        m.insert("driver_specific".into(), json!({}));
    }
    Value::Object(m)
}

fn get_iostat(sim: &Arc<Sim>, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: GetIostat = params::optional(params)?;
    let ticks = u64::try_from(sim.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let reg = sim.bdevs.lock().map_err(|_| RpcError::errno(-5))?;
    let entries: Vec<&BdevEntry> = match &p.name {
        Some(n) => vec![reg.lookup(n).ok_or_else(RpcError::no_such_device)?],
        None => reg.iter().collect(),
    };
    if p.per_channel.unwrap_or(false) {
        let Some(e) = entries.first() else {
            return Err(RpcError::no_such_device());
        };
        let stats = e.stats.lock().map(|s| s.clone()).unwrap_or_default();
        let mut ch = Map::new();
        ch.insert("thread_id".into(), json!(2));
        stat_members(&stats, &mut ch);
        return Ok(json!({
            "tick_rate": TICK_RATE, "ticks": ticks,
            "name": e.bdev.name(), "channels": [Value::Object(ch)]
        }));
    }
    let bdevs: Vec<Value> = entries.into_iter().map(iostat_entry).collect();
    Ok(json!({"tick_rate": TICK_RATE, "ticks": ticks, "bdevs": bdevs}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnableHistogram {
    name: String,
    enable: bool,
    opc: Option<String>,
    granularity: Option<u8>,
    min_nsec: Option<u64>,
    max_nsec: Option<u64>,
}

/// The histogram of bdev `name`; -19 "No such device" as `spdk_bdev_open_ext` fails.
fn histogram_of(
    sim: &Arc<Sim>,
    name: &str,
) -> Result<Arc<std::sync::Mutex<crate::histogram::Histogram>>, RpcError> {
    let reg = sim.bdevs.lock().map_err(|_| RpcError::errno(-5))?;
    reg.lookup(name)
        .map(|e| e.histogram.clone())
        .ok_or_else(RpcError::no_such_device)
}

fn enable_histogram(sim: &Arc<Sim>, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: EnableHistogram = params::required(params)?;
    let histogram = histogram_of(sim, &p.name)?;
    let mut h = histogram.lock().map_err(|_| RpcError::errno(-5))?;
    h.enable(p.enable, p.opc, p.granularity, p.min_nsec, p.max_nsec)?;
    Ok(json!(true))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GetHistogram {
    name: String,
}

fn get_histogram(sim: &Arc<Sim>, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: GetHistogram = params::required(params)?;
    let histogram = histogram_of(sim, &p.name)?;
    let h = histogram.lock().map_err(|_| RpcError::errno(-5))?;
    h.get()
}
