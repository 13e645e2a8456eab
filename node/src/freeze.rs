//! Freezing and thawing a mounted filesystem (FIFREEZE / FITHAW).
//! Blocking: freezing flushes dirty data first.

use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::Path;

use nix::errno::Errno;
use nix::libc::c_int;

use crate::error::{NodeError, Result};
use crate::mount::is_mounted;

mod ioctl {
    use nix::libc::c_int;

    nix::ioctl_readwrite!(
        /// `FIFREEZE`: freeze the filesystem of an open file.
        fifreeze,
        b'X',
        119,
        c_int
    );
    nix::ioctl_readwrite!(
        /// `FITHAW`: thaw the filesystem of an open file.
        fithaw,
        b'X',
        120,
        c_int
    );
}
use ioctl::{fifreeze, fithaw};

/// Result of [`freeze`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreezeOutcome {
    /// The filesystem is now frozen.
    Frozen,
    /// It was frozen already (EBUSY).
    AlreadyFrozen,
}

/// Result of [`thaw`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThawOutcome {
    /// The filesystem was thawed.
    Thawed,
    /// It was not frozen (EINVAL).
    NotFrozen,
}

/// Freezes the filesystem mounted at `mount_path`. Refuses a path that is
/// not a mount point, which would otherwise freeze the filesystem holding it.
pub fn freeze(mount_path: &Path) -> Result<FreezeOutcome> {
    let dir = open_mount_point(mount_path)?;
    let mut arg: c_int = 0;
    // SAFETY: the fd is open during the call; the kernel ignores `arg`.
    match unsafe { fifreeze(dir.as_raw_fd(), &mut arg) } {
        Ok(_) => Ok(FreezeOutcome::Frozen),
        Err(Errno::EBUSY) => Ok(FreezeOutcome::AlreadyFrozen),
        Err(e) => Err(NodeError::sys("FIFREEZE", mount_path, e)),
    }
}

/// Thaws the filesystem mounted at `mount_path`.
pub fn thaw(mount_path: &Path) -> Result<ThawOutcome> {
    let dir = open_mount_point(mount_path)?;
    let mut arg: c_int = 0;
    // SAFETY: as in `freeze`.
    match unsafe { fithaw(dir.as_raw_fd(), &mut arg) } {
        Ok(_) => Ok(ThawOutcome::Thawed),
        Err(Errno::EINVAL) => Ok(ThawOutcome::NotFrozen),
        Err(e) => Err(NodeError::sys("FITHAW", mount_path, e)),
    }
}

fn open_mount_point(path: &Path) -> Result<File> {
    if !is_mounted(path)? {
        return Err(NodeError::NotMounted {
            path: path.to_owned(),
        });
    }
    File::open(path).map_err(|e| NodeError::io("open", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_directory_is_never_frozen() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            freeze(dir.path()),
            Err(NodeError::NotMounted { .. })
        ));
        assert!(matches!(
            thaw(dir.path()),
            Err(NodeError::NotMounted { .. })
        ));
    }
}
