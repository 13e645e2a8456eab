//! ublk: `ublk_*` methods. Where the kernel has no ublk driver (or the sim
//! is built without feature `real-ublk`), a started disk is the bdev served
//! as a file through FUSE with a loop device on top; with the feature and
//! `/dev/ublk-control`, it is a real ublk device `/dev/ublkb<id>` (module
//! `real`). Either way I/O on the block device goes through the sim's bdev
//! stack.

mod disk;
mod fuse_fs;
mod loopdev;
#[cfg(feature = "real-ublk")]
mod real;
mod rpc;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::bdev::Bdev;

use serde_json::Value;

use crate::rpc_error::RpcError;
use crate::sim::Sim;

/// Mutable ublk state.
#[derive(Default)]
pub struct UblkInner {
    /// Whether `ublk_create_target` ran.
    pub target: bool,
    /// Disks by ublk id; `None` while one is starting or stopping.
    pub disks: BTreeMap<u32, Option<StartedDisk>>,
}

/// A started disk.
pub enum StartedDisk {
    /// The FUSE + loop stand-in.
    Loop(disk::Disk),
    /// A real ublk device.
    #[cfg(feature = "real-ublk")]
    Real(real::RealDisk),
}

impl StartedDisk {
    /// Starts disk `id` over `bdev`: a real ublk device when the sim is built
    /// with `real-ublk` and the kernel has ublk, the FUSE + loop stand-in
    /// otherwise. Blocking.
    pub fn start(
        data_dir: &Path,
        id: u32,
        bdev_name: String,
        bdev: Arc<dyn Bdev>,
        num_queues: u32,
        queue_depth: u32,
        rt: tokio::runtime::Handle,
    ) -> std::io::Result<StartedDisk> {
        #[cfg(feature = "real-ublk")]
        if real::available() {
            return real::RealDisk::start(
                data_dir,
                id,
                bdev_name,
                bdev,
                num_queues,
                queue_depth,
                rt,
            )
            .map(StartedDisk::Real);
        }
        disk::Disk::start(data_dir, id, bdev_name, bdev, num_queues, queue_depth, rt)
            .map(StartedDisk::Loop)
    }

    /// Stops the disk and removes its block device. Blocking.
    pub fn stop(self) {
        match self {
            StartedDisk::Loop(d) => d.stop(),
            #[cfg(feature = "real-ublk")]
            StartedDisk::Real(d) => d.stop(),
        }
    }

    /// ublk id.
    pub fn id(&self) -> u32 {
        match self {
            StartedDisk::Loop(d) => d.id,
            #[cfg(feature = "real-ublk")]
            StartedDisk::Real(d) => d.id,
        }
    }

    /// The `ublk_get_disks` entry.
    pub fn info(&self) -> Value {
        let (name, id, qd, nq, dev) = match self {
            StartedDisk::Loop(d) => (&d.bdev_name, d.id, d.queue_depth, d.num_queues, &d.loop_dev),
            #[cfg(feature = "real-ublk")]
            StartedDisk::Real(d) => (&d.bdev_name, d.id, d.queue_depth, d.num_queues, &d.dev),
        };
        serde_json::json!({"bdev_name": name, "id": id, "queue_depth": qd,
                           "num_queues": nq, "ublk_device": dev.display().to_string()})
    }
}

/// State of the ublk module inside one sim process.
#[derive(Default)]
pub struct UblkState {
    /// Target flag and disks.
    pub inner: Mutex<UblkInner>,
}

/// Tears down loop devices and FUSE mounts a previous run of the sim left
/// under `data_dir` (a crash skips `ublk_stop_disk`), and with feature
/// `real-ublk` its kernel ublk devices. Call once at startup.
pub fn cleanup_stale(data_dir: &Path) {
    #[cfg(feature = "real-ublk")]
    real::cleanup_stale(data_dir);
    let root = data_dir.join("ublk");
    let Ok(entries) = std::fs::read_dir(&root) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let rec = disk::read_record(&dir);
        if let Some(rec) = &rec {
            if let Some(dev) = &rec.loop_dev {
                if loop_backed_by(dev, &rec.mount) {
                    if let Err(e) = loopdev::detach(dev) {
                        tracing::warn!(dev = %dev.display(), error = %e, "stale loop detach failed");
                    }
                }
            }
            disk::unmount(&rec.mount);
        } else {
            disk::unmount(&dir.join("mnt"));
        }
        tracing::info!(dir = %dir.display(), "cleaned up stale ublk disk");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Whether loop device `dev` is still attached to the file in `mount`
/// (and not reused by someone else since).
fn loop_backed_by(dev: &Path, mount: &Path) -> bool {
    let Some(name) = dev.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let Ok(backing) = std::fs::read_to_string(format!("/sys/block/{name}/loop/backing_file"))
    else {
        return false;
    };
    Path::new(backing.trim()).starts_with(mount)
}

/// Handles this module's JSON-RPC methods; `None` when the method is not one of them.
pub async fn handle(
    sim: &Arc<Sim>,
    method: &str,
    params: Option<&Value>,
) -> Option<Result<Value, RpcError>> {
    rpc::handle(sim, method, params).await
}
