//! CreateSnapshot: one lvol snapshot per healthy replica, all taken while
//! the volume's I/O is fenced, so every replica's snapshot holds the same
//! bytes.
//!
//! Order: read the engine and bring the membership up to date (lost legs
//! stale, an unclean volume resolved to one replica), check every replica's lvstore has room for the copy-on-write the
//! snapshot causes (RESOURCE_EXHAUSTED otherwise: a thin lvstore that fills
//! up silently drops its raid leg), choose the fence (see [`crate::fence`]),
//! journal `started`, start the snapshot's clock (the fence deadline), fence,
//! snapshot every replica in parallel, lift the fence at once, journal
//! `snapshotted`, write the [`SnapshotRecord`], journal `recorded`. A failure
//! on any replica deletes the snapshots already taken (each has the volume's
//! lvol as only child, so SPDK merges it back) and lifts the fence. So does a
//! snapshot that is not proven consistent: replica snapshots still running
//! when the clock ran out, a fence that had lifted by itself before its
//! resume (lease ran out, agent restarted), or no resume getting through
//! before the deadline. Those are ABORTED: retry.
//!
//! Recovery: a fence the crash left in place is lifted; then finished if the
//! record exists (an internal snapshot, recorded as deleted, is reclaimed at
//! once), otherwise every snapshot lvol of the operation is deleted.
//! Crash tests can also abort while the fence holds (`create-snapshot:fenced`,
//! not a journaled step: the journal still says `started`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use spdk_client::{BdevLvolGetLvstoresParams, BdevLvolSnapshotParams};
use tokio::time::Instant;
use tracing::Instrument;

use crate::context::Context;
use crate::error::{ControllerError, Result};
use crate::health;
use crate::journal::Journal;
use crate::membership;
use crate::naming;
use crate::nodes::{primitives, NodeHandle};
use crate::snapshots::{remove_snapshot_lvols, snapshot_lock};
use crate::store::{
    OperationKind, ReplicaHealth, ReplicaRecord, ReplicaSnapshot, SnapshotRecord, SCHEMA_VERSION,
};

/// Free clusters an lvstore keeps beyond the snapshot's copy-on-write need,
/// as a fraction of its size (1/100), and at least one cluster.
const RESERVE_DIVISOR: u64 = 100;

/// Journal payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotPayload {
    /// Snapshot id.
    pub snapshot_id: String,
    /// CSI name.
    pub name: String,
    /// Replica nodes being snapshotted.
    pub nodes: Vec<String>,
    /// Snapshot lvol uuid per node, once taken.
    #[serde(default)]
    pub lvols: BTreeMap<String, String>,
}

/// CSI CreateSnapshot: the snapshot `name` of `source_volume_id`, taken now
/// or found (idempotent by name). ALREADY_EXISTS when the name belongs to a
/// snapshot of another volume.
pub async fn create_snapshot(
    ctx: &Context,
    name: &str,
    source_volume_id: &str,
) -> Result<SnapshotRecord> {
    let _name_guard = ctx.lock(&format!("snapshot-name:{name}")).await;
    if let Some(existing) = ctx.store.get_snapshot_by_name(name).await? {
        let existing = existing.record;
        if existing.source_volume_id != source_volume_id {
            return Err(ControllerError::SnapshotNameTaken {
                name: name.to_string(),
                snapshot: existing.id,
                volume: existing.source_volume_id,
            });
        }
        return Ok(existing);
    }
    let snapshot_id = naming::new_snapshot_id();
    let _snap_guard = ctx.lock(&snapshot_lock(&snapshot_id)).await;
    take_snapshot(ctx, source_volume_id, &snapshot_id, name, false).await
}

