//! CreateVolume with a content source.
//!
//! From a snapshot: on each node holding one of the snapshot's replica
//! lvols, `bdev_lvol_clone` from that lvol (thin, shares the snapshot's
//! clusters), then grow the clone when the request is larger. A request
//! smaller than the snapshot is OUT_OF_RANGE. The clone gets as many
//! replicas as requested, taken from the snapshot's nodes; when the snapshot
//! has fewer replica lvols than requested the request is refused with
//! RESOURCE_EXHAUSTED (a clone must never silently be less redundant than
//! asked; copying to fresh nodes would need a full rebuild).
//!
//! From a volume: an internal snapshot of the source (fenced like any
//! snapshot, recorded as already deleted so it is hidden and reclaimed once
//! no clone depends on it), then a clone from it.
//!
//! Journaled as a CreateVolume (`placed`, `replicas-created`, `recorded`,
//! the steps [`create_journaled`] shares with an empty volume), whose
//! recovery removes the clone lvols when no volume record exists.

use spdk_client::BdevLvolCloneParams;
use tracing::Instrument;

use super::create_volume::{accessible_topology, create_journaled, CreateRequest};
use super::snapshot_create::take_snapshot;
use crate::context::Context;
use crate::error::{ControllerError, Result};
use crate::naming;
use crate::nodes::primitives::resize_lvol;
use crate::nodes::{primitives, NodeHandle};
use crate::snapshots::snapshot_lock;
use crate::store::{ContentSource, SnapshotRecord, VolumeRecord};

/// Creates volume `req` from snapshot `snapshot_id`, or returns the
/// existing one with the same name and properties.
pub async fn create_from_snapshot(
    ctx: &Context,
    req: CreateRequest,
    snapshot_id: &str,
) -> Result<VolumeRecord> {
    let _name_guard = ctx.lock(&format!("name:{}", req.name)).await;
    let source = ContentSource::Snapshot {
        id: snapshot_id.to_string(),
    };
    if let Some(existing) = existing(ctx, &req, &source).await? {
        return Ok(existing);
    }
    let _snap_guard = ctx.lock(&snapshot_lock(snapshot_id)).await;
    let snapshot = crate::snapshots::get(ctx, snapshot_id).await?;
    clone_locked(ctx, &req, &snapshot, source).await
}

/// Creates volume `req` as a copy of volume `source_id`, or returns the
/// existing one with the same name and properties.
pub async fn create_from_volume(
    ctx: &Context,
    req: CreateRequest,
    source_id: &str,
) -> Result<VolumeRecord> {
    let _name_guard = ctx.lock(&format!("name:{}", req.name)).await;
    let source = ContentSource::Volume {
        id: source_id.to_string(),
    };
    if let Some(existing) = existing(ctx, &req, &source).await? {
        return Ok(existing);
    }
    let Some((volume, _)) = ctx.volume(source_id).await? else {
        return Err(ControllerError::SourceVolumeNotFound {
            id: source_id.to_string(),
        });
    };
    check_size(&req, volume.capacity_bytes, "source volume", source_id)?;
    let snapshot_id = naming::new_snapshot_id();
    let _snap_guard = ctx.lock(&snapshot_lock(&snapshot_id)).await;
    let internal_name = format!("shorthorn-internal/clone-source/{snapshot_id}");
    let snapshot = take_snapshot(ctx, source_id, &snapshot_id, &internal_name, true).await?;
    let cloned = clone_locked(ctx, &req, &snapshot, source).await;
    if cloned.is_err() {
        // Nothing depends on the internal snapshot: merge it back now.
        if let Err(e) = super::snapshot_delete::reclaim(ctx).await {
            tracing::warn!(error = %e, "internal snapshot left for the reconciler");
        }
    }
    cloned
}

async fn existing(
    ctx: &Context,
    req: &CreateRequest,
    source: &ContentSource,
) -> Result<Option<VolumeRecord>> {
    let Some(existing) = ctx.store.get_volume_by_name(&req.name).await? else {
        return Ok(None);
    };
    let v = existing.record;
    if v.content_source.as_ref() != Some(source)
        || v.capacity_bytes != req.size
        || v.parameters != req.parameters
        || v.replica_count != req.replicas
    {
        return Err(ControllerError::VolumeNameTaken {
            name: req.name.clone(),
            difference: "a different content source, size or parameters".into(),
        });
    }
    Ok(Some(v))
}

fn check_size(req: &CreateRequest, source_size: u64, what: &'static str, id: &str) -> Result<()> {
    if req.size < source_size {
        return Err(ControllerError::CloneTooSmall {
            requested: req.size,
            source_kind: what,
            source_id: id.to_string(),
            source_size,
        });
    }
    Ok(())
}

/// Clones `snapshot` into a new volume. The caller holds the name and snapshot locks.
async fn clone_locked(
    ctx: &Context,
    req: &CreateRequest,
    snapshot: &SnapshotRecord,
    source: ContentSource,
) -> Result<VolumeRecord> {
    check_size(req, snapshot.size_bytes, "snapshot", &snapshot.id)?;
    let available: Vec<String> = snapshot
        .replica_snapshots
        .iter()
        .map(|r| r.node.clone())
        .collect();
    let wanted = req.replicas as usize;
    if available.len() < wanted {
        return Err(ControllerError::CloneReplicasUnavailable {
            snapshot: snapshot.id.clone(),
            count: available.len(),
            nodes: available.join(", "),
        });
    }
    let chosen: Vec<String> = available.into_iter().take(wanted).collect();
    let volume_id = naming::new_volume_id();
    let span = tracing::info_span!("clone_volume", volume = %volume_id, snapshot = %snapshot.id, name = %req.name);
    let volume = req.record(
        &volume_id,
        Some(source),
        accessible_topology(ctx, &req.topology)?,
    );
    let (snapshot_id, snapshot_size, size) = (snapshot.id.clone(), snapshot.size_bytes, req.size);
    create_journaled(ctx, volume, chosen, |node| {
        let (snapshot_id, volume_id) = (snapshot_id.clone(), volume_id.clone());
        async move { clone_one(&node, &snapshot_id, &volume_id, snapshot_size, size).await }
    })
    .instrument(span)
    .await
}

/// Clones the snapshot lvol on `node` into `volume_id`'s replica lvol and
/// grows it to `size`; returns the clone's uuid.
async fn clone_one(
    node: &NodeHandle,
    snapshot_id: &str,
    volume_id: &str,
    snapshot_size: u64,
    size: u64,
) -> Result<String> {
    let params = BdevLvolCloneParams {
        snapshot_name: format!(
            "{}/{}",
            node.config.lvstore,
            naming::snapshot_lvol(snapshot_id)
        ),
        clone_name: naming::replica_lvol(volume_id),
    };
    let uuid = match node.client.bdev_lvol_clone(&params).await {
        Ok(uuid) => uuid,
        Err(e) if e.is_already_exists() => {
            primitives::existing_lvol_uuid(node, &node.lvol_alias(volume_id), "clone").await?
        }
        Err(e) => return Err(node.call_failed("bdev_lvol_clone", e).into()),
    };
    if size > snapshot_size {
        resize_lvol(node, &node.lvol_alias(volume_id), size).await?;
    }
    Ok(uuid)
}
