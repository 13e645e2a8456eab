//! DeleteVolume: refuse while published, remove replica exports and lvols,
//! then the records, writing the volume's tombstone in the same store
//! transaction ([`crate::store::Store::delete_volume`]): the lvol of a node
//! that was unreachable is deleted by the orphan sweep as soon as the node
//! returns, without the grace period unexplained lvols wait out.
//! Steps: `deleting`, `replicas-removed`. Recovery redoes the whole
//! operation (every step is idempotent).

use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::context::Context;
use crate::error::{ControllerError, Result};
use crate::journal::Journal;
use crate::naming;
use crate::nodes::primitives;
use crate::store::OperationKind;

/// Journal payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeletePayload {
    /// Nodes holding replicas.
    pub nodes: Vec<String>,
}

/// Deletes the volume; unknown ids succeed (idempotent).
pub async fn delete_volume(ctx: &Context, volume_id: &str) -> Result<()> {
    let span = tracing::info_span!("delete_volume", volume = %volume_id);
    async {
        let _guard = ctx.lock(volume_id).await;
        let Some((_, replicas)) = ctx.volume(volume_id).await? else {
            return Ok(());
        };
        let publications = ctx.store.list_publications(volume_id).await?;
        if !publications.is_empty() {
            let nodes: Vec<_> = publications.iter().map(|p| p.record.node.clone()).collect();
            return Err(ControllerError::StillPublished {
                volume: volume_id.to_string(),
                nodes: nodes.join(", "),
            });
        }
        let payload = DeletePayload {
            nodes: replicas.into_iter().map(|r| r.node).collect(),
        };
        let journal = Journal::begin(
            &ctx.store,
            OperationKind::DeleteVolume,
            volume_id,
            None,
            "deleting",
            &payload,
        )
        .await?;
        finish(ctx, volume_id, journal).await
    }
    .instrument(span)
    .await
}

async fn finish(ctx: &Context, volume_id: &str, mut journal: Journal) -> Result<()> {
    let payload: DeletePayload = journal.payload()?;
    for name in &payload.nodes {
        let Ok(node) = ctx.nodes.get(name) else {
            continue;
        };
        let removed = async {
            primitives::remove_export(&node, &naming::replica_nqn(volume_id, name)).await?;
            primitives::remove_replica(&node, volume_id).await
        }
        .await;
        match removed {
            Ok(()) => {}
            Err(ControllerError::NodeUnreachable { .. }) => tracing::warn!(
                node = %name,
                "node unreachable; the volume is tombstoned, so the orphan sweep deletes its replica lvol when the node returns"
            ),
            Err(e) => return Err(e),
        }
    }
    journal.step("replicas-removed", &payload).await?;
    ctx.store.delete_volume(volume_id).await?;
    tracing::info!("volume deleted");
    journal.finish().await
}

/// Completes an interrupted DeleteVolume.
pub async fn recover(ctx: &Context, journal: Journal) -> Result<()> {
    let volume_id = journal.record().volume_id.clone();
    let _guard = ctx.lock(&volume_id).await;
    let Some(journal) = journal.reread().await? else {
        return Ok(()); // finished or moved on by another actor meanwhile
    };
    finish(ctx, &volume_id, journal).await
}