/// Takes snapshot `snapshot_id` of `volume_id` and records it (as already
/// `deleted` for internal snapshots, which are reclaimed once unused). The
/// caller holds the snapshot's lock.
pub async fn take_snapshot(
    ctx: &Context,
    volume_id: &str,
    snapshot_id: &str,
    name: &str,
    internal: bool,
) -> Result<SnapshotRecord> {
    let span = tracing::info_span!("create_snapshot", volume = %volume_id, snapshot = %snapshot_id, name = %name);
    async {
        let _guard = ctx.lock(volume_id).await;
        if ctx.store.get_volume(volume_id).await?.is_none() {
            return Err(ControllerError::SourceVolumeNotFound {
                id: volume_id.to_string(),
            });
        }
        read_membership(ctx, volume_id).await?;
        let Some((volume, replicas)) = ctx.volume(volume_id).await? else {
            return Err(ControllerError::SourceVolumeNotFound {
                id: volume_id.to_string(),
            });
        };
        let healthy: Vec<ReplicaRecord> = replicas
            .into_iter()
            .filter(|r| r.health == ReplicaHealth::Healthy)
            .collect();
        if healthy.is_empty() {
            return Err(ControllerError::NoHealthyReplica {
                volume: volume_id.to_string(),
                purpose: "to snapshot",
            });
        }
        let mut nodes = Vec::with_capacity(healthy.len());
        for r in &healthy {
            nodes.push(ctx.nodes.get(&r.node)?);
        }
        futures::future::try_join_all(nodes.iter().map(|n| check_space(n, volume_id))).await?;
        let fence = fence_of(ctx, volume_id).await?;

        let mut payload = SnapshotPayload {
            snapshot_id: snapshot_id.to_string(),
            name: name.to_string(),
            nodes: nodes.iter().map(|n| n.name().to_string()).collect(),
            lvols: BTreeMap::new(),
        };
        let mut journal = Journal::begin(
            &ctx.store,
            OperationKind::CreateSnapshot,
            volume_id,
            None,
            "started",
            &payload,
        )
        .await?;
        let taken = snapshot_all(ctx, &nodes, volume_id, snapshot_id, fence).await;
        let lvols = match taken {
            Ok(lvols) => lvols,
            Err(err) => {
                tracing::warn!(error = %err, "snapshot failed; removing the replica snapshots already taken");
                match remove_snapshot_lvols(ctx, &payload.nodes, snapshot_id).await {
                    Ok(()) => journal.finish().await?,
                    Err(e) => tracing::error!(error = %e, "rollback incomplete; the reconciler will retry"),
                }
                return Err(err);
            }
        };
        payload.lvols = lvols;
        if let Err(err) = confirm_members(ctx, volume_id, snapshot_id, &mut payload.lvols).await {
            tracing::warn!(error = %err, "snapshot not proven consistent; removing the replica snapshots");
            match remove_snapshot_lvols(ctx, &payload.nodes, snapshot_id).await {
                Ok(()) => journal.finish().await?,
                Err(e) => tracing::error!(error = %e, "rollback incomplete; the reconciler will retry"),
            }
            return Err(err);
        }
        journal.step("snapshotted", &payload).await?;
        let record = SnapshotRecord {
            version: SCHEMA_VERSION,
            id: snapshot_id.to_string(),
            name: name.to_string(),
            source_volume_id: volume_id.to_string(),
            created_at: SystemTime::now(),
            size_bytes: volume.capacity_bytes,
            replica_snapshots: nodes
                .iter()
                .filter(|n| payload.lvols.contains_key(n.name()))
                .map(|n| ReplicaSnapshot {
                    node: n.name().to_string(),
                    lvstore: n.config.lvstore.clone(),
                    lvol_uuid: payload.lvols.get(n.name()).cloned().unwrap_or_default(),
                })
                .collect(),
            deleted: internal,
        };
        ctx.store
            .create_snapshot(&record)
            .await?;
        journal.step("recorded", &payload).await?;
        journal.finish().await?;
        tracing::info!(replicas = record.replica_snapshots.len(), "snapshot taken");
        Ok(record)
    }
    .instrument(span)
    .await
}

/// Brings the membership up to date before a snapshot copies the replicas:
/// legs the engine dropped are demoted (they missed writes), an engine that
/// is lost or cannot be read makes the volume unclean, and an unclean volume
/// gets its one current replica chosen, so only replicas holding every
/// acknowledged write are snapshotted.
async fn read_membership(ctx: &Context, volume_id: &str) -> Result<()> {
    for publication in ctx.store.list_publications(volume_id).await? {
        health::engine::record_evidence(ctx, volume_id, &publication.record.node).await?;
    }
    membership::resolve_unclean(ctx, volume_id).await?;
    Ok(())
}

/// Reads every engine again once the replica snapshots are taken. A leg
/// still in its raid now got every write acknowledged before the snapshot;
/// one that left meanwhile may not have, so its replica is demoted and its
/// snapshot dropped. An engine that cannot be read (or is gone) proves
/// nothing: the snapshot is voided (ABORTED, retry).
async fn confirm_members(
    ctx: &Context,
    volume_id: &str,
    snapshot_id: &str,
    lvols: &mut BTreeMap<String, String>,
) -> Result<()> {
    for publication in ctx.store.list_publications(volume_id).await? {
        let view = health::engine::observe(ctx, &publication.record).await;
        health::engine::record(ctx, &publication.record, &view, true).await?;
        match view {
            health::engine::EngineView::Intact => {}
            health::engine::EngineView::LegsLost(lost) => {
                let dropped: Vec<String> = lost
                    .into_iter()
                    .filter(|n| lvols.remove(n).is_some())
                    .collect();
                if !dropped.is_empty() {
                    tracing::warn!(dropped = ?dropped, "legs left the raid around the snapshot: their replica snapshots are dropped");
                    remove_snapshot_lvols(ctx, &dropped, snapshot_id).await?;
                }
            }
            health::engine::EngineView::EngineLost(reason)
            | health::engine::EngineView::Unreachable(reason) => {
                return Err(ControllerError::FenceNotConfirmed {
                    volume: volume_id.to_string(),
                    reason: format!(
                        "the raid could not be read again after the snapshot: {reason}"
                    ),
                });
            }
        }
    }
    if lvols.is_empty() {
        return Err(ControllerError::NoHealthyReplica {
            volume: volume_id.to_string(),
            purpose: "left after the snapshot",
        });
    }
    Ok(())
}

