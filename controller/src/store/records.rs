//! Typed records persisted as JSON. Each carries a schema `version`.

use std::collections::BTreeMap;
use std::time::SystemTime;

use agent_api::FrontendKind;
use serde::{Deserialize, Serialize};

/// Schema version written by this build; records with a higher version are
/// refused rather than misread.
pub const SCHEMA_VERSION: u32 = 1;

fn current_version() -> u32 {
    SCHEMA_VERSION
}

/// Topology segments of one accessible-topology entry (CSI `Topology`).
pub type TopologySegments = BTreeMap<String, String>;

/// Where a new volume's initial content comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ContentSource {
    /// Cloned from a snapshot.
    Snapshot {
        /// Source snapshot id.
        id: String,
    },
    /// Cloned from another volume.
    Volume {
        /// Source volume id.
        id: String,
    },
}

/// A volume the controller is asked to keep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRecord {
    /// Schema version of this record.
    #[serde(default = "current_version")]
    pub version: u32,
    /// Volume id (CSI `volume_id`).
    pub id: String,
    /// CSI request name; unique among volumes.
    pub name: String,
    /// Size in bytes.
    pub capacity_bytes: u64,
    /// StorageClass parameters from CreateVolume.
    pub parameters: BTreeMap<String, String>,
    /// Number of replicas wanted.
    pub replica_count: u32,
    /// Initial content, if cloned.
    pub content_source: Option<ContentSource>,
    /// Where the volume is reachable from.
    pub accessible_topology: Vec<TopologySegments>,
    /// Membership epoch: bumped in the same transaction as every change of
    /// which replicas hold every acknowledged write (see `membership`).
    #[serde(default)]
    pub epoch: u64,
    /// Set when the volume's engine was lost without a clean teardown, so
    /// nobody can prove which replicas hold the last in-flight writes. It is
    /// cleared only by choosing one current replica (`membership::resolve_unclean`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unclean: Option<UncleanMark>,
}

/// Why and since when a volume is unclean.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UncleanMark {
    /// Node whose engine (raid1) was lost.
    pub engine_node: String,
    /// What was seen, for the operator.
    pub reason: String,
    /// When it was recorded.
    pub since: SystemTime,
}

/// Health of one replica as the controller last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReplicaHealth {
    /// In sync and serving I/O.
    Healthy,
    /// Reachable but not fully trustworthy.
    Degraded,
    /// Being resynchronised from a healthy copy.
    Rebuilding,
    /// Lost; must be replaced.
    Failed,
    /// Its lvol exists but missed acknowledged writes (it left the raid, or
    /// another replica was chosen after an unclean engine loss). It never
    /// serves again until rebuilt.
    Stale,
}

impl ReplicaHealth {
    /// The state's name as operators see it.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplicaHealth::Healthy => "healthy",
            ReplicaHealth::Degraded => "degraded",
            ReplicaHealth::Rebuilding => "rebuilding",
            ReplicaHealth::Failed => "failed",
            ReplicaHealth::Stale => "stale",
        }
    }

    /// Whether the replica holds every acknowledged write and may serve.
    pub fn is_current(self) -> bool {
        self == ReplicaHealth::Healthy
    }
}

/// One thin lvol holding a copy of a volume on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaRecord {
    /// Schema version of this record.
    #[serde(default = "current_version")]
    pub version: u32,
    /// Owning volume id.
    pub volume_id: String,
    /// Node holding the lvol.
    pub node: String,
    /// lvstore name on that node.
    pub lvstore: String,
    /// UUID of the lvol.
    pub lvol_uuid: String,
    /// Last known health.
    pub health: ReplicaHealth,
    /// Bumped whenever the replica set changes, to fence stale writers.
    pub generation: u64,
    /// Why the replica is in its state, for the operator (`None` when healthy
    /// from the start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the replica entered its state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<SystemTime>,
}

/// A volume published to a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicationRecord {
    /// Schema version of this record.
    #[serde(default = "current_version")]
    pub version: u32,
    /// Published volume id.
    pub volume_id: String,
    /// Node it is published to.
    pub node: String,
    /// Frontend used on the node.
    pub frontend: FrontendKind,
    /// Frontend details handed to the node (CSI `publish_context`).
    pub publish_context: BTreeMap<String, String>,
    /// Read-only publication.
    pub readonly: bool,
    /// Nodes whose replicas the raid was assembled from.
    #[serde(default)]
    pub members: Vec<String>,
    /// The volume's membership epoch when the raid was assembled.
    #[serde(default)]
    pub epoch: u64,
}

/// The snapshot lvol taken of one replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaSnapshot {
    /// Node holding the snapshot lvol.
    pub node: String,
    /// lvstore name on that node.
    pub lvstore: String,
    /// UUID of the snapshot lvol.
    pub lvol_uuid: String,
}

/// A point-in-time snapshot of a volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    /// Schema version of this record.
    #[serde(default = "current_version")]
    pub version: u32,
    /// Snapshot id (CSI `snapshot_id`).
    pub id: String,
    /// CSI request name; unique among snapshots.
    pub name: String,
    /// Volume the snapshot was taken of.
    pub source_volume_id: String,
    /// When the snapshot was cut.
    pub created_at: SystemTime,
    /// Size in bytes.
    pub size_bytes: u64,
    /// One snapshot lvol per replica.
    pub replica_snapshots: Vec<ReplicaSnapshot>,
    /// Deleted (or internal) but its lvols still feed other volumes: hidden
    /// from listings, reclaimed once no volume reads from it any more.
    #[serde(default)]
    pub deleted: bool,
}

/// Kind of a journaled operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OperationKind {
    /// CreateVolume.
    CreateVolume,
    /// DeleteVolume.
    DeleteVolume,
    /// ControllerExpandVolume.
    ExpandVolume,
    /// ControllerPublishVolume.
    PublishVolume,
    /// ControllerUnpublishVolume.
    UnpublishVolume,
    /// CreateSnapshot.
    CreateSnapshot,
    /// DeleteSnapshot.
    DeleteSnapshot,
    /// Replacing or resynchronising a replica.
    RebuildReplica,
    /// Reverting a volume to one of its snapshots.
    RevertVolume,
    /// Changing a volume's replica count (ControllerModifyVolume, `shorthorn ctl`).
    ChangeReplicas,
}

/// Journal entry for an operation in flight, written before acting so that a
/// restarted controller can resume or roll back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationRecord {
    /// Schema version of this record.
    #[serde(default = "current_version")]
    pub version: u32,
    /// Operation id.
    pub id: String,
    /// What is being done.
    pub kind: OperationKind,
    /// Volume concerned.
    pub volume_id: String,
    /// Name of the last step reached.
    pub step: String,
    /// Step-specific data needed to resume or undo.
    pub payload: serde_json::Value,
    /// When the operation began.
    pub started_at: SystemTime,
}

/// Implemented by every record so the store can check its schema version.
pub(crate) trait SchemaVersioned {
    fn schema_version(&self) -> u32;
}

macro_rules! versioned {
    ($($t:ty),*) => {$(
        impl SchemaVersioned for $t {
            fn schema_version(&self) -> u32 {
                self.version
            }
        }
    )*};
}

versioned!(
    VolumeRecord,
    ReplicaRecord,
    PublicationRecord,
    SnapshotRecord,
    OperationRecord
);
