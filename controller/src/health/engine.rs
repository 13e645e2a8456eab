//! Reading a published volume's engine (its raid1 on the publishing node)
//! and turning what it shows into membership changes.
//!
//! Legs are judged by the raid's own view only: a leg the raid still counts
//! as configured got every write the raid acknowledged (a write that failed
//! on it would have dropped it), whatever state its NVMe path is in.

use crate::context::Context;
use crate::error::Result;
use crate::membership::{self, Demotion};
use crate::naming;
use crate::nodes::primitives;
use crate::store::{PublicationRecord, ReplicaHealth};

/// What the engine of one publication shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineView {
    /// The raid is there and every member leg is configured.
    Intact,
    /// The raid is there but these members' legs left it (they missed writes).
    LegsLost(Vec<String>),
    /// The publishing node answers but the raid is gone: its spdk_tgt
    /// restarted, or someone deleted it. In-flight writes are unaccounted for.
    EngineLost(String),
    /// The publishing node cannot be read; nothing is known.
    Unreachable(String),
}

/// Reads the raid of `publication` and classifies every member's leg.
pub async fn observe(ctx: &Context, publication: &PublicationRecord) -> EngineView {
    let volume_id = &publication.volume_id;
    let engine_node = &publication.node;
    let target = match ctx.nodes.get(engine_node) {
        Ok(t) => t,
        Err(e) => return EngineView::Unreachable(e.to_string()),
    };
    let raid_name = naming::raid_bdev(volume_id);
    let raids = match primitives::raids(&target).await {
        Ok(r) => r,
        Err(e) => return EngineView::Unreachable(e.to_string()),
    };
    let Some(raid) = raids
        .into_iter()
        .find(|r| r.name.as_deref() == Some(raid_name.as_str()))
    else {
        return EngineView::EngineLost(format!("raid {raid_name} is gone from {engine_node}"));
    };
    let members = match members_of(ctx, publication).await {
        Ok(m) => m,
        Err(e) => return EngineView::Unreachable(e.to_string()),
    };
    let configured: Vec<&str> = raid
        .base_bdevs_list
        .iter()
        .filter(|b| b.is_configured)
        .filter_map(|b| b.name.as_deref())
        .collect();
    let mut lost = Vec::new();
    for (node, lvol_uuid) in &members {
        let present = if node == engine_node {
            let alias = target.lvol_alias(volume_id);
            configured
                .iter()
                .any(|c| *c == alias || *c == lvol_uuid.as_str())
        } else {
            let bdev = naming::nvme_namespace_bdev(&naming::nvme_controller(volume_id, node));
            configured.contains(&bdev.as_str())
        };
        if !present {
            lost.push(node.clone());
        }
    }
    if lost.is_empty() {
        EngineView::Intact
    } else {
        EngineView::LegsLost(lost)
    }
}

/// The member nodes of a publication with their lvol uuids: the recorded
/// members, or (publications written before members were recorded) the
/// volume's current replicas.
async fn members_of(
    ctx: &Context,
    publication: &PublicationRecord,
) -> Result<Vec<(String, String)>> {
    let replicas = ctx.store.list_replicas(&publication.volume_id).await?;
    Ok(replicas
        .into_iter()
        .map(|r| r.record)
        .filter(|r| {
            if publication.members.is_empty() {
                r.health == ReplicaHealth::Healthy
            } else {
                publication.members.contains(&r.node)
            }
        })
        .map(|r| (r.node, r.lvol_uuid))
        .collect())
}

/// Records what `view` proves: lost legs become stale, a lost engine makes
/// the volume unclean. With `fail_closed` (before a teardown, which erases
/// the evidence), an engine that cannot be read makes the volume unclean
/// too. Returns the nodes demoted.
pub async fn record(
    ctx: &Context,
    publication: &PublicationRecord,
    view: &EngineView,
    fail_closed: bool,
) -> Result<Vec<String>> {
    let volume_id = &publication.volume_id;
    let engine_node = &publication.node;
    match view {
        EngineView::Intact => Ok(Vec::new()),
        EngineView::LegsLost(nodes) => {
            let demotions: Vec<Demotion> = nodes
                .iter()
                .map(|n| Demotion {
                    node: n.clone(),
                    health: ReplicaHealth::Stale,
                    reason: format!(
                        "its leg left the raid on {engine_node} while published: it missed writes"
                    ),
                })
                .collect();
            membership::demote(ctx, volume_id, engine_node, &demotions).await
        }
        EngineView::EngineLost(reason) => {
            membership::mark_unclean(ctx, volume_id, engine_node, reason).await?;
            Ok(Vec::new())
        }
        EngineView::Unreachable(reason) if fail_closed => {
            let reason =
                format!("the raid on {engine_node} could not be read before teardown ({reason})");
            membership::mark_unclean(ctx, volume_id, engine_node, &reason).await?;
            Ok(Vec::new())
        }
        EngineView::Unreachable(_) => Ok(Vec::new()),
    }
}

/// Observes the publication of `volume_id` on `node` (if any) and records
/// what it proves, failing closed: called under the volume lock before
/// anything that destroys the evidence (teardown, snapshot).
pub async fn record_evidence(ctx: &Context, volume_id: &str, node: &str) -> Result<EngineView> {
    let Some(publication) = ctx.store.get_publication(volume_id, node).await? else {
        return Ok(EngineView::Intact);
    };
    let view = observe(ctx, &publication.record).await;
    record(ctx, &publication.record, &view, true).await?;
    if let EngineView::LegsLost(nodes) = &view {
        tracing::warn!(volume = %volume_id, node = %node, lost = ?nodes, "raid legs lost before teardown recorded");
    }
    Ok(view)
}
