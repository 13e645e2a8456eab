//! The thin rebuild of a **published** volume (docs/rebuild.md, "Thin
//! rebuild of a published volume"): the chain layers are copied as for an
//! unpublished volume ([`super::copy_layers`]); the live layer in rounds of
//! rebuild snapshots of the source (no fence: what a round misses, the
//! final delta copies); then, with the volume's dm-linear device suspended
//! by the engine node's agent (`POST /swap/suspend`, a lease), the final
//! delta is copied, the frontend namespace is removed, the raid is
//! replaced by one over the same legs plus the new one (no raid rebuild:
//! all legs hold the same bytes), the namespace comes back with the same
//! identity, one membership transaction makes the replica current and a
//! member, and the agent reattaches the kernel side, reloads the dm table
//! and resumes (`POST /swap/resume`).
//!
//! Journal steps after the chain layers: `round-snapshotted` and
//! `round-copied` (per round), `leg-attached`, `suspended`,
//! `final-copied`, `frontend-removed`, `raid-replaced`,
//! `frontend-restored`, `promoted`, `resumed`. Before `raid-replaced` a
//! failure resumes I/O onto the old raid (restored if it was taken down)
//! and rolls back; from `raid-replaced` on every leg holds every
//! acknowledged write, so the swap is completed when the new leg is still
//! in the raid and undone (old raid, old legs) when it is not.

use std::time::{Duration, Instant};

use agent_api::swap::{SwapCheckRequest, SwapResumeRequest, SwapSuspendRequest};
use agent_api::{AttachSpec, FrontendKind};
use serde::{Deserialize, Serialize};
use spdk_client::{
    BdevLvolSnapshotParams, BdevRaidRemoveBaseBdevParams, NvmfSubsystemRemoveNsParams,
};

use super::copy::{self, tolerate_unreachable};
use super::plan::{self, Layer};
use super::{Outcome, RebuildPayload, Request};
use crate::context::Context;
use crate::error::{ControllerError, Result};
use crate::journal::Journal;
use crate::membership::{self, Promotion};
use crate::naming;
use crate::nodes::{primitives, NodeHandle};
use crate::store::PublicationRecord;

/// Lease of the dm suspend around the swap.
pub const SWAP_DEADLINE: Duration = Duration::from_secs(10);
/// Lease time the final delta copy must leave for the raid swap itself;
/// a copy still running then abandons the swap before anything changed.
pub const SWAP_MARGIN: Duration = Duration::from_secs(3);
/// Rounds stop when the live layer above the last rebuild snapshot holds
/// at most this many clusters (what the final delta then copies).
pub const SMALL_DELTA_CLUSTERS: u64 = 8;
/// Most rounds before the swap, however much is still written.
pub const MAX_ROUNDS: usize = 4;
/// Longest wait of the agent for the re-created kernel device.
const REATTACH_WAIT: Duration = Duration::from_secs(5);

/// What the swap has done so far (journal payload part).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwapState {
    /// The publishing node whose raid is replaced.
    pub engine: String,
    /// Rebuild snapshots taken on the source, oldest first (the final one
    /// included once taken).
    #[serde(default)]
    pub rounds: Vec<Layer>,
    /// The new leg's bdev name on the engine, once attached.
    #[serde(default)]
    pub leg: Option<String>,
    /// The raid's configured legs before the swap (bdev names on the engine).
    #[serde(default)]
    pub old_legs: Vec<String>,
    /// Set before the agent is asked to suspend: a hold may be in force.
    #[serde(default)]
    pub suspended: bool,
    /// Set (and journaled) before the frontend namespace is removed.
    #[serde(default)]
    pub frontend_touched: bool,
    /// How long client I/O was held, once resumed.
    #[serde(default)]
    pub hold_ms: Option<u64>,
}

