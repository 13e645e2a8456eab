//! The reconciler: on startup and periodically, finishes or rolls back
//! journaled operations, removes SPDK objects Shorthorn created that no
//! record explains any more ([`sweep`]), and refreshes replica health.

pub mod sweep;

use std::time::Duration;

use crate::context::Context;
use crate::error::{ControllerError, Result};
use crate::health;
use crate::journal::Journal;
use crate::ops;
use crate::store::OperationKind;
pub use sweep::sweep_orphans;

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
            OperationKind::ChangeReplicas => ops::replica_count::recover(ctx, journal).await,
            OperationKind::RebuildReplica => crate::rebuild::recover(ctx, journal).await,
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

/// One health pass (node probes, every publication's engine), so the
/// records are checked even where the fast monitor is switched off.
pub async fn refresh_health(ctx: &Context) -> Result<()> {
    health::monitor::pass(ctx).await.map(|_| ())
}

/// One full pass: discovery, pending operations, orphans, health, then
/// the rebuilds due ([`crate::rebuild::trigger`]) start in the background.
pub async fn reconcile_once(ctx: &Context) -> Result<()> {
    if let Err(e) = ctx.nodes.rediscover().await {
        tracing::warn!(error = %e, "node agent discovery failed");
    }
    recover_pending(ctx).await?;
    if let Err(e) = ops::snapshot_delete::reclaim(ctx).await {
        tracing::warn!(error = %e, "reclaiming deleted snapshots failed");
    }
    sweep_orphans(ctx).await?;
    if let Err(e) = crate::rebuild::leftovers::sweep(ctx).await {
        tracing::warn!(error = %e, "removing failed rebuilds' leftovers failed");
    }
    refresh_health(ctx).await?;
    match crate::rebuild::trigger::spawn_due(ctx).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(rebuilds = n, "rebuilds started"),
        Err(e) => tracing::warn!(error = %e, "could not start rebuilds"),
    }
    Ok(())
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
