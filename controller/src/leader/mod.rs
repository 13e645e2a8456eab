//! One controller at a time.
//!
//! On etcd, the controllers sharing a key prefix elect a leader through an
//! etcd lease and a leader key ([`Leadership::campaign`], [`elector`]). Only
//! the leader recovers interrupted operations, runs the reconciler
//! ([`supervise`]) and serves the CSI calls that change state
//! ([`LeaderGate`]). A standby answers Identity (Probe says "not ready",
//! which makes the CSI sidecars wait for it) and read-only calls, and refuses
//! the others at once with UNAVAILABLE naming the leader: refusing rather
//! than holding them, because a standby may wait for as long as the leader
//! lives, and the sidecars retry UNAVAILABLE by themselves. Every store write
//! of the leader is conditional on its leader key (`store::LeaderFence`),
//! so a deposed leader's writes fail even before it notices. A leader that
//! loses its lease stops acting (reconciler stopped, calls refused) and
//! campaigns again.
//!
//! With the embedded store the file lock is the lease ([`Leadership::held`]):
//! a second controller cannot even open the store. Contexts built by hand
//! (tests, tools that are the only writer) are [`Leadership::assumed`].
//!
//! Residual risk: an operation already running when leadership is lost goes
//! on until its next store write is refused; SPDK calls it makes before that
//! are not fenced. Its journal entry stays, and the next leader's recovery
//! finishes or rolls it back under the volume lock.

mod elector;
mod gate;
mod supervise;

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

pub use gate::LeaderGate;
pub use supervise::{supervise, take_charge};

use crate::config::LeaderConfig;
use crate::error::{ControllerError, Result};
use crate::store::EtcdStore;

/// Where this controller stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Not the leader: refuses calls that change state, runs no reconciler.
    Standby {
        /// Why, for the operator (who leads, or how leadership was lost).
        reason: String,
    },
    /// Holds the lease, still recovering interrupted operations.
    Elected,
    /// Holds the lease and recovered: serves every call, runs the reconciler.
    Acting,
}

/// The role and the term it belongs to (a new term starts at every election).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Where this controller stands.
    pub role: Role,
    /// Elections won by this process so far.
    pub term: u64,
}

/// This controller's leadership: its identity, its current [`Status`], and
/// the elector behind it (if any). Cheap to clone; the elector stops (and
/// gives up the lease) when the last clone is dropped or on [`Leadership::resign`].
#[derive(Debug, Clone)]
pub struct Leadership {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    identity: String,
    status: Arc<watch::Sender<Status>>,
    elector: Option<ElectorHandle>,
}

#[derive(Debug)]
struct ElectorHandle {
    stop: watch::Sender<bool>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(elector) = &self.elector {
            elector.stop.send_replace(true);
        }
    }
}

impl Leadership {
    fn without_elector(identity: String, role: Role, term: u64) -> Self {
        Self {
            inner: Arc::new(Inner {
                identity,
                status: Arc::new(watch::Sender::new(Status { role, term })),
                elector: None,
            }),
        }
    }

    /// No election: this process is assumed to be the only writer (contexts
    /// built by hand in tests and tools). Acting from the start.
    pub fn assumed() -> Self {
        Self::without_elector("this process".into(), Role::Acting, 0)
    }

    /// Leadership held for the life of the process by other means (the
    /// embedded store's file lock): elected, acting once recovery ran.
    pub fn held(identity: String) -> Self {
        Self::without_elector(identity, Role::Elected, 1)
    }