/// The fence a snapshot of `volume_id` needs given its publications now
/// (see [`crate::fence::Fencing::fence_for`]).
async fn fence_of(
    ctx: &Context,
    volume_id: &str,
) -> Result<Option<std::sync::Arc<dyn crate::fence::Fence>>> {
    let publications: Vec<_> = ctx
        .store
        .list_publications(volume_id)
        .await?
        .into_iter()
        .map(|p| p.record)
        .collect();
    ctx.fencing
        .fence_for(volume_id, &publications, |n| ctx.nodes.get(n))
}

/// Longest wait, after the fence's deadline passed, for replica snapshot
/// calls already sent: their lvols must exist before the rollback deletes
/// the snapshot's lvols, or a late one would be left behind.
const LATE_SNAPSHOT_WAIT: Duration = Duration::from_secs(30);

/// Fences (if needed), snapshots every replica in parallel, lifts the fence;
/// the snapshot lvol uuid per node. Any error means the snapshot is not
/// consistent; the caller rolls it back.
///
/// The snapshot's own clock starts before the fence: the fence's lease,
/// taken after, ends no earlier, so a replica snapshot accepted before the
/// clock runs out completed while I/O was held. A fence that lifted by
/// itself before it was resumed voids the snapshot (ABORTED, retry).
async fn snapshot_all(
    ctx: &Context,
    nodes: &[Arc<NodeHandle>],
    volume_id: &str,
    snapshot_id: &str,
    fence: Option<Arc<dyn crate::fence::Fence>>,
) -> Result<BTreeMap<String, String>> {
    let deadline = ctx.fencing.deadline();
    let expires = Instant::now() + deadline;
    let guard = match fence {
        Some(f) => Some(ctx.fencing.hold(f).await?),
        None => None,
    };
    if guard.is_some() {
        // Crash tests: a crash while I/O is fenced (journal step `started`).
        crate::journal::fault_point(OperationKind::CreateSnapshot, "fenced");
    }
    let under_fence = under_fence(nodes, volume_id, snapshot_id, expires).await;
    let released = match guard {
        Some(guard) => Some(guard.release().await),
        None => None,
    };
    let results = match under_fence {
        UnderFence::Done(results) => results,
        UnderFence::Late(late) => {
            // I/O is flowing again; let the calls already sent finish so the
            // rollback finds their lvols.
            let _ = tokio::time::timeout(LATE_SNAPSHOT_WAIT, late).await;
            return Err(ControllerError::FenceDeadlinePassed {
                volume: volume_id.to_string(),
                deadline,
            });
        }
    };
    match released {
        Some(Err(e)) => {
            return Err(ControllerError::FenceNotConfirmed {
                volume: volume_id.to_string(),
                reason: e.to_string(),
            })
        }
        Some(Ok(r)) if r.lease_expired => {
            return Err(ControllerError::FenceLeaseExpired {
                volume: volume_id.to_string(),
                deadline,
            })
        }
        Some(Ok(_)) | None => {}
    }
    let mut lvols = BTreeMap::new();
    for (node, result) in nodes.iter().zip(results) {
        lvols.insert(node.name().to_string(), result?);
    }
    Ok(lvols)
}

