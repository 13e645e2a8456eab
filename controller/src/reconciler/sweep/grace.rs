//! How long the sweep waits ([`SweepPolicy`]) and what it remembers between
//! passes ([`Sweeper`]): when it first saw each lvol it may delete only
//! after the grace period. Knows nothing of the context, which holds a
//! [`Sweeper`].
//!
//! Kept in memory only. A controller restart (or a node the sweep could not
//! read in a pass) starts every clock again, which only ever delays a
//! deletion; a store record of first sightings would outlive the process
//! that made them and be one more thing to get wrong.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::verdict::Why;
use crate::config::SweepConfig;

/// How long the sweep waits before deleting what it cannot explain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepPolicy {
    /// How long an lvol must stay unexplained (or a failed replica unused)
    /// before it is deleted.
    pub grace: Duration,
    /// How long a tombstone is kept when some node may still hold lvols of
    /// its volume.
    pub tombstone_ttl: Duration,
}

impl Default for SweepPolicy {
    fn default() -> Self {
        Self::from(&SweepConfig::default())
    }
}

impl From<&SweepConfig> for SweepPolicy {
    fn from(c: &SweepConfig) -> Self {
        Self {
            grace: Duration::from_secs(c.grace_secs),
            tombstone_ttl: Duration::from_secs(c.tombstone_ttl_secs),
        }
    }
}

/// The sweep's policy and what it remembers between passes.
#[derive(Debug, Default)]
pub struct Sweeper {
    /// The policy.
    pub policy: SweepPolicy,
    pub(super) sightings: Sightings,
}

impl Sweeper {
    /// A sweeper with `policy` and nothing remembered yet.
    pub fn new(policy: SweepPolicy) -> Self {
        Self {
            policy,
            sightings: Sightings::default(),
        }
    }
}

/// One lvol the sweep would delete after the grace period, for one reason.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Suspect {
    /// Node holding it.
    pub node: String,
    /// Its uuid (a recreated lvol of the same name is another suspect).
    pub lvol_uuid: String,
    /// Why it may go (a suspect whose reason changes starts again).
    pub why: Why,
}

/// First sightings of suspects, and which were seen in the current pass.
#[derive(Debug, Default)]
pub struct Sightings {
    first_seen: Mutex<HashMap<Suspect, Instant>>,
    this_pass: Mutex<HashSet<Suspect>>,
}

impl Sightings {
    /// Records that `suspect` is seen at `now`; returns how long it has been
    /// seen without interruption (zero the first time).
    pub fn seen(&self, suspect: &Suspect, now: Instant) -> Duration {
        self.this_pass
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(suspect.clone());
        let mut first = self
            .first_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let since = *first.entry(suspect.clone()).or_insert(now);
        now.saturating_duration_since(since)
    }

    /// Forgets `suspect` (deleted, or explained after all).
    pub fn forget(&self, suspect: &Suspect) {
        self.first_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(suspect);
    }

    /// Ends a pass: suspects not seen in it are forgotten, so one that
    /// disappears and comes back (or whose node was unreadable) starts again.
    pub fn end_pass(&self) {
        let seen = std::mem::take(
            &mut *self
                .this_pass
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        self.first_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|s, _| seen.contains(s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suspect(uuid: &str) -> Suspect {
        Suspect {
            node: "n".into(),
            lvol_uuid: uuid.into(),
            why: Why::Unexplained,
        }
    }

    #[test]
    fn the_clock_runs_while_seen_every_pass_and_restarts_after_a_gap() {
        let s = Sightings::default();
        let t0 = Instant::now();
        let a = suspect("a");
        assert_eq!(s.seen(&a, t0), Duration::ZERO);
        s.end_pass();
        assert_eq!(
            s.seen(&a, t0 + Duration::from_secs(5)),
            Duration::from_secs(5)
        );
        s.end_pass();
        s.end_pass(); // a pass in which `a` was not seen
        assert_eq!(s.seen(&a, t0 + Duration::from_secs(9)), Duration::ZERO);
        let other_reason = Suspect {
            why: Why::FailedReplica,
            ..a.clone()
        };
        assert_eq!(
            s.seen(&other_reason, t0 + Duration::from_secs(10)),
            Duration::ZERO
        );
        s.forget(&a);
        assert_eq!(s.seen(&a, t0 + Duration::from_secs(11)), Duration::ZERO);
    }
}
