//! When the health monitor last finished a pass. While its passes are
//! recent, what it recorded (leg health, unclean engines, node
//! reachability) is current, and readers that report many volumes at once
//! (ListVolumes) use those records instead of reading every engine again.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How many intervals may pass without a finished pass before the records
/// no longer count as current (one slow pass is not a stopped monitor).
const MISSED_PASSES: u32 = 3;

/// The time of the health monitor's last finished pass.
#[derive(Debug, Default)]
pub struct HealthClock {
    last: Mutex<Option<(Instant, Duration)>>,
}

impl HealthClock {
    /// Notes a finished pass of a monitor that runs every `interval`.
    pub fn passed(&self, interval: Duration) {
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((Instant::now(), interval));
    }

    /// Whether the monitor finished a pass within the last few intervals.
    pub fn is_current(&self) -> bool {
        self.is_current_at(Instant::now())
    }

    fn is_current_at(&self, now: Instant) -> bool {
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|(at, interval)| {
                now.saturating_duration_since(at) <= interval * MISSED_PASSES
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_current_only_while_passes_keep_coming() {
        let clock = HealthClock::default();
        assert!(!clock.is_current(), "no pass yet");
        clock.passed(Duration::from_secs(1));
        assert!(clock.is_current());
        let later = Instant::now() + Duration::from_secs(4);
        assert!(
            !clock.is_current_at(later),
            "three intervals without a pass"
        );
    }
}
