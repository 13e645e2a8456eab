//! Durable membership: which replicas of a volume hold every acknowledged
//! write. A raid is only ever assembled from those (`ReplicaHealth::Healthy`),
//! and every change of that set lands in the store, with a bump of the
//! volume's epoch, in one transaction, *before* anything that could destroy
//! the evidence (raid teardown, snapshot, re-publish).
//!
//! The rules (docs/data-safety.md):
//! - a replica whose leg left the raid while published missed writes: it is
//!   demoted to `stale` and never serves again until rebuilt;
//! - the last current replicas are never demoted: if every leg is gone, no
//!   write was acknowledged without one of them, and the volume is marked
//!   unclean instead;
//! - a volume whose engine was lost without a clean teardown is *unclean*:
//!   before it serves again one reachable current replica is chosen (the
//!   engine node's own replica if it is reachable, else the first reachable
//!   in node order) and every other one becomes stale.

use std::time::SystemTime;

use crate::context::Context;
use crate::error::{ControllerError, Result};
use crate::nodes::bootstrap;
use crate::store::{
    Expect, ReplicaHealth, ReplicaRecord, StoreError, UncleanMark, Versioned, VolumeRecord,
};

/// How often a membership transaction that lost a race is retried.
const CONFLICT_RETRIES: usize = 5;

/// One replica to take out of the current set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demotion {
    /// Node holding the replica.
    pub node: String,
    /// Its new state (`Stale` when its lvol is intact, `Failed` when lost).
    pub health: ReplicaHealth,
    /// Why, for the operator.
    pub reason: String,
}

