//! DNS discovery of node agents for Kubernetes.
//!
//! The node DaemonSet is fronted by a headless Service, whose DNS name
//! resolves to one address per node-agent pod. For each address the
//! controller calls `GET http://<ip>:<port>/identity` to learn the node's
//! name, NVMe-oF address, topology labels and frontends, then talks SPDK
//! JSON-RPC to `http://<ip>:<port>/jsonrpc` with the shared bearer token.

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::config::DiscoveryConfig;
use crate::error::{ControllerError, Result};

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
