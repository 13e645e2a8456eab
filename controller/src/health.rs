//! Volume health: detects raid legs SPDK dropped, marks their replicas
//! `failed` (a replica that missed writes must never serve reads again until
//! rebuilt), and builds the CSI VolumeCondition.

use crate::context::Context;
use crate::error::Result;
use crate::naming;
use crate::nodes::primitives;
use crate::store::{Expect, ReplicaHealth};

/// The health of one volume as reported to the orchestrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// Something needs attention.
    pub abnormal: bool,
    /// What, for the operator.
    pub message: String,
}

/// Inspects the raid of every publication of `volume_id` and marks replicas
/// whose leg is gone as failed. Returns the nodes newly marked.
pub async fn mark_failed_legs(ctx: &Context, volume_id: &str) -> Result<Vec<String>> {
    let mut marked = Vec::new();
    let publications = ctx.store.list_publications(volume_id).await?;
    for publication in publications {
        let node = publication.record.node;
        let Ok(target) = ctx.nodes.get(&node) else {
            continue;
        };
        let raid_name = naming::raid_bdev(volume_id);
        let Ok(raids) = primitives::raids(&target).await else {
            continue;
        };
        let Some(raid) = raids
            .into_iter()
            .find(|r| r.name.as_deref() == Some(raid_name.as_str()))
        else {
            continue;
        };
        let present: Vec<String> = raid
            .base_bdevs_list
            .iter()
            .filter(|b| b.is_configured)
            .filter_map(|b| b.name.clone())
            .collect();
        let failed_ctrls: Vec<String> = primitives::controllers(&target)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.ctrlrs.iter().all(|p| p.state == "failed"))
            .map(|c| c.name)
            .collect();
        for replica in ctx.store.list_replicas(volume_id).await? {
            if replica.record.health != ReplicaHealth::Healthy {
                continue;
            }
            let leg_ok = if replica.record.node == node {
                present
                    .iter()
                    .any(|p| *p == target.lvol_alias(volume_id) || *p == replica.record.lvol_uuid)
            } else {
                let ctrl = naming::nvme_controller(volume_id, &replica.record.node);
                present.contains(&naming::nvme_namespace_bdev(&ctrl))
                    && !failed_ctrls.contains(&ctrl)
            };
            if !leg_ok {
                let mut record = replica.record.clone();
                record.health = ReplicaHealth::Failed;
                tracing::warn!(volume = %volume_id, node = %record.node, "raid leg lost: replica marked failed; it will not serve reads until rebuilt");
                ctx.store
                    .put_replica(&record, Expect::Revision(replica.revision))
                    .await?;
                marked.push(record.node);
            }
        }
    }
    Ok(marked)
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
    mark_failed_legs(ctx, volume_id).await?;
    let Some((volume, replicas)) = ctx.volume(volume_id).await? else {
        return Ok(Condition {
            abnormal: true,
            message: format!("volume {volume_id} no longer exists"),
        });
    };
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
    for r in replicas
        .iter()
        .filter(|r| r.health != ReplicaHealth::Healthy)
    {
        problems.push(format!(
            "replica on {} is {:?} and needs a rebuild",
            r.node, r.health
        ));
    }
    for r in &replicas {
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
    Ok(if problems.is_empty() {
        Condition {
            abnormal: false,
            message: format!("{healthy} healthy replicas"),
        }
    } else {
        Condition {
            abnormal: true,
            message: problems.join("; "),
        }
    })
}
