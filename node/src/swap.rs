//! Swap holds: a volume's dm-linear device suspended under a lease while
//! the controller replaces the raid under its frontend (the thin rebuild
//! of a published volume, docs/rebuild.md).
//!
//! A hold is `dmsetup suspend` (which waits for in-flight I/O). Its end is
//! a resume that can first find the volume's kernel device again (the
//! frontend was re-created, so the kernel made a new block device), load a
//! linear table onto it (`dmsetup reload`) and then `dmsetup resume`. A
//! lease that runs out does the same by itself: it looks for the device
//! for a bounded time, reloads onto it if it changed, and resumes, so a
//! lost controller never leaves a pod's I/O stuck. Suspend and resume are
//! idempotent.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::dm::DmLinear;
use crate::error::{NodeError, Result};
use crate::frontend::AttachedDevice;

/// Pause between attempts when an expired hold cannot be released.
const RELEASE_RETRY: Duration = Duration::from_secs(1);

/// A staged volume as a swap sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapVolume {
    /// The volume.
    pub volume_id: String,
    /// Its dm-linear device.
    pub dm_name: String,
    /// The device its dm table maps now.
    pub device: AttachedDevice,
}

/// Where the holds learn about staged volumes and their kernel devices.
#[async_trait]
pub trait SwapBackend: Send + Sync {
    /// The staged volume, or why it has no dm layer a swap can hold.
    fn resolve(&self, volume_id: &str) -> Result<SwapVolume>;

    /// Looks for the volume's kernel device for at most `wait`. With
    /// `require_new`, `volume.device` does not count (its frontend was
    /// re-created); without, it counts while it still exists. `None` when
    /// nothing was found in time.
    async fn find_device(
        &self,
        volume: &SwapVolume,
        wait: Duration,
        require_new: bool,
    ) -> Result<Option<AttachedDevice>>;

    /// Records that the volume's dm table now maps `device`.
    fn record_device(&self, volume_id: &str, device: &AttachedDevice) -> Result<()>;
}

/// Answer to [`SwapHolds::resume`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapReport {
    /// How long the released hold lasted; `None` when none was in force.
    pub held_for: Option<Duration>,
    /// The device the dm table maps now.
    pub device: AttachedDevice,
    /// True when the table was reloaded onto a new device.
    pub reloaded: bool,
}

struct Hold {
    volume: SwapVolume,
    started: Instant,
    generation: u64,
    lease: JoinHandle<()>,
}

type Slot = Arc<Mutex<Option<Hold>>>;

struct Shared {
    dm: DmLinear,
    backend: Arc<dyn SwapBackend>,
    slots: StdMutex<HashMap<String, Slot>>,
    generation: AtomicU64,
    expiry_wait: Duration,
}

impl Shared {
    async fn dm<T: Send + 'static>(
        &self,
        f: impl FnOnce(&DmLinear) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let dm = self.dm.clone();
        tokio::task::spawn_blocking(move || f(&dm))
            .await
            .map_err(|e| NodeError::Task(e.to_string()))?
    }

    /// Loads a table mapping `device` as `name`'s inactive table and
    /// records it; it becomes active at the next resume.
    async fn reload(&self, volume_id: &str, name: &str, device: &AttachedDevice) -> Result<()> {
        let (n, path, sectors) = (
            name.to_owned(),
            device.path.clone(),
            device.size_bytes / 512,
        );
        self.dm(move |dm| dm.reload(&n, &path, sectors)).await?;
        self.backend.record_device(volume_id, device)
    }

    async fn resume(&self, name: &str) -> Result<()> {
        let n = name.to_owned();
        self.dm(move |dm| dm.resume(&n)).await
    }
}

/// Manages swap holds for all volumes on this node. Cheap to clone. Must
/// be used inside a tokio runtime.
#[derive(Clone)]
pub struct SwapHolds {
    shared: Arc<Shared>,
}

impl fmt::Debug for SwapHolds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SwapHolds").finish_non_exhaustive()
    }
}

