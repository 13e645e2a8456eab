//! Longhorn's backupstore layout: paths, checksums, names and the JSON of
//! `volume.cfg`, `backup_<name>.cfg` and lock files, as longhorn/backupstore
//! (`config.go`, `deltablock.go`, `backupstore.go`, `lock.go`, `types.go`,
//! `util/util.go`) defines them.

use std::collections::BTreeMap;

use serde::Deserialize;
use sha2::{Digest, Sha512};

use crate::gojson::{de_int, de_quoted_string, de_string, GoObject};

/// Default (and Longhorn's usual) backup block size: 2 MiB.
pub const DEFAULT_BLOCK_SIZE: u64 = 2 * 1024 * 1024;
/// Compression assumed when a config names none (Longhorn's `LEGACY_COMPRESSION_METHOD`).
pub const LEGACY_COMPRESSION_METHOD: &str = "gzip";
/// The top directory of every backupstore (`backupstoreBase`).
pub const BACKUPSTORE_BASE: &str = "backupstore";
/// `Parameters` key holding the block size as a Kubernetes quantity (`16Mi`).
pub const PARAM_BLOCK_SIZE: &str = "backup-block-size";
/// `Parameters` key holding the backup mode (`full` or `incremental`).
pub const PARAM_BACKUP_MODE: &str = "backup-mode";

/// Longhorn's block and volume-path checksum: SHA-512, hex, first 64 characters.
pub fn checksum(data: &[u8]) -> String {
    let digest = Sha512::digest(data);
    hex::encode(&digest[..32])
}

/// Longhorn's name rule `^[a-zA-Z0-9][a-zA-Z0-9_.-]+$` (at least two characters).
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// `backupstore/volumes/<c[0:2]>/<c[2:4]>/<volume>` with `c` the checksum of the name.
pub fn volume_dir(volume: &str) -> String {
    let c = checksum(volume.as_bytes());
    format!(
        "{BACKUPSTORE_BASE}/volumes/{}/{}/{volume}",
        &c[0..2],
        &c[2..4]
    )
}

/// `<volume dir>/volume.cfg`.
pub fn volume_cfg_path(volume: &str) -> String {
    format!("{}/volume.cfg", volume_dir(volume))
}

/// `<volume dir>/backups`.
pub fn backups_dir(volume: &str) -> String {
    format!("{}/backups", volume_dir(volume))
}

/// `<volume dir>/backups/backup_<backup>.cfg`.
pub fn backup_cfg_path(volume: &str, backup: &str) -> String {
    format!("{}/backup_{backup}.cfg", backups_dir(volume))
}

/// `<volume dir>/blocks`.
pub fn blocks_dir(volume: &str) -> String {
    format!("{}/blocks", volume_dir(volume))
}

/// `<volume dir>/blocks/<c[0:2]>/<c[2:4]>/<c>.blk`.
pub fn block_path(volume: &str, checksum: &str) -> String {
    let (l1, l2) = (
        checksum.get(0..2).unwrap_or(""),
        checksum.get(2..4).unwrap_or(""),
    );
    format!("{}/{l1}/{l2}/{checksum}.blk", blocks_dir(volume))
}

/// `<volume dir>/locks`.
pub fn locks_dir(volume: &str) -> String {
    format!("{}/locks", volume_dir(volume))
}

/// `<volume dir>/locks/<lock name>.lck`.
pub fn lock_path(volume: &str, lock: &str) -> String {
    format!("{}/{lock}.lck", locks_dir(volume))
}

/// Parses a Kubernetes quantity as Longhorn's `backup-block-size` uses it
/// (`2Mi`, `16Mi`, or plain bytes).
pub fn parse_block_size(value: &str) -> Option<u64> {
    let v = value.trim();
    let (num, mult) = [("Ki", 1u64 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30)]
        .iter()
        .find_map(|(suf, m)| v.strip_suffix(suf).map(|n| (n, *m)))
        .unwrap_or((v, 1));
    num.parse::<u64>().ok().map(|n| n * mult)
}

