//! ControllerExpandVolume: grow every healthy replica lvol, then the record.
//!
//! A published raid1 follows by itself on real SPDK: the local lvol and the
//! remote replicas' namespaces (an NVMe-oF namespace-change notice makes
//! `bdev_nvme` re-read their size) report a new block count, and raid1 takes
//! the smallest of its base bdevs as its size (module/bdev/raid/raid1.c,
//! `raid1_resize`); the frontend subsystem then tells the kernel. SPDK's
//! ublk ignores bdev resize events, so `/dev/ublkbN` would keep its size:
//! a volume published through ublk is refused (FAILED_PRECONDITION) and can
//! be expanded once unpublished.
//!
//! Steps journaled: `started` (target size chosen), `resized` (every replica
//! lvol grown). Recovery redoes both (growing is idempotent).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::context::Context;
use crate::error::{ControllerError, Result};
use crate::journal::Journal;
use crate::naming;
use crate::nodes::primitives::resize_lvol;
use crate::store::{OperationKind, ReplicaHealth};
use agent_api::FrontendKind;

/// How long to wait for a published raid1 to report the new size.
const RAID_GROW_WAIT: Duration = Duration::from_secs(5);

/// Journal payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExpandPayload {
    /// New size in bytes.
    pub size: u64,
    /// Replica nodes to grow.
    pub nodes: Vec<String>,
}

/// Grows `volume_id` to `size` bytes (already rounded to whole clusters);
/// returns the new capacity. Smaller than now: OUT_OF_RANGE. Same or
/// already larger: succeeds without change (idempotent).
pub async fn expand_volume(ctx: &Context, volume_id: &str, size: u64) -> Result<u64> {
    let span = tracing::info_span!("expand_volume", volume = %volume_id, size);
    async {
        let _guard = ctx.lock(volume_id).await;
        let (volume, replicas) = ctx.existing_volume(volume_id).await?;
        if size < volume.capacity_bytes {
            return Err(ControllerError::ShrinkRefused {
                volume: volume_id.to_string(),
                current: volume.capacity_bytes,
                requested: size,
            });
        }
        if size == volume.capacity_bytes {
            return Ok(size);
        }
        let publications = ctx.store.list_publications(volume_id).await?;
        if let Some(p) = publications
            .iter()
            .find(|p| p.record.frontend == FrontendKind::Ublk)
        {
            return Err(ControllerError::ExpandWhilePublishedUblk {
                volume: volume_id.to_string(),
                node: p.record.node.clone(),
            });
        }
        let payload = ExpandPayload {
            size,
            nodes: replicas
                .iter()
                .filter(|r| r.health == ReplicaHealth::Healthy)
                .map(|r| r.node.clone())
                .collect(),
        };
        let journal = Journal::begin(
            &ctx.store,
            OperationKind::ExpandVolume,
            volume_id,
            None,
            "started",
            &payload,
        )
        .await?;
        finish(ctx, volume_id, journal).await?;
        for p in &publications {
            wait_for_raid(ctx, volume_id, &p.record.node, size).await;
        }
        Ok(size)
    }
    .instrument(span)
    .await
}

async fn finish(ctx: &Context, volume_id: &str, mut journal: Journal) -> Result<()> {
    let payload: ExpandPayload = journal.payload()?;
    let mut nodes = Vec::new();
    for name in &payload.nodes {
        nodes.push(ctx.nodes.get(name)?);
    }
    futures::future::try_join_all(
        nodes
            .iter()
            .map(|n| async move { resize_lvol(n, &n.lvol_alias(volume_id), payload.size).await }),
    )
    .await?;
    journal.step("resized", &payload).await?;
    if let Some(current) = ctx.store.get_volume(volume_id).await? {
        if current.record.capacity_bytes < payload.size {
            let mut record = current.record;
            record.capacity_bytes = payload.size;
            ctx.store.update_volume(&record, current.revision).await?;
        }
    }
    tracing::info!(size = payload.size, "volume expanded");
    journal.finish().await
}

/// Waits (bounded) until the raid1 on the publishing node reports `size`.
async fn wait_for_raid(ctx: &Context, volume_id: &str, node: &str, size: u64) {
    let Ok(target) = ctx.nodes.get(node) else {
        return;
    };
    let raid = naming::raid_bdev(volume_id);
    let deadline = tokio::time::Instant::now() + RAID_GROW_WAIT;
    loop {
        match target.client.bdev_get(&raid).await {
            Ok(Some(b)) if b.size_bytes() >= size => {
                tracing::info!(node, "published raid1 reports the new size");
                return;
            }
            Ok(_) | Err(_) if tokio::time::Instant::now() >= deadline => {
                tracing::warn!(node, "published raid1 did not report the new size in time; the kernel sees it once every replica's new size has reached the publishing node");
                return;
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Completes an interrupted expansion.
pub async fn recover(ctx: &Context, journal: Journal) -> Result<()> {
    let volume_id = journal.record().volume_id.clone();
    let _guard = ctx.lock(&volume_id).await;
    let Some(journal) = journal.reread().await? else {
        return Ok(()); // finished or moved on by another actor meanwhile
    };
    if ctx.volume(&volume_id).await?.is_none() {
        return journal.finish().await;
    }
    finish(ctx, &volume_id, journal).await
}
