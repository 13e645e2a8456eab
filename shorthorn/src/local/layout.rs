//! Where the single-machine mode keeps its files inside the state directory.

use std::path::{Path, PathBuf};

/// The file layout of one local cluster.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// A layout rooted at `root` (created by [`Layout::create`]).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Creates the state directory if needed.
    pub fn create(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(self.root.join("nodes"))?;
        std::fs::create_dir_all(self.root.join("kubelet"))
    }

    /// The state directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// PID file of the running `local up`; `local down` signals this process.
    pub fn pid_file(&self) -> PathBuf {
        self.root.join("local.pid")
    }

    /// Written once every component is serving; removed on shutdown.
    pub fn ready_file(&self) -> PathBuf {
        self.root.join("ready")
    }

    /// The CSI socket serving Identity, Controller and Node.
    pub fn csi_socket(&self) -> PathBuf {
        self.root.join("csi.sock")
    }

    /// The controller's admin API socket (`shorthorn ctl`).
    pub fn ctl_socket(&self) -> PathBuf {
        self.root.join("ctl.sock")
    }

    /// The generated controller configuration.
    pub fn controller_config(&self) -> PathBuf {
        self.root.join("controller.toml")
    }

    /// The embedded state store.
    pub fn store_file(&self) -> PathBuf {
        self.root.join("store.redb")
    }

    /// The node service's own state directory.
    pub fn node_state_dir(&self) -> PathBuf {
        self.root.join("node-state")
    }

    /// Directory of storage node `name`.
    pub fn node_dir(&self, name: &str) -> PathBuf {
        self.root.join("nodes").join(name)
    }

    /// JSON-RPC socket of storage node `name`.
    pub fn node_socket(&self, name: &str) -> PathBuf {
        self.node_dir(name).join("spdk.sock")
    }

    /// Backing file of storage node `name`'s base bdev.
    pub fn node_disk(&self, name: &str) -> PathBuf {
        self.node_dir(name).join("disk.img")
    }

    /// Log file of storage node `name`'s process.
    pub fn node_log(&self, name: &str) -> PathBuf {
        self.node_dir(name).join("spdk.log")
    }
}
