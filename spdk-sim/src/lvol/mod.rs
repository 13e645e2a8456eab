//! lvstores and lvols: a blobstore-like format inside a base bdev, thin and
//! thick lvols, snapshots, clones, external snapshots and shallow copy.
//!
//! - [`layout`]: where metadata lives on the base bdev (SPDK's space accounting).
//! - [`meta`]: the persisted model (blobs, cluster maps).
//! - [`store`]: a loaded lvstore, its locks and durable metadata updates.
//! - [`bdev`]: the lvol bdev data path (copy-on-write, read-through).
//! - [`ops`]: lvstore and lvol operations with SPDK's rules and errors.
//! - [`copy`]: background shallow copies.
//! - [`rpc`]: the JSON-RPC handlers.
//! - [`examine`]: finding lvstores on new bdevs.

pub mod bdev;
pub mod copy;
pub mod examine;
pub mod layout;
pub mod meta;
pub mod ops;
pub mod rpc;
pub mod store;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicUsize};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::bdev::BdevKind;
use crate::rpc_error::RpcError;
use crate::sim::Sim;

pub use examine::{base_removed, examine, wait_for_examine};
pub use store::Lvs;

/// State of the lvol module inside one sim process.
#[derive(Default)]
pub struct LvolState {
    /// Loaded lvstores, in load order.
    pub stores: Mutex<Vec<Arc<Lvs>>>,
    /// Shallow copies by operation id.
    pub copies: Mutex<HashMap<u32, copy::CopyStatus>>,
    /// The last shallow-copy operation id handed out.
    pub last_copy_id: AtomicU32,
    /// Milliseconds each shallow copy waits before copying a cluster
    /// (`sim_set_copy_pace`; 0: as fast as the sim goes).
    pub copy_cluster_delay_ms: std::sync::atomic::AtomicU64,
    /// Examines in flight.
    pub examining: AtomicUsize,
    /// Woken when an examine finishes.
    pub examined: tokio::sync::Notify,
}

impl LvolState {
    /// All loaded lvstores.
    pub fn all(&self) -> Vec<Arc<Lvs>> {
        self.stores.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The lvstore with this name.
    pub fn by_name(&self, name: &str) -> Option<Arc<Lvs>> {
        self.all()
            .into_iter()
            .find(|l| l.with_meta(|m| m.name == name).unwrap_or(false))
    }

    /// The lvstore with this UUID.
    pub fn by_uuid(&self, uuid: &str) -> Option<Arc<Lvs>> {
        self.all()
            .into_iter()
            .find(|l| l.with_meta(|m| m.uuid.to_string() == uuid).unwrap_or(false))
    }

    /// SPDK's "uuid xor lvs_name" lookup: -22 when both or neither are given,
    /// -19 when not found.
    pub fn by_uuid_xor_name(
        &self,
        uuid: Option<&str>,
        name: Option<&str>,
    ) -> Result<Arc<Lvs>, RpcError> {
        match (uuid, name) {
            (Some(u), None) => self.by_uuid(u).ok_or_else(RpcError::no_such_device),
            (None, Some(n)) => self.by_name(n).ok_or_else(RpcError::no_such_device),
            _ => Err(RpcError::invalid_argument()),
        }
    }
}

/// Finds the lvol behind a bdev name, alias or UUID: `(lvstore, blob id)`.
pub fn find_lvol(sim: &Sim, key: &str) -> Option<(Arc<Lvs>, u64)> {
    let uuid = {
        let reg = sim.bdevs.lock().ok()?;
        let e = reg.lookup(key)?;
        if e.bdev.kind() != BdevKind::Lvol {
            return None;
        }
        e.bdev.uuid()
    };
    sim.lvol.all().into_iter().find_map(|l| {
        let id = l
            .with_meta(|m| m.blobs.iter().find(|b| b.uuid == uuid).map(|b| b.id))
            .ok()??;
        Some((l, id))
    })
}

/// Handles this module's JSON-RPC methods; `None` when the method is not one of them.
pub async fn handle(
    sim: &Arc<Sim>,
    method: &str,
    params: Option<&Value>,
) -> Option<Result<Value, RpcError>> {
    rpc::handle(sim, method, params).await
}
