//! Controller configuration, read from a TOML file.
//!
//! ```toml
//! # Sum of the provisioned sizes of the thin lvols on an lvstore may reach
//! # `overprovisioning_ratio` x its capacity. 1.0 (the default) never
//! # overcommits, so a thin lvstore can never run out of clusters underneath a
//! # raid1 (real SPDK silently drops a raid member whose lvstore is full).
//! overprovisioning_ratio = 1.0
//! # Warn (log + abnormal VolumeCondition) when an lvstore has less free space.
//! lvstore_free_warning_percent = 10.0
//! # How often the reconciler runs, in seconds.
//! reconcile_interval_secs = 30
//! # CreateVolume places on each node's last space reading while it is
//! # younger than this (plus what this controller placed or deleted since),
//! # instead of listing every bdev of every node on every call. A refusal
//! # for lack of space always re-reads every node first. 0 = always re-read.
//! node_refresh_max_age_ms = 1000
//! # The health monitor (while leading): probes every node and reads the raid
//! # of every published volume this often, so a lost leg is recorded stale
//! # and a restarted spdk_tgt is set up again within seconds. 0 = off.
//! health_interval_ms = 1000
//! # A JSON-RPC call to a node's spdk_tgt that takes longer fails, and the
//! # node counts as unreachable for it.
//! rpc_timeout_ms = 10000
//!
//! # The orphan sweep (every reconciler pass) deletes Shorthorn objects no
//! # record explains, only on nodes stamped with this store's cluster id.
//! [sweep]
//! # An lvol nothing explains (no volume record, no journal entry) is deleted
//! # only after it stayed unexplained this long; a deleted volume's lvols
//! # (tombstoned) go at once. Remembered in memory: a controller restart
//! # starts the wait again.
//! grace_secs = 600
//! # A tombstone is dropped once no node holds anything of its volume, or
//! # after this long (a node that never returns); 30 days.
//! tombstone_ttl_secs = 2592000
//! # Nodes stamped by these other clusters are taken over (re-stamped) at
//! # bootstrap. Only for a node that must really move to this cluster: the
//! # old cluster's volumes on it become orphans here.
//! adopt_clusters = []
//!
//! [store]
//! embedded = "/var/lib/shorthorn/controller.redb"
//! # or: etcd = { endpoints = ["http://etcd:2379"], prefix = "/shorthorn" }
//!
//! # With etcd, controllers sharing one prefix elect one leader through an
//! # etcd lease; the others stand by. (The embedded file is locked to one
//! # process instead.) Defaults:
//! # [leader]
//! # lease_ttl_secs = 15          # a dead leader is replaced after at most this (+ retry)
//! # keepalive_interval_ms = 5000 # default: a third of the TTL
//! # retry_interval_ms = 500      # how often a standby looks for a free lease
//! # identity = "controller-0"    # default: <hostname>-<pid>-<random>
//!
//! # Kubernetes: discover node agents through the headless Service of the node
//! # DaemonSet; every address it resolves to is asked for GET /identity.
//! # [discovery]
//! # agent_dns = "shorthorn-node.shorthorn-system.svc.cluster.local"
//! # agent_port = 9810
//! # agent_token_file = "/var/run/secrets/shorthorn/agent-token"
//!
//! # HTTPS to node agents. Without this section agents are reached over plain
//! # http://, which is allowed only to loopback addresses (the bearer token
//! # must never cross a network in clear). With it, discovered agents are
//! # reached at https://<address>:<agent_port>.
//! # [agent_tls]
//! # ca_file = "/var/run/secrets/shorthorn/agent-tls/ca.crt"  # PEM: the CA that signs the agents' certificates
//! # # or: pinned_cert_file = "/etc/shorthorn/agent.crt"     # PEM: the one certificate every agent serves
//! # # Name the agents' certificate must carry. Default: the host of each
//! # # agent_url, and agent_dns for discovered agents (reached by address).
//! # server_name = "shorthorn-node.shorthorn-system.svc.cluster.local"
//!
//! # Prometheus metrics (docs/metrics.md). GET /metrics is always on the
//! # admin API; `address` adds a plain-HTTP listener serving only /metrics.
//! # [metrics]
//! # address = "0.0.0.0:9809"
//! # cache_ms = 5000               # per-node statistics reused this long
//! # histograms_per_scrape = 64    # bdev_get_histogram calls per scrape at most
//! # histogram_max_age_ms = 30000  # a volume's latency histogram is re-read after this
//!
//! [[nodes]]
//! name = "node-a"
//! spdk_socket = "/var/tmp/spdk-a.sock"      # or agent_url + agent_token_file
//! nvmf_address = "10.0.0.1"
//! nvmf_port = 4420
//! topology = { "topology.kubernetes.io/zone" = "z1" }
//! base_bdev = { aio_file = "/var/lib/shorthorn/a.img", block_size = 4096 }
//! lvstore = "shorthorn"
//! cluster_size = 4194304
//! frontends = ["ublk"]                     # and/or "nvme-tcp" ("nvme_tcp" is read, deprecated)
//! ```

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agent_api::client::{ClientTls, ServerTrust};
use agent_api::FrontendKind;
use serde::Deserialize;