/// What [`under_fence`] did by the snapshot's deadline.
enum UnderFence {
    /// Every replica snapshot call returned in time.
    Done(Vec<Result<String>>),
    /// The deadline passed first; the calls still running.
    Late(futures::future::BoxFuture<'static, Vec<Result<String>>>),
}

/// What is done while I/O is held, finished by `expires`: snapshot every
/// replica in parallel. (Membership is read before the fence and confirmed
/// after it, see [`confirm_members`], so the hold stays short.)
async fn under_fence(
    nodes: &[Arc<NodeHandle>],
    volume_id: &str,
    snapshot_id: &str,
    expires: Instant,
) -> UnderFence {
    if Instant::now() >= expires {
        // The fence took its whole deadline to hold: send nothing.
        return UnderFence::Late(Box::pin(async { Vec::new() }));
    }
    let calls: Vec<_> = nodes
        .iter()
        .map(|n| {
            let (n, volume_id, snapshot_id) =
                (n.clone(), volume_id.to_string(), snapshot_id.to_string());
            async move { snapshot_one(&n, &volume_id, &snapshot_id).await }
        })
        .collect();
    let mut all: futures::future::BoxFuture<'static, _> =
        Box::pin(futures::future::join_all(calls));
    match tokio::time::timeout_at(expires, &mut all).await {
        Ok(results) => UnderFence::Done(results),
        Err(_) => UnderFence::Late(all),
    }
}

/// Snapshots the replica of `volume_id` on `node`; returns the snapshot lvol uuid.
async fn snapshot_one(node: &NodeHandle, volume_id: &str, snapshot_id: &str) -> Result<String> {
    let snapshot_name = naming::snapshot_lvol(snapshot_id);
    let params = BdevLvolSnapshotParams {
        lvol_name: node.lvol_alias(volume_id),
        snapshot_name: snapshot_name.clone(),
    };
    match node.client.bdev_lvol_snapshot(&params).await {
        Ok(uuid) => Ok(uuid),
        Err(e) if e.is_already_exists() => {
            let alias = format!("{}/{snapshot_name}", node.config.lvstore);
            primitives::existing_lvol_uuid(node, &alias, "snapshot lvol").await
        }
        Err(e) => Err(node.call_failed("bdev_lvol_snapshot", e).into()),
    }
}

/// RESOURCE_EXHAUSTED unless `node`'s lvstore can absorb rewriting every
/// cluster the replica holds now (the snapshot pins them) plus a reserve.
pub async fn check_space(node: &NodeHandle, volume_id: &str) -> Result<()> {
    let lvstores = node
        .client
        .bdev_lvol_get_lvstores(&BdevLvolGetLvstoresParams {
            lvs_name: Some(node.config.lvstore.clone()),
            ..Default::default()
        })
        .await
        .map_err(|e| node.call_failed("bdev_lvol_get_lvstores", e))?;
    let lvs = lvstores
        .into_iter()
        .next()
        .ok_or_else(|| ControllerError::LvstoreMissing {
            node: node.name().to_string(),
            lvstore: node.config.lvstore.clone(),
        })?;
    let alias = node.lvol_alias(volume_id);
    let allocated = node
        .client
        .bdev_get(&alias)
        .await
        .map_err(|e| node.call_failed("bdev_get_bdevs", e))?
        .and_then(|b| b.driver_specific.lvol)
        .map_or(0, |l| l.num_allocated_clusters);
    let reserve = (lvs.total_data_clusters / RESERVE_DIVISOR).max(1);
    let needed = allocated + reserve;
    if lvs.free_clusters < needed {
        return Err(ControllerError::SnapshotSpace {
            lvstore: lvs.name,
            node: node.name().to_string(),
            free: lvs.free_clusters,
            volume: volume_id.to_string(),
            needed,
            allocated,
            reserve,
        });
    }
    Ok(())
}

/// Completes or rolls back an interrupted CreateSnapshot.
pub async fn recover(ctx: &Context, journal: Journal) -> Result<()> {
    let volume_id = journal.record().volume_id.clone();
    let payload: SnapshotPayload = journal.payload()?;
    let _snap_guard = ctx.lock(&snapshot_lock(&payload.snapshot_id)).await;
    let _guard = ctx.lock(&volume_id).await;
    let Some(journal) = journal.reread().await? else {
        return Ok(()); // finished or moved on by another actor meanwhile
    };
    // A fence the crash left in place is lifted (its deadline would lift it anyway).
    match fence_of(ctx, &volume_id).await {
        Ok(Some(fence)) => {
            let lease_end = Instant::now() + ctx.fencing.deadline();
            if let Err(e) = crate::fence::resume_retrying(&*fence, lease_end).await {
                tracing::warn!(volume = %volume_id, error = %e, "could not lift the fence of an interrupted snapshot; it lifts at its deadline");
            }
        }
        Err(e @ ControllerError::Store(_)) => return Err(e),
        // No writer, or one that cannot be fenced: nothing to lift.
        Ok(None) | Err(_) => {}
    }
    if let Some(recorded) = ctx.store.get_snapshot(&payload.snapshot_id).await? {
        if recorded.record.deleted {
            // An internal snapshot (the source of a copy of a volume) whose
            // clone was never made: nothing reads it, so merge it back now
            // rather than leave its lvols until a later reconciler pass.
            super::snapshot_delete::reclaim_one(ctx, &payload.snapshot_id).await?;
        }
        return journal.finish().await;
    }
    tracing::info!(volume = %volume_id, snapshot = %payload.snapshot_id, step = %journal.record().step, "rolling back interrupted snapshot");
    remove_snapshot_lvols(ctx, &payload.nodes, &payload.snapshot_id).await?;
    journal.finish().await
}
