//! Names Shorthorn gives to the objects it creates in SPDK.
//!
//! Every name carries a Shorthorn prefix so the reconciler can tell its own
//! objects from anything else on a node, and recover the volume id from it.
//! Limits: lvol names <= 63 characters, NQNs <= 223 bytes.

pub use agent_api::names::{
    AIO_BASE_PREFIX, CLUSTER_STAMP_PREFIX, LVOL_PREFIX, NQN_PREFIX, NVME_CTRLR_PREFIX,
    RAID_PAD_PREFIX, RAID_PREFIX, SNAPSHOT_PREFIX,
};
/// Suffix of the temporary lvol a revert clones a snapshot into.
pub const REVERT_SUFFIX: &str = "-rv";
/// Topology key every node carries, with the node name as value.
pub const TOPOLOGY_NODE_KEY: &str = "topology.shorthorn.csi.io/node";

/// Longest lvol name SPDK accepts.
pub const MAX_LVOL_NAME: usize = 63;
/// Longest NQN the NVMe specification allows.
pub const MAX_NQN: usize = 223;

/// Node names longer than this are shortened with a hash inside NQNs and bdev names.
const MAX_NODE_PART: usize = 64;

/// A fresh volume id (a UUID v4).
pub fn new_volume_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Whether `id` has the shape of a volume id Shorthorn generates.
pub fn is_volume_id(id: &str) -> bool {
    uuid::Uuid::parse_str(id).is_ok() && id.len() == 36
}

/// Name of the replica lvol of `volume_id` (one per node, so unique per lvstore).
pub fn replica_lvol(volume_id: &str) -> String {
    format!("{LVOL_PREFIX}{volume_id}")
}

/// The volume id a Shorthorn replica lvol name belongs to.
pub fn volume_of_lvol(lvol_name: &str) -> Option<&str> {
    lvol_name
        .strip_prefix(LVOL_PREFIX)
        .filter(|id| is_volume_id(id))
}

/// A fresh snapshot id (a UUID v4).
pub fn new_snapshot_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Name of the snapshot lvol of snapshot `snapshot_id` (one per replica node).
pub fn snapshot_lvol(snapshot_id: &str) -> String {
    format!("{SNAPSHOT_PREFIX}{snapshot_id}")
}

/// Suffix of the lvol a rebuild copies into on its target node.
pub const REBUILD_SUFFIX: &str = "-rb";
/// Suffix of the snapshot a rebuild takes of the source's live lvol.
pub const REBUILD_SNAPSHOT_SUFFIX: &str = "-rbs";

/// Name of the lvol a rebuild of `volume_id` copies into on its target node
/// (renamed to [`replica_lvol`] when the rebuild completes).
pub fn rebuild_lvol(volume_id: &str) -> String {
    format!("{LVOL_PREFIX}{volume_id}{REBUILD_SUFFIX}")
}

/// Name of the snapshot a rebuild of `volume_id` takes of its source
/// replica's live lvol (merged back when the rebuild ends).
pub fn rebuild_snapshot_lvol(volume_id: &str) -> String {
    format!("{LVOL_PREFIX}{volume_id}{REBUILD_SNAPSHOT_SUFFIX}")
}

/// NQN of the subsystem exporting a rebuild's target lvol of `volume_id`
/// on `target_node` to the source node.
pub fn rebuild_nqn(volume_id: &str, target_node: &str) -> String {
    format!(
        "{NQN_PREFIX}:replica:{volume_id}:rebuild-{}",
        node_part(target_node)
    )
}

/// Name of the NVMe-oF controller attaching a rebuild's target lvol of
/// `volume_id` on `target_node` (on the source node).
pub fn rebuild_controller(volume_id: &str, target_node: &str) -> String {
    format!(
        "{NVME_CTRLR_PREFIX}{volume_id}-rebuild-{}",
        node_part(target_node)
    )
}

/// Temporary name of the lvol that replaces `volume_id`'s replica during a revert.
pub fn revert_lvol(volume_id: &str) -> String {
    format!("{LVOL_PREFIX}{volume_id}{REVERT_SUFFIX}")
}

