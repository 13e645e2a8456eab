//! The sweep's one decision: may this lvol go, now or after the grace
//! period? Pure, so every rule is tested here.
//!
//! - An operation journaled on the volume keeps everything of it.
//! - An lvol whose uuid a replica record names stays (the record is the
//!   truth), except the recorded lvol of a replica marked `Failed` (not
//!   `Stale`, which a later delta rebuild may reuse): it goes after the
//!   grace period, once the volume is published nowhere and another node
//!   holds a healthy replica, so a failed copy is never the last one.
//! - With no volume record: the lvol goes at once if the volume is
//!   tombstoned (deleted, or its creation rolled back), after the grace
//!   period if not.
//! - A replica lvol on a node the volume has no replica record for, and a
//!   temporary revert lvol (`-rv`) when no revert is journaled, go after the
//!   grace period.

use crate::store::{ReplicaHealth, ReplicaRecord};

/// What an lvol is, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role<'a> {
    /// `shv-<volume>`: a volume's replica.
    Replica(&'a str),
    /// `shv-<volume>-rv`: a revert's temporary clone.
    Revert(&'a str),
}

impl<'a> Role<'a> {
    /// Reads the role from an lvol name; `None` for any other lvol.
    pub fn of(lvol_name: &'a str) -> Option<Self> {
        if let Some(v) = crate::naming::volume_of_lvol(lvol_name) {
            Some(Role::Replica(v))
        } else {
            crate::naming::volume_of_revert_lvol(lvol_name).map(Role::Revert)
        }
    }

    /// The volume the lvol belongs to.
    pub fn volume(&self) -> &'a str {
        match self {
            Role::Replica(v) | Role::Revert(v) => v,
        }
    }
}

/// Why an lvol may be deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Why {
    /// Its volume is deleted (tombstoned).
    Tombstoned,
    /// No record explains it.
    Unexplained,
    /// It is a failed replica nothing uses any more.
    FailedReplica,
    /// It is a revert's temporary clone and no revert is in flight.
    StaleRevert,
}

impl Why {
    /// For the log.
    pub fn describe(self) -> &'static str {
        match self {
            Why::Tombstoned => "its volume was deleted",
            Why::Unexplained => "no volume record, replica record or journal entry explains it",
            Why::FailedReplica => "it is the lvol of a failed replica that nothing uses and another node holds a healthy replica",
            Why::StaleRevert => "it is a temporary revert lvol and no revert is in progress",
        }
    }
}

/// The verdict on one lvol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Leave it.
    Keep,
    /// Delete it now.
    Delete(Why),
    /// Delete it once it has been in this state for the grace period.
    DeleteAfterGrace(Why),
}

/// What the store says about one volume.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// An operation on it is journaled.
    pub busy: bool,
    /// Its replica records, if the volume record exists.
    pub replicas: Option<Vec<ReplicaRecord>>,
    /// It is published somewhere.
    pub published: bool,
    /// It is tombstoned.
    pub tombstoned: bool,
}

