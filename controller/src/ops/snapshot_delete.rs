//! DeleteSnapshot and the reclaiming of snapshots other volumes still read.
//!
//! SPDK deletes a snapshot lvol with no child outright, merges one with a
//! single child into that child, and refuses ("Operation not permitted") one
//! with two or more children (say the source volume and a clone). So a
//! deletion first marks the record `deleted` (durable intent: hidden from
//! listings, name released), then deletes what SPDK allows replica by
//! replica; what it refuses stays, and [`reclaim`] retries after every
//! DeleteVolume and on every reconciler pass, until the last dependent is
//! gone. The record disappears with its last lvol. Data another volume
//! reads is therefore never destroyed: SPDK itself refuses.

use tracing::Instrument;

use crate::context::Context;
use crate::error::{ControllerError, Result};
use crate::snapshots::{remove_snapshot_lvol, snapshot_lock};

/// CSI DeleteSnapshot; unknown ids succeed (idempotent).
pub async fn delete_snapshot(ctx: &Context, snapshot_id: &str) -> Result<()> {
    let span = tracing::info_span!("delete_snapshot", snapshot = %snapshot_id);
    async {
        let _guard = ctx.lock(&snapshot_lock(snapshot_id)).await;
        let Some(current) = ctx.store.get_snapshot(snapshot_id).await? else {
            return Ok(());
        };
        if !current.record.deleted {
            let mut record = current.record;
            record.deleted = true;
            ctx.store
                .update_snapshot(&record, current.revision)
                .await?;
        }
        match reclaim_one(ctx, snapshot_id).await {
            Ok(_) => Ok(()),
            // The user's view is settled; the lvols are reclaimed later.
            Err(ControllerError::NodeUnreachable { node, reason }) => {
                tracing::warn!(%node, %reason, "snapshot hidden; its lvol on an unreachable node is reclaimed when the node returns");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
    .instrument(span)
    .await
}

/// Deletes what SPDK allows of a `deleted` snapshot; returns whether it is
/// entirely gone. The caller holds the snapshot's lock.
pub(crate) async fn reclaim_one(ctx: &Context, snapshot_id: &str) -> Result<bool> {
    let Some(current) = ctx.store.get_snapshot(snapshot_id).await? else {
        return Ok(true);
    };
    let mut record = current.record;
    if !record.deleted {
        return Ok(false);
    }
    let before = record.replica_snapshots.len();
    let mut kept = Vec::new();
    let mut unreachable = None;
    for r in std::mem::take(&mut record.replica_snapshots) {
        let node = ctx.nodes.get(&r.node)?;
        match remove_snapshot_lvol(&node, snapshot_id).await {
            Ok(true) => {
                tracing::info!(node = %r.node, "snapshot lvol deleted (or merged into its only child)")
            }
            Ok(false) => {
                tracing::info!(node = %r.node, "snapshot lvol still feeds two or more lvols; kept until they go");
                kept.push(r);
            }
            Err(e @ ControllerError::NodeUnreachable { .. }) => {
                unreachable = Some(e);
                kept.push(r);
            }
            Err(e) => return Err(e),
        }
    }
    record.replica_snapshots = kept;
    if record.replica_snapshots.is_empty() {
        ctx.store.delete_snapshot(snapshot_id).await?;
        tracing::info!(snapshot = %snapshot_id, "snapshot reclaimed");
        return Ok(true);
    }
    if record.replica_snapshots.len() != before {
        ctx.store.update_snapshot(&record, current.revision).await?;
    }
    match unreachable {
        Some(e) => Err(e),
        None => Ok(false),
    }
}

/// Retries every `deleted` snapshot; returns how many were fully reclaimed.
pub async fn reclaim(ctx: &Context) -> Result<usize> {
    let mut reclaimed = 0;
    let mut cursor: Option<String> = None;
    loop {
        let page = ctx.store.list_snapshots(cursor.as_deref(), 100).await?;
        for s in &page.items {
            if !s.record.deleted {
                continue;
            }
            let _guard = ctx.lock(&snapshot_lock(&s.record.id)).await;
            match reclaim_one(ctx, &s.record.id).await {
                Ok(true) => reclaimed += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(snapshot = %s.record.id, error = %e, "reclaiming a deleted snapshot failed; will retry")
                }
            }
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(reclaimed),
        }
    }
}
