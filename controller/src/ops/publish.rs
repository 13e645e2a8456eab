//! ControllerPublishVolume: assemble the volume's raid1 on the node that will
//! use it and expose it to that node's kernel.
//!
//! Steps journaled: `started`, `exported` (remote replicas exported to the
//! node's SPDK host NQN), `attached` (NVMe-oF controllers on the node),
//! `assembled` (raid1 over local lvol + attached bdevs), `frontend` (ublk disk
//! or loopback NVMe-oF subsystem), `recorded` (publication written).
//! Recovery: finished if the publication record exists, else torn down.

use std::collections::BTreeMap;

use agent_api::{AttachSpec, FrontendKind, NvmeTcpTarget, UblkTarget};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use super::teardown::{remove_local, teardown};
use crate::context::Context;
use crate::error::{ControllerError, Result};
use crate::journal::Journal;
use crate::membership::{self, Demotion};
use crate::naming;
use crate::nodes::{bootstrap, primitives, NodeHandle};
use crate::store::{Expect, OperationKind, PublicationRecord, ReplicaHealth, SCHEMA_VERSION};

/// Kernel NVMe/TCP: never give up on the loopback controller.
const KERNEL_CTRL_LOSS_TMO: i32 = -1;
/// Kernel NVMe/TCP reconnect delay in seconds.
const KERNEL_RECONNECT_DELAY: u32 = 1;
/// Kernel NVMe/TCP keep-alive timeout in seconds.
const KERNEL_KEEP_ALIVE_TMO: u32 = 5;

/// Journal payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublishPayload {
    /// Node the volume is published on.
    pub node: String,
    /// Nodes whose replicas join the raid (healthy ones only).
    pub replicas: Vec<String>,
}

/// Publishes `volume_id` on `node`; returns the publish_context.
pub async fn publish(
    ctx: &Context,
    volume_id: &str,
    node: &str,
    readonly: bool,
) -> Result<BTreeMap<String, String>> {
    let span = tracing::info_span!("publish", volume = %volume_id, node = %node);
    async {
        let _guard = ctx.lock(volume_id).await;
        ctx.existing_volume(volume_id).await?;
        let target = ctx.nodes.get(node)?;
        let publications = ctx.store.list_publications(volume_id).await?;
        if let Some(p) = publications.iter().find(|p| p.record.node == node) {
            if p.record.readonly != readonly {
                return Err(ControllerError::PublishedOtherwise {
                    volume: volume_id.to_string(),
                    node: node.to_string(),
                    readonly: p.record.readonly,
                });
            }
            return Ok(p.record.publish_context.clone());
        }
        if let Some(p) = publications.first() {
            return Err(ControllerError::PublishedElsewhere {
                volume: volume_id.to_string(),
                node: p.record.node.clone(),
            });
        }
        let frontend = target.frontend().ok_or_else(|| ControllerError::NoFrontend {
            node: node.to_string(),
        })?;
        let members = current_members(ctx, volume_id, node).await?;
        let payload = PublishPayload { node: node.to_string(), replicas: members };
        let mut journal = Journal::begin(
            &ctx.store,
            OperationKind::PublishVolume,
            volume_id,
            Some(node),
            "started",
            &payload,
        )
        .await?;
        match assemble(ctx, volume_id, &target, frontend, readonly, &payload, &mut journal).await {
            Ok(context) => {
                journal.finish().await?;
                Ok(context)
            }
            Err(err) => {
                tracing::warn!(error = %err, "publish failed; tearing down");
                match teardown(ctx, volume_id, node, &payload.replicas).await {
                    Ok(()) => journal.finish().await?,
                    Err(e) => tracing::error!(error = %e, "teardown incomplete; the reconciler will retry"),
                }
                Err(err)
            }
        }
    }
    .instrument(span)
    .await
}

