//! Leaves nothing behind: unmounts every mount that belongs to a local
//! cluster and detaches every loop device whose backing file lives in its
//! state directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use shorthorn_node::mount::unmount;
use shorthorn_node::mountinfo::read_mountinfo;

/// What a sweep found and removed.
#[derive(Debug, Default)]
pub struct SweepReport {
    /// Mount points unmounted.
    pub unmounted: Vec<PathBuf>,
    /// Loop devices detached.
    pub detached: Vec<String>,
    /// Things that could not be removed, with the reason.
    pub failures: Vec<String>,
}

/// Unmounts mounts under `root` or backed by loop devices over files under
/// `root` (deepest first), then detaches those loop devices.
pub fn sweep(root: &Path) -> SweepReport {
    let mut report = SweepReport::default();
    let loops = loop_devices_backed_under(root);
    match read_mountinfo() {
        Ok(mounts) => {
            let mut targets: Vec<PathBuf> = mounts
                .iter()
                .filter(|m| m.mount_point.starts_with(root) || loops.contains(&m.source))
                .map(|m| m.mount_point.clone())
                .collect();
            // Deepest first, so bind mounts go before what they bind.
            targets.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
            targets.dedup();
            for t in targets {
                match unmount(&t) {
                    Ok(_) => report.unmounted.push(t),
                    Err(e) => report
                        .failures
                        .push(format!("unmount {}: {e}", t.display())),
                }
            }
        }
        Err(e) => report.failures.push(format!("reading mountinfo: {e}")),
    }
    for dev in loops {
        match Command::new("losetup").arg("-d").arg(&dev).output() {
            Ok(o) if o.status.success() => report.detached.push(dev),
            Ok(o) => report.failures.push(format!(
                "losetup -d {dev}: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => report.failures.push(format!("losetup -d {dev}: {e}")),
        }
    }
    report
}

/// `/dev/loopN` devices whose backing file is under `root`.
fn loop_devices_backed_under(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.starts_with("loop") {
            continue;
        }
        let Ok(backing) = std::fs::read_to_string(e.path().join("loop/backing_file")) else {
            continue;
        };
        if Path::new(backing.trim()).starts_with(root) {
            out.push(format!("/dev/{name}"));
        }
    }
    out
}
