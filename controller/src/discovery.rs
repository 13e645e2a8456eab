//! DNS discovery of node agents for Kubernetes.
//!
//! The node DaemonSet is fronted by a headless Service, whose DNS name
//! resolves to one address per node-agent pod. For each address the
//! controller asks the agent for its [`NodeIdentity`] (`GET /identity`) to
//! learn the node's name, NVMe-oF address, topology labels and frontends,
//! then talks SPDK JSON-RPC through the agent's `/jsonrpc`, with the shared
//! bearer token. With `[agent_tls]` agents are reached at `https://`, their
//! certificate verified for the Service name; without it only loopback
//! agents can be reached.

use std::collections::BTreeSet;
use std::net::IpAddr;

use agent_api::client::{AgentClient, ClientTls};
use agent_api::NodeIdentity;

use crate::config::{DiscoveryConfig, KernelHost, NodeConfig, NodeEndpoint};
use crate::error::{ControllerError, Result};

/// Resolves the agents' headless-Service name to agent base URLs, one per
/// distinct address, sorted; `https://` when `tls` is given.
pub async fn agent_urls(config: &DiscoveryConfig, tls: Option<&ClientTls>) -> Result<Vec<String>> {
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
    let scheme = if tls.is_some() { "https" } else { "http" };
    Ok(ips
        .into_iter()
        .map(|ip| base_url(scheme, ip, config.agent_port))
        .collect())
}

/// Resolves the agents and asks each for its identity; agents that do not
/// answer are skipped with a warning (they are retried on the next pass).
pub async fn discover(
    config: &DiscoveryConfig,
    tls: Option<&ClientTls>,
) -> Result<Vec<NodeConfig>> {
    let token = std::fs::read_to_string(&config.agent_token_file).map_err(|e| {
        ControllerError::io(
            format!("reading agent token {}", config.agent_token_file.display()),
            e,
        )
    })?;
    let mut nodes = Vec::new();
    for url in agent_urls(config, tls).await? {
        let identity = match AgentClient::new(&url, &token, tls.cloned()) {
            Ok(agent) => agent.identity().await,
            Err(e) => Err(e),
        };
        match identity {
            Ok(id) => match node_config(config, &url, id) {
                Ok(node) => nodes.push(node),
                Err(e) => tracing::warn!(agent = %url, error = %e, "unusable node identity"),
            },
            Err(e) => {
                tracing::warn!(agent = %url, error = %e, "node agent did not tell its identity")
            }
        }
    }
    Ok(nodes)
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
        frontends: id.frontends,
        kernel_host: Some(KernelHost {
            nqn: id.hostnqn,
            id: id.hostid,
        }),
    })
}

/// Plain-HTTP base URL of the agent at `ip:port` (loopback agents).
pub fn agent_url(ip: IpAddr, port: u16) -> String {
    base_url("http", ip, port)
}

fn base_url(scheme: &str, ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{scheme}://{v4}:{port}"),
        IpAddr::V6(v6) => format!("{scheme}://[{v6}]:{port}"),
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
        let urls = agent_urls(&config, None).await.unwrap();
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
