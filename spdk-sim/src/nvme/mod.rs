//! NVMe-oF initiator: `bdev_nvme_*` methods, controllers connected to other
//! sims' targets, and one bdev per remote namespace.

mod bdev;
mod connection;
mod controller;
mod rpc;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

pub use controller::{Controller, Resiliency, Trid};

use crate::nvmf::lock;
use crate::rpc_error::RpcError;
use crate::sim::Sim;

/// Options set with `bdev_nvme_set_options` that shape later attaches.
#[derive(Debug, Clone, Default)]
pub struct NvmeOptions {
    /// Default timeouts for controllers attached without their own.
    pub resiliency: Resiliency,
    /// Every option as last set, for reference.
    pub raw: serde_json::Map<String, Value>,
}

/// Mutable initiator state.
#[derive(Default)]
pub struct NvmeInner {
    /// Attached controllers by name.
    pub controllers: BTreeMap<String, Arc<Controller>>,
    /// Options from `bdev_nvme_set_options`.
    pub options: NvmeOptions,
    /// This process's default host NQN, made on first use.
    pub hostnqn: Option<String>,
    /// This process's host identifier, made on first use.
    pub hostid: Option<uuid::Uuid>,
}

/// State of the NVMe-oF initiator inside one sim process.
#[derive(Default)]
pub struct NvmeState {
    /// Controllers and options, behind one lock never held across an await.
    pub inner: Mutex<NvmeInner>,
}

impl NvmeState {
    /// This process's host NQN (`nqn.2014-08.org.nvmexpress:uuid:<uuid>`).
    pub fn default_hostnqn(&self) -> String {
        lock(&self.inner)
            .hostnqn
            .get_or_insert_with(|| {
                format!("nqn.2014-08.org.nvmexpress:uuid:{}", uuid::Uuid::new_v4())
            })
            .clone()
    }
}

impl NvmeState {
    /// This process's host identifier, sent on every connect (SPDK's
    /// initiator makes one per process; targets report it as `hostid`).
    pub fn hostid(&self) -> uuid::Uuid {
        *lock(&self.inner)
            .hostid
            .get_or_insert_with(uuid::Uuid::new_v4)
    }
}

/// Deletes a controller: stops it and unregisters its namespace bdevs
/// (a raid using one loses that base bdev, as on a hot remove).
pub fn remove_controller(sim: &Sim, name: &str) -> bool {
    let Some(ctrlr) = lock(&sim.nvme.inner).controllers.remove(name) else {
        return false;
    };
    ctrlr.shutdown();
    let prefix = format!("{name}n");
    let names: Vec<String> = {
        let reg = lock(&sim.bdevs);
        reg.iter()
            .map(|e| e.bdev.name())
            .filter(|n| {
                n.strip_prefix(&prefix).is_some_and(|rest| {
                    !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit())
                })
            })
            .collect()
    };
    for bdev in names {
        remove_ns_bdev(sim, &bdev);
    }
    true
}

/// Registers the bdev `<ctrlr>n<nsid>`; returns its name.
pub fn register_ns_bdev(sim: &Sim, ctrlr: &Arc<Controller>, nsid: u32) -> Option<String> {
    let ns = bdev::NvmeNs::new(ctrlr.clone(), nsid)?;
    let name = crate::bdev::Bdev::name(&ns);
    match lock(&sim.bdevs).register(Arc::new(ns)) {
        Ok(_) => Some(name),
        Err(e) => {
            tracing::warn!(bdev = %name, error = %e, "cannot register nvme bdev");
            None
        }
    }
}

/// Hot-removes one namespace bdev: raids using it lose that base bdev.
pub fn remove_ns_bdev(sim: &Sim, bdev: &str) {
    crate::raid::base_bdev_removed(sim, bdev);
    if lock(&sim.bdevs).unregister(bdev).is_some() {
        tracing::info!(%bdev, "nvme bdev unregistered");
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
