//! The cluster record: the identity of the Shorthorn cluster this store
//! belongs to, generated once (by the first controller that finds none) and
//! stamped on every node the controller bootstraps (`nodes::stamp`), so a
//! controller pointed at another cluster's store, or at an empty one, can
//! tell that the nodes are not its own and leaves them alone.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::keys;
use super::records::{SchemaVersioned, SCHEMA_VERSION};
use super::typed::{encode, Store};
use super::{Expect, StoreError, Versioned};

fn current_version() -> u32 {
    SCHEMA_VERSION
}

/// The identity of the cluster a store belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRecord {
    /// Schema version of this record.
    #[serde(default = "current_version")]
    pub version: u32,
    /// The cluster id (a UUID v4), as stamped on the nodes.
    pub id: String,
    /// When the record was created.
    pub created_at: SystemTime,
}

impl SchemaVersioned for ClusterRecord {
    fn schema_version(&self) -> u32 {
        self.version
    }
}

impl Store {
    /// The cluster record, if this store has one.
    pub async fn get_cluster(&self) -> super::Result<Option<Versioned<ClusterRecord>>> {
        self.get_record(keys::CLUSTER).await
    }

    /// The cluster record, created with a fresh id if the store has none.
    /// Two controllers racing here agree on one id: the loser reads the
    /// winner's record.
    pub async fn ensure_cluster(&self) -> super::Result<ClusterRecord> {
        if let Some(existing) = self.get_cluster().await? {
            return Ok(existing.record);
        }
        let record = ClusterRecord {
            version: SCHEMA_VERSION,
            id: uuid::Uuid::new_v4().to_string(),
            created_at: SystemTime::now(),
        };
        let value = encode(keys::CLUSTER, &record)?;
        match self.kv().put(keys::CLUSTER, value, Expect::Absent).await {
            Ok(_) => {
                tracing::info!(cluster = %record.id, "this store had no cluster identity; created one");
                Ok(record)
            }
            Err(StoreError::Conflict { .. }) => self
                .get_cluster()
                .await?
                .map(|v| v.record)
                .ok_or_else(|| StoreError::Conflict {
                    key: keys::CLUSTER.to_string(),
                }),
            Err(e) => Err(e),
        }
    }
}
