//! [`Store`]: typed records over any [`KvStore`].

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::records::{
    OperationRecord, PublicationRecord, ReplicaRecord, SchemaVersioned, SnapshotRecord,
    VolumeRecord, SCHEMA_VERSION,
};
use super::{keys, tombstones, Expect, KvStore, Result, Revision, StoreError, TxnOp};

/// A record together with the revision it was read at (for CAS updates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    /// The decoded record.
    pub record: T,
    /// Revision to pass as `Expect::Revision` when updating it.
    pub revision: Revision,
}

/// One page of a paginated listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// Records of this page, in id order.
    pub items: Vec<Versioned<T>>,
    /// Id to pass as `start_after` for the next page; `None` on the last page.
    pub next: Option<String>,
}

/// Typed view of the controller state. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    kv: Arc<dyn KvStore>,
}

pub(super) fn encode<T: Serialize>(key: &str, record: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(record).map_err(|err| StoreError::Invalid(format!("encoding {key}: {err}")))
}

pub(super) fn decode<T: DeserializeOwned + SchemaVersioned>(key: &str, raw: &[u8]) -> Result<T> {
    let record: T = serde_json::from_slice(raw).map_err(|err| StoreError::Corrupt {
        key: key.to_string(),
        reason: err.to_string(),
    })?;
    if record.schema_version() > SCHEMA_VERSION {
        return Err(StoreError::UnsupportedSchema {
            key: key.to_string(),
            found: record.schema_version(),
            supported: SCHEMA_VERSION,
        });
    }
    Ok(record)
}

pub(super) fn put_op<T: Serialize>(key: String, record: &T, expect: Expect) -> Result<TxnOp> {
    let value = encode(&key, record)?;
    Ok(TxnOp::Put { key, value, expect })
}

/// Deletions of every key listed, each expected at the revision it was read at.
fn deletes(entries: Vec<(String, Revision)>) -> Vec<TxnOp> {
    entries
        .into_iter()
        .map(|(key, revision)| TxnOp::Delete {
            key,
            expect: Expect::Revision(revision),
        })
        .collect()
}

fn text(key: &str, raw: Vec<u8>) -> Result<String> {
    String::from_utf8(raw).map_err(|err| StoreError::Corrupt {
        key: key.to_string(),
        reason: err.to_string(),
    })
}

impl Store {
    /// Wraps a key/value backend.
    pub fn new(kv: Arc<dyn KvStore>) -> Self {
        Store { kv }
    }

    /// The underlying key/value backend.
    pub fn kv(&self) -> &Arc<dyn KvStore> {
        &self.kv
    }

    /// Succeeds when the backend is reachable.
    pub async fn health(&self) -> Result<()> {
        self.kv.health().await
    }

    pub(super) async fn get_record<T: DeserializeOwned + SchemaVersioned>(
        &self,
        key: &str,
    ) -> Result<Option<Versioned<T>>> {
        match self.kv.get(key).await? {
            Some((raw, revision)) => Ok(Some(Versioned {
                record: decode(key, &raw)?,
                revision,
            })),
            None => Ok(None),
        }
    }

    /// The record whose id is stored at the name index `name_key`; `key_of`
    /// turns the id into the record's key.
    async fn get_by_name<T: DeserializeOwned + SchemaVersioned>(
        &self,
        name_key: &str,
        key_of: impl Fn(&str) -> String,
    ) -> Result<Option<Versioned<T>>> {
        match self.kv.get(name_key).await? {
            Some((raw, _)) => self.get_record(&key_of(&text(name_key, raw)?)).await,
            None => Ok(None),
        }
    }

    pub(super) async fn list_records<T: DeserializeOwned + SchemaVersioned>(
        &self,
        prefix: &str,
    ) -> Result<Vec<Versioned<T>>> {
        let entries = self.kv.list(prefix).await?;
        entries
            .into_iter()
            .map(|(key, raw, revision)| {
                Ok(Versioned {
                    record: decode(&key, &raw)?,
                    revision,
                })
            })
            .collect()
    }

