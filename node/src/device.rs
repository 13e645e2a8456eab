//! Block device helpers: type check, size, waiting for appearance, and
//! growing the filesystem on a device after the device grew.

use std::fs::File;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{NodeError, Result};

mod ioctl {
    nix::ioctl_read!(
        /// `BLKGETSIZE64`: size of a block device in bytes.
        blkgetsize64,
        0x12,
        114,
        u64
    );
}
use ioctl::blkgetsize64;

/// True when `path` exists and is a block device node (symlinks followed).
pub fn is_block_device(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|m| m.file_type().is_block_device())
        .unwrap_or(false)
}

/// Fails with [`NodeError::NotBlockDevice`] unless `path` is a block device.
pub fn ensure_block_device(path: &Path) -> Result<()> {
    if is_block_device(path) {
        Ok(())
    } else {
        Err(NodeError::NotBlockDevice {
            path: path.to_owned(),
        })
    }
}

/// Size of the block device in bytes (`BLKGETSIZE64`).
pub fn block_device_size(path: &Path) -> Result<u64> {
    ensure_block_device(path)?;
    let file = File::open(path).map_err(|e| NodeError::io("open", path, e))?;
    let mut size: u64 = 0;
    // SAFETY: the fd is open for the duration of the call and `size` is a
    // valid u64 the kernel writes into.
    unsafe { blkgetsize64(file.as_raw_fd(), &mut size) }
        .map_err(|e| NodeError::sys("BLKGETSIZE64", path, e))?;
    Ok(size)
}

/// Waits up to `timeout` for `path` to exist, polling every `poll`.
pub async fn wait_for_path(path: &Path, timeout: Duration, poll: Duration) -> Result<()> {
    wait_until(path, timeout, poll, |p| p.exists(), "device node").await
}

/// Waits up to `timeout` for `path` to be a block device, polling every `poll`.
pub async fn wait_for_device(path: &Path, timeout: Duration, poll: Duration) -> Result<()> {
    wait_until(path, timeout, poll, is_block_device, "block device").await
}

async fn wait_until(
    path: &Path,
    timeout: Duration,
    poll: Duration,
    ready: impl Fn(&Path) -> bool,
    what: &str,
) -> Result<()> {
    let start = Instant::now();
    loop {
        if ready(path) {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            return Err(NodeError::DeviceTimeout {
                what: format!("{what} {}", path.display()),
                waited: timeout,
            });
        }
        tokio::time::sleep(poll).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_file_is_not_a_block_device() {
        let f = tempfile::NamedTempFile::new().unwrap();
        assert!(!is_block_device(f.path()));
        assert!(matches!(
            block_device_size(f.path()),
            Err(NodeError::NotBlockDevice { .. })
        ));
        assert!(!is_block_device(Path::new("/nonexistent/dev")));
    }

    #[tokio::test]
    async fn wait_for_path_times_out_then_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("dev");
        let err = wait_for_path(&p, Duration::from_millis(30), Duration::from_millis(5))
            .await
            .unwrap_err();
        assert!(matches!(err, NodeError::DeviceTimeout { .. }));
        std::fs::write(&p, "").unwrap();
        wait_for_path(&p, Duration::from_millis(30), Duration::from_millis(5))
            .await
            .unwrap();
    }
}
