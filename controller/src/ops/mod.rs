//! The multi-step operations behind the CSI calls. Each one journals itself
//! before acting, is idempotent, and can be resumed or rolled back from its
//! journal entry by [`crate::reconciler`].
//!
//! Snapshots, clones, expansion and revert: [`snapshot_create`],
//! [`snapshot_delete`], [`clone`], [`expand`], [`revert`].

pub mod clone;
pub mod create_volume;
pub mod delete_volume;
pub mod expand;
pub mod publish;
pub mod revert;
pub mod snapshot_create;
pub mod snapshot_delete;
pub mod teardown;
pub mod unpublish;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::Result;
use crate::fence::Fencing;
use crate::journal::store_error;
use crate::nodes::NodeRegistry;
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
    locks: Arc<KeyedLocks>,
}

impl Context {
    /// Bundles the store and the node registry.
    pub fn new(store: Store, nodes: Arc<NodeRegistry>) -> Self {
        Self {
            store,
            nodes,
            fencing: Arc::default(),
            locks: Arc::default(),
        }
    }

    /// The same context with another fencing policy.
    #[must_use]
    pub fn with_fencing(mut self, fencing: Fencing) -> Self {
        self.fencing = Arc::new(fencing);
        self
    }

    /// Serialises operations on one key (a volume id or name) in this process.
    pub async fn lock(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let mutex = {
            let mut map = self
                .locks
                .map
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            map.retain(|_, m| Arc::strong_count(m) > 1);
            map.entry(key.to_string()).or_default().clone()
        };
        mutex.lock_owned().await
    }

    /// The volume and its replicas, or `None`.
    pub async fn volume(&self, id: &str) -> Result<Option<(VolumeRecord, Vec<ReplicaRecord>)>> {
        let Some(volume) = self.store.get_volume(id).await.map_err(store_error)? else {
            return Ok(None);
        };
        let replicas = self
            .store
            .list_replicas(id)
            .await
            .map_err(store_error)?
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
