//! The prefixes of every name Shorthorn gives to what it creates in SPDK.
//!
//! The controller builds its names from these (`controller::naming`) and
//! the node agent's policy admits mutating calls only on names that carry
//! them, so both sides read the one definition.

/// NQN prefix of every subsystem and host NQN Shorthorn creates.
pub const NQN_PREFIX: &str = "nqn.2025-11.io.shorthorn";
/// Prefix of replica lvol names.
pub const LVOL_PREFIX: &str = "shv-";
/// Prefix of snapshot lvol names.
pub const SNAPSHOT_PREFIX: &str = "shs-";
/// Prefix of raid bdev names.
pub const RAID_PREFIX: &str = "shr-";
/// Prefix of NVMe-oF initiator controller names (their namespace bdevs
/// are `<name>n1`).
pub const NVME_CTRLR_PREFIX: &str = "shn-";
/// Prefix of the null bdev that pads a one-member raid1 while it is created.
pub const RAID_PAD_PREFIX: &str = "shp-";
/// Prefix of the lvol that stamps a node's lvstore with its cluster's id.
pub const CLUSTER_STAMP_PREFIX: &str = "shorthorn-cluster-";
/// Prefix of the aio bdev created over a node's configured disk
/// (`shorthorn-base-<lvstore>`).
pub const AIO_BASE_PREFIX: &str = "shorthorn-base-";

/// Prefixes of the lvols Shorthorn creates on a node's lvstore.
pub const LVOL_PREFIXES: &[&str] = &[LVOL_PREFIX, SNAPSHOT_PREFIX, CLUSTER_STAMP_PREFIX];

/// Whether `name` is an lvol name (without its lvstore) Shorthorn gives.
pub fn is_project_lvol_name(name: &str) -> bool {
    !name.contains('/')
        && LVOL_PREFIXES
            .iter()
            .any(|p| name.len() > p.len() && name.starts_with(p))
}

/// Whether `nqn` is an NQN Shorthorn gives (`<NQN_PREFIX>:...`).
pub fn is_project_nqn(nqn: &str) -> bool {
    nqn.strip_prefix(NQN_PREFIX)
        .and_then(|rest| rest.strip_prefix(':'))
        .is_some_and(|rest| !rest.is_empty())
}

/// Whether `name` starts with `prefix` and has something after it.
pub fn has_prefix(name: &str, prefix: &str) -> bool {
    name.len() > prefix.len() && name.starts_with(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_prefixes_and_lookalikes_are_not_project_names() {
        assert!(is_project_lvol_name("shv-1"));
        assert!(is_project_lvol_name("shorthorn-cluster-c"));
        for bad in ["shv-", "shr-x", "shv-a/b", "vol-1", "", "SHV-1"] {
            assert!(!is_project_lvol_name(bad), "{bad:?}");
        }
        assert!(is_project_nqn("nqn.2025-11.io.shorthorn:volume:x"));
        for bad in [
            "nqn.2025-11.io.shorthorn",
            "nqn.2025-11.io.shorthorn:",
            "nqn.2025-11.io.shorthornx:volume:x",
            "nqn.2016-06.io.spdk:cnode1",
        ] {
            assert!(!is_project_nqn(bad), "{bad:?}");
        }
    }
}
