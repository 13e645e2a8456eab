//! Detecting what a device holds and creating filesystems on blank devices.
//!
//! A device is formatted only when a low-level `blkid -p` probe finds no
//! signature at all: no filesystem, no partition table, no RAID/LVM member,
//! and no ambivalent result. Blocking: call from `spawn_blocking`.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::command::{CommandLine, CommandRunner};
use crate::device::ensure_block_device;
use crate::error::{NodeError, Result};

/// blkid exit code: nothing was found.
const BLKID_NOTHING_FOUND: i32 = 2;
/// blkid exit code: low-level probing found conflicting signatures.
const BLKID_AMBIVALENT: i32 = 8;

/// Filesystems the node can create and grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsType {
    /// ext4
    Ext4,
    /// XFS
    Xfs,
}

impl FsType {
    /// Name as used by mount(2) and blkid.
    pub fn as_str(self) -> &'static str {
        match self {
            FsType::Ext4 => "ext4",
            FsType::Xfs => "xfs",
        }
    }
}

impl fmt::Display for FsType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FsType {
    type Err = NodeError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "ext4" => Ok(FsType::Ext4),
            "xfs" => Ok(FsType::Xfs),
            other => Err(NodeError::UnsupportedFilesystem {
                fs_type: other.to_owned(),
            }),
        }
    }
}

/// Something found on a device that makes it "not blank".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signature {
    /// A filesystem or other content type (`TYPE`, e.g. `ext4`, `LVM2_member`).
    Content(String),
    /// A partition table (`PTTYPE`, e.g. `gpt`, `dos`).
    PartitionTable(String),
    /// blkid found conflicting signatures.
    Ambivalent,
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Signature::Content(t) => write!(f, "a {t} signature"),
            Signature::PartitionTable(t) => write!(f, "a {t} partition table"),
            Signature::Ambivalent => f.write_str("conflicting signatures"),
        }
    }
}

/// The low-level probe command for `device`.
pub fn blkid_command(device: &Path) -> CommandLine {
    CommandLine::new(
        "blkid",
        [
            "-p".to_owned(),
            "-o".into(),
            "export".into(),
            device.display().to_string(),
        ],
    )
}

/// The mkfs command for `fs` on `device`. xfs is run without `-f`, so it
/// too refuses to overwrite a signature.
pub fn mkfs_command(device: &Path, fs: FsType) -> CommandLine {
    let dev = device.display().to_string();
    match fs {
        FsType::Ext4 => CommandLine::new("mkfs.ext4", ["-F".to_owned(), "-q".into(), dev]),
        FsType::Xfs => CommandLine::new("mkfs.xfs", ["-q".to_owned(), dev]),
    }
}

/// Probes `device` for any signature; `None` means blank.
pub fn probe_signature(runner: &dyn CommandRunner, device: &Path) -> Result<Option<Signature>> {
    let cmd = blkid_command(device);
    let out = runner.run(&cmd)?;
    match out.status {
        Some(0) => {}
        Some(BLKID_NOTHING_FOUND) => return Ok(None),
        Some(BLKID_AMBIVALENT) => return Ok(Some(Signature::Ambivalent)),
        _ => return Err(out.into_error(&cmd)),
    }
    let value = |key: &str| {
        out.stdout
            .lines()
            .filter_map(|l| l.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.trim().to_owned())
    };
    if let Some(t) = value("TYPE") {
        return Ok(Some(Signature::Content(t)));
    }
    if let Some(pt) = value("PTTYPE") {
        return Ok(Some(Signature::PartitionTable(pt)));
    }
    // blkid answered "found" but named nothing we understand: not blank.
    Ok(Some(Signature::Ambivalent))
}

/// The filesystem type on `device`, `None` when it holds no filesystem
/// (a blank device, or one holding only a partition table).
pub fn probe_filesystem(runner: &dyn CommandRunner, device: &Path) -> Result<Option<String>> {
    Ok(match probe_signature(runner, device)? {
        Some(Signature::Content(t)) => Some(t),
        _ => None,
    })
}

/// Creates a `fs` filesystem on `device` after checking that it is a block
/// device holding no signature. Never formats a non-blank device.
pub fn format(runner: &dyn CommandRunner, device: &Path, fs: FsType) -> Result<()> {
    ensure_block_device(device)?;
    format_blank(runner, device, fs)
}

