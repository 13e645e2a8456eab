//! The kernel NVMe/TCP initiator frontend.
//!
//! Assumes one subsystem per volume: detaching deletes every controller
//! connected to the volume's subsystem at its address.

pub mod attach;
pub mod detach;
pub mod options;
pub mod sysfs;

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;

use crate::device::wait_for_path;
use crate::error::{NodeError, Result};
use crate::frontend::{AttachSpec, NvmeTcpTarget};
use crate::frontend::{AttachedDevice, Frontend, FrontendKind};

use attach::Connected;

/// Where the frontend finds the kernel interfaces, and how long it waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvmeTcpConfig {
    /// The fabrics control device, normally `/dev/nvme-fabrics`.
    pub fabrics_device: PathBuf,
    /// sysfs mount point, normally `/sys`.
    pub sysfs: PathBuf,
    /// Directory holding device nodes, normally `/dev`.
    pub dev_dir: PathBuf,
    /// How long attach waits for the namespace device to appear.
    pub attach_timeout: Duration,
    /// Poll interval while waiting.
    pub poll_interval: Duration,
}

impl Default for NvmeTcpConfig {
    fn default() -> Self {
        NvmeTcpConfig {
            fabrics_device: PathBuf::from("/dev/nvme-fabrics"),
            sysfs: PathBuf::from("/sys"),
            dev_dir: PathBuf::from("/dev"),
            attach_timeout: Duration::from_secs(30),
            poll_interval: Duration::from_millis(200),
        }
    }
}

/// Attaches volumes with the kernel NVMe/TCP initiator.
#[derive(Debug, Clone, Default)]
pub struct NvmeTcpFrontend {
    config: NvmeTcpConfig,
}

impl NvmeTcpFrontend {
    /// Creates the frontend with `config`.
    pub fn new(config: NvmeTcpConfig) -> Self {
        NvmeTcpFrontend { config }
    }

    fn target(spec: &AttachSpec) -> Result<&NvmeTcpTarget> {
        match spec {
            AttachSpec::NvmeTcp(t) => Ok(t),
            other => Err(NodeError::WrongFrontend {
                frontend: FrontendKind::NvmeTcp.as_str(),
                spec: other.kind().as_str(),
            }),
        }
    }

    fn controller_names(&self, t: &NvmeTcpTarget) -> Vec<String> {
        sysfs::find_controllers(&self.config.sysfs, t)
            .into_iter()
            .map(|c| c.name)
            .collect()
    }

    async fn connect(&self, t: &NvmeTcpTarget) -> Result<()> {
        let opts = options::connect_options(t)?;
        let fabrics = self.config.fabrics_device.clone();
        let outcome = tokio::task::spawn_blocking(move || attach::connect(&fabrics, &opts))
            .await
            .map_err(|e| NodeError::Task(e.to_string()))??;
        match outcome {
            Connected::New(reply) => tracing::info!(
                controller = %reply.controller_name(),
                cntlid = reply.cntlid,
                subnqn = %t.subnqn,
                traddr = %t.traddr,
                trsvcid = t.trsvcid,
                "nvme-tcp controller connected"
            ),
            Connected::AlreadyConnected => {
                tracing::info!(subnqn = %t.subnqn, "nvme-tcp controller already connected")
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Frontend for NvmeTcpFrontend {
    fn kind(&self) -> FrontendKind {
        FrontendKind::NvmeTcp
    }

    /// Connects unless a usable controller exists, then waits for the
    /// namespace. On timeout the controller is left in place so a retry
    /// only waits again.
    async fn attach(&self, spec: &AttachSpec) -> Result<AttachedDevice> {
        let t = Self::target(spec)?;
        if let Some(dev) = self.find_existing(spec).await? {
            return Ok(dev);
        }
        if self.controller_names(t).is_empty() {
            self.connect(t).await?;
        }
        let cfg = &self.config;
        let ns = sysfs::wait_for_namespace(
            &cfg.sysfs,
            &t.subnqn,
            &t.ns_uuid,
            cfg.attach_timeout,
            cfg.poll_interval,
        )
        .await?;
        let path = cfg.dev_dir.join(&ns.name);
        wait_for_path(&path, cfg.attach_timeout, cfg.poll_interval).await?;
        Ok(AttachedDevice {
            kind: FrontendKind::NvmeTcp,
            path,
            size_bytes: ns.size_bytes,
            controllers: self.controller_names(t),
        })
    }

    async fn detach(&self, spec: &AttachSpec) -> Result<()> {
        let t = Self::target(spec)?;
        let ctrls = sysfs::find_controllers(&self.config.sysfs, t);
        tokio::task::spawn_blocking(move || ctrls.iter().try_for_each(detach::delete_controller))
            .await
            .map_err(|e| NodeError::Task(e.to_string()))?
    }

    async fn find_existing(&self, spec: &AttachSpec) -> Result<Option<AttachedDevice>> {
        let t = Self::target(spec)?;
        let Some(ns) = sysfs::find_namespace(&self.config.sysfs, &t.subnqn, &t.ns_uuid) else {
            return Ok(None);
        };
        let path = self.config.dev_dir.join(&ns.name);
        if !path.exists() {
            return Ok(None);
        }
        Ok(Some(AttachedDevice {
            kind: FrontendKind::NvmeTcp,
            path,
            size_bytes: ns.size_bytes,
            controllers: self.controller_names(t),
        }))
    }

    /// Writes `1` to each controller's `rescan_controller` and returns the
    /// size sysfs then reports for the block device.
    ///
    /// The kernel only queues the scan (the write returns before the new
    /// size is read from the target: on a 6.12 kernel the size read at once
    /// was still the old one), so this waits, up to `attach_timeout`, for
    /// the size to differ from the one recorded in `device`. A volume that
    /// did not grow is reported with its unchanged size after that wait.
    async fn rescan(&self, device: &AttachedDevice) -> Result<u64> {
        let sysfs = self.config.sysfs.clone();
        let controllers = device.controllers.clone();
        tokio::task::spawn_blocking(move || {
            controllers.iter().try_for_each(|c| {
                let attr = sysfs.join("class/nvme").join(c).join("rescan_controller");
                std::fs::write(&attr, "1").map_err(|e| NodeError::io("write", &attr, e))
            })
        })
        .await
        .map_err(|e| NodeError::Task(e.to_string()))??;
        let name = device
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let size_attr = self
            .config
            .sysfs
            .join("class/block")
            .join(name)
            .join("size");
        let start = std::time::Instant::now();
        loop {
            let size = read_sectors(&size_attr)?.saturating_mul(512);
            if size != device.size_bytes {
                return Ok(size);
            }
            if start.elapsed() >= self.config.attach_timeout {
                tracing::warn!(
                    device = %device.path.display(),
                    size_bytes = size,
                    "size unchanged after rescan"
                );
                return Ok(size);
            }
            tokio::time::sleep(self.config.poll_interval).await;
        }
    }
}

/// Reads a sysfs `size` attribute (512-byte sectors).
fn read_sectors(attr: &std::path::Path) -> Result<u64> {
    let text = std::fs::read_to_string(attr).map_err(|e| NodeError::io("read", attr, e))?;
    text.trim().parse().map_err(|_| {
        NodeError::io(
            "parse",
            attr,
            std::io::Error::new(std::io::ErrorKind::InvalidData, "not a number"),
        )
    })
}
