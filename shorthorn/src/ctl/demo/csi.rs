//! The CSI calls the demo makes, each bounded in time, with the request
//! shapes a CO would send (ext4 mount, single-node writer).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use anyhow::anyhow;
use csi_proto::controller_client::ControllerClient;
use csi_proto::controller_service_capability::rpc::Type as Rpc;
use csi_proto::controller_service_capability::Type as CapType;
use csi_proto::node_client::NodeClient;
use csi_proto::volume_capability::access_mode::Mode;
use csi_proto::volume_capability::{AccessMode, AccessType, MountVolume};
use csi_proto::volume_content_source::{SnapshotSource, Type as SourceType};
use csi_proto::{
    CapacityRange, ControllerGetCapabilitiesRequest, ControllerPublishVolumeRequest,
    ControllerUnpublishVolumeRequest, CreateSnapshotRequest, CreateVolumeRequest,
    DeleteSnapshotRequest, DeleteVolumeRequest, ListSnapshotsRequest, NodeGetInfoRequest,
    NodePublishVolumeRequest, NodeStageVolumeRequest, NodeUnpublishVolumeRequest,
    NodeUnstageVolumeRequest, VolumeCapability, VolumeContentSource,
};
use tonic::transport::Channel;

/// How long one CSI call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a snapshot may take to become ready to use.
const SNAPSHOT_READY_TIMEOUT: Duration = Duration::from_secs(120);

/// What the controller offers that the demo cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offers {
    /// CreateSnapshot/DeleteSnapshot (and so volumes from snapshots).
    pub snapshots: bool,
}

/// CSI clients on one endpoint serving Controller and Node.
#[derive(Debug, Clone)]
pub struct Csi {
    controller: ControllerClient<Channel>,
    node: NodeClient<Channel>,
}

async fn bounded<T>(
    what: &str,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(anyhow!(
            "{what} failed: {:?}: {}",
            status.code(),
            status.message()
        )),
        Err(_) => Err(anyhow!("{what} did not answer within {CALL_TIMEOUT:?}")),
    }
}

fn ext4() -> VolumeCapability {
    VolumeCapability {
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter.into(),
        }),
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: "ext4".into(),
            ..Default::default()
        })),
    }
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

impl Csi {
    /// Connects to the CSI socket at `path`.
    pub async fn connect(path: &Path) -> anyhow::Result<Self> {
        let channel = csi_proto::uds::connect(path).await.map_err(|e| {
            // tonic's own message is just "transport error": show the cause.
            let mut cause: &dyn std::error::Error = &e;
            while let Some(inner) = cause.source() {
                cause = inner;
            }
            anyhow!(
                "cannot reach the CSI endpoint {}: {cause}; is `shorthorn local up` running?",
                path.display()
            )
        })?;
        Ok(Self {
            controller: ControllerClient::new(channel.clone()),
            node: NodeClient::new(channel),
        })
    }

    /// The controller's capabilities that matter here.
    pub async fn offers(&mut self) -> anyhow::Result<Offers> {
        let caps = bounded(
            "ControllerGetCapabilities",
            self.controller
                .controller_get_capabilities(ControllerGetCapabilitiesRequest {}),
        )
        .await?;
        let rpcs: Vec<Rpc> = caps
            .capabilities
            .iter()
            .filter_map(|c| match &c.r#type {
                Some(CapType::Rpc(rpc)) => Rpc::try_from(rpc.r#type).ok(),
                _ => None,
            })
            .collect();
        Ok(Offers {
            snapshots: rpcs.contains(&Rpc::CreateDeleteSnapshot),
        })
    }

    /// The node id of the node service on this endpoint.
    pub async fn node_id(&mut self) -> anyhow::Result<String> {
        Ok(bounded(
            "NodeGetInfo",
            self.node.node_get_info(NodeGetInfoRequest {}),
        )
        .await?
        .node_id)
    }

