//! [`Context`]: what every operation, service and view works with (the
//! store, the node registry, fencing, leadership, per-volume locks, the
//! orphan sweep's memory).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::config::{MetricsConfig, RebuildConfig};
use crate::error::{ControllerError, Result};
use crate::fence::Fencing;
use crate::health::clock::HealthClock;
use crate::leader::Leadership;
use crate::metrics::Metrics;
use crate::nodes::NodeRegistry;
use crate::reconciler::sweep::grace::{SweepPolicy, Sweeper};
use crate::store::{ReplicaRecord, Store, VolumeRecord};

/// Everything an operation needs. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Context {
    /// Durable state.
    pub store: Store,
    /// Storage nodes.
    pub nodes: Arc<NodeRegistry>,
    /// How published volumes are fenced for snapshots, and hold statistics.
    pub fencing: Arc<Fencing>,
    /// The orphan sweep's policy and what it remembers between passes.
    pub sweeper: Arc<Sweeper>,
    /// Whether this controller may act (leader election on etcd).
    pub leader: Leadership,
    /// How replicas are rebuilt (`[rebuild]`).
    pub rebuild: Arc<RebuildConfig>,
    /// When the health monitor last finished a pass.
    pub health: Arc<HealthClock>,
    /// Prometheus metrics and their scrape cache (`[metrics]`).
    pub metrics: Arc<Metrics>,
    locks: Arc<KeyedLocks>,
}

impl Context {
    /// Bundles the store and the node registry; this process is assumed to
    /// be the only writer ([`Leadership::assumed`]) unless
    /// [`Context::with_leadership`] says otherwise.
    pub fn new(store: Store, nodes: Arc<NodeRegistry>) -> Self {
        Self {
            store,
            nodes,
            fencing: Arc::default(),
            sweeper: Arc::default(),
            leader: Leadership::assumed(),
            rebuild: Arc::default(),
            health: Arc::default(),
            metrics: Arc::default(),
            locks: Arc::default(),
        }
    }

    /// The same context with another orphan-sweep policy (and a fresh memory).
    #[must_use]
    pub fn with_sweep_policy(mut self, policy: SweepPolicy) -> Self {
        self.sweeper = Arc::new(Sweeper::new(policy));
        self
    }

    /// The same context acting only while `leadership` allows.
    #[must_use]
    pub fn with_leadership(mut self, leadership: Leadership) -> Self {
        self.leader = leadership;
        self
    }

    /// The same context with another rebuild policy.
    #[must_use]
    pub fn with_rebuild(mut self, rebuild: RebuildConfig) -> Self {
        self.rebuild = Arc::new(rebuild);
        self
    }

    /// The same context with another metrics policy (and a fresh cache).
    #[must_use]
    pub fn with_metrics(mut self, config: MetricsConfig) -> Self {
        self.metrics = Arc::new(Metrics::new(config));
        self
    }

    /// The same context with another fencing policy.
    #[must_use]
    pub fn with_fencing(mut self, fencing: Fencing) -> Self {
        self.fencing = Arc::new(fencing);
        self
    }

    /// Serialises operations on one key (a volume id or name) in this process.
    pub async fn lock(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        self.mutex_of(key).lock_owned().await
    }

    /// The lock of `key` if nobody holds it now (the health monitor leaves a
    /// volume alone while an operation works on it).
    pub fn try_lock(&self, key: &str) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        self.mutex_of(key).try_lock_owned().ok()
    }

    fn mutex_of(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self
            .locks
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, m| Arc::strong_count(m) > 1);
        map.entry(key.to_string()).or_default().clone()
    }

    /// The volume and its replicas, or [`ControllerError::VolumeNotFound`].
    pub async fn existing_volume(&self, id: &str) -> Result<(VolumeRecord, Vec<ReplicaRecord>)> {
        self.volume(id)
            .await?
            .ok_or_else(|| ControllerError::VolumeNotFound { id: id.to_string() })
    }

    /// The volume and its replicas, or `None`.
    pub async fn volume(&self, id: &str) -> Result<Option<(VolumeRecord, Vec<ReplicaRecord>)>> {
        let Some(volume) = self.store.get_volume(id).await? else {
            return Ok(None);
        };
        let replicas = self
            .store
            .list_replicas(id)
            .await?
            .into_iter()
            .map(|r| r.record)
            .collect();
        Ok(Some((volume.record, replicas)))
    }
}

#[derive(Debug, Default)]
struct KeyedLocks {
    map: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}
