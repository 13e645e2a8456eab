//! The CSI Node service: stage (attach, format, mount), publish (bind into
//! the pod), stats and expansion, over the kernel layer.
//!
//! Per-volume staging state lives in small JSON files under the node state
//! dir ([`StagingStore`]), so a restarted service finds its staged volumes
//! and never attaches one twice.

mod engine;
mod identity;
mod locks;
mod publish;
mod request;
mod server;
mod service;
mod stage;
mod state;
mod status;
mod usage;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub use identity::IdentityService;
pub use request::{AccessKind, UblkDevicePattern};
pub use server::serve_node;
pub use service::NodeService;
pub use state::{Publication, StagedVolume, StagingStore};

use crate::format::FsType;

/// Configuration of the CSI Node service.
#[derive(Debug, Clone)]
pub struct NodeServiceConfig {
    /// CSI driver name reported by the Identity service.
    pub driver_name: String,
    /// Node id (the Kubernetes node name).
    pub node_id: String,
    /// Reported in NodeGetInfo; 0 means no limit.
    pub max_volumes_per_node: i64,
    /// Topology segment reported in NodeGetInfo.
    pub topology: BTreeMap<String, String>,
    /// Node state dir; staging records go to `<state_dir>/volumes`.
    pub state_dir: PathBuf,
    /// Stack dm-linear over attached devices; `None` uses it when the probe
    /// finds device-mapper.
    pub device_mapper: Option<bool>,
    /// Filesystem when the capability names none.
    pub default_fs: FsType,
    /// How long attach waits for the device to appear.
    pub attach_timeout: Duration,
    /// The local spdk_tgt JSON-RPC socket, where NodeGetVolumeStats reads the
    /// state of the volume's raid; `None` reports that state as unknown.
    pub spdk_socket: Option<PathBuf>,
    /// The kubelet root directory: every staging and target path must lie
    /// strictly inside it, so nothing outside is ever unmounted or removed.
    pub kubelet_dir: PathBuf,
    /// Which ublk device paths a publish_context may name.
    pub ublk_devices: UblkDevicePattern,
}

/// The kubelet root directory unless configured otherwise.
pub const DEFAULT_KUBELET_DIR: &str = "/var/lib/kubelet";

impl NodeServiceConfig {
    /// Defaults: ext4, no volume limit, 30 s attach timeout, device-mapper
    /// when available, no SPDK socket, paths under `/var/lib/kubelet`,
    /// ublk devices `/dev/ublkb<id>` only.
    pub fn new(
        driver_name: impl Into<String>,
        node_id: impl Into<String>,
        state_dir: PathBuf,
    ) -> Self {
        NodeServiceConfig {
            driver_name: driver_name.into(),
            node_id: node_id.into(),
            max_volumes_per_node: 0,
            topology: BTreeMap::new(),
            state_dir,
            device_mapper: None,
            default_fs: FsType::Ext4,
            attach_timeout: Duration::from_secs(30),
            spdk_socket: None,
            kubelet_dir: PathBuf::from(DEFAULT_KUBELET_DIR),
            ublk_devices: UblkDevicePattern::Ublk,
        }
    }
}
