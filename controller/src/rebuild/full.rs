//! The full-copy fallback for a **published** volume whose engine node
//! cannot hold it for a thin swap (no agent, no dm-linear layer, a ublk
//! frontend: [`super::thin_swap::capability`] says which). The target's lvol is exported to the engine node and
//! attached there as publish does, added into the raid's empty slot with
//! `bdev_raid_add_base_bdev` (SPDK then rebuilds every block, capped by
//! `bdev_raid_set_options process_max_bandwidth_mb_sec`), and once the raid
//! shows the leg configured and no process running, one membership
//! transaction makes the replica current and a member of the publication.
//!
//! SPDK raid1 reads only from legs with a base channel; a rebuild target
//! gets one only when its process ends, so the new leg serves no read
//! before the copy is done (raid1.c `raid1_channel_next_read_base_bdev`).
//!
//! Journal steps: `planned`, `target-ready`, `attached`, `adding`,
//! `rebuilding` (progress), `promoted`. Recovery resumes a rebuild still
//! running in the raid (checked each reconciler pass), completes one that
//! finished, and rolls back one whose leg or raid is gone.

use std::time::{Duration, Instant};

use spdk_client::{
    BdevRaidAddBaseBdevParams, BdevRaidRemoveBaseBdevParams, BdevRaidSetOptionsParams,
};

use super::{unix_now, Mode, Outcome, Progress, RebuildPayload, Request};
use crate::context::Context;
use crate::error::{ControllerError, Result};
use crate::journal::Journal;
use crate::membership::{self, Promotion};
use crate::naming;
use crate::nodes::{primitives, NodeHandle};

/// Prefix of the reason a published volume gets a full copy, for the log
/// and `shorthorn ctl` (the rest says why the thin swap cannot be used).
pub const FULL_COPY_REASON: &str = "thin swap not possible";

/// What the raid shows of the new leg.
#[derive(Debug, Clone, PartialEq)]
enum Leg {
    /// SPDK is rebuilding it: blocks done.
    Rebuilding(u64),
    /// Configured and no process runs: the copy is complete.
    Done,
    /// The leg (or the raid) is gone.
    Gone(String),
}

/// Runs the fallback for `req` on the raid published on `engine`; `why`
/// says why the thin swap cannot be used.
pub async fn run(ctx: &Context, req: &Request, engine: &str, why: &str) -> Result<Outcome> {
    let reason = format!("{FULL_COPY_REASON}: {why}");
    let started = Instant::now();
    let volume_id = &req.volume_id;
    let engine_node = ctx.nodes.get(engine)?;
    let target = ctx.nodes.get(&req.target)?;
    let (volume, _) = ctx.existing_volume(volume_id).await?;
    // A raid rebuild writes every block: the target ends fully allocated.
    let cluster_size = super::plan::check_space(&target, volume_id, volume.capacity_bytes).await?;
    let progress = Progress {
        total_bytes: volume.capacity_bytes,
        copied_bytes: 0,
        layer: 1,
        layers: 1,
    };
    let mut payload = RebuildPayload {
        engine: Some(engine.to_string()),
        full_copy_reason: Some(reason.clone()),
        ..RebuildPayload::planned(req, cluster_size, progress)
    };
    let mut journal = payload.begin(ctx, volume_id).await?;
    tracing::warn!(
        engine,
        reason = %reason,
        bytes = volume.capacity_bytes,
        "published volume: rebuilding with a full raid copy, which allocates the whole target"
    );
    let result = async {
        prepare(
            ctx,
            &engine_node,
            &target,
            volume_id,
            volume.capacity_bytes,
            &mut payload,
            &mut journal,
        )
        .await?;
        let base = leg_bdev(&engine_node, &target, volume_id);
        let poll = Duration::from_millis(ctx.rebuild.poll_interval_ms.max(10));
        let block = block_size(&engine_node, volume_id).await;
        let mut last = Instant::now();
        loop {
            match observe(&engine_node, volume_id, &base).await? {
                Leg::Rebuilding(blocks) => {
                    payload.progress.copied_bytes = blocks * block;
                    if last.elapsed() >= Duration::from_secs(1) {
                        last = Instant::now();
                        journal.step("rebuilding", &payload).await?;
                    }
                }
                Leg::Done => break,
                Leg::Gone(why) => {
                    return Err(ControllerError::RebuildAbandoned {
                        volume: volume_id.clone(),
                        target: target.name().to_string(),
                        reason: why,
                    })
                }
            }
            tokio::time::sleep(poll).await;
        }
        payload.progress.copied_bytes = volume.capacity_bytes;
        promote(ctx, volume_id, &engine_node, &target, &payload).await?;
        journal.step("promoted", &payload).await
    }
    .await;
    match result {
        Ok(()) => {
            journal.finish().await?;
            let outcome = Outcome {
                volume_id: volume_id.clone(),
                source: req.source.clone(),
                target: req.target.clone(),
                mode: req.mode,
                bytes_copied: volume.capacity_bytes,
                layers_copied: 0,
                full_copy: true,
                elapsed: started.elapsed(),
            };
            tracing::info!(
                elapsed_ms = outcome.elapsed.as_millis() as u64,
                reason = %reason,
                "full raid rebuild complete: the replica is current"
            );
            Ok(outcome)
        }
        Err(err) => {
            tracing::warn!(error = %err, "full raid rebuild failed; taking the new leg out");
            match rollback(ctx, volume_id, &payload).await {
                Ok(()) => journal.finish().await?,
                Err(e) => {
                    tracing::error!(error = %e, "rollback incomplete; the reconciler retries it")
                }
            }
            Err(err)
        }
    }
}

