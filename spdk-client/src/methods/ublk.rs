//! ublk: exposing bdevs as local `/dev/ublkb<id>` block devices.
//!
//! On a kernel without the ublk driver, `ublk_create_target` fails with
//! NotFound ("No such file or directory").

use serde::{Deserialize, Serialize};

use crate::client::SpdkClient;
use crate::error::Result;

/// Params of `ublk_create_target`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UblkCreateTargetParams {
    /// CPU mask for the ublk target threads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpumask: Option<String>,
    /// Disable the user-copy feature.
    #[serde(rename = "disable-user-copy", skip_serializing_if = "Option::is_none")]
    pub disable_user_copy: Option<bool>,
}

/// Params of `ublk_start_disk`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UblkStartDiskParams {
    /// Bdev to expose.
    pub bdev_name: String,
    /// Device id: the disk appears as `/dev/ublkb<ublk_id>`.
    pub ublk_id: u32,
    /// Queue depth.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_depth: Option<u32>,
    /// Number of queues.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_queues: Option<u32>,
}

/// Params of `ublk_stop_disk`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UblkStopDiskParams {
    /// Device id.
    pub ublk_id: u32,
}

/// Params of `ublk_get_disks`; all default lists every disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UblkGetDisksParams {
    /// Only this device id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ublk_id: Option<u32>,
}

/// One disk from `ublk_get_disks`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UblkDisk {
    /// Block device path, e.g. `/dev/ublkb1`.
    pub ublk_device: String,
    /// Device id.
    pub id: u32,
    /// Queue depth.
    pub queue_depth: u32,
    /// Number of queues.
    pub num_queues: u32,
    /// Exposed bdev.
    pub bdev_name: String,
}

impl SpdkClient {
    /// `ublk_create_target`.
    pub async fn ublk_create_target(&self, params: &UblkCreateTargetParams) -> Result<()> {
        self.call_opt_unit("ublk_create_target", params).await
    }

    /// `ublk_destroy_target`.
    pub async fn ublk_destroy_target(&self) -> Result<()> {
        self.call_unit::<()>("ublk_destroy_target", None).await
    }

    /// `ublk_start_disk`: returns the device id.
    pub async fn ublk_start_disk(&self, params: &UblkStartDiskParams) -> Result<u32> {
        self.call("ublk_start_disk", Some(params)).await
    }

    /// `ublk_stop_disk`.
    pub async fn ublk_stop_disk(&self, params: &UblkStopDiskParams) -> Result<()> {
        self.call_unit("ublk_stop_disk", Some(params)).await
    }

    /// `ublk_get_disks`.
    pub async fn ublk_get_disks(&self, params: &UblkGetDisksParams) -> Result<Vec<UblkDisk>> {
        self.call_opt("ublk_get_disks", params).await
    }
}
