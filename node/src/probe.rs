//! Start-up probe of what this node's kernel and userland can do.

use std::fs;
use std::path::{Path, PathBuf};

pub use agent_api::identity::{KernelFeatures, Tools};

/// Where the probe looks; tests point it at a fabricated tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeRoots {
    /// Prefix for `/dev` and `/sys` (normally `/`).
    pub root: PathBuf,
    /// Directories searched for tools (normally `$PATH`).
    pub tool_dirs: Vec<PathBuf>,
}

impl ProbeRoots {
    /// The real host: `/` and the directories of `$PATH` plus the sbin dirs.
    pub fn host() -> Self {
        let mut tool_dirs: Vec<PathBuf> = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default();
        for extra in ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
            let extra = PathBuf::from(extra);
            if !tool_dirs.contains(&extra) {
                tool_dirs.push(extra);
            }
        }
        ProbeRoots {
            root: PathBuf::from("/"),
            tool_dirs,
        }
    }

    fn under_root(&self, absolute: &str) -> PathBuf {
        self.root.join(absolute.trim_start_matches('/'))
    }
}

/// Probing for the [`KernelFeatures`] the agent reports. A trait only
/// because the features are the agent API's type: it keeps
/// `KernelFeatures::probe()` reading as before.
pub trait ProbeHost {
    /// Probes the host.
    fn probe() -> Self;
    /// Probes below the given roots.
    fn probe_at(roots: &ProbeRoots) -> Self;
}

impl ProbeHost for KernelFeatures {
    fn probe() -> Self {
        Self::probe_at(&ProbeRoots::host())
    }

    fn probe_at(roots: &ProbeRoots) -> Self {
        let has_tool = |name: &str| roots.tool_dirs.iter().any(|d| is_executable(&d.join(name)));
        let tools = Tools {
            mkfs_ext4: has_tool("mkfs.ext4"),
            mkfs_xfs: has_tool("mkfs.xfs"),
            resize2fs: has_tool("resize2fs"),
            xfs_growfs: has_tool("xfs_growfs"),
            blkid: has_tool("blkid"),
            fsfreeze: has_tool("fsfreeze"),
            dmsetup: has_tool("dmsetup"),
        };
        let multipath =
            fs::read_to_string(roots.under_root("/sys/module/nvme_core/parameters/multipath"))
                .map(|v| v.trim().eq_ignore_ascii_case("y"))
                .unwrap_or(false);
        KernelFeatures {
            nvme_tcp: roots.under_root("/dev/nvme-fabrics").exists(),
            nvme_multipath: multipath,
            ublk: roots.under_root("/dev/ublk-control").exists(),
            device_mapper: roots.under_root("/dev/mapper/control").exists() && tools.dmsetup,
            tools,
        }
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::FrontendKind;
    use std::os::unix::fs::PermissionsExt;

    fn touch(path: &Path, mode: u32) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, "").unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn fabricated_root_with_everything() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let bin = dir.path().join("bin");
        touch(&root.join("dev/nvme-fabrics"), 0o600);
        touch(&root.join("dev/ublk-control"), 0o600);
        touch(&root.join("dev/mapper/control"), 0o600);
        fs::create_dir_all(root.join("sys/module/nvme_core/parameters")).unwrap();
        fs::write(
            root.join("sys/module/nvme_core/parameters/multipath"),
            "Y\n",
        )
        .unwrap();
        for tool in [
            "mkfs.ext4",
            "mkfs.xfs",
            "resize2fs",
            "xfs_growfs",
            "blkid",
            "fsfreeze",
            "dmsetup",
        ] {
            touch(&bin.join(tool), 0o755);
        }
        let f = KernelFeatures::probe_at(&ProbeRoots {
            root,
            tool_dirs: vec![bin],
        });
        assert!(f.nvme_tcp && f.nvme_multipath && f.ublk && f.device_mapper);
        assert_eq!(
            f.frontends(),
            vec![FrontendKind::NvmeTcp, FrontendKind::Ublk]
        );
        assert_eq!(
            f.summary(),
            "frontends=[nvme-tcp,ublk] nvme-multipath=on device-mapper=on \
             tools=mkfs.ext4,mkfs.xfs,resize2fs,xfs_growfs,blkid,fsfreeze,dmsetup missing=-"
        );
        let json = serde_json::to_string(&f).unwrap();
        assert_eq!(serde_json::from_str::<KernelFeatures>(&json).unwrap(), f);
    }

    #[test]
    fn fabricated_root_with_only_ublk_and_non_executable_tool() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let bin = dir.path().join("bin");
        touch(&root.join("dev/ublk-control"), 0o600);
        // Control node without dmsetup does not count as device-mapper.
        touch(&root.join("dev/mapper/control"), 0o600);
        fs::create_dir_all(root.join("sys/module/nvme_core/parameters")).unwrap();
        fs::write(
            root.join("sys/module/nvme_core/parameters/multipath"),
            "N\n",
        )
        .unwrap();
        touch(&bin.join("blkid"), 0o755);
        touch(&bin.join("mkfs.xfs"), 0o644);
        let f = KernelFeatures::probe_at(&ProbeRoots {
            root,
            tool_dirs: vec![bin],
        });
        assert!(!f.nvme_tcp && !f.nvme_multipath && !f.device_mapper);
        assert!(f.tools.blkid && !f.tools.mkfs_xfs);
        assert_eq!(f.frontends(), vec![FrontendKind::Ublk]);
        assert!(f
            .summary()
            .starts_with("frontends=[ublk] nvme-multipath=off"));
        assert!(f.summary().contains("missing=mkfs.ext4,mkfs.xfs,"));
    }
}