use crate::error::{ControllerError, Result};

/// Default NVMe-oF TCP port of a storage node.
pub const DEFAULT_NVMF_PORT: u16 = 4420;
/// Default lvstore name on every storage node.
pub const DEFAULT_LVSTORE: &str = "shorthorn";
/// Default lvstore cluster size (4 MiB, SPDK's default).
pub const DEFAULT_CLUSTER_SIZE: u64 = 4 * 1024 * 1024;
/// Default node-agent port used with DNS discovery.
pub const DEFAULT_AGENT_PORT: u16 = 9810;

/// The whole controller configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerConfig {
    /// Storage nodes known statically.
    #[serde(default)]
    pub nodes: Vec<NodeConfig>,
    /// Where volume records and the operation journal live.
    pub store: StoreConfig,
    /// Allowed ratio of provisioned bytes to lvstore capacity (>= 1.0 is overcommit).
    #[serde(default = "default_ratio")]
    pub overprovisioning_ratio: f64,
    /// Free-space percentage of an lvstore under which the controller warns.
    #[serde(default = "default_warning_percent")]
    pub lvstore_free_warning_percent: f64,
    /// Seconds between reconciler passes.
    #[serde(default = "default_reconcile_interval")]
    pub reconcile_interval_secs: u64,
    /// Milliseconds between health monitor passes (node probes, every
    /// publication's raid); 0 switches the monitor off (the reconciler still
    /// checks health every pass).
    #[serde(default = "default_health_interval")]
    pub health_interval_ms: u64,
    /// Milliseconds a JSON-RPC call to a node's spdk_tgt may take before
    /// the node counts as unreachable for that call.
    #[serde(default = "default_rpc_timeout")]
    pub rpc_timeout_ms: u64,
    /// Milliseconds for which CreateVolume trusts a node's last space
    /// reading (adjusted by what this controller did since); 0 = re-read
    /// every node on every call.
    #[serde(default = "default_node_refresh_max_age")]
    pub node_refresh_max_age_ms: u64,
    /// Optional DNS discovery of node agents.
    #[serde(default)]
    pub discovery: Option<DiscoveryConfig>,
    /// HTTPS to the node agents (`[agent_tls]`); without it only loopback
    /// agents can be reached (plain http).
    #[serde(default)]
    pub agent_tls: Option<AgentTlsConfig>,
    /// The orphan sweep (`[sweep]`).
    #[serde(default)]
    pub sweep: SweepConfig,
    /// Leader election on etcd (`[leader]`).
    #[serde(default)]
    pub leader: LeaderConfig,
    /// Replica rebuilds (`[rebuild]`).
    #[serde(default)]
    pub rebuild: RebuildConfig,
    /// Prometheus metrics (`[metrics]`, see docs/metrics.md).
    #[serde(default)]
    pub metrics: MetricsConfig,
}

/// Prometheus metrics (`[metrics]`, see docs/metrics.md). `GET /metrics` is
/// always served on the admin API; `address` adds a plain-HTTP listener
/// that serves only `GET /metrics`, without a token, for Prometheus.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `host:port` of the metrics listener (e.g. `0.0.0.0:9809`); none when unset.
    pub address: Option<std::net::SocketAddr>,
    /// Milliseconds a scrape reuses a node's I/O statistics, its bdev
    /// listing and the rebuild view (one `bdev_get_iostat` and one
    /// `bdev_get_bdevs` per node); 0 re-reads on every scrape.
    pub cache_ms: u64,
    /// At most this many volume latency histograms (`bdev_get_histogram`,
    /// one call per volume) are re-read per scrape, the oldest first; the
    /// others are served from their last reading.
    pub histograms_per_scrape: usize,
    /// Milliseconds a volume's latency histogram stays fresh (0: re-read
    /// every scrape, still at most `histograms_per_scrape` of them).
    pub histogram_max_age_ms: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            address: None,
            cache_ms: 5_000,
            histograms_per_scrape: 64,
            histogram_max_age_ms: 30_000,
        }
    }
}

