//! What a sanity run covers: topologies of the local cluster, and the access
//! types csi-sanity provisions volumes with.

/// One shape of local cluster, with the volume parameters the suite uses on it.
#[derive(Debug, Clone)]
pub struct Topology {
    /// Short name for reports.
    pub name: &'static str,
    /// Backing file size of each storage node, in MiB (one entry per node).
    pub disk_mib: Vec<u64>,
    /// `numberOfReplicas` for the suite's volumes.
    pub replicas: u32,
    /// `numberOfReplicas` of the suite's volume attribute class
    /// (`--csi.testvolumemutableparameters`): what ModifyVolume changes to.
    pub mutable_replicas: u32,
    /// What the topology exercises.
    pub purpose: &'static str,
}

/// The access type of the suite's volumes (`--csi.testvolumeaccesstype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Filesystem volumes.
    Mount,
    /// Raw block volumes.
    Block,
}

impl Mode {
    /// The value csi-sanity expects.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Mount => "mount",
            Mode::Block => "block",
        }
    }
}

/// Three equal nodes, three replicas: the default layout.
pub fn three_replicas() -> Topology {
    Topology {
        name: "3-of-3",
        disk_mib: vec![4096, 4096, 4096],
        replicas: 3,
        mutable_replicas: 2,
        purpose: "three replicas on three equal nodes",
    }
}

/// Two replicas out of four nodes, one of which is too small for any volume
/// of the suite: placement must skip it and spread over the other three.
pub fn two_of_four_with_small_node() -> Topology {
    Topology {
        name: "2-of-4-small",
        disk_mib: vec![4096, 4096, 4096, 48],
        replicas: 2,
        mutable_replicas: 3,
        purpose: "two replicas out of four nodes, one node too small to hold a replica",
    }
}

/// Every topology, in the order they run.
pub fn all_topologies() -> Vec<Topology> {
    vec![three_replicas(), two_of_four_with_small_node()]
}
