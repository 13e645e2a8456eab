//! Frontends turn a published volume into a local block device.

pub mod nvme_tcp;
pub mod spec;
pub mod ublk;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;

pub use spec::{AttachSpec, NvmeTcpTarget, UblkTarget};

/// The kinds of frontend the node knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FrontendKind {
    /// Kernel NVMe/TCP initiator.
    NvmeTcp,
    /// ublk disk served by the local SPDK.
    Ublk,
}

impl FrontendKind {
    /// Stable name, as used in publish_context and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            FrontendKind::NvmeTcp => "nvme-tcp",
            FrontendKind::Ublk => "ublk",
        }
    }
}

impl fmt::Display for FrontendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FrontendKind {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "nvme-tcp" => Ok(FrontendKind::NvmeTcp),
            "ublk" => Ok(FrontendKind::Ublk),
            other => Err(format!(
                "unknown frontend {other:?} (expected nvme-tcp or ublk)"
            )),
        }
    }
}

/// A block device a frontend made available.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachedDevice {
    /// Which frontend produced it.
    pub kind: FrontendKind,
    /// Path of the block device node, e.g. `/dev/nvme3n1`.
    pub path: PathBuf,
    /// Size in bytes when it was found.
    pub size_bytes: u64,
    /// Kernel NVMe controllers (`nvmeN`) carrying it; empty for ublk.
    pub controllers: Vec<String>,
}

/// Attaches and detaches volumes through one kernel mechanism.
///
/// Every method is idempotent: attaching an attached volume returns the
/// existing device and detaching a detached one succeeds.
#[async_trait]
pub trait Frontend: Send + Sync {
    /// The kind of frontend.
    fn kind(&self) -> FrontendKind;

    /// Makes the volume available as a block device and waits (bounded) for it.
    async fn attach(&self, spec: &AttachSpec) -> Result<AttachedDevice>;

    /// Removes the kernel side of the attachment.
    async fn detach(&self, spec: &AttachSpec) -> Result<()>;

    /// Finds the device of an already attached volume (restart recovery).
    async fn find_existing(&self, spec: &AttachSpec) -> Result<Option<AttachedDevice>>;

    /// Asks the kernel to re-read the device size after an expansion and
    /// returns the new size in bytes.
    async fn rescan(&self, device: &AttachedDevice) -> Result<u64>;
}
