//! Replica rebuild: bring a volume back to full redundancy, copying only
//! what was written (docs/rebuild.md).
//!
//! An **unpublished** volume is rebuilt thin ([`run_thin`]), onto its stale
//! replica's node (delta: only the layers above the newest snapshot both
//! hold) or onto a new node: the target gets a working lvol (`shv-<id>-rb`,
//! a clone of the shared snapshot or a plain thin lvol), exported to the
//! source node alone and attached there; each source snapshot the target
//! lacks is shallow-copied into it, oldest first, and the working lvol is
//! snapshotted under the same name after each, so the chain is reproduced;
//! then a rebuild snapshot of the source's live lvol (`shv-<id>-rbs`) is
//! copied the same way. Under the volume lock the source is checked
//! unchanged (still unpublished, nothing written above the rebuild
//! snapshot), the target becomes current in one membership transaction,
//! the working lvol takes the replica's name, the target's old layers are
//! dropped and the rebuild snapshot merges back into the source.
//!
//! A **published** volume is rebuilt thin too when its engine node can
//! hold it for a swap ([`thin_swap`]: copy rounds, then the raid replaced
//! under a dm-linear suspend); otherwise it gets the documented fallback
//! ([`full`]): a full raid rebuild into the raid's empty slot.
//!
//! Journal (`rebuild-replica`): `planned`, `working-created`, `connected`,
//! `layer-copied` (per snapshot), `live-snapshotted`, `live-copied`,
//! `promoted` (the thin swap's own steps follow `layer-copied`, see
//! [`thin_swap`]). Recovery rolls back anything before `promoted` (the new
//! lvols go, the rebuild snapshot merges back: the volume is as it was)
//! and completes the renames and cleanup after it.

pub mod copy;
pub mod full;
pub mod leftovers;
pub mod plan;
pub mod thin_swap;
pub mod trigger;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use spdk_client::{
    BdevLvolCloneParams, BdevLvolCreateParams, BdevLvolRenameParams, BdevLvolSnapshotParams,
};
use tracing::Instrument;

use crate::context::Context;
use crate::error::{ControllerError, Result};
use crate::journal::Journal;
use crate::membership::{self, Promotion};
use crate::naming;
use crate::nodes::{primitives, NodeHandle};
use crate::store::{OperationKind, ReplicaSnapshot};
use copy::tolerate_unreachable;
use plan::{ChainPlan, Layer};

/// Where a rebuild copies to, relative to the replica it heals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Onto the stale replica's own node, reusing the layers it still shares.
    Delta,
    /// Onto a node that holds no replica of the volume.
    NewNode,
}

impl Mode {
    /// For logs and `shorthorn ctl`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Delta => "delta",
            Mode::NewNode => "new-node",
        }
    }
}

/// What to rebuild.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The volume.
    pub volume_id: String,
    /// Node holding a current replica to copy from.
    pub source: String,
    /// Node to copy onto.
    pub target: String,
    /// Delta or new node.
    pub mode: Mode,
    /// The replica (by node) the new one replaces, dropped when it is current.
    pub replaces: Option<String>,
}

/// How far a rebuild got, in bytes (for `shorthorn ctl rebuilds`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Bytes to copy in all.
    pub total_bytes: u64,
    /// Bytes copied so far.
    pub copied_bytes: u64,
    /// Layer being copied (1-based; the live layer is the last).
    pub layer: usize,
    /// Layers to copy, the live layer included.
    pub layers: usize,
}

