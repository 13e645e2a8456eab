//! NVMe-oF target: transports, subsystems, namespaces, listeners, hosts, ANA.
//!
//! Note: for a subsystem NQN that does not exist, SPDK answers
//! `nvmf_subsystem_add_ns` and `nvmf_delete_subsystem` with InvalidParams,
//! not NotFound.

use serde::{Deserialize, Serialize};

use crate::client::SpdkClient;
use crate::error::Result;

/// Params of `nvmf_create_transport`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NvmfCreateTransportParams {
    /// Transport type, e.g. `"TCP"`.
    pub trtype: String,
    /// Parent NVMe-oF target name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tgt_name: Option<String>,
    /// Max outstanding I/O per queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_queue_depth: Option<u32>,
    /// Max I/O qpairs per controller.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_io_qpairs_per_ctrlr: Option<u32>,
    /// In-capsule data size in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_capsule_data_size: Option<u32>,
    /// Max I/O size in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_io_size: Option<u32>,
    /// I/O unit size in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub io_unit_size: Option<u32>,
    /// Pooled data buffers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_shared_buffers: Option<u32>,
    /// Buffers reserved per poll group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buf_cache_size: Option<u32>,
    /// Disable the C2H success optimisation (TCP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub c2h_success: Option<bool>,
    /// Socket priority (TCP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sock_priority: Option<u32>,
    /// Use zero-copy when the bdev supports it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zcopy: Option<bool>,
    /// Abort timeout in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abort_timeout_sec: Option<u32>,
}

/// Params of `nvmf_get_transports`; all default lists every transport.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NvmfGetTransportsParams {
    /// Parent NVMe-oF target name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tgt_name: Option<String>,
    /// Only this transport type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trtype: Option<String>,
}

/// One transport from `nvmf_get_transports`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NvmfTransport {
    /// Transport type, e.g. `"TCP"`.
    pub trtype: String,
    /// Max outstanding I/O per queue.
    pub max_queue_depth: u32,
    /// Max I/O qpairs per controller.
    pub max_io_qpairs_per_ctrlr: u32,
    /// In-capsule data size in bytes.
    pub in_capsule_data_size: u32,
    /// Max I/O size in bytes.
    pub max_io_size: u32,
    /// I/O unit size in bytes.
    pub io_unit_size: u32,
    /// Max admin queue depth.
    pub max_aq_depth: u32,
    /// Pooled data buffers.
    pub num_shared_buffers: u32,
    /// Buffers reserved per poll group.
    pub buf_cache_size: u64,
    /// Zero-copy enabled.
    pub zcopy: bool,
    /// Abort timeout in seconds.
    pub abort_timeout_sec: u32,
}

/// Params of `nvmf_create_subsystem`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NvmfCreateSubsystemParams {
    /// Subsystem NQN.
    pub nqn: String,
    /// Parent NVMe-oF target name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tgt_name: Option<String>,
    /// Serial number of the virtual controller.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    /// Model number of the virtual controller.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_number: Option<String>,
    /// Max namespaces (SPDK default 32).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_namespaces: Option<u32>,
    /// Allow any host (SPDK default false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_any_host: Option<bool>,
    /// Enable ANA reporting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ana_reporting: Option<bool>,
    /// Minimum controller id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_cntlid: Option<u16>,
    /// Maximum controller id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_cntlid: Option<u16>,
}

/// Params of `nvmf_delete_subsystem`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NvmfDeleteSubsystemParams {
    /// Subsystem NQN.
    pub nqn: String,
    /// Parent NVMe-oF target name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tgt_name: Option<String>,
}

/// Params of `nvmf_get_subsystems`; all default lists every subsystem.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NvmfGetSubsystemsParams {
    /// Parent NVMe-oF target name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tgt_name: Option<String>,
    /// Only this subsystem; an unknown NQN gives NotFound (-19).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nqn: Option<String>,
}

/// A transport address (params and results).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct ListenAddress {
    /// Transport type, e.g. `"TCP"`.
    pub trtype: String,
    /// Address family, e.g. `"IPv4"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adrfam: Option<String>,
    /// Address.
    pub traddr: String,
    /// Service id (TCP port).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trsvcid: Option<String>,
}

