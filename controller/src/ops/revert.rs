//! Reverting a volume to one of its snapshots (what Longhorn calls snapshot
//! revert), on every replica: clone the replica's snapshot lvol under a
//! temporary name, delete the volume's lvol, and rename the clone to the
//! volume's lvol name, so the volume keeps its id, records and exports.
//!
//! Refused (FAILED_PRECONDITION) while the volume is published: the
//! filesystem on the node would see its blocks change underneath it.
//!
//! Steps journaled: `started` (nothing destroyed yet), `cloned` (every clone
//! exists: from here the revert only rolls forward), `reverted`.
//! Recovery: at `started` the temporary clones are removed; later, on every
//! node still holding a temporary clone, the old lvol is deleted and the
//! clone renamed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use spdk_client::{BdevLvolCloneParams, BdevLvolDeleteParams, BdevLvolRenameParams};
use tracing::Instrument;

use crate::context::Context;
use crate::error::{ControllerError, Result};
use crate::journal::Journal;
use crate::naming;
use crate::nodes::primitives::resize_lvol;
use crate::nodes::{primitives, NodeHandle};
use crate::snapshots::snapshot_lock;
use crate::store::{Expect, OperationKind, ReplicaHealth};

/// Journal payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevertPayload {
    /// The snapshot reverted to.
    pub snapshot_id: String,
    /// Replica nodes being reverted.
    pub nodes: Vec<String>,
    /// The volume's size (the clones are grown to it).
    pub size: u64,
}

/// Reverts every replica of `volume_id` to snapshot `snapshot_id`.
///
/// NOT_FOUND for an unknown volume or snapshot; FAILED_PRECONDITION when the
/// volume is published, the snapshot belongs to another volume, or a healthy
/// replica's node holds no lvol of the snapshot.
pub async fn revert_to_snapshot(ctx: &Context, volume_id: &str, snapshot_id: &str) -> Result<()> {
    let span = tracing::info_span!("revert", volume = %volume_id, snapshot = %snapshot_id);
    async {
        let _snap_guard = ctx.lock(&snapshot_lock(snapshot_id)).await;
        let _guard = ctx.lock(volume_id).await;
        let (volume, replicas) = ctx.existing_volume(volume_id).await?;
        let snapshot = crate::snapshots::get(ctx, snapshot_id).await?;
        if snapshot.source_volume_id != volume_id {
            return Err(ControllerError::SnapshotOfAnotherVolume {
                snapshot: snapshot_id.to_string(),
                taken_of: snapshot.source_volume_id,
                volume: volume_id.to_string(),
            });
        }
        let publications = ctx.store.list_publications(volume_id).await?;
        if let Some(p) = publications.first() {
            return Err(ControllerError::RevertWhilePublished {
                volume: volume_id.to_string(),
                node: p.record.node.clone(),
            });
        }
        let nodes: Vec<String> = replicas
            .iter()
            .filter(|r| r.health == ReplicaHealth::Healthy)
            .map(|r| r.node.clone())
            .collect();
        if let Some(missing) = nodes
            .iter()
            .find(|n| !snapshot.replica_snapshots.iter().any(|s| &s.node == *n))
        {
            return Err(ControllerError::SnapshotMissingOnNode {
                snapshot: snapshot_id.to_string(),
                node: missing.clone(),
                volume: volume_id.to_string(),
            });
        }
        if nodes.is_empty() {
            return Err(ControllerError::NoHealthyReplica {
                volume: volume_id.to_string(),
                purpose: "to revert",
            });
        }
        let payload = RevertPayload {
            snapshot_id: snapshot_id.to_string(),
            nodes,
            size: volume.capacity_bytes,
        };
        let mut journal = Journal::begin(&ctx.store, OperationKind::RevertVolume, volume_id, None, "started", &payload).await?;
        let mut handles = Vec::new();
        for n in &payload.nodes {
            handles.push(ctx.nodes.get(n)?);
        }
        let cloned = futures::future::try_join_all(
            handles.iter().map(|n| clone_temp(n, volume_id, snapshot_id, payload.size)),
        )
        .await;
        if let Err(err) = cloned {
            tracing::warn!(error = %err, "revert failed before touching the volume; removing the temporary clones");
            match remove_temps(ctx, &payload.nodes, volume_id).await {
                Ok(()) => journal.finish().await?,
                Err(e) => tracing::error!(error = %e, "cleanup incomplete; the reconciler will retry"),
            }
            return Err(err);
        }
        journal.step("cloned", &payload).await?;
        roll_forward(ctx, volume_id, journal).await
    }
    .instrument(span)
    .await
}

