//! The reconciler: on startup and periodically, finishes or rolls back
//! journaled operations, removes SPDK objects Shorthorn created that no
//! record explains any more, and refreshes replica health.

use std::collections::BTreeSet;
use std::time::Duration;

use spdk_client::BdevLvolGetLvolsParams;

use crate::context::Context;
use crate::error::{ControllerError, Result};
use crate::health;
use crate::journal::Journal;
use crate::naming;
use crate::nodes::{primitives, NodeHandle};
use crate::ops;
use crate::store::OperationKind;

/// Finishes or rolls back every journaled operation; returns how many.
///
/// The entries are listed first and each is acted on under its volume's
/// lock, which the operation in flight may hold meanwhile: so every
/// operation's `recover` re-reads its entry once it holds the lock
/// ([`Journal::reread`]) and leaves it alone if it is gone or changed (the
/// operation finished or moved on; a later pass sees its new state).
pub async fn recover_pending(ctx: &Context) -> Result<usize> {
    let pending = ctx.store.list_pending_operations().await?;
    let mut done = 0;
    for op in pending {
        let (record, revision) = (op.record, op.revision);
        let kind = record.kind;
        let id = record.id.clone();
        let journal = Journal::resume(&ctx.store, record, revision);
        let outcome = match kind {
            OperationKind::CreateVolume => ops::create_volume::recover(ctx, journal).await,
            OperationKind::DeleteVolume => ops::delete_volume::recover(ctx, journal).await,
            OperationKind::PublishVolume => ops::publish::recover(ctx, journal).await,
            OperationKind::UnpublishVolume => ops::unpublish::recover(ctx, journal).await,
            OperationKind::CreateSnapshot => ops::snapshot_create::recover(ctx, journal).await,
            OperationKind::ExpandVolume => ops::expand::recover(ctx, journal).await,
            OperationKind::RevertVolume => ops::revert::recover(ctx, journal).await,
            other => {
                tracing::warn!(op = %id, ?other, "journaled operation of a kind this build cannot resume; left in place");
                continue;
            }
        };
        match outcome {
            Ok(()) => done += 1,
            Err(e) => {
                tracing::warn!(op = %id, error = %e, "could not resume operation; will retry")
            }
        }
    }
    Ok(done)
}

/// Removes Shorthorn objects on every reachable node that no record explains.
pub async fn sweep_orphans(ctx: &Context) -> Result<()> {
    let busy: BTreeSet<String> = ctx
        .store
        .list_pending_operations()
        .await?
        .into_iter()
        .map(|o| o.record.volume_id)
        .collect();
    for node in ctx.nodes.refresh_all().await {
        if !node.status().online {
            continue;
        }
        if let Err(e) = sweep_node(ctx, &node, &busy).await {
            tracing::warn!(node = node.name(), error = %e, "orphan sweep failed on node");
        }
    }
    Ok(())
}

/// What the records say about one volume on one node.
struct Wanted {
    volume: bool,
    replica_here: bool,
    published_here: bool,
    published_anywhere: bool,
}

async fn wanted(ctx: &Context, volume_id: &str, node: &str) -> Result<Wanted> {
    let Some((_, replicas)) = ctx.volume(volume_id).await? else {
        return Ok(Wanted {
            volume: false,
            replica_here: false,
            published_here: false,
            published_anywhere: false,
        });
    };
    let publications = ctx.store.list_publications(volume_id).await?;
    Ok(Wanted {
        volume: true,
        replica_here: replicas.iter().any(|r| r.node == node),
        published_here: publications.iter().any(|p| p.record.node == node),
        published_anywhere: !publications.is_empty(),
    })
}

/// Whether an object of `volume_id` on `node` is an orphan by the records,
/// checked twice: cheaply, then again under the volume's lock with the
/// journal re-read, so an operation that started after the sweep began is
/// never undone under its feet. Returns the lock guard for an orphan.
async fn orphan(
    ctx: &Context,
    volume_id: &str,
    node: &str,
    busy: &BTreeSet<String>,
    keep: impl Fn(&Wanted) -> bool,
) -> Result<Option<tokio::sync::OwnedMutexGuard<()>>> {
    if busy.contains(volume_id) || keep(&wanted(ctx, volume_id, node).await?) {
        return Ok(None);
    }
    let guard = ctx.lock(volume_id).await;
    let pending = ctx
        .store
        .list_pending_operations()
        .await?
        .iter()
        .any(|o| o.record.volume_id == volume_id);
    if pending || keep(&wanted(ctx, volume_id, node).await?) {
        return Ok(None);
    }
    Ok(Some(guard))
}

