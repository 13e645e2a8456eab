//! The ANA fence leases this agent holds, one per volume subsystem.
//!
//! A lease is in place before SPDK sees the first call of a suspend, so a
//! suspend that hangs still ends by its deadline. When the lease runs out
//! its task restores `optimized`, retrying until SPDK accepts. A resume
//! restores `optimized` (a few tries; on failure the lease stays and keeps
//! its own retries) and says whether the lease had already run out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex, PoisonError};
use std::time::Duration;

use agent_api::ana_fence::{FenceListener, VOLUME_ANA_GROUP, VOLUME_NSID};
use spdk_client::{
    AnaState, ListenAddress, NvmfSubsystemGetListenersParams,
    NvmfSubsystemListenerSetAnaStateParams, NvmfSubsystemSetNsAnaGroupParams, SpdkClient,
};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::{NodeError, Result};

/// Pause between a lease's attempts to restore `optimized` once it ran out.
pub(crate) const RESTORE_RETRY: Duration = Duration::from_millis(250);
/// Attempts a resume makes before it answers with the failure.
const RESUME_TRIES: u32 = 3;
/// Pause between those attempts.
const RESUME_PAUSE: Duration = Duration::from_millis(100);

/// A suspend that succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Suspended {
    /// A lease was already held; only its deadline moved.
    pub extended: bool,
    /// Time until the lease restores `optimized` by itself.
    pub expires_in: Duration,
}

/// A resume that restored `optimized`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resumed {
    /// No lease was in force when the resume arrived.
    pub expired: bool,
    /// How long the ended lease had held.
    pub held_for: Duration,
}

struct Lease {
    listener: FenceListener,
    started: Instant,
    expires: Instant,
    generation: u64,
    task: JoinHandle<()>,
}

type Slot = Arc<Mutex<Option<Lease>>>;

struct Shared {
    spdk: SpdkClient,
    slots: StdMutex<HashMap<String, Slot>>,
    generation: AtomicU64,
}

/// Every ANA fence lease of this agent. Cheap to clone.
#[derive(Clone)]
pub(crate) struct AnaLeases {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for AnaLeases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnaLeases").finish_non_exhaustive()
    }
}

impl AnaLeases {
    /// Leases acted out through `spdk`.
    pub fn new(spdk: SpdkClient) -> Self {
        Self {
            shared: Arc::new(Shared {
                spdk,
                slots: StdMutex::new(HashMap::new()),
                generation: AtomicU64::new(0),
            }),
        }
    }

    fn slot(&self, nqn: &str) -> Slot {
        let mut slots = self
            .shared
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        slots.entry(nqn.to_owned()).or_default().clone()
    }

    /// Holds `nqn`'s I/O on `listener` for at most `deadline` from now. A
    /// held lease is extended (same listener only). Fails, with `optimized`
    /// restored (now, or by the lease), when a step fails or the drain does
    /// not complete before the deadline.
    pub async fn suspend(
        &self,
        nqn: &str,
        listener: &FenceListener,
        deadline: Duration,
    ) -> Result<Suspended> {
        let slot = self.slot(nqn);
        let mut held = slot.lock().await;
        let generation = self.shared.generation.fetch_add(1, Ordering::Relaxed);
        let expires = Instant::now() + deadline;
        let lease_task = || {
            tokio::spawn(run_lease(
                self.shared.clone(),
                nqn.to_owned(),
                slot.clone(),
                generation,
                expires,
            ))
        };
        if let Some(lease) = held.as_mut() {
            if lease.listener != *listener {
                return Err(NodeError::AnaFenceConflict {
                    nqn: nqn.to_owned(),
                    held: show(&lease.listener),
                    requested: show(listener),
                });
            }
            lease.task.abort();
            lease.generation = generation;
            lease.expires = expires;
            lease.task = lease_task();
            tracing::info!(?deadline, "ANA fence lease extended");
            return Ok(Suspended {
                extended: true,
                expires_in: deadline,
            });
        }
        *held = Some(Lease {
            listener: listener.clone(),
            started: Instant::now(),
            expires,
            generation,
            task: lease_task(),
        });
        // Err carries whether SPDK may have applied the inaccessible state.
        let steps = async {
            match self.set_state(nqn, listener, AnaState::Inaccessible).await {
                Ok(()) => {}
                Err(e) => {
                    let applied = !refused(&e);
                    return Err((e, applied));
                }
            }
            self.drain(nqn).await.map_err(|e| (e, true))
        };
        match tokio::time::timeout_at(expires, steps).await {
            Ok(Ok(())) => {
                tracing::info!(?deadline, "volume I/O fenced (ANA inaccessible, drained)");
                Ok(Suspended {
                    extended: false,
                    expires_in: expires.saturating_duration_since(Instant::now()),
                })
            }
            Ok(Err((e, applied))) => {
                // Undo at once if SPDK lets us; otherwise the lease does.
                if !applied || self.restore(nqn, listener).await.is_ok() {
                    if let Some(lease) = held.take() {
                        lease.task.abort();
                    }
                }
                Err(e)
            }
            // The lease task waits for this slot, then restores.
            Err(_) => Err(NodeError::AnaFenceDrainTimeout {
                nqn: nqn.to_owned(),
                lease: deadline,
            }),
        }
    }