/// How the reconciler rebuilds replicas (`[rebuild]`, see docs/rebuild.md).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RebuildConfig {
    /// Rebuilds a node takes part in at once (as source, target or engine);
    /// 0 switches automatic rebuilds off.
    pub max_per_node: usize,
    /// Cap in MiB/s on the full-copy fallback (raid rebuild of a published
    /// volume, `bdev_raid_set_options process_max_bandwidth_mb_sec`); 0 =
    /// SPDK's default (unlimited).
    pub max_bandwidth_mb_sec: u32,
    /// Milliseconds between progress checks of a running copy.
    pub poll_interval_ms: u64,
}

impl Default for RebuildConfig {
    fn default() -> Self {
        Self {
            max_per_node: 1,
            max_bandwidth_mb_sec: 0,
            poll_interval_ms: 200,
        }
    }
}

/// Default grace period of an unexplained lvol: 10 minutes, far longer than
/// any journaled operation takes to write its first record, short enough to
/// give space back the same hour.
pub const DEFAULT_SWEEP_GRACE_SECS: u64 = 600;
/// Default lifetime of a tombstone whose volume's lvols are not all gone: 30 days.
pub const DEFAULT_TOMBSTONE_TTL_SECS: u64 = 30 * 24 * 3600;

/// How the orphan sweep treats what no record explains.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SweepConfig {
    /// Seconds an lvol must stay unexplained before it is deleted.
    pub grace_secs: u64,
    /// Seconds after which a tombstone is dropped even if a node still
    /// holds (or may hold) that volume's lvols.
    pub tombstone_ttl_secs: u64,
    /// Ids of other clusters whose nodes this one takes over at bootstrap.
    pub adopt_clusters: Vec<String>,
}

impl Default for SweepConfig {
    fn default() -> Self {
        Self {
            grace_secs: DEFAULT_SWEEP_GRACE_SECS,
            tombstone_ttl_secs: DEFAULT_TOMBSTONE_TTL_SECS,
            adopt_clusters: Vec::new(),
        }
    }
}

/// Leader election among controllers sharing one etcd prefix (`[leader]`).
///
/// The leader holds an etcd lease of `lease_ttl_secs` and renews it every
/// `keepalive_interval_ms`; it steps down by itself (stops its reconciler,
/// refuses calls) when it has not renewed for the TTL minus one interval, so
/// it stops before etcd can hand the lease to anyone else. A standby looks
/// for a free lease every `retry_interval_ms`, so a leader that dies is
/// replaced after at most the TTL plus that. 15 s is Kubernetes' own
/// leader-election lease: long enough that an etcd hiccup of a few seconds
/// does not depose a healthy leader, short next to the time Kubernetes
/// takes to reschedule a dead controller pod.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LeaderConfig {
    /// Seconds the lease lives without renewal; at least 2 (etcd's minimum).
    #[serde(default = "default_lease_ttl")]
    pub lease_ttl_secs: u64,
    /// Milliseconds between renewals; default a third of the TTL.
    #[serde(default)]
    pub keepalive_interval_ms: Option<u64>,
    /// Milliseconds between a standby's looks at the leader key.
    #[serde(default = "default_leader_retry")]
    pub retry_interval_ms: u64,
    /// This controller's name in the leader record (shown to the others);
    /// default `<hostname>-<pid>-<random>`.
    #[serde(default)]
    pub identity: Option<String>,
}

fn default_lease_ttl() -> u64 {
    15
}
fn default_leader_retry() -> u64 {
    500
}

impl Default for LeaderConfig {
    fn default() -> Self {
        Self {
            lease_ttl_secs: default_lease_ttl(),
            keepalive_interval_ms: None,
            retry_interval_ms: default_leader_retry(),
            identity: None,
        }
    }
}