/// `Ok` when `publication`'s engine can hold the volume for a thin swap;
/// otherwise why not (the full-copy fallback's reason).
pub async fn capability(
    ctx: &Context,
    publication: &PublicationRecord,
) -> std::result::Result<(), String> {
    if publication.frontend != FrontendKind::NvmeTcp {
        return Err(format!(
            "the volume is published over {}; the thin swap holds NVMe/TCP volumes only \
             (under dm-linear a ublk device's delete was not shown to finish)",
            publication.frontend.as_str()
        ));
    }
    let engine = ctx
        .nodes
        .get(&publication.node)
        .map_err(|e| format!("engine node: {e}"))?;
    let Some(agent) = engine.agent.as_ref() else {
        return Err(format!(
            "engine node {} has no node agent, so its dm layer cannot hold the volume",
            engine.name()
        ));
    };
    match agent
        .swap_check(&SwapCheckRequest {
            volume_id: publication.volume_id.clone(),
        })
        .await
    {
        Ok(c) if c.held => Err(format!(
            "the volume's dm device {} on {} is already held",
            c.dm_name,
            engine.name()
        )),
        Ok(_) => Ok(()),
        Err(e) => Err(format!("the dm layer on {} answered: {e}", engine.name())),
    }
}

/// Name of round `k`'s (1-based) rebuild snapshot.
pub fn round_snapshot(volume_id: &str, k: usize) -> String {
    match k {
        1 => naming::rebuild_snapshot_lvol(volume_id),
        k => format!("{}{k}", naming::rebuild_snapshot_lvol(volume_id)),
    }
}

/// The engine's bdev names that can stand for `node`'s leg of `volume_id`.
async fn leg_names(engine: &NodeHandle, node: &str, volume_id: &str) -> Result<Vec<String>> {
    if engine.name() == node {
        let alias = engine.lvol_alias(volume_id);
        let mut names = vec![alias.clone()];
        if let Some(b) = engine
            .client
            .bdev_get(&alias)
            .await
            .map_err(|e| engine.call_failed("bdev_get_bdevs", e))?
        {
            names.push(b.name);
        }
        Ok(names)
    } else {
        Ok(vec![naming::nvme_namespace_bdev(&naming::nvme_controller(
            volume_id, node,
        ))])
    }
}

/// The raid's configured legs on the engine; `None` when the raid is gone.
async fn configured_legs(engine: &NodeHandle, volume_id: &str) -> Result<Option<Vec<String>>> {
    let raid_name = naming::raid_bdev(volume_id);
    Ok(primitives::raids(engine)
        .await?
        .into_iter()
        .find(|r| r.name.as_deref() == Some(raid_name.as_str()))
        .map(|r| {
            r.base_bdevs_list
                .into_iter()
                .filter(|b| b.is_configured)
                .filter_map(|b| b.name)
                .collect()
        }))
}

fn abandon(volume_id: &str, target: &str, reason: String) -> ControllerError {
    ControllerError::RebuildAbandoned {
        volume: volume_id.to_string(),
        target: target.to_string(),
        reason,
    }
}