    /// Creates an ext4 volume, optionally from a snapshot; returns its id.
    pub async fn create_volume(
        &mut self,
        name: &str,
        bytes: u64,
        replicas: u32,
        snapshot: Option<&str>,
    ) -> anyhow::Result<String> {
        let request = CreateVolumeRequest {
            name: name.into(),
            capacity_range: Some(CapacityRange {
                required_bytes: i64::try_from(bytes)?,
                limit_bytes: 0,
            }),
            volume_capabilities: vec![ext4()],
            parameters: HashMap::from([("numberOfReplicas".to_string(), replicas.to_string())]),
            volume_content_source: snapshot.map(|id| VolumeContentSource {
                r#type: Some(SourceType::Snapshot(SnapshotSource {
                    snapshot_id: id.into(),
                })),
            }),
            ..Default::default()
        };
        let volume = bounded("CreateVolume", self.controller.create_volume(request))
            .await?
            .volume
            .ok_or_else(|| anyhow!("CreateVolume answered without a volume"))?;
        Ok(volume.volume_id)
    }

    /// ControllerPublishVolume; returns the publish context.
    pub async fn controller_publish(
        &mut self,
        volume: &str,
        node: &str,
    ) -> anyhow::Result<BTreeMap<String, String>> {
        let request = ControllerPublishVolumeRequest {
            volume_id: volume.into(),
            node_id: node.into(),
            volume_capability: Some(ext4()),
            ..Default::default()
        };
        let response = bounded(
            "ControllerPublishVolume",
            self.controller.controller_publish_volume(request),
        )
        .await?;
        Ok(response.publish_context.into_iter().collect())
    }

    /// ControllerUnpublishVolume.
    pub async fn controller_unpublish(&mut self, volume: &str, node: &str) -> anyhow::Result<()> {
        let request = ControllerUnpublishVolumeRequest {
            volume_id: volume.into(),
            node_id: node.into(),
            ..Default::default()
        };
        bounded(
            "ControllerUnpublishVolume",
            self.controller.controller_unpublish_volume(request),
        )
        .await
        .map(drop)
    }

    /// NodeStageVolume (formats ext4 if blank, mounts at `staging`).
    pub async fn stage(
        &mut self,
        volume: &str,
        context: &BTreeMap<String, String>,
        staging: &Path,
    ) -> anyhow::Result<()> {
        let request = NodeStageVolumeRequest {
            volume_id: volume.into(),
            publish_context: context.clone().into_iter().collect(),
            staging_target_path: path_str(staging),
            volume_capability: Some(ext4()),
            ..Default::default()
        };
        bounded("NodeStageVolume", self.node.node_stage_volume(request))
            .await
            .map(drop)
    }

    /// NodeUnstageVolume.
    pub async fn unstage(&mut self, volume: &str, staging: &Path) -> anyhow::Result<()> {
        let request = NodeUnstageVolumeRequest {
            volume_id: volume.into(),
            staging_target_path: path_str(staging),
        };
        bounded("NodeUnstageVolume", self.node.node_unstage_volume(request))
            .await
            .map(drop)
    }

    /// NodePublishVolume: bind-mounts the staged filesystem at `target`.
    pub async fn node_publish(
        &mut self,
        volume: &str,
        context: &BTreeMap<String, String>,
        staging: &Path,
        target: &Path,
    ) -> anyhow::Result<()> {
        let request = NodePublishVolumeRequest {
            volume_id: volume.into(),
            publish_context: context.clone().into_iter().collect(),
            staging_target_path: path_str(staging),
            target_path: path_str(target),
            volume_capability: Some(ext4()),
            ..Default::default()
        };
        bounded("NodePublishVolume", self.node.node_publish_volume(request))
            .await
            .map(drop)
    }

    /// NodeUnpublishVolume.
    pub async fn node_unpublish(&mut self, volume: &str, target: &Path) -> anyhow::Result<()> {
        let request = NodeUnpublishVolumeRequest {
            volume_id: volume.into(),
            target_path: path_str(target),
        };
        bounded(
            "NodeUnpublishVolume",
            self.node.node_unpublish_volume(request),
        )
        .await
        .map(drop)
    }

    /// DeleteVolume.
    pub async fn delete_volume(&mut self, volume: &str) -> anyhow::Result<()> {
        let request = DeleteVolumeRequest {
            volume_id: volume.into(),
            ..Default::default()
        };
        bounded("DeleteVolume", self.controller.delete_volume(request))
            .await
            .map(drop)
    }

    /// CreateSnapshot, then waits until it is ready to use; returns its id.
    pub async fn create_snapshot(&mut self, volume: &str, name: &str) -> anyhow::Result<String> {
        let request = CreateSnapshotRequest {
            source_volume_id: volume.into(),
            name: name.into(),
            ..Default::default()
        };
        let snapshot = bounded("CreateSnapshot", self.controller.create_snapshot(request))
            .await?
            .snapshot
            .ok_or_else(|| anyhow!("CreateSnapshot answered without a snapshot"))?;
        if !snapshot.ready_to_use {
            self.wait_ready(&snapshot.snapshot_id).await?;
        }
        Ok(snapshot.snapshot_id)
    }

    async fn wait_ready(&mut self, id: &str) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + SNAPSHOT_READY_TIMEOUT;
        loop {
            let request = ListSnapshotsRequest {
                snapshot_id: id.into(),
                ..Default::default()
            };
            let listed = bounded("ListSnapshots", self.controller.list_snapshots(request)).await?;
            let ready = listed
                .entries
                .iter()
                .filter_map(|e| e.snapshot.as_ref())
                .any(|s| s.snapshot_id == id && s.ready_to_use);
            if ready {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!(
                    "snapshot {id} was not ready to use within {SNAPSHOT_READY_TIMEOUT:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// DeleteSnapshot.
    pub async fn delete_snapshot(&mut self, id: &str) -> anyhow::Result<()> {
        let request = DeleteSnapshotRequest {
            snapshot_id: id.into(),
            ..Default::default()
        };
        bounded("DeleteSnapshot", self.controller.delete_snapshot(request))
            .await
            .map(drop)
    }
}
