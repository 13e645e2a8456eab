//! Removes everything a publication built, in reverse order, tolerating
//! pieces that are already gone: the kernel frontend, the raid1, the NVMe-oF
//! attachments on the publishing node, and the replica exports on the others.
//!
//! When the publishing node cannot be reached, the replica exports on the
//! other nodes are still removed, which fences it off the remote replicas;
//! its own local replica may then have taken writes the others missed, so it
//! is marked failed and never serves again until rebuilt. What is left on the
//! unreachable node is removed by the orphan sweep when it returns.

use crate::context::Context;
use crate::error::{ControllerError, Result};
use crate::naming;
use crate::nodes::{primitives, NodeHandle};
use crate::store::{Expect, ReplicaHealth};

/// Tears down the publication of `volume_id` on `node`; `replica_nodes` are
/// the nodes whose replica exports must be removed. `was_published` says
/// whether the node may have written through the volume.
pub async fn teardown(
    ctx: &Context,
    volume_id: &str,
    node: &str,
    replica_nodes: &[String],
    was_published: bool,
) -> Result<()> {
    let target = ctx.nodes.get(node)?;
    let local = match remove_local(&target, volume_id).await {
        Ok(()) => Ok(()),
        Err(ControllerError::NodeUnreachable { reason, .. }) => {
            tracing::warn!(node = %node, %reason, "publishing node unreachable: fencing it off the remote replicas");
            Err(reason)
        }
        Err(e) => return Err(e),
    };
    for name in replica_nodes.iter().filter(|n| *n != node) {
        let replica_node = ctx.nodes.get(name)?;
        match primitives::remove_export(&replica_node, &naming::replica_nqn(volume_id, name)).await
        {
            Ok(_) => {}
            Err(ControllerError::NodeUnreachable { .. }) => {
                tracing::warn!(node = %name, "replica node unreachable; its export will be removed by the orphan sweep")
            }
            Err(e) => return Err(e),
        }
    }
    if local.is_err() && was_published {
        fail_local_replica(ctx, volume_id, node).await?;
    }
    Ok(())
}

async fn remove_local(target: &NodeHandle, volume_id: &str) -> Result<()> {
    let raid = naming::raid_bdev(volume_id);
    primitives::remove_ublk(target, &raid).await?;
    primitives::remove_export(target, &naming::volume_nqn(volume_id)).await?;
    primitives::remove_raid(target, &raid).await?;
    for ctrl in primitives::controllers(target).await? {
        if naming::volume_of_nvme_controller(&ctrl.name) == Some(volume_id) {
            primitives::remove_attachment(target, &ctrl.name).await?;
        }
    }
    Ok(())
}

async fn fail_local_replica(ctx: &Context, volume_id: &str, node: &str) -> Result<()> {
    let Some(replica) = ctx.store.get_replica(volume_id, node).await? else {
        return Ok(());
    };
    if replica.record.health == ReplicaHealth::Failed {
        return Ok(());
    }
    let mut record = replica.record;
    record.health = ReplicaHealth::Failed;
    tracing::warn!(volume = %volume_id, node = %node, "local replica of an unreachable publishing node marked failed: it may hold writes the others missed");
    ctx.store
        .put_replica(&record, Expect::Revision(replica.revision))
        .await?;
    Ok(())
}