async fn block_size(engine: &NodeHandle, volume_id: &str) -> u64 {
    match engine.client.bdev_get(&naming::raid_bdev(volume_id)).await {
        Ok(Some(b)) => u64::from(b.block_size),
        _ => 4096,
    }
}

/// The target's lvol (reused when it is the stale replica's: every block is
/// rewritten), the bandwidth cap, the export and attachment, the add.
async fn prepare(
    ctx: &Context,
    engine: &NodeHandle,
    target: &NodeHandle,
    volume_id: &str,
    size: u64,
    payload: &mut RebuildPayload,
    journal: &mut Journal,
) -> Result<()> {
    let exists = target
        .client
        .bdev_get(&target.lvol_alias(volume_id))
        .await
        .map_err(|e| target.call_failed("bdev_get_bdevs", e))?
        .is_some();
    if !exists || payload.mode == Mode::NewNode {
        payload.target_created = !exists;
        payload.working_uuid = Some(primitives::ensure_replica(target, volume_id, size).await?);
    } else {
        payload.working_uuid = Some(
            primitives::existing_lvol_uuid(target, &target.lvol_alias(volume_id), "lvol").await?,
        );
    }
    journal.step("target-ready", payload).await?;
    if ctx.rebuild.max_bandwidth_mb_sec > 0 {
        engine
            .client
            .bdev_raid_set_options(&BdevRaidSetOptionsParams {
                process_window_size_kb: None,
                process_max_bandwidth_mb_sec: Some(ctx.rebuild.max_bandwidth_mb_sec),
            })
            .await
            .map_err(|e| engine.call_failed("bdev_raid_set_options", e))?;
    }
    if engine.name() != target.name() {
        primitives::ensure_replica_export(target, volume_id, engine.name()).await?;
        // A controller left from the leg's earlier life (its node restarted
        // since) may still be failing or reconnecting: it is no member, so
        // nothing uses it; attach afresh.
        primitives::remove_attachment(engine, &naming::nvme_controller(volume_id, target.name()))
            .await?;
        primitives::ensure_attached(
            engine,
            &naming::nvme_controller(volume_id, target.name()),
            target.config.nvmf_address,
            target.config.nvmf_port,
            &naming::replica_nqn(volume_id, target.name()),
            &naming::spdk_host_nqn(engine.name()),
        )
        .await?;
    }
    journal.step("attached", payload).await?;
    engine
        .client
        .bdev_raid_add_base_bdev(&BdevRaidAddBaseBdevParams {
            raid_bdev: naming::raid_bdev(volume_id),
            base_bdev: leg_bdev(engine, target, volume_id),
        })
        .await
        .map_err(|e| engine.call_failed("bdev_raid_add_base_bdev", e))?;
    journal.step("adding", payload).await
}

/// The bdev the new leg is in the engine's raid.
fn leg_bdev(engine: &NodeHandle, target: &NodeHandle, volume_id: &str) -> String {
    if engine.name() == target.name() {
        target.lvol_alias(volume_id)
    } else {
        naming::nvme_namespace_bdev(&naming::nvme_controller(volume_id, target.name()))
    }
}

async fn observe(engine: &NodeHandle, volume_id: &str, base: &str) -> Result<Leg> {
    let raid_name = naming::raid_bdev(volume_id);
    let Some(raid) = primitives::raids(engine)
        .await?
        .into_iter()
        .find(|r| r.name.as_deref() == Some(raid_name.as_str()))
    else {
        return Ok(Leg::Gone(format!(
            "raid {raid_name} is gone from {}",
            engine.name()
        )));
    };
    if let Some(p) = &raid.process {
        if p.target == base {
            return Ok(Leg::Rebuilding(p.progress.blocks));
        }
    }
    // The leg is found by its bdev name, or by its alias' uuid (local leg).
    let uuid = engine
        .client
        .bdev_get(base)
        .await
        .ok()
        .flatten()
        .map(|b| b.name);
    let slot = raid
        .base_bdevs_list
        .iter()
        .find(|s| s.name.as_deref() == Some(base) || (uuid.is_some() && s.name == uuid));
    match slot {
        Some(s) if s.is_configured && raid.process.is_none() => Ok(Leg::Done),
        Some(_) => Ok(Leg::Rebuilding(0)),
        None => Ok(Leg::Gone(format!(
            "the new leg {base} left the raid on {} during the rebuild",
            engine.name()
        ))),
    }
}

