//! Builds the admin API's documents from the store and the node registry.

use std::collections::{BTreeMap, BTreeSet};
use std::time::UNIX_EPOCH;

use super::model::{
    ConditionView, NodeView, PublicationView, RebuildView, ReplicaSnapshotView, ReplicaView,
    SnapshotView, VolumeView,
};
use crate::context::Context;
use crate::error::Result;
use crate::health;
use crate::naming;
use crate::nodes::{primitives, NodeHandle};
use crate::store::{ReplicaHealth, ReplicaRecord, SnapshotRecord, VolumeRecord};

/// Every storage node, refreshed now, in name order.
pub async fn nodes(ctx: &Context) -> Vec<NodeView> {
    ctx.nodes
        .refresh_all()
        .await
        .iter()
        .map(|n| node_view(ctx, n))
        .collect()
}

fn node_view(ctx: &Context, node: &NodeHandle) -> NodeView {
    let status = node.status();
    let space = status.space;
    NodeView {
        name: node.name().to_string(),
        reachable: status.online,
        bootstrapped: status.bootstrapped,
        error: status.last_error.clone(),
        lvstore: node.config.lvstore.clone(),
        lvstore_uuid: status.lvstore_uuid.clone(),
        cluster_size: space.cluster_size,
        total_clusters: space.total_clusters,
        free_clusters: space.free_clusters,
        total_bytes: space.total_bytes(),
        free_bytes: space.free_bytes(),
        committed_bytes: space.provisioned_bytes,
        overprovisioning_ratio: ctx.nodes.ratio,
        provisionable_bytes: space.provisionable_bytes(ctx.nodes.ratio),
        replicas: status.replicas,
        nearly_full: ctx.nodes.nearly_full(&status),
        frontends: node
            .config
            .frontends
            .iter()
            .map(|f| f.as_str().to_string())
            .collect(),
        topology: node.segments(),
        cluster_stamp: status.stamp.as_ref().map(|s| s.describe()),
        restarts: status.restarts,
    }
}

/// Every volume in id order, with a condition judged from stored state and
/// the nodes' last known status (no SPDK calls).
pub async fn volumes(ctx: &Context) -> Result<Vec<VolumeView>> {
    let page = ctx.store.list_volumes(None, 0).await?;
    let mut out = Vec::with_capacity(page.items.len());
    for volume in page.items {
        let volume = volume.record;
        let replicas = replicas_of(ctx, &volume.id).await?;
        let condition = stored_condition(ctx, &volume, &replicas);
        out.push(volume_view(ctx, volume, replicas, condition).await?);
    }
    Ok(out)
}

/// One volume, with its condition re-checked against the nodes (raid legs
/// SPDK dropped are marked failed, as CSI `ControllerGetVolume` does).
/// `NotFound` when no volume has this id.
pub async fn volume(ctx: &Context, id: &str) -> Result<VolumeView> {
    ctx.existing_volume(id).await?;
    let condition = health::condition(ctx, id).await?;
    // Read after the check: it may have marked replicas failed.
    let (volume, replicas) = ctx.existing_volume(id).await?;
    let condition = ConditionView {
        abnormal: condition.abnormal,
        message: condition.message,
    };
    volume_view(ctx, volume, replicas, condition).await
}

async fn replicas_of(ctx: &Context, volume_id: &str) -> Result<Vec<ReplicaRecord>> {
    Ok(ctx
        .store
        .list_replicas(volume_id)
        .await?
        .into_iter()
        .map(|r| r.record)
        .collect())
}

async fn volume_view(
    ctx: &Context,
    volume: VolumeRecord,
    replicas: Vec<ReplicaRecord>,
    condition: ConditionView,
) -> Result<VolumeView> {
    let published = ctx
        .store
        .list_publications(&volume.id)
        .await?
        .into_iter()
        .map(|p| PublicationView {
            node: p.record.node,
            frontend: p.record.frontend,
            readonly: p.record.readonly,
            members: p.record.members,
        })
        .collect();
    let replicas = replicas
        .into_iter()
        .map(|r| ReplicaView {
            lvol: format!("{}/{}", r.lvstore, naming::replica_lvol(&volume.id)),
            node: r.node,
            lvol_uuid: r.lvol_uuid,
            health: r.health,
            reason: r.reason,
            since_unix: r.since.map(health::unix_secs),
        })
        .collect();
    Ok(VolumeView {
        id: volume.id,
        name: volume.name,
        size_bytes: volume.capacity_bytes,
        replica_count: volume.replica_count,
        replicas,
        published,
        content_source: volume.content_source,
        condition,
        epoch: volume.epoch,
        unclean: volume.unclean.map(|m| {
            format!(
                "since unix {}: {} (engine on {})",
                health::unix_secs(m.since),
                m.reason,
                m.engine_node
            )
        }),
    })
}