fn format_blank(runner: &dyn CommandRunner, device: &Path, fs: FsType) -> Result<()> {
    if let Some(sig) = probe_signature(runner, device)? {
        return Err(NodeError::DeviceNotBlank {
            device: device.to_owned(),
            signature: sig.to_string(),
        });
    }
    let cmd = mkfs_command(device, fs);
    runner.run(&cmd)?.check(&cmd)?;
    tracing::info!(device = %device.display(), %fs, "filesystem created");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::testing::{exit, ScriptedRunner};

    const DEV: &str = "/dev/fake0";

    #[test]
    fn fs_type_parsing() {
        assert_eq!("xfs".parse::<FsType>().unwrap(), FsType::Xfs);
        let err = "btrfs".parse::<FsType>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported filesystem type \"btrfs\" (supported: ext4, xfs)"
        );
    }

    #[test]
    fn blkid_outcomes() {
        let cases = [
            (exit(2, ""), Ok(None)),
            (
                exit(0, "DEVNAME=/dev/fake0\nUUID=abc\nTYPE=xfs\n"),
                Ok(Some(Signature::Content("xfs".into()))),
            ),
            (
                exit(0, "DEVNAME=/dev/fake0\nPTUUID=1\nPTTYPE=gpt\n"),
                Ok(Some(Signature::PartitionTable("gpt".into()))),
            ),
            (exit(8, ""), Ok(Some(Signature::Ambivalent))),
            (exit(4, ""), Err(())),
        ];
        for (answer, expected) in cases {
            let r = ScriptedRunner::answering(vec![answer.clone()]);
            let got = probe_signature(&r, Path::new(DEV)).map_err(|_| ());
            assert_eq!(got, expected, "for {answer:?}");
            assert_eq!(r.calls(), vec!["blkid -p -o export /dev/fake0"]);
        }
    }

    #[test]
    fn probe_filesystem_ignores_partition_tables() {
        let r = ScriptedRunner::answering(vec![exit(0, "PTTYPE=dos\n")]);
        assert_eq!(probe_filesystem(&r, Path::new(DEV)).unwrap(), None);
        let r = ScriptedRunner::answering(vec![exit(0, "TYPE=ext4\n")]);
        assert_eq!(
            probe_filesystem(&r, Path::new(DEV)).unwrap().as_deref(),
            Some("ext4")
        );
    }

    #[test]
    fn blank_device_is_formatted() {
        let r = ScriptedRunner::answering(vec![exit(2, ""), exit(0, "")]);
        format_blank(&r, Path::new(DEV), FsType::Xfs).unwrap();
        assert_eq!(
            r.calls(),
            vec!["blkid -p -o export /dev/fake0", "mkfs.xfs -q /dev/fake0"]
        );
    }

    #[test]
    fn device_with_partition_table_is_not_formatted() {
        let r = ScriptedRunner::answering(vec![exit(0, "PTTYPE=gpt\n")]);
        let err = format_blank(&r, Path::new(DEV), FsType::Ext4).unwrap_err();
        assert_eq!(
            err.to_string(),
            "refusing to format /dev/fake0: it already holds a gpt partition table"
        );
        assert_eq!(r.calls().len(), 1, "mkfs must not run");
    }

    #[test]
    fn blkid_failure_prevents_format() {
        let r = ScriptedRunner::answering(vec![exit(4, "")]);
        assert!(matches!(
            format_blank(&r, Path::new(DEV), FsType::Ext4),
            Err(NodeError::CommandFailed {
                status: Some(4),
                ..
            })
        ));
        assert_eq!(r.calls().len(), 1);
    }

    #[test]
    fn mkfs_failure_is_reported() {
        let r = ScriptedRunner::answering(vec![exit(2, ""), exit(1, "")]);
        assert!(matches!(
            format_blank(&r, Path::new(DEV), FsType::Ext4),
            Err(NodeError::CommandFailed {
                status: Some(1),
                ..
            })
        ));
        assert_eq!(r.calls()[1], "mkfs.ext4 -F -q /dev/fake0");
    }
}
