//! Helpers for kernel tests: sparse files, loop devices and mounts that are
//! cleaned up in Drop, even when a test panics.

#![allow(dead_code)]

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Command;

use shorthorn_node::freeze;
use shorthorn_node::mount::unmount;
use shorthorn_node::mountinfo::read_mountinfo;

pub const MIB: u64 = 1024 * 1024;

/// True when running as root; kernel tests need it.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// True when the effective capability set holds CAP_SYS_RESOURCE, which
/// ext4 online resize (EXT4_IOC_RESIZE_FS) requires; some sandboxes drop it.
pub fn has_cap_sys_resource() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0)
}

/// Skips (returns early from) a test when not root.
#[macro_export]
macro_rules! require_root {
    () => {
        if !common::is_root() {
            eprintln!("skipping: kernel tests need root");
            return;
        }
    };
}

/// Creates a sparse file of `size` bytes.
pub fn sparse_file(path: &Path, size: u64) {
    let f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)
        .expect("create backing file");
    f.set_len(size).expect("size backing file");
}

/// A loop device over a file, detached on drop.
pub struct LoopDevice {
    pub path: PathBuf,
    pub backing: PathBuf,
}

impl LoopDevice {
    /// Attaches `backing` to a free loop device.
    pub fn attach(backing: &Path) -> LoopDevice {
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(backing)
            .output()
            .expect("run losetup");
        assert!(
            out.status.success(),
            "losetup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        LoopDevice {
            path,
            backing: backing.to_owned(),
        }
    }

    /// Makes the loop device pick up a changed backing file size
    /// (LOOP_SET_CAPACITY).
    pub fn refresh_capacity(&self) {
        let st = Command::new("losetup")
            .arg("-c")
            .arg(&self.path)
            .status()
            .expect("run losetup -c");
        assert!(st.success(), "losetup -c failed");
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.path).status();
        // The kernel defers the detach while anything (e.g. a udev probe)
        // still has the device open; wait for it so the next check is true.
        let name = self.path.file_name().unwrap_or_default().to_owned();
        let backing = Path::new("/sys/block").join(name).join("loop/backing_file");
        for _ in 0..200 {
            if !backing.exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

/// A mount point that is thawed and unmounted (all stacked mounts) on drop.
pub struct MountGuard {
    pub path: PathBuf,
}

impl MountGuard {
    /// Guards `path`; the caller mounts it afterwards.
    pub fn new(path: &Path) -> MountGuard {
        MountGuard {
            path: path.to_owned(),
        }
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        for _ in 0..8 {
            let _ = freeze::thaw(&self.path);
            match unmount(&self.path) {
                Ok(true) => continue,
                Ok(false) => return,
                Err(_) => {
                    let _ = nix::mount::umount2(&self.path, nix::mount::MntFlags::MNT_DETACH);
                }
            }
        }
    }
}

/// Panics if anything under `dir` is still mounted or a loop device still
/// uses a file under it.
pub fn assert_nothing_left(dir: &Path) {
    let mounts: Vec<_> = read_mountinfo()
        .expect("mountinfo")
        .into_iter()
        .filter(|m| m.mount_point.starts_with(dir))
        .collect();
    assert!(mounts.is_empty(), "left mounted: {mounts:?}");
    let out = Command::new("losetup")
        .arg("-a")
        .output()
        .expect("run losetup -a");
    let listing = String::from_utf8_lossy(&out.stdout);
    let dir = dir.display().to_string();
    let loops: Vec<&str> = listing.lines().filter(|l| l.contains(&dir)).collect();
    assert!(loops.is_empty(), "left attached: {loops:?}");
}