/// Runs the thin swap for `req` on the raid `publication` names.
pub async fn run(ctx: &Context, req: &Request, publication: &PublicationRecord) -> Result<Outcome> {
    let started = Instant::now();
    let volume_id = &req.volume_id;
    let source = ctx.nodes.get(&req.source)?;
    let target = ctx.nodes.get(&req.target)?;
    let engine = ctx.nodes.get(&publication.node)?;
    let (volume, _) = ctx.existing_volume(volume_id).await?;
    if !publication.members.contains(&req.source) {
        return Err(abandon(
            volume_id,
            &req.target,
            format!(
                "the source {} is not a member of the publication",
                req.source
            ),
        ));
    }
    let (chain, cluster_size, data_clusters) = super::plan_thin(req, &source, &target).await?;
    let mut payload = RebuildPayload {
        // Named so that the per-node cap and the leftover sweep count the
        // engine; recovery tells a swap by `swap`.
        engine: Some(engine.name().to_string()),
        swap: Some(SwapState {
            engine: engine.name().to_string(),
            ..Default::default()
        }),
        ..RebuildPayload::planned_thin(req, &chain, cluster_size, data_clusters)
    };
    let mut journal = payload.begin(ctx, volume_id).await?;
    tracing::info!(
        engine = engine.name(),
        layers = chain.layers.len(),
        bytes = payload.progress.total_bytes,
        "thin rebuild of a published volume started: copy rounds, then a raid swap under a dm suspend"
    );
    let prepared = async {
        let dst = super::copy_layers(
            ctx,
            &source,
            &target,
            volume.capacity_bytes,
            &mut payload,
            &mut journal,
        )
        .await?;
        rounds(ctx, &source, &target, &dst, &mut payload, &mut journal).await?;
        // An lvol is exported under one subsystem at a time: when the source
        // is the engine, the leg's attachment carries the final delta and
        // the rebuild link goes now; otherwise the link carries it and the
        // leg is attached under the suspend, after it.
        if source.name() == engine.name() {
            copy::disconnect(Some(&source), Some(&target), volume_id, target.name()).await?;
            attach_leg(&engine, &target, volume_id, &mut payload, &mut journal).await?;
        }
        Ok::<_, ControllerError>(dst)
    }
    .await;
    // From here to the end (swap, undo, cleanup) the volume lock keeps
    // publish, unpublish, snapshots and the health monitor away.
    let guard = ctx.lock(volume_id).await;
    let result = match prepared {
        Ok(dst) => {
            swap(
                ctx,
                &engine,
                &source,
                &target,
                &dst,
                &mut payload,
                &mut journal,
            )
            .await
        }
        Err(e) => Err(e),
    };
    let outcome = match result {
        Ok(()) => {
            cleanup(ctx, volume_id, &payload).await?;
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
                rounds = payload.swap.as_ref().map_or(0, |s| s.rounds.len()),
                hold_ms = payload.swap.as_ref().and_then(|s| s.hold_ms),
                elapsed_ms = outcome.elapsed.as_millis() as u64,
                "thin swap complete: the replica is current and in the raid"
            );
            Ok(outcome)
        }
        Err(err) => {
            let step = journal.record().step.clone();
            tracing::warn!(error = %err, %step, "thin swap failed; undoing it");
            match undo(ctx, volume_id, &step, &payload).await {
                Ok(()) => journal.finish().await?,
                Err(e) => {
                    tracing::error!(error = %e, "thin swap rollback incomplete; recovery retries it")
                }
            }
            Err(err)
        }
    };
    drop(guard);
    outcome
}

/// Rebuild-snapshot rounds of the live layer, each copying what was
/// written since the previous one, until little is left.
async fn rounds(
    ctx: &Context,
    source: &NodeHandle,
    target: &NodeHandle,
    dst: &str,
    payload: &mut RebuildPayload,
    journal: &mut Journal,
) -> Result<()> {
    let volume_id = journal.record().volume_id.clone();
    let poll = Duration::from_millis(ctx.rebuild.poll_interval_ms.max(10));
    for k in 1..=MAX_ROUNDS {
        snapshot_round(source, &volume_id, k, payload, journal).await?;
        if k > 1 || payload.chain.as_ref().is_some_and(|c| !c.layers.is_empty()) {
            super::recheck_space(target, &volume_id, payload).await?;
        }
        copy_round(source, dst, poll, payload, journal).await?;
        journal.step("round-copied", payload).await?;
        let live = plan::lvol_info(source, &source.lvol_alias(&volume_id))
            .await?
            .map_or(0, |l| l.num_allocated_clusters);
        tracing::info!(round = k, left_clusters = live, "rebuild round copied");
        if live <= SMALL_DELTA_CLUSTERS {
            break;
        }
    }
    Ok(())
}