/// The verdict on the lvol `lvol_uuid` of role `role` on `node`.
pub fn judge(role: Role<'_>, lvol_uuid: &str, node: &str, facts: &Facts) -> Verdict {
    if facts.busy {
        return Verdict::Keep;
    }
    let Some(replicas) = &facts.replicas else {
        return if facts.tombstoned {
            Verdict::Delete(Why::Tombstoned)
        } else {
            Verdict::DeleteAfterGrace(Why::Unexplained)
        };
    };
    let recorded = replicas.iter().find(|r| r.lvol_uuid == lvol_uuid);
    match (role, recorded) {
        (Role::Replica(_), Some(r)) if r.node == node && r.health == ReplicaHealth::Failed => {
            let healthy_elsewhere = replicas
                .iter()
                .any(|o| o.node != node && o.health == ReplicaHealth::Healthy);
            if healthy_elsewhere && !facts.published {
                Verdict::DeleteAfterGrace(Why::FailedReplica)
            } else {
                Verdict::Keep
            }
        }
        (_, Some(_)) => Verdict::Keep,
        // A replica lvol whose node's record names another lvol: unknown, keep.
        (Role::Replica(_), None) if replicas.iter().any(|r| r.node == node) => Verdict::Keep,
        (Role::Replica(_), None) => Verdict::DeleteAfterGrace(Why::Unexplained),
        (Role::Revert(_), None) => Verdict::DeleteAfterGrace(Why::StaleRevert),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VOL: &str = "0b7c3f1e-5d2a-4c1b-9e8f-123456789abc";

    fn replica(node: &str, uuid: &str, health: ReplicaHealth) -> ReplicaRecord {
        ReplicaRecord {
            version: 1,
            volume_id: VOL.into(),
            node: node.into(),
            lvstore: "shorthorn".into(),
            lvol_uuid: uuid.into(),
            health,
            generation: 1,
            reason: None,
            since: None,
        }
    }

    fn facts(replicas: Vec<ReplicaRecord>) -> Facts {
        Facts {
            replicas: Some(replicas),
            ..Facts::default()
        }
    }

    #[test]
    fn a_journaled_operation_keeps_everything_of_its_volume() {
        let busy = Facts {
            busy: true,
            tombstoned: true,
            ..Facts::default()
        };
        assert_eq!(judge(Role::Replica(VOL), "u", "a", &busy), Verdict::Keep);
        assert_eq!(judge(Role::Revert(VOL), "u", "a", &busy), Verdict::Keep);
    }

    #[test]
    fn without_a_volume_only_a_tombstone_deletes_at_once() {
        let gone = Facts {
            tombstoned: true,
            ..Facts::default()
        };
        assert_eq!(
            judge(Role::Replica(VOL), "u", "a", &gone),
            Verdict::Delete(Why::Tombstoned)
        );
        assert_eq!(
            judge(Role::Replica(VOL), "u", "a", &Facts::default()),
            Verdict::DeleteAfterGrace(Why::Unexplained)
        );
    }

    #[test]
    fn recorded_replicas_stay_unless_failed_unused_and_not_the_last_copy() {
        let healthy = facts(vec![
            replica("a", "ua", ReplicaHealth::Healthy),
            replica("b", "ub", ReplicaHealth::Healthy),
        ]);
        assert_eq!(
            judge(Role::Replica(VOL), "ua", "a", &healthy),
            Verdict::Keep
        );

        let failed = facts(vec![
            replica("a", "ua", ReplicaHealth::Failed),
            replica("b", "ub", ReplicaHealth::Healthy),
        ]);
        assert_eq!(
            judge(Role::Replica(VOL), "ua", "a", &failed),
            Verdict::DeleteAfterGrace(Why::FailedReplica)
        );
        let published = Facts {
            published: true,
            ..failed.clone()
        };
        assert_eq!(
            judge(Role::Replica(VOL), "ua", "a", &published),
            Verdict::Keep
        );

        let all_failed = facts(vec![
            replica("a", "ua", ReplicaHealth::Failed),
            replica("b", "ub", ReplicaHealth::Failed),
        ]);
        assert_eq!(
            judge(Role::Replica(VOL), "ua", "a", &all_failed),
            Verdict::Keep
        );

        for kept in [ReplicaHealth::Degraded, ReplicaHealth::Rebuilding] {
            let f = facts(vec![
                replica("a", "ua", kept),
                replica("b", "ub", ReplicaHealth::Healthy),
            ]);
            assert_eq!(
                judge(Role::Replica(VOL), "ua", "a", &f),
                Verdict::Keep,
                "{kept:?}"
            );
        }
    }

    #[test]
    fn replica_lvols_no_record_names_wait_out_the_grace_period() {
        let f = facts(vec![replica("b", "ub", ReplicaHealth::Healthy)]);
        assert_eq!(
            judge(Role::Replica(VOL), "ua", "a", &f),
            Verdict::DeleteAfterGrace(Why::Unexplained)
        );
        // The node's record names another lvol uuid: not ours to judge.
        let other = facts(vec![replica("a", "u-other", ReplicaHealth::Failed)]);
        assert_eq!(judge(Role::Replica(VOL), "ua", "a", &other), Verdict::Keep);
    }

    #[test]
    fn a_revert_clone_goes_after_the_grace_period_unless_a_record_names_it() {
        let f = facts(vec![replica("a", "ua", ReplicaHealth::Healthy)]);
        assert_eq!(
            judge(Role::Revert(VOL), "urv", "a", &f),
            Verdict::DeleteAfterGrace(Why::StaleRevert)
        );
        let named = facts(vec![replica("a", "urv", ReplicaHealth::Healthy)]);
        assert_eq!(judge(Role::Revert(VOL), "urv", "a", &named), Verdict::Keep);
    }

    #[test]
    fn roles_come_from_the_names() {
        let replica = crate::naming::replica_lvol(VOL);
        let revert = crate::naming::revert_lvol(VOL);
        assert_eq!(Role::of(&replica), Some(Role::Replica(VOL)));
        assert_eq!(Role::of(&revert), Some(Role::Revert(VOL)));
        assert_eq!(Role::of("shs-x"), None);
        assert_eq!(Role::of("shorthorn-cluster-x"), None);
    }
}
