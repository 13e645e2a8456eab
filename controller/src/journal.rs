//! The operation journal: every multi-step operation writes an
//! [`OperationRecord`] before it acts, updates its step as it progresses and
//! removes it when done, so a restarted controller can finish or roll back.
//!
//! Crash tests set `SHORTHORN_FAULT_AT=<op>:<step>` (e.g.
//! `create-volume:replicas-created`): the process aborts right after that
//! step is journaled, exactly like a crash at that point.

use std::time::SystemTime;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{ControllerError, Result};
use crate::store::{OperationKind, OperationRecord, Revision, Store, StoreError};

/// Environment variable naming the journaled step to crash after.
pub const FAULT_ENV: &str = "SHORTHORN_FAULT_AT";

/// The journal spelling of an operation kind (as used in `SHORTHORN_FAULT_AT`).
pub fn kind_name(kind: OperationKind) -> &'static str {
    match kind {
        OperationKind::CreateVolume => "create-volume",
        OperationKind::DeleteVolume => "delete-volume",
        OperationKind::ExpandVolume => "expand-volume",
        OperationKind::PublishVolume => "publish-volume",
        OperationKind::UnpublishVolume => "unpublish-volume",
        OperationKind::CreateSnapshot => "create-snapshot",
        OperationKind::DeleteSnapshot => "delete-snapshot",
        OperationKind::RebuildReplica => "rebuild-replica",
        OperationKind::RevertVolume => "revert-volume",
        OperationKind::ChangeReplicas => "change-replicas",
    }
}

/// Whether `fault` (the value of [`FAULT_ENV`]) selects this step.
pub fn fault_matches(fault: &str, kind: OperationKind, step: &str) -> bool {
    fault
        .split_once(':')
        .is_some_and(|(op, s)| op == kind_name(kind) && s == step)
}

/// A crash point between journaled steps: aborts when [`FAULT_ENV`] names
/// `point` of `kind`, without writing anything to the journal (for points
/// where a store write would cost, such as while a snapshot fence holds I/O).
pub fn fault_point(kind: OperationKind, point: &str) {
    maybe_crash(kind, point);
}

fn maybe_crash(kind: OperationKind, step: &str) {
    if let Ok(fault) = std::env::var(FAULT_ENV) {
        if fault_matches(&fault, kind, step) {
            tracing::error!(op = kind_name(kind), step, "fault injection: aborting");
            std::process::abort();
        }
    }
}

/// An operation in flight, journaled in the store.
#[derive(Debug)]
pub struct Journal {
    store: Store,
    record: OperationRecord,
    revision: Revision,
}

impl Journal {
    /// Journal id of `kind` on `volume_id` (and `node` for per-node operations).
    pub fn op_id(kind: OperationKind, volume_id: &str, node: Option<&str>) -> String {
        match node {
            Some(node) => format!("{}-{volume_id}-{node}", kind_name(kind)),
            None => format!("{}-{volume_id}", kind_name(kind)),
        }
    }

    /// Writes the journal entry (step `step`) before anything is done.
    /// ABORTED when the same operation is already in flight.
    pub async fn begin<P: Serialize>(
        store: &Store,
        kind: OperationKind,
        volume_id: &str,
        node: Option<&str>,
        step: &str,
        payload: &P,
    ) -> Result<Self> {
        let record = OperationRecord {
            version: crate::store::SCHEMA_VERSION,
            id: Self::op_id(kind, volume_id, node),
            kind,
            volume_id: volume_id.to_string(),
            step: step.to_string(),
            payload: to_value(payload)?,
            started_at: SystemTime::now(),
        };
        let revision = store.begin_operation(&record).await.map_err(|e| match e {
            StoreError::Conflict { .. } => ControllerError::OperationInProgress {
                operation: kind_name(kind),
                volume: volume_id.to_string(),
            },
            other => other.into(),
        })?;
        maybe_crash(kind, step);
        Ok(Self {
            store: store.clone(),
            record,
            revision,
        })
    }

    /// Resumes a journaled operation read back from the store.
    pub fn resume(store: &Store, record: OperationRecord, revision: Revision) -> Self {
        Self {
            store: store.clone(),
            record,
            revision,
        }
    }

    /// Re-reads the entry: call it under the volume lock, before acting on an
    /// entry listed earlier (recovery). `None` when it is gone or was
    /// rewritten since it was read, i.e. another actor finished it or moved
    /// it on in between; the caller then leaves it alone (a later pass sees
    /// its new state).
    pub async fn reread(self) -> Result<Option<Self>> {
        let id = &self.record.id;
        match self.store.get_operation(id).await? {
            Some(current) if current.revision == self.revision => Ok(Some(self)),
            Some(current) => {
                tracing::info!(op = %id, listed = self.revision.0, now = current.revision.0, "journal entry changed since it was listed; not acting on it");
                Ok(None)
            }
            None => {
                tracing::info!(op = %id, "journal entry finished since it was listed; nothing to recover");
                Ok(None)
            }
        }
    }

    /// The journaled record.
    pub fn record(&self) -> &OperationRecord {
        &self.record
    }

    /// The payload decoded as `P`.
    pub fn payload<P: DeserializeOwned>(&self) -> Result<P> {
        serde_json::from_value(self.record.payload.clone()).map_err(|e| {
            ControllerError::Internal(format!(
                "journal entry {} has an unreadable payload: {e}",
                self.record.id
            ))
        })
    }

    /// Records that `step` was reached, with an updated payload.
    pub async fn step<P: Serialize>(&mut self, step: &str, payload: &P) -> Result<()> {
        let payload = to_value(payload)?;
        self.revision = self
            .store
            .update_operation_step(&self.record.id, step, payload.clone(), self.revision)
            .await?;
        self.record.step = step.to_string();
        self.record.payload = payload;
        maybe_crash(self.record.kind, step);
        Ok(())
    }

    /// Removes the entry: the operation is complete (or fully rolled back).
    pub async fn finish(self) -> Result<()> {
        self.store.finish_operation(&self.record.id).await?;
        Ok(())
    }
}

fn to_value<P: Serialize>(payload: &P) -> Result<serde_json::Value> {
    serde_json::to_value(payload)
        .map_err(|e| ControllerError::Internal(format!("encoding a journal payload: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_spec_selects_exactly_one_step() {
        let k = OperationKind::CreateVolume;
        assert!(fault_matches("create-volume:placed", k, "placed"));
        assert!(!fault_matches("create-volume:placed", k, "recorded"));
        assert!(!fault_matches(
            "publish-volume:placed",
            OperationKind::CreateVolume,
            "placed"
        ));
        assert!(!fault_matches("garbage", k, "placed"));
    }
}