impl LeaderConfig {
    /// The lease time to live.
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.lease_ttl_secs)
    }

    /// Time between renewals.
    pub fn keepalive_interval(&self) -> Duration {
        self.keepalive_interval_ms
            .map(Duration::from_millis)
            .unwrap_or_else(|| self.ttl() / 3)
    }

    /// Time between a standby's attempts.
    pub fn retry_interval(&self) -> Duration {
        Duration::from_millis(self.retry_interval_ms)
    }

    fn validate(&self) -> Result<()> {
        if self.lease_ttl_secs < 2 {
            return Err(ControllerError::Config(format!(
                "[leader] lease_ttl_secs = {} is below etcd's minimum lease of 2 s",
                self.lease_ttl_secs
            )));
        }
        let keepalive = self.keepalive_interval();
        if keepalive < Duration::from_millis(100) || keepalive > self.ttl() / 2 {
            return Err(ControllerError::Config(format!(
                "[leader] keepalive_interval_ms = {} must be between 100 and half the lease TTL ({} ms)",
                keepalive.as_millis(),
                self.ttl().as_millis() / 2
            )));
        }
        if self.retry_interval_ms < 50 {
            return Err(ControllerError::Config(format!(
                "[leader] retry_interval_ms = {} must be at least 50",
                self.retry_interval_ms
            )));
        }
        Ok(())
    }
}

/// How the controller verifies node agents' HTTPS certificates.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AgentTlsConfig {
    /// PEM file of the CA that signs the agents' certificates.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM file of the one certificate every agent serves (instead of a CA).
    #[serde(default)]
    pub pinned_cert_file: Option<PathBuf>,
    /// Name the agents' certificate must carry; default: the host of each
    /// agent URL, and `agent_dns` for discovered agents.
    #[serde(default)]
    pub server_name: Option<String>,
}

impl AgentTlsConfig {
    /// What to trust: exactly one of `ca_file` and `pinned_cert_file`.
    pub fn trust(&self) -> Result<ServerTrust> {
        match (&self.ca_file, &self.pinned_cert_file) {
            (Some(ca), None) => Ok(ServerTrust::CaFile(ca.clone())),
            (None, Some(pin)) => Ok(ServerTrust::PinnedCertFile(pin.clone())),
            _ => Err(ControllerError::Config(
                "[agent_tls] needs exactly one of ca_file or pinned_cert_file".into(),
            )),
        }
    }

    /// Reads the trust files: the TLS setup for agents named by `agent_url`,
    /// and the one for agents discovered by address behind `agent_dns`.
    pub fn load(&self, agent_dns: Option<&str>) -> Result<(ClientTls, ClientTls)> {
        let bad = |e: agent_api::client::tls::TlsError| {
            ControllerError::Config(format!("[agent_tls]: {e}"))
        };
        let tls = ClientTls::new(&self.trust()?).map_err(bad)?;
        let named = match &self.server_name {
            Some(name) => tls.clone().with_server_name(name).map_err(bad)?,
            None => tls.clone(),
        };
        let discovered = match (&self.server_name, agent_dns) {
            (None, Some(dns)) => tls.with_server_name(dns).map_err(bad)?,
            _ => named.clone(),
        };
        Ok((named, discovered))
    }
}

fn default_ratio() -> f64 {
    1.0
}
fn default_warning_percent() -> f64 {
    10.0
}
fn default_reconcile_interval() -> u64 {
    30
}
fn default_rpc_timeout() -> u64 {
    10_000
}
fn default_health_interval() -> u64 {
    1000
}
fn default_node_refresh_max_age() -> u64 {
    1000
}

/// Which state store backs the controller.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum StoreConfig {
    /// The embedded redb database at this path (single controller replica).
    Embedded(PathBuf),
    /// An etcd cluster.
    Etcd {
        /// Client URLs, e.g. `http://127.0.0.1:2379`.
        endpoints: Vec<String>,
        /// Key prefix under which everything is stored.
        #[serde(default = "default_prefix")]
        prefix: String,
    },
}

fn default_prefix() -> String {
    "/shorthorn".to_string()
}