/// Under the volume lock: the publication still holds this raid, the leg is
/// configured with no process running: one membership transaction.
async fn promote(
    ctx: &Context,
    volume_id: &str,
    engine: &NodeHandle,
    target: &NodeHandle,
    payload: &RebuildPayload,
) -> Result<()> {
    let _guard = ctx.lock(volume_id).await;
    let base = leg_bdev(engine, target, volume_id);
    if observe(engine, volume_id, &base).await? != Leg::Done {
        return Err(ControllerError::RebuildAbandoned {
            volume: volume_id.to_string(),
            target: target.name().to_string(),
            reason: "the raid no longer shows the new leg configured and idle".into(),
        });
    }
    membership::promote(
        ctx,
        volume_id,
        &Promotion {
            node: target.name().to_string(),
            lvstore: target.config.lvstore.clone(),
            lvol_uuid: payload.working_uuid.clone().unwrap_or_default(),
            reason: format!(
                "rebuilt by a full raid copy on {} at unix {} ({})",
                engine.name(),
                unix_now(),
                payload
                    .full_copy_reason
                    .as_deref()
                    .unwrap_or(FULL_COPY_REASON)
            ),
            replaces: payload.replaces.clone(),
            engine: Some(engine.name().to_string()),
        },
    )
    .await
    .map(|_| ())
}

/// Takes the new leg out of the raid, detaches and unexports it, and
/// removes the target lvol if this rebuild created it. A stale replica's
/// lvol stays (stale).
async fn rollback(ctx: &Context, volume_id: &str, payload: &RebuildPayload) -> Result<()> {
    let target = ctx.nodes.get(&payload.target).ok();
    let engine = payload
        .engine
        .as_deref()
        .and_then(|e| ctx.nodes.get(e).ok());
    if let (Some(engine), Some(target)) = (&engine, &target) {
        let base = leg_bdev(engine, target, volume_id);
        match engine
            .client
            .bdev_raid_remove_base_bdev(&BdevRaidRemoveBaseBdevParams { name: base })
            .await
        {
            Ok(()) => {}
            Err(e) if e.is_not_found() || e.is_invalid_params() => {}
            Err(e) => {
                super::copy::tolerate_unreachable(Err(engine
                    .call_failed("bdev_raid_remove_base_bdev", e)
                    .into()))?;
            }
        }
        if engine.name() != target.name() {
            super::copy::tolerate_unreachable(
                primitives::remove_attachment(
                    engine,
                    &naming::nvme_controller(volume_id, target.name()),
                )
                .await,
            )?;
        }
    }
    if let Some(target) = &target {
        super::copy::tolerate_unreachable(
            primitives::remove_export(target, &naming::replica_nqn(volume_id, target.name()))
                .await
                .map(|_| ()),
        )?;
        if payload.target_created {
            super::copy::tolerate_unreachable(primitives::remove_replica(target, volume_id).await)?;
        }
    }
    tracing::info!(volume = %volume_id, target = %payload.target, "full rebuild rolled back: the volume is as it was");
    Ok(())
}

/// Resumes, completes or rolls back an interrupted fallback rebuild.
pub async fn recover(ctx: &Context, journal: Journal, payload: RebuildPayload) -> Result<()> {
    let volume_id = journal.record().volume_id.clone();
    let step = journal.record().step.clone();
    if step == "promoted" {
        let _guard = ctx.lock(&volume_id).await;
        let Some(journal) = journal.reread().await? else {
            return Ok(());
        };
        return journal.finish().await;
    }
    let (Some(engine), Ok(target)) = (
        payload
            .engine
            .as_deref()
            .and_then(|e| ctx.nodes.get(e).ok()),
        ctx.nodes.get(&payload.target),
    ) else {
        let _guard = ctx.lock(&volume_id).await;
        let Some(journal) = journal.reread().await? else {
            return Ok(());
        };
        rollback(ctx, &volume_id, &payload).await?;
        return journal.finish().await;
    };
    let added = matches!(step.as_str(), "adding" | "rebuilding");
    let leg = if added {
        observe(&engine, &volume_id, &leg_bdev(&engine, &target, &volume_id)).await?
    } else {
        Leg::Gone(format!("interrupted at {step}, before the leg was added"))
    };
    match leg {
        Leg::Rebuilding(blocks) => {
            tracing::info!(volume = %volume_id, target = %payload.target, blocks, "interrupted full rebuild still running in the raid; checked again next pass");
            Ok(())
        }
        Leg::Done => {
            let Some(journal) = journal.reread().await? else {
                return Ok(());
            };
            promote(ctx, &volume_id, &engine, &target, &payload).await?;
            tracing::warn!(volume = %volume_id, target = %payload.target, "interrupted full rebuild had finished in the raid: the replica is current");
            journal.finish().await
        }
        Leg::Gone(why) => {
            let _guard = ctx.lock(&volume_id).await;
            let Some(journal) = journal.reread().await? else {
                return Ok(());
            };
            tracing::warn!(volume = %volume_id, target = %payload.target, %why, "interrupted full rebuild rolled back");
            rollback(ctx, &volume_id, &payload).await?;
            journal.finish().await
        }
    }
}
