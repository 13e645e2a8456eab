//! ublk: `ublk_*` methods. This kernel has no ublk driver, so a started disk
//! is the bdev served as a file through FUSE with a loop device on top; I/O
//! on the loop device goes through the sim's bdev stack.

mod disk;
mod fuse_fs;
mod loopdev;
mod rpc;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::rpc_error::RpcError;
use crate::sim::Sim;

/// Mutable ublk state.
#[derive(Default)]
pub struct UblkInner {
    /// Whether `ublk_create_target` ran.
    pub target: bool,
    /// Disks by ublk id; `None` while one is starting or stopping.
    pub disks: BTreeMap<u32, Option<disk::Disk>>,
}

/// State of the ublk module inside one sim process.
#[derive(Default)]
pub struct UblkState {
    /// Target flag and disks.
    pub inner: Mutex<UblkInner>,
}

/// Tears down loop devices and FUSE mounts a previous run of the sim left
/// under `data_dir` (a crash skips `ublk_stop_disk`). Call once at startup.
pub fn cleanup_stale(data_dir: &Path) {
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
