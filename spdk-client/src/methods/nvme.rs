//! NVMe bdevs: attaching remote NVMe-oF controllers as bdevs.
//!
//! With default options a failed controller reconnects in a tight loop; set
//! `ctrlr_loss_timeout_sec`, `reconnect_delay_sec` and
//! `fast_io_fail_timeout_sec` when attaching.

use serde::{Deserialize, Serialize};

use crate::client::SpdkClient;
use crate::error::Result;

/// Params of `bdev_nvme_attach_controller`. Attached namespaces become bdevs
/// named `<name>n<nsid>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BdevNvmeAttachControllerParams {
    /// Controller name, prefix of the bdev names.
    pub name: String,
    /// Transport type, e.g. `"TCP"`.
    pub trtype: String,
    /// Target address.
    pub traddr: String,
    /// Address family, e.g. `"IPv4"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adrfam: Option<String>,
    /// Target service id (TCP port).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trsvcid: Option<String>,
    /// Subsystem NQN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnqn: Option<String>,
    /// Host NQN to connect as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostnqn: Option<String>,
    /// Local address to connect from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostaddr: Option<String>,
    /// Local service id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostsvcid: Option<String>,
    /// TCP header digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hdgst: Option<bool>,
    /// TCP data digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ddgst: Option<bool>,
    /// Fabrics connect timeout in microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fabrics_connect_timeout_us: Option<u64>,
    /// `"disable"`, `"failover"` or `"multipath"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multipath: Option<String>,
    /// I/O queues to request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_io_queues: Option<u32>,
    /// Seconds to keep reconnecting before deleting the controller; -1 forever.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ctrlr_loss_timeout_sec: Option<i32>,
    /// Seconds between reconnect attempts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconnect_delay_sec: Option<u32>,
    /// Seconds after which I/O fails while reconnecting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fast_io_fail_timeout_sec: Option<u32>,
    /// TLS pre-shared key name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub psk: Option<String>,
    /// DH-HMAC-CHAP key name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dhchap_key: Option<String>,
    /// DH-HMAC-CHAP controller key name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dhchap_ctrlr_key: Option<String>,
}

/// Params of `bdev_nvme_detach_controller`; the optional fields pick one path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BdevNvmeDetachControllerParams {
    /// Controller name.
    pub name: String,
    /// Transport type of the path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trtype: Option<String>,
    /// Address of the path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traddr: Option<String>,
    /// Address family of the path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adrfam: Option<String>,
    /// Service id of the path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trsvcid: Option<String>,
    /// Subsystem NQN of the path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnqn: Option<String>,
    /// Host address of the path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostaddr: Option<String>,
    /// Host service id of the path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostsvcid: Option<String>,
}

/// Params of `bdev_nvme_get_controllers`; all default lists every controller.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BdevNvmeGetControllersParams {
    /// Only this controller.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// An NVMe transport id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NvmeTransportId {
    /// Transport type.
    pub trtype: String,
    /// Address family.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adrfam: Option<String>,
    /// Address.
    pub traddr: String,
    /// Service id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trsvcid: Option<String>,
    /// Subsystem NQN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnqn: Option<String>,
}

/// One controller (possibly with several paths) from `bdev_nvme_get_controllers`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NvmeController {
    /// Controller name.
    pub name: String,
    /// One entry per path.
    pub ctrlrs: Vec<NvmeControllerPath>,
}

/// One path of an NVMe controller.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NvmeControllerPath {
    /// `"enabled"`, `"failed"`, `"resetting"`, ...
    pub state: String,
    /// Transport id.
    pub trid: NvmeTransportId,
    /// Controller id.
    pub cntlid: u16,
    /// Host identity used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<NvmeHostInfo>,
}

impl NvmeControllerPath {
    /// Whether the path is usable.
    pub fn is_enabled(&self) -> bool {
        self.state == "enabled"
    }
}