async fn sweep_node(ctx: &Context, node: &NodeHandle, busy: &BTreeSet<String>) -> Result<()> {
    let name = node.name().to_string();
    let published_here = |w: &Wanted| w.published_here;
    for disk in primitives::ublk_disks(node).await.unwrap_or_default() {
        let Some(v) = naming::volume_of_raid(&disk.bdev_name) else {
            continue;
        };
        if let Some(_guard) = orphan(ctx, v, &name, busy, published_here).await? {
            tracing::info!(node = %name, volume = v, "removing orphan ublk disk");
            primitives::remove_ublk(node, &disk.bdev_name).await?;
        }
    }
    for sub in primitives::subsystems(node).await? {
        let Some(v) = naming::volume_of_nqn(&sub.nqn) else {
            continue;
        };
        let frontend = sub.nqn == naming::volume_nqn(v);
        let keep = |w: &Wanted| {
            if frontend {
                w.published_here
            } else {
                w.published_anywhere && w.replica_here
            }
        };
        if let Some(_guard) = orphan(ctx, v, &name, busy, keep).await? {
            tracing::info!(node = %name, nqn = %sub.nqn, "removing orphan subsystem");
            primitives::remove_export(node, &sub.nqn).await?;
        }
    }
    for raid in primitives::raids(node).await? {
        let Some(raid_name) = raid.name.as_deref() else {
            continue;
        };
        let Some(v) = naming::volume_of_raid(raid_name) else {
            continue;
        };
        if let Some(_guard) = orphan(ctx, v, &name, busy, published_here).await? {
            tracing::info!(node = %name, volume = v, "removing orphan raid");
            primitives::remove_raid(node, raid_name).await?;
        }
    }
    for ctrl in primitives::controllers(node).await? {
        let Some(v) = naming::volume_of_nvme_controller(&ctrl.name) else {
            continue;
        };
        if let Some(_guard) = orphan(ctx, v, &name, busy, published_here).await? {
            tracing::info!(node = %name, controller = %ctrl.name, "removing orphan NVMe controller");
            primitives::remove_attachment(node, &ctrl.name).await?;
        }
    }
    let lvols = node
        .client
        .bdev_lvol_get_lvols(&BdevLvolGetLvolsParams {
            lvs_name: Some(node.config.lvstore.clone()),
            ..Default::default()
        })
        .await
        .map_err(|e| node.call_failed("bdev_lvol_get_lvols", e))?;
    for lvol in lvols {
        let Some(v) = naming::volume_of_lvol(&lvol.name) else {
            continue;
        };
        let explained = |w: &Wanted| w.volume && w.replica_here;
        if let Some(_guard) = orphan(ctx, v, &name, busy, explained).await? {
            tracing::info!(node = %name, volume = v, "removing orphan replica lvol");
            primitives::remove_export(node, &naming::replica_nqn(v, &name)).await?;
            primitives::remove_replica(node, v).await?;
        }
    }
    Ok(())
}

/// Marks replicas whose raid leg failed, for every published volume.
pub async fn refresh_health(ctx: &Context) -> Result<()> {
    let mut start: Option<String> = None;
    loop {
        let page = ctx.store.list_volumes(start.as_deref(), 100).await?;
        for v in &page.items {
            if let Err(e) = health::mark_failed_legs(ctx, &v.record.id).await {
                tracing::warn!(volume = %v.record.id, error = %e, "health check failed");
            }
        }
        match page.next {
            Some(next) => start = Some(next),
            None => return Ok(()),
        }
    }
}

/// One full pass: discovery, pending operations, orphans, health.
pub async fn reconcile_once(ctx: &Context) -> Result<()> {
    if let Err(e) = ctx.nodes.rediscover().await {
        tracing::warn!(error = %e, "node agent discovery failed");
    }
    recover_pending(ctx).await?;
    if let Err(e) = ops::snapshot_delete::reclaim(ctx).await {
        tracing::warn!(error = %e, "reclaiming deleted snapshots failed");
    }
    sweep_orphans(ctx).await?;
    refresh_health(ctx).await
}

/// Runs [`reconcile_once`] every `interval` until `shutdown` resolves.
pub async fn run(
    ctx: Context,
    interval: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = ticker.tick() => {
                if let Err(e) = reconcile_once(&ctx).await {
                    log_failure(&e);
                }
            }
        }
    }
}

fn log_failure(e: &ControllerError) {
    tracing::warn!(error = %e, "reconciler pass failed; retrying next interval");
}