    async fn page_records<T: DeserializeOwned + SchemaVersioned>(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        id_of: fn(&T) -> &str,
    ) -> Result<Page<T>> {
        let after = start_after.map(|id| format!("{prefix}{}", keys::segment(id)));
        let fetch = limit.checked_add(1).filter(|_| limit > 0);
        let entries = self.kv.list_from(prefix, after.as_deref(), fetch).await?;
        let mut items = entries
            .into_iter()
            .map(|(key, raw, revision)| {
                Ok(Versioned {
                    record: decode(&key, &raw)?,
                    revision,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let next = if limit > 0 && items.len() > limit {
            items.truncate(limit);
            items.last().map(|last| id_of(&last.record).to_string())
        } else {
            None
        };
        Ok(Page { items, next })
    }

    /// Deletes every key listed with the revision it was read at.
    async fn delete_all(&self, entries: Vec<(String, Revision)>) -> Result<Revision> {
        self.kv.txn(deletes(entries)).await
    }

    // ----- volumes -----

    /// Creates a volume, its name index entry and its replicas in one
    /// transaction. [`StoreError::Conflict`] if the id or name is taken.
    pub async fn create_volume(
        &self,
        volume: &VolumeRecord,
        replicas: &[ReplicaRecord],
    ) -> Result<Revision> {
        let mut ops = vec![
            put_op(keys::volume(&volume.id), volume, Expect::Absent)?,
            TxnOp::Put {
                key: keys::volume_name(&volume.name),
                value: volume.id.clone().into_bytes(),
                expect: Expect::Absent,
            },
            tombstones::delete_tombstone_op(&volume.id),
        ];
        for replica in replicas {
            if replica.volume_id != volume.id {
                return Err(StoreError::Invalid(format!(
                    "replica on {} belongs to volume {}, not {}",
                    replica.node, replica.volume_id, volume.id
                )));
            }
            ops.push(put_op(
                keys::replica(&volume.id, &replica.node),
                replica,
                Expect::Absent,
            )?);
        }
        self.kv.txn(ops).await
    }

    /// The volume with this id.
    pub async fn get_volume(&self, id: &str) -> Result<Option<Versioned<VolumeRecord>>> {
        self.get_record(&keys::volume(id)).await
    }

    /// The volume with this CSI name.
    pub async fn get_volume_by_name(&self, name: &str) -> Result<Option<Versioned<VolumeRecord>>> {
        self.get_by_name(&keys::volume_name(name), keys::volume)
            .await
    }

    /// Volumes in id order, after `start_after` (an id), at most `limit`
    /// (`0` = no limit).
    pub async fn list_volumes(
        &self,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Page<VolumeRecord>> {
        self.page_records(keys::VOLUMES, start_after, limit, |v: &VolumeRecord| &v.id)
            .await
    }

    /// Replaces a volume if it is still at `expect`. The name must not change.
    pub async fn update_volume(&self, volume: &VolumeRecord, expect: Revision) -> Result<Revision> {
        let key = keys::volume(&volume.id);
        if let Some(current) = self.get_record::<VolumeRecord>(&key).await? {
            if current.record.name != volume.name {
                return Err(StoreError::Invalid(format!(
                    "volume {} cannot be renamed from {} to {}",
                    volume.id, current.record.name, volume.name
                )));
            }
        }
        self.kv
            .put(&key, encode(&key, volume)?, Expect::Revision(expect))
            .await
    }

    /// Writes a volume and some of its replicas in one transaction, each
    /// expected at the revision it was read at: a change of membership (which
    /// replicas hold every acknowledged write) lands whole or not at all.
    pub async fn update_membership(
        &self,
        volume: &Versioned<VolumeRecord>,
        replicas: &[Versioned<ReplicaRecord>],
    ) -> Result<Revision> {
        let mut ops = vec![put_op(
            keys::volume(&volume.record.id),
            &volume.record,
            Expect::Revision(volume.revision),
        )?];
        for replica in replicas {
            ops.push(put_op(
                keys::replica(&replica.record.volume_id, &replica.record.node),
                &replica.record,
                Expect::Revision(replica.revision),
            )?);
        }
        self.kv.txn(ops).await
    }

    /// A membership change that adds a replica: writes the volume (bumped
    /// epoch) and the new replica record `added` (absent before, or at the
    /// revision it was read at), and removes `dropped` (a replica being
    /// replaced on another node), and rewrites `publication` (its members
    /// grown by the new leg) when given, in one transaction.
    pub async fn replace_replica(
        &self,
        volume: &Versioned<VolumeRecord>,
        added: &ReplicaRecord,
        added_expect: Expect,
        dropped: Option<&Versioned<ReplicaRecord>>,
        publication: Option<&Versioned<PublicationRecord>>,
    ) -> Result<Revision> {
        let mut ops = vec![
            put_op(
                keys::volume(&volume.record.id),
                &volume.record,
                Expect::Revision(volume.revision),
            )?,
            put_op(
                keys::replica(&added.volume_id, &added.node),
                added,
                added_expect,
            )?,
        ];
        if let Some(d) = dropped.filter(|d| d.record.node != added.node) {
            ops.push(TxnOp::Delete {
                key: keys::replica(&d.record.volume_id, &d.record.node),
                expect: Expect::Revision(d.revision),
            });
        }
        if let Some(p) = publication {
            ops.push(put_op(
                keys::publication(&p.record.volume_id, &p.record.node),
                &p.record,
                Expect::Revision(p.revision),
            )?);
        }
        self.kv.txn(ops).await
    }

    /// A membership change that removes replicas: writes the volume, deletes
    /// the `dropped` replica records and rewrites `publication` (its members
    /// shrunk) when given, each expected at the revision it was read at, in
    /// one transaction.
    pub async fn drop_replicas(
        &self,
        volume: &Versioned<VolumeRecord>,
        dropped: &[Versioned<ReplicaRecord>],
        publication: Option<&Versioned<PublicationRecord>>,
    ) -> Result<Revision> {
        let mut ops = vec![put_op(
            keys::volume(&volume.record.id),
            &volume.record,
            Expect::Revision(volume.revision),
        )?];
        for d in dropped {
            ops.push(TxnOp::Delete {
                key: keys::replica(&d.record.volume_id, &d.record.node),
                expect: Expect::Revision(d.revision),
            });
        }
        if let Some(p) = publication {
            ops.push(put_op(
                keys::publication(&p.record.volume_id, &p.record.node),
                &p.record,
                Expect::Revision(p.revision),
            )?);
        }
        self.kv.txn(ops).await
    }

    /// Deletes a volume with its name index, replicas and publications, and
    /// writes its tombstone, in one transaction. Returns `false` if the
    /// volume did not exist. Conflicts if any of those keys changed meanwhile.
    pub async fn delete_volume(&self, id: &str) -> Result<bool> {
        let Some(volume) = self.get_volume(id).await? else {
            return Ok(false);
        };
        let mut doomed = vec![(keys::volume(id), volume.revision)];
        let name_key = keys::volume_name(&volume.record.name);
        if let Some((_, revision)) = self.kv.get(&name_key).await? {
            doomed.push((name_key, revision));
        }
        for prefix in [keys::replicas_of(id), keys::publications_of(id)] {
            for (key, _, revision) in self.kv.list(&prefix).await? {
                doomed.push((key, revision));
            }
        }
        let mut ops = deletes(doomed);
        ops.push(tombstones::put_tombstone_op(id)?);
        self.kv.txn(ops).await?;
        Ok(true)
    }

    // ----- replicas -----

    /// Writes a replica record if `expect` holds.
    pub async fn put_replica(&self, replica: &ReplicaRecord, expect: Expect) -> Result<Revision> {
        let key = keys::replica(&replica.volume_id, &replica.node);
        self.kv.put(&key, encode(&key, replica)?, expect).await
    }

    /// The replica of `volume_id` on `node`.
    pub async fn get_replica(
        &self,
        volume_id: &str,
        node: &str,
    ) -> Result<Option<Versioned<ReplicaRecord>>> {
        self.get_record(&keys::replica(volume_id, node)).await
    }

    /// Replicas of a volume in node order.
    pub async fn list_replicas(&self, volume_id: &str) -> Result<Vec<Versioned<ReplicaRecord>>> {
        self.list_records(&keys::replicas_of(volume_id)).await
    }

    /// Every replica of every volume, in volume then node order (one range
    /// read: what a metrics scrape reports).
    pub async fn list_all_replicas(&self) -> Result<Vec<Versioned<ReplicaRecord>>> {
        self.list_records(keys::REPLICAS).await
    }

    /// Removes a replica record if `expect` holds; `false` if it was absent.
    pub async fn delete_replica(
        &self,
        volume_id: &str,
        node: &str,
        expect: Expect,
    ) -> Result<bool> {
        self.kv
            .delete(&keys::replica(volume_id, node), expect)
            .await
    }

    // ----- publications -----

    /// Writes a publication record if `expect` holds.
    pub async fn put_publication(
        &self,
        publication: &PublicationRecord,
        expect: Expect,
    ) -> Result<Revision> {
        let key = keys::publication(&publication.volume_id, &publication.node);
        self.kv.put(&key, encode(&key, publication)?, expect).await
    }

    /// The publication of `volume_id` to `node`.
    pub async fn get_publication(
        &self,
        volume_id: &str,
        node: &str,
    ) -> Result<Option<Versioned<PublicationRecord>>> {
        self.get_record(&keys::publication(volume_id, node)).await
    }

    /// Publications of a volume in node order.
    pub async fn list_publications(
        &self,
        volume_id: &str,
    ) -> Result<Vec<Versioned<PublicationRecord>>> {
        self.list_records(&keys::publications_of(volume_id)).await
    }

    /// Every publication of every volume, in volume then node order: what
    /// the health monitor watches.
    pub async fn list_all_publications(&self) -> Result<Vec<Versioned<PublicationRecord>>> {
        self.list_records(keys::PUBLICATIONS).await
    }

    /// Removes a publication if `expect` holds; `false` if it was absent.
    pub async fn delete_publication(
        &self,
        volume_id: &str,
        node: &str,
        expect: Expect,
    ) -> Result<bool> {
        self.kv
            .delete(&keys::publication(volume_id, node), expect)
            .await
    }

    // ----- snapshots -----

    /// Creates a snapshot with its name and source-volume index entries in
    /// one transaction. [`StoreError::Conflict`] if the id or name is taken.
    pub async fn create_snapshot(&self, snapshot: &SnapshotRecord) -> Result<Revision> {
        let id = snapshot.id.clone().into_bytes();
        let ops = vec![
            put_op(keys::snapshot(&snapshot.id), snapshot, Expect::Absent)?,
            TxnOp::Put {
                key: keys::snapshot_name(&snapshot.name),
                value: id.clone(),
                expect: Expect::Absent,
            },
            TxnOp::Put {
                key: keys::volume_snapshot(&snapshot.source_volume_id, &snapshot.id),
                value: id,
                expect: Expect::Absent,
            },
        ];
        self.kv.txn(ops).await
    }

    /// The snapshot with this id.
    pub async fn get_snapshot(&self, id: &str) -> Result<Option<Versioned<SnapshotRecord>>> {
        self.get_record(&keys::snapshot(id)).await
    }

    /// The snapshot with this CSI name.
    pub async fn get_snapshot_by_name(
        &self,
        name: &str,
    ) -> Result<Option<Versioned<SnapshotRecord>>> {
        self.get_by_name(&keys::snapshot_name(name), keys::snapshot)
            .await
    }

    /// Snapshots in id order, after `start_after` (an id), at most `limit`
    /// (`0` = no limit).
    pub async fn list_snapshots(
        &self,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Page<SnapshotRecord>> {
        self.page_records(keys::SNAPSHOTS, start_after, limit, |s: &SnapshotRecord| {
            &s.id
        })
        .await
    }

    /// Snapshots taken of `volume_id`, in id order.
    pub async fn list_snapshots_of_volume(
        &self,
        volume_id: &str,
    ) -> Result<Vec<Versioned<SnapshotRecord>>> {
        let mut out = Vec::new();
        for (key, raw, _) in self.kv.list(&keys::snapshots_of(volume_id)).await? {
            if let Some(snapshot) = self.get_snapshot(&text(&key, raw)?).await? {
                out.push(snapshot);
            }
        }
        Ok(out)
    }

    /// Replaces a snapshot record read at `expect`. When the new record is
    /// `deleted`, its name index entry is dropped in the same transaction so
    /// the name can be reused.
    pub async fn update_snapshot(
        &self,
        snapshot: &SnapshotRecord,
        expect: Revision,
    ) -> Result<Revision> {
        let key = keys::snapshot(&snapshot.id);
        let mut ops = vec![put_op(key, snapshot, Expect::Revision(expect))?];
        if snapshot.deleted {
            let name_key = keys::snapshot_name(&snapshot.name);
            if let Some((raw, revision)) = self.kv.get(&name_key).await? {
                if raw == snapshot.id.as_bytes() {
                    ops.push(TxnOp::Delete {
                        key: name_key,
                        expect: Expect::Revision(revision),
                    });
                }
            }
        }
        self.kv.txn(ops).await
    }

    /// Deletes a snapshot with its index entries in one transaction; `false`
    /// if it did not exist.
    pub async fn delete_snapshot(&self, id: &str) -> Result<bool> {
        let Some(snapshot) = self.get_snapshot(id).await? else {
            return Ok(false);
        };
        let mut doomed = vec![(keys::snapshot(id), snapshot.revision)];
        for key in [
            keys::snapshot_name(&snapshot.record.name),
            keys::volume_snapshot(&snapshot.record.source_volume_id, id),
        ] {
            if let Some((raw, revision)) = self.kv.get(&key).await? {
                // The name may belong to a newer snapshot once this one was marked deleted.
                if raw == id.as_bytes() {
                    doomed.push((key, revision));
                }
            }
        }
        self.delete_all(doomed).await?;
        Ok(true)
    }

    // ----- operation journal -----

    /// Journals a new operation; [`StoreError::Conflict`] if the id exists.
    pub async fn begin_operation(&self, op: &OperationRecord) -> Result<Revision> {
        let key = keys::operation(&op.id);
        self.kv.put(&key, encode(&key, op)?, Expect::Absent).await
    }

    /// The journaled operation with this id.
    pub async fn get_operation(&self, id: &str) -> Result<Option<Versioned<OperationRecord>>> {
        self.get_record(&keys::operation(id)).await
    }

    /// Records that an operation reached `step` with `payload`, if the entry
    /// is still at `expect`.
    pub async fn update_operation_step(
        &self,
        id: &str,
        step: &str,
        payload: serde_json::Value,
        expect: Revision,
    ) -> Result<Revision> {
        let key = keys::operation(id);
        let Some(mut current) = self.get_record::<OperationRecord>(&key).await? else {
            return Err(StoreError::Conflict { key });
        };
        current.record.step = step.to_string();
        current.record.payload = payload;
        self.kv
            .put(
                &key,
                encode(&key, &current.record)?,
                Expect::Revision(expect),
            )
            .await
    }

    /// Removes a finished operation from the journal; `false` if absent.
    pub async fn finish_operation(&self, id: &str) -> Result<bool> {
        self.kv.delete(&keys::operation(id), Expect::Any).await
    }

    /// Operations still in the journal, in id order.
    pub async fn list_pending_operations(&self) -> Result<Vec<Versioned<OperationRecord>>> {
        self.list_records(keys::OPS).await
    }
}