/// Takes round `k`'s rebuild snapshot of the source's live lvol.
async fn snapshot_round(
    source: &NodeHandle,
    volume_id: &str,
    k: usize,
    payload: &mut RebuildPayload,
    journal: &mut Journal,
) -> Result<()> {
    let name = round_snapshot(volume_id, k);
    let uuid = source
        .client
        .bdev_lvol_snapshot(&BdevLvolSnapshotParams {
            lvol_name: source.lvol_alias(volume_id),
            snapshot_name: name.clone(),
        })
        .await
        .map_err(|e| source.call_failed("bdev_lvol_snapshot", e))?;
    let clusters = plan::lvol_info(source, &uuid)
        .await?
        .map_or(0, |l| l.num_allocated_clusters);
    // The first round is the live layer the plan counted (more may have
    // been written since); each later one is a layer more.
    if k == 1 {
        payload.progress.total_bytes =
            payload.progress.copied_bytes + clusters * payload.cluster_size;
    } else {
        payload.progress.total_bytes += clusters * payload.cluster_size;
        payload.progress.layers += 1;
    }
    payload.progress.layer = payload.progress.layers;
    if k == 1 {
        payload.rebuild_snapshot = Some(uuid.clone());
    }
    if let Some(s) = payload.swap.as_mut() {
        s.rounds.push(Layer {
            name,
            uuid,
            clusters,
        });
    }
    journal.step("round-snapshotted", payload).await
}

/// Shallow-copies the newest round snapshot onto the working lvol.
async fn copy_round(
    source: &NodeHandle,
    dst: &str,
    poll: Duration,
    payload: &mut RebuildPayload,
    journal: &mut Journal,
) -> Result<u64> {
    let snap = payload
        .swap
        .as_ref()
        .and_then(|s| s.rounds.last())
        .map(|l| l.uuid.clone())
        .ok_or_else(|| ControllerError::Internal("a copy round without its snapshot".into()))?;
    super::copy_layer(source, &snap, dst, poll, payload, journal).await
}

/// Exports the working lvol to the engine under the replica NQN and
/// attaches it there (a stale replica's old export and attachment, which
/// serve no member, go first); records the leg's bdev name.
async fn attach_leg(
    engine: &NodeHandle,
    target: &NodeHandle,
    volume_id: &str,
    payload: &mut RebuildPayload,
    journal: &mut Journal,
) -> Result<()> {
    let working = format!(
        "{}/{}",
        target.config.lvstore,
        naming::rebuild_lvol(volume_id)
    );
    let leg = if engine.name() == target.name() {
        working
    } else {
        let nqn = naming::replica_nqn(volume_id, target.name());
        let ctrl = naming::nvme_controller(volume_id, target.name());
        primitives::remove_attachment(engine, &ctrl).await?;
        primitives::remove_export(target, &nqn).await?;
        let host = naming::spdk_host_nqn(engine.name());
        primitives::ensure_export(
            target,
            &primitives::Export {
                nqn: &nqn,
                bdev: &working,
                ns_uuid: None,
                host_nqn: &host,
                address: target.config.nvmf_address,
                port: target.config.nvmf_port,
                ana_reporting: false,
                serial: naming::serial_number(volume_id),
            },
        )
        .await?;
        primitives::ensure_attached(
            engine,
            &ctrl,
            target.config.nvmf_address,
            target.config.nvmf_port,
            &nqn,
            &host,
        )
        .await?
    };
    if let Some(s) = payload.swap.as_mut() {
        s.leg = Some(leg);
    }
    journal.step("leg-attached", payload).await
}

