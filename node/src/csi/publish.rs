//! NodePublishVolume and NodeUnpublishVolume: bind the staged volume into
//! the pod's target path, and take it away again.

use std::path::Path;

use csi_proto::{NodePublishVolumeRequest, NodeUnpublishVolumeRequest};
use tonic::Status;
use tracing::{info, Instrument};

use super::request::{capability, required, required_path, under_root};
use super::service::{blocking, NodeService};
use super::stage::unmount_all;
use super::state::Publication;
use super::status::{incompatible, invalid, not_found, precondition};
use crate::error::NodeError;
use crate::mount::{self, TargetKind};

impl NodeService {
    /// NodePublishVolume.
    pub(super) async fn publish(&self, req: NodePublishVolumeRequest) -> Result<(), Status> {
        let volume_id = required(&req.volume_id, "volume_id")?.to_owned();
        let target = required_path(&req.target_path, "target_path")?;
        let target = under_root(&target, &self.config.kubelet_dir, "target_path")?;
        let cap = capability(req.volume_capability.as_ref(), self.config.default_fs)?;
        if req.staging_target_path.is_empty() {
            return Err(precondition(
                "staging_target_path is required: this plugin stages volumes",
            ));
        }
        let staging = required_path(&req.staging_target_path, "staging_target_path")?;
        let staging = under_root(&staging, &self.config.kubelet_dir, "staging_target_path")?;
        let span = tracing::info_span!("publish", volume_id = %volume_id);
        async move {
            let _guard = self.locks.try_lock(&volume_id)?;
            let mut rec = self.store.load(&volume_id)?.ok_or_else(|| {
                not_found(format!("volume {volume_id} is not staged on this node"))
            })?;
            if rec.staging_path != staging {
                return Err(precondition(format!(
                    "volume {volume_id} is staged at {}, not {}",
                    rec.staging_path.display(),
                    staging.display()
                )));
            }
            if rec.access.is_block() != cap.kind.is_block() {
                return Err(invalid(format!(
                    "volume {volume_id} was staged as {}, the capability asks for {}",
                    kind_name(rec.access.is_block()),
                    kind_name(cap.kind.is_block())
                )));
            }
            let wanted = Publication {
                read_only: req.readonly || rec.read_only,
                block: rec.access.is_block(),
            };
            let t = target.clone();
            let current = blocking(move || mount::find_mount(&t)).await?;
            if let Some(existing) = current {
                let known = rec.publications.get(&target);
                let same = match known {
                    Some(p) => *p == wanted,
                    None => existing.is_read_only() == wanted.read_only,
                };
                if !same {
                    return Err(incompatible(format!(
                        "{} is already published with a different capability or readonly flag",
                        target.display()
                    )));
                }
                if known.is_none() {
                    rec.publications.insert(target.clone(), wanted);
                    self.store.save(&rec)?;
                }
                return Ok(());
            }
            let source = if wanted.block {
                rec.device_path()
            } else {
                rec.staging_path.clone()
            };
            let (t, ro, block) = (target.clone(), wanted.read_only, wanted.block);
            blocking(move || {
                let kind = if block {
                    TargetKind::File
                } else {
                    TargetKind::Directory
                };
                mount::prepare_target(&t, kind)?;
                mount::bind_mount(&source, &t, ro)
            })
            .await?;
            rec.publications.insert(target.clone(), wanted);
            self.store.save(&rec)?;
            info!(target = %target.display(), read_only = ro, block, "volume published");
            Ok(())
        }
        .instrument(span)
        .await
    }

    /// NodeUnpublishVolume: idempotent; an unknown volume or target succeeds.
    pub(super) async fn unpublish(&self, req: NodeUnpublishVolumeRequest) -> Result<(), Status> {
        let volume_id = required(&req.volume_id, "volume_id")?.to_owned();
        let target = required_path(&req.target_path, "target_path")?;
        let target = under_root(&target, &self.config.kubelet_dir, "target_path")?;
        let span = tracing::info_span!("unpublish", volume_id = %volume_id);
        async move {
            let _guard = self.locks.try_lock(&volume_id)?;
            let t = target.clone();
            blocking(move || {
                unmount_all(&t)?;
                remove_target(&t)
            })
            .await?;
            if let Some(mut rec) = self.store.load(&volume_id)? {
                if rec.publications.remove(&target).is_some() {
                    self.store.save(&rec)?;
                }
            }
            info!(target = %target.display(), "volume unpublished");
            Ok(())
        }
        .instrument(span)
        .await
    }
}

fn kind_name(block: bool) -> &'static str {
    if block {
        "block"
    } else {
        "filesystem"
    }
}

/// Removes the (unmounted) target file or directory; missing is fine.
fn remove_target(target: &Path) -> crate::error::Result<()> {
    let result = match std::fs::symlink_metadata(target) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => Err(e),
        Ok(m) if m.is_dir() => std::fs::remove_dir(target),
        Ok(_) => std::fs::remove_file(target),
    };
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(NodeError::io("remove target", target, e)),
    }
}
