//! The CSI client steps `shorthorn bench` and `shorthorn ctl demo` make
//! (create, publish, stage, node-publish, snapshot, list and their undoing),
//! with the request shapes a CO sends (single-node writer; ext4 mount or raw
//! block), each bounded in time.

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
    NodeGetInfoRequest, NodePublishVolumeRequest, NodeStageVolumeRequest,
    NodeUnpublishVolumeRequest, NodeUnstageVolumeRequest, VolumeCapability, VolumeContentSource,
};
use tonic::transport::Channel;

/// How long a snapshot may take to become ready to use.
const SNAPSHOT_READY_TIMEOUT: Duration = Duration::from_secs(120);

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

/// The optional controller RPCs a client may find missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offers {
    /// CreateSnapshot / DeleteSnapshot (and so volumes from snapshots).
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
    /// How long one call may take.
    timeout: Duration,
}

async fn bounded<T>(
    timeout: Duration,
    what: &str,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(anyhow!(
            "{what} failed: {:?}: {}",
            status.code(),
            status.message()
        )),
        Err(_) => Err(anyhow!("{what} did not answer within {timeout:?}")),
    }
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

impl Csi {
    /// Connects to separate controller and node sockets; each call may take
    /// up to `timeout`.
    pub async fn connect(
        controller: &Path,
        node: &Path,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let c = csi_proto::uds::connect(controller)
            .await
            .with_context(|| format!("connecting to {}", controller.display()))?;
        let n = csi_proto::uds::connect(node)
            .await
            .with_context(|| format!("connecting to {}", node.display()))?;
        Ok(Self {
            controller: ControllerClient::new(c),
            node: NodeClient::new(n),
            timeout,
        })
    }

    /// Connects to one socket serving both Controller and Node (`shorthorn
    /// local up`); each call may take up to `timeout`.
    pub async fn connect_one(path: &Path, timeout: Duration) -> anyhow::Result<Self> {
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
            timeout,
        })
    }

    /// What ControllerGetCapabilities offers.
    pub async fn offers(&mut self) -> anyhow::Result<Offers> {
        let caps = bounded(
            self.timeout,
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

    /// The node id of the node service (NodeGetInfo).
    pub async fn node_id(&mut self) -> anyhow::Result<String> {
        Ok(bounded(
            self.timeout,
            "NodeGetInfo",
            self.node.node_get_info(NodeGetInfoRequest {}),
        )
        .await?
        .node_id)
    }

    /// CreateVolume of an ext4 volume (optionally from a snapshot); returns
    /// the volume id.
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
        let volume = bounded(
            self.timeout,
            "CreateVolume",
            self.controller.create_volume(request),
        )
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
        access: Access,
    ) -> anyhow::Result<HashMap<String, String>> {
        let request = ControllerPublishVolumeRequest {
            volume_id: volume.into(),
            node_id: node.into(),
            volume_capability: Some(access.capability()),
            ..Default::default()
        };
        let response = bounded(
            self.timeout,
            "ControllerPublishVolume",
            self.controller.controller_publish_volume(request),
        )
        .await?;
        Ok(response.publish_context)
    }

    /// ControllerUnpublishVolume.
    pub async fn controller_unpublish(&mut self, volume: &str, node: &str) -> anyhow::Result<()> {
        let request = ControllerUnpublishVolumeRequest {
            volume_id: volume.into(),
            node_id: node.into(),
            ..Default::default()
        };
        bounded(
            self.timeout,
            "ControllerUnpublishVolume",
            self.controller.controller_unpublish_volume(request),
        )
        .await
        .map(drop)
    }

    /// NodeStageVolume (a mount volume is formatted if blank and mounted at
    /// `staging`).
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
        bounded(
            self.timeout,
            "NodeStageVolume",
            self.node.node_stage_volume(request),
        )
        .await
        .map(drop)
    }

    /// NodeUnstageVolume.
    pub async fn unstage(&mut self, volume: &str, staging: &Path) -> anyhow::Result<()> {
        let request = NodeUnstageVolumeRequest {
            volume_id: volume.into(),
            staging_target_path: path_str(staging),
        };
        bounded(
            self.timeout,
            "NodeUnstageVolume",
            self.node.node_unstage_volume(request),
        )
        .await
        .map(drop)
    }

    /// NodePublishVolume: bind-mounts the staged filesystem at `target`, or
    /// makes a raw block volume show up as the file `target`.
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
        bounded(
            self.timeout,
            "NodePublishVolume",
            self.node.node_publish_volume(request),
        )
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
            self.timeout,
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
        bounded(
            self.timeout,
            "DeleteVolume",
            self.controller.delete_volume(request),
        )
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
        let snapshot = bounded(
            self.timeout,
            "CreateSnapshot",
            self.controller.create_snapshot(request),
        )
        .await?
        .snapshot
        .ok_or_else(|| anyhow!("CreateSnapshot answered without a snapshot"))?;
        Ok((snapshot.snapshot_id, snapshot.ready_to_use))
    }

    /// CreateSnapshot, then waits until it is ready to use; returns its id.
    pub async fn create_snapshot_ready(
        &mut self,
        volume: &str,
        name: &str,
    ) -> anyhow::Result<String> {
        let (id, ready) = self.create_snapshot(volume, name).await?;
        if !ready {
            self.wait_ready(&id).await?;
        }
        Ok(id)
    }

    async fn wait_ready(&mut self, id: &str) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + SNAPSHOT_READY_TIMEOUT;
        loop {
            let request = ListSnapshotsRequest {
                snapshot_id: id.into(),
                ..Default::default()
            };
            let listed = bounded(
                self.timeout,
                "ListSnapshots",
                self.controller.list_snapshots(request),
            )
            .await?;
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
        bounded(
            self.timeout,
            "DeleteSnapshot",
            self.controller.delete_snapshot(request),
        )
        .await
        .map(drop)
    }

    /// One ListVolumes page.
    pub async fn list_volumes(&mut self, max_entries: i32, token: &str) -> anyhow::Result<Page> {
        let request = ListVolumesRequest {
            max_entries,
            starting_token: token.into(),
        };
        let r = bounded(
            self.timeout,
            "ListVolumes",
            self.controller.list_volumes(request),
        )
        .await?;
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
        let r = bounded(
            self.timeout,
            "ListSnapshots",
            self.controller.list_snapshots(request),
        )
        .await?;
        Ok(Page {
            entries: r.entries.len(),
            next_token: r.next_token,
        })
    }
}
