//! The `bdev_raid_*` JSON-RPC methods.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::bdev::RaidBdev;
use super::volume::{Process, Raid, RunState, CLAIM_MODULE};
use crate::bdev::Bdev;
use crate::nvmf::lock;
use crate::nvmf::params::decode;
use crate::rpc_error::RpcError;
use crate::sim::Sim;

/// How often a configuring raid looks for its missing base bdevs.
const DISCOVERY_POLL: Duration = Duration::from_millis(100);

/// Routes one `bdev_raid_*` method.
pub async fn handle(
    sim: &Arc<Sim>,
    method: &str,
    params: Option<&Value>,
) -> Option<Result<Value, RpcError>> {
    let r = match method {
        "bdev_raid_create" => create(sim, params).await,
        "bdev_raid_delete" => delete(sim, params),
        "bdev_raid_get_bdevs" => get_bdevs(sim, params),
        "bdev_raid_add_base_bdev" => add_base(sim, params),
        "bdev_raid_remove_base_bdev" => remove_base(sim, params).await,
        "bdev_raid_set_options" => set_options(sim, params),
        _ => return None,
    };
    Some(r)
}

#[derive(Deserialize)]
struct CreateParams {
    name: String,
    raid_level: String,
    base_bdevs: Vec<String>,
    #[serde(default)]
    strip_size_kb: u32,
    #[serde(default)]
    superblock: bool,
    uuid: Option<Uuid>,
}

/// Outcome of looking for one missing base bdev.
enum Found {
    Missing,
    Claimed,
    Taken(Arc<dyn Bdev>),
}

/// Claims `name` for a raid unless any module (this raid included) holds it.
fn try_claim(sim: &Sim, name: &str) -> Found {
    let mut reg = lock(&sim.bdevs);
    match reg.lookup(name) {
        None => Found::Missing,
        Some(e) if e.claimed_by.is_some() => Found::Claimed,
        Some(_) => match reg.claim(name, CLAIM_MODULE) {
            Ok(b) => Found::Taken(b),
            Err(_) => Found::Claimed,
        },
    }
}

/// Claims whatever base bdevs have appeared; configures and registers the
/// raid once all are there. `Err(-1)` if one is claimed by someone else.
async fn discover(sim: &Sim, raid: &Arc<Raid>) -> Result<bool, i32> {
    let missing: Vec<(usize, String)> = {
        let st = lock(&raid.st);
        if st.deleted || st.state != RunState::Configuring {
            return Ok(false);
        }
        st.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.bdev.is_none())
            .filter_map(|(i, s)| Some((i, s.name.clone()?)))
            .collect()
    };
    for (i, name) in missing {
        match try_claim(sim, &name) {
            Found::Missing => {}
            Found::Claimed => return Err(-1),
            Found::Taken(b) => {
                // SPDK configures a member as soon as it claims it: offset
                // and size are its own until the raid comes online.
                let off = raid.data_offset_for(b.as_ref());
                let mut st = lock(&raid.st);
                if let Some(s) = st.slots.get_mut(i) {
                    s.uuid = b.uuid();
                    s.configured = true;
                    s.data_offset = off;
                    s.data_size = b.num_blocks().saturating_sub(off);
                    s.bdev = Some(b);
                }
            }
        }
    }
    if lock(&raid.st).slots.iter().any(|s| s.bdev.is_none()) {
        return Ok(false);
    }
    raid.configure_layout().map_err(|e| e.0)?;
    raid.write_superblocks().await;
    lock(&sim.bdevs)
        .register(Arc::new(RaidBdev(raid.clone())))
        .map_err(|e| e.code)?;
    tracing::info!(raid = %raid.name, "raid online");
    Ok(true)
}

/// Releases every claim a raid holds.
fn release_all(sim: &Sim, raid: &Raid) {
    let names: Vec<String> = {
        let mut st = lock(&raid.st);
        st.slots
            .iter_mut()
            .filter_map(|s| s.bdev.take().map(|b| b.name()))
            .collect()
    };
    let mut reg = lock(&sim.bdevs);
    for n in names {
        reg.release(&n);
    }
}

