//! Starts and stops the local cluster's storage nodes: one `shorthorn sim`
//! process each, or a real `spdk_tgt` when `SHORTHORN_SPDK_TGT` names one.

use std::fs::{File, OpenOptions};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use spdk_client::SpdkClient;

use super::layout::Layout;

/// Environment variable naming a real `spdk_tgt` binary to use instead of the sim.
pub const SPDK_TGT_ENV: &str = "SHORTHORN_SPDK_TGT";

/// How long a storage node may take to answer `spdk_get_version`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// What runs behind a storage node's socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Engine {
    /// `shorthorn sim` (this binary).
    Sim,
    /// A real spdk_tgt binary.
    SpdkTgt(PathBuf),
}

impl Engine {
    /// The real spdk_tgt when `SHORTHORN_SPDK_TGT` is set, the sim otherwise.
    pub fn from_env() -> Self {
        match std::env::var_os(SPDK_TGT_ENV) {
            Some(p) if !p.is_empty() => Engine::SpdkTgt(PathBuf::from(p)),
            _ => Engine::Sim,
        }
    }
}

/// One running storage node.
#[derive(Debug)]
pub struct StorageNode {
    /// Node name (`node-1`, ...).
    pub name: String,
    /// Its JSON-RPC socket.
    pub socket: PathBuf,
    child: Child,
}

impl StorageNode {
    /// Starts node `index` (1-based) and waits until it answers JSON-RPC.
    pub async fn start(
        layout: &Layout,
        engine: &Engine,
        index: usize,
        disk_bytes: u64,
    ) -> anyhow::Result<Self> {
        let name = format!("node-{index}");
        let dir = layout.node_dir(&name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let disk = layout.node_disk(&name);
        ensure_sparse_file(&disk, disk_bytes)?;
        let socket = layout.node_socket(&name);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(layout.node_log(&name))
            .with_context(|| format!("opening the log of {name}"))?;
        let mut command = match engine {
            Engine::Sim => sim_command(&socket, &dir.join("sim"))?,
            Engine::SpdkTgt(bin) => spdk_tgt_command(bin, &socket, index)?,
        };
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // The node must not outlive `local up`, even if that is killed with SIGKILL.
        // SAFETY: the closure only calls prctl(2), which is async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting storage node {name}"))?;
        let mut node = StorageNode {
            name,
            socket,
            child,
        };
        node.wait_ready().await?;
        Ok(node)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let client = SpdkClient::unix(&self.socket).with_timeout(Duration::from_secs(2));
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "storage node {} exited during start-up ({status}); see its log next to {}",
                    self.name,
                    self.socket.display()
                );
            }
            if self.socket.exists() && client.spdk_get_version().await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "storage node {} did not answer spdk_get_version within {:?}",
                    self.name,
                    READY_TIMEOUT
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Asks the node to stop (SIGTERM), then kills it if it has not exited in time.
    pub fn stop(&mut self) {
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        tracing::warn!(node = %self.name, "storage node ignored SIGTERM; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for StorageNode {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.stop();
        }
    }
}

fn sim_command(socket: &Path, data_dir: &Path) -> anyhow::Result<Command> {
    let exe = std::env::current_exe().context("locating the shorthorn binary")?;
    let mut c = Command::new(exe);
    c.arg("sim")
        .arg("--rpc-socket")
        .arg(socket)
        .arg("--data-dir")
        .arg(data_dir);
    Ok(c)
}

/// A real spdk_tgt: its own core (where there are enough), shared-memory id
/// and socket, 512 MiB of hugepage memory, no PCI devices.
fn spdk_tgt_command(bin: &Path, socket: &Path, index: usize) -> anyhow::Result<Command> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let core = (index - 1) % cores;
    let shm_id = 100 + index;
    remove_stale_hugepage_maps(shm_id);
    let mut c = Command::new(bin);
    c.arg("-m")
        .arg(format!("0x{:x}", 1u64 << core))
        .arg("-i")
        .arg(shm_id.to_string())
        .arg("-r")
        .arg(socket)
        .arg("-s")
        .arg("512")
        .arg("--no-pci");
    Ok(c)
}

/// spdk_tgt killed by a signal can leave `/dev/hugepages/spdk<id>map_*`
/// behind, which makes the next start with the same id fail.
fn remove_stale_hugepage_maps(shm_id: usize) {
    let prefix = format!("spdk{shm_id}map_");
    if let Ok(entries) = std::fs::read_dir("/dev/hugepages") {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Creates `path` as a sparse file of `bytes`, or grows an existing smaller one.
fn ensure_sparse_file(path: &Path, bytes: u64) -> anyhow::Result<()> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    if file.metadata()?.len() < bytes {
        file.set_len(bytes)
            .with_context(|| format!("sizing {}", path.display()))?;
    }
    Ok(())
}
