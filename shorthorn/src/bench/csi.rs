//! The CSI calls the bench makes, with the request shapes a CO sends, each
//! bounded in time.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use csi_proto::controller_client::ControllerClient;
use csi_proto::controller_service_capability::rpc::Type as Rpc;
use csi_proto::controller_service_capability::Type as CapType;
use csi_proto::node_client::NodeClient;
use csi_proto::volume_capability::access_mode::Mode;
use csi_proto::volume_capability::{AccessMode, AccessType, BlockVolume, MountVolume};
use csi_proto::volume_content_source::{SnapshotSource, Type as SourceType};
use csi_proto::{
    CapacityRange, ControllerGetCapabilitiesRequest, ControllerPublishVolumeRequest,
    ControllerUnpublishVolumeRequest, CreateSnapshotRequest, CreateVolumeRequest,
    DeleteSnapshotRequest, DeleteVolumeRequest, ListSnapshotsRequest, ListVolumesRequest,
    NodePublishVolumeRequest, NodeStageVolumeRequest, NodeUnpublishVolumeRequest,
    NodeUnstageVolumeRequest, VolumeCapability, VolumeContentSource,
};
use tonic::transport::Channel;

/// How long one CSI call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// How a volume is used on the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// ext4, mounted.
    Mount,
    /// Raw block device.
    Block,
}

impl Access {
    fn capability(self) -> VolumeCapability {
        VolumeCapability {
            access_mode: Some(AccessMode {
                mode: Mode::SingleNodeWriter.into(),
            }),
            access_type: Some(match self {
                Access::Mount => AccessType::Mount(MountVolume {
                    fs_type: "ext4".into(),
                    ..Default::default()
                }),
                Access::Block => AccessType::Block(BlockVolume {}),
            }),
        }
    }
}

/// The controller RPCs the bench needs and may find missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offers {
    /// CreateSnapshot / DeleteSnapshot.
    pub snapshots: bool,
    /// ListSnapshots.
    pub list_snapshots: bool,
}

/// One page of a list call.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// Entries on the page.
    pub entries: usize,
    /// Token of the next page; empty on the last.
    pub next_token: String,
}

/// CSI clients for the controller and the node service.
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

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

impl Csi {
    /// Connects to the controller and node sockets.
    pub async fn connect(controller: &Path, node: &Path) -> anyhow::Result<Self> {
        let c = csi_proto::uds::connect(controller)
            .await
            .with_context(|| format!("connecting to {}", controller.display()))?;
        let n = csi_proto::uds::connect(node)
            .await
            .with_context(|| format!("connecting to {}", node.display()))?;
        Ok(Self {
            controller: ControllerClient::new(c),
            node: NodeClient::new(n),
        })
    }

    /// What ControllerGetCapabilities offers.
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
            list_snapshots: rpcs.contains(&Rpc::ListSnapshots),
        })
    }

    /// CreateVolume (optionally from a snapshot); returns the volume id.
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
            volume_capabilities: vec![Access::Mount.capability()],
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
    pub async fn publish(
        &mut self,
        volume: &str,
        node: &str,
        access: Access,
    ) -> anyhow::Result<HashMap<String, String>> {
        let request = ControllerPublishVolumeRequest {
            volume_id: volume.into(),
            node_id: node.into(),
            volume_capability: Some(access.capability()),
            ..Default::default()
        };
        let response = bounded(
            "ControllerPublishVolume",
            self.controller.controller_publish_volume(request),
        )
        .await?;
        Ok(response.publish_context)
    }

    /// ControllerUnpublishVolume.
    pub async fn unpublish(&mut self, volume: &str, node: &str) -> anyhow::Result<()> {
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

    /// NodeStageVolume.
    pub async fn stage(
        &mut self,
        volume: &str,
        context: &HashMap<String, String>,
        staging: &Path,
        access: Access,
    ) -> anyhow::Result<()> {
        let request = NodeStageVolumeRequest {
            volume_id: volume.into(),
            publish_context: context.clone(),
            staging_target_path: path_str(staging),
            volume_capability: Some(access.capability()),
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

    /// NodePublishVolume (a raw block volume shows up as the file `target`).
    pub async fn node_publish(
        &mut self,
        volume: &str,
        context: &HashMap<String, String>,
        staging: &Path,
        target: &Path,
        access: Access,
    ) -> anyhow::Result<()> {
        let request = NodePublishVolumeRequest {
            volume_id: volume.into(),
            publish_context: context.clone(),
            staging_target_path: path_str(staging),
            target_path: path_str(target),
            volume_capability: Some(access.capability()),
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

    /// CreateSnapshot; returns the snapshot id and whether it is ready to use.
    pub async fn create_snapshot(
        &mut self,
        volume: &str,
        name: &str,
    ) -> anyhow::Result<(String, bool)> {
        let request = CreateSnapshotRequest {
            source_volume_id: volume.into(),
            name: name.into(),
            ..Default::default()
        };
        let snapshot = bounded("CreateSnapshot", self.controller.create_snapshot(request))
            .await?
            .snapshot
            .ok_or_else(|| anyhow!("CreateSnapshot answered without a snapshot"))?;
        Ok((snapshot.snapshot_id, snapshot.ready_to_use))
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

    /// One ListVolumes page.
    pub async fn list_volumes(&mut self, max_entries: i32, token: &str) -> anyhow::Result<Page> {
        let request = ListVolumesRequest {
            max_entries,
            starting_token: token.into(),
        };
        let r = bounded("ListVolumes", self.controller.list_volumes(request)).await?;
        Ok(Page {
            entries: r.entries.len(),
            next_token: r.next_token,
        })
    }

    /// One ListSnapshots page.
    pub async fn list_snapshots(&mut self, max_entries: i32, token: &str) -> anyhow::Result<Page> {
        let request = ListSnapshotsRequest {
            max_entries,
            starting_token: token.into(),
            ..Default::default()
        };
        let r = bounded("ListSnapshots", self.controller.list_snapshots(request)).await?;
        Ok(Page {
            entries: r.entries.len(),
            next_token: r.next_token,
        })
    }
}
