//! What a thin rebuild copies: the source replica's snapshot chain read
//! from SPDK, the part of it the target already holds, the target's layers
//! to discard, and whether the target's lvstore has room.

use serde::{Deserialize, Serialize};
use spdk_client::BdevLvolGetLvstoresParams;

use crate::error::{ControllerError, Result};
use crate::nodes::NodeHandle;

/// Free clusters a rebuild target keeps beyond the data it receives, as a
/// fraction of its lvstore (1/100, at least one cluster): the headroom the
/// snapshot check keeps too, since a thin lvstore that fills up drops its
/// raid leg silently on real SPDK.
const RESERVE_DIVISOR: u64 = 100;

/// One layer of a snapshot chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    /// lvol name (without the lvstore), e.g. `shs-<snapshot id>`.
    pub name: String,
    /// lvol uuid on the node it was read on.
    pub uuid: String,
    /// Clusters this layer itself owns (what a shallow copy of it moves).
    pub clusters: u64,
}

/// The snapshot chain under the lvol `alias` on `node`, oldest first (the
/// lvol itself not included).
pub async fn chain(node: &NodeHandle, alias: &str) -> Result<Vec<Layer>> {
    let mut out = Vec::new();
    let mut next = lvol_info(node, alias).await?.and_then(|l| l.base_snapshot);
    while let Some(name) = next {
        let alias = format!("{}/{name}", node.config.lvstore);
        let Some(info) = lvol_info(node, &alias).await? else {
            return Err(ControllerError::Internal(format!(
                "snapshot {alias} on {} is named as a parent but cannot be read",
                node.name()
            )));
        };
        let uuid = node
            .client
            .bdev_get(&alias)
            .await
            .map_err(|e| node.call_failed("bdev_get_bdevs", e))?
            .map(|b| b.name)
            .unwrap_or_default();
        out.push(Layer {
            name,
            uuid,
            clusters: info.num_allocated_clusters,
        });
        next = info.base_snapshot;
        if out.len() > 4096 {
            return Err(ControllerError::Internal(format!(
                "the snapshot chain under {alias} on {} does not end",
                node.name()
            )));
        }
    }
    out.reverse();
    Ok(out)
}

/// The lvol part of bdev `alias` on `node` (`None` when it does not exist).
pub async fn lvol_info(
    node: &NodeHandle,
    alias: &str,
) -> Result<Option<spdk_client::LvolDriverInfo>> {
    Ok(node
        .client
        .bdev_get(alias)
        .await
        .map_err(|e| node.call_failed("bdev_get_bdevs", e))?
        .and_then(|b| b.driver_specific.lvol))
}

/// How the target's copy relates to the source's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainPlan {
    /// Newest layer of the source's chain the target holds already (the
    /// target's lvol of that name is the base of the copy), if any.
    pub base: Option<Layer>,
    /// Source snapshots to copy, oldest first.
    pub layers: Vec<Layer>,
    /// Target lvols above `base` in its old chain, newest first, to delete
    /// once the rebuilt replica is current (its old live lvol excluded).
    pub discard: Vec<String>,
}

/// Splits the source chain at the newest layer the target shares with it.
/// `target_chain` is the chain under the target's old replica lvol (delta
/// rebuild), or `None` on a node that holds none: there a layer counts as
/// held when an lvol of its name exists (`held`).
pub fn split(source_chain: &[Layer], target_chain: Option<&[Layer]>, held: &[bool]) -> ChainPlan {
    let shared = match target_chain {
        Some(t) => source_chain
            .iter()
            .zip(t.iter())
            .take_while(|(s, t)| s.name == t.name)
            .count(),
        None => held.iter().rposition(|h| *h).map_or(0, |i| i + 1),
    };
    let discard = target_chain
        .map(|t| {
            t.iter()
                .skip(shared)
                .rev()
                .map(|l| l.name.clone())
                .collect()
        })
        .unwrap_or_default();
    ChainPlan {
        base: shared.checked_sub(1).map(|i| source_chain[i].clone()),
        layers: source_chain[shared..].to_vec(),
        discard,
    }
}

/// RESOURCE_EXHAUSTED unless the target's lvstore can take `data_bytes`
/// plus the reserve. Returns its cluster size.
pub async fn check_space(node: &NodeHandle, volume_id: &str, data_bytes: u64) -> Result<u64> {
    let lvs = node
        .client
        .bdev_lvol_get_lvstores(&BdevLvolGetLvstoresParams {
            lvs_name: Some(node.config.lvstore.clone()),
            ..Default::default()
        })
        .await
        .map_err(|e| node.call_failed("bdev_lvol_get_lvstores", e))?
        .into_iter()
        .next()
        .ok_or_else(|| ControllerError::LvstoreMissing {
            node: node.name().to_string(),
            lvstore: node.config.lvstore.clone(),
        })?;
    let cluster = lvs.cluster_size.max(1);
    let data = data_bytes.div_ceil(cluster);
    let reserve = (lvs.total_data_clusters / RESERVE_DIVISOR).max(1);
    if lvs.free_clusters < data + reserve {
        return Err(ControllerError::RebuildSpace {
            lvstore: lvs.name,
            node: node.name().to_string(),
            free: lvs.free_clusters,
            volume: volume_id.to_string(),
            needed: data + reserve,
            data,
            reserve,
        });
    }
    Ok(cluster)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(name: &str) -> Layer {
        Layer {
            name: name.into(),
            uuid: format!("u-{name}"),
            clusters: 1,
        }
    }

    #[test]
    fn a_returning_replica_keeps_the_prefix_it_shares_and_drops_the_rest() {
        let source = [l("s1"), l("s2"), l("s3")];
        let target = [l("s1"), l("x")];
        let p = split(&source, Some(&target), &[]);
        assert_eq!(p.base, Some(l("s1")));
        assert_eq!(p.layers, vec![l("s2"), l("s3")]);
        assert_eq!(p.discard, vec!["x".to_string()]);
        // Nothing shared: everything copied, the whole old chain dropped.
        let p = split(&source, Some(&[l("y")]), &[]);
        assert_eq!((p.base, p.layers.len()), (None, 3));
        assert_eq!(p.discard, vec!["y".to_string()]);
    }

    #[test]
    fn a_new_node_starts_above_the_newest_layer_it_holds() {
        let source = [l("s1"), l("s2")];
        let p = split(&source, None, &[true, false]);
        assert_eq!(p.base, Some(l("s1")));
        assert_eq!(p.layers, vec![l("s2")]);
        assert!(p.discard.is_empty());
        let p = split(&source, None, &[false, false]);
        assert_eq!((p.base, p.layers.len()), (None, 2));
    }
}