/// `volume.cfg`: Longhorn's `Volume` struct.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct VolumeConfig {
    /// Volume name.
    #[serde(deserialize_with = "de_string")]
    pub name: String,
    /// Volume size in bytes (written as a string).
    #[serde(deserialize_with = "de_int")]
    pub size: i64,
    /// Labels, `null` when none.
    pub labels: Option<BTreeMap<String, String>>,
    /// RFC 3339 time the backup volume was created.
    #[serde(deserialize_with = "de_string")]
    pub created_time: String,
    /// Name of the most recent backup.
    #[serde(deserialize_with = "de_string")]
    pub last_backup_name: String,
    /// Snapshot creation time of the most recent backup.
    #[serde(deserialize_with = "de_string")]
    pub last_backup_at: String,
    /// Distinct blocks stored for the volume (written as a string).
    #[serde(deserialize_with = "de_int")]
    pub block_count: i64,
    /// Backing image name (double-quoted in the file).
    #[serde(deserialize_with = "de_quoted_string")]
    pub backing_image_name: String,
    /// Backing image checksum (double-quoted in the file).
    #[serde(deserialize_with = "de_quoted_string")]
    pub backing_image_checksum: String,
    /// `none`, `gzip` or `lz4` (double-quoted in the file).
    #[serde(deserialize_with = "de_quoted_string")]
    pub compression_method: String,
    /// StorageClass of the volume (double-quoted in the file).
    #[serde(deserialize_with = "de_quoted_string")]
    pub storage_class_name: String,
    /// `v1` or `v2` (double-quoted in the file).
    #[serde(deserialize_with = "de_quoted_string")]
    pub data_engine: String,
}

impl VolumeConfig {
    /// The JSON Longhorn's `json.Marshal(Volume)` writes, byte for byte.
    pub fn to_json(&self) -> String {
        GoObject::new()
            .string("Name", &self.name)
            .int_quoted("Size", self.size)
            .map("Labels", self.labels.as_ref())
            .string("CreatedTime", &self.created_time)
            .string("LastBackupName", &self.last_backup_name)
            .string("LastBackupAt", &self.last_backup_at)
            .int_quoted("BlockCount", self.block_count)
            .string_quoted("BackingImageName", &self.backing_image_name)
            .string_quoted("BackingImageChecksum", &self.backing_image_checksum)
            .string_quoted("CompressionMethod", &self.compression_method)
            .string_quoted("StorageClassName", &self.storage_class_name)
            .string_quoted("DataEngine", &self.data_engine)
            .finish()
    }

    /// Parses `volume.cfg`, applying Longhorn's defaults for old files
    /// (compression `gzip`, data engine `v1`).
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        let mut v: VolumeConfig = serde_json::from_slice(bytes)?;
        if v.compression_method.is_empty() {
            v.compression_method = LEGACY_COMPRESSION_METHOD.to_string();
        }
        if v.data_engine.is_empty() {
            v.data_engine = "v1".to_string();
        }
        Ok(v)
    }
}

/// One entry of a backup's block map.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BlockMapping {
    /// Byte offset of the block in the volume.
    pub offset: i64,
    /// Checksum naming the block file.
    pub block_checksum: String,
}

