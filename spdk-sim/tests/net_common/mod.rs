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
        let _ = self
            .call("nvmf_create_transport", json!({"trtype": "TCP"}))
            .await;
        self.export_with(
            json!({"nqn": nqn, "allow_any_host": true, "serial_number": "SPDKTEST", "model_number": "SPDK test"}),
            bdev,
            port,
        )
        .await;
    }

    /// Creates the subsystem described by `create` (the full
    /// `nvmf_create_subsystem` params, `nqn` included), adds `bdev` as its
    /// namespace and a listener on 127.0.0.1:`port`. The transport must exist.
    pub async fn export_with(&self, create: Value, bdev: &str, port: u16) {
        let nqn = create["nqn"].clone();
        self.ok("nvmf_create_subsystem", create).await;
        self.ok(
            "nvmf_subsystem_add_ns",
            json!({"nqn": nqn, "namespace": {"bdev_name": bdev}}),
        )
        .await;
        self.ok(
            "nvmf_subsystem_add_listener",
            json!({"nqn": nqn, "listen_address": listen(port)}),
        )
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
    let v = s
        .ok("bdev_raid_get_bdevs", json!({"category": "all"}))
        .await;
    v[0].clone()
}

/// One JSON-RPC call to a sim process over its Unix socket.
pub fn rpc(sock: &std::path::Path, method: &str, params: Value) -> Result<Value, (i64, String)> {
    use std::io::Write;
    let mut s = std::os::unix::net::UnixStream::connect(sock).expect("connect rpc socket");
    let mut req = json!({"jsonrpc": "2.0", "id": 1, "method": method});
    if !params.is_null() {
        req["params"] = params;
    }
    s.write_all(req.to_string().as_bytes()).expect("send");
    let mut de = serde_json::Deserializer::from_reader(&mut s);
    let resp: Value = serde::Deserialize::deserialize(&mut de).expect("response");
    match resp.get("error") {
        Some(e) => Err((
            e["code"].as_i64().unwrap_or(0),
            e["message"].as_str().unwrap_or("").to_string(),
        )),
        None => Ok(resp["result"].clone()),
    }
}

/// A sim process; killed (SIGKILL) and reaped on drop.
pub struct SimProc {
    pub child: std::process::Child,
    pub sock: std::path::PathBuf,
    pub data: std::path::PathBuf,
}

impl SimProc {
    /// Starts `spdk-sim` with its socket and data dir under `dir` and waits until it answers.
    pub fn start(dir: &std::path::Path, name: &str) -> Self {
        let sock = dir.join(format!("{name}.sock"));
        let data = dir.join(format!("{name}-data"));
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_spdk-sim"))
            .arg("--rpc-socket")
            .arg(&sock)
            .arg("--data-dir")
            .arg(&data)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn spdk-sim");
        let p = SimProc { child, sock, data };
        for _ in 0..500 {
            if std::os::unix::net::UnixStream::connect(&p.sock).is_ok()
                && rpc(&p.sock, "spdk_get_version", Value::Null).is_ok()
            {
                return p;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("spdk-sim {name} did not come up");
    }

    pub fn ok(&self, method: &str, params: Value) -> Value {
        rpc(&self.sock, method, params.clone())
            .unwrap_or_else(|e| panic!("{method} {params} failed: {e:?}"))
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SimProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Base64 as `sim_bdev_write` / `sim_bdev_read` use it.
pub fn b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Decodes `sim_bdev_read`'s data.
pub fn unb64(s: &Value) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s["data"].as_str().expect("data"))
        .expect("base64")
}

/// Whether anything is mounted at or below `path` (per /proc/self/mountinfo).
pub fn mounted_under(path: &std::path::Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let p = path.to_string_lossy();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| m.starts_with(p.as_ref()))
}

/// Whether loop device `dev` (e.g. "/dev/loop3") has a backing file.
pub fn loop_attached(dev: &str) -> bool {
    let name = dev.trim_start_matches("/dev/");
    std::path::Path::new(&format!("/sys/block/{name}/loop/backing_file")).exists()
}
