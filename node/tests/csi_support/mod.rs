//! Shared by the CSI node tests: loop-device "volumes" handed over through
//! a ublk-style publish_context, a node service on a Unix socket, and guards
//! that leave nothing mounted or attached.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use csi_proto::node_client::NodeClient;
use csi_proto::volume_capability::{
    access_mode::Mode, AccessMode, AccessType, BlockVolume, MountVolume,
};
use csi_proto::*;
use shorthorn_node::csi::{serve_node, NodeServiceConfig};
use tokio::sync::oneshot;
use tonic::transport::Channel;

/// A sparse file attached as a loop device; detached on drop.
pub struct LoopVolume {
    pub vol: Vol,
}

/// Paths of a loop volume (the fixture owns the device).
#[derive(Clone, Debug)]
pub struct Vol {
    pub file: PathBuf,
    pub device: PathBuf,
}

impl LoopVolume {
    pub fn new(dir: &Path, name: &str, size: u64) -> Self {
        let file = dir.join(format!("{name}.img"));
        let f = std::fs::File::create(&file).unwrap();
        f.set_len(size).unwrap();
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let device = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
        LoopVolume {
            vol: Vol { file, device },
        }
    }
}

impl Vol {
    /// Grows the backing file and tells the loop driver (`losetup -c`).
    pub fn grow(&self, size: u64) {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&self.file)
            .unwrap()
            .set_len(size)
            .unwrap();
        let st = Command::new("losetup")
            .arg("-c")
            .arg(&self.device)
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// The publish_context the controller would send for a ublk disk.
    pub fn context(&self) -> HashMap<String, String> {
        HashMap::from([
            ("frontend".to_owned(), "ublk".to_owned()),
            ("ublk.device".to_owned(), self.device.display().to_string()),
            ("ublk.id".to_owned(), "0".to_owned()),
        ])
    }
}

impl Drop for LoopVolume {
    fn drop(&mut self) {
        let _ = Command::new("losetup")
            .arg("-d")
            .arg(&self.vol.device)
            .status();
    }
}

/// Lazily unmounts everything under `root` (deepest first).
pub fn unmount_under(root: &Path) {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(root))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for p in points {
        let _ = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Number of mounts exactly at `path`.
pub fn mounts_at(path: &Path) -> usize {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| Path::new(p) == path)
        .count()
}

/// A node service on a Unix socket with its own state dir.
pub struct Node {
    pub client: NodeClient<Channel>,
    pub dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Node {
    pub async fn start(dir: &Path) -> Self {
        Self::start_with_spdk(dir, None).await
    }

    /// A node service that asks the spdk_tgt at `spdk_socket` about engines.
    pub async fn start_with_spdk(dir: &Path, spdk_socket: Option<PathBuf>) -> Self {
        let socket = dir.join("csi.sock");
        let mut config = NodeServiceConfig::new("shorthorn.test", "node-a", dir.join("state"));
        config.max_volumes_per_node = 64;
        config
            .topology
            .insert("topology.shorthorn.io/node".into(), "node-a".into());
        config.device_mapper = Some(false);
        config.attach_timeout = std::time::Duration::from_millis(500);
        config.spdk_socket = spdk_socket;
        // The tests' staging and target paths live in `dir`; their "ublk"
        // volumes are loop devices, as the sim's are.
        config.kubelet_dir = dir.to_path_buf();
        config.ublk_devices = shorthorn_node::csi::UblkDevicePattern::UblkOrSimLoop;
        let (stop, stopped) = oneshot::channel::<()>();
        let sock = socket.clone();
        let task = tokio::spawn(async move {
            serve_node(config, &sock, async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        let channel = loop {
            if let Ok(c) = csi_proto::uds::connect(&socket).await {
                break c;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        Node {
            client: NodeClient::new(channel),
            dir: dir.to_path_buf(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
    }
}

/// Everything a test creates; on drop unmounts all under its dir, then the
/// loop devices detach.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub volumes: Vec<LoopVolume>,
}

impl Fixture {
    pub fn new() -> Self {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
            volumes: Vec::new(),
        }
    }

    pub fn volume(&mut self, size: u64) -> Vol {
        let name = format!("vol{}", self.volumes.len());
        let lv = LoopVolume::new(self.dir.path(), &name, size);
        let vol = lv.vol.clone();
        self.volumes.push(lv);
        vol
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        unmount_under(self.dir.path());
        self.volumes.clear();
    }
}

pub fn mount_cap(fs: &str, mode: Mode) -> VolumeCapability {
    VolumeCapability {
        access_mode: Some(AccessMode { mode: mode as i32 }),
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: fs.into(),
            ..Default::default()
        })),
    }
}

pub fn block_cap(mode: Mode) -> VolumeCapability {
    VolumeCapability {
        access_mode: Some(AccessMode { mode: mode as i32 }),
        access_type: Some(AccessType::Block(BlockVolume {})),
    }
}

pub fn stage_req(
    id: &str,
    vol: &Vol,
    staging: &Path,
    cap: VolumeCapability,
) -> NodeStageVolumeRequest {
    NodeStageVolumeRequest {
        volume_id: id.into(),
        publish_context: vol.context(),
        staging_target_path: staging.display().to_string(),
        volume_capability: Some(cap),
        ..Default::default()
    }
}

pub fn publish_req(
    id: &str,
    staging: &Path,
    target: &Path,
    cap: VolumeCapability,
    readonly: bool,
) -> NodePublishVolumeRequest {
    NodePublishVolumeRequest {
        volume_id: id.into(),
        staging_target_path: staging.display().to_string(),
        target_path: target.display().to_string(),
        volume_capability: Some(cap),
        readonly,
        ..Default::default()
    }
}

pub fn unstage_req(id: &str, staging: &Path) -> NodeUnstageVolumeRequest {
    NodeUnstageVolumeRequest {
        volume_id: id.into(),
        staging_target_path: staging.display().to_string(),
    }
}

pub fn unpublish_req(id: &str, target: &Path) -> NodeUnpublishVolumeRequest {
    NodeUnpublishVolumeRequest {
        volume_id: id.into(),
        target_path: target.display().to_string(),
    }
}
