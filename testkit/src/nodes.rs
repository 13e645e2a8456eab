//! Throwaway storage nodes for tests: `spdk-sim` processes by default, real
//! `spdk_tgt` processes when `SHORTHORN_SPDK_TGT` names the binary.
//!
//! Each node gets its own RPC socket, data directory, sparse aio backing file
//! and NVMe-oF TCP port. Dropping the [`TestCluster`] kills and reaps every
//! process and removes every file.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Environment variable naming the `spdk-sim` binary.
pub const SIM_BIN_ENV: &str = "SHORTHORN_SIM_BIN";
/// Environment variable naming a real `spdk_tgt` binary; when set, nodes run it.
pub const SPDK_TGT_ENV: &str = "SHORTHORN_SPDK_TGT";
/// Size of each node's sparse aio backing file.
pub const DEFAULT_BACKING_SIZE: u64 = 1024 * 1024 * 1024;
/// How long a node may take to exit after SIGINT before it is SIGKILLed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a node may take to answer `spdk_get_version` after start.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors raised while starting storage nodes.
#[derive(Debug, thiserror::Error)]
pub enum NodesError {
    /// The node binary could not be found or built.
    #[error("storage node binary unavailable: {0}")]
    Binary(String),
    /// A node did not answer on its RPC socket in time.
    #[error("storage node {name} did not answer spdk_get_version on {socket} within {timeout:?}: {reason}")]
    NotReady {
        /// Node name.
        name: String,
        /// RPC socket path.
        socket: PathBuf,
        /// How long we waited.
        timeout: Duration,
        /// Last error seen.
        reason: String,
    },
    /// An OS-level operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> NodesError {
    let context = context.into();
    move |source| NodesError::Io { context, source }
}

/// Which program plays spdk_tgt.
#[derive(Debug, Clone)]
enum Flavor {
    Sim(PathBuf),
    Real(PathBuf),
}

/// One storage node: where to reach it and what the controller config needs.
#[derive(Debug)]
pub struct StorageNode {
    /// Node name (`node-0`, `node-1`, ...).
    pub name: String,
    /// JSON-RPC Unix socket.
    pub rpc_socket: PathBuf,
    /// The node's own directory.
    pub data_dir: PathBuf,
    /// Sparse file the controller should use as the aio base bdev.
    pub aio_file: PathBuf,
    /// NVMe-oF TCP address other nodes reach it on.
    pub nvmf_address: String,
    /// NVMe-oF TCP port, unique per node on this machine.
    pub nvmf_port: u16,
    index: usize,
    shm_id: u32,
    child: Option<Child>,
}

