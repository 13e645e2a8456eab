//! Starts and stops the local cluster's storage nodes: one `shorthorn sim`
//! process each, or real SPDK when `SHORTHORN_SPDK_TGT` names `spdk_tgt`.
//!
//! Processes are started by testkit's launcher, the one code path tests and
//! the bench use too: node-1 runs the node service and assembles raids, so it
//! polls `spdk_tgt`; the others only serve replicas and sleep in
//! `nvmf_tgt --interrupt-mode` (see `testkit::launch`).

use std::fs::File;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use testkit::launch::{self, NodeProcess, NodeSpec, Program, Role};
use testkit::spdk_env::{RealSpdk, NVMF_TGT_ENV, SPDK_DD_ENV};

use super::layout::Layout;

/// Environment variable naming a real `spdk_tgt` binary to use instead of the sim.
pub const SPDK_TGT_ENV: &str = testkit::spdk_env::SPDK_TGT_ENV;

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
    process: NodeProcess,
}

/// Node `index` (1-based) of a local cluster: node-1 publishes volumes.
fn role(index: usize) -> Role {
    if index == 1 {
        Role::Engine
    } else {
        Role::Replica
    }
}

/// A shared-memory id per state directory and node, so a restarted `local up`
/// reuses (and first cleans) the hugepage maps a killed one left.
fn shm_id(layout: &Layout, index: usize) -> u32 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    layout.root().hash(&mut h);
    20_000 + (h.finish() % 1000) as u32 * 16 + index as u32 % 16
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
        let program = match engine {
            Engine::Sim => Program::Sim {
                command: std::env::current_exe().context("locating the shorthorn binary")?,
                args: vec!["sim".into()],
                data_dir: dir.join("sim"),
            },
            Engine::SpdkTgt(bin) => Program::Real(
                RealSpdk::from_vars(
                    Some(bin.clone().into_os_string()),
                    std::env::var_os(NVMF_TGT_ENV),
                    std::env::var_os(SPDK_DD_ENV),
                )?
                .with_context(|| format!("{SPDK_TGT_ENV} is empty"))?,
            ),
        };
        // Place this node as the last of an `index`-node cluster: its core
        // depends only on the nodes before it.
        let roles: Vec<Role> = (1..=index).map(role).collect();
        let slot = *launch::place(&roles, launch::available_cores())
            .last()
            .context("placing the node")?;
        let spec = NodeSpec {
            name: name.clone(),
            role: role(index),
            program,
            socket: socket.clone(),
            log: layout.node_log(&name),
            shm_id: shm_id(layout, index),
            slot,
            append_log: true,
            // Spawned here, on a runtime worker that lives as long as `local up`:
            // the node must not outlive it, even if it is killed with SIGKILL.
            die_with_parent: true,
        };
        let mut process = NodeProcess::spawn(spec)?;
        let (process, took) = tokio::task::spawn_blocking(move || {
            let took = process.wait_ready(READY_TIMEOUT);
            (process, took)
        })
        .await
        .context("waiting for a storage node")?;
        let took = took?;
        tracing::info!(node = %name, command = %process.command(), ready_ms = took.as_millis() as u64, "storage node started");
        Ok(StorageNode {
            name,
            socket,
            process,
        })
    }

    /// Asks the node to stop (SIGINT), then kills it if it has not exited in time.
    pub fn stop(&mut self) {
        self.process.stop();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_one_assembles_raids_and_the_others_only_serve_replicas() {
        assert_eq!(role(1), Role::Engine);
        assert_eq!(role(2), Role::Replica);
        assert_eq!(role(3), Role::Replica);
    }

    #[test]
    fn shared_memory_ids_are_stable_per_state_dir_and_unique_per_node() {
        let a = Layout::new("/tmp/a");
        let b = Layout::new("/tmp/b");
        assert_eq!(shm_id(&a, 1), shm_id(&a, 1));
        assert_ne!(shm_id(&a, 1), shm_id(&a, 2));
        assert_ne!(shm_id(&a, 1), shm_id(&b, 1));
    }

    /// `local up`'s own start path on real SPDK (its frontends need a kernel
    /// this machine may lack, so `local up` itself may refuse to run here).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn real_nodes_start_with_their_roles() {
        let Some(_) = testkit::spdk_env::real_or_skip("real_nodes_start_with_their_roles") else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        layout.create().unwrap();
        let engine = Engine::from_env();
        let started = std::time::Instant::now();
        let mut one = StorageNode::start(&layout, &engine, 1, 64 << 20)
            .await
            .unwrap();
        let mut two = StorageNode::start(&layout, &engine, 2, 64 << 20)
            .await
            .unwrap();
        println!("2 real local nodes ready in {:?}", started.elapsed());
        assert!(
            one.process.command().contains("spdk_tgt -m 0x1"),
            "{}",
            one.process.command()
        );
        assert!(!one.process.command().contains("--interrupt-mode"));
        assert!(
            two.process.command().contains("--interrupt-mode"),
            "{}",
            two.process.command()
        );
        one.stop();
        two.stop();
        assert!(!one.process.is_running() && !two.process.is_running());
    }
}
