//! The storage-node registry: one [`NodeHandle`] per node, holding its SPDK
//! client, its configuration and what the controller last learned about it.
//!
//! - [`bootstrap`]: makes a node usable (base bdev, lvstore, TCP transport).
//! - [`primitives`]: idempotent SPDK building blocks the operations use.
//! - [`stamp`]: the cluster stamp on a node's lvstore (whose node it is).
//! - [`ledger`]: what this controller changed on a node since its last
//!   refresh, so CreateVolume can place on a cached view (refreshed only
//!   when older than `node_refresh_max_age_ms`) without double-booking.

pub mod bootstrap;
pub mod ledger;
pub mod primitives;
pub mod stamp;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use agent_api::client::{AgentClient, ClientTls};
use agent_api::FrontendKind;
use spdk_client::{SpdkClient, SpdkError};

use crate::capacity::LvstoreSpace;
use crate::config::{ControllerConfig, DiscoveryConfig, NodeConfig, NodeEndpoint};
use crate::error::{ControllerError, NodeError, Result};
use crate::naming::TOPOLOGY_NODE_KEY;
use crate::placement::{Candidate, Segments};
use ledger::{Ledger, ReservationId};
use stamp::{ClusterIdentity, Stamp};

/// What the controller last learned about a node.
#[derive(Debug, Clone, Default)]
pub struct NodeStatus {
    /// The node answered its last call.
    pub online: bool,
    /// Base bdev, lvstore and transport are in place.
    pub bootstrapped: bool,
    /// Space of its lvstore at the last refresh.
    pub space: LvstoreSpace,
    /// UUID of its lvstore.
    pub lvstore_uuid: Option<String>,
    /// Shorthorn replica lvols on its lvstore.
    pub replicas: usize,
    /// Why the last refresh failed, if it did.
    pub last_error: Option<String>,
    /// When the last refresh (successful or not) ended.
    pub refreshed_at: Option<Instant>,
    /// This controller's changes since the refresh `space` comes from.
    pub ledger: Ledger,
    /// Whose node its lvstore's cluster stamp says it is, when last read.
    pub stamp: Option<Stamp>,
    /// Restarts of its spdk_tgt this controller noticed.
    pub restarts: u32,
    /// When the last of those was noticed.
    pub last_restart: Option<std::time::SystemTime>,
    /// It restarted and the replica exports it lost have not all been given
    /// back yet (the health monitor does that, then clears this).
    pub exports_lost: bool,
}

impl NodeStatus {
    /// Space and replica count as placement sees them: the last refresh
    /// plus this controller's reservations and removals since.
    pub fn effective(&self) -> (LvstoreSpace, usize) {
        self.ledger.apply(self.space, self.replicas)
    }
}

/// Whether a view refreshed at `refreshed_at` is too old at `now`.
pub fn is_stale(refreshed_at: Option<Instant>, now: Instant, max_age: Duration) -> bool {
    refreshed_at.is_none_or(|at| now.saturating_duration_since(at) > max_age)
}

/// A placement's reservations on its chosen nodes. Dropping it (when the
/// create ends, however it ends) settles them: from then on a refresh that
/// starts sees what the create left.
#[derive(Debug, Default)]
pub struct Reservations(Vec<(Arc<NodeHandle>, ReservationId)>);

impl Drop for Reservations {
    fn drop(&mut self) {
        for (node, id) in &self.0 {
            node.update_status(|s| s.ledger.settle(*id));
        }
    }
}

/// One storage node.
#[derive(Debug)]
pub struct NodeHandle {
    /// Its configuration.
    pub config: NodeConfig,
    /// Its SPDK JSON-RPC client (socket or node agent).
    pub client: SpdkClient,
    /// Its node agent, when it is reached through one (quiesce, identity).
    pub agent: Option<AgentClient>,
    status: Mutex<NodeStatus>,
    /// Serialises bootstrap and ublk id allocation on this node.
    pub(crate) lock: tokio::sync::Mutex<()>,
    /// The cluster identity bootstrap stamps the node with, shared with the
    /// registry (unset until the controller read it from its store).
    cluster: Arc<OnceLock<ClusterIdentity>>,
}

