//! The node agent: the controller's authenticated, allowlisted door to this
//! node's spdk_tgt, plus node identity and the I/O fences of snapshots:
//! volume quiesce (ublk) and the ANA fence lease (NVMe/TCP).
//!
//! The routes and their bodies are the agent API's ([`agent_api::routes`]);
//! all but `/healthz` and `/metrics` ([`metrics`]) need
//! `Authorization: Bearer <token>`. `POST /jsonrpc`
//! forwards one JSON-RPC 2.0 call if its method is on [`ALLOWED_METHODS`]
//! and its params pass the node's [`AgentPolicy`] (disks, lvstores,
//! NVMe-oF address, Shorthorn's name prefixes); otherwise 403 with why.
//! `POST /swap/*` holds a staged volume's dm-linear device around a
//! thin rebuild's raid swap, under a lease that reattaches and resumes by
//! itself. `POST /fence/ana/*` is the one place the agent calls SPDK itself: it
//! holds the fence as a lease that restores the path when it runs out, and
//! at start it restores the fences a previous run left.
//!
//! Refusals (401, 403, 413, 400) are decided before anything reaches SPDK.

mod allowlist;
mod ana_fence;
mod body;
mod forward;
mod identity;
mod jsonrpc;
pub mod metrics;
mod policy;
mod quiesce;
mod response;
mod router;
mod server;
mod swap;
mod tls;
mod token;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

pub use allowlist::{is_allowed, ALLOWED_METHODS};
pub use identity::HostIdentity;
pub use policy::AgentPolicy;
pub use tls::TlsFiles;
pub use token::BearerToken;

use agent_api::{KernelFeatures, NodeIdentity};

use crate::error::Result;
use crate::probe::ProbeHost;

/// Default listen address of the agent.
pub const DEFAULT_AGENT_ADDR: &str = "0.0.0.0:9500";

/// The lvstore name a node has unless configured otherwise (the
/// controller's default).
pub const DEFAULT_LVSTORE: &str = "shorthorn";

/// Everything the agent needs to start.
#[derive(Clone)]
pub struct AgentConfig {
    /// Kubernetes node name (the CSI node id).
    pub node_name: String,
    /// Address other nodes reach this node's NVMe-oF target on.
    pub nvmf_address: String,
    /// TCP port of this node's NVMe-oF target.
    pub nvmf_port: u16,
    /// Topology labels reported in the identity.
    pub topology: BTreeMap<String, String>,
    /// File holding the bearer token (read once at start).
    pub token_file: PathBuf,
    /// The local spdk_tgt JSON-RPC Unix socket.
    pub spdk_socket: PathBuf,
    /// Serve HTTPS with these files; plain HTTP when `None`.
    pub tls: Option<TlsFiles>,
    /// Where the kernel's host NQN and id live (normally `/etc/nvme`).
    pub nvme_etc_dir: PathBuf,
    /// Node state dir; a generated host NQN/id is persisted here.
    pub state_dir: PathBuf,
    /// Per-request timeout toward spdk_tgt (504 when exceeded).
    pub request_timeout: Duration,
    /// Largest accepted request body in bytes (413 above).
    pub body_limit: usize,
    /// Largest accepted spdk_tgt reply in bytes (502 above).
    pub max_response: usize,
    /// Concurrent connections served; further ones wait in the backlog.
    pub max_connections: usize,
    /// Kernel features to report; `None` probes the host at start.
    pub kernel: Option<KernelFeatures>,
    /// Disks (files or block devices) the controller may open as aio bdevs.
    pub disks: Vec<PathBuf>,
    /// Existing bdevs the controller may create an lvstore on.
    pub base_bdevs: Vec<String>,
    /// This node's lvstore names (the controller's `lvstore` for this node).
    pub lvstores: Vec<String>,
    /// The holds behind `/swap/*`; `None` uses the kernel's (dmsetup,
    /// sysfs, the staging records under `state_dir`). Tests give a double.
    pub swap: Option<crate::swap::SwapHolds>,
}

