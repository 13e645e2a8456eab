//! The controller's one error type and its single mapping to gRPC statuses.
//!
//! Every fallible function in this crate returns [`ControllerError`]. Its
//! variants say what went wrong in Shorthorn's terms (a volume that does not
//! exist, a node that cannot be reached, a publication in the way); which
//! gRPC code an orchestrator sees for each is decided in one place,
//! [`ControllerError::code`], and the CSI services convert through the one
//! `From` impl below. Store, storage-node and agent failures convert with `?`.

use std::time::Duration;

use agent_api::client::AgentError;
use tonic::{Code, Status};

use spdk_client::SpdkError;

use crate::store::StoreError;

/// Convenience alias for results in this crate.
pub type Result<T, E = ControllerError> = std::result::Result<T, E>;

/// Everything that can go wrong in the controller.
///
/// Messages are written for the operator: they say what was refused and what
/// to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    // ---- The request itself ----
    /// A required request field is empty.
    #[error("{field} is required")]
    MissingField {
        /// The CSI field name.
        field: String,
    },
    /// A StorageClass parameter Shorthorn does not know.
    #[error("unknown parameter {name:?}; Shorthorn accepts only {accepted}")]
    UnknownParameter {
        /// The parameter.
        name: String,
        /// The parameters Shorthorn accepts.
        accepted: &'static str,
    },
    /// A StorageClass parameter with an unusable value.
    #[error("parameter {name}={value:?} must be {expected}")]
    InvalidParameter {
        /// The parameter.
        name: &'static str,
        /// The value given.
        value: String,
        /// What it must be.
        expected: &'static str,
    },
    /// A volume capability Shorthorn cannot serve.
    #[error("unsupported volume capability: {reason}")]
    UnsupportedCapability {
        /// What is unsupported.
        reason: String,
    },
    /// A listing asked for a negative number of entries.
    #[error("max_entries {max_entries} must not be negative")]
    NegativeMaxEntries {
        /// The value given.
        max_entries: i32,
    },
    /// A listing token this plugin did not issue.
    #[error("starting_token {token:?} was not issued by this plugin; restart the listing without a token")]
    UnknownStartingToken {
        /// The token given.
        token: String,
    },
    /// An admin API request body that is not what the route takes.
    #[error("bad request body: {reason}")]
    BadRequestBody {
        /// What is wrong with it.
        reason: String,
    },
    /// The requested capacity cannot be honoured within its bounds.
    #[error("capacity out of range: {reason}")]
    CapacityOutOfRange {
        /// Which bound and why.
        reason: String,
    },
    /// A volume cannot shrink.
    #[error("capacity out of range: volume {volume} has {current} bytes; shrinking to {requested} is not supported")]
    ShrinkRefused {
        /// The volume.
        volume: String,
        /// Its size.
        current: u64,
        /// The size asked for.
        requested: u64,
    },
    /// A clone asked for less than its source holds.
    #[error("capacity out of range: the requested {requested} bytes are smaller than {source_kind} {source_id} ({source_size} bytes); request at least its size")]
    CloneTooSmall {
        /// The size asked for.
        requested: u64,
        /// `snapshot` or `volume`.
        source_kind: &'static str,
        /// The source's id.
        source_id: String,
        /// The source's size.
        source_size: u64,
    },
    /// The CSI RPC is not implemented.
    #[error("{rpc} is not implemented by Shorthorn yet")]
    Unimplemented {
        /// The RPC.
        rpc: &'static str,
    },

    // ---- Objects named in the request ----
    /// No volume has this id.
    #[error("volume {id} does not exist")]
    VolumeNotFound {
        /// The volume id.
        id: String,
    },
    /// The volume to snapshot or clone does not exist.
    #[error("source volume {id} does not exist")]
    SourceVolumeNotFound {
        /// The volume id.
        id: String,
    },
    /// No snapshot has this id.
    #[error("snapshot {id} does not exist")]
    SnapshotNotFound {
        /// The snapshot id.
        id: String,
    },
    /// The node is neither configured nor discovered.
    #[error("storage node {node} is not in the controller configuration (nor discovered)")]
    NodeNotFound {
        /// The node name.
        node: String,
    },
    /// A volume of that name exists and differs from the request.
    #[error("volume {name} exists with {difference}; use another name")]
    VolumeNameTaken {
        /// The CSI name.
        name: String,
        /// How the existing volume differs.
        difference: String,
    },
    /// A snapshot of that name exists (of another volume).
    #[error(
        "snapshot name {name} is taken by snapshot {snapshot} of volume {volume}; use another name"
    )]
    SnapshotNameTaken {
        /// The CSI name.
        name: String,
        /// The existing snapshot.
        snapshot: String,
        /// Its source volume.
        volume: String,
    },

    // ---- The volume's state ----
    /// Published on this node already, with the other access mode.
    #[error("volume {volume} is already published on {node} with readonly={readonly}; unpublish it first")]
    PublishedOtherwise {
        /// The volume.
        volume: String,
        /// The node.
        node: String,
        /// The existing publication's mode.
        readonly: bool,
    },
    /// Published on another node: one node at a time.
    #[error("volume {volume} is published on node {node}; a Shorthorn volume is used by one node at a time, unpublish it there first")]
    PublishedElsewhere {
        /// The volume.
        volume: String,
        /// Where it is published.
        node: String,
    },
    /// Deleting a volume that is still published.
    #[error("volume {volume} is still published on {nodes}; unpublish it (delete the pods / VolumeAttachments) first")]
    StillPublished {
        /// The volume.
        volume: String,
        /// Where it is published, comma-separated.
        nodes: String,
    },
    /// Reverting a volume that is published.
    #[error("volume {volume} is published on node {node}; unpublish it (stop the pod) before reverting it")]
    RevertWhilePublished {
        /// The volume.
        volume: String,
        /// Where it is published.
        node: String,
    },
    /// Expanding a volume published through ublk.
    #[error("volume {volume} is published on node {node} through ublk, which cannot change a device's size online; unpublish it (stop the pod) and expand again")]
    ExpandWhilePublishedUblk {
        /// The volume.
        volume: String,
        /// Where it is published.
        node: String,
    },
    /// A snapshot of a volume with several writers.
    #[error("volume {volume} is published read-write on {writers} nodes; a consistent snapshot needs a single writer")]
    MultipleWriters {
        /// The volume.
        volume: String,
        /// How many read-write publications it has.
        writers: usize,
    },
    /// The writer's I/O cannot be held for a snapshot.
    #[error("volume {volume} is published read-write on node {node} through ublk, and that node is reached only through its local SPDK socket (no node agent), so its I/O cannot be quiesced; unpublish the volume (stop the pod) to snapshot it, or run the node agent")]
    Unfenceable {
        /// The volume.
        volume: String,
        /// The writer's node.
        node: String,
    },
    /// The node cannot serve volumes to a kernel.
    #[error(
        "node {node} has no frontend configured (ublk or nvme-tcp): it runs no CSI node service"
    )]
    NoFrontend {
        /// The node.
        node: String,
    },
    /// Every replica has failed.
    #[error("volume {volume} has no healthy replica {purpose}")]
    NoHealthyReplica {
        /// The volume.
        volume: String,
        /// What it was needed for, as the end of the sentence.
        purpose: &'static str,
    },
    /// The volume is unclean and none of its current replicas can be
    /// reached to be chosen as the one that holds the last writes.
    #[error("volume {volume} lost its engine on {engine_node} without a clean teardown, and none of its current replicas ({candidates}) can be reached to take over; bring one of those nodes back, then publish again")]
    NoReachableCurrentReplica {
        /// The volume.
        volume: String,
        /// Where its engine was.
        engine_node: String,
        /// The current replicas' nodes, comma-separated.
        candidates: String,
    },
    /// Reverting a volume to another volume's snapshot.
    #[error("snapshot {snapshot} was taken of volume {taken_of}, not {volume}; create a new volume from it instead")]
    SnapshotOfAnotherVolume {
        /// The snapshot.
        snapshot: String,
        /// The volume it was taken of.
        taken_of: String,
        /// The volume to revert.
        volume: String,
    },
    /// A replica's node has no lvol of the snapshot.
    #[error("snapshot {snapshot} has no lvol on node {node}, which holds a replica of volume {volume}; it cannot be reverted there")]
    SnapshotMissingOnNode {
        /// The snapshot.
        snapshot: String,
        /// The replica's node.
        node: String,
        /// The volume.
        volume: String,
    },
    /// The replica count of a volume cannot change in its present state.
    #[error(
        "numberOfReplicas of volume {volume} cannot change now: {reason}; nothing was changed"
    )]
    ReplicaChangeRefused {
        /// The volume.
        volume: String,
        /// Why, and what to do about it.
        reason: String,
    },
    /// The node has no lvstore and nothing to create it on.
    #[error("node {node} has no lvstore {lvstore} and no base_bdev is configured to create it on")]
    NoBaseBdev {
        /// The node.
        node: String,
        /// The lvstore name.
        lvstore: String,
    },
    /// The node's lvstore carries another cluster's stamp.
    #[error("node {node}: lvstore {lvstore} is stamped by Shorthorn cluster {stamps}, but this controller's store belongs to cluster {cluster}, so the node is neither used nor cleaned. If the store was replaced (a new etcd endpoint or prefix, a wiped or restored embedded file), point the controller back at the store that owns the node; only if the node must really join this cluster, list {stamps} under [sweep] adopt_clusters (its old volumes are then this cluster's orphans)")]
    ForeignNode {
        /// The node.
        node: String,
        /// The lvstore name.
        lvstore: String,
        /// The other clusters' ids, comma-separated.
        stamps: String,
        /// This controller's cluster id.
        cluster: String,
    },
    /// The node's lvstore is gone.
    #[error("lvstore {lvstore} is missing on node {node}")]
    LvstoreMissing {
        /// The node.
        node: String,
        /// The lvstore name.
        lvstore: String,
    },

    // ---- Space and placement ----
    /// Not enough qualifying nodes for the replicas.
    #[error("{replicas} replicas need {replicas} distinct storage nodes with {size} bytes available, but only {eligible} of {candidates} qualify{why}; add nodes or space, or lower numberOfReplicas")]
    NotEnoughNodes {
        /// Replicas asked for.
        replicas: usize,
        /// Bytes each needs.
        size: u64,
        /// Nodes that qualify.
        eligible: usize,
        /// Nodes considered.
        candidates: usize,
        /// Why the others do not, starting with `: ` (or empty).
        why: String,
    },
    /// Too few nodes can take the replicas a higher count adds.
    #[error("volume {volume} has replicas on {holders}; {wanted} more need as many other storage nodes with {size} bytes available, but only {eligible} of {candidates} qualify{why}; nothing was changed: add nodes or space, or ask for fewer replicas")]
    NoNodeForNewReplica {
        /// The volume.
        volume: String,
        /// Nodes holding its replicas now, comma-separated.
        holders: String,
        /// Replicas to add.
        wanted: usize,
        /// Bytes each needs.
        size: u64,
        /// Other nodes that qualify.
        eligible: usize,
        /// Other nodes considered.
        candidates: usize,
        /// Why the others do not, starting with `: ` (or empty).
        why: String,
    },
    /// No node that could use the volume lies in the requisite topology.
    #[error("no node running the Shorthorn CSI node service lies in the requisite topology {requisite}; the volume could not be used there")]
    NoNodeInTopology {
        /// The requisite topology, as given.
        requisite: String,
    },
    /// A clone asks for more replicas than its snapshot has lvols.
    #[error("snapshot {snapshot} has replica lvols on {count} node(s) ({nodes}); a clone is made on those nodes, so ask for at most {count} replicas (numberOfReplicas)")]
    CloneReplicasUnavailable {
        /// The snapshot.
        snapshot: String,
        /// How many nodes hold its lvols.
        count: usize,
        /// Which, comma-separated.
        nodes: String,
    },
    /// A snapshot would leave its lvstore without room for later writes.
    #[error("lvstore {lvstore} on node {node} has {free} free clusters; a snapshot of volume {volume} needs {needed} ({allocated} the replica holds, which later writes must copy, plus a reserve of {reserve}); free space on that node (delete snapshots or volumes) first")]
    SnapshotSpace {
        /// The lvstore.
        lvstore: String,
        /// Its node.
        node: String,
        /// Its free clusters.
        free: u64,
        /// The volume.
        volume: String,
        /// Clusters needed.
        needed: u64,
        /// Clusters the replica holds.
        allocated: u64,
        /// Clusters kept in reserve.
        reserve: u64,
    },
    /// A rebuild target's lvstore cannot hold the data to copy plus a reserve.
    #[error("lvstore {lvstore} on node {node} has {free} free clusters; rebuilding volume {volume} there needs {needed} ({data} still to copy plus a reserve of {reserve}); the rebuild did not start, or stopped and was rolled back, so nothing of it is left: free space on that node or add a node")]
    RebuildSpace {
        /// The lvstore.
        lvstore: String,
        /// Its node.
        node: String,
        /// Its free clusters.
        free: u64,
        /// The volume.
        volume: String,
        /// Clusters needed.
        needed: u64,
        /// Clusters of data to copy.
        data: u64,
        /// Clusters kept in reserve.
        reserve: u64,
    },

    // ---- Concurrency ----
    /// The same operation on the same volume is in flight.
    #[error("a {operation} of volume {volume} is already in progress; retry later")]
    OperationInProgress {
        /// The operation (journal spelling).
        operation: &'static str,
        /// The volume.
        volume: String,
    },
    /// Another request created a volume of that name at the same moment.
    #[error("volume name {name} was taken concurrently; retry")]
    NameTakenConcurrently {
        /// The CSI name.
        name: String,
    },
    /// A rebuild was given up and rolled back; the volume is as it was.
    #[error("rebuild of volume {volume} onto node {target} was abandoned and rolled back ({reason}); the volume is unchanged and the reconciler tries again later")]
    RebuildAbandoned {
        /// The volume.
        volume: String,
        /// The node that was being rebuilt.
        target: String,
        /// Why.
        reason: String,
    },
    /// A store record changed under this request.
    #[error("concurrent update of {key}; retry the request")]
    ConcurrentUpdate {
        /// The store key.
        key: String,
    },
    /// The replicas' snapshots took longer than the fence may hold I/O.
    #[error("the replica snapshots of volume {volume} did not complete within the {deadline:?} fence deadline, so they may hold different bytes; the snapshot was rolled back: retry")]
    FenceDeadlinePassed {
        /// The volume.
        volume: String,
        /// The fence deadline.
        deadline: Duration,
    },
    /// The fence had lifted by itself before it was resumed: what was
    /// taken under it is not proven consistent.
    #[error("the I/O fence of volume {volume} lifted by itself (its {deadline:?} lease ran out, or the node agent restarted) before the snapshot was done, so the replica snapshots may hold different bytes; the snapshot was rolled back: retry")]
    FenceLeaseExpired {
        /// The volume.
        volume: String,
        /// The fence deadline.
        deadline: Duration,
    },
    /// No resume got through before the fence's deadline.
    #[error("could not confirm that the I/O fence of volume {volume} held until the snapshot was done ({reason}); the snapshot was rolled back and I/O resumes by the fence's deadline: retry")]
    FenceNotConfirmed {
        /// The volume.
        volume: String,
        /// The last resume failure.
        reason: String,
    },

    // ---- Leadership ----
    /// This controller is not the leader on etcd (standing by, or deposed):
    /// the call was refused, or its write was, and nothing changed.
    #[error("{reason}; nothing was changed: retry, the leader controller serves this call")]
    NotLeader {
        /// Who leads, or how leadership was lost.
        reason: String,
    },

    /// The embedded store's file is held by another controller.
    #[error("state file {path} is locked by {holder}: another controller is using it; stop that one, or give this controller its own file")]
    StoreInUse {
        /// The database file.
        path: String,
        /// Who holds it, as far as known.
        holder: String,
    },

    // ---- Nodes, agents, the store ----
    /// A storage node could not be reached at all.
    #[error("storage node {node} is unreachable: {reason}; check that its spdk_tgt (or node agent) is running and reachable from the controller")]
    NodeUnreachable {
        /// Node name from the configuration.
        node: String,
        /// What the transport reported.
        reason: String,
    },
    /// spdk_tgt on a node answered a JSON-RPC call with an error.
    #[error("spdk_tgt on node {node} refused {method} (code {code}): {message}")]
    Spdk {
        /// Node name from the configuration.
        node: String,
        /// The JSON-RPC method that failed.
        method: String,
        /// SPDK's error code (negative errno or JSON-RPC code).
        code: i64,
        /// SPDK's error message.
        message: String,
        /// What the error means.
        kind: spdk_client::ErrorKind,
    },
    /// A node agent refused or failed a call (identity, quiesce).
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// The state store (etcd or the embedded database) failed.
    #[error("state store error: {0}; check that etcd (or the embedded database file) is reachable and writable")]
    Store(StoreError),
    /// The controller configuration is invalid.
    #[error("invalid controller configuration: {0}")]
    Config(String),
    /// A local I/O error (reading the config, binding the socket).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An invariant of the controller itself was violated; a bug.
    #[error(
        "internal error: {0}; this is a Shorthorn bug, please report it with the controller log"
    )]
    Internal(String),
}

