//! What a real SPDK process needs from the host before it starts: 2 MiB
//! hugepages and hugetlbfs, and no hugepage maps left by a killed process
//! with the same shared-memory id. Failures name the fix.

use std::path::Path;

use crate::nodes::NodesError;

/// Where SPDK (DPDK) keeps its hugepage map files.
pub const HUGEPAGE_DIR: &str = "/dev/hugepages";

/// The command that reserves hugepages, for error messages.
const RESERVE_FIX: &str =
    "reserve them with `echo 2048 | sudo tee /proc/sys/vm/nr_hugepages` (4 GiB), or run \
     `SHORTHORN_SPDK_TGT=/path/to/spdk_tgt scripts/setup.sh`";

/// The command that mounts hugetlbfs, for error messages.
const MOUNT_FIX: &str =
    "mount it with `sudo mkdir -p /dev/hugepages && sudo mount -t hugetlbfs nodev /dev/hugepages`, \
     or run `SHORTHORN_SPDK_TGT=/path/to/spdk_tgt scripts/setup.sh`";

/// Hugepage counters from `/proc/meminfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HugepageInfo {
    /// Reserved pages.
    pub total: u64,
    /// Pages not in use.
    pub free: u64,
    /// Page size in KiB.
    pub size_kib: u64,
}

