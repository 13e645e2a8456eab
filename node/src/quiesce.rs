//! Per-volume I/O quiesce holds with a lease.
//!
//! A hold freezes the volume's filesystem (FIFREEZE) or suspends its
//! device-mapper device. Every hold has a deadline: if nobody resumes the
//! volume before it passes, a lease task resumes it and logs a warning, so
//! a lost caller can never leave a pod's I/O stuck. Both operations are
//! idempotent.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::dm::DmLinear;
use crate::error::{NodeError, Result};
use crate::freeze::{self, FreezeOutcome, ThawOutcome};

/// How many finished holds are remembered for metrics.
pub const RECENT_HOLDS: usize = 64;
/// Pause between attempts when an expired hold cannot be released.
const RELEASE_RETRY: Duration = Duration::from_secs(1);

/// What to quiesce for a volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum QuiesceTarget {
    /// A device-mapper device, by name: suspended with `dmsetup suspend`.
    DmDevice(String),
    /// A mounted filesystem, by mount path: frozen with FIFREEZE.
    Filesystem(PathBuf),
    /// A raw block device without a dm layer: cannot be quiesced.
    RawBlock(PathBuf),
}

impl fmt::Display for QuiesceTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuiesceTarget::DmDevice(n) => write!(f, "dm device {n}"),
            QuiesceTarget::Filesystem(p) => write!(f, "filesystem at {}", p.display()),
            QuiesceTarget::RawBlock(p) => write!(f, "raw block device {}", p.display()),
        }
    }
}

/// Answer to [`Quiescer::suspend`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldInfo {
    /// True when the volume was already held and only the lease was extended.
    pub already_held: bool,
    /// How long the hold has lasted so far.
    pub held_for: Duration,
    /// Time left until the lease resumes the volume by itself.
    pub expires_in: Duration,
}

/// Answer to [`Quiescer::resume`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldReport {
    /// False when the volume was not suspended (nothing was done).
    pub was_held: bool,
    /// How long the released hold lasted.
    pub held_for: Option<Duration>,
}

/// A finished hold, kept for metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldRecord {
    /// The volume.
    pub volume_id: String,
    /// How long I/O was held.
    pub held_for: Duration,
    /// True when the lease expired instead of an explicit resume.
    pub expired: bool,
}

struct Hold {
    target: QuiesceTarget,
    started: Instant,
    generation: u64,
    lease: JoinHandle<()>,
}

type Slot = Arc<Mutex<Option<Hold>>>;

struct Shared {
    dm: DmLinear,
    slots: StdMutex<HashMap<String, Slot>>,
    recent: StdMutex<VecDeque<HoldRecord>>,
    generation: AtomicU64,
}

impl Shared {
    fn record(&self, rec: HoldRecord) {
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if recent.len() == RECENT_HOLDS {
            recent.pop_front();
        }
        recent.push_back(rec);
    }

    async fn acquire(&self, volume_id: &str, target: &QuiesceTarget) -> Result<()> {
        match target {
            QuiesceTarget::RawBlock(path) => Err(NodeError::QuiesceUnsupported {
                volume_id: volume_id.to_owned(),
                reason: format!(
                    "raw block device {} has no device-mapper layer, so its I/O cannot be paused",
                    path.display()
                ),
            }),
            QuiesceTarget::Filesystem(path) => {
                let p = path.clone();
                if blocking(move || freeze::freeze(&p)).await? == FreezeOutcome::AlreadyFrozen {
                    tracing::warn!(volume_id, path = %path.display(), "filesystem was already frozen; adopting it");
                }
                Ok(())
            }
            QuiesceTarget::DmDevice(name) => {
                let (dm, n) = (self.dm.clone(), name.clone());
                blocking(move || dm.suspend(&n)).await
            }
        }
    }

    async fn release(&self, volume_id: &str, target: &QuiesceTarget) -> Result<()> {
        match target {
            QuiesceTarget::RawBlock(_) => Ok(()),
            QuiesceTarget::Filesystem(path) => {
                let p = path.clone();
                if blocking(move || freeze::thaw(&p)).await? == ThawOutcome::NotFrozen {
                    tracing::warn!(volume_id, path = %path.display(), "filesystem was not frozen any more");
                }
                Ok(())
            }
            QuiesceTarget::DmDevice(name) => {
                let (dm, n) = (self.dm.clone(), name.clone());
                blocking(move || dm.resume(&n)).await
            }
        }
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| NodeError::Task(e.to_string()))?
}

/// Manages quiesce holds for all volumes on this node. Cheap to clone.
/// Must be used inside a tokio runtime.
#[derive(Clone)]
pub struct Quiescer {
    shared: Arc<Shared>,
}