async fn create(sim: &Arc<Sim>, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: CreateParams = decode(params).map_err(|_| parse_error())?;
    if !matches!(p.raid_level.as_str(), "raid1" | "1") {
        return Err(parse_error());
    }
    let fail = |code: i32| {
        RpcError::new(
            code,
            format!(
                "Failed to create RAID bdev {}: {}",
                p.name,
                crate::rpc_error::strerror(-code)
            ),
        )
    };
    // raid1's `base_bdevs_min` is 2: SPDK refuses fewer at create.
    if p.strip_size_kb != 0 || p.base_bdevs.len() < 2 {
        return Err(fail(-22));
    }
    if lock(&sim.raid.raids).contains_key(&p.name) || lock(&sim.bdevs).lookup(&p.name).is_some() {
        return Err(fail(-17));
    }
    let raid = Arc::new(Raid::new(
        Arc::downgrade(sim),
        p.name.clone(),
        p.base_bdevs.clone(),
        p.superblock,
        p.uuid,
    ));
    lock(&sim.raid.raids).insert(p.name.clone(), raid.clone());
    match discover(sim, &raid).await {
        Ok(true) => {}
        Ok(false) => {
            tokio::spawn(poll_discovery(Arc::downgrade(sim), raid));
        }
        Err(code) => {
            lock(&sim.raid.raids).remove(&p.name);
            lock(&raid.st).deleted = true;
            release_all(sim, &raid);
            return Err(fail(code));
        }
    }
    Ok(json!(true))
}

/// -32700 "spdk_json_decode_object failed", as `bdev_raid_create` answers bad params.
fn parse_error() -> RpcError {
    RpcError::new(-32700, "spdk_json_decode_object failed")
}

async fn poll_discovery(sim: std::sync::Weak<Sim>, raid: Arc<Raid>) {
    loop {
        tokio::time::sleep(DISCOVERY_POLL).await;
        let Some(sim) = sim.upgrade() else { return };
        match discover(&sim, &raid).await {
            Ok(true) => return,
            Ok(false) => {
                let st = lock(&raid.st);
                if st.deleted || st.state != RunState::Configuring {
                    return;
                }
            }
            Err(code) => tracing::warn!(raid = %raid.name, code, "base bdev unavailable"),
        }
    }
}

#[derive(Deserialize)]
struct NameParams {
    name: String,
}

fn delete(sim: &Sim, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: NameParams = decode(params)?;
    let raid = lock(&sim.raid.raids)
        .remove(&p.name)
        .ok_or_else(|| RpcError::new(-19, format!("raid bdev {} not found", p.name)))?;
    let was_registered = {
        let mut st = lock(&raid.st);
        st.deleted = true;
        st.process = None;
        st.state != RunState::Configuring
    };
    if was_registered {
        lock(&sim.bdevs).unregister(&p.name);
    }
    release_all(sim, &raid);
    tracing::info!(raid = %p.name, "raid deleted");
    Ok(json!(true))
}

#[derive(Deserialize)]
struct GetParams {
    category: String,
}

fn get_bdevs(sim: &Sim, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: GetParams = decode(params)?;
    let want = match p.category.as_str() {
        "all" => None,
        "online" => Some(RunState::Online),
        "configuring" => Some(RunState::Configuring),
        "offline" => Some(RunState::Offline),
        _ => return Err(RpcError::invalid_argument()),
    };
    let raids: Vec<Arc<Raid>> = lock(&sim.raid.raids).values().cloned().collect();
    Ok(Value::Array(
        raids
            .iter()
            .filter(|r| want.is_none_or(|w| lock(&r.st).state == w))
            .map(|r| r.to_json(true))
            .collect(),
    ))
}

#[derive(Deserialize)]
struct AddParams {
    raid_bdev: String,
    base_bdev: String,
}

