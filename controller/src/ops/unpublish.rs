//! ControllerUnpublishVolume: record what the engine shows, tear the
//! publication down and forget it.
//! Steps: `started`, `observed` (lost legs demoted stale, a lost or
//! unreadable engine marked unclean: teardown erases that evidence),
//! `torn-down`. Recovery redoes what is left (idempotent).

use serde::{Deserialize, Serialize};
use tracing::Instrument;

use super::teardown::teardown;
use crate::context::Context;
use crate::error::Result;
use crate::health::engine;
use crate::journal::Journal;
use crate::store::{Expect, OperationKind};

/// Journal payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnpublishPayload {
    /// Node the volume was published on.
    pub node: String,
    /// Nodes holding replicas.
    pub replicas: Vec<String>,
}

/// Unpublishes `volume_id` from `node`, or from every node when `node` is `None`.
/// Unknown volumes and absent publications succeed.
pub async fn unpublish(ctx: &Context, volume_id: &str, node: Option<&str>) -> Result<()> {
    let span = tracing::info_span!("unpublish", volume = %volume_id, node = node.unwrap_or("*"));
    async {
        let _guard = ctx.lock(volume_id).await;
        let Some((_, replicas)) = ctx.volume(volume_id).await? else {
            return Ok(());
        };
        let publications = ctx.store.list_publications(volume_id).await?;
        let replica_nodes: Vec<String> = replicas.into_iter().map(|r| r.node).collect();
        for p in publications {
            if node.is_some_and(|n| n != p.record.node) {
                continue;
            }
            let payload = UnpublishPayload {
                node: p.record.node.clone(),
                replicas: replica_nodes.clone(),
            };
            let journal = Journal::begin(
                &ctx.store,
                OperationKind::UnpublishVolume,
                volume_id,
                Some(&p.record.node),
                "started",
                &payload,
            )
            .await?;
            finish(ctx, volume_id, journal).await?;
        }
        Ok(())
    }
    .instrument(span)
    .await
}

async fn finish(ctx: &Context, volume_id: &str, mut journal: Journal) -> Result<()> {
    let payload: UnpublishPayload = journal.payload()?;
    if journal.record().step == "started" {
        engine::record_evidence(ctx, volume_id, &payload.node).await?;
        journal.step("observed", &payload).await?;
    }
    teardown(ctx, volume_id, &payload.node, &payload.replicas).await?;
    journal.step("torn-down", &payload).await?;
    ctx.store
        .delete_publication(volume_id, &payload.node, Expect::Any)
        .await?;
    tracing::info!(node = %payload.node, "volume unpublished");
    journal.finish().await
}

/// Completes an interrupted unpublish.
pub async fn recover(ctx: &Context, journal: Journal) -> Result<()> {
    let volume_id = journal.record().volume_id.clone();
    let _guard = ctx.lock(&volume_id).await;
    let Some(journal) = journal.reread().await? else {
        return Ok(()); // finished or moved on by another actor meanwhile
    };
    finish(ctx, &volume_id, journal).await
}
