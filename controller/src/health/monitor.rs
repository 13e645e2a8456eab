//! The health monitor: every `health_interval_ms`, while this controller
//! leads, it probes every node (a restarted spdk_tgt is bootstrapped again at
//! once) and reads the engine of every publication, so a lost leg is
//! recorded stale within seconds and a lost engine makes its volume unclean.
//! It also gives a restarted replica node its exports back, so the engines
//! reconnect to replicas that are still current, and re-reads node space
//! views older than ten seconds, so listings can answer from them.

use std::future::Future;
use std::time::Duration;

use super::engine::{self, EngineView};
use crate::context::Context;
use crate::error::Result;
use crate::nodes::{bootstrap, primitives};
use crate::store::PublicationRecord;

/// Longest a single node probe may take before the node counts as not answering.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How old a node's space view may grow before a pass re-reads it (a full
/// listing of its bdevs, so not every second): ListVolumes reports nearly
/// full lvstores from these views.
const SPACE_VIEW_MAX_AGE: Duration = Duration::from_secs(10);

/// What one pass found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Nodes whose spdk_tgt restarted and were bootstrapped again.
    pub restarted: Vec<String>,
    /// `(volume, node)` of replicas demoted.
    pub demoted: Vec<(String, String)>,
    /// Volumes found with their engine lost.
    pub engines_lost: Vec<String>,
    /// `(volume, node)` of replica exports given back to a restarted node.
    pub exports_restored: Vec<(String, String)>,
}

/// Runs a pass every `interval` while this controller acts as leader, until
/// `shutdown` resolves.
pub async fn run(ctx: Context, interval: Duration, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = ticker.tick() => {
                if !ctx.leader.is_acting() {
                    continue;
                }
                match pass(&ctx).await {
                    Ok(_) => ctx.health.passed(interval),
                    Err(e) => tracing::warn!(error = %e, "health pass failed; retrying next interval"),
                }
            }
        }
    }
}

/// One pass: probe the nodes, then read every publication's engine.
pub async fn pass(ctx: &Context) -> Result<PassReport> {
    let mut report = PassReport {
        restarted: probe_nodes(ctx).await,
        ..PassReport::default()
    };
    ctx.nodes.refresh_older_than(SPACE_VIEW_MAX_AGE).await;
    // Whoever noticed the restart (this pass, or a publish probing first),
    // the monitor gives the exports back.
    let exports_lost: Vec<String> = ctx
        .nodes
        .all()
        .iter()
        .filter(|n| n.status().exports_lost && n.status().bootstrapped)
        .map(|n| n.name().to_string())
        .collect();
    let mut restore_failed = Vec::new();
    for publication in ctx.store.list_all_publications().await? {
        let volume_id = publication.record.volume_id.clone();
        // An operation holding the volume reads the engine itself.
        let Some(_guard) = ctx.try_lock(&volume_id) else {
            continue;
        };
        let Some(current) = ctx
            .store
            .get_publication(&volume_id, &publication.record.node)
            .await?
        else {
            continue;
        };
        let span = tracing::info_span!("health", volume = %volume_id, node = %current.record.node);
        let _entered = span.enter();
        watch_one(
            ctx,
            &current.record,
            &exports_lost,
            &mut restore_failed,
            &mut report,
        )
        .await?;
    }
    for name in exports_lost.iter().filter(|n| !restore_failed.contains(n)) {
        if let Ok(node) = ctx.nodes.get(name) {
            node.update_status(|s| s.exports_lost = false);
        }
    }
    Ok(report)
}

async fn watch_one(
    ctx: &Context,
    publication: &PublicationRecord,
    exports_lost: &[String],
    restore_failed: &mut Vec<String>,
    report: &mut PassReport,
) -> Result<()> {
    let volume_id = &publication.volume_id;
    let view = engine::observe(ctx, publication).await;
    tracing::debug!(?view, ?exports_lost, members = ?publication.members, "engine read");
    for node in engine::record(ctx, publication, &view, false).await? {
        report.demoted.push((volume_id.clone(), node));
    }
    match view {
        EngineView::EngineLost(_) => {
            report.engines_lost.push(volume_id.clone());
            return Ok(());
        }
        // Its members' exports cannot be judged now; keep them pending.
        EngineView::Unreachable(_) => {
            restore_failed.extend(exports_lost.iter().cloned());
            return Ok(());
        }
        _ => {}
    }
    // Current remote members on a node that restarted lost their export
    // with it; give it back so the engine's NVMe controller reconnects.
    let replicas = ctx.store.list_replicas(volume_id).await?;
    for replica in replicas.iter().map(|r| &r.record) {
        let node = &replica.node;
        if !exports_lost.contains(node)
            || *node == publication.node
            || !replica.health.is_current()
            || !publication.members.contains(node)
        {
            continue;
        }
        let replica_node = ctx.nodes.get(node)?;
        match primitives::ensure_replica_export(&replica_node, volume_id, &publication.node).await {
            Ok(()) => {
                tracing::info!(replica = %node, "replica export restored on restarted node");
                report
                    .exports_restored
                    .push((volume_id.clone(), node.clone()));
            }
            Err(e) => {
                tracing::warn!(replica = %node, error = %e, "could not restore replica export; retrying next pass");
                restore_failed.push(node.clone());
            }
        }
    }
    Ok(())
}

/// Probes every node concurrently; returns those found restarted (and
/// bootstrapped again).
async fn probe_nodes(ctx: &Context) -> Vec<String> {
    let probes = ctx.nodes.all().into_iter().map(|node| async move {
        let outcome = tokio::time::timeout(PROBE_TIMEOUT, bootstrap::probe(&node)).await;
        match outcome {
            Ok(Ok(bootstrap::Probe::Restarted)) => Some(node.name().to_string()),
            Ok(Ok(bootstrap::Probe::Answered)) => None,
            Ok(Err(e)) => {
                tracing::debug!(node = node.name(), error = %e, "node probe failed");
                None
            }
            Err(_) => {
                tracing::debug!(
                    node = node.name(),
                    "node probe got no answer within {PROBE_TIMEOUT:?}"
                );
                node.update_status(|s| {
                    s.online = false;
                    s.last_error = Some(format!("no answer within {PROBE_TIMEOUT:?}"));
                });
                None
            }
        }
    });
    futures::future::join_all(probes)
        .await
        .into_iter()
        .flatten()
        .collect()
}
