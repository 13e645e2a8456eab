//! Validation of CSI request fields into what the node acts on.

use std::path::{Component, Path, PathBuf};

use csi_proto::volume_capability::access_mode::Mode;
use csi_proto::volume_capability::AccessType;
use csi_proto::VolumeCapability;
use serde::{Deserialize, Serialize};
use tonic::Status;

use super::status::invalid;
use crate::format::FsType;
use crate::frontend::AttachSpec;

/// How a volume is presented on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccessKind {
    /// A filesystem mounted at the staging path.
    Mount {
        /// The filesystem.
        fs_type: FsType,
        /// True when the capability named the filesystem (else the default
        /// applies and an existing filesystem of another type is accepted).
        fs_type_requested: bool,
        /// CSI mount flags.
        mount_flags: Vec<String>,
    },
    /// The raw block device.
    Block,
}

impl AccessKind {
    /// True for block volumes.
    pub fn is_block(&self) -> bool {
        matches!(self, AccessKind::Block)
    }
}

/// A validated volume capability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capability {
    /// Mount or block.
    pub kind: AccessKind,
    /// True for the reader-only access modes.
    pub read_only: bool,
}

/// A non-empty string field, or INVALID_ARGUMENT naming it.
pub fn required<'a>(value: &'a str, field: &str) -> Result<&'a str, Status> {
    if value.is_empty() {
        Err(invalid(format!("{field} is required")))
    } else {
        Ok(value)
    }
}

/// A required absolute path field.
pub fn required_path(value: &str, field: &str) -> Result<PathBuf, Status> {
    let path = Path::new(required(value, field)?);
    if !path.is_absolute() {
        return Err(invalid(format!(
            "{field} must be an absolute path, got {value:?}"
        )));
    }
    Ok(path.to_path_buf())
}

/// A required path that names an existing staging or publish path. A
/// relative path can never name one, so it is NOT_FOUND rather than invalid:
/// the CO asked about a volume that is not there.
pub fn lookup_path(value: &str, field: &str) -> Result<PathBuf, Status> {
    let path = Path::new(required(value, field)?);
    if !path.is_absolute() {
        return Err(Status::not_found(format!(
            "no volume is staged or published at {value:?} ({field} must be an absolute path)"
        )));
    }
    Ok(path.to_path_buf())
}

/// `path` (absolute) if it lies strictly inside `root`: no `.` or `..`
/// components, and no symlink among its existing ancestors leads out of
/// `root`. Otherwise INVALID_ARGUMENT saying where paths must be.
pub fn under_root(path: &Path, root: &Path, field: &str) -> Result<PathBuf, Status> {
    let outside = |why: &str| {
        invalid(format!(
            "{field} {} {why}: staging and target paths must lie inside the kubelet \
             directory {} (configure the node's --kubelet-dir if kubelet uses another)",
            path.display(),
            root.display()
        ))
    };
    if path
        .components()
        .any(|c| matches!(c, Component::CurDir | Component::ParentDir))
    {
        return Err(outside("contains `.` or `..`"));
    }
    if !path.starts_with(root) || path == root {
        return Err(outside("is outside the kubelet directory"));
    }
    // Resolve the existing part of the parent (not the path itself: its
    // last component is removed or unmounted without following it).
    let canonical_root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let mut existing = path.parent();
    while let Some(dir) = existing {
        if let Ok(real) = std::fs::canonicalize(dir) {
            if !real.starts_with(&canonical_root) {
                return Err(outside(&format!(
                    "resolves through a symlink to {}",
                    real.display()
                )));
            }
            break;
        }
        existing = dir.parent();
    }
    Ok(path.to_path_buf())
}

/// Which ublk device paths a publish_context may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UblkDevicePattern {
    /// `/dev/ublkb<id>` with the context's ublk id: what SPDK's ublk target creates.
    Ublk,
    /// Also `/dev/loop<N>`: the simulated spdk_tgt serves ublk disks as
    /// loop devices where the kernel has no ublk. Only for sim nodes.
    UblkOrSimLoop,
}

impl UblkDevicePattern {
    /// INVALID_ARGUMENT unless the spec's device path fits the pattern.
    pub fn check(self, spec: &AttachSpec) -> Result<(), Status> {
        let AttachSpec::Ublk(t) = spec else {
            return Ok(());
        };
        let device = t.device.to_str().unwrap_or_default();
        let numbered = |prefix: &str| {
            device
                .strip_prefix(prefix)
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        };
        let ok = device == format!("/dev/ublkb{}", t.id)
            || (self == UblkDevicePattern::UblkOrSimLoop && numbered("/dev/loop"));
        if ok {
            Ok(())
        } else {
            Err(invalid(format!(
                "publish_context ublk.device {} is not /dev/ublkb{} (the device of ublk id {}); \
                 republish the volume so the controller reports its ublk device",
                t.device.display(),
                t.id,
                t.id
            )))
        }
    }
}

