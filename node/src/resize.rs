//! Growing a mounted filesystem online after its volume was expanded.

use std::path::Path;

use crate::command::{CommandLine, CommandRunner};
use crate::error::Result;
use crate::format::FsType;

/// The command that grows a mounted filesystem to fill its device.
/// ext4 is grown through the device, xfs through its mount point.
pub fn resize_command(device: &Path, mount_path: &Path, fs: FsType) -> CommandLine {
    match fs {
        FsType::Ext4 => CommandLine::new("resize2fs", [device.display().to_string()]),
        FsType::Xfs => CommandLine::new("xfs_growfs", [mount_path.display().to_string()]),
    }
}

/// Grows the filesystem mounted at `mount_path` (on `device`) online.
/// Blocking.
pub fn resize_filesystem(
    runner: &dyn CommandRunner,
    device: &Path,
    mount_path: &Path,
    fs: FsType,
) -> Result<()> {
    let cmd = resize_command(device, mount_path, fs);
    runner.run(&cmd)?.check(&cmd)?;
    tracing::info!(device = %device.display(), mount = %mount_path.display(), %fs, "filesystem grown");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_commands() {
        let dev = Path::new("/dev/nvme1n1");
        let mnt = Path::new("/var/lib/kubelet/x");
        assert_eq!(
            resize_command(dev, mnt, FsType::Ext4).to_string(),
            "resize2fs /dev/nvme1n1"
        );
        assert_eq!(
            resize_command(dev, mnt, FsType::Xfs).to_string(),
            "xfs_growfs /var/lib/kubelet/x"
        );
    }
}