impl fmt::Debug for Quiescer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Quiescer").finish_non_exhaustive()
    }
}

impl Quiescer {
    /// Creates a quiescer that suspends dm devices through `dm`.
    pub fn new(dm: DmLinear) -> Self {
        Quiescer {
            shared: Arc::new(Shared {
                dm,
                slots: StdMutex::new(HashMap::new()),
                recent: StdMutex::new(VecDeque::new()),
                generation: AtomicU64::new(0),
            }),
        }
    }

    fn slot(&self, volume_id: &str) -> Slot {
        let mut slots = self
            .shared
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        slots.entry(volume_id.to_owned()).or_default().clone()
    }

    /// Holds the volume's I/O until [`Quiescer::resume`] or until `deadline`
    /// from now. Suspending a held volume keeps the one hold and restarts
    /// the lease with the new deadline.
    pub async fn suspend(
        &self,
        volume_id: &str,
        target: QuiesceTarget,
        deadline: Duration,
    ) -> Result<HoldInfo> {
        let slot = self.slot(volume_id);
        let mut guard = slot.lock().await;
        let generation = self.shared.generation.fetch_add(1, Ordering::Relaxed);
        let lease = |slot: Slot| {
            tokio::spawn(run_lease(
                self.shared.clone(),
                volume_id.to_owned(),
                slot,
                generation,
                Instant::now() + deadline,
            ))
        };
        if let Some(hold) = guard.as_mut() {
            if hold.target != target {
                return Err(NodeError::QuiesceConflict {
                    volume_id: volume_id.to_owned(),
                    held: hold.target.to_string(),
                    requested: target.to_string(),
                });
            }
            hold.lease.abort();
            hold.generation = generation;
            hold.lease = lease(slot.clone());
            tracing::info!(volume_id, ?deadline, "quiesce lease extended");
            return Ok(HoldInfo {
                already_held: true,
                held_for: hold.started.elapsed(),
                expires_in: deadline,
            });
        }
        self.shared.acquire(volume_id, &target).await?;
        tracing::info!(volume_id, %target, ?deadline, "volume quiesced");
        *guard = Some(Hold {
            target,
            started: Instant::now(),
            generation,
            lease: lease(slot.clone()),
        });
        Ok(HoldInfo {
            already_held: false,
            held_for: Duration::ZERO,
            expires_in: deadline,
        })
    }

    /// Releases the volume's hold. Resuming a volume that is not held
    /// succeeds with `was_held: false`. On failure the hold stays in place
    /// (and its lease keeps running).
    pub async fn resume(&self, volume_id: &str) -> Result<HoldReport> {
        let slot = self.slot(volume_id);
        let mut guard = slot.lock().await;
        let Some(hold) = guard.as_ref() else {
            tracing::info!(volume_id, "resume: volume was not quiesced");
            return Ok(HoldReport {
                was_held: false,
                held_for: None,
            });
        };
        self.shared.release(volume_id, &hold.target).await?;
        let held_for = hold.started.elapsed();
        hold.lease.abort();
        *guard = None;
        tracing::info!(volume_id, ?held_for, "volume resumed");
        self.shared.record(HoldRecord {
            volume_id: volume_id.to_owned(),
            held_for,
            expired: false,
        });
        Ok(HoldReport {
            was_held: true,
            held_for: Some(held_for),
        })
    }

    /// True while the volume is held.
    pub async fn is_suspended(&self, volume_id: &str) -> bool {
        let slot = {
            let slots = self
                .shared
                .slots
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            slots.get(volume_id).cloned()
        };
        match slot {
            Some(s) => s.lock().await.is_some(),
            None => false,
        }
    }

    /// The most recent finished holds, oldest first (at most [`RECENT_HOLDS`]).
    pub fn recent_holds(&self) -> Vec<HoldRecord> {
        self.shared
            .recent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }
}