/// DNS discovery of node agents (Kubernetes headless Service).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// Hostname resolving to every node agent (one A/AAAA record per pod).
    pub agent_dns: String,
    /// Port of the node agents' HTTP endpoint.
    #[serde(default = "default_agent_port")]
    pub agent_port: u16,
    /// File holding the bearer token shared with the agents.
    pub agent_token_file: PathBuf,
    /// lvstore name on discovered nodes.
    #[serde(default = "default_lvstore")]
    pub lvstore: String,
    /// Bdev to create the lvstore on when a discovered node has none.
    #[serde(default)]
    pub base_bdev: Option<BaseBdev>,
    /// Cluster size used when creating the lvstore.
    #[serde(default = "default_cluster_size")]
    pub cluster_size: u64,
}

fn default_agent_port() -> u16 {
    DEFAULT_AGENT_PORT
}

/// How the controller talks to one node's spdk_tgt.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeEndpoint {
    /// A local Unix socket (single machine, tests).
    Socket(PathBuf),
    /// The node agent's HTTP JSON-RPC proxy.
    Agent {
        /// Base URL of the agent, e.g. `http://10.0.0.1:9810`.
        url: String,
        /// File holding the bearer token.
        token_file: PathBuf,
    },
}

/// The bdev an lvstore lives on.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum BaseBdev {
    /// An aio bdev over a file or block device, created when missing.
    Aio {
        /// File or block device path.
        aio_file: PathBuf,
        /// Logical block size in bytes.
        #[serde(default = "default_block_size")]
        block_size: u32,
    },
    /// An existing bdev, by name (e.g. `Nvme0n1`).
    Existing(String),
}

fn default_block_size() -> u32 {
    4096
}

/// One storage node as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNodeConfig {
    name: String,
    spdk_socket: Option<PathBuf>,
    agent_url: Option<String>,
    agent_token_file: Option<PathBuf>,
    nvmf_address: IpAddr,
    #[serde(default = "default_nvmf_port")]
    nvmf_port: u16,
    #[serde(default)]
    topology: BTreeMap<String, String>,
    base_bdev: Option<BaseBdev>,
    #[serde(default = "default_lvstore")]
    lvstore: String,
    #[serde(default = "default_cluster_size")]
    cluster_size: u64,
    #[serde(default)]
    frontends: Vec<FrontendKind>,
}

fn default_nvmf_port() -> u16 {
    DEFAULT_NVMF_PORT
}
fn default_lvstore() -> String {
    DEFAULT_LVSTORE.to_string()
}
fn default_cluster_size() -> u64 {
    DEFAULT_CLUSTER_SIZE
}

/// One storage node, validated.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(try_from = "RawNodeConfig")]
pub struct NodeConfig {
    /// Node name; the Kubernetes node name when it runs a CSI node service.
    pub name: String,
    /// How to reach its spdk_tgt.
    pub endpoint: NodeEndpoint,
    /// Address other nodes use to reach its NVMe-oF TCP listener.
    pub nvmf_address: IpAddr,
    /// NVMe-oF TCP port.
    pub nvmf_port: u16,
    /// Topology labels (the node-name key is added automatically).
    pub topology: BTreeMap<String, String>,
    /// Bdev the lvstore lives on; `None` means the lvstore must already exist.
    pub base_bdev: Option<BaseBdev>,
    /// lvstore name.
    pub lvstore: String,
    /// Cluster size used when the controller creates the lvstore.
    pub cluster_size: u64,
    /// Kernel frontends this node's CSI node service supports; empty = storage only.
    pub frontends: Vec<FrontendKind>,
    /// The kernel initiator's NVMe host NQN and host id, when the node agent reported them.
    pub kernel_host: Option<KernelHost>,
}

/// NVMe host identity of a node's kernel initiator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelHost {
    /// Host NQN.
    pub nqn: String,
    /// Host id.
    pub id: uuid::Uuid,
}

impl TryFrom<RawNodeConfig> for NodeConfig {
    type Error = String;

