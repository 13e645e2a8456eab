//! Changing a volume's replica count (`numberOfReplicas`), up or down, for
//! ControllerModifyVolume and `shorthorn ctl volume set-replicas`: one
//! function, [`set_replica_count`], shared by both (docs/rebuild.md).
//!
//! - **Up**: the new count is written to the volume record, then each new
//!   replica is a rebuild onto a new node chosen by placement
//!   ([`crate::rebuild::rebuild`]): the thin shallow-copy chain for an
//!   unpublished volume, the full-copy fallback into an empty raid slot for
//!   a published one. Everything is checked first (eligible nodes, a free
//!   raid slot when published, a reachable current replica to copy from),
//!   so a refused change changes nothing. If a rebuild fails, the replicas
//!   this change added are removed again and the old count is restored.
//! - **Down**: the replicas to drop are chosen failed first, then stale,
//!   then current ones on unreachable nodes, then current ones on other
//!   nodes than the engine's, and the engine node's own leg last; the last
//!   current replica is never dropped. Under the volume lock: the count is
//!   written and the publication's members shrink (one transaction, epoch
//!   bump), the legs leave the raid, are detached and unexported, their
//!   lvols are deleted, and then their records.
//!
//! Journal (`change-replicas`): `planned`, then `count-raised` and
//! `replica-added` (per replica) going up, or `members-shrunk`,
//! `legs-removed`, `lvols-deleted` going down (and when a failed increase is
//! undone). Recovery drops an entry at `planned` (nothing had changed),
//! keeps a raised count (the reconciler rebuilds the replicas still
//! missing, as for any missing replica), and completes a removal.
//!
//! Asking for the count a volume already has, with that many replicas, is
//! a no-op.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use spdk_client::BdevRaidRemoveBaseBdevParams;
use tracing::Instrument;

use crate::context::Context;
use crate::error::{ControllerError, Result};
use crate::journal::{kind_name, Journal};
use crate::membership;
use crate::naming;
use crate::nodes::{primitives, NodeHandle};
use crate::placement;
use crate::rebuild::{self, copy::tolerate_unreachable, Mode};
use crate::store::{OperationKind, ReplicaHealth, ReplicaRecord, StoreError, Versioned};

/// Largest replica count (as CreateVolume accepts).
pub const MAX_REPLICAS: u32 = 16;
/// How often a store transaction that lost a race is retried.
const CONFLICT_RETRIES: usize = 5;

/// What a change of the replica count did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeOutcome {
    /// The volume.
    pub volume_id: String,
    /// The count before.
    pub from: u32,
    /// The count now.
    pub to: u32,
    /// Nodes that got a new replica.
    pub added: Vec<String>,
    /// Nodes whose replica was removed.
    pub removed: Vec<String>,
    /// Whether a new replica was made by a full raid copy (published volume).
    pub full_copy: bool,
    /// Bytes the new replicas' copies moved.
    pub bytes_copied: u64,
    /// False when the volume already had this count and as many replicas.
    pub changed: bool,
}

/// Journal payload of a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangePayload {
    /// Count before the change.
    pub from: u32,
    /// Count asked for.
    pub to: u32,
    /// Nodes chosen for new replicas (going up).
    #[serde(default)]
    pub targets: Vec<String>,
    /// New replicas made so far (going up).
    #[serde(default)]
    pub added: Vec<String>,
    /// Replicas being removed (going down, or undoing a failed increase).
    #[serde(default)]
    pub removing: Vec<String>,
    /// The count the volume ends with once `removing` is gone.
    #[serde(default)]
    pub final_count: u32,
    /// When it began, seconds since the Unix epoch.
    #[serde(default)]
    pub started_unix: u64,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Lock key held while a change runs in this process: recovery leaves an
/// entry alone while it is held (the change releases the volume lock during
/// its rebuilds).
fn in_flight_key(volume_id: &str) -> String {
    format!("change-replicas:{volume_id}")
}

/// Sets the replica count of `volume_id` to `count` and adds or removes
/// replicas to match (see the module docs). Runs in its own task, so a
/// caller that goes away (a CSI deadline) does not stop it half-way.
pub async fn set_replica_count(
    ctx: &Context,
    volume_id: &str,
    count: u32,
) -> Result<ChangeOutcome> {
    let ctx = ctx.clone();
    let id = volume_id.to_string();
    let span = tracing::info_span!("change_replicas", volume = %volume_id, count);
    tokio::spawn(async move { change(&ctx, &id, count).await }.instrument(span))
        .await
        .map_err(|e| {
            ControllerError::Internal(format!("the replica count change task failed: {e}"))
        })?
}