/// The swap itself, under the agent's dm suspend (the caller holds the
/// volume lock).
#[allow(clippy::too_many_arguments)]
async fn swap(
    ctx: &Context,
    engine: &NodeHandle,
    source: &NodeHandle,
    target: &NodeHandle,
    dst: &str,
    payload: &mut RebuildPayload,
    journal: &mut Journal,
) -> Result<()> {
    let volume_id = journal.record().volume_id.clone();
    let publication = ctx
        .store
        .get_publication(&volume_id, engine.name())
        .await?
        .ok_or_else(|| {
            abandon(
                &volume_id,
                target.name(),
                format!("the volume is no longer published on {}", engine.name()),
            )
        })?
        .record;
    let (_, replicas) = ctx.existing_volume(&volume_id).await?;
    if !replicas
        .iter()
        .any(|r| r.node == source.name() && r.health.is_current())
        || !publication.members.iter().any(|m| m == source.name())
    {
        return Err(abandon(
            &volume_id,
            target.name(),
            format!(
                "the source replica on {} is no longer a current member",
                source.name()
            ),
        ));
    }
    let agent = engine.agent.clone().ok_or_else(|| {
        abandon(
            &volume_id,
            target.name(),
            format!("engine {} has no agent", engine.name()),
        )
    })?;
    if let Some(s) = payload.swap.as_mut() {
        s.suspended = true;
    }
    let lease_end = Instant::now() + SWAP_DEADLINE;
    agent
        .swap_suspend(&SwapSuspendRequest {
            volume_id: volume_id.clone(),
            deadline_ms: SWAP_DEADLINE.as_millis() as u64,
        })
        .await?;
    let held = Instant::now();
    journal.step("suspended", payload).await?;

    // The final delta: no write can arrive. A copy (and, when the source
    // is not the engine, the leg's attachment) that leaves too little of
    // the lease for the swap abandons it before anything changed.
    let budget = lease_end
        .saturating_duration_since(Instant::now())
        .saturating_sub(SWAP_MARGIN);
    let poll = Duration::from_millis(ctx.rebuild.poll_interval_ms.max(10));
    let k = payload.swap.as_ref().map_or(0, |s| s.rounds.len()) + 1;
    let via_leg = source.name() == engine.name();
    let final_copy = async {
        snapshot_round(source, &volume_id, k, payload, journal).await?;
        let leg = payload.swap.as_ref().and_then(|s| s.leg.clone());
        match (via_leg, leg) {
            (true, Some(leg)) => {
                copy_round(source, &leg, poll, payload, journal).await?;
            }
            _ => {
                copy_round(source, dst, poll, payload, journal).await?;
                copy::disconnect(Some(source), Some(target), &volume_id, target.name()).await?;
                attach_leg(engine, target, &volume_id, payload, journal).await?;
            }
        };
        // Every acknowledged write reached the source only if its leg is
        // still in the raid now that nothing is in flight.
        let legs = configured_legs(engine, &volume_id)
            .await?
            .unwrap_or_default();
        let source_legs = leg_names(engine, source.name(), &volume_id).await?;
        if !legs.iter().any(|l| source_legs.contains(l)) {
            return Err(abandon(
                &volume_id,
                target.name(),
                format!("the source's leg left the raid on {}", engine.name()),
            ));
        }
        if let Some(s) = payload.swap.as_mut() {
            s.old_legs = legs;
        }
        journal.step("final-copied", payload).await
    };
    match tokio::time::timeout(budget, final_copy).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            return Err(abandon(
                &volume_id,
                target.name(),
                format!(
                    "the final delta did not copy within {} ms of the dm suspend lease",
                    budget.as_millis()
                ),
            ))
        }
    }

    let copied = held.elapsed();
    replace(engine, &volume_id, &publication, payload, journal).await?;
    let replaced = held.elapsed();
    promote(ctx, engine, target, &volume_id, payload).await?;
    journal.step("promoted", payload).await?;
    let promoted = held.elapsed();
    let hold = resume(engine, &volume_id, true).await?;
    let ms = |d: Duration| d.as_millis() as u64;
    tracing::info!(
        hold_ms = hold,
        final_delta_ms = ms(copied),
        raid_swap_ms = ms(replaced - copied),
        promote_ms = ms(promoted - replaced),
        reattach_resume_ms = ms(held.elapsed() - promoted),
        "thin swap hold by phase (from the suspend's answer)"
    );
    if let Some(s) = payload.swap.as_mut() {
        s.hold_ms = Some(hold);
    }
    journal.step("resumed", payload).await
}

