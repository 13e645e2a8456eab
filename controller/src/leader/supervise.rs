//! What a leader does, and only a leader: recover interrupted operations
//! when elected, then run the reconciler until it is deposed.

use std::future::Future;
use std::time::Duration;

use crate::context::Context;
use crate::error::Result;
use crate::health;
use crate::reconciler;

/// Finishes or rolls back the journaled operations of term `term`, then
/// lets this controller act (serve calls that change state). Returns how
/// many operations were resumed.
pub async fn take_charge(ctx: &Context, term: u64) -> Result<usize> {
    crate::server::establish_cluster(ctx).await?;
    let resumed = reconciler::recover_pending(ctx).await?;
    if resumed > 0 {
        tracing::info!(resumed, "finished or rolled back interrupted operations");
    }
    if ctx.leader.mark_acting(term) {
        tracing::info!(identity = ctx.leader.identity(), "acting as leader");
    }
    Ok(resumed)
}

/// Each time this controller is elected: recovery ([`take_charge`]), then
/// the reconciler every `interval` and the health monitor every `health`
/// (if any) until leadership is lost (the passes in progress are dropped)
/// or `shutdown` resolves.
pub async fn supervise(
    ctx: Context,
    interval: Duration,
    health: Option<Duration>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let term = tokio::select! {
            _ = &mut shutdown => return,
            term = ctx.leader.elected() => term,
        };
        if !ctx.leader.is_acting() {
            let recovered = tokio::select! {
                _ = &mut shutdown => return,
                _ = ctx.leader.deposed(term) => continue,
                recovered = take_charge(&ctx, term) => recovered,
            };
            if let Err(e) = recovered {
                tracing::warn!(error = %e, "recovery after election failed; the reconciler retries it");
                ctx.leader.mark_acting(term);
            }
        }
        tokio::select! {
            _ = &mut shutdown => return,
            _ = ctx.leader.deposed(term) => {
                tracing::warn!("not the leader any more: reconciler stopped");
            }
            _ = reconciler::run(ctx.clone(), interval, std::future::pending::<()>()) => {}
            _ = run_monitor(&ctx, health) => {}
        }
    }
}

async fn run_monitor(ctx: &Context, interval: Option<Duration>) {
    match interval {
        Some(interval) => {
            health::monitor::run(ctx.clone(), interval, std::future::pending::<()>()).await
        }
        None => std::future::pending().await,
    }
}
