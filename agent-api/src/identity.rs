//! What an agent says about its node (`GET /identity`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::frontend::FrontendKind;

/// The body of `GET /identity`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeIdentity {
    /// Kubernetes node name (also the CSI node id).
    pub node_name: String,
    /// Address other nodes reach this node's NVMe-oF target on.
    pub nvmf_address: String,
    /// TCP port of the NVMe-oF target.
    pub nvmf_port: u16,
    /// Topology labels (e.g. `topology.kubernetes.io/zone`).
    pub topology: BTreeMap<String, String>,
    /// What the kernel and userland support.
    pub kernel: KernelFeatures,
    /// Usable frontends, most preferred first.
    pub frontends: Vec<FrontendKind>,
    /// Host NQN of the kernel initiator.
    pub hostnqn: String,
    /// Host id of the kernel initiator.
    pub hostid: uuid::Uuid,
}

/// Presence of the userland tools the node shells out to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tools {
    /// `mkfs.ext4`
    pub mkfs_ext4: bool,
    /// `mkfs.xfs`
    pub mkfs_xfs: bool,
    /// `resize2fs`
    pub resize2fs: bool,
    /// `xfs_growfs`
    pub xfs_growfs: bool,
    /// `blkid`
    pub blkid: bool,
    /// `fsfreeze`
    pub fsfreeze: bool,
    /// `dmsetup`
    pub dmsetup: bool,
}

impl Tools {
    /// Each tool's name and whether it was found.
    pub fn entries(&self) -> [(&'static str, bool); 7] {
        [
            ("mkfs.ext4", self.mkfs_ext4),
            ("mkfs.xfs", self.mkfs_xfs),
            ("resize2fs", self.resize2fs),
            ("xfs_growfs", self.xfs_growfs),
            ("blkid", self.blkid),
            ("fsfreeze", self.fsfreeze),
            ("dmsetup", self.dmsetup),
        ]
    }
}

/// What the node can use, reported to the controller by the agent (the
/// node crate probes it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelFeatures {
    /// `/dev/nvme-fabrics` exists, so the kernel NVMe/TCP initiator can connect.
    pub nvme_tcp: bool,
    /// Native NVMe multipath is on (`nvme_core.multipath=Y`).
    pub nvme_multipath: bool,
    /// `/dev/ublk-control` exists.
    pub ublk: bool,
    /// `/dev/mapper/control` exists and `dmsetup` is installed.
    pub device_mapper: bool,
    /// Userland tools found.
    pub tools: Tools,
}

impl KernelFeatures {
    /// Usable frontends, most preferred first.
    pub fn frontends(&self) -> Vec<FrontendKind> {
        let mut out = Vec::new();
        if self.nvme_tcp {
            out.push(FrontendKind::NvmeTcp);
        }
        if self.ublk {
            out.push(FrontendKind::Ublk);
        }
        out
    }

    /// One line for the start-up log.
    pub fn summary(&self) -> String {
        let frontends: Vec<&str> = self.frontends().iter().map(|f| f.as_str()).collect();
        let onoff = |b: bool| if b { "on" } else { "off" };
        let (found, missing): (Vec<_>, Vec<_>) =
            self.tools.entries().into_iter().partition(|(_, ok)| *ok);
        let names = |v: Vec<(&str, bool)>| {
            if v.is_empty() {
                "-".to_owned()
            } else {
                v.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(",")
            }
        };
        format!(
            "frontends=[{}] nvme-multipath={} device-mapper={} tools={} missing={}",
            frontends.join(","),
            onoff(self.nvme_multipath),
            onoff(self.device_mapper),
            names(found),
            names(missing),
        )
    }
}