/// Under the suspend: namespace out, raid replaced over the old legs plus
/// the new one, namespace back.
async fn replace(
    engine: &NodeHandle,
    volume_id: &str,
    publication: &PublicationRecord,
    payload: &mut RebuildPayload,
    journal: &mut Journal,
) -> Result<()> {
    let state = payload.swap.clone().unwrap_or_default();
    let leg = state
        .leg
        .clone()
        .ok_or_else(|| ControllerError::Internal("a swap without its new leg".into()))?;
    // Journaled first: from here a failure must restore the namespace.
    if let Some(s) = payload.swap.as_mut() {
        s.frontend_touched = true;
    }
    journal.step("frontend-removed", payload).await?;
    remove_namespace(engine, volume_id).await?;
    let raid = naming::raid_bdev(volume_id);
    primitives::remove_raid(engine, &raid).await?;
    let mut legs = state.old_legs.clone();
    legs.push(leg);
    primitives::ensure_raid1(engine, &raid, &legs, &naming::raid_pad_bdev(volume_id)).await?;
    journal.step("raid-replaced", payload).await?;
    restore_namespace(engine, volume_id, publication).await?;
    journal.step("frontend-restored", payload).await
}

/// Removes the namespace of the volume's loopback subsystem (the
/// subsystem, its host and listener stay: the kernel stays connected).
async fn remove_namespace(engine: &NodeHandle, volume_id: &str) -> Result<()> {
    let nqn = naming::volume_nqn(volume_id);
    let subsystems = primitives::subsystems(engine).await?;
    let Some(sub) = subsystems.iter().find(|s| s.nqn == nqn) else {
        return Ok(());
    };
    for ns in &sub.namespaces {
        match engine
            .client
            .nvmf_subsystem_remove_ns(&NvmfSubsystemRemoveNsParams {
                nqn: nqn.clone(),
                nsid: ns.nsid,
                tgt_name: None,
            })
            .await
        {
            Ok(()) => {}
            Err(e) if e.is_not_found() || e.is_invalid_params() => {}
            Err(e) => return Err(engine.call_failed("nvmf_subsystem_remove_ns", e).into()),
        }
    }
    Ok(())
}

/// Adds the raid back as the namespace of the volume's loopback subsystem,
/// with the identity publish gave it (UUID = volume id, same serial).
async fn restore_namespace(
    engine: &NodeHandle,
    volume_id: &str,
    publication: &PublicationRecord,
) -> Result<()> {
    let context = publication
        .publish_context
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let spec = AttachSpec::from_publish_context(&context)
        .map_err(|e| ControllerError::Internal(format!("publication of {volume_id}: {e}")))?;
    let AttachSpec::NvmeTcp(t) = spec else {
        return Err(ControllerError::Internal(format!(
            "publication of {volume_id} is not NVMe/TCP"
        )));
    };
    let nqn = naming::volume_nqn(volume_id);
    let raid = naming::raid_bdev(volume_id);
    primitives::ensure_export(
        engine,
        &primitives::Export {
            nqn: &nqn,
            bdev: &raid,
            ns_uuid: Some(volume_id),
            host_nqn: &t.hostnqn,
            address: t.traddr,
            port: t.trsvcid,
            ana_reporting: true,
            serial: naming::serial_number(volume_id),
        },
    )
    .await
}

/// The membership transaction: the replica current and a member.
async fn promote(
    ctx: &Context,
    engine: &NodeHandle,
    target: &NodeHandle,
    volume_id: &str,
    payload: &RebuildPayload,
) -> Result<()> {
    let reason = format!(
        "rebuilt from {} at unix {} (thin swap on {}, {}, {} bytes copied)",
        payload.source,
        super::unix_now(),
        engine.name(),
        payload.mode.as_str(),
        payload.progress.copied_bytes
    );
    membership::promote(
        ctx,
        volume_id,
        &Promotion {
            node: target.name().to_string(),
            lvstore: target.config.lvstore.clone(),
            lvol_uuid: payload.working_uuid.clone().unwrap_or_default(),
            reason,
            replaces: payload.replaces.clone(),
            engine: Some(engine.name().to_string()),
        },
    )
    .await
    .map(|_| ())
}

