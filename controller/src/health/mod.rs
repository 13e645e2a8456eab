//! Volume health: what the engines show ([`engine`]), the monitor that
//! watches them every second ([`monitor`]), and the CSI VolumeCondition
//! built from the records: each replica's state and why, an unclean
//! engine loss, unreachable or nearly full nodes. [`clock`] says whether
//! the monitor's records are current.

pub mod clock;
pub mod engine;
pub mod monitor;

use std::time::{SystemTime, UNIX_EPOCH};

use crate::context::Context;
use crate::error::Result;
use crate::store::{ReplicaHealth, ReplicaRecord, VolumeRecord};

/// The health of one volume as reported to the orchestrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// Something needs attention.
    pub abnormal: bool,
    /// What, for the operator.
    pub message: String,
}

/// Reads the engine of every publication of `volume_id` and records what it
/// proves (lost legs stale, lost engine unclean), unless an operation holds
/// the volume right now (it reads the engine itself). Returns the nodes
/// newly demoted.
pub async fn refresh_legs(ctx: &Context, volume_id: &str) -> Result<Vec<String>> {
    let Some(_guard) = ctx.try_lock(volume_id) else {
        return Ok(Vec::new());
    };
    let mut demoted = Vec::new();
    for publication in ctx.store.list_publications(volume_id).await? {
        let view = engine::observe(ctx, &publication.record).await;
        demoted.extend(engine::record(ctx, &publication.record, &view, false).await?);
    }
    Ok(demoted)
}

/// The VolumeCondition of a volume, after refreshing leg health and the
/// space of every node holding one of its replicas.
pub async fn condition(ctx: &Context, volume_id: &str) -> Result<Condition> {
    if let Some((_, replicas)) = ctx.volume(volume_id).await? {
        for r in &replicas {
            if let Ok(node) = ctx.nodes.get(&r.node) {
                // A failed refresh marks the node offline; reported below.
                let _ = ctx.nodes.refresh(&node).await;
            }
        }
    }
    condition_from_known_space(ctx, volume_id).await
}

/// The VolumeCondition of a volume, after refreshing leg health, judging
/// node space and reachability from the last refresh. Callers that report
/// many volumes refresh the nodes once and then call this per volume, so a
/// listing costs one refresh per node rather than one per replica.
pub async fn condition_from_known_space(ctx: &Context, volume_id: &str) -> Result<Condition> {
    refresh_legs(ctx, volume_id).await?;
    condition_from_records(ctx, volume_id).await
}

/// The VolumeCondition of a volume from what is recorded: replica states in
/// the store, node space and reachability from the last refresh. It makes
/// no SPDK call; it is current while the health monitor is
/// ([`clock::HealthClock::is_current`]).
pub async fn condition_from_records(ctx: &Context, volume_id: &str) -> Result<Condition> {
    Ok(match ctx.volume(volume_id).await? {
        Some((volume, replicas)) => judge_records(ctx, &volume, &replicas),
        None => Condition {
            abnormal: true,
            message: format!("volume {volume_id} no longer exists"),
        },
    })
}

/// [`condition_from_records`] of records already read: a listing reads a
/// whole page's replicas in one store call
/// ([`crate::store::Store::replicas_of_volumes`]) and judges each volume
/// here, with no further I/O.
pub fn judge_records(
    ctx: &Context,
    volume: &VolumeRecord,
    replicas: &[ReplicaRecord],
) -> Condition {
    let mut problems = Vec::new();
    let healthy = replicas
        .iter()
        .filter(|r| r.health == ReplicaHealth::Healthy)
        .count();
    if (replicas.len() as u32) < volume.replica_count {
        problems.push(format!(
            "{} of {} replicas exist",
            replicas.len(),
            volume.replica_count
        ));
    }
    if let Some(mark) = &volume.unclean {
        problems.push(format!(
            "unclean since unix {}: {} (engine on {}); one current replica will be chosen when it is next published",
            unix_secs(mark.since),
            mark.reason,
            mark.engine_node
        ));
    }
    for r in replicas
        .iter()
        .filter(|r| r.health != ReplicaHealth::Healthy)
    {
        let why = r.reason.as_deref().unwrap_or("no reason recorded");
        let since = format!("unix {}", r.since.map(unix_secs).unwrap_or_default());
        problems.push(format!(
            "replica on {} is {} since {since} ({why}); it serves nothing until rebuilt",
            r.node,
            r.health.as_str()
        ));
    }
    for r in replicas {
        if let Ok(node) = ctx.nodes.get(&r.node) {
            let status = node.status();
            if ctx.nodes.nearly_full(&status) {
                problems.push(format!(
                    "lvstore {} on {} is nearly full ({:.1}% free): thin replicas may run out of space",
                    node.config.lvstore,
                    r.node,
                    status.space.free_percent()
                ));
            } else if !status.online {
                problems.push(format!("node {} is unreachable", r.node));
            }
        }
    }
    if problems.is_empty() {
        Condition {
            abnormal: false,
            message: format!("{healthy} of {} replicas healthy", replicas.len()),
        }
    } else {
        Condition {
            abnormal: true,
            message: problems.join("; "),
        }
    }
}

/// Seconds since the Unix epoch (0 before it): how conditions and the
/// admin views show the times of membership changes.
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
