//! Longhorn's backupstore lock protocol (`lock.go`).
//!
//! A lock is a file `locks/lock-<16 hex>.lck` in the backup volume. To take
//! one, write it, wait `check_wait` (2 s in Longhorn, to cover clock skew
//! and the stores' one-second mtime), then list the volume's locks: if a lock
//! of the other type with priority (acquired first, then older server time,
//! then smaller name) exists and is not expired (server time older than
//! `duration`, 150 s), give up and remove ours. Backup and restore share
//! type 1, so they may run together; deletion (type 2) excludes both. A held
//! lock is rewritten every `refresh` (60 s) so it does not expire.

use std::time::{Duration, SystemTime};

use tracing::{debug, warn};

use crate::error::{Error, Result};
use crate::format::{lock_path, locks_dir, LockFile};
use crate::store::Target;

/// Type 1: creating a backup or restoring one.
pub const BACKUP_LOCK: i64 = 1;
/// Type 2: deleting a backup or a backup volume.
pub const DELETION_LOCK: i64 = 2;

/// Timings of the lock protocol.
#[derive(Debug, Clone, Copy)]
pub struct LockOptions {
    /// Wait between writing our lock and checking the others (Longhorn: 2 s).
    pub check_wait: Duration,
    /// Age after which an unrefreshed lock is ignored (Longhorn: 150 s).
    pub duration: Duration,
    /// Interval at which a held lock is rewritten (Longhorn: 60 s).
    pub refresh: Duration,
}

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions {
            check_wait: Duration::from_secs(2),
            duration: Duration::from_secs(150),
            refresh: Duration::from_secs(60),
        }
    }
}

/// A lock this process holds; release it with [`HeldLock::release`]. If it
/// is dropped instead, refreshing stops and the file expires.
pub struct HeldLock {
    target: Target,
    path: String,
    refresher: tokio::task::JoinHandle<()>,
}

impl HeldLock {
    /// Removes the lock file.
    pub async fn release(self) -> Result<()> {
        self.refresher.abort();
        self.target.delete(&self.path).await
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        self.refresher.abort();
    }
}

struct ServerLock {
    file: LockFile,
    time: SystemTime,
}

fn kind(lock_type: i64) -> &'static str {
    if lock_type == DELETION_LOCK {
        "delete"
    } else {
        "create/restore"
    }
}

/// Longhorn's `compareLocks`: negative when `a` has priority over `b`.
fn compare(a: &ServerLock, b: &ServerLock) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a.file.acquired, b.file.acquired) {
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => a
            .time
            .cmp(&b.time)
            .then_with(|| a.file.name.cmp(&b.file.name)),
    }
}

/// Takes a lock of `lock_type` on backup volume `volume`.
pub async fn acquire(
    target: &Target,
    volume: &str,
    lock_type: i64,
    opts: LockOptions,
) -> Result<HeldLock> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let name = format!("lock-{}", &id[..16]);
    let path = lock_path(volume, &name);
    let mut mine = LockFile {
        name: name.clone(),
        lock_type,
        acquired: false,
    };
    target.put(&path, mine.to_json().into_bytes()).await?;
    tokio::time::sleep(opts.check_wait).await;
    let my_time = target
        .modified(&path)
        .await?
        .unwrap_or_else(SystemTime::now);
    let me = ServerLock {
        file: mine.clone(),
        time: my_time,
    };
    let now = SystemTime::now();
    for other in list(target, volume).await? {
        let expired = now
            .duration_since(other.time)
            .map(|age| age > opts.duration)
            .unwrap_or(false);
        if other.file.lock_type != lock_type
            && compare(&other, &me) == std::cmp::Ordering::Less
            && !expired
        {
            if let Err(e) = target.delete(&path).await {
                warn!(lock = %path, error = %e, "removing the lock we could not acquire failed");
            }
            return Err(Error::Locked {
                path,
                volume: volume.to_string(),
                other: kind(other.file.lock_type),
            });
        }
    }
    mine.acquired = true;
    let body = mine.to_json().into_bytes();
    if let Err(e) = target.put(&path, body.clone()).await {
        let _ = target.delete(&path).await;
        return Err(e);
    }
    debug!(lock = %path, kind = kind(lock_type), "acquired backupstore lock");
    let refresh_target = target.clone();
    let refresh_path = path.clone();
    let refresher = tokio::spawn(async move {
        let mut tick = tokio::time::interval(opts.refresh);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = refresh_target.put(&refresh_path, body.clone()).await {
                warn!(lock = %refresh_path, error = %e, "refreshing the backupstore lock failed");
            }
        }
    });
    Ok(HeldLock {
        target: target.clone(),
        path,
        refresher,
    })
}

async fn list(target: &Target, volume: &str) -> Result<Vec<ServerLock>> {
    let mut out = Vec::new();
    for (key, time) in target.list_files(&locks_dir(volume)).await? {
        if !key.ends_with(".lck") {
            continue;
        }
        let Some(bytes) = target.get(&key).await? else {
            continue; // released meanwhile
        };
        match serde_json::from_slice::<LockFile>(&bytes) {
            Ok(file) => out.push(ServerLock { file, time }),
            Err(e) => warn!(lock = %key, error = %e, "ignoring unreadable lock file"),
        }
    }
    Ok(out)
}
