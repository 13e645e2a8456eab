//! Removes everything a publication built, in reverse order, tolerating
//! pieces that are already gone: the kernel frontend, the raid1, the NVMe-oF
//! attachments on the publishing node, and the replica exports on the others.
//!
//! When the publishing node cannot be reached, the replica exports on the
//! other nodes are still removed, which fences it off the remote replicas.
//! Teardown destroys the evidence of which legs missed writes, so callers
//! that tear down a publication record it first
//! (`health::engine::record_evidence`: the volume becomes unclean when the
//! raid cannot be read). What is left on an unreachable node is removed when
//! the volume is next published there, or by the orphan sweep.

use crate::context::Context;
use crate::error::{ControllerError, Result};
use crate::naming;
use crate::nodes::{primitives, NodeHandle};

/// Tears down the publication of `volume_id` on `node`; `replica_nodes` are
/// the nodes whose replica exports must be removed.
pub async fn teardown(
    ctx: &Context,
    volume_id: &str,
    node: &str,
    replica_nodes: &[String],
) -> Result<()> {
    let target = ctx.nodes.get(node)?;
    match remove_local(&target, volume_id).await {
        Ok(()) => {}
        Err(ControllerError::NodeUnreachable { reason, .. }) => {
            tracing::warn!(node = %node, %reason, "publishing node unreachable: fencing it off the remote replicas");
        }
        Err(e) => return Err(e),
    }
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
    Ok(())
}

/// Removes the engine of `volume_id` on `target`: ublk disk, kernel-facing
/// export, raid1, its pad, and the NVMe-oF attachments of remote replicas.
pub(crate) async fn remove_local(target: &NodeHandle, volume_id: &str) -> Result<()> {
    let raid = naming::raid_bdev(volume_id);
    primitives::remove_ublk(target, &raid).await?;
    primitives::remove_export(target, &naming::volume_nqn(volume_id)).await?;
    primitives::remove_raid(target, &raid).await?;
    primitives::remove_pad(target, &naming::raid_pad_bdev(volume_id)).await?;
    for ctrl in primitives::controllers(target).await? {
        if naming::volume_of_nvme_controller(&ctrl.name) == Some(volume_id) {
            primitives::remove_attachment(target, &ctrl.name).await?;
        }
    }
    Ok(())
}