impl ListenAddress {
    /// A TCP/IPv4 address.
    pub fn tcp_ipv4(traddr: impl Into<String>, port: u16) -> ListenAddress {
        ListenAddress {
            trtype: "TCP".to_owned(),
            adrfam: Some("IPv4".to_owned()),
            traddr: traddr.into(),
            trsvcid: Some(port.to_string()),
        }
    }
}

/// One subsystem from `nvmf_get_subsystems`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NvmfSubsystem {
    /// Subsystem NQN.
    pub nqn: String,
    /// `"NVMe"` or `"Discovery"`.
    pub subtype: String,
    /// Listeners.
    pub listen_addresses: Vec<ListenAddress>,
    /// Any host may connect.
    pub allow_any_host: bool,
    /// Allowed hosts.
    pub hosts: Vec<NvmfHost>,
    /// Serial number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    /// Model number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_number: Option<String>,
    /// Max namespaces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_namespaces: Option<u32>,
    /// Minimum controller id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_cntlid: Option<u16>,
    /// Maximum controller id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_cntlid: Option<u16>,
    /// Namespaces.
    pub namespaces: Vec<NvmfNamespaceInfo>,
}

/// An allowed host of a subsystem.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NvmfHost {
    /// Host NQN.
    pub nqn: String,
}

/// A namespace as listed in a subsystem.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NvmfNamespaceInfo {
    /// Namespace id.
    pub nsid: u32,
    /// Bdev name.
    pub bdev_name: String,
    /// Namespace name.
    pub name: String,
    /// NGUID in hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nguid: Option<String>,
    /// Namespace UUID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// ANA group id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anagrpid: Option<u32>,
}

/// Namespace to add with `nvmf_subsystem_add_ns`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NvmfNamespace {
    /// Bdev to expose.
    pub bdev_name: String,
    /// Namespace id; assigned when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nsid: Option<u32>,
    /// NGUID, 32 hex digits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nguid: Option<String>,
    /// EUI-64, 16 hex digits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eui64: Option<String>,
    /// Namespace UUID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// ANA group id (SPDK default: the nsid).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anagrpid: Option<u32>,
}

/// Params of `nvmf_subsystem_add_ns`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NvmfSubsystemAddNsParams {
    /// Subsystem NQN.
    pub nqn: String,
    /// The namespace.
    pub namespace: NvmfNamespace,
    /// Parent NVMe-oF target name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tgt_name: Option<String>,
    /// Do not make the namespace visible to controllers automatically.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_auto_visible: Option<bool>,
}

/// Params of `nvmf_subsystem_remove_ns`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NvmfSubsystemRemoveNsParams {
    /// Subsystem NQN.
    pub nqn: String,
    /// Namespace id.
    pub nsid: u32,
    /// Parent NVMe-oF target name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tgt_name: Option<String>,
}

/// Params of `nvmf_subsystem_add_listener`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NvmfSubsystemAddListenerParams {
    /// Subsystem NQN.
    pub nqn: String,
    /// Address to listen on.
    pub listen_address: ListenAddress,
    /// Parent NVMe-oF target name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tgt_name: Option<String>,
    /// Require a secure channel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secure_channel: Option<bool>,
    /// Socket implementation for the listener.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sock_impl: Option<String>,
}

/// Params of `nvmf_subsystem_remove_listener`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NvmfSubsystemRemoveListenerParams {
    /// Subsystem NQN.
    pub nqn: String,
    /// Address to stop listening on.
    pub listen_address: ListenAddress,
    /// Parent NVMe-oF target name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tgt_name: Option<String>,
}

/// Params of `nvmf_subsystem_add_host`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NvmfSubsystemAddHostParams {
    /// Subsystem NQN.
    pub nqn: String,
    /// Host NQN to allow.
    pub host: String,
    /// Parent NVMe-oF target name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tgt_name: Option<String>,
    /// PSK key name for TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub psk: Option<String>,
    /// DH-HMAC-CHAP key name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dhchap_key: Option<String>,
    /// DH-HMAC-CHAP controller key name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dhchap_ctrlr_key: Option<String>,
}

