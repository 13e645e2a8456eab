//! The backupstore: backups, restores and garbage collection over an
//! object store holding Longhorn's layout.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Seek, SeekFrom, Write};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, PutPayload};
use tracing::{info, instrument, warn};

use crate::compress::Compression;
use crate::error::{Error, Result};
use crate::format::{
    backup_cfg_path, backups_dir, block_path, blocks_dir, checksum, encode_backup_url, now_rfc3339,
    valid_name, volume_cfg_path, BackupConfig, BlockMapping, VolumeConfig, DEFAULT_BLOCK_SIZE,
};
use crate::lock::{self, LockOptions, BACKUP_LOCK, DELETION_LOCK};

/// An object store plus the key prefix the backupstore lives under.
#[derive(Clone)]
pub struct Target {
    store: Arc<dyn ObjectStore>,
    prefix: String,
}

impl Target {
    fn key(&self, rel: &str) -> ObjPath {
        if self.prefix.is_empty() {
            ObjPath::from(rel)
        } else {
            ObjPath::from(format!("{}/{rel}", self.prefix))
        }
    }

    fn strip<'a>(&self, key: &'a str) -> &'a str {
        if self.prefix.is_empty() {
            key
        } else {
            key.strip_prefix(self.prefix.as_str())
                .map(|k| k.trim_start_matches('/'))
                .unwrap_or(key)
        }
    }

    /// Reads an object; `None` when it does not exist.
    pub(crate) async fn get(&self, rel: &str) -> Result<Option<Bytes>> {
        match self.store.get(&self.key(rel)).await {
            Ok(r) => r.bytes().await.map(Some).map_err(|source| Error::Store {
                op: "get",
                path: rel.to_string(),
                source,
            }),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(Error::Store {
                op: "get",
                path: rel.to_string(),
                source,
            }),
        }
    }

    pub(crate) async fn put(&self, rel: &str, data: impl Into<PutPayload>) -> Result<()> {
        self.store
            .put(&self.key(rel), data.into())
            .await
            .map(|_| ())
            .map_err(|source| Error::Store {
                op: "put",
                path: rel.to_string(),
                source,
            })
    }

    /// Last-modified time of an object; `None` when it does not exist.
    pub(crate) async fn modified(&self, rel: &str) -> Result<Option<SystemTime>> {
        match self.store.head(&self.key(rel)).await {
            Ok(m) => Ok(Some(m.last_modified.into())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(Error::Store {
                op: "head",
                path: rel.to_string(),
                source,
            }),
        }
    }

    pub(crate) async fn exists(&self, rel: &str) -> Result<bool> {
        Ok(self.modified(rel).await?.is_some())
    }

    pub(crate) async fn delete(&self, rel: &str) -> Result<()> {
        match self.store.delete(&self.key(rel)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(Error::Store {
                op: "delete",
                path: rel.to_string(),
                source,
            }),
        }
    }

    /// Every object under `dir` (recursively), as relative keys with their mtimes.
    pub(crate) async fn list_files(&self, dir: &str) -> Result<Vec<(String, SystemTime)>> {
        let prefix = self.key(dir);
        let metas: Vec<_> = match self.store.list(Some(&prefix)).try_collect().await {
            Ok(m) => m,
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(source) => {
                return Err(Error::Store {
                    op: "list",
                    path: dir.to_string(),
                    source,
                })
            }
        };
        Ok(metas
            .into_iter()
            .map(|m| {
                (
                    self.strip(m.location.as_ref()).to_string(),
                    m.last_modified.into(),
                )
            })
            .collect())
    }
}

/// What to back up. The blocks handed to [`BackupStore::create_backup`] are
/// either all the snapshot's data (a full backup) or, with
/// `delta_base_snapshot`, only the blocks changed since that snapshot, which
/// must be the snapshot of the volume's last backup.
#[derive(Debug, Clone)]
pub struct BackupRequest {
    /// Backup volume name (the source volume).
    pub volume_name: String,
    /// Volume size in bytes; a multiple of the block size.
    pub volume_size: u64,
    /// Name of the new backup.
    pub backup_name: String,
    /// Snapshot being backed up.
    pub snapshot_name: String,
    /// Its creation time, RFC 3339.
    pub snapshot_created_at: String,
    /// Labels recorded on the backup and the backup volume.
    pub labels: Option<BTreeMap<String, String>>,
    /// Compression for a new backup volume; an existing volume keeps its own.
    pub compression: Compression,
    /// `DataEngine` recorded for a new backup volume (`v2` for SPDK volumes).
    pub data_engine: String,
    /// StorageClass recorded in `volume.cfg`.
    pub storage_class_name: String,
    /// The blocks are a delta on top of the last backup, taken of this snapshot.
    pub delta_base_snapshot: Option<String>,
}