impl NodeHandle {
    /// Builds the handle and its clients (reading the agent token if any);
    /// `tls` verifies an agent reached over HTTPS.
    pub fn new(config: NodeConfig, tls: Option<&ClientTls>) -> Result<Self> {
        let (client, agent) = match &config.endpoint {
            NodeEndpoint::Socket(path) => (SpdkClient::unix(path.clone()), None),
            NodeEndpoint::Agent { url, token_file } => {
                let token = std::fs::read_to_string(token_file).map_err(|e| {
                    ControllerError::io(
                        format!(
                            "reading agent token {} of node {}",
                            token_file.display(),
                            config.name
                        ),
                        e,
                    )
                })?;
                let config_error = |e: agent_api::client::AgentError| {
                    ControllerError::Config(format!("node {}: {e}", config.name))
                };
                let agent = AgentClient::new(url, &token, tls.cloned())
                    .map_err(config_error)?
                    .for_node(&config.name);
                (agent.spdk().map_err(config_error)?, Some(agent))
            }
        };
        Ok(Self {
            config,
            client,
            agent,
            status: Mutex::new(NodeStatus::default()),
            lock: tokio::sync::Mutex::new(()),
            cluster: Arc::default(),
        })
    }

    /// The cluster this node is stamped with at bootstrap, once known.
    pub fn cluster(&self) -> Option<&ClusterIdentity> {
        self.cluster.get()
    }

    /// The node name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Topology segments, including the node-name key.
    pub fn segments(&self) -> Segments {
        let mut segments = self.config.topology.clone();
        segments.insert(TOPOLOGY_NODE_KEY.to_string(), self.config.name.clone());
        segments
    }

    /// The frontend used to publish volumes on this node, if it runs a CSI node service.
    pub fn frontend(&self) -> Option<FrontendKind> {
        self.config.frontends.first().copied()
    }

