//! Single-machine backend: a crash-safe `redb` file.
//!
//! Every value is stored as an 8-byte big-endian revision followed by the
//! payload. A global revision counter lives in a meta table and is bumped
//! once per write transaction. redb commits are durable by default (fsync
//! before `commit` returns), so an acknowledged write survives a crash.
//!
//! One controller at a time: redb takes an exclusive, non-blocking `flock`
//! on the file when it opens it (`FileBackend::new`), held until the
//! database is dropped and released by the kernel when the process dies, so
//! a second controller on the same file fails at once with
//! [`StoreError::Locked`] naming the file and, from `/proc/locks`, the
//! holder; a crashed one never leaves a stale lock behind. That lock is the
//! embedded store's leader lease: every write goes through the one open
//! database, so no write can come from a second controller.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, DatabaseError, ReadableTable, TableDefinition};

use super::{
    expectation_holds, validate_key, validate_txn, Entry, Expect, KvStore, Result, Revision,
    StoreError, TxnOp,
};

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const REVISION_KEY: &str = "revision";
const REVISION_LEN: usize = 8;

/// [`KvStore`] backed by a local `redb` database file.
#[derive(Debug, Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    path: Arc<PathBuf>,
}

impl EmbeddedStore {
    /// Opens (or creates) the database at `path`. Fails with
    /// [`StoreError::Locked`] if another process holds it open.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let opened = path.clone();
        let db = tokio::task::spawn_blocking(move || open_blocking(&opened))
            .await
            .map_err(|err| StoreError::Backend(format!("open task failed: {err}")))??;
        tracing::info!(path = %path.display(), "opened embedded state store");
        Ok(EmbeddedStore {
            db: Arc::new(db),
            path: Arc::new(path),
        })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs blocking redb work off the async runtime.
    async fn blocking<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Database, &Path) -> Result<T> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        let path = Arc::clone(&self.path);
        tokio::task::spawn_blocking(move || work(&db, &path))
            .await
            .map_err(|err| StoreError::Backend(format!("store task failed: {err}")))?
    }
}

fn open_blocking(path: &Path) -> Result<Database> {
    let db = Database::create(path).map_err(|err| match err {
        DatabaseError::DatabaseAlreadyOpen => locked(path),
        other => map_err(path, other),
    })?;
    // Make sure both tables exist so read transactions can always open them.
    let txn = db.begin_write().map_err(|e| map_err(path, e))?;
    {
        txn.open_table(KV).map_err(|e| map_err(path, e))?;
        txn.open_table(META).map_err(|e| map_err(path, e))?;
    }
    txn.commit().map_err(|e| map_err(path, e))?;
    Ok(db)
}

/// The file is held open (and flocked) by another process, or another
/// handle in this one.
fn locked(path: &Path) -> StoreError {
    StoreError::Locked {
        path: path.display().to_string(),
        holder: super::lock_holder::describe_flock_holder(path),
    }
}

/// Maps any redb error to a store error naming the file.
fn map_err(path: &Path, err: impl Into<redb::Error>) -> StoreError {
    let err = err.into();
    if matches!(err, redb::Error::DatabaseAlreadyOpen) {
        return locked(path);
    }
    let path = path.display().to_string();
    match err {
        redb::Error::Corrupted(reason) => StoreError::Corrupt { key: path, reason },
        redb::Error::Io(err) => StoreError::Unavailable {
            endpoint: path,
            reason: err.to_string(),
        },
        other => StoreError::Backend(format!("{path}: {other}")),
    }
}

fn encode(revision: Revision, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(REVISION_LEN + value.len());
    out.extend_from_slice(&revision.0.to_be_bytes());
    out.extend_from_slice(value);
    out
}

fn decode(key: &str, raw: &[u8]) -> Result<(Vec<u8>, Revision)> {
    let (head, value) = raw
        .split_at_checked(REVISION_LEN)
        .ok_or_else(|| StoreError::Corrupt {
            key: key.to_string(),
            reason: format!(
                "stored value is {} bytes, shorter than its revision header",
                raw.len()
            ),
        })?;
    let mut bytes = [0u8; REVISION_LEN];
    bytes.copy_from_slice(head);
    Ok((value.to_vec(), Revision(u64::from_be_bytes(bytes))))
}

fn revision_of(key: &str, raw: &[u8]) -> Result<Revision> {
    decode(key, raw).map(|(_, revision)| revision)
}