    fn try_from(raw: RawNodeConfig) -> std::result::Result<Self, String> {
        let endpoint = match (raw.spdk_socket, raw.agent_url, raw.agent_token_file) {
            (Some(sock), None, None) => NodeEndpoint::Socket(sock),
            (None, Some(url), Some(token_file)) => NodeEndpoint::Agent { url, token_file },
            (None, Some(_), None) => {
                return Err(format!(
                    "node {}: agent_url needs agent_token_file",
                    raw.name
                ))
            }
            _ => {
                return Err(format!(
                    "node {}: set exactly one of spdk_socket or agent_url (+ agent_token_file)",
                    raw.name
                ))
            }
        };
        validate_node_name(&raw.name)?;
        if raw.cluster_size < 1024 * 1024 || !raw.cluster_size.is_power_of_two() {
            return Err(format!(
                "node {}: cluster_size {} must be a power of two of at least 1 MiB",
                raw.name, raw.cluster_size
            ));
        }
        Ok(NodeConfig {
            name: raw.name,
            endpoint,
            nvmf_address: raw.nvmf_address,
            nvmf_port: raw.nvmf_port,
            topology: raw.topology,
            base_bdev: raw.base_bdev,
            lvstore: raw.lvstore,
            cluster_size: raw.cluster_size,
            frontends: raw.frontends,
            kernel_host: None,
        })
    }
}

/// Node names end up in NQNs and bdev names: keep them to DNS-label characters.
pub(crate) fn validate_node_name(name: &str) -> std::result::Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "node name {name:?} must be 1-253 characters of [A-Za-z0-9._-]"
        ))
    }
}

impl ControllerConfig {
    /// How often the health monitor runs, or `None` when it is switched off.
    pub fn health_interval(&self) -> Option<std::time::Duration> {
        (self.health_interval_ms > 0)
            .then(|| std::time::Duration::from_millis(self.health_interval_ms.max(100)))
    }