impl BackupRequest {
    /// A full backup request with Longhorn's defaults (lz4, data engine v2).
    pub fn new(volume: &str, size: u64, backup: &str, snapshot: &str) -> Self {
        BackupRequest {
            volume_name: volume.to_string(),
            volume_size: size,
            backup_name: backup.to_string(),
            snapshot_name: snapshot.to_string(),
            snapshot_created_at: now_rfc3339(),
            labels: None,
            compression: Compression::Lz4,
            data_engine: "v2".to_string(),
            storage_class_name: String::new(),
            delta_base_snapshot: None,
        }
    }
}

/// What a backup did.
#[derive(Debug, Clone)]
pub struct BackupOutcome {
    /// Longhorn backup URL (`<target>?backup=<name>&volume=<volume>`).
    pub url: String,
    /// The backup config as written.
    pub config: BackupConfig,
    /// Blocks handed in.
    pub blocks_in: u64,
    /// Blocks uploaded.
    pub blocks_uploaded: u64,
    /// Blocks skipped because the store already had them.
    pub blocks_already_stored: u64,
    /// Blocks skipped because an identical block came earlier in this backup.
    pub blocks_duplicate: u64,
    /// Compressed bytes uploaded.
    pub bytes_uploaded: u64,
}

/// What a restore did.
#[derive(Debug, Clone, Copy)]
pub struct RestoreOutcome {
    /// Volume size from `volume.cfg`.
    pub volume_size: u64,
    /// Blocks written to the sink.
    pub blocks_written: u64,
    /// Bytes written to the sink.
    pub bytes_written: u64,
}

/// What deleting a backup did.
#[derive(Debug, Clone)]
pub struct DeleteOutcome {
    /// Blocks removed by garbage collection.
    pub blocks_removed: u64,
    /// Blocks still referenced by other backups.
    pub blocks_retained: u64,
    /// Why garbage collection was skipped, when it was.
    pub gc_skipped: Option<String>,
}

/// A Longhorn-format backupstore on an object store.
#[derive(Clone)]
pub struct BackupStore {
    target: Target,
    url: String,
    lock_options: LockOptions,
    concurrency: usize,
}