/// Ends the agent's hold (reattaching when the frontend was re-created);
/// returns the hold time in milliseconds.
async fn resume(engine: &NodeHandle, volume_id: &str, reattach: bool) -> Result<u64> {
    let Some(agent) = engine.agent.as_ref() else {
        return Ok(0);
    };
    let answer = agent
        .swap_resume(&SwapResumeRequest {
            volume_id: volume_id.to_string(),
            reattach,
            reattach_wait_ms: if reattach {
                REATTACH_WAIT.as_millis() as u64
            } else {
                0
            },
        })
        .await?;
    if answer.expired {
        tracing::warn!(engine = engine.name(), device = %answer.device, "the dm suspend lease had run out before the resume: I/O had resumed by itself");
    } else {
        tracing::info!(engine = engine.name(), hold_ms = answer.held_ms, device = %answer.device, reloaded = answer.reloaded, "client I/O resumed after the raid swap (fence hold)");
    }
    Ok(answer.held_ms)
}

/// Brings back the raid as it was (the old legs) and its namespace, for a
/// swap undone after `frontend-removed`.
async fn restore_old(
    ctx: &Context,
    engine: &NodeHandle,
    volume_id: &str,
    state: &SwapState,
) -> Result<()> {
    let raid = naming::raid_bdev(volume_id);
    match configured_legs(engine, volume_id).await? {
        Some(legs) => {
            if let Some(leg) = state.leg.as_ref().filter(|l| legs.contains(l)) {
                match engine
                    .client
                    .bdev_raid_remove_base_bdev(&BdevRaidRemoveBaseBdevParams { name: leg.clone() })
                    .await
                {
                    Ok(()) => {}
                    Err(e) if e.is_not_found() || e.is_invalid_params() => {}
                    Err(e) => {
                        return Err(engine.call_failed("bdev_raid_remove_base_bdev", e).into())
                    }
                }
            }
        }
        None => {
            primitives::ensure_raid1(
                engine,
                &raid,
                &state.old_legs,
                &naming::raid_pad_bdev(volume_id),
            )
            .await?
        }
    }
    let publication = ctx
        .store
        .get_publication(volume_id, engine.name())
        .await?
        .ok_or_else(|| ControllerError::Internal(format!("publication of {volume_id} is gone")))?
        .record;
    restore_namespace(engine, volume_id, &publication).await
}

/// Whether the new leg is configured in the engine's raid.
async fn leg_in_raid(engine: &NodeHandle, volume_id: &str, state: &SwapState) -> Result<bool> {
    let legs = configured_legs(engine, volume_id)
        .await?
        .unwrap_or_default();
    Ok(state.leg.as_ref().is_some_and(|l| legs.contains(l)))
}

/// Undoes (or, from `raid-replaced` on with the new leg in the raid,
/// completes) a swap that stopped at `step`. Idempotent.
async fn undo(ctx: &Context, volume_id: &str, step: &str, payload: &RebuildPayload) -> Result<()> {
    let state = payload.swap.clone().unwrap_or_default();
    let engine = ctx.nodes.get(&state.engine)?;
    let replaced = matches!(
        step,
        "raid-replaced" | "frontend-restored" | "promoted" | "resumed"
    );
    if replaced {
        let forward = matches!(step, "promoted" | "resumed")
            || leg_in_raid(&engine, volume_id, &state).await?;
        if forward {
            return roll_forward(ctx, &engine, volume_id, step, payload).await;
        }
        restore_old(ctx, &engine, volume_id, &state).await?;
        resume(&engine, volume_id, true).await?;
    } else if state.frontend_touched {
        restore_old(ctx, &engine, volume_id, &state).await?;
        resume(&engine, volume_id, true).await?;
    } else if state.suspended {
        // The frontend was not touched: the device is unchanged.
        resume(&engine, volume_id, false).await?;
    }
    rollback(ctx, volume_id, payload).await
}

/// Completes a swap whose new raid (with the new leg) serves the volume.
async fn roll_forward(
    ctx: &Context,
    engine: &NodeHandle,
    volume_id: &str,
    step: &str,
    payload: &RebuildPayload,
) -> Result<()> {
    if step != "resumed" {
        let publication = ctx
            .store
            .get_publication(volume_id, engine.name())
            .await?
            .ok_or_else(|| {
                ControllerError::Internal(format!("publication of {volume_id} is gone"))
            })?
            .record;
        restore_namespace(engine, volume_id, &publication).await?;
        if step != "promoted" {
            let target = ctx.nodes.get(&payload.target)?;
            promote(ctx, engine, &target, volume_id, payload).await?;
        }
        resume(engine, volume_id, true).await?;
    }
    tracing::warn!(volume = %volume_id, target = %payload.target, %step, "interrupted thin swap completed: the replica is current and in the raid");
    cleanup(ctx, volume_id, payload).await
}

