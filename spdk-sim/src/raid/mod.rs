//! raid1 bdevs: `bdev_raid_*` methods, mirrored I/O, leg failure and full rebuild.

mod bdev;
mod rebuild;
mod rpc;
pub mod superblock;
mod volume;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

pub use superblock::examine;
pub use volume::Raid;

use crate::nvmf::lock;
use crate::rpc_error::RpcError;
use crate::sim::Sim;

/// Options from `bdev_raid_set_options`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaidOptions {
    /// Rebuild window in KiB.
    pub process_window_size_kb: u64,
    /// Rebuild bandwidth cap in MiB/s (0: none).
    pub process_max_bandwidth_mb_sec: u64,
}

impl Default for RaidOptions {
    fn default() -> Self {
        Self {
            process_window_size_kb: 1024,
            process_max_bandwidth_mb_sec: 0,
        }
    }
}

/// State of the raid module inside one sim process.
#[derive(Default)]
pub struct RaidState {
    /// Raids by name.
    pub raids: Mutex<BTreeMap<String, Arc<Raid>>>,
    /// Rebuild options.
    pub options: Mutex<RaidOptions>,
}

/// Tells every raid that a bdev went away (hot remove): its slot empties and
/// the raid goes on degraded.
pub fn base_bdev_removed(sim: &Sim, bdev_name: &str) {
    let raids: Vec<Arc<Raid>> = lock(&sim.raid.raids).values().cloned().collect();
    for raid in raids {
        let released = {
            let mut st = lock(&raid.st);
            let slot = st
                .slots
                .iter()
                .position(|s| s.bdev.as_ref().is_some_and(|b| b.name() == bdev_name));
            slot.and_then(|i| Raid::empty_slot(&mut st, i))
        };
        if let Some(name) = released {
            tracing::info!(raid = %raid.name, base = %name, "base bdev removed");
            lock(&sim.bdevs).release(&name);
            raid.rewrite_superblock_soon();
        }
    }
}

/// Handles this module's JSON-RPC methods; `None` when the method is not one of them.
pub async fn handle(
    sim: &Arc<Sim>,
    method: &str,
    params: Option<&Value>,
) -> Option<Result<Value, RpcError>> {
    rpc::handle(sim, method, params).await
}