impl From<StoreError> for ControllerError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict { key } => ControllerError::ConcurrentUpdate { key },
            StoreError::NotLeader { reason } => ControllerError::NotLeader { reason },
            StoreError::Locked { path, holder } => ControllerError::StoreInUse { path, holder },
            other => ControllerError::Store(other),
        }
    }
}

/// An SPDK call that failed on one storage node. Converts into
/// [`ControllerError`] (`Spdk` when spdk_tgt refused, `NodeUnreachable`
/// otherwise) with `?`.
#[derive(Debug)]
pub struct NodeError {
    /// The node.
    pub node: String,
    /// The JSON-RPC method.
    pub method: &'static str,
    /// What the SPDK client reported.
    pub source: SpdkError,
}

impl From<NodeError> for ControllerError {
    fn from(err: NodeError) -> Self {
        match err.source {
            SpdkError::Rpc {
                code,
                message,
                kind,
            } => ControllerError::Spdk {
                node: err.node,
                method: err.method.to_string(),
                code: i64::from(code),
                message,
                kind,
            },
            other => ControllerError::NodeUnreachable {
                node: err.node,
                reason: format!("{}: {other}", err.method),
            },
        }
    }
}

impl ControllerError {
    /// Builds an [`ControllerError::Io`] with a description of what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// The gRPC code this error maps to: the one place that decides.
    pub fn code(&self) -> Code {
        use ControllerError as E;
        match self {
            E::MissingField { .. }
            | E::UnknownParameter { .. }
            | E::InvalidParameter { .. }
            | E::UnsupportedCapability { .. }
            | E::NegativeMaxEntries { .. }
            | E::BadRequestBody { .. } => Code::InvalidArgument,
            E::CapacityOutOfRange { .. } | E::ShrinkRefused { .. } | E::CloneTooSmall { .. } => {
                Code::OutOfRange
            }
            E::Unimplemented { .. } => Code::Unimplemented,
            E::VolumeNotFound { .. }
            | E::SourceVolumeNotFound { .. }
            | E::SnapshotNotFound { .. }
            | E::NodeNotFound { .. } => Code::NotFound,
            E::VolumeNameTaken { .. }
            | E::SnapshotNameTaken { .. }
            | E::PublishedOtherwise { .. } => Code::AlreadyExists,
            E::PublishedElsewhere { .. }
            | E::StillPublished { .. }
            | E::RevertWhilePublished { .. }
            | E::ExpandWhilePublishedUblk { .. }
            | E::MultipleWriters { .. }
            | E::Unfenceable { .. }
            | E::NoFrontend { .. }
            | E::NoHealthyReplica { .. }
            | E::SnapshotOfAnotherVolume { .. }
            | E::SnapshotMissingOnNode { .. }
            | E::NoBaseBdev { .. }
            | E::ForeignNode { .. }
            | E::LvstoreMissing { .. }
            | E::ReplicaChangeRefused { .. } => Code::FailedPrecondition,
            E::NotEnoughNodes { .. }
            | E::NoNodeForNewReplica { .. }
            | E::NoNodeInTopology { .. }
            | E::CloneReplicasUnavailable { .. }
            | E::SnapshotSpace { .. }
            | E::RebuildSpace { .. } => Code::ResourceExhausted,
            E::UnknownStartingToken { .. }
            | E::OperationInProgress { .. }
            | E::NameTakenConcurrently { .. }
            | E::ConcurrentUpdate { .. }
            | E::RebuildAbandoned { .. }
            | E::FenceDeadlinePassed { .. }
            | E::FenceLeaseExpired { .. }
            | E::FenceNotConfirmed { .. } => Code::Aborted,
            E::NodeUnreachable { .. }
            | E::NoReachableCurrentReplica { .. }
            | E::Store(_)
            | E::NotLeader { .. }
            | E::StoreInUse { .. } => Code::Unavailable,
            E::Spdk { kind, .. } => match kind {
                spdk_client::ErrorKind::NoSpace => Code::ResourceExhausted,
                spdk_client::ErrorKind::Busy => Code::Unavailable,
                _ => Code::Internal,
            },
            E::Agent(agent) => match agent {
                AgentError::Conflict { .. } => Code::FailedPrecondition,
                AgentError::Unreachable { .. }
                | AgentError::Tls { .. }
                | AgentError::Timeout { .. }
                | AgentError::Unauthorized { .. } => Code::Unavailable,
                AgentError::Status { status, .. } if *status >= 500 => Code::Unavailable,
                AgentError::Status { .. }
                | AgentError::Decode { .. }
                | AgentError::Endpoint { .. } => Code::Internal,
            },
            E::Config(_) | E::Io { .. } | E::Internal(_) => Code::Internal,
        }
    }
}

