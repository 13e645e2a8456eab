//! CreateVolume: place, create one thin lvol per replica node, record.
//!
//! Steps journaled: `placed` (nodes chosen, nothing created yet),
//! `replicas-created` (every lvol exists), `recorded` (volume record written).
//! Recovery: if the volume record exists the operation is complete; otherwise
//! every replica lvol is removed and the caller's retry starts afresh.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::context::Context;
use crate::error::{ControllerError, Result};
use crate::journal::Journal;
use crate::naming;
use crate::nodes::{primitives, NodeHandle};
use crate::placement::{self, TopologyRequirement};
use crate::store::{
    ContentSource, OperationKind, ReplicaHealth, ReplicaRecord, TopologySegments, VolumeRecord,
    SCHEMA_VERSION,
};

/// A validated CreateVolume request.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    /// CSI name (idempotency key).
    pub name: String,
    /// Size in bytes, already rounded to whole clusters.
    pub size: u64,
    /// Number of replicas.
    pub replicas: u32,
    /// StorageClass parameters, kept with the volume.
    pub parameters: BTreeMap<String, String>,
    /// Accessibility requirements.
    pub topology: TopologyRequirement,
}

impl CreateRequest {
    /// The record of volume `id` this request creates.
    pub fn record(
        &self,
        id: &str,
        content_source: Option<ContentSource>,
        accessible_topology: Vec<TopologySegments>,
    ) -> VolumeRecord {
        VolumeRecord {
            version: SCHEMA_VERSION,
            id: id.to_string(),
            name: self.name.clone(),
            capacity_bytes: self.size,
            parameters: self.parameters.clone(),
            replica_count: self.replicas,
            content_source,
            accessible_topology,
            epoch: 0,
            unclean: None,
        }
    }
}

/// Journal payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatePayload {
    /// CSI name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Chosen nodes.
    pub nodes: Vec<String>,
    /// lvol uuid per node, once created.
    #[serde(default)]
    pub lvols: BTreeMap<String, String>,
}

/// Creates the volume, or returns the existing one with the same name and properties.
pub async fn create_volume(ctx: &Context, req: CreateRequest) -> Result<VolumeRecord> {
    let _name_guard = ctx.lock(&format!("name:{}", req.name)).await;
    if let Some(existing) = ctx.store.get_volume_by_name(&req.name).await? {
        return same_or_conflict(existing.record, &req);
    }
    let accessible = accessible_topology(ctx, &req.topology)?;
    // Cached node views plus this controller's reservations; held until the
    // create ends (see `nodes::ledger`).
    let (chosen, _reservations) = ctx
        .nodes
        .place_and_reserve(req.size, |candidates| {
            placement::place(
                candidates,
                req.replicas as usize,
                req.size,
                ctx.nodes.ratio,
                &req.topology,
            )
        })
        .await?;
    let volume_id = naming::new_volume_id();
    let span = tracing::info_span!("create_volume", volume = %volume_id, name = %req.name);
    let volume = req.record(&volume_id, None, accessible);
    let size = req.size;
    create_journaled(ctx, volume, chosen, |node| {
        let volume_id = volume_id.clone();
        async move { primitives::ensure_replica(&node, &volume_id, size).await }
    })
    .instrument(span)
    .await
}

/// The journaled steps every CreateVolume shares, with or without a content
/// source: journal `placed` (on `nodes`), `make` one replica lvol on each
/// node in parallel (returning its uuid), journal `replicas-created`, write
/// `volume` with its replica records, journal `recorded`. On failure the
/// replica lvols are removed and the journal entry with them (or left for
/// the reconciler when that fails too).
pub(super) async fn create_journaled<F, Fut>(
    ctx: &Context,
    volume: VolumeRecord,
    nodes: Vec<String>,
    make: F,
) -> Result<VolumeRecord>
where
    F: Fn(Arc<NodeHandle>) -> Fut,
    Fut: Future<Output = Result<String>>,
{
    let _guard = ctx.lock(&volume.id).await;
    let mut payload = CreatePayload {
        name: volume.name.clone(),
        size: volume.capacity_bytes,
        nodes,
        lvols: BTreeMap::new(),
    };
    let mut journal = Journal::begin(
        &ctx.store,
        OperationKind::CreateVolume,
        &volume.id,
        None,
        "placed",
        &payload,
    )
    .await?;
    tracing::info!(nodes = ?payload.nodes, size = volume.capacity_bytes, "creating replicas");
    match build(ctx, &volume, &mut payload, &mut journal, make).await {
        Ok(()) => {
            journal.finish().await?;
            tracing::info!(source = ?volume.content_source, "volume created");
            Ok(volume)
        }
        Err(err) => {
            tracing::warn!(error = %err, "create failed; rolling back");
            match rollback(ctx, &volume.id, &payload.nodes).await {
                Ok(()) => journal.finish().await?,
                Err(e) => {
                    tracing::error!(error = %e, "rollback incomplete; the reconciler will retry")
                }
            }
            Err(err)
        }
    }
}