/// `backup_<name>.cfg`: Longhorn's `Backup` struct.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct BackupConfig {
    /// Backup name.
    #[serde(deserialize_with = "de_string")]
    pub name: String,
    /// Volume the backup belongs to.
    #[serde(deserialize_with = "de_string")]
    pub volume_name: String,
    /// Snapshot the backup was taken from.
    #[serde(deserialize_with = "de_string")]
    pub snapshot_name: String,
    /// Snapshot creation time.
    #[serde(deserialize_with = "de_string")]
    pub snapshot_created_at: String,
    /// Completion time; empty while the backup is in progress.
    #[serde(deserialize_with = "de_string")]
    pub created_time: String,
    /// Blocks times block size (written as a string).
    #[serde(deserialize_with = "de_int")]
    pub size: i64,
    /// Labels, `null` when none.
    pub labels: Option<BTreeMap<String, String>>,
    /// Parameters (`backup-block-size`, `backup-mode`), `null` when none.
    pub parameters: Option<BTreeMap<String, String>>,
    /// Whether the backup was made from a delta on top of the previous one.
    pub is_incremental: bool,
    /// Compression of this backup's blocks.
    #[serde(deserialize_with = "de_string")]
    pub compression_method: String,
    /// Compressed bytes newly uploaded (written as a string).
    #[serde(deserialize_with = "de_int")]
    pub newly_uploaded_data_size: i64,
    /// Compressed bytes uploaded again (written as a string).
    #[serde(deserialize_with = "de_int")]
    pub re_uploaded_data_size: i64,
    /// Longhorn writes `{}` here for a full backup and `null` otherwise.
    #[serde(deserialize_with = "de_processing_blocks")]
    pub processing_blocks: bool,
    /// The block map, sorted by offset; omitted from the file when empty.
    pub blocks: Vec<BlockMapping>,
    /// `SingleFile.FilePath`, empty for block backups.
    #[serde(deserialize_with = "de_single_file")]
    pub single_file: String,
}

fn de_processing_blocks<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<serde_json::Value>::deserialize(d)?.is_some())
}

fn de_single_file<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "PascalCase", default)]
    struct SingleFile {
        file_path: Option<String>,
    }
    Ok(Option::<SingleFile>::deserialize(d)?
        .and_then(|s| s.file_path)
        .unwrap_or_default())
}

impl BackupConfig {
    /// The JSON Longhorn's `json.Marshal(Backup)` writes, byte for byte.
    pub fn to_json(&self) -> String {
        let mut o = GoObject::new();
        o.string("Name", &self.name)
            .string("VolumeName", &self.volume_name)
            .string("SnapshotName", &self.snapshot_name)
            .string("SnapshotCreatedAt", &self.snapshot_created_at)
            .string("CreatedTime", &self.created_time)
            .int_quoted("Size", self.size)
            .map("Labels", self.labels.as_ref())
            .map("Parameters", self.parameters.as_ref())
            .bool("IsIncremental", self.is_incremental)
            .string("CompressionMethod", &self.compression_method)
            .int_quoted("NewlyUploadedDataSize", self.newly_uploaded_data_size)
            .int_quoted("ReUploadedDataSize", self.re_uploaded_data_size)
            .raw(
                "ProcessingBlocks",
                if self.processing_blocks { "{}" } else { "null" },
            );
        if !self.blocks.is_empty() {
            let mut list = String::from("[");
            for (i, b) in self.blocks.iter().enumerate() {
                if i > 0 {
                    list.push(',');
                }
                list.push_str(
                    &GoObject::new()
                        .int("Offset", b.offset)
                        .string("BlockChecksum", &b.block_checksum)
                        .finish(),
                );
            }
            list.push(']');
            o.raw("Blocks", &list);
        }
        let single = GoObject::new()
            .string("FilePath", &self.single_file)
            .finish();
        o.raw("SingleFile", &single).finish()
    }

    /// Parses `backup_<name>.cfg`, defaulting the compression to `gzip` as Longhorn does.
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        let mut b: BackupConfig = serde_json::from_slice(bytes)?;
        if b.compression_method.is_empty() {
            b.compression_method = LEGACY_COMPRESSION_METHOD.to_string();
        }
        Ok(b)
    }

    /// Whether the backup is still being written (Longhorn: `CreatedTime == ""`).
    pub fn in_progress(&self) -> bool {
        self.created_time.is_empty()
    }

    /// The block size from `Parameters`, 2 MiB when absent.
    pub fn block_size(&self) -> Option<u64> {
        match self
            .parameters
            .as_ref()
            .and_then(|p| p.get(PARAM_BLOCK_SIZE))
        {
            None => Some(DEFAULT_BLOCK_SIZE),
            Some(v) if v.is_empty() => Some(DEFAULT_BLOCK_SIZE),
            Some(v) => match parse_block_size(v) {
                Some(0) => Some(DEFAULT_BLOCK_SIZE),
                other => other,
            },
        }
    }
}

