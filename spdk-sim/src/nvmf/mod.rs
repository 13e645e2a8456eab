//! NVMe-oF target: transports, subsystems, namespaces, listeners, hosts and
//! ANA, served to other sims over real TCP sockets with the [`wire`] protocol.

pub mod params;
mod rpc;
mod server;
pub mod subsystem;
pub mod wire;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;

use crate::rpc_error::RpcError;
use crate::sim::Sim;

/// Locks a mutex, recovering the data if a panicking thread poisoned it.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Everything the target knows.
#[derive(Default)]
pub struct Target {
    /// Created transports (upper-case trtype).
    pub transports: Vec<String>,
    /// Subsystems in creation order (the discovery subsystem is implicit).
    pub subsystems: Vec<subsystem::Subsystem>,
    /// Open listening sockets by `host:port`.
    pub sockets: BTreeMap<String, tokio::task::AbortHandle>,
    /// Next connection id.
    pub next_conn_id: u64,
    /// Counters for `nvmf_get_stats`.
    pub stats: Stats,
}

/// Target-wide counters for `nvmf_get_stats`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    /// Connections ever accepted (each is one admin and one I/O queue pair).
    pub qpairs: u64,
    /// I/O completed.
    pub completed_nvme_io: u64,
}

impl Target {
    /// Closes listening sockets that no subsystem uses any more.
    pub fn close_unused_sockets(&mut self) {
        let used: Vec<String> = self
            .subsystems
            .iter()
            .flat_map(|s| s.listeners.iter().map(|l| l.addr.socket_addr()))
            .collect();
        self.sockets.retain(|addr, task| {
            if used.contains(addr) {
                true
            } else {
                task.abort();
                false
            }
        });
    }
}

/// State of the NVMe-oF target inside one sim process.
#[derive(Default)]
pub struct NvmfState {
    /// The target, behind one lock never held across an await.
    pub target: Mutex<Target>,
}

impl Drop for NvmfState {
    fn drop(&mut self) {
        let target = lock(&self.target);
        for task in target.sockets.values() {
            task.abort();
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
