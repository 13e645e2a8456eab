//! The demo's cleanup guard: everything the tour creates is recorded as the
//! call that undoes it, and undone at the end whether the tour succeeded,
//! failed or was interrupted.

use std::path::PathBuf;

use crate::csi_steps::Csi;

/// One thing to undo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undo {
    /// NodeUnpublishVolume at `target`.
    NodeUnpublish {
        /// Volume id.
        volume: String,
        /// Target path.
        target: PathBuf,
    },
    /// NodeUnstageVolume at `staging`.
    NodeUnstage {
        /// Volume id.
        volume: String,
        /// Staging path.
        staging: PathBuf,
    },
    /// ControllerUnpublishVolume from `node`.
    ControllerUnpublish {
        /// Volume id.
        volume: String,
        /// Node id.
        node: String,
    },
    /// DeleteSnapshot.
    DeleteSnapshot(String),
    /// DeleteVolume.
    DeleteVolume(String),
}

impl Undo {
    /// Undo order: everything on the node first, then controller
    /// unpublishes, then deletions (each kind newest first).
    fn phase(&self) -> u8 {
        match self {
            Undo::NodeUnpublish { .. } => 0,
            Undo::NodeUnstage { .. } => 1,
            Undo::ControllerUnpublish { .. } => 2,
            Undo::DeleteSnapshot(_) | Undo::DeleteVolume(_) => 3,
        }
    }

    /// What is undone, for the operator.
    pub fn describe(&self) -> String {
        match self {
            Undo::NodeUnpublish { volume, target } => {
                format!("unmount {volume} from {}", target.display())
            }
            Undo::NodeUnstage { volume, staging } => {
                format!("unstage {volume} from {}", staging.display())
            }
            Undo::ControllerUnpublish { volume, node } => {
                format!("unpublish {volume} from node {node}")
            }
            Undo::DeleteSnapshot(id) => format!("delete snapshot {id}"),
            Undo::DeleteVolume(id) => format!("delete volume {id}"),
        }
    }

    async fn run(&self, csi: &mut Csi) -> anyhow::Result<()> {
        match self {
            Undo::NodeUnpublish { volume, target } => csi.node_unpublish(volume, target).await,
            Undo::NodeUnstage { volume, staging } => csi.unstage(volume, staging).await,
            Undo::ControllerUnpublish { volume, node } => {
                csi.controller_unpublish(volume, node).await
            }
            Undo::DeleteSnapshot(id) => csi.delete_snapshot(id).await,
            Undo::DeleteVolume(id) => csi.delete_volume(id).await,
        }
    }
}

/// What is left to undo. Dropping it with work left (a panic) prints what
/// must be removed by hand.
#[derive(Debug, Default)]
pub struct Cleanup {
    pending: Vec<Undo>,
}

impl Cleanup {
    /// Records something created.
    pub fn push(&mut self, undo: Undo) {
        self.pending.push(undo);
    }

    /// Runs `undo` now (the tour does this on purpose) and forgets it.
    pub async fn undo_now(&mut self, csi: &mut Csi, undo: &Undo) -> anyhow::Result<()> {
        undo.run(csi).await?;
        self.pending.retain(|u| u != undo);
        Ok(())
    }

    /// Undoes everything, continuing past failures; returns what could not
    /// be undone (those stay recorded).
    pub async fn run(&mut self, csi: &mut Csi) -> Vec<String> {
        let mut order: Vec<(usize, Undo)> = self.pending.drain(..).enumerate().collect();
        order.sort_by_key(|(i, u)| (u.phase(), std::cmp::Reverse(*i)));
        let mut failures = Vec::new();
        for (_, undo) in order {
            if let Err(e) = undo.run(csi).await {
                failures.push(format!("{}: {e:#}", undo.describe()));
                self.pending.push(undo);
            }
        }
        failures
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        eprintln!("shorthorn ctl demo: these were NOT cleaned up; remove them by hand:");
        for undo in &self.pending {
            eprintln!("  - {}", undo.describe());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undo_order_unmounts_before_unpublishing_and_deletes_last() {
        let vol = |v: &str| v.to_string();
        let mut steps = vec![
            Undo::DeleteVolume(vol("a")),
            Undo::ControllerUnpublish {
                volume: vol("a"),
                node: vol("n"),
            },
            Undo::NodeUnstage {
                volume: vol("a"),
                staging: "/s".into(),
            },
            Undo::NodeUnpublish {
                volume: vol("a"),
                target: "/t".into(),
            },
            Undo::DeleteSnapshot(vol("s")),
            Undo::DeleteVolume(vol("clone")),
        ];
        let mut order: Vec<(usize, Undo)> = steps.drain(..).enumerate().collect();
        order.sort_by_key(|(i, u)| (u.phase(), std::cmp::Reverse(*i)));
        let described: Vec<String> = order.iter().map(|(_, u)| u.describe()).collect();
        assert_eq!(
            described,
            [
                "unmount a from /t",
                "unstage a from /s",
                "unpublish a from node n",
                "delete volume clone",
                "delete snapshot s",
                "delete volume a",
            ]
        );
    }
}