/// A lock file: the exported fields of Longhorn's `FileLock`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LockFile {
    /// `lock-<16 hex>`.
    pub name: String,
    /// 1 for backup and restore, 2 for deletion.
    #[serde(rename = "Type")]
    pub lock_type: i64,
    /// Whether the holder has acquired it.
    pub acquired: bool,
}

impl LockFile {
    /// The JSON Longhorn writes for a lock.
    pub fn to_json(&self) -> String {
        GoObject::new()
            .string("Name", &self.name)
            .int("Type", self.lock_type)
            .bool("Acquired", self.acquired)
            .finish()
    }
}

/// Current time as Longhorn's `util.Now()` formats it (RFC 3339, UTC, seconds).
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    rfc3339_from_unix(secs)
}

/// Formats a Unix time as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339_from_unix(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Longhorn's `EncodeBackupURL`: the target URL with `backup` and `volume`
/// query parameters (sorted by key, as Go's `url.Values.Encode` does).
pub fn encode_backup_url(backup: &str, volume: &str, target: &str) -> String {
    let (base, query) = match target.split_once('?') {
        Some((b, q)) => (b, q),
        None => (target, ""),
    };
    let mut pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    pairs.push(("volume".into(), volume.into()));
    if !backup.is_empty() {
        pairs.push(("backup".into(), backup.into()));
    }
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    let q = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    format!("{base}?{q}")
}

/// Longhorn's `DecodeBackupURL`: `(backup, volume, target)`.
pub fn decode_backup_url(url: &str) -> Option<(String, String, String)> {
    let (base, query) = url.split_once('?')?;
    let mut backup = String::new();
    let mut volume = String::new();
    let mut rest = Vec::new();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "backup" => backup = v.into_owned(),
            "volume" => volume = v.into_owned(),
            _ => rest.push((k.into_owned(), v.into_owned())),
        }
    }
    if !valid_name(&volume) || (!backup.is_empty() && !valid_name(&backup)) {
        return None;
    }
    let target = if rest.is_empty() {
        base.to_string()
    } else {
        rest.sort_by(|a, b| a.0.cmp(&b.0));
        let q = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(rest)
            .finish();
        format!("{base}?{q}")
    };
    Some((backup, volume, target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_path_matches_longhorn_example() {
        // Longhorn's documented example: pvc-0123abcd-test lives under a7/9b.
        assert_eq!(
            volume_dir("pvc-0123abcd-test"),
            "backupstore/volumes/a7/9b/pvc-0123abcd-test"
        );
    }

    #[test]
    fn names_and_times() {
        assert!(valid_name("backup-854f6ced7b4942d4"));
        assert!(!valid_name("a"));
        assert!(!valid_name("-ab"));
        assert!(!valid_name("a/b"));
        assert_eq!(rfc3339_from_unix(1_791_247_238), "2026-10-06T00:40:38Z");
        assert_eq!(parse_block_size("16Mi"), Some(16 << 20));
    }

    #[test]
    fn backup_url_round_trip() {
        let u = encode_backup_url("b1", "vol1", "s3://bucket@us-east-1/path/");
        assert_eq!(u, "s3://bucket@us-east-1/path/?backup=b1&volume=vol1");
        assert_eq!(
            decode_backup_url(&u),
            Some((
                "b1".into(),
                "vol1".into(),
                "s3://bucket@us-east-1/path/".into()
            ))
        );
    }
}
