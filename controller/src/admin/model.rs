//! The JSON documents of the admin API. Every response body is one of these
//! types serialised with serde (field names as written here, `snake_case`).
//!
//! Listing endpoints answer a JSON array of the item type; errors answer an
//! [`ErrorBody`]. The same types deserialize, so clients (`shorthorn ctl`)
//! read exactly what the controller wrote.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::store::{ContentSource, ReplicaHealth};
use agent_api::FrontendKind;

/// `GET /v1/nodes`: one storage node as the controller sees it, refreshed
/// (bootstrap if needed, then lvstore space) for the request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    /// Node name.
    pub name: String,
    /// The node answered its refresh.
    pub reachable: bool,
    /// Base bdev, lvstore and NVMe-oF transport are in place.
    pub bootstrapped: bool,
    /// Why the refresh failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Name of the node's lvstore.
    pub lvstore: String,
    /// UUID of the lvstore, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lvstore_uuid: Option<String>,
    /// Cluster size of the lvstore in bytes.
    pub cluster_size: u64,
    /// Data clusters in the lvstore.
    pub total_clusters: u64,
    /// Clusters not allocated to any lvol.
    pub free_clusters: u64,
    /// Capacity in bytes (`total_clusters * cluster_size`).
    pub total_bytes: u64,
    /// Unallocated bytes (`free_clusters * cluster_size`).
    pub free_bytes: u64,
    /// Sum of the provisioned sizes of the lvols on the lvstore.
    pub committed_bytes: u64,
    /// The controller's overprovisioning ratio.
    pub overprovisioning_ratio: f64,
    /// Bytes new replicas may still be given under that ratio.
    pub provisionable_bytes: u64,
    /// Shorthorn replica lvols on the lvstore.
    pub replicas: usize,
    /// Free space is under the controller's warning threshold.
    pub nearly_full: bool,
    /// Frontends its CSI node service offers (`ublk`, `nvme_tcp`); empty
    /// for a storage-only node.
    pub frontends: Vec<String>,
    /// Topology segments, including the node-name key.
    pub topology: BTreeMap<String, String>,
    /// Whose node its lvstore's cluster stamp says it is (`this cluster`,
    /// unstamped, or another cluster's), once read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_stamp: Option<String>,
    /// Restarts of its spdk_tgt this controller noticed.
    #[serde(default)]
    pub restarts: u32,
}

/// One replica of a volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaView {
    /// Node holding the replica lvol.
    pub node: String,
    /// The lvol as `lvstore/name`.
    pub lvol: String,
    /// UUID of the lvol.
    pub lvol_uuid: String,
    /// Last known health.
    pub health: ReplicaHealth,
    /// Why it is in that state, if recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Since when (Unix seconds), if recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_unix: Option<u64>,
}

/// One node a volume is published to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicationView {
    /// The node.
    pub node: String,
    /// How the volume is presented there.
    pub frontend: FrontendKind,
    /// Read-only publication.
    pub readonly: bool,
    /// Nodes whose replicas its raid was assembled from.
    #[serde(default)]
    pub members: Vec<String>,
}

/// Whether a volume needs attention.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConditionView {
    /// Something needs attention.
    pub abnormal: bool,
    /// What, for the operator.
    pub message: String,
}

/// `GET /v1/volumes` and `GET /v1/volumes/<id>`: one volume.
///
/// In the listing the condition is judged from the stored replica health
/// and the nodes' last known state; for a single volume it is re-checked
/// against the nodes as CSI `ControllerGetVolume` does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeView {
    /// Volume id.
    pub id: String,
    /// CSI request name.
    pub name: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Replicas wanted.
    pub replica_count: u32,
    /// Replicas that exist.
    pub replicas: Vec<ReplicaView>,
    /// Nodes the volume is published to.
    pub published: Vec<PublicationView>,
    /// Initial content, for clones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_source: Option<ContentSource>,
    /// Health summary.
    pub condition: ConditionView,
    /// Membership epoch (bumped by every change of the current replicas).
    #[serde(default)]
    pub epoch: u64,
    /// Why the volume is unclean (its engine was lost without a clean
    /// teardown), if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unclean: Option<String>,
}

/// The snapshot lvol of one replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaSnapshotView {
    /// Node holding the snapshot lvol.
    pub node: String,
    /// UUID of the snapshot lvol.
    pub lvol_uuid: String,
}

/// `GET /v1/snapshots`: one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotView {
    /// Snapshot id.
    pub id: String,
    /// CSI request name.
    pub name: String,
    /// Volume it was taken of.
    pub source_volume_id: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// When it was cut, in seconds since the Unix epoch.
    pub created_unix: u64,
    /// One snapshot lvol per replica.
    pub replicas: Vec<ReplicaSnapshotView>,
}

/// `GET /v1/rebuilds`: a rebuild the controller has journaled (thin copy
/// or full-copy fallback, with its progress), or a raid background process
/// SPDK runs on a publishing node that no journaled rebuild explains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RebuildView {
    /// Volume whose raid runs the process.
    pub volume_id: String,
    /// Node the raid is assembled on.
    pub node: String,
    /// Raid bdev name.
    pub raid: String,
    /// Process type reported by SPDK (`rebuild`).
    pub process: String,
    /// Base bdev being written.
    pub target: String,
    /// Blocks processed so far.
    pub blocks: u64,
    /// Percent done.
    pub percent: f64,
    /// `delta`, `new-node`, or empty for a raid process not started here.
    #[serde(default)]
    pub mode: String,
    /// Node copied from (thin rebuilds).
    #[serde(default)]
    pub source: String,
    /// Bytes copied so far.
    #[serde(default)]
    pub copied_bytes: u64,
    /// Bytes to copy in all (a full copy: the volume size).
    #[serde(default)]
    pub total_bytes: u64,
    /// Last journaled step.
    #[serde(default)]
    pub step: String,
    /// Why a full copy was used instead of a thin one, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_copy_reason: Option<String>,
}

/// Body of `POST /v1/volumes/<id>/revert`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevertRequest {
    /// The snapshot of that volume to go back to.
    pub snapshot_id: String,
}

/// Body of `POST /v1/volumes/<id>/replicas`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetReplicasRequest {
    /// The replica count wanted (`numberOfReplicas`, 1 to 16).
    pub count: u32,
}

/// Answer of `POST /v1/volumes/<id>/replicas`: what changed, and the
/// volume as it is now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaChangeView {
    /// The count before.
    pub from: u32,
    /// The count now.
    pub to: u32,
    /// Nodes that got a new replica.
    pub added: Vec<String>,
    /// Nodes whose replica was removed.
    pub removed: Vec<String>,
    /// Whether a new replica was a full raid copy (published volume).
    pub full_copy: bool,
    /// Bytes the new replicas' copies moved.
    pub bytes_copied: u64,
    /// False when the volume already had this count and as many replicas.
    pub changed: bool,
    /// The volume after the change.
    pub volume: VolumeView,
}

/// Body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, for the operator.
    pub error: String,
}