fn add_base(sim: &Sim, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: AddParams = decode(params)?;
    let raid = lock(&sim.raid.raids)
        .get(&p.raid_bdev)
        .cloned()
        .ok_or_else(|| {
            RpcError::new(
                -19,
                format!("raid bdev {} is not found in config", p.raid_bdev),
            )
        })?;
    let fail = |code: i32| {
        RpcError::new(
            code,
            format!(
                "Failed to add base bdev {} to RAID bdev {}: {}",
                p.base_bdev,
                p.raid_bdev,
                crate::rpc_error::strerror(-code)
            ),
        )
    };
    let (slot, bs, need) = {
        let st = lock(&raid.st);
        if st.state != RunState::Online {
            return Err(fail(-22));
        }
        let slot = st
            .slots
            .iter()
            .position(|s| s.name.is_none())
            .ok_or_else(|| fail(-22))?;
        if st.process.is_some() {
            return Err(fail(-16));
        }
        (slot, st.block_size, st.num_blocks)
    };
    let bdev = match try_claim(sim, &p.base_bdev) {
        Found::Missing => return Err(fail(-19)),
        Found::Claimed => return Err(fail(-1)),
        Found::Taken(b) => b,
    };
    let offset_blocks = raid.data_offset_for(bdev.as_ref());
    if bdev.block_size() != bs || bdev.num_blocks() < need + offset_blocks {
        lock(&sim.bdevs).release(&bdev.name());
        return Err(fail(-22));
    }
    let generation = {
        let mut st = lock(&raid.st);
        st.generation += 1;
        let generation = st.generation;
        let data_size = st.num_blocks;
        if let Some(s) = st.slots.get_mut(slot) {
            s.name = Some(p.base_bdev.clone());
            s.uuid = bdev.uuid();
            s.sb_uuid = bdev.uuid();
            s.sb_offset = offset_blocks;
            s.failed = false;
            s.expected = None;
            s.bdev = Some(bdev);
            s.configured = true;
            s.data_offset = offset_blocks;
            s.data_size = data_size;
        }
        st.process = Some(Process {
            slot,
            target: p.base_bdev.clone(),
            blocks: 0,
            generation,
        });
        generation
    };
    tokio::spawn(super::rebuild::run(raid, generation));
    Ok(json!(true))
}

async fn remove_base(sim: &Sim, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: NameParams = decode(params)?;
    let not_found = || RpcError::new(-19, "Failed to remove base bdev from raid bdev");
    let key = lock(&sim.bdevs)
        .lookup(&p.name)
        .map(|e| e.bdev.name())
        .ok_or_else(not_found)?;
    let raids: Vec<Arc<Raid>> = lock(&sim.raid.raids).values().cloned().collect();
    for raid in raids {
        let released = {
            let mut st = lock(&raid.st);
            let slot = st
                .slots
                .iter()
                .position(|s| s.bdev.as_ref().is_some_and(|b| b.name() == key));
            slot.and_then(|i| Raid::empty_slot(&mut st, i))
        };
        if let Some(name) = released {
            lock(&sim.bdevs).release(&name);
            tracing::info!(raid = %raid.name, base = %name, "base bdev removed by request");
            // SPDK records the removal in the remaining members' superblock
            // before it answers.
            raid.write_superblocks().await;
            return Ok(json!(true));
        }
    }
    Err(not_found())
}

#[derive(Deserialize)]
struct OptionsParams {
    process_window_size_kb: Option<u64>,
    process_max_bandwidth_mb_sec: Option<u64>,
}

fn set_options(sim: &Sim, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: OptionsParams = decode(params)?;
    let mut o = lock(&sim.raid.options);
    if let Some(w) = p.process_window_size_kb {
        if w == 0 {
            return Err(RpcError::invalid_argument());
        }
        o.process_window_size_kb = w;
    }
    if let Some(b) = p.process_max_bandwidth_mb_sec {
        o.process_max_bandwidth_mb_sec = b;
    }
    Ok(json!(true))
}