    /// Restores `optimized` on `nqn`'s `listener` and ends its lease, if
    /// any. On failure the lease (if any) stays and keeps retrying.
    pub async fn resume(&self, nqn: &str, listener: &FenceListener) -> Result<Resumed> {
        let slot = self.slot(nqn);
        let mut held = slot.lock().await;
        let now = Instant::now();
        let (expired, held_for) = match held.as_ref() {
            Some(lease) if lease.listener != *listener => {
                return Err(NodeError::AnaFenceConflict {
                    nqn: nqn.to_owned(),
                    held: show(&lease.listener),
                    requested: show(listener),
                })
            }
            Some(lease) => (now >= lease.expires, now - lease.started),
            None => (true, Duration::ZERO),
        };
        self.restore(nqn, listener).await?;
        if let Some(lease) = held.take() {
            lease.task.abort();
        }
        tracing::info!(expired, ?held_for, "volume I/O resumed (ANA optimized)");
        Ok(Resumed { expired, held_for })
    }

    /// `optimized`, a few tries.
    async fn restore(&self, nqn: &str, listener: &FenceListener) -> Result<()> {
        let mut tries = 1;
        loop {
            match self.set_state(nqn, listener, AnaState::Optimized).await {
                Ok(()) => return Ok(()),
                Err(e) if tries < RESUME_TRIES => {
                    tracing::warn!(error = %e, tries, "restoring the optimized ANA state failed; trying again");
                    tries += 1;
                    tokio::time::sleep(RESUME_PAUSE).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn set_state(&self, nqn: &str, listener: &FenceListener, state: AnaState) -> Result<()> {
        set_state(&self.shared.spdk, nqn, listener, state).await
    }

    /// The drain barrier: re-setting the namespace's ANA group completes
    /// once its in-flight I/O is done.
    async fn drain(&self, nqn: &str) -> Result<()> {
        let params = NvmfSubsystemSetNsAnaGroupParams {
            nqn: nqn.to_owned(),
            nsid: VOLUME_NSID,
            anagrpid: VOLUME_ANA_GROUP,
            tgt_name: None,
        };
        self.shared
            .spdk
            .nvmf_subsystem_set_ns_ana_group(&params)
            .await
            .map_err(|source| NodeError::AnaFenceSpdk {
                nqn: nqn.to_owned(),
                method: "nvmf_subsystem_set_ns_ana_group",
                source,
            })
    }
}

/// Sets every ANA group of `nqn`'s `listener` to `state`.
pub(crate) async fn set_state(
    spdk: &SpdkClient,
    nqn: &str,
    listener: &FenceListener,
    state: AnaState,
) -> Result<()> {
    let params = NvmfSubsystemListenerSetAnaStateParams {
        nqn: nqn.to_owned(),
        listen_address: ListenAddress {
            trtype: listener.trtype.clone(),
            adrfam: Some(listener.adrfam.clone()),
            traddr: listener.traddr.clone(),
            trsvcid: Some(listener.trsvcid.clone()),
        },
        ana_state: state,
        anagrpid: None,
        tgt_name: None,
    };
    spdk.nvmf_subsystem_listener_set_ana_state(&params)
        .await
        .map_err(|source| NodeError::AnaFenceSpdk {
            nqn: nqn.to_owned(),
            method: "nvmf_subsystem_listener_set_ana_state",
            source,
        })
}

/// Whether SPDK answered the call with an error (so it changed nothing),
/// rather than failing to answer.
fn refused(e: &NodeError) -> bool {
    matches!(
        e,
        NodeError::AnaFenceSpdk {
            source: spdk_client::SpdkError::Rpc { .. },
            ..
        }
    )
}

/// Whether `nqn` still has `listener`: `Some(false)` when SPDK says the
/// subsystem or the listener is gone (nothing left to restore), `None` when
/// it cannot tell.
async fn listener_exists(spdk: &SpdkClient, nqn: &str, listener: &FenceListener) -> Option<bool> {
    let params = NvmfSubsystemGetListenersParams {
        nqn: nqn.to_owned(),
        tgt_name: None,
    };
    match spdk.nvmf_subsystem_get_listeners(&params).await {
        Ok(list) => Some(list.iter().any(|l| {
            l.address.traddr == listener.traddr
                && l.address.trsvcid.as_deref() == Some(listener.trsvcid.as_str())
        })),
        Err(spdk_client::SpdkError::Rpc { .. }) => Some(false),
        Err(_) => None,
    }
}

fn show(l: &FenceListener) -> String {
    format!("{} {}:{}", l.trtype, l.traddr, l.trsvcid)
}

/// The lease of generation `generation`: at `expires`, restores
/// `optimized` unless a resume or a newer lease took over; retries until
/// SPDK accepts.
async fn run_lease(
    shared: Arc<Shared>,
    nqn: String,
    slot: Slot,
    generation: u64,
    expires: Instant,
) {
    tokio::time::sleep_until(expires).await;
    loop {
        let mut held = slot.lock().await;
        let (listener, started) = match held.as_ref() {
            Some(l) if l.generation == generation => (l.listener.clone(), l.started),
            _ => return,
        };
        match set_state(&shared.spdk, &nqn, &listener, AnaState::Optimized).await {
            Ok(()) => {
                *held = None;
                tracing::warn!(nqn = %nqn, held_for = ?started.elapsed(), "ANA fence lease ran out without resume; the optimized path is restored");
                return;
            }
            Err(e) => {
                if refused(&e)
                    && listener_exists(&shared.spdk, &nqn, &listener).await == Some(false)
                {
                    *held = None;
                    tracing::warn!(nqn = %nqn, "ANA fence lease ran out, but its subsystem or listener is gone: nothing to restore");
                    return;
                }
                tracing::error!(nqn = %nqn, error = %e, "restoring the optimized ANA state after the lease ran out failed; retrying");
            }
        }
        drop(held);
        tokio::time::sleep(RESTORE_RETRY).await;
    }
}