/// Host identity of a controller path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NvmeHostInfo {
    /// Host NQN.
    pub nqn: String,
    /// Host address.
    pub addr: String,
    /// Host service id.
    pub svcid: String,
}

/// `driver_specific.nvme[]` entry of an NVMe bdev.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NvmeNamespaceInfo {
    /// Transport id of the path.
    pub trid: NvmeTransportId,
    /// Controller data.
    pub ctrlr_data: NvmeCtrlrData,
    /// Namespace data.
    pub ns_data: NvmeNsData,
}

/// Identify-controller data of an NVMe bdev path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NvmeCtrlrData {
    /// Controller id.
    pub cntlid: u16,
    /// PCI vendor id, hex string.
    pub vendor_id: String,
    /// Model number.
    pub model_number: String,
    /// Serial number.
    pub serial_number: String,
    /// Firmware revision.
    pub firmware_revision: String,
    /// Subsystem NQN.
    pub subnqn: String,
    /// Multiple controllers allowed.
    pub multi_ctrlr: bool,
    /// ANA reporting supported.
    pub ana_reporting: bool,
}

/// Namespace data of an NVMe bdev path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NvmeNsData {
    /// Namespace id.
    pub id: u32,
    /// Namespace may be shared.
    pub can_share: bool,
    /// ANA state, when reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ana_state: Option<String>,
}

/// Params of `bdev_nvme_set_options` (only valid before any controller exists).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BdevNvmeSetOptionsParams {
    /// `"none"`, `"reset"` or `"abort"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_on_timeout: Option<String>,
    /// I/O command timeout in microseconds; 0 disables.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_us: Option<u64>,
    /// Admin command timeout in microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_admin_us: Option<u64>,
    /// Keep-alive timeout in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_alive_timeout_ms: Option<u32>,
    /// Transport-level retries per I/O.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport_retry_count: Option<u32>,
    /// Bdev-level retries per I/O; -1 infinite.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bdev_retry_count: Option<i32>,
    /// Transport ack timeout (0-31).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport_ack_timeout: Option<u8>,
    /// Default controller-loss timeout in seconds; -1 forever.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ctrlr_loss_timeout_sec: Option<i32>,
    /// Default reconnect delay in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconnect_delay_sec: Option<u32>,
    /// Default fast I/O fail timeout in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fast_io_fail_timeout_sec: Option<u32>,
    /// Disable automatic failback.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disable_auto_failback: Option<bool>,
    /// Generate UUIDs for namespaces without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generate_uuids: Option<bool>,
    /// Collect per-path I/O statistics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub io_path_stat: Option<bool>,
    /// TCP connect timeout in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_connect_timeout_ms: Option<u32>,
}

impl SpdkClient {
    /// `bdev_nvme_attach_controller`: returns the names of the created bdevs.
    /// Refused with NotSupported when spdk_tgt runs in interrupt mode.
    pub async fn bdev_nvme_attach_controller(
        &self,
        params: &BdevNvmeAttachControllerParams,
    ) -> Result<Vec<String>> {
        self.call("bdev_nvme_attach_controller", Some(params)).await
    }

    /// `bdev_nvme_detach_controller`.
    pub async fn bdev_nvme_detach_controller(
        &self,
        params: &BdevNvmeDetachControllerParams,
    ) -> Result<()> {
        self.call_unit("bdev_nvme_detach_controller", Some(params))
            .await
    }

    /// `bdev_nvme_get_controllers`.
    pub async fn bdev_nvme_get_controllers(
        &self,
        params: &BdevNvmeGetControllersParams,
    ) -> Result<Vec<NvmeController>> {
        self.call_opt("bdev_nvme_get_controllers", params).await
    }

    /// `bdev_nvme_set_options`.
    pub async fn bdev_nvme_set_options(&self, params: &BdevNvmeSetOptionsParams) -> Result<()> {
        self.call_opt_unit("bdev_nvme_set_options", params).await
    }
}