/// Clones the snapshot lvol on `node` to the volume's temporary revert lvol.
async fn clone_temp(
    node: &NodeHandle,
    volume_id: &str,
    snapshot_id: &str,
    size: u64,
) -> Result<()> {
    let temp = naming::revert_lvol(volume_id);
    let params = BdevLvolCloneParams {
        snapshot_name: format!(
            "{}/{}",
            node.config.lvstore,
            naming::snapshot_lvol(snapshot_id)
        ),
        clone_name: temp.clone(),
    };
    match node.client.bdev_lvol_clone(&params).await {
        Ok(_) => {}
        Err(e) if e.is_already_exists() => {}
        Err(e) => return Err(node.call_failed("bdev_lvol_clone", e).into()),
    }
    resize_lvol(node, &format!("{}/{temp}", node.config.lvstore), size).await
}

async fn remove_temps(ctx: &Context, nodes: &[String], volume_id: &str) -> Result<()> {
    for name in nodes {
        let node = ctx.nodes.get(name)?;
        delete_lvol(&node, &naming::revert_lvol(volume_id)).await?;
    }
    Ok(())
}

async fn delete_lvol(node: &NodeHandle, lvol_name: &str) -> Result<()> {
    let params = BdevLvolDeleteParams {
        name: format!("{}/{lvol_name}", node.config.lvstore),
    };
    match node.client.bdev_lvol_delete(&params).await {
        Ok(()) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(node.call_failed("bdev_lvol_delete", e).into()),
    }
}

/// On every node still holding a temporary clone: drop the old lvol and
/// rename the clone; then point the replica records at the new lvols.
async fn roll_forward(ctx: &Context, volume_id: &str, mut journal: Journal) -> Result<()> {
    let payload: RevertPayload = journal.payload()?;
    let temp = naming::revert_lvol(volume_id);
    let mut uuids = BTreeMap::new();
    for name in &payload.nodes {
        let node = ctx.nodes.get(name)?;
        let temp_alias = format!("{}/{temp}", node.config.lvstore);
        if node
            .client
            .bdev_get(&temp_alias)
            .await
            .map_err(|e| node.call_failed("bdev_get_bdevs", e))?
            .is_some()
        {
            primitives::remove_replica(&node, volume_id).await?;
            let params = BdevLvolRenameParams {
                old_name: temp_alias,
                new_name: naming::replica_lvol(volume_id),
            };
            node.client
                .bdev_lvol_rename(&params)
                .await
                .map_err(|e| node.call_failed("bdev_lvol_rename", e))?;
        }
        if let Some(b) = node
            .client
            .bdev_get(&node.lvol_alias(volume_id))
            .await
            .map_err(|e| node.call_failed("bdev_get_bdevs", e))?
        {
            uuids.insert(name.clone(), b.name);
        }
    }
    journal.step("reverted", &payload).await?;
    for replica in ctx.store.list_replicas(volume_id).await? {
        if let Some(uuid) = uuids.get(&replica.record.node) {
            if *uuid != replica.record.lvol_uuid {
                let mut record = replica.record;
                record.lvol_uuid = uuid.clone();
                ctx.store
                    .put_replica(&record, Expect::Revision(replica.revision))
                    .await?;
            }
        }
    }
    tracing::info!(snapshot = %payload.snapshot_id, "volume reverted");
    journal.finish().await
}

/// Completes or rolls back an interrupted revert.
pub async fn recover(ctx: &Context, journal: Journal) -> Result<()> {
    let volume_id = journal.record().volume_id.clone();
    let payload: RevertPayload = journal.payload()?;
    let _snap_guard = ctx.lock(&snapshot_lock(&payload.snapshot_id)).await;
    let _guard = ctx.lock(&volume_id).await;
    let Some(journal) = journal.reread().await? else {
        return Ok(()); // finished or moved on by another actor meanwhile
    };
    if journal.record().step == "started" {
        remove_temps(ctx, &payload.nodes, &volume_id).await?;
        return journal.finish().await;
    }
    roll_forward(ctx, &volume_id, journal).await
}