/// The volume id a temporary revert lvol name belongs to.
pub fn volume_of_revert_lvol(lvol_name: &str) -> Option<&str> {
    lvol_name
        .strip_prefix(LVOL_PREFIX)?
        .strip_suffix(REVERT_SUFFIX)
        .filter(|id| is_volume_id(id))
}

/// Name of the lvol stamping a node as a member of cluster `cluster_id`.
pub fn cluster_stamp_lvol(cluster_id: &str) -> String {
    format!("{CLUSTER_STAMP_PREFIX}{cluster_id}")
}

/// The cluster id a stamp lvol name carries (any non-empty text: a stamp
/// of a cluster this build cannot parse is still somebody else's).
pub fn cluster_of_stamp(lvol_name: &str) -> Option<&str> {
    lvol_name
        .strip_prefix(CLUSTER_STAMP_PREFIX)
        .filter(|id| !id.is_empty())
}

/// Whether an lvol name is one Shorthorn gives to volume data: a replica,
/// a temporary revert clone or a snapshot (not the cluster stamp).
pub fn is_data_lvol(lvol_name: &str) -> bool {
    lvol_name.starts_with(LVOL_PREFIX) || lvol_name.starts_with(SNAPSHOT_PREFIX)
}

/// NQN of the NVMe-oF subsystem exporting the replica of `volume_id` on `node`.
pub fn replica_nqn(volume_id: &str, node: &str) -> String {
    format!("{NQN_PREFIX}:replica:{volume_id}:{}", node_part(node))
}

/// NQN of the subsystem that exports a published volume to the kernel of its node.
pub fn volume_nqn(volume_id: &str) -> String {
    format!("{NQN_PREFIX}:volume:{volume_id}")
}

/// The volume id in a Shorthorn replica or volume NQN.
pub fn volume_of_nqn(nqn: &str) -> Option<&str> {
    let rest = nqn.strip_prefix(NQN_PREFIX)?.strip_prefix(':')?;
    let id = if let Some(r) = rest.strip_prefix("replica:") {
        r.split(':').next()?
    } else {
        rest.strip_prefix("volume:")?
    };
    is_volume_id(id).then_some(id)
}

/// Host NQN the SPDK initiator of `node` presents when attaching remote replicas.
pub fn spdk_host_nqn(node: &str) -> String {
    format!("{NQN_PREFIX}:spdk-host:{}", node_part(node))
}

/// Host NQN the kernel of `node` presents when connecting to its volume subsystems.
pub fn kernel_host_nqn(node: &str) -> String {
    format!("{NQN_PREFIX}:kernel-host:{}", node_part(node))
}

/// Stable NVMe host identifier of the kernel of `node` (a UUID derived from its name).
pub fn kernel_host_id(node: &str) -> uuid::Uuid {
    let hi = fnv1a(node.as_bytes());
    let lo = fnv1a(format!("{node}/hostid").as_bytes());
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&hi.to_be_bytes());
    bytes[8..].copy_from_slice(&lo.to_be_bytes());
    uuid::Builder::from_bytes(bytes)
        .with_variant(uuid::Variant::RFC4122)
        .with_version(uuid::Version::Custom)
        .into_uuid()
}

/// Name of the raid1 bdev assembling `volume_id` on its published node.
pub fn raid_bdev(volume_id: &str) -> String {
    format!("{RAID_PREFIX}{volume_id}")
}

/// Name of the null bdev that stands in as the second member while the
/// raid1 of a volume with one current replica is created (see
/// `primitives::ensure_raid1`); it is removed before the raid serves I/O.
pub fn raid_pad_bdev(volume_id: &str) -> String {
    format!("{RAID_PAD_PREFIX}{volume_id}")
}

/// The volume id in a Shorthorn raid bdev name.
pub fn volume_of_raid(name: &str) -> Option<&str> {
    name.strip_prefix(RAID_PREFIX).filter(|id| is_volume_id(id))
}