    /// Campaigns for the leader lease on `store`'s etcd. The store's writes
    /// are refused from now on until this controller is elected, and then
    /// carry the leader condition. Must run inside a tokio runtime.
    pub fn campaign(store: EtcdStore, config: &LeaderConfig) -> Self {
        let identity = config.identity.clone().unwrap_or_else(default_identity);
        let reason = elector::standby_reason(None);
        store.fence().close(reason.clone());
        let status = Arc::new(watch::Sender::new(Status {
            role: Role::Standby { reason },
            term: 0,
        }));
        let (stop, stopped) = watch::channel(false);
        let settings = elector::Settings {
            identity: identity.clone(),
            ttl: config.ttl(),
            keepalive: config.keepalive_interval(),
            retry: config.retry_interval(),
        };
        let task = tokio::spawn(elector::run(store, settings, Arc::clone(&status), stopped));
        Self {
            inner: Arc::new(Inner {
                identity,
                status,
                elector: Some(ElectorHandle {
                    stop,
                    task: Mutex::new(Some(task)),
                }),
            }),
        }
    }

    /// This controller's name in the leader record.
    pub fn identity(&self) -> &str {
        &self.inner.identity
    }

    /// The current status.
    pub fn status(&self) -> Status {
        self.inner.status.borrow().clone()
    }

    /// Whether this controller serves calls that change state.
    pub fn is_acting(&self) -> bool {
        self.inner.status.borrow().role == Role::Acting
    }

    /// `Ok` when acting, else [`ControllerError::NotLeader`] saying why.
    pub fn check_acting(&self) -> Result<()> {
        match &self.inner.status.borrow().role {
            Role::Acting => Ok(()),
            Role::Elected => Err(ControllerError::NotLeader {
                reason: "this controller was just elected leader and is still recovering interrupted operations".into(),
            }),
            Role::Standby { reason } => Err(ControllerError::NotLeader {
                reason: reason.clone(),
            }),
        }
    }

    /// Waits until this controller is elected (or acting); returns the term.
    pub async fn elected(&self) -> u64 {
        let mut status = self.inner.status.subscribe();
        let result = status
            .wait_for(|s| !matches!(s.role, Role::Standby { .. }))
            .await
            .map(|s| s.term);
        // The sender lives in `self`: the channel cannot close under us.
        result.unwrap_or_default()
    }

    /// Records that recovery of `term` finished: from now on this controller
    /// acts. False when `term` is over already (nothing changes).
    pub fn mark_acting(&self, term: u64) -> bool {
        self.inner.status.send_if_modified(|s| {
            if s.term == term && s.role == Role::Elected {
                s.role = Role::Acting;
                true
            } else {
                false
            }
        })
    }

    /// Resolves when `term` ends: this controller stood down or was elected
    /// anew. Never resolves without an elector.
    pub async fn deposed(&self, term: u64) {
        let mut status = self.inner.status.subscribe();
        let _ = status
            .wait_for(|s| s.term != term || matches!(s.role, Role::Standby { .. }))
            .await;
    }

    /// Stops campaigning and gives the lease up (revokes it), so that a
    /// standby takes over at once; returns when done.
    pub async fn resign(&self) {
        let Some(elector) = &self.inner.elector else {
            return;
        };
        elector.stop.send_replace(true);
        let task = elector
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "leader elector task failed");
            }
        }
    }
}

/// `<hostname>-<pid>-<8 random hex digits>`: unique per process, and says
/// where to look for it.
pub fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "controller".into());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &random[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn held_leadership_acts_once_recovered_and_is_never_deposed() {
        let leadership = Leadership::held("x".into());
        assert!(!leadership.is_acting());
        let err = leadership.check_acting().unwrap_err();
        assert!(err.to_string().contains("still recovering"), "{err}");
        let term = leadership.elected().await;
        assert!(!leadership.mark_acting(term + 1), "another term");
        assert!(leadership.mark_acting(term));
        assert!(leadership.check_acting().is_ok());
        let deposed = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            leadership.deposed(term),
        )
        .await;
        assert!(deposed.is_err());
    }

    #[test]
    fn identities_differ_per_call_and_name_the_process() {
        let (a, b) = (default_identity(), default_identity());
        assert_ne!(a, b);
        assert!(a.contains(&format!("-{}-", std::process::id())), "{a}");
    }
}