impl StorageNode {
    /// A `[[nodes]]` entry for the controller's TOML configuration.
    pub fn controller_toml(&self, frontends: &[&str]) -> String {
        let frontends: Vec<String> = frontends.iter().map(|f| format!("{f:?}")).collect();
        format!(
            "[[nodes]]\nname = {:?}\nspdk_socket = {:?}\nnvmf_address = {:?}\nnvmf_port = {}\nbase_bdev = {{ aio_file = {:?}, block_size = 4096 }}\nfrontends = [{}]\n",
            self.name,
            self.rpc_socket.display().to_string(),
            self.nvmf_address,
            self.nvmf_port,
            self.aio_file.display().to_string(),
            frontends.join(", ")
        )
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Asks the process to exit (SIGINT, so the sim removes its ublk loop
    /// devices and FUSE mounts), then SIGKILLs it if it lingers; always reaps.
    fn stop(&mut self) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        let interrupted = Command::new("kill")
            .arg("-INT")
            .arg(child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if interrupted {
            let deadline = Instant::now() + STOP_TIMEOUT;
            while Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    self.child = None;
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.kill();
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL, then reap so no zombie is left behind.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A set of storage nodes started together.
#[derive(Debug)]
pub struct TestCluster {
    nodes: Vec<StorageNode>,
    flavor: Flavor,
    _dir: TempDir,
}

impl TestCluster {
    /// Starts `n` storage nodes and waits until each answers JSON-RPC.
    pub fn start(n: usize) -> Result<Self, NodesError> {
        let flavor = flavor()?;
        let dir = tempfile::Builder::new()
            .prefix("shorthorn-nodes-")
            .tempdir()
            .map_err(io("creating the cluster directory"))?;
        let mut cluster = TestCluster {
            nodes: Vec::with_capacity(n),
            flavor,
            _dir: dir,
        };
        for index in 0..n {
            let name = format!("node-{index}");
            let data_dir = cluster._dir.path().join(&name);
            std::fs::create_dir_all(&data_dir).map_err(io("creating a node directory"))?;
            let aio_file = data_dir.join("aio.img");
            let file = std::fs::File::create(&aio_file).map_err(io("creating the aio file"))?;
            file.set_len(DEFAULT_BACKING_SIZE)
                .map_err(io("sizing the aio file"))?;
            let node = StorageNode {
                rpc_socket: data_dir.join("rpc.sock"),
                aio_file,
                data_dir,
                nvmf_address: Ipv4Addr::LOCALHOST.to_string(),
                nvmf_port: free_port()?,
                index,
                shm_id: next_shm_id(),
                child: None,
                name,
            };
            cluster.nodes.push(node);
            cluster.launch(index)?;
        }
        Ok(cluster)
    }

    /// The nodes, in index order.
    pub fn nodes(&self) -> &[StorageNode] {
        &self.nodes
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &StorageNode {
        &self.nodes[i]
    }

    /// Whether nodes are real spdk_tgt processes.
    pub fn is_real_spdk(&self) -> bool {
        matches!(self.flavor, Flavor::Real(_))
    }

    /// The `[[nodes]]` entries of every node, for the controller config.
    pub fn controller_toml(&self, frontends: &[&str]) -> String {
        self.nodes
            .iter()
            .map(|n| n.controller_toml(frontends))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Kills node `i` with SIGKILL (its files stay).
    pub fn kill_node(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// Stops node `i` gracefully (SIGINT, then SIGKILL if it lingers).
    pub fn stop_node(&mut self, i: usize) {
        self.nodes[i].stop();
    }

    /// Kills node `i` if running and starts it again on the same socket and files.
    pub fn restart_node(&mut self, i: usize) -> Result<(), NodesError> {
        self.nodes[i].kill();
        self.launch(i)
    }

    fn launch(&mut self, i: usize) -> Result<(), NodesError> {
        let node = &mut self.nodes[i];
        let _ = std::fs::remove_file(&node.rpc_socket);
        let log = std::fs::File::create(node.data_dir.join("node.log"))
            .map_err(io("creating the node log"))?;
        let log2 = log.try_clone().map_err(io("cloning the node log"))?;
        let mut cmd = match &self.flavor {
            Flavor::Sim(bin) => {
                let mut cmd = Command::new(bin);
                cmd.arg("--rpc-socket")
                    .arg(&node.rpc_socket)
                    .arg("--data-dir")
                    .arg(&node.data_dir);
                cmd
            }
            Flavor::Real(bin) => {
                remove_stale_hugepage_maps(node.shm_id);
                let cores = std::thread::available_parallelism().map_or(1, usize::from);
                let mut cmd = Command::new(bin);
                cmd.arg("-m")
                    .arg(format!("{:#x}", 1u64 << (node.index % cores.min(64))))
                    .arg("-i")
                    .arg(node.shm_id.to_string())
                    .arg("-r")
                    .arg(&node.rpc_socket)
                    .args(["-s", "512", "--no-pci"]);
                cmd
            }
        };
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2));
        let child = cmd
            .spawn()
            .map_err(io(format!("starting storage node {}", node.name)))?;
        node.child = Some(child);
        wait_ready(node)
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let is_sim = matches!(self.flavor, Flavor::Sim(_));
        for i in 0..self.nodes.len() {
            self.nodes[i].stop();
            // The sim leaves the loop devices and FUSE mounts of ublk disks
            // still started when it exits (a failed test), and removes them
            // when it starts: start it once more so nothing is left behind.
            if is_sim && has_ublk_state(&self.nodes[i].data_dir) {
                if self.launch(i).is_err() {
                    tracing::warn!(node = %self.nodes[i].name, "could not restart a node to clean up its ublk disks");
                }
                self.nodes[i].stop();
            }
            if !is_sim {
                remove_stale_hugepage_maps(self.nodes[i].shm_id);
            }
        }
    }
}

/// Whether the sim left ublk disk state in its data directory.
fn has_ublk_state(data_dir: &Path) -> bool {
    std::fs::read_dir(data_dir.join("ublk")).is_ok_and(|mut entries| entries.next().is_some())
}

/// Polls `spdk_get_version` until it answers, the process dies, or time runs out.
fn wait_ready(node: &mut StorageNode) -> Result<(), NodesError> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if !node.is_running() {
            let log = std::fs::read_to_string(node.data_dir.join("node.log")).unwrap_or_default();
            let tail: String = log
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            return Err(NodesError::NotReady {
                name: node.name.clone(),
                socket: node.rpc_socket.clone(),
                timeout: READY_TIMEOUT,
                reason: format!("the process exited; log tail:\n{tail}"),
            });
        }
        let last = match get_version(&node.rpc_socket) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            node.kill();
            return Err(NodesError::NotReady {
                name: node.name.clone(),
                socket: node.rpc_socket.clone(),
                timeout: READY_TIMEOUT,
                reason: last,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One blocking `spdk_get_version` round trip.
fn get_version(socket: &Path) -> Result<(), String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(br#"{"jsonrpc":"2.0","method":"spdk_get_version","id":1}"#)
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed before a response".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if balanced(&buf) {
            let text = String::from_utf8_lossy(&buf);
            return if text.contains("\"result\"") {
                Ok(())
            } else {
                Err(format!("unexpected answer: {text}"))
            };
        }
    }
}

/// Whether `buf` holds one complete JSON object (braces balanced outside strings).
fn balanced(buf: &[u8]) -> bool {
    let (mut depth, mut in_str, mut escaped, mut seen) = (0i32, false, false, false);
    for &b in buf {
        if in_str {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'{' => {
                depth += 1;
                seen = true;
            }
            b'}' => depth -= 1,
            _ => {}
        }
    }
    seen && depth == 0
}

/// A TCP port free right now on loopback.
fn free_port() -> Result<u16, NodesError> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io("finding a free TCP port"))?;
    let port = listener
        .local_addr()
        .map_err(io("reading the free port"))?
        .port();
    Ok(port)
}

/// A shared-memory id no other node of this process uses, spread by pid so
/// concurrent test binaries do not collide.
fn next_shm_id() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    (std::process::id() % 1000) * 16 + NEXT.fetch_add(1, Ordering::Relaxed) % 16 + 100
}

/// Removes `/dev/hugepages/spdk<id>map_*` left by an earlier process.
fn remove_stale_hugepage_maps(shm_id: u32) {
    let prefix = format!("spdk{shm_id}map_");
    if let Ok(entries) = std::fs::read_dir("/dev/hugepages") {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Picks the node program: real spdk_tgt if asked for, else the sim (built once if missing).
fn flavor() -> Result<Flavor, NodesError> {
    if let Some(bin) = std::env::var_os(SPDK_TGT_ENV) {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            return Err(NodesError::Binary(format!(
                "{SPDK_TGT_ENV}={} is not a file",
                bin.display()
            )));
        }
        return Ok(Flavor::Real(bin));
    }
    static SIM: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    SIM.get_or_init(find_or_build_sim)
        .clone()
        .map(Flavor::Sim)
        .map_err(NodesError::Binary)
}

fn find_or_build_sim() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os(SIM_BIN_ENV) {
        let bin = PathBuf::from(bin);
        return if bin.is_file() {
            Ok(bin)
        } else {
            Err(format!("{SIM_BIN_ENV}={} is not a file", bin.display()))
        };
    }
    // Test binaries live in <target>/<profile>/deps/.
    let exe = std::env::current_exe().map_err(|e| format!("locating the test binary: {e}"))?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| format!("unexpected test binary location {}", exe.display()))?;
    let target_dir = profile_dir
        .parent()
        .ok_or_else(|| format!("unexpected test binary location {}", exe.display()))?;
    let candidate = target_dir.join("debug").join("spdk-sim");
    if candidate.is_file() {
        return Ok(candidate);
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "-p",
            "spdk-sim",
            "--bin",
            "spdk-sim",
            "--target-dir",
        ])
        .arg(target_dir)
        .status()
        .map_err(|e| format!("running cargo build -p spdk-sim: {e}"))?;
    if !status.success() || !candidate.is_file() {
        return Err(format!(
            "`cargo build -p spdk-sim --bin spdk-sim` failed ({status}); build it or set {SIM_BIN_ENV}"
        ));
    }
    Ok(candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_complete_json_objects() {
        assert!(balanced(br#"{"result":{"version":"SPDK v25.09"}}"#));
        assert!(!balanced(br#"{"result":{"version":"#));
        assert!(balanced(br#"{"a":"}{"}"#));
        assert!(!balanced(b""));
    }

    #[test]
    fn node_config_snippet_names_socket_port_and_backing_file() {
        let node = StorageNode {
            name: "node-0".into(),
            rpc_socket: "/tmp/x/rpc.sock".into(),
            data_dir: "/tmp/x".into(),
            aio_file: "/tmp/x/aio.img".into(),
            nvmf_address: "127.0.0.1".into(),
            nvmf_port: 4500,
            index: 0,
            shm_id: 1,
            child: None,
        };
        let toml = node.controller_toml(&["ublk"]);
        assert!(toml.contains("spdk_socket = \"/tmp/x/rpc.sock\""));
        assert!(toml.contains("nvmf_port = 4500"));
        assert!(toml.contains("frontends = [\"ublk\"]"));
    }
}
