//! The state of one simulated spdk_tgt process.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::bdev::BdevRegistry;

/// How one sim process is started.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Path of the JSON-RPC Unix socket (spdk_tgt's `-r`).
    pub rpc_socket: PathBuf,
    /// Directory for the sim's own files (FUSE mount points, scratch).
    pub data_dir: PathBuf,
}

/// One simulated spdk_tgt: every module's state. Each module owns its field
/// and guards it with its own lock; the registry lock is never held across an await.
pub struct Sim {
    /// Start-up configuration.
    pub config: SimConfig,
    /// Every bdev by name.
    pub bdevs: Mutex<BdevRegistry>,
    /// lvstores and lvols.
    pub lvol: crate::lvol::LvolState,
    /// NVMe-oF target: transports, subsystems, listeners.
    pub nvmf: crate::nvmf::NvmfState,
    /// NVMe-oF initiator: controllers attached with `bdev_nvme_attach_controller`.
    pub nvme: crate::nvme::NvmeState,
    /// raid bdevs.
    pub raid: crate::raid::RaidState,
    /// ublk target and disks.
    pub ublk: crate::ublk::UblkState,
    /// Typed handles on aio bdevs, by name, for `bdev_aio_rescan`.
    pub aio_files: Mutex<HashMap<String, Arc<crate::base::aio::AioBdev>>>,
    /// Woken by `spdk_kill_instance`: the server stops.
    pub killed: tokio::sync::Notify,
    /// Process start, the origin of iostat ticks.
    pub started: Instant,
}

impl Sim {
    /// A sim with no bdevs.
    pub fn new(config: SimConfig) -> Self {
        Self {
            config,
            bdevs: Mutex::new(BdevRegistry::default()),
            lvol: Default::default(),
            nvmf: Default::default(),
            nvme: Default::default(),
            raid: Default::default(),
            ublk: Default::default(),
            aio_files: Mutex::new(HashMap::new()),
            killed: tokio::sync::Notify::new(),
            started: Instant::now(),
        }
    }
}
