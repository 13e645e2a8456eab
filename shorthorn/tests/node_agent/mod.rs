//! A real node agent, in this test process, in front of a node's SPDK
//! socket (the sim's, or a `RpcProxy`'s), on
//! plain HTTP to loopback. It lives in the test process, so it outlives a
//! crashing controller child.

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use agent_api::KernelFeatures;
use shorthorn_node::agent::{serve_agent, AgentConfig};

/// The token the test agents accept.
pub const AGENT_TOKEN: &str = "agent-token-for-controller-tests";

/// One running agent.
pub struct NodeAgent {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The file holding its token (for the controller's config).
    pub token_file: PathBuf,
    config: AgentConfig,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<shorthorn_node::Result<()>>>,
}

impl NodeAgent {
    /// Starts the agent of node `name` (NVMe-oF port `nvmf_port`, aio disk
    /// `disk`, the default lvstore) in front of `spdk_socket`, its files
    /// under `dir`.
    pub async fn start(
        dir: &Path,
        name: &str,
        nvmf_port: u16,
        disk: &Path,
        spdk_socket: &Path,
    ) -> Self {
        Self::start_with_swap(dir, name, nvmf_port, disk, spdk_socket, None).await
    }

    /// Like [`NodeAgent::start`], serving `/swap/*` with `swap` (a test
    /// double of the dm layer) when given.
    pub async fn start_with_swap(
        dir: &Path,
        name: &str,
        nvmf_port: u16,
        disk: &Path,
        spdk_socket: &Path,
        swap: Option<shorthorn_node::swap::SwapHolds>,
    ) -> Self {
        let token_file = dir.join(format!("{name}-agent-token"));
        std::fs::write(&token_file, format!("{AGENT_TOKEN}\n")).expect("token");
        let config = AgentConfig {
            nvmf_port,
            nvme_etc_dir: dir.join(format!("{name}-no-etc-nvme")),
            kernel: Some(KernelFeatures::default()),
            disks: vec![disk.to_path_buf()],
            swap,
            ..AgentConfig::new(
                name,
                token_file.clone(),
                spdk_socket.to_path_buf(),
                dir.join(format!("{name}-agent-state")),
            )
        };
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind agent");
        let addr = listener.local_addr().expect("addr");
        let mut agent = Self {
            addr,
            token_file,
            config,
            stop: None,
            task: None,
        };
        agent.serve(listener);
        agent
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        self.stop = Some(stop);
        self.task = Some(tokio::spawn(serve_agent(
            self.config.clone(),
            listener,
            async move {
                let _ = stopped.await;
            },
        )));
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The `[[nodes]]` lines that make the controller reach the node
    /// through `url` (this agent, or a proxy in front of it).
    pub fn endpoint_toml(&self, url: &str) -> String {
        format!(
            "agent_url = {url:?}\nagent_token_file = {:?}",
            self.token_file.display().to_string()
        )
    }

    /// Kills the agent as a crash would (no drain), then starts a fresh
    /// one on the same address: what it knew (its leases) is gone, what it
    /// did to spdk_tgt stays.
    pub async fn crash_and_restart(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        self.stop = None;
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        };
        self.serve(listener);
    }
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
