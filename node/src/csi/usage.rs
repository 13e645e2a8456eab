//! NodeGetVolumeStats and NodeExpandVolume.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use csi_proto::volume_usage::Unit;
use csi_proto::{
    NodeExpandVolumeRequest, NodeExpandVolumeResponse, NodeGetVolumeStatsRequest,
    NodeGetVolumeStatsResponse, VolumeCondition, VolumeUsage,
};
use tonic::Status;
use tracing::{info, Instrument};

use super::engine::Health;
use super::request::{lookup_path, required, AccessKind};
use super::service::{blocking, NodeService};
use super::state::StagedVolume;
use super::status::not_found;
use crate::device::is_block_device;
use crate::stats::{volume_stats, VolumeStats};

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl NodeService {
    /// The staged volume whose staging or published path is `path`, or
    /// NOT_FOUND.
    fn volume_at(&self, volume_id: &str, path: &Path) -> Result<StagedVolume, Status> {
        let rec = self
            .store
            .load(volume_id)?
            .ok_or_else(|| not_found(format!("volume {volume_id} is not staged on this node")))?;
        if rec.staging_path != path && !rec.publications.contains_key(path) {
            return Err(not_found(format!(
                "volume {volume_id} is not staged or published at {}",
                path.display()
            )));
        }
        Ok(rec)
    }

    /// What the local spdk_tgt says about `volume_id`'s raid.
    async fn engine_health(&self, volume_id: &str) -> Health {
        match &self.engine {
            Some(engine) => engine.health(volume_id).await,
            None => Health::unknown_without_socket(),
        }
    }

    /// NodeGetVolumeStats: usage of the filesystem or device, and the
    /// condition of the volume's raid on this node.
    pub(super) async fn volume_stats(
        &self,
        req: NodeGetVolumeStatsRequest,
    ) -> Result<NodeGetVolumeStatsResponse, Status> {
        let volume_id = required(&req.volume_id, "volume_id")?.to_owned();
        let path = lookup_path(&req.volume_path, "volume_path")?;
        let span = tracing::debug_span!("stats", volume_id = %volume_id);
        async move {
            let rec = self.volume_at(&volume_id, &path)?;
            let engine = self.engine_health(&volume_id).await;
            if engine.abnormal {
                tracing::debug!(condition = %engine.message, "engine abnormal");
            }
            let device = rec.device_path();
            if !is_block_device(&device) {
                return Ok(abnormal(format!(
                    "device {} is gone; {}",
                    device.display(),
                    engine.message
                )));
            }
            // A block volume's staging path holds nothing: measure the device.
            let probe: PathBuf = if rec.access.is_block() && path == rec.staging_path {
                device
            } else {
                let p = path.clone();
                if !blocking(move || crate::mount::is_mounted(&p)).await? {
                    return Err(not_found(format!("{} is not mounted", path.display())));
                }
                path
            };
            let stats = match blocking(move || volume_stats(&probe)).await {
                Ok(s) => s,
                Err(e) => {
                    return Ok(abnormal(format!(
                        "cannot read volume stats: {e}; {}",
                        engine.message
                    )))
                }
            };
            let usage = match stats {
                VolumeStats::Block { bytes_total } => vec![VolumeUsage {
                    total: clamp(bytes_total),
                    unit: Unit::Bytes as i32,
                    ..Default::default()
                }],
                VolumeStats::Filesystem(fs) => vec![
                    VolumeUsage {
                        available: clamp(fs.bytes_available),
                        total: clamp(fs.bytes_total),
                        used: clamp(fs.bytes_used),
                        unit: Unit::Bytes as i32,
                    },
                    VolumeUsage {
                        available: clamp(fs.inodes_free),
                        total: clamp(fs.inodes_total),
                        used: clamp(fs.inodes_used),
                        unit: Unit::Inodes as i32,
                    },
                ],
            };
            Ok(NodeGetVolumeStatsResponse {
                usage,
                volume_condition: Some(VolumeCondition {
                    abnormal: engine.abnormal,
                    message: engine.message,
                }),
            })
        }
        .instrument(span)
        .await
    }

    /// NodeExpandVolume: re-read the device size, grow dm and the filesystem.
    pub(super) async fn expand(
        &self,
        req: NodeExpandVolumeRequest,
    ) -> Result<NodeExpandVolumeResponse, Status> {
        let volume_id = required(&req.volume_id, "volume_id")?.to_owned();
        let path = lookup_path(&req.volume_path, "volume_path")?;
        let span = tracing::info_span!("expand", volume_id = %volume_id);
        async move {
            let _guard = self.locks.try_lock(&volume_id)?;
            let mut rec = self.volume_at(&volume_id, &path)?;
            let size = self.frontend(rec.spec.kind())?.rescan(&rec.device).await?;
            if let (Some(dm), Some(name)) = (&self.dm, &rec.dm_name) {
                let (dm, name, dev) = (dm.clone(), name.clone(), rec.device.path.clone());
                blocking(move || {
                    dm.reload(&name, &dev, size / 512)?;
                    dm.resume(&name)
                })
                .await?;
            }
            if let AccessKind::Mount { fs_type, .. } = rec.access {
                let (runner, dev, mnt) = (
                    Arc::clone(&self.runner),
                    rec.device_path(),
                    rec.staging_path.clone(),
                );
                blocking(move || {
                    crate::resize::resize_filesystem(runner.as_ref(), &dev, &mnt, fs_type)
                })
                .await?;
            }
            rec.device.size_bytes = size;
            self.store.save(&rec)?;
            info!(size_bytes = size, "volume expanded");
            Ok(NodeExpandVolumeResponse {
                capacity_bytes: clamp(size),
            })
        }
        .instrument(span)
        .await
    }
}

fn abnormal(message: String) -> NodeGetVolumeStatsResponse {
    NodeGetVolumeStatsResponse {
        usage: Vec::new(),
        volume_condition: Some(VolumeCondition {
            abnormal: true,
            message,
        }),
    }
}
