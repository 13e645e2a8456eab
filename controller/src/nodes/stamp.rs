//! The cluster stamp: a node's lvstore says which Shorthorn cluster owns it.
//!
//! The stamp is a thin lvol named `shorthorn-cluster-<cluster id>` on the
//! node's lvstore ([`naming::cluster_stamp_lvol`]). An lvol rather than the
//! lvstore's name, because the lvstore name is configuration (`lvstore =`)
//! and every lvol alias carries it; rather than a file beside spdk_tgt,
//! because the stamp must live and die with the data it guards (a wiped or
//! replaced disk loses both). A thin lvol with nothing written allocates no
//! cluster, survives spdk_tgt restarts (its name is blobstore metadata, read
//! back when examine loads the lvstore), is listed by the same
//! `bdev_lvol_get_lvols` the sweep reads anyway, and is removed only by an
//! explicit `bdev_lvol_delete`. Space accounting leaves it out.
//!
//! Rules ([`ensure`], run by bootstrap):
//! - stamped by this cluster only: the node is ours;
//! - no stamp and no Shorthorn data lvol: a new node, stamped now;
//! - no stamp but Shorthorn data lvols (a node from before stamps existed,
//!   or whose stamp was deleted by hand): usable, but not stamped and never
//!   swept until the orphan sweep proves from the store that the node is
//!   ours (one of its replica lvols has the uuid a replica record names);
//! - any other cluster's stamp: bootstrap refuses the node
//!   ([`ControllerError::ForeignNode`]), so it is neither used nor swept,
//!   unless the operator lists that cluster id under `[sweep]
//!   adopt_clusters`: then the node is re-stamped as ours (our stamp is
//!   created first, the foreign one deleted after).

use spdk_client::{BdevLvolCreateParams, BdevLvolGetLvolsParams, Lvol};

use super::{primitives, NodeHandle};
use crate::error::{ControllerError, Result};
use crate::naming;

/// The cluster this controller belongs to, as it stamps nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterIdentity {
    /// This cluster's id (from the store's cluster record).
    pub id: String,
    /// Other clusters' ids whose nodes the operator hands over to this one.
    pub adopt: Vec<String>,
}

/// What a node's lvstore says about who owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stamp {
    /// Stamped by this cluster, and only by it.
    Ours,
    /// Not stamped; holds this many Shorthorn data lvols.
    Unstamped {
        /// Replica, revert and snapshot lvols on the lvstore.
        data_lvols: usize,
    },
    /// Stamped by other clusters (and maybe by this one too).
    Foreign {
        /// The other clusters' ids.
        clusters: Vec<String>,
    },
}

impl Stamp {
    /// A short description for status views.
    pub fn describe(&self) -> String {
        match self {
            Stamp::Ours => "this cluster".to_string(),
            Stamp::Unstamped { data_lvols } => format!(
                "unstamped, holding {data_lvols} Shorthorn lvols: not swept until the store proves the node is this cluster's"
            ),
            Stamp::Foreign { clusters } => format!(
                "stamped by other cluster(s) {}: not used, not swept",
                clusters.join(", ")
            ),
        }
    }
}

/// Classifies a node from the names of the lvols on its lvstore.
pub fn classify<'a>(lvol_names: impl IntoIterator<Item = &'a str>, cluster_id: &str) -> Stamp {
    let mut ours = false;
    let mut others = Vec::new();
    let mut data_lvols = 0;
    for name in lvol_names {
        if let Some(id) = naming::cluster_of_stamp(name) {
            if id == cluster_id {
                ours = true;
            } else {
                others.push(id.to_string());
            }
        } else if naming::is_data_lvol(name) {
            data_lvols += 1;
        }
    }
    match (ours, others.is_empty()) {
        (_, false) => Stamp::Foreign { clusters: others },
        (true, true) => Stamp::Ours,
        (false, true) => Stamp::Unstamped { data_lvols },
    }
}

/// Every lvol on the node's lvstore.
pub async fn lvols(node: &NodeHandle) -> Result<Vec<Lvol>> {
    node.client
        .bdev_lvol_get_lvols(&BdevLvolGetLvolsParams {
            lvs_name: Some(node.config.lvstore.clone()),
            ..Default::default()
        })
        .await
        .map_err(|e| node.call_failed("bdev_lvol_get_lvols", e).into())
}