/// Validates a capability; `default_fs` applies when the mount names none.
pub fn capability(
    cap: Option<&VolumeCapability>,
    default_fs: FsType,
) -> Result<Capability, Status> {
    let cap = cap.ok_or_else(|| invalid("volume_capability is required"))?;
    let mode = cap
        .access_mode
        .map(|m| Mode::try_from(m.mode).unwrap_or(Mode::Unknown))
        .unwrap_or(Mode::Unknown);
    let read_only = match mode {
        Mode::Unknown => {
            return Err(invalid("volume_capability.access_mode is required"));
        }
        Mode::SingleNodeReaderOnly | Mode::MultiNodeReaderOnly => true,
        _ => false,
    };
    let kind = match &cap.access_type {
        None => {
            return Err(invalid(
                "volume_capability.access_type (mount or block) is required",
            ))
        }
        Some(AccessType::Block(_)) => AccessKind::Block,
        Some(AccessType::Mount(m)) => {
            if !m.volume_mount_group.is_empty() {
                return Err(invalid("volume_mount_group is not supported"));
            }
            let (fs_type, fs_type_requested) = if m.fs_type.is_empty() {
                (default_fs, false)
            } else {
                (m.fs_type.parse::<FsType>().map_err(Status::from)?, true)
            };
            AccessKind::Mount {
                fs_type,
                fs_type_requested,
                mount_flags: m.mount_flags.clone(),
            }
        }
    };
    if !kind.is_block() && mode == Mode::MultiNodeMultiWriter {
        return Err(invalid(
            "MULTI_NODE_MULTI_WRITER is only supported for block volumes",
        ));
    }
    Ok(Capability { kind, read_only })
}

#[cfg(test)]
mod tests {
    use super::*;
    use csi_proto::volume_capability::{AccessMode, BlockVolume, MountVolume};

    fn cap(mode: Mode, access: AccessType) -> VolumeCapability {
        VolumeCapability {
            access_mode: Some(AccessMode { mode: mode as i32 }),
            access_type: Some(access),
        }
    }

    fn mount(fs: &str) -> AccessType {
        AccessType::Mount(MountVolume {
            fs_type: fs.into(),
            ..Default::default()
        })
    }

    #[test]
    fn defaults_and_read_only_modes() {
        let c = capability(Some(&cap(Mode::SingleNodeWriter, mount(""))), FsType::Ext4).unwrap();
        assert_eq!(
            c.kind,
            AccessKind::Mount {
                fs_type: FsType::Ext4,
                fs_type_requested: false,
                mount_flags: vec![]
            }
        );
        assert!(!c.read_only);
        let c = capability(
            Some(&cap(
                Mode::MultiNodeReaderOnly,
                AccessType::Block(BlockVolume {}),
            )),
            FsType::Ext4,
        )
        .unwrap();
        assert!(c.read_only && c.kind.is_block());
    }

    #[test]
    fn bad_capabilities_are_invalid_arguments() {
        let bad = [
            None,
            Some(cap(Mode::Unknown, mount("ext4"))),
            Some(cap(Mode::SingleNodeWriter, mount("btrfs"))),
            Some(cap(Mode::MultiNodeMultiWriter, mount("xfs"))),
            Some(VolumeCapability {
                access_mode: Some(AccessMode { mode: 1 }),
                access_type: None,
            }),
        ];
        for c in bad {
            let err = capability(c.as_ref(), FsType::Ext4).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{c:?}");
        }
    }

    #[test]
    fn paths_outside_the_kubelet_dir_are_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("kubelet");
        std::fs::create_dir_all(root.join("pods")).unwrap();
        std::os::unix::fs::symlink("/", root.join("pods/escape")).unwrap();
        assert!(under_root(&root.join("pods/a/mount"), &root, "target_path").is_ok());
        for bad in [
            PathBuf::from("/etc"),
            root.clone(),
            root.join("pods/../../etc"),
            root.join("pods/escape/etc/x"),
            dir.path().join("kubelet2/pods/a"),
        ] {
            let err = under_root(&bad, &root, "target_path").unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad:?}");
            assert!(
                err.message().contains("kubelet directory"),
                "{}",
                err.message()
            );
        }
        // The last component itself may be a symlink: it is removed, not followed.
        assert!(under_root(&root.join("pods/escape"), &root, "target_path").is_ok());
    }

    #[test]
    fn ublk_devices_must_be_the_ublk_device_of_their_id() {
        let spec = |dev: &str, id| {
            AttachSpec::Ublk(crate::frontend::UblkTarget {
                device: dev.into(),
                id,
            })
        };
        assert!(UblkDevicePattern::Ublk
            .check(&spec("/dev/ublkb3", 3))
            .is_ok());
        for (dev, id) in [
            ("/dev/sda", 0),
            ("/dev/ublkb3", 4),
            ("/dev/ublkb3x", 3),
            ("/dev/loop0", 0),
        ] {
            let err = UblkDevicePattern::Ublk.check(&spec(dev, id)).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{dev}");
        }
        assert!(UblkDevicePattern::UblkOrSimLoop
            .check(&spec("/dev/loop7", 0))
            .is_ok());
        assert!(UblkDevicePattern::UblkOrSimLoop
            .check(&spec("/dev/loop", 0))
            .is_err());
        assert!(UblkDevicePattern::UblkOrSimLoop
            .check(&spec("/dev/sda", 0))
            .is_err());
    }

    #[test]
    fn relative_paths_are_refused() {
        assert!(required_path("rel/path", "target_path").is_err());
        assert!(required_path("", "target_path").is_err());
        assert!(required_path("/abs", "target_path").is_ok());
    }
}