async fn assemble(
    ctx: &Context,
    volume_id: &str,
    target: &NodeHandle,
    frontend: FrontendKind,
    readonly: bool,
    payload: &PublishPayload,
    journal: &mut Journal,
) -> Result<BTreeMap<String, String>> {
    let node = target.name();
    bootstrap::probe(target).await?;
    bootstrap::ensure_ready(target).await?;
    // No publication of this volume exists here, so whatever engine is left
    // (a dead controller's, or one from before a partition) may hold members
    // that are not current any more: never reuse it.
    remove_local(target, volume_id).await?;
    let host_nqn = naming::spdk_host_nqn(node);
    let mut remotes = Vec::new();
    for name in payload.replicas.iter().filter(|r| *r != node) {
        let replica_node = ctx.nodes.get(name)?;
        bootstrap::ensure_ready(&replica_node).await?;
        primitives::ensure_replica_export(&replica_node, volume_id, node).await?;
        remotes.push((replica_node.clone(), naming::replica_nqn(volume_id, name)));
    }
    journal.step("exported", payload).await?;

    let mut bases = Vec::new();
    if payload.replicas.iter().any(|r| r == node) {
        bases.push(target.lvol_alias(volume_id));
    }
    for (replica_node, nqn) in &remotes {
        let ctrl = naming::nvme_controller(volume_id, replica_node.name());
        let bdev = primitives::ensure_attached(
            target,
            &ctrl,
            replica_node.config.nvmf_address,
            replica_node.config.nvmf_port,
            nqn,
            &host_nqn,
        )
        .await?;
        bases.push(bdev);
    }
    journal.step("attached", payload).await?;

    let raid = naming::raid_bdev(volume_id);
    primitives::ensure_raid1(target, &raid, &bases, &naming::raid_pad_bdev(volume_id)).await?;
    journal.step("assembled", payload).await?;

    let spec = match frontend {
        FrontendKind::Ublk => {
            let (id, device) = primitives::ensure_ublk(target, &raid).await?;
            AttachSpec::Ublk(UblkTarget {
                device: device.into(),
                id,
            })
        }
        FrontendKind::NvmeTcp => {
            let nqn = naming::volume_nqn(volume_id);
            // The kernel's own identity when its agent reported it, else a stable derived one.
            let (kernel_nqn, kernel_id) = match &target.config.kernel_host {
                Some(h) => (h.nqn.clone(), h.id),
                None => (naming::kernel_host_nqn(node), naming::kernel_host_id(node)),
            };
            let loopback = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
            primitives::ensure_export(
                target,
                &primitives::Export {
                    nqn: &nqn,
                    bdev: &raid,
                    ns_uuid: Some(volume_id),
                    host_nqn: &kernel_nqn,
                    address: loopback,
                    port: target.config.nvmf_port,
                    ana_reporting: true,
                    serial: naming::serial_number(volume_id),
                },
            )
            .await?;
            let ns_uuid = uuid::Uuid::parse_str(volume_id)
                .map_err(|e| ControllerError::Internal(format!("volume id {volume_id}: {e}")))?;
            AttachSpec::NvmeTcp(NvmeTcpTarget {
                traddr: loopback,
                trsvcid: target.config.nvmf_port,
                subnqn: nqn,
                ns_uuid,
                hostnqn: kernel_nqn,
                hostid: kernel_id,
                ctrl_loss_tmo: KERNEL_CTRL_LOSS_TMO,
                reconnect_delay: KERNEL_RECONNECT_DELAY,
                keep_alive_tmo: KERNEL_KEEP_ALIVE_TMO,
            })
        }
    };
    journal.step("frontend", payload).await?;

    let context: BTreeMap<String, String> = spec.to_publish_context().into_iter().collect();
    let epoch = ctx
        .store
        .get_volume(volume_id)
        .await?
        .map(|v| v.record.epoch)
        .unwrap_or_default();
    let record = PublicationRecord {
        version: SCHEMA_VERSION,
        volume_id: volume_id.to_string(),
        node: node.to_string(),
        frontend,
        publish_context: context.clone(),
        readonly,
        members: payload.replicas.clone(),
        epoch,
    };
    ctx.store.put_publication(&record, Expect::Absent).await?;
    journal.step("recorded", payload).await?;
    tracing::info!(frontend = frontend.as_str(), "volume published");
    Ok(context)
}

/// The replicas the raid is assembled from: an unclean volume is resolved
/// first (one current replica chosen), then every current replica that
/// cannot be used now is demoted stale, durably, before anything is built,
/// since the raid will take writes it misses.
async fn current_members(ctx: &Context, volume_id: &str, node: &str) -> Result<Vec<String>> {
    if let Some(survivor) = membership::resolve_unclean(ctx, volume_id).await? {
        tracing::warn!(%survivor, "unclean volume: publishing on its one chosen replica");
    }
    let (_, replicas) = ctx.existing_volume(volume_id).await?;
    let current: Vec<String> = replicas
        .iter()
        .filter(|r| r.health.is_current())
        .map(|r| r.node.clone())
        .collect();
    if current.is_empty() {
        return Err(ControllerError::NoHealthyReplica {
            volume: volume_id.to_string(),
            purpose: "left; it cannot be published until a replica is rebuilt",
        });
    }
    let mut usable = Vec::new();
    let mut unusable = Vec::new();
    for name in &current {
        if membership::replica_reachable(ctx, volume_id, name).await {
            usable.push(name.clone());
        } else {
            unusable.push(name.clone());
        }
    }
    if usable.is_empty() {
        return Err(ControllerError::NodeUnreachable {
            node: current.join(", "),
            reason: format!(
                "none of the current replicas of volume {volume_id} can be reached; bring one back, then publish again"
            ),
        });
    }
    if !unusable.is_empty() {
        let demotions: Vec<Demotion> = unusable
            .iter()
            .map(|n| Demotion {
                node: n.clone(),
                health: ReplicaHealth::Stale,
                reason: format!(
                    "unreachable when the volume was published on {node}: the raid was assembled without it"
                ),
            })
            .collect();
        membership::demote(ctx, volume_id, node, &demotions).await?;
        tracing::warn!(
            usable = usable.len(),
            total = replicas.len(),
            "publishing degraded: replicas left out stay stale until rebuilt"
        );
    }
    Ok(usable)
}

/// Completes or rolls back an interrupted publish.
pub async fn recover(ctx: &Context, journal: Journal) -> Result<()> {
    let volume_id = journal.record().volume_id.clone();
    let payload: PublishPayload = journal.payload()?;
    let _guard = ctx.lock(&volume_id).await;
    let Some(journal) = journal.reread().await? else {
        return Ok(()); // finished or moved on by another actor meanwhile
    };
    if ctx
        .store
        .get_publication(&volume_id, &payload.node)
        .await?
        .is_some()
    {
        return journal.finish().await;
    }
    tracing::info!(volume = %volume_id, node = %payload.node, step = %journal.record().step, "tearing down interrupted publish");
    teardown(ctx, &volume_id, &payload.node, &payload.replicas).await?;
    journal.finish().await
}