    /// What the controller last learned.
    pub fn status(&self) -> NodeStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn update_status<T>(&self, f: impl FnOnce(&mut NodeStatus) -> T) -> T {
        f(&mut self.status.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Records that this controller deleted lvols of `bytes` in total
    /// (`replicas` of them replicas) here, ahead of the next refresh.
    pub fn note_removed(&self, bytes: u64, replicas: usize) {
        self.update_status(|s| s.ledger.removed(bytes, replicas));
    }

    /// Records that `method` failed on this node (a node that could not be
    /// reached at all is marked offline) and names the failure; `?` turns it
    /// into the crate error.
    pub fn call_failed(&self, method: &'static str, source: SpdkError) -> NodeError {
        if !matches!(source, SpdkError::Rpc { .. }) {
            self.update_status(|s| {
                s.online = false;
                s.bootstrapped = false;
                s.last_error = Some(source.to_string());
            });
        }
        NodeError {
            node: self.config.name.clone(),
            method,
            source,
        }
    }

    /// The lvstore's alias for the replica lvol of `volume_id`.
    pub fn lvol_alias(&self, volume_id: &str) -> String {
        format!(
            "{}/{}",
            self.config.lvstore,
            crate::naming::replica_lvol(volume_id)
        )
    }
}

/// All storage nodes, by name.
#[derive(Debug, Default)]
pub struct NodeRegistry {
    nodes: RwLock<BTreeMap<String, Arc<NodeHandle>>>,
    /// Overprovisioning ratio used for placement and capacity.
    pub ratio: f64,
    /// Free-space percentage under which an lvstore is reported nearly full.
    pub warn_percent: f64,
    /// DNS discovery of node agents, when configured.
    pub discovery: Option<DiscoveryConfig>,
    /// Age under which CreateVolume places on a node's cached view
    /// (`node_refresh_max_age_ms`; zero refreshes on every call).
    pub max_age: Duration,
    /// HTTPS to agents named by URL, when `[agent_tls]` is configured.
    agent_tls: Option<ClientTls>,
    /// HTTPS to agents found by DNS discovery (verified as `agent_dns`).
    discovered_tls: Option<ClientTls>,
    /// Makes "read the views, place, reserve" one step across placements.
    placement: Mutex<()>,
    /// This controller's cluster identity, shared with every node handle.
    cluster: Arc<OnceLock<ClusterIdentity>>,
    /// Other clusters whose nodes this one takes over (`[sweep] adopt_clusters`).
    pub adopt_clusters: Vec<String>,
    /// Per-call timeout of every node's SPDK client (`rpc_timeout_ms`).
    rpc_timeout: Duration,
    /// Latency and errors of every node's SPDK calls (metrics).
    pub rpc_metrics: Arc<crate::metrics::rpc::RpcMetrics>,
}

impl NodeRegistry {
    /// Registers every statically configured node.
    pub fn from_config(config: &ControllerConfig) -> Result<Self> {
        let agent_dns = config.discovery.as_ref().map(|d| d.agent_dns.as_str());
        let (agent_tls, discovered_tls) = match &config.agent_tls {
            Some(tls) => {
                let (named, discovered) = tls.load(agent_dns)?;
                (Some(named), Some(discovered))
            }
            None => (None, None),
        };
        let registry = Self {
            nodes: RwLock::default(),
            ratio: config.overprovisioning_ratio,
            warn_percent: config.lvstore_free_warning_percent,
            discovery: config.discovery.clone(),
            max_age: Duration::from_millis(config.node_refresh_max_age_ms),
            agent_tls,
            discovered_tls,
            placement: Mutex::default(),
            cluster: Arc::default(),
            adopt_clusters: config.sweep.adopt_clusters.clone(),
            rpc_timeout: Duration::from_millis(config.rpc_timeout_ms.max(100)),
            rpc_metrics: Arc::default(),
        };
        for node in &config.nodes {
            registry.insert(NodeHandle::new(node.clone(), registry.agent_tls.as_ref())?);
        }
        Ok(registry)
    }

    /// Sets the cluster identity every node is stamped with at bootstrap
    /// (once; `false` if another was set before).
    pub fn set_cluster(&self, cluster: ClusterIdentity) -> bool {
        self.cluster.set(cluster).is_ok()
    }

    /// This controller's cluster identity, once set.
    pub fn cluster(&self) -> Option<&ClusterIdentity> {
        self.cluster.get()
    }

    /// Adds or replaces a node (DNS discovery).
    pub fn insert(&self, mut node: NodeHandle) {
        node.cluster = self.cluster.clone();
        if self.rpc_timeout > Duration::ZERO {
            node.client = node.client.clone().with_timeout(self.rpc_timeout);
        }
        node.client = node
            .client
            .clone()
            .with_observer(self.rpc_metrics.observer(&node.config.name));
        self.nodes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(node.config.name.clone(), Arc::new(node));
    }

    /// Registers nodes found through DNS discovery: new ones are added, and
    /// ones whose identity changed are replaced. Nodes are never removed
    /// here: a vanished agent is just unreachable.
    pub async fn rediscover(&self) -> Result<usize> {
        let Some(discovery) = &self.discovery else {
            return Ok(0);
        };
        let mut changed = 0;
        let tls = self.discovered_tls.as_ref();
        for node in crate::discovery::discover(discovery, tls).await? {
            let known = self
                .nodes
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&node.name)
                .map(|n| n.config == node);
            if known != Some(true) {
                tracing::info!(node = %node.name, "registering discovered storage node");
                self.insert(NodeHandle::new(node, tls)?);
                changed += 1;
            }
        }
        Ok(changed)
    }

    /// The node called `name`, or NOT_FOUND.
    pub fn get(&self, name: &str) -> Result<Arc<NodeHandle>> {
        self.nodes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
            .ok_or_else(|| ControllerError::NodeNotFound {
                node: name.to_string(),
            })
    }

    /// Every node, in name order.
    pub fn all(&self) -> Vec<Arc<NodeHandle>> {
        self.nodes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Refreshes every node concurrently; unreachable nodes come back offline.
    pub async fn refresh_all(&self) -> Vec<Arc<NodeHandle>> {
        let nodes = self.all();
        let refreshes = nodes.iter().map(|n| self.refresh(n));
        futures::future::join_all(refreshes).await;
        nodes
    }

    /// Refreshes (concurrently) only the nodes whose view is older than
    /// [`NodeRegistry::max_age`]; returns every node.
    pub async fn refresh_stale(&self) -> Vec<Arc<NodeHandle>> {
        self.refresh_older_than(self.max_age).await
    }

    /// Refreshes (concurrently) only the nodes whose view is older than
    /// `max_age`; returns every node.
    pub async fn refresh_older_than(&self, max_age: Duration) -> Vec<Arc<NodeHandle>> {
        let nodes = self.all();
        let now = Instant::now();
        let refreshes = nodes
            .iter()
            .filter(|n| is_stale(n.status().refreshed_at, now, max_age))
            .map(|n| self.refresh(n));
        futures::future::join_all(refreshes).await;
        nodes
    }

    /// Chooses the nodes of a new volume of `size` bytes with `place` and
    /// reserves the size on each, on views refreshed when older than
    /// [`NodeRegistry::max_age`]. A placement refused there (RESOURCE_EXHAUSTED)
    /// is retried once after refreshing every node, so a stale view never
    /// refuses a volume that fits. Keep the [`Reservations`] until the
    /// create has ended.
    pub async fn place_and_reserve(
        &self,
        size: u64,
        place: impl Fn(&[Candidate]) -> Result<Vec<String>>,
    ) -> Result<(Vec<String>, Reservations)> {
        let nodes = self.refresh_stale().await;
        match self.reserve(&nodes, size, &place) {
            Err(ControllerError::NotEnoughNodes { .. }) => {
                let nodes = self.refresh_all().await;
                self.reserve(&nodes, size, &place)
            }
            other => other,
        }
    }

    fn reserve(
        &self,
        nodes: &[Arc<NodeHandle>],
        size: u64,
        place: &impl Fn(&[Candidate]) -> Result<Vec<String>>,
    ) -> Result<(Vec<String>, Reservations)> {
        let _one_at_a_time = self
            .placement
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let chosen = place(&self.candidates(nodes))?;
        let mut reservations = Reservations::default();
        for name in &chosen {
            if let Some(node) = nodes.iter().find(|n| n.name() == name) {
                let id = node.update_status(|s| s.ledger.reserve(size));
                reservations.0.push((node.clone(), id));
            }
        }
        Ok((chosen, reservations))
    }

    /// Bootstraps (if needed) and re-reads the space of one node's lvstore,
    /// warning when it is nearly full.
    pub async fn refresh(&self, node: &NodeHandle) -> Result<LvstoreSpace> {
        let started = node.update_status(|s| s.ledger.refresh_started());
        let outcome = async {
            bootstrap::ensure_ready(node).await?;
            bootstrap::read_space(node).await
        }
        .await;
        match outcome {
            Ok((uuid, space, replicas)) => {
                if space.free_percent() < self.warn_percent {
                    tracing::warn!(
                        node = node.name(),
                        free_percent = space.free_percent(),
                        threshold = self.warn_percent,
                        "lvstore {} is nearly full: grow its base bdev or move volumes away before thin replicas run out of clusters",
                        node.config.lvstore
                    );
                }
                node.update_status(|s| {
                    s.refreshed_at = Some(Instant::now());
                    // Skipped when a refresh that started later was applied.
                    if s.ledger.refreshed(started) {
                        s.online = true;
                        s.space = space;
                        s.lvstore_uuid = Some(uuid);
                        s.replicas = replicas;
                        s.last_error = None;
                    }
                });
                Ok(space)
            }
            Err(err) => {
                tracing::warn!(node = node.name(), error = %err, "storage node refresh failed");
                node.update_status(|s| {
                    s.refreshed_at = Some(Instant::now());
                    s.online = false;
                    s.last_error = Some(err.to_string());
                });
                Err(err)
            }
        }
    }

    /// Whether a node's lvstore is below the free-space warning threshold.
    pub fn nearly_full(&self, status: &NodeStatus) -> bool {
        status.online && status.space.free_percent() < self.warn_percent
    }

    /// Placement candidates from the nodes' last refreshed status, adjusted
    /// by their ledgers ([`NodeStatus::effective`]).
    pub fn candidates(&self, nodes: &[Arc<NodeHandle>]) -> Vec<Candidate> {
        nodes
            .iter()
            .map(|n| {
                let status = n.status();
                let (space, replica_count) = status.effective();
                Candidate {
                    name: n.name().to_string(),
                    segments: n.segments(),
                    online: status.online && status.bootstrapped,
                    space,
                    replica_count,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_is_stale_when_older_than_the_max_age_or_never_read() {
        let now = Instant::now();
        let max = Duration::from_millis(1000);
        assert!(is_stale(None, now, max));
        assert!(!is_stale(Some(now), now, max));
        let old = now.checked_sub(Duration::from_millis(1500));
        assert!(old.is_none_or(|at| is_stale(Some(at), now, max)));
        // Zero max age: only a view read at this very instant is fresh.
        let just_before = now.checked_sub(Duration::from_millis(1));
        assert!(just_before.is_none_or(|at| is_stale(Some(at), now, Duration::ZERO)));
    }

    #[test]
    fn the_placement_view_adds_the_ledger_to_the_refreshed_space() {
        let mut status = NodeStatus {
            space: LvstoreSpace {
                cluster_size: 1,
                total_clusters: 100,
                free_clusters: 100,
                provisioned_bytes: 10,
            },
            replicas: 1,
            ..Default::default()
        };
        status.ledger.reserve(30);
        let (space, replicas) = status.effective();
        assert_eq!((space.provisioned_bytes, replicas), (40, 2));
        assert_eq!(space.provisionable_bytes(1.0), 60);
    }
}
