//! The node agent of the local node (`node-1`): the controller reaches that
//! node's storage engine through it, exactly as in a cluster, so snapshot
//! fencing (the agent's quiesce) works locally too.

use std::future::Future;
use std::io::Read as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;

use anyhow::Context as _;
use shorthorn_node::agent::{serve_agent, AgentConfig};
use shorthorn_node::probe::KernelFeatures;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::layout::Layout;

/// A running local agent.
#[derive(Debug)]
pub struct LocalAgent {
    /// Base URL for the controller (`http://127.0.0.1:PORT`).
    pub url: String,
    /// File holding its bearer token (mode 0600, inside the state directory).
    pub token_file: PathBuf,
    /// The serving task; ends when the shutdown future given to [`start`] resolves.
    pub task: JoinHandle<shorthorn_node::Result<()>>,
}

/// Starts the agent for storage node `node` on a free loopback port with a
/// fresh random token. `reported` is what the agent tells the controller
/// about this machine's kernel.
pub async fn start(
    layout: &Layout,
    node: &str,
    nvmf_port: u16,
    reported: KernelFeatures,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<LocalAgent> {
    let token_file = layout.root().join("agent.token");
    write_token(&token_file)?;
    let mut config = AgentConfig::new(
        node,
        token_file.clone(),
        layout.node_socket(node),
        layout.node_state_dir(),
    );
    config.nvmf_address = "127.0.0.1".to_string();
    config.nvmf_port = nvmf_port;
    config.nvme_etc_dir = layout.node_state_dir().join("nvme");
    config.kernel = Some(reported);
    // The controller's config for this node names this disk and the
    // default lvstore: exactly what the agent's policy admits.
    config.disks = vec![layout.node_disk(node)];
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the local node agent")?;
    let url = format!("http://{}", listener.local_addr()?);
    let task = tokio::spawn(serve_agent(config, listener, shutdown));
    Ok(LocalAgent {
        url,
        token_file,
        task,
    })
}

/// Writes 32 random bytes, hex-encoded, readable by the owner only.
pub fn write_token(path: &PathBuf) -> anyhow::Result<()> {
    let mut raw = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut raw))
        .context("reading /dev/urandom for the agent token")?;
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    std::io::Write::write_all(&mut file, hex.as_bytes())?;
    Ok(())
}
