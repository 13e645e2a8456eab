//! `shorthorn node`: the CSI Node service and the node agent.

use std::net::SocketAddr;
use std::path::PathBuf;

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
    /// Directory for the node's own state (staged volumes, generated host NQN).
    #[arg(long, default_value = "/var/lib/shorthorn")]
    pub state_dir: PathBuf,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected key=value, got {s:?}")),
    }
}