impl BackupStore {
    /// A backupstore on `store` under key `prefix`; `url` is the backup
    /// target URL that backup URLs are built from.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str, url: &str) -> Self {
        BackupStore {
            target: Target {
                store,
                prefix: prefix.trim_matches('/').to_string(),
            },
            url: url.to_string(),
            lock_options: LockOptions::default(),
            concurrency: 4,
        }
    }

    /// Overrides the lock timings (tests shorten Longhorn's 2 s check wait).
    pub fn with_lock_options(mut self, opts: LockOptions) -> Self {
        self.lock_options = opts;
        self
    }

    /// Sets how many blocks are uploaded or downloaded at once.
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// The backup target URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The target, for the lock protocol.
    pub fn target(&self) -> &Target {
        &self.target
    }

    async fn load<T>(
        &self,
        path: &str,
        parse: fn(&[u8]) -> std::result::Result<T, serde_json::Error>,
    ) -> Result<T> {
        let bytes = self
            .target
            .get(path)
            .await?
            .ok_or_else(|| Error::NotFound(path.to_string()))?;
        parse(&bytes).map_err(|source| Error::Parse {
            path: path.to_string(),
            source,
        })
    }

    /// Reads a backup volume's `volume.cfg`.
    pub async fn load_volume(&self, volume: &str) -> Result<VolumeConfig> {
        check_name(volume)?;
        self.load(&volume_cfg_path(volume), VolumeConfig::from_json)
            .await
    }

    /// Reads `backup_<backup>.cfg` of a volume.
    pub async fn load_backup(&self, volume: &str, backup: &str) -> Result<BackupConfig> {
        check_name(volume)?;
        check_name(backup)?;
        self.load(&backup_cfg_path(volume, backup), BackupConfig::from_json)
            .await
    }

    /// The block map of a backup: `(offset, checksum)` sorted by offset.
    pub async fn block_map(&self, volume: &str, backup: &str) -> Result<Vec<BlockMapping>> {
        let mut b = self.load_backup(volume, backup).await?;
        b.blocks.sort();
        Ok(b.blocks)
    }

    /// Names of a volume's backups (in progress ones included).
    pub async fn list_backups(&self, volume: &str) -> Result<Vec<String>> {
        check_name(volume)?;
        let mut names: Vec<String> = self
            .target
            .list_files(&backups_dir(volume))
            .await?
            .into_iter()
            .filter_map(|(k, _)| {
                let file = k.rsplit('/').next()?;
                let name = file.strip_prefix("backup_")?.strip_suffix(".cfg")?;
                valid_name(name).then(|| name.to_string())
            })
            .collect();
        names.sort();
        Ok(names)
    }

    /// Checksums of every block file the volume has.
    pub async fn list_blocks(&self, volume: &str) -> Result<BTreeSet<String>> {
        check_name(volume)?;
        Ok(self
            .target
            .list_files(&blocks_dir(volume))
            .await?
            .into_iter()
            .filter_map(|(k, _)| {
                let file = k.rsplit('/').next()?;
                let name = file.strip_suffix(".blk")?;
                valid_name(name).then(|| name.to_string())
            })
            .collect())
    }

    /// The snapshot of the volume's last backup, if any: the base an
    /// incremental backup's delta must be taken against.
    pub async fn last_backup_snapshot(&self, volume: &str) -> Result<Option<String>> {
        let v = match self.load_volume(volume).await {
            Ok(v) => v,
            Err(Error::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        if v.last_backup_name.is_empty() {
            return Ok(None);
        }
        match self.load_backup(volume, &v.last_backup_name).await {
            Ok(b) => Ok(Some(b.snapshot_name)),
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes a backup from `(offset, block)` pairs, each a whole
    /// 2 MiB-aligned block. Blocks the store already has are not uploaded.
    #[instrument(skip(self, req, blocks), fields(volume = %req.volume_name, backup = %req.backup_name))]
    pub async fn create_backup<I>(&self, req: &BackupRequest, blocks: I) -> Result<BackupOutcome>
    where
        I: IntoIterator<Item = std::io::Result<(u64, Vec<u8>)>>,
    {
        check_name(&req.volume_name)?;
        check_name(&req.backup_name)?;
        let bs = DEFAULT_BLOCK_SIZE;
        if req.volume_size == 0 || !req.volume_size.is_multiple_of(bs) {
            return Err(Error::InvalidBlock {
                offset: 0,
                reason: format!(
                    "volume size {} is not a positive multiple of the {bs}-byte block size",
                    req.volume_size
                ),
            });
        }
        let lock = lock::acquire(
            &self.target,
            &req.volume_name,
            BACKUP_LOCK,
            self.lock_options,
        )
        .await?;
        let result = self.create_backup_locked(req, blocks).await;
        if let Err(e) = lock.release().await {
            warn!(error = %e, "releasing the backup lock failed; it expires by itself");
        }
        result
    }

    async fn create_backup_locked<I>(&self, req: &BackupRequest, blocks: I) -> Result<BackupOutcome>
    where
        I: IntoIterator<Item = std::io::Result<(u64, Vec<u8>)>>,
    {
        let vol_path = volume_cfg_path(&req.volume_name);
        if !self.target.exists(&vol_path).await? {
            let v = VolumeConfig {
                name: req.volume_name.clone(),
                size: req.volume_size as i64,
                labels: req.labels.clone(),
                created_time: now_rfc3339(),
                compression_method: req.compression.as_str().to_string(),
                storage_class_name: req.storage_class_name.clone(),
                data_engine: req.data_engine.clone(),
                ..VolumeConfig::default()
            };
            self.target.put(&vol_path, v.to_json().into_bytes()).await?;
        }
        let volume = self.load_volume(&req.volume_name).await?;
        let compression = Compression::parse(&volume.compression_method)?;

        let last = match &req.delta_base_snapshot {
            None => None,
            Some(base) => {
                let last = if volume.last_backup_name.is_empty() {
                    None
                } else {
                    self.load_backup(&req.volume_name, &volume.last_backup_name)
                        .await
                        .ok()
                };
                match last {
                    Some(l) if &l.snapshot_name == base && !l.in_progress() => Some(l),
                    other => {
                        return Err(Error::BaseMismatch {
                            volume: req.volume_name.clone(),
                            given: base.clone(),
                            last_backup: volume.last_backup_name.clone(),
                            last_snapshot: other.map(|l| l.snapshot_name).unwrap_or_default(),
                        })
                    }
                }
            }
        };

        let cfg_path = backup_cfg_path(&req.volume_name, &req.backup_name);
        let in_progress = BackupConfig {
            name: req.backup_name.clone(),
            volume_name: req.volume_name.clone(),
            compression_method: compression.as_str().to_string(),
            ..BackupConfig::default()
        };
        self.target
            .put(&cfg_path, in_progress.to_json().into_bytes())
            .await?;

        let uploaded = match self
            .upload_blocks(&req.volume_name, req.volume_size, compression, blocks)
            .await
        {
            Ok(u) => u,
            Err(e) => {
                // Leave no in-progress config behind: it would block garbage
                // collection. The blocks stay and a retry skips them.
                if let Err(de) = self.target.delete(&cfg_path).await {
                    warn!(error = %de, "removing the failed backup's config failed");
                }
                return Err(e);
            }
        };

        let mut map: BTreeMap<u64, String> = BTreeMap::new();
        if let Some(l) = &last {
            for b in &l.blocks {
                map.insert(b.offset as u64, b.block_checksum.clone());
            }
        }
        for (off, sum) in &uploaded.mappings {
            map.insert(*off, sum.clone());
        }
        let blocks: Vec<BlockMapping> = map
            .into_iter()
            .map(|(offset, block_checksum)| BlockMapping {
                offset: offset as i64,
                block_checksum,
            })
            .collect();
        let config = BackupConfig {
            name: req.backup_name.clone(),
            volume_name: req.volume_name.clone(),
            snapshot_name: req.snapshot_name.clone(),
            snapshot_created_at: req.snapshot_created_at.clone(),
            created_time: now_rfc3339(),
            size: (blocks.len() as u64 * DEFAULT_BLOCK_SIZE) as i64,
            labels: req.labels.clone(),
            parameters: None,
            is_incremental: last.is_some(),
            compression_method: compression.as_str().to_string(),
            newly_uploaded_data_size: uploaded.bytes_uploaded as i64,
            re_uploaded_data_size: 0,
            processing_blocks: last.is_none(),
            blocks,
            single_file: String::new(),
        };
        self.target
            .put(&cfg_path, config.to_json().into_bytes())
            .await?;

        let mut volume = self.load_volume(&req.volume_name).await?;
        volume.last_backup_name = req.backup_name.clone();
        volume.last_backup_at = req.snapshot_created_at.clone();
        volume.block_count += uploaded.blocks_uploaded as i64;
        volume.size = req.volume_size as i64;
        volume.labels = req.labels.clone();
        volume.storage_class_name = req.storage_class_name.clone();
        self.target
            .put(&vol_path, volume.to_json().into_bytes())
            .await?;

        info!(
            blocks_in = uploaded.blocks_in,
            uploaded = uploaded.blocks_uploaded,
            already_stored = uploaded.blocks_already_stored,
            bytes = uploaded.bytes_uploaded,
            incremental = last.is_some(),
            "backup complete"
        );
        Ok(BackupOutcome {
            url: encode_backup_url(&req.backup_name, &req.volume_name, &self.url),
            config,
            blocks_in: uploaded.blocks_in,
            blocks_uploaded: uploaded.blocks_uploaded,
            blocks_already_stored: uploaded.blocks_already_stored,
            blocks_duplicate: uploaded.blocks_duplicate,
            bytes_uploaded: uploaded.bytes_uploaded,
        })
    }

    async fn upload_blocks<I>(
        &self,
        volume: &str,
        volume_size: u64,
        compression: Compression,
        blocks: I,
    ) -> Result<Uploaded>
    where
        I: IntoIterator<Item = std::io::Result<(u64, Vec<u8>)>>,
    {
        let seen: Mutex<HashMap<String, ()>> = Mutex::new(HashMap::new());
        let mappings: Mutex<Vec<(u64, String)>> = Mutex::new(Vec::new());
        let stats = Mutex::new(Uploaded::default());
        let bs = DEFAULT_BLOCK_SIZE;
        futures::stream::iter(blocks)
            .map(|item| {
                let (seen, mappings, stats) = (&seen, &mappings, &stats);
                async move {
                    let (offset, data) = item.map_err(Error::Source)?;
                    if !offset.is_multiple_of(bs) || data.len() as u64 != bs || offset + bs > volume_size {
                        return Err(Error::InvalidBlock {
                            offset,
                            reason: format!(
                                "blocks must be {bs} bytes at a multiple of {bs} inside the {volume_size}-byte volume (got {} bytes)",
                                data.len()
                            ),
                        });
                    }
                    let sum = checksum(&data);
                    lock_ok(mappings).push((offset, sum.clone()));
                    lock_ok(stats).blocks_in += 1;
                    if lock_ok(seen).insert(sum.clone(), ()).is_some() {
                        lock_ok(stats).blocks_duplicate += 1;
                        return Ok(());
                    }
                    let path = block_path(volume, &sum);
                    if self.target.exists(&path).await? {
                        lock_ok(stats).blocks_already_stored += 1;
                        return Ok(());
                    }
                    let packed = compression.compress(&data).map_err(|e| Error::InvalidBlock {
                        offset,
                        reason: format!("compressing failed: {e}"),
                    })?;
                    let n = packed.len() as u64;
                    self.target.put(&path, packed).await?;
                    let mut s = lock_ok(stats);
                    s.blocks_uploaded += 1;
                    s.bytes_uploaded += n;
                    Ok(())
                }
            })
            .buffer_unordered(self.concurrency)
            .try_collect::<Vec<()>>()
            .await?;
        let mut out = stats.into_inner().unwrap_or_else(|p| p.into_inner());
        out.mappings = mappings.into_inner().unwrap_or_else(|p| p.into_inner());
        Ok(out)
    }

    /// Restores a backup into `sink`: each mapped block is written at its
    /// offset, unmapped ranges are not touched (so a sparse file stays sparse;
    /// size it to [`RestoreOutcome::volume_size`] first, see
    /// [`BackupStore::restore_to_file`]). Every block is verified against its
    /// checksum before it is written.
    #[instrument(skip(self, sink))]
    pub async fn restore<W: Write + Seek>(
        &self,
        volume: &str,
        backup: &str,
        sink: &mut W,
    ) -> Result<RestoreOutcome> {
        let lock = lock::acquire(&self.target, volume, BACKUP_LOCK, self.lock_options).await?;
        let result = self.restore_locked(volume, backup, sink).await;
        if let Err(e) = lock.release().await {
            warn!(error = %e, "releasing the restore lock failed; it expires by itself");
        }
        result
    }

    async fn restore_locked<W: Write + Seek>(
        &self,
        volume: &str,
        backup: &str,
        sink: &mut W,
    ) -> Result<RestoreOutcome> {
        let vol = self.load_volume(volume).await?;
        let cfg = self.load_backup(volume, backup).await?;
        if cfg.in_progress() {
            return Err(Error::InProgress {
                volume: volume.to_string(),
                backup: backup.to_string(),
            });
        }
        let bs = match cfg.block_size() {
            Some(DEFAULT_BLOCK_SIZE) => DEFAULT_BLOCK_SIZE,
            other => {
                return Err(Error::BlockSize {
                    backup: backup.to_string(),
                    value: other.map(|v| v.to_string()).unwrap_or_default(),
                })
            }
        };
        let compression = Compression::parse(&cfg.compression_method)?;
        let mut blocks = cfg.blocks.clone();
        blocks.sort();
        let mut out = RestoreOutcome {
            volume_size: vol.size.max(0) as u64,
            blocks_written: 0,
            bytes_written: 0,
        };
        let mut fetched = futures::stream::iter(blocks)
            .map(|b| async move {
                let data = self.fetch_block(volume, &b, compression, bs).await?;
                Ok::<_, Error>((b.offset as u64, data))
            })
            .buffered(self.concurrency);
        while let Some(r) = fetched.next().await {
            let (offset, data) = r?;
            sink.seek(SeekFrom::Start(offset))
                .and_then(|_| sink.write_all(&data))
                .map_err(|source| Error::Sink { offset, source })?;
            out.blocks_written += 1;
            out.bytes_written += data.len() as u64;
        }
        sink.flush()
            .map_err(|source| Error::Sink { offset: 0, source })?;
        Ok(out)
    }

    async fn fetch_block(
        &self,
        volume: &str,
        b: &BlockMapping,
        compression: Compression,
        bs: u64,
    ) -> Result<Vec<u8>> {
        let offset = b.offset as u64;
        let path = block_path(volume, &b.block_checksum);
        let corrupt = |reason: String| Error::CorruptBlock {
            path: path.clone(),
            offset,
            reason,
        };
        let packed = self
            .target
            .get(&path)
            .await?
            .ok_or_else(|| corrupt("the block file is missing".to_string()))?;
        let data = compression.decompress_with_fallback(&packed).map_err(|e| {
            corrupt(format!(
                "{} decompression failed: {e}",
                compression.as_str()
            ))
        })?;
        let actual = checksum(&data);
        if actual != b.block_checksum {
            return Err(corrupt(format!("its content has checksum {actual}")));
        }
        if data.len() as u64 != bs {
            return Err(corrupt(format!("it holds {} bytes, not {bs}", data.len())));
        }
        Ok(data)
    }

    /// Brings a sink that holds backup `last_backup` to backup `backup` of the
    /// same volume (Longhorn's `RestoreDeltaBlockBackupIncrementally`, the
    /// step of a DR volume): blocks whose checksum changed are written,
    /// blocks `backup` no longer maps are overwritten with zeros, equal
    /// blocks are not touched. `blocks_written` counts both kinds.
    #[instrument(skip(self, sink))]
    pub async fn restore_incremental<W: Write + Seek>(
        &self,
        volume: &str,
        last_backup: &str,
        backup: &str,
        sink: &mut W,
    ) -> Result<RestoreOutcome> {
        let lock = lock::acquire(&self.target, volume, BACKUP_LOCK, self.lock_options).await?;
        let result = self
            .restore_incremental_locked(volume, last_backup, backup, sink)
            .await;
        if let Err(e) = lock.release().await {
            warn!(error = %e, "releasing the restore lock failed; it expires by itself");
        }
        result
    }

    async fn restore_incremental_locked<W: Write + Seek>(
        &self,
        volume: &str,
        last_backup: &str,
        backup: &str,
        sink: &mut W,
    ) -> Result<RestoreOutcome> {
        let vol = self.load_volume(volume).await?;
        let last = self.load_backup(volume, last_backup).await?;
        let cfg = self.load_backup(volume, backup).await?;
        for b in [&last, &cfg] {
            if b.in_progress() {
                return Err(Error::InProgress {
                    volume: volume.to_string(),
                    backup: b.name.clone(),
                });
            }
            if b.block_size() != Some(DEFAULT_BLOCK_SIZE) {
                return Err(Error::BlockSize {
                    backup: b.name.clone(),
                    value: format!("{:?}", b.block_size()),
                });
            }
        }
        let compression = Compression::parse(&cfg.compression_method)?;
        let old: BTreeMap<u64, &str> = last
            .blocks
            .iter()
            .map(|m| (m.offset as u64, m.block_checksum.as_str()))
            .collect();
        let new: BTreeMap<u64, &BlockMapping> =
            cfg.blocks.iter().map(|m| (m.offset as u64, m)).collect();
        let changed: Vec<BlockMapping> = new
            .iter()
            .filter(|(off, m)| old.get(off) != Some(&m.block_checksum.as_str()))
            .map(|(_, m)| (*m).clone())
            .collect();
        let removed: Vec<u64> = old
            .keys()
            .filter(|o| !new.contains_key(o))
            .copied()
            .collect();
        let mut out = RestoreOutcome {
            volume_size: vol.size.max(0) as u64,
            blocks_written: 0,
            bytes_written: 0,
        };
        let zeros = vec![0u8; DEFAULT_BLOCK_SIZE as usize];
        for offset in removed {
            sink.seek(SeekFrom::Start(offset))
                .and_then(|_| sink.write_all(&zeros))
                .map_err(|source| Error::Sink { offset, source })?;
            out.blocks_written += 1;
            out.bytes_written += DEFAULT_BLOCK_SIZE;
        }
        let mut fetched = futures::stream::iter(changed)
            .map(|b| async move {
                let data = self
                    .fetch_block(volume, &b, compression, DEFAULT_BLOCK_SIZE)
                    .await?;
                Ok::<_, Error>((b.offset as u64, data))
            })
            .buffered(self.concurrency);
        while let Some(r) = fetched.next().await {
            let (offset, data) = r?;
            sink.seek(SeekFrom::Start(offset))
                .and_then(|_| sink.write_all(&data))
                .map_err(|source| Error::Sink { offset, source })?;
            out.blocks_written += 1;
            out.bytes_written += data.len() as u64;
        }
        sink.flush()
            .map_err(|source| Error::Sink { offset: 0, source })?;
        Ok(out)
    }

    /// Restores into a new sparse file at `path`, sized to the volume.
    pub async fn restore_to_file(
        &self,
        volume: &str,
        backup: &str,
        path: &std::path::Path,
    ) -> Result<RestoreOutcome> {
        let vol = self.load_volume(volume).await?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(path)
            .map_err(|source| Error::Sink { offset: 0, source })?;
        f.set_len(vol.size.max(0) as u64)
            .map_err(|source| Error::Sink { offset: 0, source })?;
        self.restore(volume, backup, &mut f).await
    }

    /// Deletes a backup and then, as Longhorn does, every block no remaining
    /// backup references. Garbage collection is skipped (and said so) while
    /// another backup is in progress or unreadable, or new backups appeared.
    #[instrument(skip(self))]
    pub async fn delete_backup(&self, volume: &str, backup: &str) -> Result<DeleteOutcome> {
        check_name(volume)?;
        check_name(backup)?;
        let lock = lock::acquire(&self.target, volume, DELETION_LOCK, self.lock_options).await?;
        let result = self.delete_locked(volume, backup).await;
        if let Err(e) = lock.release().await {
            warn!(error = %e, "releasing the deletion lock failed; it expires by itself");
        }
        result
    }

    async fn delete_locked(&self, volume: &str, backup: &str) -> Result<DeleteOutcome> {
        self.target.delete(&backup_cfg_path(volume, backup)).await?;
        let mut vol = self.load_volume(volume).await?;
        let update_last = vol.last_backup_name == backup;
        if update_last {
            vol.last_backup_name.clear();
            vol.last_backup_at.clear();
        }
        let names = self.list_backups(volume).await?;
        let mut referenced: BTreeSet<String> = BTreeSet::new();
        let mut skip: Option<String> = None;
        let mut latest: Option<(String, String)> = None; // (snapshot time, name)
        for name in &names {
            let b = match self.load_backup(volume, name).await {
                Ok(b) => b,
                Err(e) => {
                    skip = Some(format!("backup {name} cannot be read: {e}"));
                    break;
                }
            };
            if b.in_progress() {
                skip = Some(format!("backup {name} is in progress"));
                break;
            }
            referenced.extend(b.blocks.iter().map(|m| m.block_checksum.clone()));
            let key = (b.snapshot_created_at.clone(), b.name.clone());
            if latest.as_ref().is_none_or(|l| key.0 > l.0) {
                latest = Some(key);
            }
        }
        if update_last {
            if skip.is_none() {
                if let Some((at, name)) = latest {
                    vol.last_backup_name = name;
                    vol.last_backup_at = at;
                }
            }
            self.target
                .put(&volume_cfg_path(volume), vol.to_json().into_bytes())
                .await?;
        }
        if skip.is_none() && self.list_backups(volume).await? != names {
            skip = Some("new backups appeared during garbage collection".to_string());
        }
        let mut out = DeleteOutcome {
            blocks_removed: 0,
            blocks_retained: 0,
            gc_skipped: skip.clone(),
        };
        if let Some(reason) = skip {
            info!(%reason, "backup deleted; block garbage collection skipped");
            return Ok(out);
        }
        for sum in self.list_blocks(volume).await? {
            if referenced.contains(&sum) {
                out.blocks_retained += 1;
            } else {
                self.target.delete(&block_path(volume, &sum)).await?;
                out.blocks_removed += 1;
            }
        }
        let mut vol = self.load_volume(volume).await?;
        vol.block_count = out.blocks_retained as i64;
        self.target
            .put(&volume_cfg_path(volume), vol.to_json().into_bytes())
            .await?;
        info!(
            removed = out.blocks_removed,
            retained = out.blocks_retained,
            "backup deleted and blocks garbage-collected"
        );
        Ok(out)
    }
}

#[derive(Default)]
struct Uploaded {
    mappings: Vec<(u64, String)>,
    blocks_in: u64,
    blocks_uploaded: u64,
    blocks_already_stored: u64,
    blocks_duplicate: u64,
    bytes_uploaded: u64,
}

fn lock_ok<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn check_name(name: &str) -> Result<()> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(Error::InvalidName(name.to_string()))
    }
}
