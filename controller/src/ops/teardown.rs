//! Removes everything a publication built, in reverse order, tolerating
//! pieces that are already gone: the kernel frontend, the raid1, the NVMe-oF
//! attachments on the publishing node, and the replica exports on the others.

use super::Context;
use crate::error::Result;
use crate::naming;
use crate::nodes::primitives;

/// Tears down the publication of `volume_id` on `node`; `replica_nodes` are
/// the nodes whose replica exports must be removed.
pub async fn teardown(
    ctx: &Context,
    volume_id: &str,
    node: &str,
    replica_nodes: &[String],
) -> Result<()> {
    let target = ctx.nodes.get(node)?;
    let raid = naming::raid_bdev(volume_id);
    primitives::remove_ublk(&target, &raid).await?;
    primitives::remove_export(&target, &naming::volume_nqn(volume_id)).await?;
    primitives::remove_raid(&target, &raid).await?;
    for ctrl in primitives::controllers(&target).await? {
        if naming::volume_of_nvme_controller(&ctrl.name) == Some(volume_id) {
            primitives::remove_attachment(&target, &ctrl.name).await?;
        }
    }
    for name in replica_nodes {
        if name == node {
            continue;
        }
        let replica_node = ctx.nodes.get(name)?;
        match primitives::remove_export(&replica_node, &naming::replica_nqn(volume_id, name)).await
        {
            Ok(_) => {}
            Err(crate::error::ControllerError::NodeUnreachable { .. }) => {
                tracing::warn!(node = %name, "replica node unreachable; its export will be removed by the orphan sweep")
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