/// Params of `nvmf_subsystem_remove_host`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NvmfSubsystemRemoveHostParams {
    /// Subsystem NQN.
    pub nqn: String,
    /// Host NQN to stop allowing.
    pub host: String,
    /// Parent NVMe-oF target name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tgt_name: Option<String>,
}

/// Params of `nvmf_subsystem_allow_any_host`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NvmfSubsystemAllowAnyHostParams {
    /// Subsystem NQN.
    pub nqn: String,
    /// Whether any host may connect.
    pub allow_any_host: bool,
    /// Parent NVMe-oF target name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tgt_name: Option<String>,
}

/// Params of `nvmf_subsystem_get_controllers`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NvmfSubsystemGetControllersParams {
    /// Subsystem NQN.
    pub nqn: String,
    /// Parent NVMe-oF target name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tgt_name: Option<String>,
}

/// One connected host controller, from `nvmf_subsystem_get_controllers`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NvmfController {
    /// Controller id.
    pub cntlid: u16,
    /// Controller type, e.g. `"io"`.
    pub cntrltype: String,
    /// NQN of the connected host.
    pub hostnqn: String,
    /// Host identifier (a UUID).
    pub hostid: String,
    /// I/O queue pairs connected.
    pub num_io_qpairs: u32,
}

/// Params of `nvmf_subsystem_get_listeners`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NvmfSubsystemGetListenersParams {
    /// Subsystem NQN.
    pub nqn: String,
    /// Parent NVMe-oF target name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tgt_name: Option<String>,
}

/// One listener from `nvmf_subsystem_get_listeners`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NvmfListener {
    /// The address.
    pub address: ListenAddress,
    /// The state of each ANA group on this listener, when the subsystem
    /// reports ANA (one entry per possible namespace, groups 1..=max).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ana_states: Vec<NvmfListenerAnaState>,
}

/// One ANA group's state on a listener (`nvmf_subsystem_get_listeners`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NvmfListenerAnaState {
    /// The ANA group id.
    pub ana_group: u32,
    /// `optimized`, `non_optimized`, `inaccessible`, `persistent_loss` or `change`.
    pub ana_state: String,
}

/// ANA state of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnaState {
    /// Optimized path.
    Optimized,
    /// Usable, not preferred.
    NonOptimized,
    /// Not usable.
    Inaccessible,
}

/// Params of `nvmf_subsystem_listener_set_ana_state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NvmfSubsystemListenerSetAnaStateParams {
    /// Subsystem NQN.
    pub nqn: String,
    /// The listener.
    pub listen_address: ListenAddress,
    /// New ANA state.
    pub ana_state: AnaState,
    /// Only this ANA group; all groups when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anagrpid: Option<u32>,
    /// Parent NVMe-oF target name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tgt_name: Option<String>,
}

/// Params of `nvmf_subsystem_set_ns_ana_group`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NvmfSubsystemSetNsAnaGroupParams {
    /// Subsystem NQN.
    pub nqn: String,
    /// Namespace id.
    pub nsid: u32,
    /// New ANA group id.
    pub anagrpid: u32,
    /// Parent NVMe-oF target name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tgt_name: Option<String>,
}

impl SpdkClient {
    /// `nvmf_create_transport`.
    pub async fn nvmf_create_transport(&self, params: &NvmfCreateTransportParams) -> Result<()> {
        self.call_unit("nvmf_create_transport", Some(params)).await
    }

    /// `nvmf_get_transports`.
    pub async fn nvmf_get_transports(
        &self,
        params: &NvmfGetTransportsParams,
    ) -> Result<Vec<NvmfTransport>> {
        self.call_opt("nvmf_get_transports", params).await
    }

    /// `nvmf_create_subsystem`.
    pub async fn nvmf_create_subsystem(&self, params: &NvmfCreateSubsystemParams) -> Result<()> {
        self.call_unit("nvmf_create_subsystem", Some(params)).await
    }

