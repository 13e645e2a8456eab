//! Helpers shared by the network-side tests: in-process sims, RPC calls,
//! free ports and data patterns.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use spdk_sim::bdev::Bdev;
use spdk_sim::rpc_error::RpcError;
use spdk_sim::{Sim, SimConfig};

/// One in-process sim with its scratch directory.
pub struct TestSim {
    pub sim: Arc<Sim>,
    pub dir: tempfile::TempDir,
}

impl TestSim {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let sim = Arc::new(Sim::new(SimConfig {
            rpc_socket: dir.path().join("rpc.sock"),
            data_dir: dir.path().join("data"),
        }));
        Self { sim, dir }
    }

    pub async fn call(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        spdk_sim::methods::dispatch(&self.sim, method, Some(&params)).await
    }

    pub async fn ok(&self, method: &str, params: Value) -> Value {
        match self.call(method, params.clone()).await {
            Ok(v) => v,
            Err(e) => panic!("{method} {params} failed: {e}"),
        }
    }

    pub fn bdev(&self, name: &str) -> Arc<dyn Bdev> {
        self.sim
            .bdevs
            .lock()
            .unwrap()
            .lookup(name)
            .unwrap_or_else(|| panic!("no bdev {name}"))
            .bdev
            .clone()
    }

    pub fn has_bdev(&self, name: &str) -> bool {
        self.sim.bdevs.lock().unwrap().lookup(name).is_some()
    }

    pub async fn malloc(&self, name: &str, mib: u64) {
        self.ok(
            "bdev_malloc_create",
            json!({"name": name, "num_blocks": mib * 256, "block_size": 4096}),
        )
        .await;
    }

    /// Exports `bdev` as `nqn` on 127.0.0.1:`port` (creating the TCP transport if needed).
    pub async fn export(&self, nqn: &str, bdev: &str, port: u16) {
        let _ = self.call("nvmf_create_transport", json!({"trtype": "TCP"})).await;
        self.ok(
            "nvmf_create_subsystem",
            json!({"nqn": nqn, "allow_any_host": true, "serial_number": "SPDKTEST", "model_number": "SPDK test"}),
        )
        .await;
        self.ok(
            "nvmf_subsystem_add_ns",
            json!({"nqn": nqn, "namespace": {"bdev_name": bdev}}),
        )
        .await;
        self.ok("nvmf_subsystem_add_listener", json!({"nqn": nqn, "listen_address": listen(port)}))
            .await;
    }
}

pub fn listen(port: u16) -> Value {
    json!({"trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.1", "trsvcid": port.to_string()})
}

pub fn attach_params(name: &str, nqn: &str, port: u16) -> Value {
    json!({"name": name, "trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.1",
           "trsvcid": port.to_string(), "subnqn": nqn})
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Deterministic bytes for `len` bytes tagged by `seed`.
pub fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[i % 4] ^ seed)
        .collect()
}

/// Polls `f` until it returns true (panics after a generous bound).
pub async fn wait_until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..3000 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The single raid in `bdev_raid_get_bdevs`.
pub async fn raid_info(s: &TestSim) -> Value {
    let v = s.ok("bdev_raid_get_bdevs", json!({"category": "all"})).await;
    v[0].clone()
}
