//! The copy itself: the target's working lvol exported over NVMe-oF TCP to
//! the source node alone, attached there, and filled layer by layer with
//! `bdev_lvol_start_shallow_copy` (only the clusters a read-only layer
//! owns move), polled with `bdev_lvol_check_shallow_copy`.

use spdk_client::{
    BdevLvolCheckShallowCopyParams, BdevLvolStartShallowCopyParams, ShallowCopyState,
};

use crate::error::{ControllerError, Result};
use crate::naming;
use crate::nodes::{primitives, NodeHandle};

/// Exports the target's working lvol `bdev` to the source's SPDK (its only
/// host) and attaches it there; returns the bdev name on the source.
pub async fn connect(
    source: &NodeHandle,
    target: &NodeHandle,
    volume_id: &str,
    bdev: &str,
) -> Result<String> {
    let nqn = naming::rebuild_nqn(volume_id, target.name());
    let host = naming::spdk_host_nqn(source.name());
    primitives::ensure_export(
        target,
        &primitives::Export {
            nqn: &nqn,
            bdev,
            ns_uuid: None,
            host_nqn: &host,
            address: target.config.nvmf_address,
            port: target.config.nvmf_port,
            ana_reporting: false,
            serial: naming::serial_number(volume_id),
        },
    )
    .await?;
    primitives::ensure_attached(
        source,
        &naming::rebuild_controller(volume_id, target.name()),
        target.config.nvmf_address,
        target.config.nvmf_port,
        &nqn,
        &host,
    )
    .await
}

/// Detaches the working lvol on the source and removes its export on the
/// target; each side is left alone when its node cannot be reached (the
/// orphan sweep removes what is left once no rebuild is journaled).
pub async fn disconnect(
    source: Option<&NodeHandle>,
    target: Option<&NodeHandle>,
    volume_id: &str,
    target_name: &str,
) -> Result<()> {
    if let Some(source) = source {
        tolerate_unreachable(
            primitives::remove_attachment(
                source,
                &naming::rebuild_controller(volume_id, target_name),
            )
            .await,
        )?;
    }
    if let Some(target) = target {
        tolerate_unreachable(
            primitives::remove_export(target, &naming::rebuild_nqn(volume_id, target_name))
                .await
                .map(|_| ()),
        )?;
    }
    Ok(())
}

/// `Ok` for a node that cannot be reached (logged), the result otherwise.
pub fn tolerate_unreachable(r: Result<()>) -> Result<()> {
    match r {
        Err(ControllerError::NodeUnreachable { node, reason }) => {
            tracing::warn!(%node, %reason, "node unreachable during rebuild cleanup; the orphan sweep removes what is left");
            Ok(())
        }
        other => other,
    }
}

/// Starts copying the clusters of the read-only layer `src` (an lvol alias
/// or uuid on the source) onto `dst` (a bdev on the source); returns the
/// operation id.
pub async fn start(source: &NodeHandle, src: &str, dst: &str) -> Result<u32> {
    source
        .client
        .bdev_lvol_start_shallow_copy(&BdevLvolStartShallowCopyParams {
            src_lvol_name: src.to_string(),
            dst_bdev_name: dst.to_string(),
        })
        .await
        .map(|op| op.operation_id)
        .map_err(|e| source.call_failed("bdev_lvol_start_shallow_copy", e).into())
}

/// A shallow copy's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyCheck {
    /// Clusters copied so far.
    pub copied_clusters: u64,
    /// Set when complete: the clusters copied in all.
    pub done: Option<u64>,
}

/// Checks shallow copy `op` (of `src` onto `dst`, for the error message).
/// A failed copy is an error; a finished result can be read only once.
pub async fn check(source: &NodeHandle, op: u32, src: &str, dst: &str) -> Result<CopyCheck> {
    let status = source
        .client
        .bdev_lvol_check_shallow_copy(&BdevLvolCheckShallowCopyParams { operation_id: op })
        .await
        .map_err(|e| source.call_failed("bdev_lvol_check_shallow_copy", e))?;
    match status.state {
        ShallowCopyState::Complete => Ok(CopyCheck {
            copied_clusters: status.copied_clusters,
            done: Some(status.copied_clusters),
        }),
        ShallowCopyState::InProgress => Ok(CopyCheck {
            copied_clusters: status.copied_clusters,
            done: None,
        }),
        ShallowCopyState::Error | ShallowCopyState::Unknown => Err(ControllerError::Spdk {
            node: source.name().to_string(),
            method: "bdev_lvol_check_shallow_copy".into(),
            code: 0,
            message: format!(
                "shallow copy of {src} onto {dst} failed after {} of {} clusters: {}",
                status.copied_clusters,
                status.total_clusters,
                status.error.unwrap_or_else(|| "unknown state".into())
            ),
            kind: spdk_client::ErrorKind::Other,
        }),
    }
}
