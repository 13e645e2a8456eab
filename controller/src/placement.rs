//! Replica placement: which nodes get the replicas of a new volume.
//!
//! Pure: it sees a snapshot of every node and decides.
//!
//! CSI topology says where a volume must be *accessible from*. A Shorthorn
//! volume is reachable over NVMe-oF from every node, so topology does not
//! fence replicas in: it only steers a replica onto a node the volume will
//! likely be used on (a local leg reads without the network). Where the
//! volume can be published is decided separately (`accessible_topology` in
//! the create operation), and a requirement no consumer node meets is refused
//! there.
//!
//! Rules, in order:
//! 1. only reachable nodes with an lvstore;
//! 2. only nodes that can still provision the size under the overprovisioning ratio;
//! 3. distinct nodes, ranked by: matches an earlier `preferred` topology (then
//!    any `requisite` one), fewest replicas already, most provisionable space,
//!    then name.

use std::collections::BTreeMap;

use crate::capacity::LvstoreSpace;
use crate::error::{ControllerError, Result};

/// Topology segments of one node or one requirement.
pub type Segments = BTreeMap<String, String>;

/// What placement knows about one node.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Node name.
    pub name: String,
    /// The node's topology segments.
    pub segments: Segments,
    /// Whether its spdk_tgt answered recently and its lvstore exists.
    pub online: bool,
    /// Space of its lvstore.
    pub space: LvstoreSpace,
    /// Replicas (of any volume) it already holds.
    pub replica_count: usize,
}

/// CSI accessibility requirements, reduced to segment maps.
#[derive(Debug, Clone, Default)]
pub struct TopologyRequirement {
    /// The volume must be reachable from one of these (empty = anywhere).
    pub requisite: Vec<Segments>,
    /// Ordered preferences.
    pub preferred: Vec<Segments>,
}

/// Whether a node with `node` segments lies inside the `wanted` topology.
pub fn segments_match(node: &Segments, wanted: &Segments) -> bool {
    wanted.iter().all(|(k, v)| node.get(k) == Some(v))
}

/// Picks `replicas` distinct nodes for a volume of `size` bytes.
///
/// Returns node names, best first. RESOURCE_EXHAUSTED names why each
/// rejected node was rejected.
pub fn place(
    candidates: &[Candidate],
    replicas: usize,
    size: u64,
    ratio: f64,
    topology: &TopologyRequirement,
) -> Result<Vec<String>> {
    let mut eligible = Vec::new();
    let mut rejected = Vec::new();
    for c in candidates {
        if !c.online {
            rejected.push(format!("{} (unreachable)", c.name));
        } else if c.space.provisionable_bytes(ratio) < size {
            rejected.push(format!(
                "{} (only {} bytes provisionable of {} requested at overprovisioning ratio {ratio})",
                c.name,
                c.space.provisionable_bytes(ratio),
                size
            ));
        } else {
            eligible.push(c);
        }
    }
    if eligible.len() < replicas {
        let why = if rejected.is_empty() {
            String::new()
        } else {
            format!("; rejected: {}", rejected.join(", "))
        };
        return Err(ControllerError::NotEnoughNodes {
            replicas,
            size,
            eligible: eligible.len(),
            candidates: candidates.len(),
            why,
        });
    }
    let preference = |c: &Candidate| {
        topology
            .preferred
            .iter()
            .chain(topology.requisite.iter())
            .position(|t| segments_match(&c.segments, t))
            .unwrap_or(usize::MAX)
    };
    eligible.sort_by(|a, b| {
        preference(a)
            .cmp(&preference(b))
            .then(a.replica_count.cmp(&b.replica_count))
            .then(
                b.space
                    .provisionable_bytes(ratio)
                    .cmp(&a.space.provisionable_bytes(ratio)),
            )
            .then(a.name.cmp(&b.name))
    });
    Ok(eligible
        .into_iter()
        .take(replicas)
        .map(|c| c.name.clone())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn node(name: &str, zone: &str, free_mib: u64, replicas: usize) -> Candidate {
        Candidate {
            name: name.into(),
            segments: [("zone".to_string(), zone.to_string())].into(),
            online: true,
            space: LvstoreSpace {
                cluster_size: MIB,
                total_clusters: 1000,
                free_clusters: free_mib,
                provisioned_bytes: (1000 - free_mib) * MIB,
            },
            replica_count: replicas,
        }
    }

    fn zone(z: &str) -> Segments {
        [("zone".to_string(), z.to_string())].into()
    }

    #[test]
    fn spreads_over_the_least_loaded_nodes() {
        let nodes = [
            node("a", "z1", 500, 3),
            node("b", "z1", 900, 1),
            node("c", "z2", 100, 1),
            node("d", "z2", 800, 0),
        ];
        let got = place(&nodes, 2, MIB, 1.0, &Default::default()).unwrap();
        assert_eq!(got, vec!["d", "b"]);
    }

    #[test]
    fn topology_steers_replicas_without_fencing_them_in() {
        let nodes = [
            node("a", "z1", 900, 0),
            node("b", "z2", 500, 5),
            node("c", "z3", 500, 0),
        ];
        let topo = TopologyRequirement {
            requisite: vec![zone("z2"), zone("z3")],
            preferred: vec![zone("z2")],
        };
        // Preferred first, then requisite, despite b's load and a's space.
        assert_eq!(place(&nodes, 2, MIB, 1.0, &topo).unwrap(), vec!["b", "c"]);
        // A third replica may live outside the requisite topology: the
        // volume is still reachable from z2/z3 over NVMe-oF.
        assert_eq!(
            place(&nodes, 3, MIB, 1.0, &topo).unwrap(),
            vec!["b", "c", "a"]
        );
    }

    #[test]
    fn refuses_with_a_reason_when_nodes_or_space_run_short() {
        let mut nodes = vec![node("a", "z1", 10, 0), node("b", "z1", 900, 0)];
        nodes.push(Candidate {
            online: false,
            ..node("c", "z1", 900, 0)
        });
        let err = place(&nodes, 2, 20 * MIB, 1.0, &Default::default()).unwrap_err();
        assert!(matches!(err, ControllerError::NotEnoughNodes { .. }));
        let msg = err.to_string();
        assert!(msg.contains("a (only"), "{msg}");
        assert!(msg.contains("c (unreachable)"), "{msg}");
        // Overcommit lets the small node take it.
        assert_eq!(
            place(&nodes, 2, 20 * MIB, 3.0, &Default::default())
                .unwrap()
                .len(),
            2
        );
    }
}