/// The condition of a volume from its records and the nodes' cached status.
fn stored_condition(
    ctx: &Context,
    volume: &VolumeRecord,
    replicas: &[ReplicaRecord],
) -> ConditionView {
    let mut problems = Vec::new();
    if (replicas.len() as u32) < volume.replica_count {
        problems.push(format!(
            "{} of {} replicas exist",
            replicas.len(),
            volume.replica_count
        ));
    }
    for r in replicas {
        if r.health != ReplicaHealth::Healthy {
            problems.push(format!(
                "replica on {} is {:?} and needs a rebuild",
                r.node, r.health
            ));
        }
        if let Ok(node) = ctx.nodes.get(&r.node) {
            let status = node.status();
            if !status.online {
                problems.push(format!("node {} is unreachable", r.node));
            } else if ctx.nodes.nearly_full(&status) {
                problems.push(format!("lvstore on {} is nearly full", r.node));
            }
        }
    }
    if problems.is_empty() {
        let healthy = replicas
            .iter()
            .filter(|r| r.health == ReplicaHealth::Healthy)
            .count();
        ConditionView {
            abnormal: false,
            message: format!("{healthy} healthy replicas"),
        }
    } else {
        ConditionView {
            abnormal: true,
            message: problems.join("; "),
        }
    }
}

/// Every snapshot in id order.
pub async fn snapshots(ctx: &Context) -> Result<Vec<SnapshotView>> {
    let page = ctx.store.list_snapshots(None, 0).await?;
    Ok(page
        .items
        .into_iter()
        .map(|s| snapshot_view(s.record))
        .collect())
}

fn snapshot_view(s: SnapshotRecord) -> SnapshotView {
    SnapshotView {
        created_unix: s
            .created_at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        id: s.id,
        name: s.name,
        source_volume_id: s.source_volume_id,
        size_bytes: s.size_bytes,
        replicas: s
            .replica_snapshots
            .into_iter()
            .map(|r| ReplicaSnapshotView {
                node: r.node,
                lvol_uuid: r.lvol_uuid,
            })
            .collect(),
    }
}

/// Raid background processes (rebuilds) SPDK runs on the nodes volumes are
/// published to, in volume order. A node that cannot be asked is skipped
/// with a warning in the log.
pub async fn rebuilds(ctx: &Context) -> Result<Vec<RebuildView>> {
    let mut out = Vec::new();
    let mut journaled = BTreeSet::new();
    for op in ctx.store.list_pending_operations().await? {
        if op.record.kind != crate::store::OperationKind::RebuildReplica {
            continue;
        }
        let Ok(p) =
            serde_json::from_value::<crate::rebuild::RebuildPayload>(op.record.payload.clone())
        else {
            continue;
        };
        journaled.insert(op.record.volume_id.clone());
        let percent = if p.progress.total_bytes == 0 {
            0.0
        } else {
            100.0 * p.progress.copied_bytes as f64 / p.progress.total_bytes as f64
        };
        out.push(RebuildView {
            volume_id: op.record.volume_id.clone(),
            node: p.engine.clone().unwrap_or_else(|| p.target.clone()),
            raid: p
                .engine
                .as_ref()
                .map(|_| naming::raid_bdev(&op.record.volume_id))
                .unwrap_or_default(),
            process: if p.swap.is_some() {
                "thin-swap"
            } else if p.engine.is_some() {
                "full-copy"
            } else {
                "thin-copy"
            }
            .into(),
            target: p.target.clone(),
            blocks: 0,
            percent,
            mode: p.mode.as_str().into(),
            source: p.source.clone(),
            copied_bytes: p.progress.copied_bytes,
            total_bytes: p.progress.total_bytes,
            step: op.record.step.clone(),
            full_copy_reason: p.full_copy_reason.clone(),
        });
    }
    let page = ctx.store.list_volumes(None, 0).await?;
    let mut publishing: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for volume in page.items {
        for p in ctx.store.list_publications(&volume.record.id).await? {
            publishing
                .entry(p.record.node)
                .or_default()
                .insert(volume.record.id.clone());
        }
    }
    for (node_name, volumes) in publishing {
        let Ok(node) = ctx.nodes.get(&node_name) else {
            continue;
        };
        let raids = match primitives::raids(&node).await {
            Ok(raids) => raids,
            Err(e) => {
                tracing::warn!(node = %node_name, error = %e, "cannot read raid processes");
                continue;
            }
        };
        for raid in raids {
            let (Some(name), Some(process)) = (raid.name, raid.process) else {
                continue;
            };
            let Some(volume_id) = naming::volume_of_raid(&name) else {
                continue;
            };
            if !volumes.contains(volume_id) || journaled.contains(volume_id) {
                continue;
            }
            out.push(RebuildView {
                volume_id: volume_id.to_string(),
                node: node_name.clone(),
                raid: name.clone(),
                process: process.process_type,
                target: process.target,
                blocks: process.progress.blocks,
                percent: process.progress.percent,
                mode: String::new(),
                source: String::new(),
                copied_bytes: 0,
                total_bytes: 0,
                step: String::new(),
                full_copy_reason: None,
            });
        }
    }
    out.sort_by(|a, b| (&a.volume_id, &a.node).cmp(&(&b.volume_id, &b.node)));
    Ok(out)
}