/// After the swap: the copy link goes, the rebuild snapshots merge back
/// into the source (newest first), and the unpublished path's cleanup
/// renames the working lvol and records the copies.
async fn cleanup(ctx: &Context, volume_id: &str, payload: &RebuildPayload) -> Result<()> {
    let source = ctx.nodes.get(&payload.source).ok();
    let target = ctx.nodes.get(&payload.target).ok();
    copy::disconnect(
        source.as_deref(),
        target.as_deref(),
        volume_id,
        &payload.target,
    )
    .await?;
    merge_rounds(ctx, volume_id, payload).await?;
    super::complete(ctx, volume_id, payload).await
}

/// Deletes the rounds' rebuild snapshots on the source, newest first: each
/// then has one child, the live lvol, which SPDK merges it into.
async fn merge_rounds(ctx: &Context, volume_id: &str, payload: &RebuildPayload) -> Result<()> {
    let Ok(source) = ctx.nodes.get(&payload.source) else {
        return Ok(());
    };
    let rounds = payload.swap.as_ref().map_or(0, |s| s.rounds.len());
    for k in (1..=rounds.max(1)).rev() {
        let alias = format!("{}/{}", source.config.lvstore, round_snapshot(volume_id, k));
        tolerate_unreachable(primitives::remove_lvol(&source, &alias).await)?;
    }
    Ok(())
}

/// Rolls back what the swap made besides the raid: the leg's attachment and
/// export, then as the unpublished path (link, working lvol, copies), the
/// rebuild snapshots merging back into the source.
async fn rollback(ctx: &Context, volume_id: &str, payload: &RebuildPayload) -> Result<()> {
    let state = payload.swap.clone().unwrap_or_default();
    let target = ctx.nodes.get(&payload.target).ok();
    if let (Ok(engine), Some(target)) = (ctx.nodes.get(&state.engine), &target) {
        if engine.name() != target.name() {
            tolerate_unreachable(
                primitives::remove_attachment(
                    &engine,
                    &naming::nvme_controller(volume_id, target.name()),
                )
                .await,
            )?;
            // Only when it exported the working lvol: a stale replica's own
            // export was replaced at `leg-attached`, and no member uses it.
            if state.leg.is_some() {
                tolerate_unreachable(
                    primitives::remove_export(
                        target,
                        &naming::replica_nqn(volume_id, target.name()),
                    )
                    .await
                    .map(|_| ()),
                )?;
            }
        }
    }
    merge_rounds(ctx, volume_id, payload).await?;
    super::rollback(ctx, volume_id, payload).await
}

/// Completes or undoes an interrupted thin swap (recovery, before the
/// controller serves).
pub async fn recover(ctx: &Context, journal: Journal, payload: RebuildPayload) -> Result<()> {
    let volume_id = journal.record().volume_id.clone();
    let guard = ctx.lock(&volume_id).await;
    let Some(journal) = journal.reread().await? else {
        return Ok(());
    };
    let step = journal.record().step.clone();
    tracing::warn!(volume = %volume_id, target = %payload.target, %step, "recovering an interrupted thin swap");
    undo(ctx, &volume_id, &step, &payload).await?;
    // An agent restarted since the suspend forgot its hold and would not
    // resume the device: a resume with reattach does (with no hold, the
    // current device counts).
    let state = payload.swap.clone().unwrap_or_default();
    if state.suspended && !state.frontend_touched {
        if let Ok(engine) = ctx.nodes.get(&state.engine) {
            resume(&engine, &volume_id, true).await?;
        }
    }
    drop(guard);
    journal.finish().await
}
