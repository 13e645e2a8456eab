//! Frontends turn a published volume into a local block device.
//!
//! What a frontend attaches ([`AttachSpec`]) and which frontend it is
//! ([`FrontendKind`]) are the agent API's wire types, re-exported here.

pub mod nvme_tcp;
pub mod ublk;

use std::path::PathBuf;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;

pub use agent_api::attach::{AttachSpec, NvmeTcpTarget, UblkTarget};
pub use agent_api::frontend::FrontendKind;

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
