//! DNS discovery of node agents for Kubernetes.
//!
//! The node DaemonSet is fronted by a headless Service, whose DNS name
//! resolves to one address per node-agent pod. For each address the
//! controller calls `GET http://<ip>:<port>/identity` to learn the node's
//! name, NVMe-oF address, topology labels and frontends, then talks SPDK
//! JSON-RPC to `http://<ip>:<port>/jsonrpc` with the shared bearer token.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use shorthorn_node::agent::NodeIdentity;
use shorthorn_node::frontend::FrontendKind;

use crate::config::{DiscoveryConfig, Frontend, KernelHost, NodeConfig, NodeEndpoint};
use crate::error::{ControllerError, Result};

/// How long one agent may take to answer `GET /identity`.
const IDENTITY_TIMEOUT: Duration = Duration::from_secs(10);

/// Resolves the agents' headless-Service name to agent base URLs, one per
/// distinct address, sorted.
pub async fn agent_urls(config: &DiscoveryConfig) -> Result<Vec<String>> {
    let addrs = tokio::net::lookup_host((config.agent_dns.as_str(), config.agent_port))
        .await
        .map_err(|e| {
            ControllerError::io(
                format!(
                    "resolving node agents at {} (the headless Service of the node DaemonSet)",
                    config.agent_dns
                ),
                e,
            )
        })?;
    let ips: BTreeSet<IpAddr> = addrs.map(|a| a.ip()).collect();
    Ok(ips
        .into_iter()
        .map(|ip| agent_url(ip, config.agent_port))
        .collect())
}

/// Resolves the agents and asks each for its identity; agents that do not
/// answer are skipped with a warning (they are retried on the next pass).
pub async fn discover(config: &DiscoveryConfig) -> Result<Vec<NodeConfig>> {
    let token = std::fs::read_to_string(&config.agent_token_file).map_err(|e| {
        ControllerError::io(
            format!("reading agent token {}", config.agent_token_file.display()),
            e,
        )
    })?;
    let mut nodes = Vec::new();
    for url in agent_urls(config).await? {
        match tokio::time::timeout(IDENTITY_TIMEOUT, identity(&url, token.trim())).await {
            Ok(Ok(id)) => match node_config(config, &url, id) {
                Ok(node) => nodes.push(node),
                Err(e) => tracing::warn!(agent = %url, error = %e, "unusable node identity"),
            },
            Ok(Err(e)) => {
                tracing::warn!(agent = %url, error = %e, "node agent did not answer /identity")
            }
            Err(_) => tracing::warn!(agent = %url, "node agent /identity timed out"),
        }
    }
    Ok(nodes)
}

/// `GET <url>/identity` with the bearer token.
async fn identity(url: &str, token: &str) -> Result<NodeIdentity> {
    let authority = url.trim_start_matches("http://").trim_end_matches('/');
    let fail = |what: String| ControllerError::NodeUnreachable {
        node: url.to_string(),
        reason: what,
    };
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|e| fail(format!("connect: {e}")))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| fail(format!("HTTP handshake: {e}")))?;
    tokio::spawn(conn);
    let request = http::Request::get("/identity")
        .header(http::header::HOST, authority)
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| ControllerError::Internal(format!("building /identity request: {e}")))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| fail(format!("GET /identity: {e}")))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| fail(format!("reading /identity: {e}")))?
        .to_bytes();
    if !status.is_success() {
        return Err(fail(format!(
            "GET /identity answered {status}; check the agent token"
        )));
    }
    serde_json::from_slice(&body).map_err(|e| fail(format!("decoding /identity: {e}")))
}

/// The node configuration of a discovered agent.
pub fn node_config(
    config: &DiscoveryConfig,
    url: &str,
    id: NodeIdentity,
) -> std::result::Result<NodeConfig, String> {
    crate::config::validate_node_name(&id.node_name)?;
    let nvmf_address = id
        .nvmf_address
        .parse()
        .map_err(|e| format!("nvmf_address {:?}: {e}", id.nvmf_address))?;
    Ok(NodeConfig {
        name: id.node_name,
        endpoint: NodeEndpoint::Agent {
            url: url.to_string(),
            token_file: config.agent_token_file.clone(),
        },
        nvmf_address,
        nvmf_port: id.nvmf_port,
        topology: id.topology,
        base_bdev: config.base_bdev.clone(),
        lvstore: config.lvstore.clone(),
        cluster_size: config.cluster_size,
        frontends: id
            .frontends
            .into_iter()
            .map(|f| match f {
                FrontendKind::NvmeTcp => Frontend::NvmeTcp,
                FrontendKind::Ublk => Frontend::Ublk,
            })
            .collect(),
        kernel_host: Some(KernelHost {
            nqn: id.hostnqn,
            id: id.hostid,
        }),
    })
}

/// Base URL of the agent at `ip:port`.
pub fn agent_url(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("http://{v4}:{port}"),
        IpAddr::V6(v6) => format!("http://[{v6}]:{port}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolves_a_name_to_agent_urls() {
        let config = DiscoveryConfig {
            agent_dns: "localhost".into(),
            agent_port: 9810,
            agent_token_file: "/dev/null".into(),
            lvstore: "shorthorn".into(),
            base_bdev: None,
            cluster_size: 4 << 20,
        };
        let urls = agent_urls(&config).await.unwrap();
        assert!(
            urls.iter()
                .any(|u| u == "http://127.0.0.1:9810" || u == "http://[::1]:9810"),
            "{urls:?}"
        );
        assert_eq!(
            agent_url("fd00::1".parse().unwrap(), 1),
            "http://[fd00::1]:1"
        );
    }
}
