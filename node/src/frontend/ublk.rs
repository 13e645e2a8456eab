//! The ublk frontend: the local SPDK creates the disk (`ublk_start_disk`)
//! and reports its device path; this side only checks the device and
//! reports its size. Stopping the disk is an SPDK call made elsewhere, so
//! detach does nothing in the kernel.

use std::time::Duration;

use async_trait::async_trait;

use crate::device::{block_device_size, is_block_device, wait_for_device};
use crate::error::{NodeError, Result};
use crate::frontend::{AttachSpec, UblkTarget};
use crate::frontend::{AttachedDevice, Frontend, FrontendKind};

/// Uses block devices served by SPDK's ublk target.
#[derive(Debug, Clone)]
pub struct UblkFrontend {
    attach_timeout: Duration,
    poll_interval: Duration,
}

impl Default for UblkFrontend {
    fn default() -> Self {
        UblkFrontend::new(Duration::from_secs(10), Duration::from_millis(100))
    }
}

impl UblkFrontend {
    /// Creates the frontend; attach waits up to `attach_timeout` for the device.
    pub fn new(attach_timeout: Duration, poll_interval: Duration) -> Self {
        UblkFrontend {
            attach_timeout,
            poll_interval,
        }
    }

    fn target(spec: &AttachSpec) -> Result<&UblkTarget> {
        match spec {
            AttachSpec::Ublk(t) => Ok(t),
            other => Err(NodeError::WrongFrontend {
                frontend: FrontendKind::Ublk.as_str(),
                spec: other.kind().as_str(),
            }),
        }
    }

    fn describe(t: &UblkTarget) -> Result<AttachedDevice> {
        Ok(AttachedDevice {
            kind: FrontendKind::Ublk,
            path: t.device.clone(),
            size_bytes: block_device_size(&t.device)?,
            controllers: Vec::new(),
        })
    }
}

#[async_trait]
impl Frontend for UblkFrontend {
    fn kind(&self) -> FrontendKind {
        FrontendKind::Ublk
    }

    async fn attach(&self, spec: &AttachSpec) -> Result<AttachedDevice> {
        let t = Self::target(spec)?;
        wait_for_device(&t.device, self.attach_timeout, self.poll_interval).await?;
        Self::describe(t)
    }

    async fn detach(&self, spec: &AttachSpec) -> Result<()> {
        Self::target(spec).map(drop)
    }

    async fn find_existing(&self, spec: &AttachSpec) -> Result<Option<AttachedDevice>> {
        let t = Self::target(spec)?;
        if !is_block_device(&t.device) {
            return Ok(None);
        }
        Self::describe(t).map(Some)
    }

    async fn rescan(&self, device: &AttachedDevice) -> Result<u64> {
        block_device_size(&device.path)
    }
}
