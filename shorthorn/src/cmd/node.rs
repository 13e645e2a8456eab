//! `shorthorn node`: the CSI Node service and the node agent.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use shorthorn_node::agent::{self, AgentConfig, TlsFiles};
use shorthorn_node::csi::{self, NodeServiceConfig};
use tokio::sync::watch;

use crate::signals::shutdown_signal;

/// Arguments of `shorthorn node`.
#[derive(Debug, clap::Args)]
pub struct NodeArgs {
    /// This node's name: the CSI node id (the Kubernetes node name).
    #[arg(long, env = "NODE_NAME")]
    pub node_id: String,
    /// Where to serve the CSI Node service: `unix:///path/csi.sock`.
    #[arg(long, env = "CSI_ENDPOINT", default_value = "unix:///csi/csi.sock")]
    pub csi_endpoint: String,
    /// The local spdk_tgt JSON-RPC socket.
    #[arg(long, default_value = "/var/tmp/spdk.sock")]
    pub spdk_socket: PathBuf,
    /// Address the node agent listens on (the controller's access to this node's spdk_tgt).
    #[arg(long, default_value = "0.0.0.0:9810")]
    pub agent_listen: SocketAddr,
    /// File holding the agent's bearer token (mounted from a Secret).
    #[arg(long, env = "SHORTHORN_AGENT_TOKEN_FILE")]
    pub agent_token_file: PathBuf,
    /// TLS certificate (PEM) for the agent; with --agent-tls-key, the agent serves HTTPS.
    #[arg(long, requires = "agent_tls_key")]
    pub agent_tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for the agent.
    #[arg(long, requires = "agent_tls_cert")]
    pub agent_tls_key: Option<PathBuf>,
    /// Address other nodes reach this node's NVMe-oF target on.
    #[arg(long, env = "NODE_IP")]
    pub nvmf_address: String,
    /// TCP port of this node's NVMe-oF target.
    #[arg(long, default_value_t = 4420)]
    pub nvmf_port: u16,
    /// Topology label of this node, `key=value`; repeat for several.
    #[arg(long = "topology", value_parser = parse_label)]
    pub topology: Vec<(String, String)>,
    /// Most volumes this node accepts (reported in NodeGetInfo; 0 means no limit).
    #[arg(long, default_value_t = 0)]
    pub max_volumes: i64,
    /// A disk (file or block device) the controller may open as this node's
    /// aio base bdev through the agent; repeat for several. Anything else
    /// `bdev_aio_create` names is refused.
    #[arg(
        long = "agent-disk",
        env = "SHORTHORN_AGENT_DISKS",
        value_delimiter = ','
    )]
    pub agent_disks: Vec<PathBuf>,
    /// An existing bdev the controller may create this node's lvstore on
    /// (besides `shorthorn-base-*`); repeat for several.
    #[arg(long = "agent-base-bdev")]
    pub agent_base_bdevs: Vec<String>,
    /// This node's lvstore name (the controller's `lvstore` for it); the
    /// agent admits lvol calls only on it.
    #[arg(long, env = "SHORTHORN_LVSTORE", default_value = agent::DEFAULT_LVSTORE)]
    pub lvstore: String,
    /// The kubelet root directory: staging and target paths outside it are
    /// refused, so nothing outside it is ever unmounted or removed.
    #[arg(long, default_value = shorthorn_node::csi::DEFAULT_KUBELET_DIR)]
    pub kubelet_dir: PathBuf,
    /// Directory for the node's own state (staged volumes, generated host NQN).
    #[arg(long, default_value = "/var/lib/shorthorn")]
    pub state_dir: PathBuf,
}

/// Serves the CSI Node service and the node agent until SIGINT or SIGTERM.
/// If either stops with an error, the other is stopped too.
pub async fn run(args: NodeArgs) -> anyhow::Result<()> {
    let csi_socket = unix_socket_path(&args.csi_endpoint)?;
    let topology: BTreeMap<String, String> = args.topology.iter().cloned().collect();

    let mut agent_config = AgentConfig::new(
        args.node_id.clone(),
        args.agent_token_file.clone(),
        args.spdk_socket.clone(),
        args.state_dir.clone(),
    );
    agent_config.nvmf_address = args.nvmf_address.clone();
    agent_config.nvmf_port = args.nvmf_port;
    agent_config.topology = topology.clone();
    agent_config.disks = args.agent_disks.clone();
    agent_config.base_bdevs = args.agent_base_bdevs.clone();
    agent_config.lvstores = vec![args.lvstore.clone()];
    agent_config.tls = match (args.agent_tls_cert, args.agent_tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        _ => None,
    };

    let mut csi_config = NodeServiceConfig::new(
        shorthorn_controller::identity::DRIVER_NAME,
        args.node_id,
        args.state_dir,
    );
    csi_config.max_volumes_per_node = args.max_volumes;
    csi_config.topology = topology;
    csi_config.spdk_socket = Some(args.spdk_socket.clone());
    csi_config.kubelet_dir = args.kubelet_dir.clone();

    let listener = tokio::net::TcpListener::bind(args.agent_listen)
        .await
        .with_context(|| format!("binding the node agent to {}", args.agent_listen))?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let signal_tx = stop_tx.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = signal_tx.send(true);
    });
    let agent_task = agent::serve_agent(agent_config, listener, stopped(stop_rx.clone()));
    let csi_task = csi::serve_node(csi_config, &csi_socket, stopped(stop_rx));
    let (agent_result, csi_result) = tokio::join!(
        async {
            let r = agent_task.await;
            let _ = stop_tx.send(true);
            r
        },
        async {
            let r = csi_task.await;
            let _ = stop_tx.send(true);
            r
        }
    );
    agent_result.context("node agent")?;
    csi_result.context("CSI node service")?;
    Ok(())
}

/// The socket path of a `unix://` CSI endpoint (the node service serves only Unix sockets).
fn unix_socket_path(endpoint: &str) -> anyhow::Result<PathBuf> {
    let path = endpoint
        .strip_prefix("unix://")
        .or_else(|| endpoint.strip_prefix("unix:"))
        .unwrap_or(endpoint);
    if path.is_empty() || !path.starts_with('/') {
        anyhow::bail!("--csi-endpoint {endpoint:?} must be unix:///absolute/path.sock");
    }
    Ok(PathBuf::from(path))
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected key=value, got {s:?}")),
    }
}
