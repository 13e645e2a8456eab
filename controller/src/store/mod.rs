//! Durable controller state: what is wanted (volumes, replicas, publications,
//! snapshots) and the journal of in-flight operations.
//!
//! [`KvStore`] is the small key/value seam with revisions for optimistic
//! concurrency; [`EtcdStore`] and [`EmbeddedStore`] implement it. [`Store`]
//! layers typed records and the key layout on top. Beside the records of
//! `records`, the cluster identity ([`ClusterRecord`]) and the tombstones of
//! deleted volumes ([`TombstoneRecord`]) each live in their own module.
//!
//! One controller at a time: the embedded store is locked to one process
//! (redb's `flock`); on etcd, a controller running a leader elector makes
//! every write conditional on its leader key ([`LeaderFence`]), so a deposed
//! controller's writes fail with [`StoreError::NotLeader`].

mod by_volume;
mod cluster;
mod embedded;
mod error;
mod etcd;
mod keys;
mod lock_holder;
mod records;
mod tombstones;
mod typed;

use std::collections::HashSet;

use async_trait::async_trait;

pub use cluster::ClusterRecord;
pub use embedded::EmbeddedStore;
pub use error::{Result, StoreError};
pub use etcd::{Claim, EtcdConfig, EtcdStore, LeaderFence, LeaderRecord, Lease};
pub use records::{
    ContentSource, OperationKind, OperationRecord, PublicationRecord, ReplicaHealth, ReplicaRecord,
    ReplicaSnapshot, SnapshotRecord, TopologySegments, UncleanMark, VolumeRecord, SCHEMA_VERSION,
};
pub use tombstones::TombstoneRecord;
pub use typed::{Page, Store, Versioned};

/// Revision at which a key was last modified. Revisions only grow; every
/// write (and every transaction as a whole) gets a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision(pub u64);

/// Precondition a write requires to hold before it applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// No precondition.
    Any,
    /// The key must not exist.
    Absent,
    /// The key must exist and have been last modified at this revision.
    Revision(Revision),
}

/// One step of an atomic [`KvStore::txn`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOp {
    /// Write `value` at `key` if `expect` holds.
    Put {
        /// Key to write.
        key: String,
        /// Bytes to store.
        value: Vec<u8>,
        /// Precondition on the current value.
        expect: Expect,
    },
    /// Remove `key` (a no-op if absent) if `expect` holds.
    Delete {
        /// Key to remove.
        key: String,
        /// Precondition on the current value.
        expect: Expect,
    },
}

impl TxnOp {
    /// Key the operation touches.
    pub fn key(&self) -> &str {
        match self {
            TxnOp::Put { key, .. } | TxnOp::Delete { key, .. } => key,
        }
    }

    /// Precondition of the operation.
    pub fn expect(&self) -> Expect {
        match self {
            TxnOp::Put { expect, .. } | TxnOp::Delete { expect, .. } => *expect,
        }
    }
}

/// A key, its value and the revision it was last modified at.
pub type Entry = (String, Vec<u8>, Revision);

/// Key/value store with revisions and compare-and-swap.
///
/// Keys are UTF-8 strings relative to the backend's namespace; listing is by
/// prefix and sorted by key (byte order).
#[async_trait]
pub trait KvStore: Send + Sync + std::fmt::Debug {
    /// Value and revision at `key`, if present.
    async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, Revision)>>;

    /// Entries whose key starts with `prefix` and sorts after `start_after`
    /// (if given), in key order, at most `limit` of them (if given).
    async fn list_from(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<Entry>>;

    /// All entries whose key starts with `prefix`, in key order.
    async fn list(&self, prefix: &str) -> Result<Vec<Entry>> {
        self.list_from(prefix, None, None).await
    }

    /// Writes `value` at `key` if `expect` holds; returns the new revision.
    async fn put(&self, key: &str, value: Vec<u8>, expect: Expect) -> Result<Revision> {
        let op = TxnOp::Put {
            key: key.to_string(),
            value,
            expect,
        };
        self.txn(vec![op]).await
    }

    /// Removes `key` if `expect` holds; returns whether it existed.
    async fn delete(&self, key: &str, expect: Expect) -> Result<bool>;

    /// Applies all `ops` atomically: either every expectation holds and every
    /// op applies, or nothing is written and [`StoreError::Conflict`] names a
    /// failing key. Returns the revision of the transaction.
    async fn txn(&self, ops: Vec<TxnOp>) -> Result<Revision>;

    /// Succeeds when the backend can serve reads and writes.
    async fn health(&self) -> Result<()>;
}

/// Rejects empty keys and transactions touching one key twice.
pub(crate) fn validate_txn(ops: &[TxnOp]) -> Result<()> {
    let mut seen = HashSet::with_capacity(ops.len());
    for op in ops {
        validate_key(op.key())?;
        if !seen.insert(op.key()) {
            return Err(StoreError::Invalid(format!(
                "key {} appears twice in one transaction",
                op.key()
            )));
        }
    }
    Ok(())
}

/// Rejects keys the backends cannot store.
pub(crate) fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(StoreError::Invalid("empty key".into()));
    }
    Ok(())
}

/// Whether the current revision (`None` = absent) satisfies `expect`.
pub(crate) fn expectation_holds(expect: Expect, current: Option<Revision>) -> bool {
    match expect {
        Expect::Any => true,
        Expect::Absent => current.is_none(),
        Expect::Revision(want) => current == Some(want),
    }
}