impl AgentConfig {
    /// A configuration with the defaults: 1 MiB bodies, 30 s SPDK timeout,
    /// 64 MiB replies, 256 connections, NVMe-oF port 4420, `/etc/nvme`,
    /// lvstore `shorthorn`, no disks and no base bdevs.
    pub fn new(
        node_name: impl Into<String>,
        token_file: PathBuf,
        spdk_socket: PathBuf,
        state_dir: PathBuf,
    ) -> Self {
        AgentConfig {
            node_name: node_name.into(),
            nvmf_address: "127.0.0.1".to_owned(),
            nvmf_port: 4420,
            topology: BTreeMap::new(),
            token_file,
            spdk_socket,
            tls: None,
            nvme_etc_dir: PathBuf::from("/etc/nvme"),
            state_dir,
            request_timeout: Duration::from_secs(30),
            body_limit: 1024 * 1024,
            max_response: 64 * 1024 * 1024,
            max_connections: 256,
            kernel: None,
            disks: Vec::new(),
            base_bdevs: Vec::new(),
            lvstores: vec![DEFAULT_LVSTORE.to_owned()],
            swap: None,
        }
    }

    /// The parameter policy this configuration implies.
    pub fn policy(&self) -> AgentPolicy {
        AgentPolicy {
            disks: self.disks.clone(),
            base_bdevs: self.base_bdevs.clone(),
            lvstores: self.lvstores.clone(),
            nvmf_address: self.nvmf_address.clone(),
            nvmf_port: self.nvmf_port,
        }
    }
}

impl fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentConfig")
            .field("node_name", &self.node_name)
            .field("nvmf_address", &self.nvmf_address)
            .field("nvmf_port", &self.nvmf_port)
            .field("topology", &self.topology)
            .field("token_file", &self.token_file)
            .field("spdk_socket", &self.spdk_socket)
            .field("tls", &self.tls)
            .field("state_dir", &self.state_dir)
            .field("request_timeout", &self.request_timeout)
            .field("body_limit", &self.body_limit)
            .field("disks", &self.disks)
            .field("base_bdevs", &self.base_bdevs)
            .field("lvstores", &self.lvstores)
            .finish_non_exhaustive()
    }
}

/// Runs the agent on `listener` until `shutdown` resolves, then drains
/// in-flight requests. Fails at start on an unreadable or empty token file,
/// bad TLS files, or an unusable host identity.
pub async fn serve_agent(
    config: AgentConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let token = BearerToken::from_file(&config.token_file)?;
    let tls = config.tls.as_ref().map(tls::acceptor).transpose()?;
    let host = HostIdentity::load_or_create(&config.nvme_etc_dir, &config.state_dir)?;
    let kernel = config.kernel.clone().unwrap_or_else(KernelFeatures::probe);
    let identity = NodeIdentity {
        node_name: config.node_name.clone(),
        nvmf_address: config.nvmf_address.clone(),
        nvmf_port: config.nvmf_port,
        topology: config.topology.clone(),
        frontends: kernel.frontends(),
        kernel,
        hostnqn: host.hostnqn,
        hostid: host.hostid,
    };
    let agent = Arc::new(router::Agent {
        token,
        forwarder: forward::SpdkForwarder::new(
            config.spdk_socket.clone(),
            config.request_timeout,
            config.max_response,
        ),
        identity,
        quiesce: quiesce::QuiesceApi::kernel(&config.state_dir)?,
        swap: match config.swap.clone() {
            Some(holds) => swap::SwapApi::new(holds),
            None => swap::SwapApi::kernel(&config.state_dir)?,
        },
        ana_fence: ana_fence::AnaFenceApi::start(
            spdk_client::SpdkClient::unix(config.spdk_socket.clone())
                .with_timeout(config.request_timeout),
        ),
        body_limit: config.body_limit,
        policy: config.policy(),
        metrics: metrics::AgentMetrics::default(),
    });
    server::run(agent, listener, tls, config.max_connections, shutdown).await
}