    /// `nvmf_delete_subsystem`.
    pub async fn nvmf_delete_subsystem(&self, params: &NvmfDeleteSubsystemParams) -> Result<()> {
        self.call_unit("nvmf_delete_subsystem", Some(params)).await
    }

    /// `nvmf_get_subsystems`.
    pub async fn nvmf_get_subsystems(
        &self,
        params: &NvmfGetSubsystemsParams,
    ) -> Result<Vec<NvmfSubsystem>> {
        self.call_opt("nvmf_get_subsystems", params).await
    }

    /// `nvmf_subsystem_add_ns`: returns the namespace id.
    pub async fn nvmf_subsystem_add_ns(&self, params: &NvmfSubsystemAddNsParams) -> Result<u32> {
        self.call("nvmf_subsystem_add_ns", Some(params)).await
    }

    /// `nvmf_subsystem_remove_ns`.
    pub async fn nvmf_subsystem_remove_ns(
        &self,
        params: &NvmfSubsystemRemoveNsParams,
    ) -> Result<()> {
        self.call_unit("nvmf_subsystem_remove_ns", Some(params))
            .await
    }

    /// `nvmf_subsystem_add_listener`.
    pub async fn nvmf_subsystem_add_listener(
        &self,
        params: &NvmfSubsystemAddListenerParams,
    ) -> Result<()> {
        self.call_unit("nvmf_subsystem_add_listener", Some(params))
            .await
    }

    /// `nvmf_subsystem_remove_listener`.
    pub async fn nvmf_subsystem_remove_listener(
        &self,
        params: &NvmfSubsystemRemoveListenerParams,
    ) -> Result<()> {
        self.call_unit("nvmf_subsystem_remove_listener", Some(params))
            .await
    }

    /// `nvmf_subsystem_add_host`.
    pub async fn nvmf_subsystem_add_host(&self, params: &NvmfSubsystemAddHostParams) -> Result<()> {
        self.call_unit("nvmf_subsystem_add_host", Some(params))
            .await
    }

    /// `nvmf_subsystem_remove_host`: also disconnects every controller of
    /// that host on the subsystem. A host not in the list gives -32603
    /// "Internal error"; an unknown subsystem -32602.
    pub async fn nvmf_subsystem_remove_host(
        &self,
        params: &NvmfSubsystemRemoveHostParams,
    ) -> Result<()> {
        self.call_unit("nvmf_subsystem_remove_host", Some(params))
            .await
    }

    /// `nvmf_subsystem_allow_any_host`.
    pub async fn nvmf_subsystem_allow_any_host(
        &self,
        params: &NvmfSubsystemAllowAnyHostParams,
    ) -> Result<()> {
        self.call_unit("nvmf_subsystem_allow_any_host", Some(params))
            .await
    }

    /// `nvmf_subsystem_get_controllers`: the hosts connected to a subsystem.
    pub async fn nvmf_subsystem_get_controllers(
        &self,
        params: &NvmfSubsystemGetControllersParams,
    ) -> Result<Vec<NvmfController>> {
        self.call("nvmf_subsystem_get_controllers", Some(params))
            .await
    }

    /// `nvmf_subsystem_get_listeners`.
    pub async fn nvmf_subsystem_get_listeners(
        &self,
        params: &NvmfSubsystemGetListenersParams,
    ) -> Result<Vec<NvmfListener>> {
        self.call("nvmf_subsystem_get_listeners", Some(params))
            .await
    }

    /// `nvmf_subsystem_listener_set_ana_state`.
    pub async fn nvmf_subsystem_listener_set_ana_state(
        &self,
        params: &NvmfSubsystemListenerSetAnaStateParams,
    ) -> Result<()> {
        self.call_unit("nvmf_subsystem_listener_set_ana_state", Some(params))
            .await
    }

    /// `nvmf_subsystem_set_ns_ana_group`.
    pub async fn nvmf_subsystem_set_ns_ana_group(
        &self,
        params: &NvmfSubsystemSetNsAnaGroupParams,
    ) -> Result<()> {
        self.call_unit("nvmf_subsystem_set_ns_ana_group", Some(params))
            .await
    }
}
