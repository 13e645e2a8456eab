//! What this controller changed on a node's lvstore since the node's space
//! was last read, so placement can use a cached view without double-booking.
//!
//! Refreshing a node lists every bdev on it (`bdev_get_bdevs`: SPDK's
//! `bdev_lvol_get_lvols` carries no lvol size, so it cannot give the
//! provisioned bytes), which grows with the number of volumes. CreateVolume
//! therefore places on a view up to `node_refresh_max_age_ms` old, corrected
//! by this ledger:
//!
//! - a placement *reserves* its size (and one replica) on every chosen node
//!   before any lvol exists, under the registry's placement lock, so a
//!   concurrent or back-to-back placement sees it at once;
//! - the reservation is *settled* when the create ends (success or failure,
//!   even if the request is dropped), stamped with the ledger's clock;
//! - a refresh notes the clock when it *starts* reading; when it ends, it
//!   drops the settled reservations it must have seen (settled before it
//!   started) and keeps the rest (pending, or settled while it ran: counted
//!   twice at worst, never missed);
//! - removals (deleted lvols) lower the view until any refresh ends, since a
//!   refresh may have read before the deletion (then its view still counts
//!   the lvol: over, never under);
//! - a refresh that started before the one already applied is discarded, so
//!   an older read never replaces a newer one.
//!
//! Every error is on the side of counting too much; a placement refused on
//! that view is retried after a full refresh before RESOURCE_EXHAUSTED.

use crate::capacity::LvstoreSpace;

/// Handle of one reservation, to settle it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReservationId(u64);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    /// Bytes and one replica placed here; `settled` is the clock when the
    /// create ended, `None` while it runs.
    Reserved {
        id: u64,
        bytes: u64,
        settled: Option<u64>,
    },
    /// Bytes and `replicas` replicas deleted here.
    Removed { bytes: u64, replicas: usize },
}

/// The adjustments of one node's cached view (pure: no I/O, no time).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    clock: u64,
    next_id: u64,
    applied_start: Option<u64>,
    entries: Vec<Entry>,
}

impl Ledger {
    /// Reserves `bytes` and one replica for a create that is about to run.
    pub fn reserve(&mut self, bytes: u64) -> ReservationId {
        self.next_id += 1;
        self.entries.push(Entry::Reserved {
            id: self.next_id,
            bytes,
            settled: None,
        });
        ReservationId(self.next_id)
    }

    /// Marks a reservation's create as ended: from now on a refresh sees
    /// whatever it left on the node.
    pub fn settle(&mut self, id: ReservationId) {
        self.clock += 1;
        let now = self.clock;
        for entry in &mut self.entries {
            if let Entry::Reserved {
                id: i,
                settled: s @ None,
                ..
            } = entry
            {
                if *i == id.0 {
                    *s = Some(now);
                }
            }
        }
    }

    /// Records that lvols of `bytes` in total, `replicas` of them Shorthorn
    /// replicas, were deleted from the node.
    pub fn removed(&mut self, bytes: u64, replicas: usize) {
        self.clock += 1;
        self.entries.push(Entry::Removed { bytes, replicas });
    }

    /// Call when a refresh is about to read the node; pass the result to
    /// [`Ledger::refreshed`].
    pub fn refresh_started(&self) -> u64 {
        self.clock
    }

    /// Call when a refresh that started at `started` has read the node.
    /// Returns whether its reading is to be applied (false: a refresh that
    /// started later has already been applied).
    pub fn refreshed(&mut self, started: u64) -> bool {
        if self.applied_start.is_some_and(|applied| applied > started) {
            return false;
        }
        self.applied_start = Some(started);
        self.entries.retain(|e| match e {
            Entry::Reserved { settled, .. } => settled.is_none_or(|at| at > started),
            Entry::Removed { .. } => false,
        });
        true
    }

    /// The refreshed `space` and `replicas` of the node, adjusted.
    pub fn apply(&self, space: LvstoreSpace, replicas: usize) -> (LvstoreSpace, usize) {
        let mut space = space;
        let mut replicas = replicas;
        for e in &self.entries {
            match e {
                Entry::Reserved { bytes, .. } => {
                    space.provisioned_bytes = space.provisioned_bytes.saturating_add(*bytes);
                    replicas += 1;
                }
                Entry::Removed {
                    bytes,
                    replicas: gone,
                } => {
                    space.provisioned_bytes = space.provisioned_bytes.saturating_sub(*bytes);
                    replicas = replicas.saturating_sub(*gone);
                }
            }
        }
        (space, replicas)
    }

    /// Adjustments not yet covered by a refresh.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the refreshed view needs no adjustment.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn space(provisioned_mib: u64) -> LvstoreSpace {
        LvstoreSpace {
            cluster_size: MIB,
            total_clusters: 100,
            free_clusters: 100,
            provisioned_bytes: provisioned_mib * MIB,
        }
    }

    fn provisioned(l: &Ledger, base_mib: u64) -> u64 {
        l.apply(space(base_mib), 0).0.provisioned_bytes / MIB
    }

    #[test]
    fn back_to_back_reservations_add_up_until_a_refresh_sees_them() {
        let mut l = Ledger::default();
        let a = l.reserve(10 * MIB);
        let b = l.reserve(20 * MIB);
        assert_eq!(provisioned(&l, 5), 35);
        assert_eq!(l.apply(space(5), 2).1, 4);
        l.settle(a);
        l.settle(b);
        // A refresh starting after both settled read both lvols.
        let started = l.refresh_started();
        assert!(l.refreshed(started));
        assert!(l.is_empty());
        assert_eq!(provisioned(&l, 35), 35);
    }

    #[test]
    fn a_refresh_keeps_what_it_may_not_have_seen() {
        let mut l = Ledger::default();
        let settled_before = l.reserve(MIB);
        l.settle(settled_before);
        let started = l.refresh_started();
        // While the refresh reads: one create still running, one ending.
        let _running = l.reserve(2 * MIB);
        let ended_during = l.reserve(4 * MIB);
        l.settle(ended_during);
        assert!(l.refreshed(started));
        // Only the reservation settled before the refresh started is dropped.
        assert_eq!(l.len(), 2);
        assert_eq!(provisioned(&l, 1), 7);
    }

    #[test]
    fn removals_lower_the_view_until_any_refresh_ends() {
        let mut l = Ledger::default();
        let started = l.refresh_started();
        l.removed(8 * MIB, 1);
        assert_eq!(provisioned(&l, 10), 2);
        assert_eq!(l.apply(space(10), 3).1, 2);
        // Even a refresh that started before the deletion drops it: its
        // reading still counts the lvol, which is too much, never too little.
        assert!(l.refreshed(started));
        assert_eq!(provisioned(&l, 10), 10);
        // Never below zero.
        l.removed(50 * MIB, 9);
        assert_eq!(l.apply(space(10), 3), (space(0), 0));
    }

    #[test]
    fn an_older_reading_never_replaces_a_newer_one() {
        let mut l = Ledger::default();
        let old = l.refresh_started();
        let id = l.reserve(MIB);
        l.settle(id);
        let new = l.refresh_started();
        assert!(l.refreshed(new));
        assert!(l.is_empty());
        // The older refresh ends last: its reading may miss the lvol.
        assert!(!l.refreshed(old));
        // Settling twice or an unknown id changes nothing.
        l.settle(id);
        assert!(l.is_empty());
    }
}