/// The node's stamp as its lvstore says now, with the lvols it was read from.
pub async fn read(node: &NodeHandle, cluster_id: &str) -> Result<(Stamp, Vec<Lvol>)> {
    let lvols = lvols(node).await?;
    let stamp = classify(lvols.iter().map(|l| l.name.as_str()), cluster_id);
    node.update_status(|s| s.stamp = Some(stamp.clone()));
    Ok((stamp, lvols))
}

/// Stamps the node as a member of `cluster_id` (idempotent).
pub async fn stamp(node: &NodeHandle, cluster_id: &str) -> Result<()> {
    let params = BdevLvolCreateParams {
        lvol_name: naming::cluster_stamp_lvol(cluster_id),
        size_in_mib: 1,
        thin_provision: Some(true),
        lvs_name: Some(node.config.lvstore.clone()),
        ..Default::default()
    };
    match node.client.bdev_lvol_create(&params).await {
        Ok(_) => {}
        Err(e) if e.is_already_exists() => {}
        Err(e) => return Err(node.call_failed("bdev_lvol_create", e).into()),
    }
    node.update_status(|s| s.stamp = Some(Stamp::Ours));
    tracing::info!(
        node = node.name(),
        cluster = cluster_id,
        "node stamped as a member of this cluster"
    );
    Ok(())
}

/// Applies the rules of this module at bootstrap: stamps a new node, takes
/// over a node of a cluster the operator listed, and refuses any other
/// cluster's node. Returns the node's stamp.
pub async fn ensure(node: &NodeHandle, cluster: &ClusterIdentity) -> Result<Stamp> {
    let (stamp, _) = read(node, &cluster.id).await?;
    match &stamp {
        Stamp::Ours => Ok(stamp),
        Stamp::Unstamped { data_lvols: 0 } => {
            self::stamp(node, &cluster.id).await?;
            Ok(Stamp::Ours)
        }
        Stamp::Unstamped { data_lvols } => {
            tracing::warn!(
                node = node.name(),
                data_lvols,
                "node holds Shorthorn lvols but no cluster stamp; the orphan sweep leaves it alone until the store proves it is this cluster's"
            );
            Ok(stamp)
        }
        Stamp::Foreign { clusters } if clusters.iter().all(|c| cluster.adopt.contains(c)) => {
            tracing::warn!(
                node = node.name(),
                from = %clusters.join(", "),
                to = %cluster.id,
                "adopting a node of another cluster, as [sweep] adopt_clusters says"
            );
            self::stamp(node, &cluster.id).await?;
            for other in clusters {
                let alias = format!(
                    "{}/{}",
                    node.config.lvstore,
                    naming::cluster_stamp_lvol(other)
                );
                primitives::remove_lvol(node, &alias).await?;
            }
            Ok(Stamp::Ours)
        }
        Stamp::Foreign { clusters } => Err(ControllerError::ForeignNode {
            node: node.name().to_string(),
            lvstore: node.config.lvstore.clone(),
            stamps: clusters.join(", "),
            cluster: cluster.id.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: &str = "11111111-1111-4111-8111-111111111111";
    const THEIRS: &str = "22222222-2222-4222-8222-222222222222";
    const VOL: &str = "0b7c3f1e-5d2a-4c1b-9e8f-123456789abc";

    fn names(list: &[String]) -> impl Iterator<Item = &str> {
        list.iter().map(String::as_str)
    }

    #[test]
    fn a_node_is_ours_only_when_no_other_cluster_stamped_it() {
        let ours = naming::cluster_stamp_lvol(OURS);
        let theirs = naming::cluster_stamp_lvol(THEIRS);
        let replica = naming::replica_lvol(VOL);
        assert_eq!(
            classify(names(&[ours.clone(), replica.clone()]), OURS),
            Stamp::Ours
        );
        assert_eq!(
            classify(names(&[ours, theirs.clone()]), OURS),
            Stamp::Foreign {
                clusters: vec![THEIRS.to_string()]
            }
        );
        assert_eq!(
            classify(names(&[theirs, replica.clone()]), OURS),
            Stamp::Foreign {
                clusters: vec![THEIRS.to_string()]
            }
        );
        let other_data = [
            replica,
            naming::revert_lvol(VOL),
            naming::snapshot_lvol(VOL),
            "foreign".into(),
        ];
        assert_eq!(
            classify(names(&other_data), OURS),
            Stamp::Unstamped { data_lvols: 3 }
        );
        assert_eq!(
            classify(names(&[]), OURS),
            Stamp::Unstamped { data_lvols: 0 }
        );
    }
}
