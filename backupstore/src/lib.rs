//! Longhorn's backupstore format, byte-compatible, over `object_store`.
//!
//! A backup target holds `backupstore/volumes/<xx>/<yy>/<volume>/` with
//! `volume.cfg`, `backups/backup_<name>.cfg` (the block map) and
//! content-addressed blocks `blocks/<xx>/<yy>/<checksum>.blk`: 2 MiB of volume
//! data, compressed (lz4 or gzip), named by the first 64 hex digits of its
//! SHA-512. A backup written by Longhorn restores here and one written here
//! restores in Longhorn. See docs/backup.md.

pub mod compress;
pub mod error;
pub mod extents;
pub mod format;
mod gojson;
pub mod lock;
pub mod store;
pub mod target;

pub use compress::Compression;
pub use error::{Error, Result};
pub use format::{BackupConfig, BlockMapping, VolumeConfig, DEFAULT_BLOCK_SIZE};
pub use lock::LockOptions;
pub use store::{BackupOutcome, BackupRequest, BackupStore, DeleteOutcome, RestoreOutcome};
pub use target::{open, S3Credentials};
