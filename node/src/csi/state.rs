//! Per-volume staging records, one small JSON file each under
//! `<state_dir>/volumes/`, so a restarted node service finds what it staged
//! and never attaches a volume twice.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::request::AccessKind;
use crate::error::{NodeError, Result};
use crate::frontend::{AttachSpec, AttachedDevice};

/// One publication of a staged volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publication {
    /// Bound read-only.
    pub read_only: bool,
    /// A block device bound onto a file (else a directory bind).
    pub block: bool,
}

/// What the node did to stage one volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedVolume {
    /// The volume.
    pub volume_id: String,
    /// The staging path the CO gave.
    pub staging_path: PathBuf,
    /// How the volume was reached.
    pub spec: AttachSpec,
    /// The frontend's block device.
    pub device: AttachedDevice,
    /// Name of the dm-linear device stacked on top, if any.
    pub dm_name: Option<String>,
    /// Mount or block.
    pub access: AccessKind,
    /// Staged read-only (reader-only access mode).
    pub read_only: bool,
    /// Publications by target path.
    pub publications: BTreeMap<PathBuf, Publication>,
}

impl StagedVolume {
    /// The device consumers use: the dm device when stacked, else the
    /// frontend's.
    pub fn device_path(&self) -> PathBuf {
        match &self.dm_name {
            Some(name) => crate::dm::dm_path(name),
            None => self.device.path.clone(),
        }
    }
}

/// The directory of staging records.
#[derive(Debug, Clone)]
pub struct StagingStore {
    dir: PathBuf,
}

impl StagingStore {
    /// Records under `<state_dir>/volumes`, created if missing.
    pub fn open(state_dir: &Path) -> Result<Self> {
        let dir = state_dir.join("volumes");
        std::fs::create_dir_all(&dir).map_err(|e| NodeError::io("create state dir", &dir, e))?;
        Ok(StagingStore { dir })
    }

    /// File of `volume_id`'s record: a digest, so any volume id is a safe
    /// file name.
    fn path(&self, volume_id: &str) -> PathBuf {
        let digest = Sha256::digest(volume_id.as_bytes());
        let name: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{name}.json"))
    }

    /// The record of `volume_id`, if staged.
    pub fn load(&self, volume_id: &str) -> Result<Option<StagedVolume>> {
        let path = self.path(volume_id);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(NodeError::io("read staging record", &path, e)),
        };
        let rec: StagedVolume = serde_json::from_slice(&text)
            .map_err(|e| NodeError::io("parse staging record", &path, std::io::Error::other(e)))?;
        Ok((rec.volume_id == volume_id).then_some(rec))
    }

    /// Writes the record atomically (temp file, fsync, rename, fsync dir).
    pub fn save(&self, rec: &StagedVolume) -> Result<()> {
        let path = self.path(&rec.volume_id);
        let tmp = path.with_extension("json.tmp");
        let body = serde_json::to_vec_pretty(rec)
            .map_err(|e| NodeError::io("encode staging record", &path, std::io::Error::other(e)))?;
        let mut f = std::fs::File::create(&tmp).map_err(|e| NodeError::io("create", &tmp, e))?;
        f.write_all(&body)
            .and_then(|()| f.sync_all())
            .map_err(|e| NodeError::io("write", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| NodeError::io("rename", &path, e))?;
        sync_dir(&self.dir)
    }

    /// Deletes the record; a missing one is fine.
    pub fn remove(&self, volume_id: &str) -> Result<()> {
        let path = self.path(volume_id);
        match std::fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(NodeError::io("remove staging record", &path, e)),
        }
    }

    /// Every record (for start-up recovery and the agent's quiesce lookup).
    pub fn list(&self) -> Result<Vec<StagedVolume>> {
        let entries =
            std::fs::read_dir(&self.dir).map_err(|e| NodeError::io("list", &self.dir, e))?;
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|x| x == "json") {
                match std::fs::read(&path)
                    .ok()
                    .and_then(|t| serde_json::from_slice::<StagedVolume>(&t).ok())
                {
                    Some(rec) => out.push(rec),
                    None => tracing::warn!(path = %path.display(), "unreadable staging record"),
                }
            }
        }
        Ok(out)
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| NodeError::io("sync", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::FsType;
    use crate::frontend::{FrontendKind, UblkTarget};

    fn record(id: &str) -> StagedVolume {
        StagedVolume {
            volume_id: id.into(),
            staging_path: "/staging/x".into(),
            spec: AttachSpec::Ublk(UblkTarget {
                device: "/dev/ublkb1".into(),
                id: 1,
            }),
            device: AttachedDevice {
                kind: FrontendKind::Ublk,
                path: "/dev/ublkb1".into(),
                size_bytes: 1 << 30,
                controllers: vec![],
            },
            dm_name: None,
            access: AccessKind::Mount {
                fs_type: FsType::Xfs,
                fs_type_requested: true,
                mount_flags: vec!["noatime".into()],
            },
            read_only: false,
            publications: BTreeMap::new(),
        }
    }

    #[test]
    fn records_survive_a_new_store_and_are_removed_idempotently() {
        let dir = tempfile::tempdir().unwrap();
        let store = StagingStore::open(dir.path()).unwrap();
        let id = "pvc-1/../../etc/passwd";
        store.save(&record(id)).unwrap();
        let again = StagingStore::open(dir.path()).unwrap();
        assert_eq!(again.load(id).unwrap(), Some(record(id)));
        assert_eq!(again.list().unwrap().len(), 1);
        again.remove(id).unwrap();
        again.remove(id).unwrap();
        assert_eq!(again.load(id).unwrap(), None);
    }
}