/// Journal payload of a rebuild.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebuildPayload {
    /// Node copied from.
    pub source: String,
    /// Node copied onto.
    pub target: String,
    /// Delta or new node.
    pub mode: Mode,
    /// Replica (node) being replaced.
    pub replaces: Option<String>,
    /// Publishing node whose raid the new leg joins (full-copy fallback or
    /// thin swap).
    #[serde(default)]
    pub engine: Option<String>,
    /// Why a full copy was used instead of the thin path.
    #[serde(default)]
    pub full_copy_reason: Option<String>,
    /// What the thin path copies.
    #[serde(default)]
    pub chain: Option<ChainPlan>,
    /// Cluster size of the source's lvstore.
    #[serde(default)]
    pub cluster_size: u64,
    /// UUID of the target's working lvol, once created.
    #[serde(default)]
    pub working_uuid: Option<String>,
    /// Whether the target's lvol was created by this rebuild (full copy).
    #[serde(default)]
    pub target_created: bool,
    /// Snapshots made on the target so far (target uuids), oldest first.
    #[serde(default)]
    pub copied: Vec<Layer>,
    /// UUID of the rebuild snapshot on the source, once taken.
    #[serde(default)]
    pub rebuild_snapshot: Option<String>,
    /// Progress.
    #[serde(default)]
    pub progress: Progress,
    /// When it began, seconds since the Unix epoch.
    #[serde(default)]
    pub started_unix: u64,
    /// The thin swap of a published volume, when that is the path.
    #[serde(default)]
    pub swap: Option<thin_swap::SwapState>,
}

impl RebuildPayload {
    /// The payload of a rebuild of `req` at step `planned`: nothing made or
    /// copied yet. Each path sets the fields it owns (engine, chain, swap).
    fn planned(req: &Request, cluster_size: u64, progress: Progress) -> Self {
        RebuildPayload {
            source: req.source.clone(),
            target: req.target.clone(),
            mode: req.mode,
            replaces: req.replaces.clone(),
            engine: None,
            full_copy_reason: None,
            chain: None,
            cluster_size,
            working_uuid: None,
            target_created: false,
            copied: Vec::new(),
            rebuild_snapshot: None,
            progress,
            started_unix: unix_now(),
            swap: None,
        }
    }

    /// The payload of a thin rebuild (unpublished, or the published swap)
    /// copying `chain` and the live layer: `data_clusters` in all.
    fn planned_thin(
        req: &Request,
        chain: &ChainPlan,
        cluster_size: u64,
        data_clusters: u64,
    ) -> Self {
        let progress = Progress {
            total_bytes: data_clusters * cluster_size,
            copied_bytes: 0,
            layer: 0,
            layers: chain.layers.len() + 1,
        };
        RebuildPayload {
            chain: Some(chain.clone()),
            ..Self::planned(req, cluster_size, progress)
        }
    }

    /// Journals this payload as the `planned` step of the volume's rebuild.
    async fn begin(&self, ctx: &Context, volume_id: &str) -> Result<Journal> {
        let kind = OperationKind::RebuildReplica;
        Journal::begin(&ctx.store, kind, volume_id, None, "planned", self).await
    }
}

/// What a finished rebuild did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The volume.
    pub volume_id: String,
    /// Copied from.
    pub source: String,
    /// Copied onto.
    pub target: String,
    /// Delta or new node.
    pub mode: Mode,
    /// Bytes moved (clusters copied × cluster size, or blocks rebuilt).
    pub bytes_copied: u64,
    /// Snapshot layers copied (the live layer not counted).
    pub layers_copied: usize,
    /// Whether it was the full-copy fallback.
    pub full_copy: bool,
    /// Wall time.
    pub elapsed: Duration,
}

/// Lock key held while a rebuild of `volume_id` runs in this process: the
/// periodic recovery leaves its journal entry alone meanwhile (the rebuild
/// does not hold the volume lock while it copies).
fn in_flight_key(volume_id: &str) -> String {
    format!("rebuild-replica:{volume_id}")
}