impl From<ControllerError> for Status {
    fn from(err: ControllerError) -> Self {
        Status::new(err.code(), err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_carry_the_code_and_the_operator_message() {
        let status = Status::from(ControllerError::NodeUnreachable {
            node: "node-a".into(),
            reason: "connection refused".into(),
        });
        assert_eq!(status.code(), Code::Unavailable);
        assert!(status.message().contains("node-a"));
        assert!(status.message().contains("spdk_tgt"));

        let status = Status::from(ControllerError::NotEnoughNodes {
            replicas: 3,
            size: 1,
            eligible: 2,
            candidates: 2,
            why: String::new(),
        });
        assert_eq!(status.code(), Code::ResourceExhausted);

        let full = ControllerError::Spdk {
            node: "node-b".into(),
            method: "bdev_lvol_create".into(),
            code: -32602,
            message: "No space left on device".into(),
            kind: spdk_client::ErrorKind::NoSpace,
        };
        assert_eq!(Status::from(full).code(), Code::ResourceExhausted);
    }

    #[test]
    fn store_errors_convert_with_question_mark() {
        fn conflict() -> Result<()> {
            Err(StoreError::Conflict { key: "k".into() })?
        }
        fn down() -> Result<()> {
            Err(StoreError::Backend("etcd down".into()))?
        }
        let err = conflict().unwrap_err();
        assert_eq!(err.code(), Code::Aborted);
        assert!(err.to_string().contains("retry"), "{err}");
        let err = down().unwrap_err();
        assert_eq!(err.code(), Code::Unavailable);
        assert!(err.to_string().contains("etcd down"), "{err}");
        let deposed = ControllerError::from(StoreError::NotLeader {
            reason: "this controller lost leadership: its etcd lease expired".into(),
        });
        assert_eq!(deposed.code(), Code::Unavailable);
        let message = deposed.to_string();
        assert!(
            message.starts_with("this controller lost leadership") && message.contains("retry"),
            "{message}"
        );
    }

    #[test]
    fn agent_refusals_are_preconditions_and_outages_unavailable() {
        let refused = ControllerError::from(AgentError::Conflict {
            agent: "of node a (https://a:1)".into(),
            path: "/quiesce/suspend",
            message: "not staged".into(),
        });
        assert_eq!(refused.code(), Code::FailedPrecondition);
        assert!(refused.to_string().contains("node a"), "{refused}");
        let tls = ControllerError::from(AgentError::Tls {
            agent: "a".into(),
            reason: "invalid peer certificate: UnknownIssuer".into(),
        });
        assert_eq!(tls.code(), Code::Unavailable);
    }
}