    /// Parses and validates a TOML document.
    pub fn from_toml(text: &str) -> Result<Self> {
        let config: ControllerConfig =
            toml::from_str(text).map_err(|e| ControllerError::Config(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and validates the TOML file at `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ControllerError::io(format!("reading controller config {}", path.display()), e)
        })?;
        Self::from_toml(&text)
    }

    /// Checks cross-field rules.
    pub fn validate(&self) -> Result<()> {
        if !(self.overprovisioning_ratio.is_finite() && self.overprovisioning_ratio > 0.0) {
            return Err(ControllerError::Config(format!(
                "overprovisioning_ratio {} must be a positive number (1.0 = no overcommit)",
                self.overprovisioning_ratio
            )));
        }
        if !(0.0..100.0).contains(&self.lvstore_free_warning_percent) {
            return Err(ControllerError::Config(format!(
                "lvstore_free_warning_percent {} must be within [0, 100)",
                self.lvstore_free_warning_percent
            )));
        }
        let mut seen = std::collections::BTreeSet::new();
        for node in &self.nodes {
            if !seen.insert(node.name.as_str()) {
                return Err(ControllerError::Config(format!(
                    "node {} is listed twice",
                    node.name
                )));
            }
        }
        if let Some(tls) = &self.agent_tls {
            tls.trust()?;
        }
        self.leader.validate()?;
        if self.nodes.is_empty() && self.discovery.is_none() {
            return Err(ControllerError::Config(
                "no storage nodes: list [[nodes]] or configure [discovery]".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
        [store]
        etcd = { endpoints = ["http://127.0.0.1:2379"] }

        [[nodes]]
        name = "a"
        spdk_socket = "/tmp/a.sock"
        nvmf_address = "127.0.0.1"
        base_bdev = { aio_file = "/tmp/a.img" }
        frontends = ["ublk", "nvme_tcp"]

        [[nodes]]
        name = "b"
        agent_url = "http://10.0.0.2:9810"
        agent_token_file = "/run/token"
        nvmf_address = "10.0.0.2"
        nvmf_port = 4421
        base_bdev = "Nvme0n1"
        topology = { zone = "z2" }
    "#;

    #[test]
    fn parses_both_endpoint_kinds_and_fills_defaults() {
        let config = ControllerConfig::from_toml(SAMPLE).unwrap();
        assert_eq!(config.overprovisioning_ratio, 1.0);
        assert_eq!(config.node_refresh_max_age_ms, 1000);
        assert_eq!(
            config.store,
            StoreConfig::Etcd {
                endpoints: vec!["http://127.0.0.1:2379".into()],
                prefix: "/shorthorn".into()
            }
        );
        let a = &config.nodes[0];
        assert_eq!(a.endpoint, NodeEndpoint::Socket("/tmp/a.sock".into()));
        assert_eq!(a.nvmf_port, DEFAULT_NVMF_PORT);
        assert_eq!(a.lvstore, "shorthorn");
        assert_eq!(
            a.base_bdev,
            Some(BaseBdev::Aio {
                aio_file: "/tmp/a.img".into(),
                block_size: 4096
            })
        );
        assert_eq!(a.frontends, vec![FrontendKind::Ublk, FrontendKind::NvmeTcp]);
        let b = &config.nodes[1];
        assert!(matches!(b.endpoint, NodeEndpoint::Agent { .. }));
        assert_eq!(b.base_bdev, Some(BaseBdev::Existing("Nvme0n1".into())));
        assert_eq!(b.topology.get("zone").map(String::as_str), Some("z2"));
    }

    #[test]
    fn rejects_ambiguous_endpoints_duplicates_and_bad_ratio() {
        let both = SAMPLE.replace(
            "spdk_socket = \"/tmp/a.sock\"",
            "spdk_socket = \"/tmp/a.sock\"\nagent_url = \"http://x\"\nagent_token_file = \"/t\"",
        );
        let err = ControllerConfig::from_toml(&both).unwrap_err().to_string();
        assert!(err.contains("exactly one of spdk_socket"), "{err}");

        let dup = SAMPLE.replace("name = \"b\"", "name = \"a\"");
        let err = ControllerConfig::from_toml(&dup).unwrap_err().to_string();
        assert!(err.contains("listed twice"), "{err}");

        let ratio = format!("overprovisioning_ratio = 0.0\n{SAMPLE}");
        let err = ControllerConfig::from_toml(&ratio).unwrap_err().to_string();
        assert!(err.contains("overprovisioning_ratio"), "{err}");
    }

    #[test]
    fn frontends_take_the_one_spelling_and_the_old_one() {
        let new = SAMPLE.replace("\"nvme_tcp\"", "\"nvme-tcp\"");
        let config = ControllerConfig::from_toml(&new).unwrap();
        assert_eq!(
            config.nodes[0].frontends,
            vec![FrontendKind::Ublk, FrontendKind::NvmeTcp]
        );
        let bad = SAMPLE.replace("\"nvme_tcp\"", "\"iscsi\"");
        let err = ControllerConfig::from_toml(&bad).unwrap_err().to_string();
        assert!(err.contains("expected nvme-tcp or ublk"), "{err}");
    }

    #[test]
    fn agent_tls_names_exactly_one_trust_file() {
        let ca = format!("{SAMPLE}\n[agent_tls]\nca_file = \"/etc/shorthorn/ca.crt\"\n");
        let config = ControllerConfig::from_toml(&ca).unwrap();
        let tls = config.agent_tls.unwrap();
        assert_eq!(
            tls.trust().unwrap(),
            ServerTrust::CaFile("/etc/shorthorn/ca.crt".into())
        );
        let both = format!("{ca}pinned_cert_file = \"/x.crt\"\n");
        let err = ControllerConfig::from_toml(&both).unwrap_err().to_string();
        assert!(err.contains("exactly one of ca_file"), "{err}");
        let neither = format!("{SAMPLE}\n[agent_tls]\nserver_name = \"a\"\n");
        assert!(ControllerConfig::from_toml(&neither).is_err());
        let missing = tls_for("/nonexistent/ca.crt");
        let err = missing.load(None).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/ca.crt"), "{err}");
    }

    #[test]
    fn leader_defaults_and_limits() {
        let config = ControllerConfig::from_toml(SAMPLE).unwrap();
        assert_eq!(config.leader.ttl(), Duration::from_secs(15));
        assert_eq!(config.leader.keepalive_interval(), Duration::from_secs(5));
        assert_eq!(config.leader.retry_interval(), Duration::from_millis(500));
        let short = format!("leader = {{ lease_ttl_secs = 3 }}\n{SAMPLE}");
        let config = ControllerConfig::from_toml(&short).unwrap();
        assert_eq!(config.leader.keepalive_interval(), Duration::from_secs(1));
        for (bad, says) in [
            ("lease_ttl_secs = 1", "etcd's minimum"),
            ("keepalive_interval_ms = 9000", "half the lease TTL"),
            ("retry_interval_ms = 1", "at least 50"),
        ] {
            let text = format!("leader = {{ {bad} }}\n{SAMPLE}");
            let err = ControllerConfig::from_toml(&text).unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    fn tls_for(ca: &str) -> AgentTlsConfig {
        AgentTlsConfig {
            ca_file: Some(ca.into()),
            pinned_cert_file: None,
            server_name: None,
        }
    }
}