impl HugepageInfo {
    /// Parses `/proc/meminfo` text.
    pub fn parse(meminfo: &str) -> Self {
        let field = |name: &str| {
            meminfo
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        Self {
            total: field("HugePages_Total:"),
            free: field("HugePages_Free:"),
            size_kib: field("Hugepagesize:"),
        }
    }

    /// Reads the host's counters.
    pub fn read() -> Result<Self, NodesError> {
        let text = std::fs::read_to_string("/proc/meminfo").map_err(|source| NodesError::Io {
            context: "reading /proc/meminfo".into(),
            source,
        })?;
        Ok(Self::parse(&text))
    }
}

/// Whether `/proc/mounts` text shows a hugetlbfs mounted at `dir`.
pub fn hugetlbfs_mounted_at(mounts: &str, dir: &str) -> bool {
    mounts.lines().any(|l| {
        let mut f = l.split_whitespace();
        let (_, at, fstype) = (f.next(), f.next(), f.next());
        at == Some(dir) && fstype == Some("hugetlbfs")
    })
}

/// Checks that `mem_mib` MiB of hugepage memory can be had right now: hugetlbfs
/// is mounted on [`HUGEPAGE_DIR`] and enough free pages are reserved.
pub fn preflight(mem_mib: u64) -> Result<(), NodesError> {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    check(&HugepageInfo::read()?, &mounts, mem_mib)
}

/// [`preflight`] on given counters and mount table.
pub fn check(info: &HugepageInfo, mounts: &str, mem_mib: u64) -> Result<(), NodesError> {
    if !hugetlbfs_mounted_at(mounts, HUGEPAGE_DIR) {
        return Err(NodesError::Hugepages(format!(
            "hugetlbfs is not mounted on {HUGEPAGE_DIR}, so spdk_tgt cannot map hugepages: {MOUNT_FIX}"
        )));
    }
    if info.total == 0 {
        return Err(NodesError::Hugepages(format!(
            "no hugepages are reserved (HugePages_Total is 0 in /proc/meminfo): {RESERVE_FIX}"
        )));
    }
    let size_mib = (info.size_kib / 1024).max(1);
    let need = mem_mib.div_ceil(size_mib);
    if info.free < need {
        return Err(NodesError::Hugepages(format!(
            "only {} of {} hugepages of {} MiB are free; a node started with -s {mem_mib} needs {need}: \
             stop other SPDK processes or {RESERVE_FIX}",
            info.free, info.total, size_mib
        )));
    }
    Ok(())
}

/// Removes `/dev/hugepages/spdk<id>map_*` left by an earlier process with
/// shared-memory id `shm_id`; a process killed by a signal can leave them,
/// and the next start with the same id then fails.
pub fn remove_stale_maps(shm_id: u32) {
    remove_stale_maps_in(Path::new(HUGEPAGE_DIR), shm_id);
}

fn remove_stale_maps_in(dir: &Path, shm_id: u32) {
    let prefix = format!("spdk{shm_id}map_");
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// A hint for a start-up failure, from the process's log.
pub fn diagnose(log: &str) -> Option<&'static str> {
    const HINTS: &[(&str, &str)] = &[
        (
            "Failed to initialize OpenSSL",
            "install the `openssl` package: SPDK needs /usr/lib/ssl/openssl.cnf",
        ),
        (
            "error while loading shared libraries",
            "install SPDK's runtime libraries: `apt-get install libaio1 libbsd0 libfuse3-3 \
             libkeyutils1 libnuma1 libssl3 liburing2 libuuid1 openssl` (scripts/setup.sh does it)",
        ),
        (
            "No free",
            "not enough free hugepages: stop other SPDK processes or reserve more \
             (`echo 2048 > /proc/sys/vm/nr_hugepages`)",
        ),
        (
            "Cannot get hugepage information",
            "hugetlbfs is not mounted: `mount -t hugetlbfs nodev /dev/hugepages`",
        ),
        (
            "Cannot create lock on core",
            "another SPDK process holds this core: start with --disable-cpumask-locks",
        ),
        (
            "Unable to initialize SPDK env",
            "SPDK's environment failed to start: check hugepages, /var/run and a tmpfs on /dev/shm",
        ),
    ];
    HINTS
        .iter()
        .find(|(needle, _)| log.contains(needle))
        .map(|(_, hint)| *hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTED: &str = "nodev /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0\n";

    #[test]
    fn meminfo_counters_are_parsed() {
        let info = HugepageInfo::parse(
            "MemTotal: 1 kB\nHugePages_Total:    3072\nHugePages_Free:     3000\nHugepagesize:       2048 kB\n",
        );
        assert_eq!(
            info,
            HugepageInfo {
                total: 3072,
                free: 3000,
                size_kib: 2048
            }
        );
    }

    #[test]
    fn an_unmounted_hugetlbfs_is_named_with_its_fix() {
        let info = HugepageInfo {
            total: 1024,
            free: 1024,
            size_kib: 2048,
        };
        let e = check(&info, "proc /proc proc rw 0 0\n", 512)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("hugetlbfs is not mounted") && e.contains("mount -t hugetlbfs"),
            "{e}"
        );
    }

    #[test]
    fn missing_or_too_few_hugepages_are_named_with_their_fix() {
        let none = HugepageInfo {
            total: 0,
            free: 0,
            size_kib: 2048,
        };
        let e = check(&none, MOUNTED, 512).unwrap_err().to_string();
        assert!(
            e.contains("no hugepages are reserved") && e.contains("nr_hugepages"),
            "{e}"
        );
        let few = HugepageInfo {
            total: 300,
            free: 100,
            size_kib: 2048,
        };
        let e = check(&few, MOUNTED, 512).unwrap_err().to_string();
        assert!(
            e.contains("only 100 of 300") && e.contains("needs 256"),
            "{e}"
        );
        let enough = HugepageInfo {
            total: 300,
            free: 256,
            size_kib: 2048,
        };
        check(&enough, MOUNTED, 512).unwrap();
    }

    #[test]
    fn only_this_ids_stale_maps_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["spdk7map_0", "spdk7map_1", "spdk70map_0", "other"] {
            std::fs::write(dir.path().join(f), b"").unwrap();
        }
        remove_stale_maps_in(dir.path(), 7);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["other", "spdk70map_0"]);
    }

    #[test]
    fn known_start_failures_get_a_hint() {
        assert!(diagnose("x\nFailed to initialize OpenSSL\n")
            .unwrap()
            .contains("openssl"));
        assert_eq!(diagnose("all fine"), None);
    }
}