async fn change(ctx: &Context, volume_id: &str, count: u32) -> Result<ChangeOutcome> {
    if !(1..=MAX_REPLICAS).contains(&count) {
        return Err(ControllerError::InvalidParameter {
            name: crate::params::PARAM_REPLICAS,
            value: count.to_string(),
            expected: "a whole number from 1 to 16",
        });
    }
    let Some(_in_flight) = ctx.try_lock(&in_flight_key(volume_id)) else {
        return Err(ControllerError::OperationInProgress {
            operation: kind_name(OperationKind::ChangeReplicas),
            volume: volume_id.to_string(),
        });
    };
    let guard = ctx.lock(volume_id).await;
    let volume =
        ctx.store
            .get_volume(volume_id)
            .await?
            .ok_or_else(|| ControllerError::VolumeNotFound {
                id: volume_id.to_string(),
            })?;
    let replicas: Vec<ReplicaRecord> = ctx
        .store
        .list_replicas(volume_id)
        .await?
        .into_iter()
        .map(|r| r.record)
        .collect();
    let from = volume.record.replica_count;
    let mut outcome = ChangeOutcome {
        volume_id: volume_id.to_string(),
        from,
        to: count,
        ..Default::default()
    };
    let have = replicas.len();
    if from == count && have == count as usize {
        tracing::info!("the volume already has this replica count: nothing to do");
        return Ok(outcome);
    }
    outcome.changed = true;
    if let Some(op) = ctx
        .store
        .list_pending_operations()
        .await?
        .into_iter()
        .find(|op| op.record.volume_id == volume_id)
    {
        return Err(ControllerError::OperationInProgress {
            operation: kind_name(op.record.kind),
            volume: volume_id.to_string(),
        });
    }
    let refuse = |reason: String| ControllerError::ReplicaChangeRefused {
        volume: volume_id.to_string(),
        reason,
    };
    if let Some(mark) = &volume.record.unclean {
        return Err(refuse(format!(
            "it is unclean ({}); publish it once so one current replica is chosen, then retry",
            mark.reason
        )));
    }
    if !replicas.iter().any(|r| r.health.is_current()) {
        return Err(refuse(
            "none of its replicas is current, so there is nothing to copy from or to keep".into(),
        ));
    }
    let engine = ctx
        .store
        .list_publications(volume_id)
        .await?
        .first()
        .map(|p| p.record.node.clone());

    if have == count as usize {
        // Only the record is behind (a replica was already added or
        // dropped): no replica changes, one write.
        set_count(ctx, volume_id, count).await?;
        tracing::info!(
            from,
            to = count,
            "replica count recorded; the replicas already match it"
        );
        return Ok(outcome);
    }
    if have > count as usize {
        let victims = choose_victims(
            ctx,
            volume_id,
            &replicas,
            engine.as_deref(),
            have - count as usize,
        )
        .await;
        let mut payload = ChangePayload {
            from,
            to: count,
            targets: Vec::new(),
            added: Vec::new(),
            removing: victims.clone(),
            final_count: count,
            started_unix: unix_now(),
        };
        let mut journal = Journal::begin(
            &ctx.store,
            OperationKind::ChangeReplicas,
            volume_id,
            None,
            "planned",
            &payload,
        )
        .await?;
        tracing::info!(from, to = count, removing = ?victims, engine = ?engine, "lowering the replica count");
        remove(ctx, volume_id, &mut payload, &mut journal).await?;
        journal.finish().await?;
        drop(guard);
        outcome.removed = victims;
        tracing::info!(removed = ?outcome.removed, "replica count lowered");
        return Ok(outcome);
    }

    // Going up.
    let wanted = count as usize - have;
    let holders: Vec<String> = replicas.iter().map(|r| r.node.clone()).collect();
    let source = choose_source(ctx, volume_id, &replicas, engine.as_deref())
        .await
        .ok_or_else(|| {
            refuse(format!(
                "none of its current replicas ({}) can be reached to copy from; bring one back and retry",
                current_nodes(&replicas)
            ))
        })?;
    if let Some(engine) = &engine {
        let free = free_raid_slots(ctx, volume_id, engine).await?;
        if free < wanted {
            return Err(refuse(format!(
                "it is published on {engine}, whose raid1 has {free} free slot(s) for the {wanted} replica(s) to add, and stock SPDK cannot add a leg to a full raid1 online; change the count while the volume is unpublished (stop the pod), or lower it first (that frees a slot)"
            )));
        }
    }
    let size = volume.record.capacity_bytes;
    let placed = ctx
        .nodes
        .place_and_reserve(size, |candidates| {
            let free: Vec<placement::Candidate> = candidates
                .iter()
                .filter(|c| !holders.contains(&c.name))
                .cloned()
                .collect();
            placement::place(&free, wanted, size, ctx.nodes.ratio, &Default::default())
        })
        .await;
    let (targets, _reservations) = match placed {
        Ok(p) => p,
        Err(ControllerError::NotEnoughNodes {
            eligible,
            candidates,
            why,
            ..
        }) => {
            return Err(ControllerError::NoNodeForNewReplica {
                volume: volume_id.to_string(),
                holders: holders.join(", "),
                wanted,
                size,
                eligible,
                candidates,
                why,
            })
        }
        Err(e) => return Err(e),
    };
    let mut payload = ChangePayload {
        from,
        to: count,
        targets: targets.clone(),
        added: Vec::new(),
        removing: Vec::new(),
        final_count: count,
        started_unix: unix_now(),
    };
    let mut journal = Journal::begin(
        &ctx.store,
        OperationKind::ChangeReplicas,
        volume_id,
        None,
        "planned",
        &payload,
    )
    .await?;
    if let Err(e) = set_count(ctx, volume_id, count).await {
        journal.finish().await?;
        return Err(e);
    }
    journal.step("count-raised", &payload).await?;
    tracing::info!(from, to = count, %source, targets = ?targets, published_on = ?engine, "raising the replica count");
    // The rebuilds take the volume lock themselves when they finalize.
    drop(guard);
    let mut failure = None;
    for target in &targets {
        let req = rebuild::Request {
            volume_id: volume_id.to_string(),
            source: source.clone(),
            target: target.clone(),
            mode: Mode::NewNode,
            replaces: None,
        };
        match rebuild::rebuild(ctx, &req).await {
            Ok(done) => {
                outcome.full_copy |= done.full_copy;
                outcome.bytes_copied += done.bytes_copied;
                payload.added.push(target.clone());
                journal.step("replica-added", &payload).await?;
                tracing::info!(%target, bytes = done.bytes_copied, full_copy = done.full_copy, elapsed_ms = done.elapsed.as_millis() as u64, "new replica is current");
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let Some(err) = failure else {
        journal.finish().await?;
        outcome.added = payload.added;
        return Ok(outcome);
    };
    tracing::warn!(error = %err, added = ?payload.added, "adding a replica failed: removing the ones this change added and restoring the count");
    let _guard = ctx.lock(volume_id).await;
    payload.removing = payload.added.clone();
    payload.final_count = from;
    match remove(ctx, volume_id, &mut payload, &mut journal).await {
        Ok(()) => journal.finish().await?,
        Err(e) => {
            tracing::error!(error = %e, "undoing the failed increase is incomplete; recovery completes it")
        }
    }
    Err(err)
}

fn current_nodes(replicas: &[ReplicaRecord]) -> String {
    replicas
        .iter()
        .filter(|r| r.health.is_current())
        .map(|r| r.node.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A reachable current replica to copy from: the engine node's own when
/// it is one, else the first in node order.
async fn choose_source(
    ctx: &Context,
    volume_id: &str,
    replicas: &[ReplicaRecord],
    engine: Option<&str>,
) -> Option<String> {
    let current = replicas.iter().filter(|r| r.health.is_current());
    let ordered = current
        .clone()
        .filter(|r| Some(r.node.as_str()) == engine)
        .chain(current.filter(|r| Some(r.node.as_str()) != engine));
    for r in ordered {
        if membership::replica_reachable(ctx, volume_id, &r.node).await {
            return Some(r.node.clone());
        }
    }
    None
}

/// Empty slots of the volume's raid on `engine`.
async fn free_raid_slots(ctx: &Context, volume_id: &str, engine: &str) -> Result<usize> {
    let node = ctx.nodes.get(engine)?;
    let name = naming::raid_bdev(volume_id);
    let raid = primitives::raids(&node)
        .await?
        .into_iter()
        .find(|r| r.name.as_deref() == Some(name.as_str()));
    Ok(raid.map_or(0, |r| {
        r.base_bdevs_list
            .iter()
            .filter(|b| b.name.is_none())
            .count()
    }))
}

/// Which `k` replicas to drop: failed, then stale, then any other
/// non-current one, then current ones on unreachable nodes, then current
/// ones off the engine node, the engine node's own leg last; later in node
/// order first within a rank. Since `k` is below the number of replicas
/// and the current ones come last, at least one current replica stays.
async fn choose_victims(
    ctx: &Context,
    volume_id: &str,
    replicas: &[ReplicaRecord],
    engine: Option<&str>,
    k: usize,
) -> Vec<String> {
    let mut ranked = Vec::with_capacity(replicas.len());
    for r in replicas {
        let reachable =
            r.health.is_current() && membership::replica_reachable(ctx, volume_id, &r.node).await;
        let rank = match r.health {
            ReplicaHealth::Failed => 0,
            ReplicaHealth::Stale => 1,
            ReplicaHealth::Degraded | ReplicaHealth::Rebuilding => 2,
            ReplicaHealth::Healthy if !reachable => 3,
            ReplicaHealth::Healthy if Some(r.node.as_str()) != engine => 4,
            ReplicaHealth::Healthy => 5,
        };
        ranked.push((rank, r.node.clone()));
    }
    ranked.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.cmp(&a.1)));
    ranked.into_iter().take(k).map(|(_, n)| n).collect()
}

/// Removes `payload.removing` and leaves the count at
/// `payload.final_count`: count and members first (one transaction), then
/// the raid legs, attachments and exports, the lvols, the records.
/// Idempotent: recovery repeats it from the start.
async fn remove(
    ctx: &Context,
    volume_id: &str,
    payload: &mut ChangePayload,
    journal: &mut Journal,
) -> Result<()> {
    shrink_members(ctx, volume_id, payload.final_count, &payload.removing).await?;
    journal.step("members-shrunk", payload).await?;
    let engine = ctx
        .store
        .list_publications(volume_id)
        .await?
        .first()
        .map(|p| p.record.node.clone());
    for victim in &payload.removing {
        if let Some(engine) = &engine {
            remove_leg(ctx, volume_id, engine, victim).await?;
        }
        if let Ok(node) = ctx.nodes.get(victim) {
            tolerate_unreachable(
                primitives::remove_export(&node, &naming::replica_nqn(volume_id, victim))
                    .await
                    .map(|_| ()),
            )?;
        }
    }
    journal.step("legs-removed", payload).await?;
    for victim in &payload.removing {
        match ctx.nodes.get(victim) {
            Ok(node) => tolerate_unreachable(primitives::remove_replica(&node, volume_id).await)?,
            Err(e) => {
                tracing::warn!(node = %victim, error = %e, "the dropped replica's node is unknown; its lvol, if any, is the orphan sweep's")
            }
        }
    }
    journal.step("lvols-deleted", payload).await?;
    drop_records(ctx, volume_id, &payload.removing).await
}

/// Writes the count into the volume record.
async fn set_count(ctx: &Context, volume_id: &str, count: u32) -> Result<()> {
    for _ in 0..CONFLICT_RETRIES {
        let mut volume = ctx.store.get_volume(volume_id).await?.ok_or_else(|| {
            ControllerError::VolumeNotFound {
                id: volume_id.to_string(),
            }
        })?;
        volume.record.replica_count = count;
        match ctx
            .store
            .update_volume(&volume.record, volume.revision)
            .await
        {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ControllerError::ConcurrentUpdate {
        key: format!("volume {volume_id}"),
    })
}

/// Writes the count and takes `removing` out of the publication's members,
/// with an epoch bump, in one transaction.
async fn shrink_members(
    ctx: &Context,
    volume_id: &str,
    count: u32,
    removing: &[String],
) -> Result<()> {
    for _ in 0..CONFLICT_RETRIES {
        let mut volume = ctx.store.get_volume(volume_id).await?.ok_or_else(|| {
            ControllerError::VolumeNotFound {
                id: volume_id.to_string(),
            }
        })?;
        let mut publication = ctx
            .store
            .list_publications(volume_id)
            .await?
            .into_iter()
            .next();
        volume.record.replica_count = count;
        volume.record.epoch += 1;
        if let Some(p) = publication.as_mut() {
            p.record.members.retain(|m| !removing.contains(m));
            p.record.epoch = volume.record.epoch;
        }
        match ctx
            .store
            .drop_replicas(&volume, &[], publication.as_ref())
            .await
        {
            Ok(_) => {
                tracing::info!(count, removing = ?removing, epoch = volume.record.epoch, "replica count written; the dropped replicas are no members any more");
                return Ok(());
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ControllerError::ConcurrentUpdate {
        key: format!("membership of volume {volume_id}"),
    })
}

/// Takes `victim`'s leg out of the raid on `engine` and detaches it there.
async fn remove_leg(ctx: &Context, volume_id: &str, engine: &str, victim: &str) -> Result<()> {
    let Ok(engine_node) = ctx.nodes.get(engine) else {
        return Ok(());
    };
    let base = leg_bdev(&engine_node, victim, volume_id);
    match engine_node
        .client
        .bdev_raid_remove_base_bdev(&BdevRaidRemoveBaseBdevParams { name: base.clone() })
        .await
    {
        Ok(()) => tracing::info!(%engine, leg = %base, "leg taken out of the raid"),
        // Not in the raid (any more): it left by itself, or a repeat.
        Err(e) if e.is_not_found() || e.is_invalid_params() => {}
        Err(e) => {
            tolerate_unreachable(Err(engine_node
                .call_failed("bdev_raid_remove_base_bdev", e)
                .into()))?;
        }
    }
    if engine != victim {
        tolerate_unreachable(
            primitives::remove_attachment(
                &engine_node,
                &naming::nvme_controller(volume_id, victim),
            )
            .await,
        )?;
    }
    Ok(())
}

/// The bdev `victim`'s replica is in the engine's raid.
fn leg_bdev(engine: &NodeHandle, victim: &str, volume_id: &str) -> String {
    if engine.name() == victim {
        engine.lvol_alias(volume_id)
    } else {
        naming::nvme_namespace_bdev(&naming::nvme_controller(volume_id, victim))
    }
}

/// Deletes the records of `removing`, with an epoch bump, in one transaction.
async fn drop_records(ctx: &Context, volume_id: &str, removing: &[String]) -> Result<()> {
    for _ in 0..CONFLICT_RETRIES {
        let Some(mut volume) = ctx.store.get_volume(volume_id).await? else {
            return Ok(());
        };
        let dropped: Vec<Versioned<ReplicaRecord>> = ctx
            .store
            .list_replicas(volume_id)
            .await?
            .into_iter()
            .filter(|r| removing.contains(&r.record.node))
            .collect();
        if dropped.is_empty() {
            return Ok(());
        }
        volume.record.epoch += 1;
        match ctx.store.drop_replicas(&volume, &dropped, None).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ControllerError::ConcurrentUpdate {
        key: format!("replicas of volume {volume_id}"),
    })
}

/// Completes or drops an interrupted change (see the module docs).
pub async fn recover(ctx: &Context, journal: Journal) -> Result<()> {
    let volume_id = journal.record().volume_id.clone();
    let Some(_in_flight) = ctx.try_lock(&in_flight_key(&volume_id)) else {
        tracing::debug!(volume = %volume_id, "replica count change still running here; left alone");
        return Ok(());
    };
    let mut payload: ChangePayload = journal.payload()?;
    let _guard = ctx.lock(&volume_id).await;
    let Some(mut journal) = journal.reread().await? else {
        return Ok(());
    };
    let step = journal.record().step.clone();
    match step.as_str() {
        "planned" => {
            tracing::warn!(volume = %volume_id, from = payload.from, to = payload.to, "interrupted replica count change had changed nothing: dropped");
        }
        "count-raised" | "replica-added" => {
            tracing::warn!(volume = %volume_id, to = payload.to, added = ?payload.added, "interrupted replica count increase: the count stays, and the reconciler rebuilds the replicas still missing onto new nodes");
        }
        _ => {
            tracing::warn!(volume = %volume_id, %step, removing = ?payload.removing, count = payload.final_count, "interrupted replica removal: completing it");
            remove(ctx, &volume_id, &mut payload, &mut journal).await?;
        }
    }
    journal.finish().await
}
