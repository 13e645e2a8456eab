//! The multi-step operations behind the CSI calls. Each one journals itself
//! before acting, is idempotent, and can be resumed or rolled back from its
//! journal entry by [`crate::reconciler`].
//!
//! Snapshots and expansion will be further modules here.

pub mod create_volume;
pub mod delete_volume;
pub mod publish;
pub mod teardown;
pub mod unpublish;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::Result;
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
    locks: Arc<KeyedLocks>,
}

impl Context {
    /// Bundles the store and the node registry.
    pub fn new(store: Store, nodes: Arc<NodeRegistry>) -> Self {
        Self {
            store,
            nodes,
            locks: Arc::default(),
        }
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
