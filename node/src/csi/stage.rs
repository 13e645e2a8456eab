//! NodeStageVolume and NodeUnstageVolume: attach, optionally stack
//! dm-linear, format if blank and mount; and the reverse.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use csi_proto::{NodeStageVolumeRequest, NodeUnstageVolumeRequest};
use tonic::Status;
use tracing::{info, warn, Instrument};

use super::request::{capability, required, required_path, under_root, AccessKind};
use super::service::{blocking, NodeService};
use super::state::StagedVolume;
use super::status::{incompatible, precondition};
use crate::format::{self, FsType};
use crate::frontend::{AttachSpec, AttachedDevice};
use crate::mount::{self, TargetKind};

/// Unmounts `path` until nothing is mounted there (stacked mounts), at most
/// a few layers.
pub(super) fn unmount_all(path: &Path) -> crate::error::Result<()> {
    for _ in 0..8 {
        if !mount::unmount(path)? {
            break;
        }
    }
    Ok(())
}

impl NodeService {
    /// NodeStageVolume.
    pub(super) async fn stage(&self, req: NodeStageVolumeRequest) -> Result<(), Status> {
        let volume_id = required(&req.volume_id, "volume_id")?.to_owned();
        let staging = required_path(&req.staging_target_path, "staging_target_path")?;
        let staging = under_root(&staging, &self.config.kubelet_dir, "staging_target_path")?;
        let cap = capability(req.volume_capability.as_ref(), self.config.default_fs)?;
        let span = tracing::info_span!("stage", volume_id = %volume_id);
        async move {
            let _guard = self.locks.try_lock(&volume_id)?;
            let spec = AttachSpec::from_publish_context(&req.publish_context).map_err(crate::NodeError::from)?;
            self.config.ublk_devices.check(&spec)?;
            if let Some(rec) = self.store.load(&volume_id)? {
                if rec.staging_path != staging || rec.access.is_block() != cap.kind.is_block() {
                    return Err(incompatible(format!(
                        "volume {volume_id} is already staged at {} as {}",
                        rec.staging_path.display(),
                        if rec.access.is_block() { "block" } else { "filesystem" },
                    )));
                }
                if rec.access != cap.kind || rec.read_only != cap.read_only || rec.spec != spec {
                    return Err(incompatible(format!(
                        "volume {volume_id} is already staged with a different capability or publish_context"
                    )));
                }
            }
            self.stage_locked(&volume_id, &staging, cap.kind, cap.read_only, spec)
                .await
        }
        .instrument(span)
        .await
    }

    async fn stage_locked(
        &self,
        volume_id: &str,
        staging: &Path,
        access: AccessKind,
        read_only: bool,
        spec: AttachSpec,
    ) -> Result<(), Status> {
        let started = Instant::now();
        let frontend = self.frontend(spec.kind())?;
        let device: AttachedDevice = match frontend.find_existing(&spec).await? {
            Some(d) => d,
            None => frontend.attach(&spec).await?,
        };
        let attach_ms = started.elapsed().as_millis();
        let dm_name = match &self.dm {
            Some(dm) => {
                let (dm, id, dev, sectors) = (
                    dm.clone(),
                    volume_id.to_owned(),
                    device.path.clone(),
                    device.size_bytes / 512,
                );
                blocking(move || dm.create(&id, &dev, sectors)).await?;
                Some(crate::dm::dm_name(volume_id)?)
            }
            None => None,
        };
        let mut rec = StagedVolume {
            volume_id: volume_id.to_owned(),
            staging_path: staging.to_path_buf(),
            spec,
            device,
            dm_name,
            access: access.clone(),
            read_only,
            publications: self
                .store
                .load(volume_id)?
                .map(|r| r.publications)
                .unwrap_or_else(BTreeMap::new),
        };
        // Recorded before mounting, so an unstage can always undo the attach.
        self.store.save(&rec)?;
        let (mut format_ms, mut mount_ms) = (0, 0);
        if let AccessKind::Mount {
            fs_type,
            fs_type_requested,
            mount_flags,
        } = access
        {
            let t = Instant::now();
            let fs = self
                .ensure_filesystem(rec.device_path(), fs_type, fs_type_requested)
                .await?;
            format_ms = t.elapsed().as_millis();
            let t = Instant::now();
            self.mount_staging(&rec, fs, mount_flags).await?;
            mount_ms = t.elapsed().as_millis();
            if let AccessKind::Mount { fs_type, .. } = &mut rec.access {
                *fs_type = fs;
            }
            self.store.save(&rec)?;
        }
        info!(
            device = %rec.device_path().display(),
            attach_ms,
            format_ms,
            mount_ms,
            total_ms = started.elapsed().as_millis(),
            "volume staged"
        );
        Ok(())
    }