async fn run_lease(
    shared: Arc<Shared>,
    volume_id: String,
    slot: Slot,
    generation: u64,
    deadline: Instant,
) {
    tokio::time::sleep_until(deadline).await;
    loop {
        let mut guard = slot.lock().await;
        let target = match guard.as_ref() {
            Some(h) if h.generation == generation => h.target.clone(),
            _ => return,
        };
        match shared.release(&volume_id, &target).await {
            Ok(()) => {
                let held_for = guard
                    .as_ref()
                    .map(|h| h.started.elapsed())
                    .unwrap_or_default();
                *guard = None;
                tracing::warn!(
                    volume_id,
                    %target,
                    ?held_for,
                    "quiesce lease expired without resume; volume resumed automatically"
                );
                shared.record(HoldRecord {
                    volume_id,
                    held_for,
                    expired: true,
                });
                return;
            }
            Err(e) => {
                tracing::error!(volume_id, %target, error = %e, "cannot release expired quiesce hold; retrying");
            }
        }
        drop(guard);
        tokio::time::sleep(RELEASE_RETRY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::testing::ScriptedRunner;

    fn quiescer() -> (Quiescer, Arc<ScriptedRunner>) {
        let r = Arc::new(ScriptedRunner::default());
        (Quiescer::new(DmLinear::new(r.clone())), r)
    }

    async fn wait_until_resumed(q: &Quiescer, vol: &str) {
        for _ in 0..500 {
            if !q.is_suspended(vol).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("lease never resumed {vol}");
    }

    #[tokio::test]
    async fn dm_suspend_twice_is_one_hold_and_resume_once() {
        let (q, r) = quiescer();
        let t = QuiesceTarget::DmDevice("shorthorn-v1".into());
        let first = q
            .suspend("v1", t.clone(), Duration::from_secs(60))
            .await
            .unwrap();
        assert!(!first.already_held);
        let second = q.suspend("v1", t, Duration::from_secs(60)).await.unwrap();
        assert!(second.already_held);
        assert!(q.is_suspended("v1").await);
        let rep = q.resume("v1").await.unwrap();
        assert!(rep.was_held && rep.held_for.is_some());
        assert!(!q.is_suspended("v1").await);
        let again = q.resume("v1").await.unwrap();
        assert_eq!(
            again,
            HoldReport {
                was_held: false,
                held_for: None
            }
        );
        assert_eq!(
            r.calls(),
            vec![
                "dmsetup suspend shorthorn-v1",
                "dmsetup resume shorthorn-v1"
            ]
        );
        let recent = q.recent_holds();
        assert_eq!(recent.len(), 1);
        assert!(!recent[0].expired);
    }

    #[tokio::test]
    async fn expired_lease_resumes_by_itself() {
        let (q, r) = quiescer();
        q.suspend(
            "v2",
            QuiesceTarget::DmDevice("d2".into()),
            Duration::from_millis(50),
        )
        .await
        .unwrap();
        wait_until_resumed(&q, "v2").await;
        assert_eq!(r.calls(), vec!["dmsetup suspend d2", "dmsetup resume d2"]);
        assert!(q.recent_holds()[0].expired);
        // A later explicit resume is harmless.
        assert!(!q.resume("v2").await.unwrap().was_held);
    }

    #[tokio::test]
    async fn extension_replaces_the_old_lease() {
        let (q, r) = quiescer();
        let t = QuiesceTarget::DmDevice("d3".into());
        q.suspend("v3", t.clone(), Duration::from_millis(30))
            .await
            .unwrap();
        q.suspend("v3", t, Duration::from_secs(3600)).await.unwrap();
        // Well past the first deadline the volume is still held.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(q.is_suspended("v3").await);
        assert_eq!(r.calls(), vec!["dmsetup suspend d3"]);
        q.resume("v3").await.unwrap();
    }

    #[tokio::test]
    async fn raw_block_is_unsupported() {
        let (q, r) = quiescer();
        let err = q
            .suspend(
                "v4",
                QuiesceTarget::RawBlock("/dev/nvme0n1".into()),
                Duration::from_secs(5),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, NodeError::QuiesceUnsupported { ref volume_id, .. } if volume_id == "v4")
        );
        assert!(err.to_string().contains("no device-mapper layer"));
        assert!(!q.is_suspended("v4").await);
        assert!(r.calls().is_empty());
    }

    #[tokio::test]
    async fn different_target_conflicts() {
        let (q, _r) = quiescer();
        q.suspend(
            "v5",
            QuiesceTarget::DmDevice("a".into()),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
        let err = q
            .suspend(
                "v5",
                QuiesceTarget::DmDevice("b".into()),
                Duration::from_secs(60),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, NodeError::QuiesceConflict { .. }));
        q.resume("v5").await.unwrap();
    }

    #[tokio::test]
    async fn failed_suspend_leaves_no_hold() {
        let r = Arc::new(ScriptedRunner::answering(vec![
            crate::command::testing::exit(1, ""),
        ]));
        let q = Quiescer::new(DmLinear::new(r));
        assert!(q
            .suspend(
                "v6",
                QuiesceTarget::DmDevice("x".into()),
                Duration::from_secs(5)
            )
            .await
            .is_err());
        assert!(!q.is_suspended("v6").await);
    }
}
