//! Tombstones: the record that a volume was deleted (or its creation rolled
//! back), kept after its other records are gone so the orphan sweep may
//! delete that volume's lvols at once wherever they are left (a node that
//! was down during DeleteVolume), instead of waiting out the grace period it
//! gives every lvol nothing explains.
//!
//! [`Store::delete_volume`] writes the tombstone in the same transaction as
//! it removes the volume; [`Store::create_volume`] removes any tombstone of
//! the same id. The sweep removes a tombstone once no node holds anything of
//! the volume, or after a TTL, so they do not accumulate.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::keys;
use super::records::{SchemaVersioned, SCHEMA_VERSION};
use super::typed::{put_op, Store};
use super::{Expect, Result, TxnOp, Versioned};

fn current_version() -> u32 {
    SCHEMA_VERSION
}

/// A deleted volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TombstoneRecord {
    /// Schema version of this record.
    #[serde(default = "current_version")]
    pub version: u32,
    /// The deleted volume's id.
    pub volume_id: String,
    /// When it was deleted.
    pub deleted_at: SystemTime,
}

impl TombstoneRecord {
    /// The tombstone of `volume_id`, deleted now.
    pub fn now(volume_id: &str) -> Self {
        Self {
            version: SCHEMA_VERSION,
            volume_id: volume_id.to_string(),
            deleted_at: SystemTime::now(),
        }
    }
}

impl SchemaVersioned for TombstoneRecord {
    fn schema_version(&self) -> u32 {
        self.version
    }
}

/// The transaction step writing the tombstone of `volume_id` (deleted now).
pub(super) fn put_tombstone_op(volume_id: &str) -> Result<TxnOp> {
    put_op(
        keys::tombstone(volume_id),
        &TombstoneRecord::now(volume_id),
        Expect::Any,
    )
}

/// The transaction step removing any tombstone of `volume_id`.
pub(super) fn delete_tombstone_op(volume_id: &str) -> TxnOp {
    TxnOp::Delete {
        key: keys::tombstone(volume_id),
        expect: Expect::Any,
    }
}

impl Store {
    /// Records that `volume_id` is deleted (for paths that remove a
    /// volume's lvols without [`Store::delete_volume`], such as a rolled-back
    /// CreateVolume). Keeps the first deletion time if one is recorded.
    pub async fn put_tombstone(&self, volume_id: &str) -> Result<()> {
        if self.get_tombstone(volume_id).await?.is_some() {
            return Ok(());
        }
        self.kv().txn(vec![put_tombstone_op(volume_id)?]).await?;
        Ok(())
    }

    /// The tombstone of `volume_id`, if it was deleted.
    pub async fn get_tombstone(
        &self,
        volume_id: &str,
    ) -> Result<Option<Versioned<TombstoneRecord>>> {
        self.get_record(&keys::tombstone(volume_id)).await
    }

    /// Every tombstone, in volume id order.
    pub async fn list_tombstones(&self) -> Result<Vec<Versioned<TombstoneRecord>>> {
        self.list_records(keys::TOMBSTONES).await
    }

    /// Removes a tombstone read at `expect`; `false` if it was absent.
    pub async fn delete_tombstone(&self, volume_id: &str, expect: Expect) -> Result<bool> {
        self.kv().delete(&keys::tombstone(volume_id), expect).await
    }
}