/// Checks every expectation, then applies every op, inside one write
/// transaction; dropping the transaction on conflict discards it.
fn txn_blocking(db: &Database, path: &Path, ops: Vec<TxnOp>) -> Result<(Revision, Vec<bool>)> {
    let txn = db.begin_write().map_err(|e| map_err(path, e))?;
    let result = {
        let mut kv = txn.open_table(KV).map_err(|e| map_err(path, e))?;
        let mut meta = txn.open_table(META).map_err(|e| map_err(path, e))?;
        let current = meta
            .get(REVISION_KEY)
            .map_err(|e| map_err(path, e))?
            .map(|guard| guard.value())
            .unwrap_or(0);
        for op in &ops {
            let existing = match kv.get(op.key()).map_err(|e| map_err(path, e))? {
                Some(guard) => Some(revision_of(op.key(), guard.value())?),
                None => None,
            };
            if !expectation_holds(op.expect(), existing) {
                return Err(StoreError::Conflict {
                    key: op.key().to_string(),
                });
            }
        }
        if ops.is_empty() {
            return Ok((Revision(current), Vec::new()));
        }
        let revision = Revision(current + 1);
        let mut deleted = Vec::with_capacity(ops.len());
        for op in &ops {
            match op {
                TxnOp::Put { key, value, .. } => {
                    kv.insert(key.as_str(), encode(revision, value).as_slice())
                        .map_err(|e| map_err(path, e))?;
                    deleted.push(false);
                }
                TxnOp::Delete { key, .. } => {
                    let removed = kv.remove(key.as_str()).map_err(|e| map_err(path, e))?;
                    deleted.push(removed.is_some());
                }
            }
        }
        meta.insert(REVISION_KEY, revision.0)
            .map_err(|e| map_err(path, e))?;
        (revision, deleted)
    };
    txn.commit().map_err(|e| map_err(path, e))?;
    Ok(result)
}

fn list_blocking(
    db: &Database,
    path: &Path,
    prefix: &str,
    start_after: Option<&str>,
    limit: Option<usize>,
) -> Result<Vec<Entry>> {
    let txn = db.begin_read().map_err(|e| map_err(path, e))?;
    let kv = txn.open_table(KV).map_err(|e| map_err(path, e))?;
    let lower = match start_after {
        Some(after) if after >= prefix => Bound::Excluded(after),
        _ => Bound::Included(prefix),
    };
    let limit = limit.unwrap_or(usize::MAX);
    let mut out = Vec::new();
    for item in kv
        .range::<&str>((lower, Bound::Unbounded))
        .map_err(|e| map_err(path, e))?
    {
        if out.len() >= limit {
            break;
        }
        let (key, value) = item.map_err(|e| map_err(path, e))?;
        let key = key.value();
        if !key.starts_with(prefix) {
            break;
        }
        let (value, revision) = decode(key, value.value())?;
        out.push((key.to_string(), value, revision));
    }
    Ok(out)
}

#[async_trait]
impl KvStore for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, Revision)>> {
        validate_key(key)?;
        let key = key.to_string();
        self.blocking(move |db, path| {
            let txn = db.begin_read().map_err(|e| map_err(path, e))?;
            let kv = txn.open_table(KV).map_err(|e| map_err(path, e))?;
            match kv.get(key.as_str()).map_err(|e| map_err(path, e))? {
                Some(guard) => decode(&key, guard.value()).map(Some),
                None => Ok(None),
            }
        })
        .await
    }

    async fn list_from(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<Entry>> {
        let prefix = prefix.to_string();
        let start_after = start_after.map(str::to_string);
        self.blocking(move |db, path| {
            list_blocking(db, path, &prefix, start_after.as_deref(), limit)
        })
        .await
    }

    async fn delete(&self, key: &str, expect: Expect) -> Result<bool> {
        let op = TxnOp::Delete {
            key: key.to_string(),
            expect,
        };
        validate_txn(std::slice::from_ref(&op))?;
        let (_, deleted) = self
            .blocking(move |db, path| txn_blocking(db, path, vec![op]))
            .await?;
        Ok(deleted.first().copied().unwrap_or(false))
    }

    async fn txn(&self, ops: Vec<TxnOp>) -> Result<Revision> {
        validate_txn(&ops)?;
        let (revision, _) = self
            .blocking(move |db, path| txn_blocking(db, path, ops))
            .await?;
        Ok(revision)
    }

    async fn health(&self) -> Result<()> {
        self.blocking(|db, path| {
            let txn = db.begin_read().map_err(|e| map_err(path, e))?;
            txn.open_table(KV).map_err(|e| map_err(path, e))?;
            Ok(())
        })
        .await
    }
}