    /// Formats the device if it is blank; returns the filesystem to mount.
    async fn ensure_filesystem(
        &self,
        device: PathBuf,
        wanted: FsType,
        requested: bool,
    ) -> Result<FsType, Status> {
        let runner = Arc::clone(&self.runner);
        let dev = device.clone();
        let existing = blocking(move || format::probe_filesystem(runner.as_ref(), &dev)).await?;
        match existing {
            None => {
                let runner = Arc::clone(&self.runner);
                blocking(move || format::format(runner.as_ref(), &device, wanted)).await?;
                info!(fs = %wanted, "formatted blank device");
                Ok(wanted)
            }
            Some(found) => match found.parse::<FsType>() {
                Ok(fs) if fs == wanted || !requested => Ok(fs),
                _ => Err(precondition(format!(
                    "{} already holds {found}, the capability asks for {wanted}",
                    device.display()
                ))),
            },
        }
    }

    async fn mount_staging(
        &self,
        rec: &StagedVolume,
        fs: FsType,
        mut flags: Vec<String>,
    ) -> Result<(), Status> {
        if rec.read_only {
            flags.push("ro".to_owned());
        }
        let (device, staging) = (rec.device_path(), rec.staging_path.clone());
        let existing = {
            let s = staging.clone();
            blocking(move || mount::find_mount(&s)).await?
        };
        if let Some(m) = existing {
            let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
            if canonical(Path::new(&m.source)) != canonical(&device) {
                return Err(incompatible(format!(
                    "{} is already mounted from {}",
                    staging.display(),
                    m.source
                )));
            }
            return Ok(());
        }
        blocking(move || {
            mount::prepare_target(&staging, TargetKind::Directory)?;
            mount::mount(&device, &staging, fs.as_str(), &flags)
        })
        .await?;
        Ok(())
    }

    /// NodeUnstageVolume.
    pub(super) async fn unstage(&self, req: NodeUnstageVolumeRequest) -> Result<(), Status> {
        let volume_id = required(&req.volume_id, "volume_id")?.to_owned();
        let staging = required_path(&req.staging_target_path, "staging_target_path")?;
        let staging = under_root(&staging, &self.config.kubelet_dir, "staging_target_path")?;
        let span = tracing::info_span!("unstage", volume_id = %volume_id);
        async move {
            let _guard = self.locks.try_lock(&volume_id)?;
            let rec = self.store.load(&volume_id)?;
            if let Some(rec) = &rec {
                if rec.staging_path != staging {
                    return Err(precondition(format!(
                        "volume {volume_id} is staged at {}, not {}",
                        rec.staging_path.display(),
                        staging.display()
                    )));
                }
                for target in rec.publications.keys() {
                    let t = target.clone();
                    if blocking(move || mount::is_mounted(&t)).await? {
                        return Err(precondition(format!(
                            "volume {volume_id} is still published at {}",
                            target.display()
                        )));
                    }
                }
            }
            let s = staging.clone();
            blocking(move || unmount_all(&s)).await?;
            let Some(rec) = rec else {
                info!("volume was not staged; nothing to undo");
                return Ok(());
            };
            if let (Some(dm), Some(name)) = (&self.dm, &rec.dm_name) {
                let (dm, name) = (dm.clone(), name.clone());
                blocking(move || dm.remove(&name)).await?;
            } else if rec.dm_name.is_some() {
                warn!("volume was staged with dm-linear but device-mapper is now off");
            }
            self.frontend(rec.spec.kind())?.detach(&rec.spec).await?;
            self.store.remove(&volume_id)?;
            info!("volume unstaged");
            Ok(())
        }
        .instrument(span)
        .await
    }
}