/// Name of the NVMe-oF controller that attaches the replica of `volume_id`
/// living on `replica_node`; its namespace bdev is `<name>n1`.
pub fn nvme_controller(volume_id: &str, replica_node: &str) -> String {
    format!("{NVME_CTRLR_PREFIX}{volume_id}-{}", node_part(replica_node))
}

/// The volume id in a Shorthorn NVMe controller name.
pub fn volume_of_nvme_controller(name: &str) -> Option<&str> {
    let rest = name.strip_prefix(NVME_CTRLR_PREFIX)?;
    let id = rest.get(..36)?;
    (is_volume_id(id) && rest.as_bytes().get(36) == Some(&b'-')).then_some(id)
}

/// The bdev of namespace 1 of an NVMe controller.
pub fn nvme_namespace_bdev(controller: &str) -> String {
    format!("{controller}n1")
}

/// Serial number of a Shorthorn subsystem (20 ASCII characters at most).
pub fn serial_number(volume_id: &str) -> String {
    let compact: String = volume_id.chars().filter(|c| *c != '-').take(18).collect();
    format!("SH{compact}")
}

/// The node name as used inside NQNs and bdev names: shortened with a stable
/// hash when it is very long so every name stays within its limit.
fn node_part(node: &str) -> String {
    if node.len() <= MAX_NODE_PART {
        node.to_string()
    } else {
        let head: String = node.chars().take(MAX_NODE_PART - 17).collect();
        format!("{head}-{:016x}", fnv1a(node.as_bytes()))
    }
}

/// 64-bit FNV-1a: stable across releases, unlike `DefaultHasher`.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const VOL: &str = "0b7c3f1e-5d2a-4c1b-9e8f-123456789abc";

    #[test]
    fn names_round_trip_to_their_volume() {
        assert_eq!(volume_of_lvol(&replica_lvol(VOL)), Some(VOL));
        assert_eq!(volume_of_nqn(&replica_nqn(VOL, "node-a")), Some(VOL));
        assert_eq!(volume_of_nqn(&volume_nqn(VOL)), Some(VOL));
        assert_eq!(volume_of_raid(&raid_bdev(VOL)), Some(VOL));
        assert_eq!(
            volume_of_nvme_controller(&nvme_controller(VOL, "node-b")),
            Some(VOL)
        );
        assert_eq!(volume_of_revert_lvol(&revert_lvol(VOL)), Some(VOL));
        assert_eq!(volume_of_lvol(&revert_lvol(VOL)), None);
        assert_eq!(volume_of_revert_lvol(&replica_lvol(VOL)), None);
        assert_eq!(cluster_of_stamp(&cluster_stamp_lvol(VOL)), Some(VOL));
        assert_eq!(cluster_of_stamp(CLUSTER_STAMP_PREFIX), None);
        assert!(!is_data_lvol(&cluster_stamp_lvol(VOL)));
        assert!(is_data_lvol(&revert_lvol(VOL)) && is_data_lvol(&snapshot_lvol(VOL)));
        assert!(cluster_stamp_lvol(VOL).len() <= MAX_LVOL_NAME);
        assert_eq!(volume_of_lvol("pvc-foreign"), None);
        assert_eq!(volume_of_nqn("nqn.2016-06.io.spdk:cnode1"), None);
    }

    #[test]
    fn names_stay_within_spdk_and_nvme_limits_for_long_node_names() {
        assert!(replica_lvol(VOL).len() <= MAX_LVOL_NAME);
        let long = "n".repeat(253);
        let nqn = replica_nqn(VOL, &long);
        assert!(nqn.len() <= MAX_NQN, "{} bytes", nqn.len());
        assert!(spdk_host_nqn(&long).len() <= MAX_NQN);
        // Two long names differing only at the end stay distinct.
        let other = format!("{}m", "n".repeat(252));
        assert_ne!(replica_nqn(VOL, &long), replica_nqn(VOL, &other));
        assert!(serial_number(VOL).len() <= 20);
    }
}