/// Rebuilds as `req` says: thin when the volume is unpublished, the thin
/// swap or the full-copy fallback when it is published.
pub async fn rebuild(ctx: &Context, req: &Request) -> Result<Outcome> {
    let span = tracing::info_span!("rebuild", volume = %req.volume_id, source = %req.source, target = %req.target, mode = req.mode.as_str());
    async {
        let Some(_in_flight) = ctx.try_lock(&in_flight_key(&req.volume_id)) else {
            return Err(ControllerError::OperationInProgress {
                operation: crate::journal::kind_name(OperationKind::RebuildReplica),
                volume: req.volume_id.clone(),
            });
        };
        let publications = ctx.store.list_publications(&req.volume_id).await?;
        match publications.first() {
            Some(p) => match thin_swap::capability(ctx, &p.record).await {
                Ok(()) => thin_swap::run(ctx, req, &p.record).await,
                Err(reason) => full::run(ctx, req, &p.record.node, &reason).await,
            },
            None => run_thin(ctx, req).await,
        }
    }
    .instrument(span)
    .await
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What a thin rebuild copies (the source's chain split against what the
/// target holds), checked against the target's space: the plan, the
/// cluster size, and the clusters to copy (the live lvol's included).
async fn plan_thin(
    req: &Request,
    source: &NodeHandle,
    target: &NodeHandle,
) -> Result<(ChainPlan, u64, u64)> {
    let volume_id = &req.volume_id;
    let source_chain = plan::chain(source, &source.lvol_alias(volume_id)).await?;
    let chain = match req.mode {
        Mode::Delta => {
            let old = plan::chain(target, &target.lvol_alias(volume_id)).await?;
            plan::split(&source_chain, Some(&old), &[])
        }
        Mode::NewNode => {
            let mut held = Vec::new();
            for l in &source_chain {
                let alias = format!("{}/{}", target.config.lvstore, l.name);
                held.push(plan::lvol_info(target, &alias).await?.is_some());
            }
            plan::split(&source_chain, None, &held)
        }
    };
    let live = plan::lvol_info(source, &source.lvol_alias(volume_id))
        .await?
        .ok_or_else(|| {
            ControllerError::Internal(format!(
                "source replica of {volume_id} on {} is gone",
                source.name()
            ))
        })?;
    let cluster_size = plan::check_space(source, volume_id, 0).await?;
    let data_clusters: u64 =
        chain.layers.iter().map(|l| l.clusters).sum::<u64>() + live.num_allocated_clusters;
    plan::check_space(target, volume_id, data_clusters * cluster_size).await?;
    Ok((chain, cluster_size, data_clusters))
}

/// The thin rebuild of an unpublished volume (see the module docs).
async fn run_thin(ctx: &Context, req: &Request) -> Result<Outcome> {
    let started = Instant::now();
    let volume_id = &req.volume_id;
    let source = ctx.nodes.get(&req.source)?;
    let target = ctx.nodes.get(&req.target)?;
    let (volume, _) = ctx.existing_volume(volume_id).await?;
    let (chain, cluster_size, data_clusters) = plan_thin(req, &source, &target).await?;

    let mut payload = RebuildPayload::planned_thin(req, &chain, cluster_size, data_clusters);
    let mut journal = payload.begin(ctx, volume_id).await?;
    tracing::info!(
        base = ?chain.base.as_ref().map(|b| &b.name),
        layers = chain.layers.len(),
        discard = chain.discard.len(),
        bytes = payload.progress.total_bytes,
        "thin rebuild started"
    );
    let copied = copy_all(
        ctx,
        &source,
        &target,
        volume.capacity_bytes,
        &mut payload,
        &mut journal,
    )
    .await;
    let result = match copied {
        Ok(()) => finalize(ctx, &source, &target, &mut payload, &mut journal).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => {
            journal.finish().await?;
            let outcome = Outcome {
                volume_id: volume_id.clone(),
                source: req.source.clone(),
                target: req.target.clone(),
                mode: req.mode,
                bytes_copied: payload.progress.copied_bytes,
                layers_copied: chain.layers.len(),
                full_copy: false,
                elapsed: started.elapsed(),
            };
            tracing::info!(
                bytes = outcome.bytes_copied,
                layers = outcome.layers_copied,
                elapsed_ms = outcome.elapsed.as_millis() as u64,
                "thin rebuild complete: the replica is current"
            );
            Ok(outcome)
        }
        Err(err) => {
            tracing::warn!(error = %err, "rebuild failed; removing what it made on the target");
            match rollback(ctx, volume_id, &payload).await {
                Ok(()) => journal.finish().await?,
                Err(e) => {
                    tracing::error!(error = %e, "rebuild rollback incomplete; the reconciler retries it")
                }
            }
            Err(err)
        }
    }
}

/// Every copy step up to `live-copied`.
async fn copy_all(
    ctx: &Context,
    source: &NodeHandle,
    target: &NodeHandle,
    size: u64,
    payload: &mut RebuildPayload,
    journal: &mut Journal,
) -> Result<()> {
    let volume_id = journal.record().volume_id.clone();
    let dst = copy_layers(ctx, source, target, size, payload, journal).await?;
    let layers = payload.chain.as_ref().map_or(0, |c| c.layers.len());
    let poll = Duration::from_millis(ctx.rebuild.poll_interval_ms.max(10));

    // The live layer: the volume is unpublished, so nothing writes to it;
    // `finalize` proves that nothing did.
    let snap = source
        .client
        .bdev_lvol_snapshot(&BdevLvolSnapshotParams {
            lvol_name: source.lvol_alias(&volume_id),
            snapshot_name: naming::rebuild_snapshot_lvol(&volume_id),
        })
        .await
        .map_err(|e| source.call_failed("bdev_lvol_snapshot", e))?;
    payload.rebuild_snapshot = Some(snap.clone());
    journal.step("live-snapshotted", payload).await?;
    payload.progress.layer = layers + 1;
    if layers > 0 {
        recheck_space(target, &volume_id, payload).await?;
    }
    copy_layer(source, &snap, &dst, poll, payload, journal).await?;
    journal.step("live-copied", payload).await?;
    copy::disconnect(Some(source), Some(target), &volume_id, target.name()).await?;
    Ok(())
}

/// The working lvol on the target (`working-created`), the link to it from
/// the source (`connected`), and every snapshot layer the target lacks
/// (`layer-copied` each); returns the working lvol's bdev on the source.
async fn copy_layers(
    ctx: &Context,
    source: &NodeHandle,
    target: &NodeHandle,
    size: u64,
    payload: &mut RebuildPayload,
    journal: &mut Journal,
) -> Result<String> {
    let volume_id = journal.record().volume_id.clone();
    let chain = payload.chain.clone().unwrap_or_else(|| ChainPlan {
        base: None,
        layers: Vec::new(),
        discard: Vec::new(),
    });
    let working = naming::rebuild_lvol(&volume_id);
    let working_alias = format!("{}/{working}", target.config.lvstore);
    let uuid = match &chain.base {
        Some(base) => target
            .client
            .bdev_lvol_clone(&BdevLvolCloneParams {
                snapshot_name: format!("{}/{}", target.config.lvstore, base.name),
                clone_name: working.clone(),
            })
            .await
            .map_err(|e| target.call_failed("bdev_lvol_clone", e))?,
        None => target
            .client
            .bdev_lvol_create(&BdevLvolCreateParams {
                lvol_name: working.clone(),
                size_in_mib: size.div_ceil(1024 * 1024),
                thin_provision: Some(true),
                lvs_name: Some(target.config.lvstore.clone()),
                ..Default::default()
            })
            .await
            .map_err(|e| target.call_failed("bdev_lvol_create", e))?,
    };
    payload.working_uuid = Some(uuid);
    journal.step("working-created", payload).await?;

    let dst = copy::connect(source, target, &volume_id, &working_alias).await?;
    journal.step("connected", payload).await?;

    let poll = Duration::from_millis(ctx.rebuild.poll_interval_ms.max(10));
    for (i, layer) in chain.layers.iter().enumerate() {
        payload.progress.layer = i + 1;
        if i > 0 {
            recheck_space(target, &volume_id, payload).await?;
        }
        let src = format!("{}/{}", source.config.lvstore, layer.name);
        let clusters = copy_layer(source, &src, &dst, poll, payload, journal).await?;
        let snap = target
            .client
            .bdev_lvol_snapshot(&BdevLvolSnapshotParams {
                lvol_name: working_alias.clone(),
                snapshot_name: layer.name.clone(),
            })
            .await
            .map_err(|e| target.call_failed("bdev_lvol_snapshot", e))?;
        payload.copied.push(Layer {
            name: layer.name.clone(),
            uuid: snap,
            clusters,
        });
        journal.step("layer-copied", payload).await?;
    }

    Ok(dst)
}

/// Between copy rounds: the target's lvstore must still have room for what
/// is left to copy plus the reserve ([`plan::check_space`]). Other volumes
/// on the node may have written meanwhile, and a thin lvstore that fills up
/// mid-copy fails the copy (and on real SPDK drops raid legs silently), so
/// the rebuild stops cleanly first.
async fn recheck_space(
    target: &NodeHandle,
    volume_id: &str,
    payload: &RebuildPayload,
) -> Result<()> {
    let left = payload
        .progress
        .total_bytes
        .saturating_sub(payload.progress.copied_bytes);
    plan::check_space(target, volume_id, left).await.map(|_| ())
}

/// Shallow-copies one layer, journaling progress (for `shorthorn ctl
/// rebuilds`) at most once a second.
async fn copy_layer(
    source: &NodeHandle,
    src: &str,
    dst: &str,
    poll: Duration,
    payload: &mut RebuildPayload,
    journal: &mut Journal,
) -> Result<u64> {
    let base = payload.progress.copied_bytes;
    let cluster = payload.cluster_size;
    let op = copy::start(source, src, dst).await?;
    let mut last = Instant::now();
    loop {
        let status = copy::check(source, op, src, dst).await?;
        payload.progress.copied_bytes = base + status.copied_clusters * cluster;
        if let Some(done) = status.done {
            return Ok(done);
        }
        if last.elapsed() >= Duration::from_secs(1) {
            last = Instant::now();
            journal.step("copying", payload).await?;
        }
        tokio::time::sleep(poll).await;
    }
}

/// Under the volume lock: proves the source unchanged, makes the target
/// current, then renames and cleans up (see [`complete`]).
async fn finalize(
    ctx: &Context,
    source: &NodeHandle,
    target: &NodeHandle,
    payload: &mut RebuildPayload,
    journal: &mut Journal,
) -> Result<()> {
    let volume_id = journal.record().volume_id.clone();
    let _guard = ctx.lock(&volume_id).await;
    let abandon = |reason: String| ControllerError::RebuildAbandoned {
        volume: volume_id.clone(),
        target: target.name().to_string(),
        reason,
    };
    if let Some(p) = ctx.store.list_publications(&volume_id).await?.first() {
        return Err(abandon(format!(
            "the volume was published on {} during the copy, so the copy may miss writes",
            p.record.node
        )));
    }
    let (_, replicas) = ctx.existing_volume(&volume_id).await?;
    if !replicas
        .iter()
        .any(|r| r.node == source.name() && r.health.is_current())
    {
        return Err(abandon(format!(
            "the source replica on {} is no longer current",
            source.name()
        )));
    }
    let live = plan::lvol_info(source, &source.lvol_alias(&volume_id))
        .await?
        .ok_or_else(|| abandon("the source's live lvol is gone".into()))?;
    let rbs = naming::rebuild_snapshot_lvol(&volume_id);
    if live.base_snapshot.as_deref() != Some(rbs.as_str()) || live.num_allocated_clusters != 0 {
        return Err(abandon(format!(
            "the source's live lvol changed during the copy ({} clusters written above the rebuild snapshot, parent {:?})",
            live.num_allocated_clusters, live.base_snapshot
        )));
    }
    let working_uuid = payload
        .working_uuid
        .clone()
        .ok_or_else(|| ControllerError::Internal("rebuild without a working lvol".into()))?;
    let reason = format!(
        "rebuilt from {} at unix {} ({}, {} bytes copied)",
        source.name(),
        unix_now(),
        payload.mode.as_str(),
        payload.progress.copied_bytes
    );
    membership::promote(
        ctx,
        &volume_id,
        &Promotion {
            node: target.name().to_string(),
            lvstore: target.config.lvstore.clone(),
            lvol_uuid: working_uuid,
            reason,
            replaces: payload.replaces.clone(),
            engine: None,
        },
    )
    .await?;
    journal.step("promoted", payload).await?;
    complete(ctx, &volume_id, payload).await
}

/// After `promoted`: the working lvol takes the replica's name (the old
/// replica lvol, if any, goes first), the target's discarded layers go, the
/// rebuild snapshot merges back into the source, and the snapshot records
/// list the target's copies. Idempotent (recovery repeats it).
async fn complete(ctx: &Context, volume_id: &str, payload: &RebuildPayload) -> Result<()> {
    let target = ctx.nodes.get(&payload.target)?;
    let working_uuid = payload.working_uuid.clone().unwrap_or_default();
    let alias = target.lvol_alias(volume_id);
    if let Some(old) = target
        .client
        .bdev_get(&alias)
        .await
        .map_err(|e| target.call_failed("bdev_get_bdevs", e))?
    {
        if old.name != working_uuid {
            primitives::remove_lvol(&target, &old.name).await?;
        }
    }
    let working_alias = format!(
        "{}/{}",
        target.config.lvstore,
        naming::rebuild_lvol(volume_id)
    );
    if target
        .client
        .bdev_get(&working_alias)
        .await
        .map_err(|e| target.call_failed("bdev_get_bdevs", e))?
        .is_some()
    {
        target
            .client
            .bdev_lvol_rename(&BdevLvolRenameParams {
                old_name: working_alias,
                new_name: naming::replica_lvol(volume_id),
            })
            .await
            .map_err(|e| target.call_failed("bdev_lvol_rename", e))?;
    }
    if let Some(chain) = &payload.chain {
        for name in &chain.discard {
            let alias = format!("{}/{name}", target.config.lvstore);
            if let Err(e) = primitives::remove_lvol(&target, &alias).await {
                tracing::warn!(lvol = %alias, error = %e, "could not drop a discarded layer of the old replica; the snapshot reclaim retries");
            }
            forget_replica_snapshot(ctx, name, &payload.target).await?;
        }
    }
    for layer in &payload.copied {
        record_replica_snapshot(ctx, &layer.name, &target, &layer.uuid).await?;
    }
    if let Ok(source) = ctx.nodes.get(&payload.source) {
        tolerate_unreachable(merge_rebuild_snapshot(&source, volume_id).await)?;
    }
    Ok(())
}

/// Deletes the source's rebuild snapshot (one child, the live lvol: SPDK
/// merges it back into it).
async fn merge_rebuild_snapshot(source: &NodeHandle, volume_id: &str) -> Result<()> {
    let alias = format!(
        "{}/{}",
        source.config.lvstore,
        naming::rebuild_snapshot_lvol(volume_id)
    );
    primitives::remove_lvol(source, &alias).await
}

/// Adds the target's copy of snapshot lvol `name` to its snapshot record.
async fn record_replica_snapshot(
    ctx: &Context,
    name: &str,
    target: &NodeHandle,
    uuid: &str,
) -> Result<()> {
    let Some(id) = name.strip_prefix(naming::SNAPSHOT_PREFIX) else {
        return Ok(());
    };
    for _ in 0..5 {
        let Some(mut snap) = ctx.store.get_snapshot(id).await? else {
            return Ok(());
        };
        snap.record
            .replica_snapshots
            .retain(|r| r.node != target.name());
        snap.record.replica_snapshots.push(ReplicaSnapshot {
            node: target.name().to_string(),
            lvstore: target.config.lvstore.clone(),
            lvol_uuid: uuid.to_string(),
        });
        match ctx.store.update_snapshot(&snap.record, snap.revision).await {
            Ok(_) => return Ok(()),
            Err(crate::store::StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ControllerError::ConcurrentUpdate {
        key: format!("snapshot {id}"),
    })
}

/// Drops `node`'s copy of snapshot lvol `name` from its snapshot record.
async fn forget_replica_snapshot(ctx: &Context, name: &str, node: &str) -> Result<()> {
    let Some(id) = name.strip_prefix(naming::SNAPSHOT_PREFIX) else {
        return Ok(());
    };
    let Some(mut snap) = ctx.store.get_snapshot(id).await? else {
        return Ok(());
    };
    let before = snap.record.replica_snapshots.len();
    snap.record.replica_snapshots.retain(|r| r.node != node);
    if snap.record.replica_snapshots.len() != before {
        ctx.store
            .update_snapshot(&snap.record, snap.revision)
            .await?;
    }
    Ok(())
}

/// Undoes a thin rebuild that did not reach `promoted`: the link goes, the
/// working lvol and the snapshots made on the target go (newest first), the
/// rebuild snapshot merges back into the source. The volume's records were
/// never touched. An unreachable node is left to the orphan sweep.
async fn rollback(ctx: &Context, volume_id: &str, payload: &RebuildPayload) -> Result<()> {
    let source = ctx.nodes.get(&payload.source).ok();
    let target = ctx.nodes.get(&payload.target).ok();
    copy::disconnect(
        source.as_deref(),
        target.as_deref(),
        volume_id,
        &payload.target,
    )
    .await?;
    if let Some(target) = &target {
        let working = format!(
            "{}/{}",
            target.config.lvstore,
            naming::rebuild_lvol(volume_id)
        );
        tolerate_unreachable(primitives::remove_lvol(target, &working).await)?;
        for layer in payload.copied.iter().rev() {
            tolerate_unreachable(primitives::remove_lvol(target, &layer.uuid).await)?;
        }
    }
    if let Some(source) = &source {
        tolerate_unreachable(merge_rebuild_snapshot(source, volume_id).await)?;
    }
    tracing::info!(volume = %volume_id, target = %payload.target, "rebuild rolled back: the volume is as it was");
    Ok(())
}

/// Completes or rolls back an interrupted rebuild.
pub async fn recover(ctx: &Context, journal: Journal) -> Result<()> {
    let volume_id = journal.record().volume_id.clone();
    let Some(_in_flight) = ctx.try_lock(&in_flight_key(&volume_id)) else {
        tracing::debug!(volume = %volume_id, "rebuild running in this process; recovery leaves it alone");
        return Ok(());
    };
    let payload: RebuildPayload = journal.payload()?;
    if payload.swap.is_some() {
        return thin_swap::recover(ctx, journal, payload).await;
    }
    if payload.engine.is_some() {
        return full::recover(ctx, journal, payload).await;
    }
    let guard = ctx.lock(&volume_id).await;
    let Some(journal) = journal.reread().await? else {
        return Ok(());
    };
    let step = journal.record().step.clone();
    if step == "promoted" {
        tracing::warn!(volume = %volume_id, target = %payload.target, "interrupted rebuild had made its replica current: completing the rename and cleanup");
        complete(ctx, &volume_id, &payload).await?;
    } else {
        tracing::warn!(volume = %volume_id, target = %payload.target, %step, "interrupted rebuild rolled back: its lvols on the target are removed and the volume stays as it was; the reconciler starts it over");
        rollback(ctx, &volume_id, &payload).await?;
    }
    drop(guard);
    journal.finish().await
}
