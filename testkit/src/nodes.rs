//! Throwaway storage nodes for tests: `spdk-sim` processes by default, real
//! SPDK when `SHORTHORN_SPDK_TGT` names `spdk_tgt` (see [`crate::spdk_env`]).
//!
//! Each node gets its own RPC socket, data directory, sparse aio backing file
//! and NVMe-oF TCP port, and is started by [`crate::launch`] (the same code
//! `shorthorn local up` uses). Dropping the [`TestCluster`] stops and reaps
//! every process and removes every file. A cluster of real nodes holds one
//! slot of the machine-wide budget per node ([`crate::slots`]).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use tempfile::TempDir;

use crate::hugepages;
use crate::launch::{self, NodeProcess, NodeSpec, Program, Role};
use crate::ports::{self, ReservedPort};
use crate::slots::{self, NodeSlots};
use crate::spdk_env::RealSpdk;
pub use crate::spdk_env::SPDK_TGT_ENV;

/// Environment variable naming the `spdk-sim` binary.
pub const SIM_BIN_ENV: &str = "SHORTHORN_SIM_BIN";
/// Size of each node's sparse aio backing file.
pub const DEFAULT_BACKING_SIZE: u64 = 1024 * 1024 * 1024;
/// How long a node may take to answer `spdk_get_version` after start.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors raised while starting storage nodes and moving their data.
#[derive(Debug, thiserror::Error)]
pub enum NodesError {
    /// The node binary could not be found or built.
    #[error("storage node binary unavailable: {0}")]
    Binary(String),
    /// The host lacks hugepages or hugetlbfs for real SPDK.
    #[error("real SPDK cannot start: {0}")]
    Hugepages(String),
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
    /// An SPDK call made by the data path failed.
    #[error("{context}: {source}")]
    Spdk {
        /// What was being done.
        context: String,
        /// The SPDK error.
        #[source]
        source: spdk_client::SpdkError,
    },
    /// Reading or writing bytes failed.
    #[error("data path: {0}")]
    DataPath(String),
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
pub enum Flavor {
    /// The `spdk-sim` binary.
    Sim(PathBuf),
    /// Real SPDK binaries.
    Real(RealSpdk),
}

impl Flavor {
    /// Real SPDK when the environment names it, the sim (built once if missing) otherwise.
    pub fn from_env() -> Result<Self, NodesError> {
        match RealSpdk::from_env()? {
            Some(real) => Ok(Flavor::Real(real)),
            None => Self::sim(),
        }
    }

    /// The sim, whatever the environment says.
    pub fn sim() -> Result<Self, NodesError> {
        static SIM: OnceLock<Result<PathBuf, String>> = OnceLock::new();
        SIM.get_or_init(find_or_build_sim)
            .clone()
            .map(Flavor::Sim)
            .map_err(NodesError::Binary)
    }

    /// Whether this is real SPDK.
    pub fn is_real(&self) -> bool {
        matches!(self, Flavor::Real(_))
    }
}

/// One storage node: where to reach it and what the controller config needs.
#[derive(Debug)]
pub struct StorageNode {
    /// Node name (`node-0`, `node-1`, ...).
    pub name: String,
    /// What the node does (decides how real SPDK runs it).
    pub role: Role,
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
    /// Keeps `nvmf_port` away from other tests for the node's life.
    _port: Option<ReservedPort>,
    spec: NodeSpec,
    process: Option<NodeProcess>,
    ready_after: Option<Duration>,
    command: String,
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
        self.process.as_mut().is_some_and(NodeProcess::is_running)
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(NodeProcess::pid)
    }

    /// How long its last start took, from spawn to the first answer.
    pub fn ready_after(&self) -> Option<Duration> {
        self.ready_after
    }

    /// The command line of its last start.
    pub fn command_line(&self) -> String {
        self.command.clone()
    }

    /// The node's log file.
    pub fn log_file(&self) -> &Path {
        &self.spec.log
    }

    fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop();
        }
    }

    fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }

    fn launch(&mut self) -> Result<(), NodesError> {
        self.kill();
        let mut spec = self.spec.clone();
        // Keep the log of earlier runs: a restart appends.
        spec.append_log = self.spec.log.exists();
        let mut process = NodeProcess::spawn(spec)?;
        self.command = process.command().to_string();
        self.ready_after = Some(process.wait_ready(READY_TIMEOUT)?);
        self.process = Some(process);
        Ok(())
    }
}

/// A set of storage nodes started together.
#[derive(Debug)]
pub struct TestCluster {
    nodes: Vec<StorageNode>,
    flavor: Flavor,
    _slots: Option<NodeSlots>,
    _dir: TempDir,
}

impl TestCluster {
    /// Starts `n` storage nodes of the flavor the environment names (see
    /// [`Flavor::from_env`]): node-0 assembles raids, the others only serve
    /// replicas ([`launch::first_node_engine`]). Waits until each answers.
    pub fn start(n: usize) -> Result<Self, NodesError> {
        Self::start_with(Flavor::from_env()?, &launch::first_node_engine(n))
    }

    /// Starts one node per role on `flavor`.
    pub fn start_with(flavor: Flavor, roles: &[Role]) -> Result<Self, NodesError> {
        Self::start_standby_with(flavor, roles, 0)
    }

    /// Like [`TestCluster::start`], but the last `standby` of the `n` nodes
    /// are only prepared (files, port, config entry), not started: a node
    /// that joins later ([`TestCluster::launch_standby`]). Real nodes take
    /// a slot of the budget only while they run, so a test can lose a node
    /// ([`TestCluster::retire_node`]) and bring up a fresh one within it.
    pub fn start_standby(n: usize, standby: usize) -> Result<Self, NodesError> {
        Self::start_standby_with(Flavor::from_env()?, &launch::first_node_engine(n), standby)
    }

