//! Mounting, bind mounting and unmounting. Blocking: call from
//! `spawn_blocking` in async code.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};

use crate::error::{NodeError, Result};
use crate::mountinfo::{read_mountinfo, MountEntry};

/// CSI mount flags split into mount(2) flags and the filesystem data string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// Generic flags understood by the VFS.
    pub flags: MsFlags,
    /// Filesystem-specific options, comma separated (may be empty).
    pub data: String,
}

impl MountOptions {
    /// Splits CSI `mount_flags`; each entry may itself be comma separated.
    /// `defaults` is dropped; unknown options go to the data string.
    pub fn parse<S: AsRef<str>>(options: &[S]) -> Self {
        let mut flags = MsFlags::empty();
        let mut data: Vec<&str> = Vec::new();
        for opt in options
            .iter()
            .flat_map(|o| o.as_ref().split(','))
            .map(str::trim)
            .filter(|o| !o.is_empty())
        {
            match opt {
                "defaults" => {}
                "ro" => flags.insert(MsFlags::MS_RDONLY),
                "rw" => flags.remove(MsFlags::MS_RDONLY),
                "noatime" => flags.insert(MsFlags::MS_NOATIME),
                "atime" => flags.remove(MsFlags::MS_NOATIME),
                "nodiratime" => flags.insert(MsFlags::MS_NODIRATIME),
                "diratime" => flags.remove(MsFlags::MS_NODIRATIME),
                "relatime" => flags.insert(MsFlags::MS_RELATIME),
                "norelatime" => flags.remove(MsFlags::MS_RELATIME),
                "strictatime" => flags.insert(MsFlags::MS_STRICTATIME),
                "lazytime" => flags.insert(MsFlags::MS_LAZYTIME),
                "nolazytime" => flags.remove(MsFlags::MS_LAZYTIME),
                "nodev" => flags.insert(MsFlags::MS_NODEV),
                "dev" => flags.remove(MsFlags::MS_NODEV),
                "nosuid" => flags.insert(MsFlags::MS_NOSUID),
                "suid" => flags.remove(MsFlags::MS_NOSUID),
                "noexec" => flags.insert(MsFlags::MS_NOEXEC),
                "exec" => flags.remove(MsFlags::MS_NOEXEC),
                "sync" => flags.insert(MsFlags::MS_SYNCHRONOUS),
                "async" => flags.remove(MsFlags::MS_SYNCHRONOUS),
                "dirsync" => flags.insert(MsFlags::MS_DIRSYNC),
                "silent" => flags.insert(MsFlags::MS_SILENT),
                "loud" => flags.remove(MsFlags::MS_SILENT),
                other => data.push(other),
            }
        }
        MountOptions {
            flags,
            data: data.join(","),
        }
    }
}

/// What a mount target must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// A directory, for filesystems.
    Directory,
    /// A regular file, for binding a block device.
    File,
}

/// Creates the target (and its parents) if missing.
pub fn prepare_target(target: &Path, kind: TargetKind) -> Result<()> {
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(|e| NodeError::io("create", parent, e))?;
    }
    match kind {
        TargetKind::Directory => {
            std::fs::create_dir_all(target).map_err(|e| NodeError::io("create", target, e))
        }
        TargetKind::File => match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(target)
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(NodeError::io("create", target, e)),
        },
    }
}

/// Mounts the filesystem on `device` at `target` with CSI `options`.
pub fn mount<S: AsRef<str>>(
    device: &Path,
    target: &Path,
    fs_type: &str,
    options: &[S],
) -> Result<()> {
    let opts = MountOptions::parse(options);
    let data = (!opts.data.is_empty()).then_some(opts.data.as_str());
    nix::mount::mount(Some(device), target, Some(fs_type), opts.flags, data)
        .map_err(|e| NodeError::sys("mount", target, e))?;
    tracing::info!(device = %device.display(), target = %target.display(), fs_type, "mounted");
    Ok(())
}

/// Bind mounts `source` (a directory, or a block device onto a file target)
/// at `target`. A read-only bind takes a second remount; if that fails the
/// bind is undone.
pub fn bind_mount(source: &Path, target: &Path, read_only: bool) -> Result<()> {
    nix::mount::mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| NodeError::sys("bind mount", target, e))?;
    if read_only {
        let remount = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        if let Err(e) = nix::mount::mount(None::<&str>, target, None::<&str>, remount, None::<&str>)
        {
            if let Err(undo) = unmount(target) {
                tracing::error!(target = %target.display(), error = %undo, "cannot undo bind mount");
            }
            return Err(NodeError::sys("remount read-only", target, e));
        }
    }
    tracing::info!(source = %source.display(), target = %target.display(), read_only, "bind mounted");
    Ok(())
}

/// Unmounts `target` once, never following a symlink at `target` itself.
/// Returns `false` when nothing was mounted there (not a mount point, a
/// symlink, or missing), which is not an error.
pub fn unmount(target: &Path) -> Result<bool> {
    match nix::mount::umount2(target, MntFlags::UMOUNT_NOFOLLOW) {
        Ok(()) => {
            tracing::info!(target = %target.display(), "unmounted");
            Ok(true)
        }
        Err(Errno::EINVAL) | Err(Errno::ENOENT) => Ok(false),
        Err(e) => Err(NodeError::sys("unmount", target, e)),
    }
}

/// The top-most mount at `path`, if any.
pub fn find_mount(path: &Path) -> Result<Option<MountEntry>> {
    let wanted = canonical(path);
    Ok(read_mountinfo()?
        .into_iter()
        .rev()
        .find(|m| m.mount_point == wanted))
}

/// True when something is mounted exactly at `path`.
pub fn is_mounted(path: &Path) -> Result<bool> {
    Ok(find_mount(path)?.is_some())
}

/// The source of the top-most mount at `path` (the device for a block
/// filesystem; for a bound device node, the devtmpfs source).
pub fn mount_source(path: &Path) -> Result<Option<String>> {
    Ok(find_mount(path)?.map(|m| m.source))
}

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csi_flags_are_split() {
        let o =
            MountOptions::parse(&["ro", "noatime,nodev", "nosuid", "discard", "sync", "noexec"]);
        assert_eq!(
            o.flags,
            MsFlags::MS_RDONLY
                | MsFlags::MS_NOATIME
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOSUID
                | MsFlags::MS_SYNCHRONOUS
                | MsFlags::MS_NOEXEC
        );
        assert_eq!(o.data, "discard");
    }

    #[test]
    fn later_options_override_and_data_keeps_order() {
        let o = MountOptions::parse(&["defaults", "ro", "rw", "nouuid", "logbsize=256k", ""]);
        assert_eq!(o.flags, MsFlags::empty());
        assert_eq!(o.data, "nouuid,logbsize=256k");
    }

    #[test]
    fn unmount_of_a_plain_directory_is_ok() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!unmount(dir.path()).unwrap());
        assert!(!unmount(&dir.path().join("missing")).unwrap());
        assert!(!is_mounted(dir.path()).unwrap());
    }

    #[test]
    fn prepare_target_creates_file_and_dir() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a/b/file");
        prepare_target(&f, TargetKind::File).unwrap();
        prepare_target(&f, TargetKind::File).unwrap();
        assert!(f.is_file());
        let d = dir.path().join("c/d");
        prepare_target(&d, TargetKind::Directory).unwrap();
        assert!(d.is_dir());
    }
}