impl SwapHolds {
    /// Holds through `dm`, resolving volumes through `backend`; a lease that
    /// runs out looks for the device for at most `expiry_wait`.
    pub fn new(dm: DmLinear, backend: Arc<dyn SwapBackend>, expiry_wait: Duration) -> Self {
        SwapHolds {
            shared: Arc::new(Shared {
                dm,
                backend,
                slots: StdMutex::new(HashMap::new()),
                generation: AtomicU64::new(0),
                expiry_wait,
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

    /// The volume as a swap would hold it, and whether a hold is in force.
    pub async fn check(&self, volume_id: &str) -> Result<(SwapVolume, bool)> {
        let slot = self.slot(volume_id);
        let guard = slot.lock().await;
        match guard.as_ref() {
            Some(h) => Ok((h.volume.clone(), true)),
            None => Ok((self.shared.backend.resolve(volume_id)?, false)),
        }
    }

    /// Suspends the volume's dm device until [`SwapHolds::resume`] or until
    /// `deadline` from now. Suspending a held volume keeps the one hold and
    /// restarts the lease; returns whether it was already held.
    pub async fn suspend(&self, volume_id: &str, deadline: Duration) -> Result<bool> {
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
            hold.lease.abort();
            hold.generation = generation;
            hold.lease = lease(slot.clone());
            tracing::info!(volume_id, ?deadline, "swap hold extended");
            return Ok(true);
        }
        let volume = self.shared.backend.resolve(volume_id)?;
        let name = volume.dm_name.clone();
        self.shared.dm(move |dm| dm.suspend(&name)).await?;
        tracing::info!(volume_id, dm = %volume.dm_name, device = %volume.device.path.display(), ?deadline, "dm device suspended for a raid swap");
        *guard = Some(Hold {
            volume,
            started: Instant::now(),
            generation,
            lease: lease(slot.clone()),
        });
        Ok(false)
    }

    /// Ends the hold. With `reattach`, first waits (at most that long) for
    /// the volume's re-created kernel device (while held, one other than
    /// the device the table maps) and reloads the table onto it;
    /// that is done even when no hold is in force (a lease that ran out
    /// resumed onto the old device). If the device is not found, or a
    /// dmsetup call fails, the hold stays in place and its lease keeps
    /// running. Without `reattach`, resuming a volume not held does nothing.
    pub async fn resume(&self, volume_id: &str, reattach: Option<Duration>) -> Result<SwapReport> {
        let slot = self.slot(volume_id);
        let mut guard = slot.lock().await;
        let volume = match guard.as_ref() {
            Some(h) => h.volume.clone(),
            None => self.shared.backend.resolve(volume_id)?,
        };
        if guard.is_none() && reattach.is_none() {
            tracing::info!(volume_id, "swap resume: the volume was not held");
            return Ok(SwapReport {
                held_for: None,
                device: volume.device,
                reloaded: false,
            });
        }
        // Held: the frontend was re-created under the hold, so the device
        // the table maps does not count (the kernel may still list it). Not
        // held (the lease ran out, or an agent restart forgot the hold):
        // the lease may already have moved the table, so it counts.
        let require_new = guard.is_some();
        let (device, reloaded) = match reattach {
            Some(wait) => {
                let found = self
                    .shared
                    .backend
                    .find_device(&volume, wait, require_new)
                    .await?
                    .ok_or_else(|| NodeError::DeviceTimeout {
                        what: format!(
                            "a new kernel device of volume {volume_id} (the old one was {})",
                            volume.device.path.display()
                        ),
                        waited: wait,
                    })?;
                self.shared
                    .reload(volume_id, &volume.dm_name, &found)
                    .await?;
                (found, true)
            }
            None => (volume.device.clone(), false),
        };
        self.shared.resume(&volume.dm_name).await?;
        let held_for = guard.as_ref().map(|h| {
            h.lease.abort();
            h.started.elapsed()
        });
        *guard = None;
        tracing::info!(volume_id, ?held_for, device = %device.path.display(), reloaded, "dm device resumed after a raid swap");
        Ok(SwapReport {
            held_for,
            device,
            reloaded,
        })
    }

    /// True while the volume is held.
    pub async fn is_held(&self, volume_id: &str) -> bool {
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
        let volume = match guard.as_ref() {
            Some(h) if h.generation == generation => h.volume.clone(),
            _ => return,
        };
        // Onto whatever the frontend exports now: the old raid or the new
        // one, both hold every acknowledged write (docs/rebuild.md).
        match shared
            .backend
            .find_device(&volume, shared.expiry_wait, false)
            .await
        {
            Ok(Some(dev)) if dev.path != volume.device.path => {
                if let Err(e) = shared.reload(&volume_id, &volume.dm_name, &dev).await {
                    tracing::error!(volume_id, error = %e, "swap lease expired: reloading onto the new device failed; resuming onto the old one");
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                tracing::error!(volume_id, device = %volume.device.path.display(), "swap lease expired and the volume's kernel device is gone: resuming onto it, so I/O fails until the controller restores the frontend and resumes again")
            }
            Err(e) => {
                tracing::error!(volume_id, error = %e, "swap lease expired: cannot look for the kernel device; resuming onto the old one")
            }
        }
        match shared.resume(&volume.dm_name).await {
            Ok(()) => {
                let held_for = guard
                    .as_ref()
                    .map(|h| h.started.elapsed())
                    .unwrap_or_default();
                *guard = None;
                tracing::warn!(
                    volume_id,
                    ?held_for,
                    "swap lease expired without resume; dm device resumed automatically"
                );
                return;
            }
            Err(e) => {
                tracing::error!(volume_id, error = %e, "cannot resume an expired swap hold; retrying");
            }
        }
        drop(guard);
        tokio::time::sleep(RELEASE_RETRY).await;
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::command::testing::{exit, ScriptedRunner};
    use crate::frontend::FrontendKind;

    fn device(path: &str) -> AttachedDevice {
        AttachedDevice {
            kind: FrontendKind::NvmeTcp,
            path: PathBuf::from(path),
            size_bytes: 8 * 512,
            controllers: vec!["nvme0".into()],
        }
    }

    /// A staged volume `v1` on `/dev/nvme0n1`; `new` is what a rescan
    /// finds (None: nothing), `old_alive` whether the old device still is.
    #[derive(Default)]
    struct Fake {
        new: StdMutex<Option<AttachedDevice>>,
        old_alive: std::sync::atomic::AtomicBool,
        recorded: StdMutex<Vec<PathBuf>>,
    }

    #[async_trait]
    impl SwapBackend for Fake {
        fn resolve(&self, volume_id: &str) -> Result<SwapVolume> {
            if volume_id != "v1" {
                return Err(NodeError::QuiesceUnsupported {
                    volume_id: volume_id.into(),
                    reason: "the volume is not staged on this node".into(),
                });
            }
            let recorded = self.recorded.lock().unwrap().last().cloned();
            Ok(SwapVolume {
                volume_id: "v1".into(),
                dm_name: "shorthorn-v1".into(),
                device: device(
                    recorded
                        .as_deref()
                        .and_then(|p| p.to_str())
                        .unwrap_or("/dev/nvme0n1"),
                ),
            })
        }

        async fn find_device(
            &self,
            volume: &SwapVolume,
            _wait: Duration,
            require_new: bool,
        ) -> Result<Option<AttachedDevice>> {
            if let Some(d) = self.new.lock().unwrap().clone() {
                return Ok(Some(d));
            }
            let alive = self.old_alive.load(Ordering::SeqCst);
            Ok((!require_new && alive).then(|| volume.device.clone()))
        }

        fn record_device(&self, _volume_id: &str, device: &AttachedDevice) -> Result<()> {
            self.recorded.lock().unwrap().push(device.path.clone());
            Ok(())
        }
    }

    fn holds(fake: Arc<Fake>) -> (SwapHolds, Arc<ScriptedRunner>) {
        let r = Arc::new(ScriptedRunner::default());
        (
            SwapHolds::new(DmLinear::new(r.clone()), fake, Duration::from_millis(10)),
            r,
        )
    }

    async fn wait_released(h: &SwapHolds) {
        for _ in 0..500 {
            if !h.is_held("v1").await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the lease never resumed v1");
    }

    const RELOAD: &str = "dmsetup reload shorthorn-v1 --table \"0 8 linear /dev/nvme0n2 0\"";

    #[tokio::test]
    async fn suspend_then_reattach_reloads_onto_the_new_device_before_resuming() {
        let fake = Arc::new(Fake::default());
        let (h, r) = holds(fake.clone());
        assert!(!h.suspend("v1", Duration::from_secs(60)).await.unwrap());
        assert!(h.is_held("v1").await);
        *fake.new.lock().unwrap() = Some(device("/dev/nvme0n2"));
        let rep = h.resume("v1", Some(Duration::from_secs(1))).await.unwrap();
        assert!(rep.reloaded && rep.held_for.is_some());
        assert_eq!(rep.device.path, PathBuf::from("/dev/nvme0n2"));
        assert!(!h.is_held("v1").await);
        assert_eq!(
            r.calls(),
            vec![
                "dmsetup suspend shorthorn-v1",
                RELOAD,
                "dmsetup resume shorthorn-v1"
            ]
        );
        assert_eq!(
            *fake.recorded.lock().unwrap(),
            vec![PathBuf::from("/dev/nvme0n2")]
        );
    }

    #[tokio::test]
    async fn repeats_are_one_hold_and_one_resume() {
        let (h, r) = holds(Arc::new(Fake::default()));
        assert!(!h.suspend("v1", Duration::from_secs(60)).await.unwrap());
        assert!(h.suspend("v1", Duration::from_secs(60)).await.unwrap());
        let first = h.resume("v1", None).await.unwrap();
        assert!(first.held_for.is_some() && !first.reloaded);
        let again = h.resume("v1", None).await.unwrap();
        assert_eq!(again.held_for, None);
        assert_eq!(
            r.calls(),
            vec![
                "dmsetup suspend shorthorn-v1",
                "dmsetup resume shorthorn-v1"
            ]
        );
    }

    #[tokio::test]
    async fn an_expired_lease_reloads_onto_the_new_device_and_resumes_by_itself() {
        let fake = Arc::new(Fake::default());
        let (h, r) = holds(fake.clone());
        h.suspend("v1", Duration::from_millis(50)).await.unwrap();
        *fake.new.lock().unwrap() = Some(device("/dev/nvme0n2"));
        wait_released(&h).await;
        assert_eq!(
            r.calls(),
            vec![
                "dmsetup suspend shorthorn-v1",
                RELOAD,
                "dmsetup resume shorthorn-v1"
            ]
        );
        // A late resume finds no hold and, without reattach, does nothing.
        assert_eq!(h.resume("v1", None).await.unwrap().held_for, None);
        assert_eq!(r.calls().len(), 3);
    }

    #[tokio::test]
    async fn an_expired_lease_with_no_device_resumes_onto_the_old_table() {
        let (h, r) = holds(Arc::new(Fake::default()));
        h.suspend("v1", Duration::from_millis(30)).await.unwrap();
        wait_released(&h).await;
        assert_eq!(
            r.calls(),
            vec![
                "dmsetup suspend shorthorn-v1",
                "dmsetup resume shorthorn-v1"
            ]
        );
    }

    #[tokio::test]
    async fn a_reattach_that_finds_nothing_keeps_the_hold_and_its_lease() {
        let fake = Arc::new(Fake::default());
        fake.old_alive.store(true, Ordering::SeqCst);
        let (h, r) = holds(fake.clone());
        h.suspend("v1", Duration::from_millis(300)).await.unwrap();
        let err = h
            .resume("v1", Some(Duration::from_millis(10)))
            .await
            .unwrap_err();
        assert!(matches!(err, NodeError::DeviceTimeout { .. }), "{err}");
        assert!(h.is_held("v1").await);
        assert_eq!(r.calls(), vec!["dmsetup suspend shorthorn-v1"]);
        // The lease then resumes onto the old device, which is still there.
        wait_released(&h).await;
        assert_eq!(
            r.calls(),
            vec![
                "dmsetup suspend shorthorn-v1",
                "dmsetup resume shorthorn-v1"
            ]
        );
    }

    #[tokio::test]
    async fn a_reattach_after_the_lease_ran_out_still_moves_the_table() {
        let fake = Arc::new(Fake::default());
        let (h, r) = holds(fake.clone());
        h.suspend("v1", Duration::from_millis(20)).await.unwrap();
        wait_released(&h).await;
        *fake.new.lock().unwrap() = Some(device("/dev/nvme0n2"));
        let rep = h.resume("v1", Some(Duration::from_secs(1))).await.unwrap();
        assert_eq!(rep.held_for, None);
        assert!(rep.reloaded);
        assert_eq!(
            r.calls(),
            vec![
                "dmsetup suspend shorthorn-v1",
                "dmsetup resume shorthorn-v1",
                RELOAD,
                "dmsetup resume shorthorn-v1"
            ]
        );
    }

    #[tokio::test]
    async fn a_reattach_with_no_hold_accepts_the_device_the_table_maps() {
        let fake = Arc::new(Fake::default());
        fake.old_alive.store(true, Ordering::SeqCst);
        let (h, r) = holds(fake.clone());
        let rep = h
            .resume("v1", Some(Duration::from_millis(10)))
            .await
            .unwrap();
        assert_eq!(rep.held_for, None);
        assert_eq!(rep.device.path, PathBuf::from("/dev/nvme0n1"));
        assert_eq!(
            r.calls(),
            vec![
                "dmsetup reload shorthorn-v1 --table \"0 8 linear /dev/nvme0n1 0\"",
                "dmsetup resume shorthorn-v1"
            ]
        );
    }

    #[tokio::test]
    async fn a_failed_suspend_holds_nothing_and_an_unstaged_volume_is_refused() {
        let fake = Arc::new(Fake::default());
        let r = Arc::new(ScriptedRunner::answering(vec![exit(1, "")]));
        let h = SwapHolds::new(DmLinear::new(r.clone()), fake, Duration::from_millis(10));
        assert!(h.suspend("v1", Duration::from_secs(1)).await.is_err());
        assert!(!h.is_held("v1").await);
        assert!(matches!(
            h.suspend("other", Duration::from_secs(1)).await,
            Err(NodeError::QuiesceUnsupported { .. })
        ));
        assert_eq!(r.calls(), vec!["dmsetup suspend shorthorn-v1"]);
    }
}