async fn build<F, Fut>(
    ctx: &Context,
    volume: &VolumeRecord,
    payload: &mut CreatePayload,
    journal: &mut Journal,
    make: F,
) -> Result<()>
where
    F: Fn(Arc<NodeHandle>) -> Fut,
    Fut: Future<Output = Result<String>>,
{
    let mut handles = Vec::new();
    for name in &payload.nodes {
        handles.push(ctx.nodes.get(name)?);
    }
    let created = futures::future::try_join_all(handles.iter().cloned().map(&make)).await?;
    payload.lvols = payload.nodes.iter().cloned().zip(created).collect();
    journal.step("replicas-created", payload).await?;

    let replicas: Vec<ReplicaRecord> = handles
        .iter()
        .map(|n| ReplicaRecord {
            version: SCHEMA_VERSION,
            volume_id: volume.id.clone(),
            node: n.name().to_string(),
            lvstore: n.config.lvstore.clone(),
            lvol_uuid: payload.lvols.get(n.name()).cloned().unwrap_or_default(),
            health: ReplicaHealth::Healthy,
            generation: 1,
            reason: None,
            since: None,
        })
        .collect();
    ctx.store
        .create_volume(volume, &replicas)
        .await
        .map_err(|e| match e {
            crate::store::StoreError::Conflict { .. } => ControllerError::NameTakenConcurrently {
                name: volume.name.clone(),
            },
            other => other.into(),
        })?;
    journal.step("recorded", payload).await
}

/// Where a volume can be published: every node that runs a CSI node service
/// (remote replicas are reached over NVMe-oF from anywhere), narrowed to the
/// `requisite` topology when one is given.
///
/// RESOURCE_EXHAUSTED when the requirement names no such node: the volume
/// could be created but never used where it is wanted.
pub fn accessible_topology(
    ctx: &Context,
    topology: &TopologyRequirement,
) -> Result<Vec<TopologySegments>> {
    let consumers: Vec<TopologySegments> = ctx
        .nodes
        .all()
        .iter()
        .filter(|n| n.frontend().is_some())
        .map(|n| n.segments())
        .collect();
    if topology.requisite.is_empty() {
        return Ok(consumers);
    }
    let reachable: Vec<TopologySegments> = consumers
        .into_iter()
        .filter(|seg| {
            topology
                .requisite
                .iter()
                .any(|wanted| placement::segments_match(seg, wanted))
        })
        .collect();
    if reachable.is_empty() {
        return Err(ControllerError::NoNodeInTopology {
            requisite: format!("{:?}", topology.requisite),
        });
    }
    Ok(reachable)
}

fn same_or_conflict(existing: VolumeRecord, req: &CreateRequest) -> Result<VolumeRecord> {
    if existing.capacity_bytes != req.size {
        return Err(ControllerError::VolumeNameTaken {
            name: req.name.clone(),
            difference: format!(
                "{} bytes, not the {} requested (or request the same size)",
                existing.capacity_bytes, req.size
            ),
        });
    }
    if existing.parameters != req.parameters || existing.replica_count != req.replicas {
        return Err(ControllerError::VolumeNameTaken {
            name: req.name.clone(),
            difference: format!("different parameters ({:?})", existing.parameters),
        });
    }
    Ok(existing)
}

/// Removes every replica lvol of `volume_id` on `nodes` (unreachable nodes
/// are left to the orphan sweep), after tombstoning the volume so the sweep
/// removes those at once. Does nothing if the volume record was written:
/// then the create completed, and its replicas are the volume's.
pub async fn rollback(ctx: &Context, volume_id: &str, nodes: &[String]) -> Result<()> {
    if ctx.store.get_volume(volume_id).await?.is_some() {
        tracing::warn!(volume = %volume_id, "the volume record exists: nothing to roll back");
        return Ok(());
    }
    ctx.store.put_tombstone(volume_id).await?;
    for name in nodes {
        let node = ctx.nodes.get(name)?;
        match primitives::remove_replica(&node, volume_id).await {
            Ok(()) => {}
            Err(ControllerError::NodeUnreachable { .. }) => {
                tracing::warn!(node = %name, volume = %volume_id, "node unreachable; its replica lvol will be removed by the orphan sweep");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Completes or rolls back an interrupted CreateVolume.
pub async fn recover(ctx: &Context, journal: Journal) -> Result<()> {
    let volume_id = journal.record().volume_id.clone();
    let guard = ctx.lock(&volume_id).await;
    let Some(journal) = journal.reread().await? else {
        return Ok(()); // finished or moved on by another actor meanwhile
    };
    if ctx.store.get_volume(&volume_id).await?.is_some() {
        tracing::info!(volume = %volume_id, "interrupted create had completed");
        return journal.finish().await;
    }
    let payload: CreatePayload = journal.payload()?;
    tracing::info!(volume = %volume_id, step = %journal.record().step, "rolling back interrupted create");
    rollback(ctx, &volume_id, &payload.nodes).await?;
    journal.finish().await?;
    drop(guard);
    // A rolled-back copy of a volume leaves its internal snapshot unread.
    super::snapshot_delete::reclaim(ctx).await?;
    Ok(())
}
