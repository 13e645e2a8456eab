//! When the reconciler starts rebuilds: a stale replica whose node is back
//! gets a delta rebuild onto that node at once; a replica that stays out
//! of date (stale on an unreachable node, failed) past the volume's
//! `staleReplicaTimeout`, or a replica that is missing, is rebuilt onto a
//! new node chosen by placement. One rebuild per volume at a time, at most
//! `[rebuild] max_per_node` per node (as source, target or engine).

use std::collections::BTreeMap;
use std::time::SystemTime;

use super::{Mode, Outcome, RebuildPayload, Request};
use crate::context::Context;
use crate::error::Result;
use crate::membership;
use crate::params;
use crate::placement;
use crate::store::{OperationKind, ReplicaHealth, ReplicaRecord, VolumeRecord};

/// Rebuilds each node takes part in now (journaled ones).
async fn busy_nodes(ctx: &Context) -> Result<(BTreeMap<String, usize>, Vec<String>)> {
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    let mut volumes = Vec::new();
    for op in ctx.store.list_pending_operations().await? {
        volumes.push(op.record.volume_id.clone());
        if op.record.kind != OperationKind::RebuildReplica {
            continue;
        }
        if let Ok(p) = serde_json::from_value::<RebuildPayload>(op.record.payload.clone()) {
            for n in [Some(p.source), Some(p.target), p.engine]
                .into_iter()
                .flatten()
            {
                *per_node.entry(n).or_default() += 1;
            }
        }
    }
    Ok((per_node, volumes))
}

/// The rebuilds due now, within the per-node limit.
pub async fn due(ctx: &Context) -> Result<Vec<Request>> {
    let limit = ctx.rebuild.max_per_node;
    if limit == 0 {
        return Ok(Vec::new());
    }
    let (mut per_node, busy_volumes) = busy_nodes(ctx).await?;
    let mut out = Vec::new();
    let page = ctx.store.list_volumes(None, 0).await?;
    for volume in page.items {
        let volume = volume.record;
        if volume.unclean.is_some() || busy_volumes.contains(&volume.id) {
            continue;
        }
        let replicas: Vec<ReplicaRecord> = ctx
            .store
            .list_replicas(&volume.id)
            .await?
            .into_iter()
            .map(|r| r.record)
            .collect();
        let Some(mut req) = need(ctx, &volume, &replicas).await? else {
            continue;
        };
        let over = |n: &str, m: &BTreeMap<String, usize>| m.get(n).copied().unwrap_or(0) >= limit;
        if over(&req.target, &per_node) {
            continue;
        }
        let Some(source) = choose_source(ctx, &volume.id, &replicas, &per_node, limit).await else {
            continue;
        };
        req.source = source;
        let engine = ctx
            .store
            .list_publications(&volume.id)
            .await?
            .first()
            .map(|p| p.record.node.clone());
        if engine.as_deref().is_some_and(|e| over(e, &per_node)) {
            continue;
        }
        for n in [Some(req.source.clone()), Some(req.target.clone()), engine]
            .into_iter()
            .flatten()
        {
            *per_node.entry(n).or_default() += 1;
        }
        out.push(req);
    }
    Ok(out)
}

/// A reachable current replica under the per-node limit to copy from.
async fn choose_source(
    ctx: &Context,
    volume_id: &str,
    replicas: &[ReplicaRecord],
    per_node: &BTreeMap<String, usize>,
    limit: usize,
) -> Option<String> {
    for r in replicas.iter().filter(|r| r.health.is_current()) {
        if per_node.get(&r.node).copied().unwrap_or(0) >= limit {
            continue;
        }
        if membership::replica_reachable(ctx, volume_id, &r.node).await {
            return Some(r.node.clone());
        }
    }
    None
}

/// What `volume` needs, if anything (source filled in by the caller).
async fn need(
    ctx: &Context,
    volume: &VolumeRecord,
    replicas: &[ReplicaRecord],
) -> Result<Option<Request>> {
    if !replicas.iter().any(|r| r.health.is_current()) {
        return Ok(None);
    }
    let timeout = params::stale_replica_timeout(&volume.parameters);
    let now = SystemTime::now();
    let mut overdue = None;
    for r in replicas.iter().filter(|r| !r.health.is_current()) {
        if r.health == ReplicaHealth::Stale
            && membership::replica_reachable(ctx, &volume.id, &r.node).await
        {
            return Ok(Some(Request {
                volume_id: volume.id.clone(),
                source: String::new(),
                target: r.node.clone(),
                mode: Mode::Delta,
                replaces: None,
            }));
        }
        let age = r
            .since
            .and_then(|s| now.duration_since(s).ok())
            .unwrap_or(timeout);
        if age >= timeout && overdue.is_none() {
            overdue = Some(r.node.clone());
        }
    }
    let missing = (replicas.len() as u32) < volume.replica_count;
    if overdue.is_none() && !missing {
        return Ok(None);
    }
    let holders: Vec<&str> = replicas.iter().map(|r| r.node.as_str()).collect();
    let size = volume.capacity_bytes;
    let placed = ctx
        .nodes
        .place_and_reserve(size, |candidates| {
            let free: Vec<placement::Candidate> = candidates
                .iter()
                .filter(|c| !holders.contains(&c.name.as_str()))
                .cloned()
                .collect();
            placement::place(&free, 1, size, ctx.nodes.ratio, &Default::default())
        })
        .await;
    let target = match placed {
        Ok((nodes, _reservation)) => nodes.into_iter().next(),
        Err(e) => {
            tracing::warn!(volume = %volume.id, error = %e, "a replica is due for rebuild onto a new node, but no node can take it");
            None
        }
    };
    Ok(target.map(|target| Request {
        volume_id: volume.id.clone(),
        source: String::new(),
        target,
        mode: Mode::NewNode,
        replaces: if missing { None } else { overdue },
    }))
}

/// Runs every rebuild due now, concurrently, and waits for them.
pub async fn run_due(ctx: &Context) -> Result<Vec<(Request, Result<Outcome>)>> {
    let due = due(ctx).await?;
    let runs = due.into_iter().map(|req| async move {
        let r = super::rebuild(ctx, &req).await;
        if let Err(e) = &r {
            tracing::warn!(volume = %req.volume_id, target = %req.target, error = %e, "rebuild did not complete; retried on a later pass");
        }
        (req, r)
    });
    Ok(futures::future::join_all(runs).await)
}

/// Starts the rebuilds due now in the background (the reconciler's pass
/// does not wait for them).
pub async fn spawn_due(ctx: &Context) -> Result<usize> {
    let due = due(ctx).await?;
    let n = due.len();
    for req in due {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            if let Err(e) = super::rebuild(&ctx, &req).await {
                tracing::warn!(volume = %req.volume_id, target = %req.target, error = %e, "rebuild did not complete; retried on a later pass");
            }
        });
    }
    Ok(n)
}
