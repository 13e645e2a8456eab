//! The crate's error type.

/// Everything a backupstore operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The backup target URL cannot be used.
    #[error("invalid backup target {url:?}: {reason}")]
    InvalidTarget {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A volume or backup name breaks Longhorn's naming rule.
    #[error("invalid name {0:?}: names must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")]
    InvalidName(String),
    /// The object store failed.
    #[error("backupstore {op} {path} failed: {source}")]
    Store {
        /// The operation (get, put, head, delete, list).
        op: &'static str,
        /// The object key.
        path: String,
        /// The object store's error.
        #[source]
        source: object_store::Error,
    },
    /// A config file the operation needs does not exist.
    #[error("{0} not found in the backupstore")]
    NotFound(String),
    /// A config file is not valid JSON of the expected shape.
    #[error("cannot parse {path}: {source}")]
    Parse {
        /// The object key.
        path: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A block's content does not match its name, or cannot be decompressed.
    #[error("block {path} for offset {offset} is corrupt: {reason}; the backup cannot be restored from this block")]
    CorruptBlock {
        /// The block's object key.
        path: String,
        /// Its offset in the volume.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A compression method other than none, gzip and lz4.
    #[error("unsupported compression method {0:?}: use none, gzip or lz4")]
    Compression(String),
    /// A block handed to the writer is not aligned or not a whole block.
    #[error("invalid block at offset {offset}: {reason}")]
    InvalidBlock {
        /// Offset of the block.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// Reading the snapshot data to back up failed.
    #[error("reading the data to back up failed: {0}")]
    Source(#[source] std::io::Error),
    /// Writing the restore target failed.
    #[error("writing the restore target at offset {offset} failed: {source}")]
    Sink {
        /// Offset being written.
        offset: u64,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A conflicting operation holds the volume's lock.
    #[error("lock {path} not acquired: a {other} operation holds the backup volume {volume}; retry later")]
    Locked {
        /// Our lock file.
        path: String,
        /// Backup volume name.
        volume: String,
        /// The kind of operation holding it.
        other: &'static str,
    },
    /// The backup to restore or build on is still in progress.
    #[error("backup {backup} of volume {volume} is still in progress (no CreatedTime); wait for it or delete it")]
    InProgress {
        /// Volume name.
        volume: String,
        /// Backup name.
        backup: String,
    },
    /// An incremental backup names a base other than the volume's last backup.
    #[error("incremental backup of volume {volume} is based on snapshot {given:?} but the last backup {last_backup:?} is of snapshot {last_snapshot:?}; send a full backup")]
    BaseMismatch {
        /// Volume name.
        volume: String,
        /// The base snapshot the caller named.
        given: String,
        /// The volume's last backup.
        last_backup: String,
        /// That backup's snapshot.
        last_snapshot: String,
    },
    /// The backup uses a block size this crate cannot handle.
    #[error("backup {backup} has unsupported block size {value:?}")]
    BlockSize {
        /// Backup name.
        backup: String,
        /// The `backup-block-size` parameter.
        value: String,
    },
}

/// Result with this crate's error.
pub type Result<T> = std::result::Result<T, Error>;