    fn start_standby_with(
        flavor: Flavor,
        roles: &[Role],
        standby: usize,
    ) -> Result<Self, NodesError> {
        let running = roles.len().saturating_sub(standby);
        let slots = match &flavor {
            Flavor::Real(_) => Some(slots::acquire(running)?),
            Flavor::Sim(_) => None,
        };
        let dir = tempfile::Builder::new()
            .prefix("shorthorn-nodes-")
            .tempdir()
            .map_err(io("creating the cluster directory"))?;
        let placement = launch::place(roles, launch::available_cores());
        let mut cluster = TestCluster {
            nodes: Vec::with_capacity(roles.len()),
            flavor,
            _slots: slots,
            _dir: dir,
        };
        for (index, (&role, &slot)) in roles.iter().zip(&placement).enumerate() {
            let name = format!("node-{index}");
            let data_dir = cluster._dir.path().join(&name);
            std::fs::create_dir_all(&data_dir).map_err(io("creating a node directory"))?;
            let aio_file = data_dir.join("aio.img");
            let file = std::fs::File::create(&aio_file).map_err(io("creating the aio file"))?;
            file.set_len(DEFAULT_BACKING_SIZE)
                .map_err(io("sizing the aio file"))?;
            let rpc_socket = data_dir.join("rpc.sock");
            let program = match &cluster.flavor {
                Flavor::Sim(bin) => Program::Sim {
                    command: bin.clone(),
                    args: Vec::new(),
                    data_dir: data_dir.clone(),
                },
                Flavor::Real(real) => Program::Real(real.clone()),
            };
            let spec = NodeSpec {
                name: name.clone(),
                role,
                program,
                socket: rpc_socket.clone(),
                log: data_dir.join("node.log"),
                shm_id: next_shm_id(),
                slot,
                append_log: false,
                die_with_parent: false,
            };
            let port = ports::reserve()?;
            let mut node = StorageNode {
                rpc_socket,
                aio_file,
                data_dir,
                nvmf_address: Ipv4Addr::LOCALHOST.to_string(),
                nvmf_port: port.port(),
                _port: Some(port),
                role,
                spec,
                process: None,
                ready_after: None,
                command: String::new(),
                name,
            };
            if index < running {
                node.launch()?;
            }
            cluster.nodes.push(node);
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

    /// What plays spdk_tgt.
    pub fn flavor(&self) -> &Flavor {
        &self.flavor
    }

    /// Reads and writes the nodes' bdevs (see [`crate::data_path`]).
    pub fn data_path(&self) -> crate::data_path::DataPath {
        crate::data_path::DataPath::new(self.flavor.clone())
    }

    /// Whether nodes are real spdk_tgt processes.
    pub fn is_real_spdk(&self) -> bool {
        self.flavor.is_real()
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
        self.nodes[i].launch()
    }

    /// Kills node `i` with SIGKILL for good: its slot of the real-node
    /// budget goes back (its hugepage maps are removed), so a standby node
    /// can take it. Restart it only through [`TestCluster::launch_standby`].
    pub fn retire_node(&mut self, i: usize) {
        self.nodes[i].kill();
        if let Flavor::Real(_) = self.flavor {
            hugepages::remove_stale_maps(self.nodes[i].spec.shm_id);
            if let Some(slots) = &mut self._slots {
                slots.release_one();
            }
        }
    }

    /// Starts standby (or retired) node `i`, taking one more slot of the
    /// real-node budget first (waiting for it like a cluster start does).
    pub fn launch_standby(&mut self, i: usize) -> Result<(), NodesError> {
        if let Flavor::Real(_) = self.flavor {
            let more = slots::acquire(1)?;
            match &mut self._slots {
                Some(slots) => slots.absorb(more),
                None => self._slots = Some(more),
            }
        }
        self.nodes[i].launch()
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let is_sim = matches!(self.flavor, Flavor::Sim(_));
        for node in &mut self.nodes {
            node.stop();
            // The sim leaves the loop devices and FUSE mounts of ublk disks
            // still started when it exits (a failed test), and removes them
            // when it starts: start it once more so nothing is left behind.
            if is_sim && has_ublk_state(&node.data_dir) {
                if node.launch().is_err() {
                    tracing::warn!(node = %node.name, "could not restart a node to clean up its ublk disks");
                }
                node.stop();
            }
        }
    }
}

/// Whether the sim left ublk disk state in its data directory.
fn has_ublk_state(data_dir: &Path) -> bool {
    std::fs::read_dir(data_dir.join("ublk")).is_ok_and(|mut entries| entries.next().is_some())
}

/// A shared-memory id no other node of this process uses, spread by pid so
/// concurrent test binaries do not collide.
fn next_shm_id() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    (std::process::id() % 1000) * 16 + NEXT.fetch_add(1, Ordering::Relaxed) % 16 + 100
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
    fn node_config_snippet_names_socket_port_and_backing_file() {
        let node = StorageNode {
            name: "node-0".into(),
            rpc_socket: "/tmp/x/rpc.sock".into(),
            data_dir: "/tmp/x".into(),
            aio_file: "/tmp/x/aio.img".into(),
            nvmf_address: "127.0.0.1".into(),
            nvmf_port: 4500,
            _port: None,
            role: Role::Engine,
            spec: NodeSpec {
                name: "node-0".into(),
                role: Role::Engine,
                program: Program::Sim {
                    command: "/bin/false".into(),
                    args: Vec::new(),
                    data_dir: "/tmp/x".into(),
                },
                socket: "/tmp/x/rpc.sock".into(),
                log: "/tmp/x/node.log".into(),
                shm_id: 1,
                slot: launch::CoreSlot {
                    core: 0,
                    shared: false,
                },
                append_log: false,
                die_with_parent: false,
            },
            process: None,
            ready_after: None,
            command: String::new(),
        };
        let toml = node.controller_toml(&["ublk"]);
        assert!(toml.contains("spdk_socket = \"/tmp/x/rpc.sock\""));
        assert!(toml.contains("nvmf_port = 4500"));
        assert!(toml.contains("frontends = [\"ublk\"]"));
    }
}
