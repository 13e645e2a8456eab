//! Capacity and inode usage of a published volume (CSI NodeGetVolumeStats).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::device::{block_device_size, is_block_device};
use crate::error::{NodeError, Result};

/// Usage of a mounted filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesystemStats {
    /// Total size in bytes.
    pub bytes_total: u64,
    /// Bytes available to unprivileged users.
    pub bytes_available: u64,
    /// Bytes in use.
    pub bytes_used: u64,
    /// Total inodes.
    pub inodes_total: u64,
    /// Free inodes.
    pub inodes_free: u64,
    /// Inodes in use.
    pub inodes_used: u64,
}

/// Stats of a volume path: a mounted filesystem or a raw block device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeStats {
    /// A filesystem volume.
    Filesystem(FilesystemStats),
    /// A raw block volume: only its size is known.
    Block {
        /// Device size in bytes.
        bytes_total: u64,
    },
}

/// Stats for `path`: statvfs for a filesystem path, the device size for a
/// block device (or a file target a block device is bound onto).
// statvfs field widths differ between targets; the conversions are no-ops
// only on 64-bit ones.
#[allow(clippy::useless_conversion)]
pub fn volume_stats(path: &Path) -> Result<VolumeStats> {
    if is_block_device(path) {
        return Ok(VolumeStats::Block {
            bytes_total: block_device_size(path)?,
        });
    }
    let s = nix::sys::statvfs::statvfs(path).map_err(|e| NodeError::sys("statvfs", path, e))?;
    let frag = u64::from(s.fragment_size());
    let blocks = u64::from(s.blocks());
    let free = u64::from(s.blocks_free());
    let avail = u64::from(s.blocks_available());
    let files = u64::from(s.files());
    let files_free = u64::from(s.files_free());
    Ok(VolumeStats::Filesystem(FilesystemStats {
        bytes_total: blocks.saturating_mul(frag),
        bytes_available: avail.saturating_mul(frag),
        bytes_used: blocks.saturating_sub(free).saturating_mul(frag),
        inodes_total: files,
        inodes_free: files_free,
        inodes_used: files.saturating_sub(files_free),
    }))
}
