//! The write fence of an [`EtcdStore`](super::EtcdStore): which writes the
//! leader elector currently allows.
//!
//! With no elector (tools, tests that are the only writer) the fence is open
//! and writes are unconditional. Once an elector runs, a standby's writes are
//! refused before they leave the process, and a leader's writes carry an etcd
//! compare on the leader key's create revision: if the lease behind that key
//! expired or was revoked (the key is gone), or another controller created
//! it anew, etcd refuses the whole transaction. That compare is what makes a
//! deposed controller harmless even before it notices; the local validity
//! deadline only makes it refuse sooner.

use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::watch;

use crate::store::{Result, StoreError};

/// What writes are allowed now; shared by every clone of the store.
#[derive(Debug)]
pub struct LeaderFence {
    state: Mutex<FenceState>,
    /// The last term (leader key revision) a refused write ended.
    lost: watch::Sender<u64>,
}

impl Default for LeaderFence {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            lost: watch::Sender::new(0),
        }
    }
}

#[derive(Debug, Clone, Default)]
enum FenceState {
    /// No elector: writes are unconditional.
    #[default]
    Open,
    /// Not the leader: every write is refused with this reason.
    Closed { reason: String },
    /// The leader, as long as the leader key is the one created at
    /// `revision` and the lease was renewed recently enough.
    Held { revision: u64, valid_until: Instant },
}

/// The condition a write must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteCondition {
    /// No condition (no elector).
    None,
    /// The leader key must still have this create revision.
    LeaderKey {
        /// Create revision of this controller's leader key.
        revision: u64,
    },
}

impl LeaderFence {
    fn state(&self) -> std::sync::MutexGuard<'_, FenceState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Refuses every write from now on; `reason` is what callers are told.
    pub fn close(&self, reason: impl Into<String>) {
        *self.state() = FenceState::Closed {
            reason: reason.into(),
        };
    }

    /// Admits writes conditional on the leader key created at `revision`,
    /// until `valid_until` (when the lease may be about to expire).
    pub fn hold(&self, revision: u64, valid_until: Instant) {
        *self.state() = FenceState::Held {
            revision,
            valid_until,
        };
    }

    /// Pushes the validity of the lease held at `revision` to `valid_until`
    /// (after a renewal); false when the fence is no longer held at it.
    pub fn renew(&self, revision: u64, valid_until: Instant) -> bool {
        match &mut *self.state() {
            FenceState::Held {
                revision: held,
                valid_until: until,
            } if *held == revision => {
                *until = valid_until;
                true
            }
            _ => false,
        }
    }

    /// Resolves once a write found that the leader key held at `revision`
    /// is no longer this controller's (for the elector).
    pub async fn lost(&self, revision: u64) {
        let mut lost = self.lost.subscribe();
        // The sender lives as long as `self`, so this cannot fail early.
        let _ = lost.wait_for(|r| *r == revision).await;
    }

    /// The condition the next write must carry, or `NotLeader`.
    pub(crate) fn admit(&self) -> Result<WriteCondition> {
        match &*self.state() {
            FenceState::Open => Ok(WriteCondition::None),
            FenceState::Closed { reason } => Err(StoreError::NotLeader {
                reason: reason.clone(),
            }),
            FenceState::Held {
                revision,
                valid_until,
            } => {
                let now = Instant::now();
                if now >= *valid_until {
                    return Err(StoreError::NotLeader {
                        reason: format!(
                            "this controller lost leadership: its etcd lease was not renewed in time (validity ended {:?} ago)",
                            now - *valid_until
                        ),
                    });
                }
                Ok(WriteCondition::LeaderKey {
                    revision: *revision,
                })
            }
        }
    }

    /// etcd refused a write because the leader key held at `revision` is
    /// gone or someone else's: closes the fence and wakes the elector.
    pub(crate) fn deposed(&self, revision: u64, reason: &str) {
        let mut state = self.state();
        if matches!(&*state, FenceState::Held { revision: held, .. } if *held == revision) {
            *state = FenceState::Closed {
                reason: reason.to_string(),
            };
            drop(state);
            self.lost.send_replace(revision);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn open_closed_held_and_expired() {
        let fence = LeaderFence::default();
        assert_eq!(fence.admit().unwrap(), WriteCondition::None);
        fence.close("standing by");
        assert!(
            matches!(fence.admit(), Err(StoreError::NotLeader { reason }) if reason == "standing by")
        );
        fence.hold(7, Instant::now() + Duration::from_secs(60));
        assert_eq!(
            fence.admit().unwrap(),
            WriteCondition::LeaderKey { revision: 7 }
        );
        assert!(!fence.renew(8, Instant::now()), "another term's renewal");
        assert!(fence.renew(7, Instant::now()));
        assert!(
            matches!(fence.admit(), Err(StoreError::NotLeader { reason }) if reason.contains("not renewed in time"))
        );
    }

    #[tokio::test]
    async fn a_refused_write_closes_the_fence_and_wakes_the_elector() {
        let fence = LeaderFence::default();
        fence.hold(7, Instant::now() + Duration::from_secs(60));
        fence.deposed(6, "an old term");
        assert!(fence.admit().is_ok(), "a stale term does not close it");
        fence.deposed(7, "key gone");
        assert!(matches!(fence.admit(), Err(StoreError::NotLeader { .. })));
        tokio::time::timeout(Duration::from_secs(1), fence.lost(7))
            .await
            .expect("the elector is woken even if it was not waiting yet");
        let other_term = tokio::time::timeout(Duration::from_millis(50), fence.lost(8)).await;
        assert!(other_term.is_err(), "a later term is not woken by it");
    }
}