/// Takes the replicas named in `demotions` out of the current set, in one
/// transaction with an epoch bump. Replicas already not current are left
/// alone. If the demotions would leave no current replica, nothing is
/// demoted and the volume is marked unclean (engine on `engine_node`).
/// Returns the nodes actually demoted.
pub async fn demote(
    ctx: &Context,
    volume_id: &str,
    engine_node: &str,
    demotions: &[Demotion],
) -> Result<Vec<String>> {
    for _ in 0..CONFLICT_RETRIES {
        let Some(mut volume) = ctx.store.get_volume(volume_id).await? else {
            return Ok(Vec::new());
        };
        let replicas = ctx.store.list_replicas(volume_id).await?;
        let mut changed = Vec::new();
        for replica in &replicas {
            let Some(d) = demotions.iter().find(|d| d.node == replica.record.node) else {
                continue;
            };
            if !replica.record.health.is_current() {
                continue;
            }
            let mut r = replica.clone();
            r.record.health = d.health;
            r.record.reason = Some(d.reason.clone());
            r.record.since = Some(SystemTime::now());
            changed.push(r);
        }
        if changed.is_empty() {
            return Ok(Vec::new());
        }
        let current_left = replicas
            .iter()
            .filter(|r| r.record.health.is_current())
            .count()
            - changed.len();
        if current_left == 0 {
            tracing::warn!(volume = %volume_id, "every current leg is gone: the volume is marked unclean rather than left without a current replica");
            mark_unclean(
                ctx,
                volume_id,
                engine_node,
                "every current leg left the raid; one replica will be chosen at the next publish",
            )
            .await?;
            return Ok(Vec::new());
        }
        volume.record.epoch += 1;
        match ctx.store.update_membership(&volume, &changed).await {
            Ok(_) => {
                let nodes: Vec<String> = changed.into_iter().map(|r| r.record.node).collect();
                for d in demotions.iter().filter(|d| nodes.contains(&d.node)) {
                    tracing::warn!(volume = %volume_id, node = %d.node, health = d.health.as_str(), reason = %d.reason, epoch = volume.record.epoch, "replica demoted: it will not serve until rebuilt");
                }
                return Ok(nodes);
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ControllerError::ConcurrentUpdate {
        key: format!("membership of volume {volume_id}"),
    })
}

/// Records that the engine of `volume_id` on `engine_node` was lost without
/// a clean teardown. Idempotent: an existing mark is kept (it is older).
pub async fn mark_unclean(
    ctx: &Context,
    volume_id: &str,
    engine_node: &str,
    reason: &str,
) -> Result<()> {
    for _ in 0..CONFLICT_RETRIES {
        let Some(mut volume) = ctx.store.get_volume(volume_id).await? else {
            return Ok(());
        };
        if volume.record.unclean.is_some() {
            return Ok(());
        }
        volume.record.unclean = Some(UncleanMark {
            engine_node: engine_node.to_string(),
            reason: reason.to_string(),
            since: SystemTime::now(),
        });
        volume.record.epoch += 1;
        match ctx.store.update_membership(&volume, &[]).await {
            Ok(_) => {
                tracing::warn!(volume = %volume_id, node = %engine_node, %reason, "volume marked unclean: one current replica will be chosen before it serves again");
                return Ok(());
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ControllerError::ConcurrentUpdate {
        key: format!("unclean mark of volume {volume_id}"),
    })
}

/// Makes an unclean volume consistent: chooses one reachable current
/// replica, demotes every other current one to stale and clears the mark,
/// in one transaction. A clean volume is left alone. Returns the survivor,
/// if a choice was made.
pub async fn resolve_unclean(ctx: &Context, volume_id: &str) -> Result<Option<String>> {
    let Some(volume) = ctx.store.get_volume(volume_id).await? else {
        return Ok(None);
    };
    let Some(mark) = volume.record.unclean.clone() else {
        return Ok(None);
    };
    let replicas = ctx.store.list_replicas(volume_id).await?;
    let current: Vec<String> = replicas
        .iter()
        .filter(|r| r.record.health.is_current())
        .map(|r| r.record.node.clone())
        .collect();
    let survivor = choose_survivor(ctx, volume_id, &mark.engine_node, &current).await;
    let Some(survivor) = survivor else {
        return Err(ControllerError::NoReachableCurrentReplica {
            volume: volume_id.to_string(),
            engine_node: mark.engine_node,
            candidates: current.join(", "),
        });
    };
    let reason = format!(
        "volume was unclean ({}: engine on {} lost); the replica on {survivor} was chosen as the one current copy",
        mark.reason, mark.engine_node
    );
    let changed: Vec<_> = replicas
        .into_iter()
        .filter(|r| r.record.health.is_current() && r.record.node != survivor)
        .map(|mut r| {
            r.record.health = ReplicaHealth::Stale;
            r.record.reason = Some(reason.clone());
            r.record.since = Some(SystemTime::now());
            r
        })
        .collect();
    let mut volume: Versioned<VolumeRecord> = volume;
    volume.record.unclean = None;
    volume.record.epoch += 1;
    match ctx.store.update_membership(&volume, &changed).await {
        Ok(_) => {
            tracing::warn!(volume = %volume_id, survivor = %survivor, demoted = changed.len(), epoch = volume.record.epoch, "unclean volume resolved");
            Ok(Some(survivor))
        }
        Err(e) => Err(e.into()),
    }
}

/// The replica that survives an unclean engine loss: the engine node's own
/// replica when it is reachable and holds its lvol, else the first such
/// replica in node order.
async fn choose_survivor(
    ctx: &Context,
    volume_id: &str,
    engine_node: &str,
    current: &[String],
) -> Option<String> {
    let ordered = current
        .iter()
        .filter(|n| *n == engine_node)
        .chain(current.iter().filter(|n| *n != engine_node));
    for node in ordered {
        if replica_reachable(ctx, volume_id, node).await {
            return Some(node.clone());
        }
    }
    None
}

/// Whether the replica of `volume_id` on `node` can be used right now: the
/// node answers, is bootstrapped (its lvstore loaded; a restart is noticed
/// by the probe even before the health monitor sees it) and holds the lvol.
pub async fn replica_reachable(ctx: &Context, volume_id: &str, node: &str) -> bool {
    let Ok(handle) = ctx.nodes.get(node) else {
        return false;
    };
    if bootstrap::probe(&handle).await.is_err() || bootstrap::ensure_ready(&handle).await.is_err() {
        return false;
    }
    matches!(
        handle.client.bdev_get(&handle.lvol_alias(volume_id)).await,
        Ok(Some(_))
    )
}

/// A rebuilt replica joining the current set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promotion {
    /// Node holding the rebuilt lvol.
    pub node: String,
    /// lvstore on that node.
    pub lvstore: String,
    /// UUID of the rebuilt lvol.
    pub lvol_uuid: String,
    /// Why it is current now, for the operator.
    pub reason: String,
    /// The replica it replaces on another node (its record is dropped).
    pub replaces: Option<String>,
    /// The publishing node whose raid the new leg joined, whose
    /// publication's members grow by it in the same transaction.
    pub engine: Option<String>,
}

/// Makes a rebuilt replica current, in one transaction with an epoch bump:
/// its record becomes `Healthy` with the rebuilt lvol (created if the node
/// held none), the replica it replaces is dropped, and the publication's
/// members include it when it joined a raid. Returns the new epoch.
pub async fn promote(ctx: &Context, volume_id: &str, p: &Promotion) -> Result<u64> {
    for _ in 0..CONFLICT_RETRIES {
        let Some(mut volume) = ctx.store.get_volume(volume_id).await? else {
            return Err(ControllerError::VolumeNotFound {
                id: volume_id.to_string(),
            });
        };
        let existing = ctx.store.get_replica(volume_id, &p.node).await?;
        let dropped = match &p.replaces {
            Some(node) if *node != p.node => ctx.store.get_replica(volume_id, node).await?,
            _ => None,
        };
        let mut publication = match &p.engine {
            Some(engine) => Some(
                ctx.store
                    .get_publication(volume_id, engine)
                    .await?
                    .ok_or_else(|| ControllerError::RebuildAbandoned {
                        volume: volume_id.to_string(),
                        target: p.node.clone(),
                        reason: format!("the volume is no longer published on {engine}"),
                    })?,
            ),
            None => None,
        };
        volume.record.epoch += 1;
        if let Some(pubr) = publication.as_mut() {
            if !pubr.record.members.contains(&p.node) {
                pubr.record.members.push(p.node.clone());
                pubr.record.members.sort();
            }
            pubr.record.epoch = volume.record.epoch;
        }
        let record = ReplicaRecord {
            version: crate::store::SCHEMA_VERSION,
            volume_id: volume_id.to_string(),
            node: p.node.clone(),
            lvstore: p.lvstore.clone(),
            lvol_uuid: p.lvol_uuid.clone(),
            health: ReplicaHealth::Healthy,
            generation: existing.as_ref().map_or(1, |e| e.record.generation + 1),
            reason: Some(p.reason.clone()),
            since: Some(SystemTime::now()),
        };
        let expect = existing
            .as_ref()
            .map_or(Expect::Absent, |e| Expect::Revision(e.revision));
        match ctx
            .store
            .replace_replica(
                &volume,
                &record,
                expect,
                dropped.as_ref(),
                publication.as_ref(),
            )
            .await
        {
            Ok(_) => {
                tracing::info!(volume = %volume_id, node = %p.node, reason = %p.reason, replaced = ?p.replaces, epoch = volume.record.epoch, "rebuilt replica is current");
                return Ok(volume.record.epoch);
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ControllerError::ConcurrentUpdate {
        key: format!("membership of volume {volume_id}"),
    })
}
