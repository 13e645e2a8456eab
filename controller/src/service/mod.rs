//! The CSI Controller service: validates each request, calls the operation
//! in [`crate::ops`], and maps errors to gRPC statuses (via
//! `From<ControllerError> for Status`).
//!
//! - `volumes`: create (and clone), publish, validate, list, capacity,
//!   get, expand and modify (the replica count), and the CSI shape of a
//!   volume.
//! - `snapshots`: create, delete, list and get snapshots.

use csi_proto::controller_server::Controller;
use csi_proto::controller_service_capability::rpc::Type as Rpc;
use csi_proto::{
    controller_service_capability, ControllerExpandVolumeRequest, ControllerExpandVolumeResponse,
    ControllerGetCapabilitiesRequest, ControllerGetCapabilitiesResponse,
    ControllerGetVolumeRequest, ControllerGetVolumeResponse, ControllerModifyVolumeRequest,
    ControllerModifyVolumeResponse, ControllerPublishVolumeRequest,
    ControllerPublishVolumeResponse, ControllerServiceCapability, ControllerUnpublishVolumeRequest,
    ControllerUnpublishVolumeResponse, CreateSnapshotRequest, CreateSnapshotResponse,
    CreateVolumeRequest, CreateVolumeResponse, DeleteSnapshotRequest, DeleteSnapshotResponse,
    DeleteVolumeRequest, DeleteVolumeResponse, GetCapacityRequest, GetCapacityResponse,
    GetSnapshotRequest, GetSnapshotResponse, ListSnapshotsRequest, ListSnapshotsResponse,
    ListVolumesRequest, ListVolumesResponse, ValidateVolumeCapabilitiesRequest,
    ValidateVolumeCapabilitiesResponse,
};
use tonic::{Request, Response, Status};

use crate::context::Context;
use crate::ops;
use crate::params;

mod snapshots;
mod volumes;

pub use volumes::{to_csi_source, to_csi_volume};

/// The Controller service.
#[derive(Debug, Clone)]
pub struct ControllerService {
    ctx: Context,
}

impl ControllerService {
    /// Serves the controller running on `ctx`.
    pub fn new(ctx: Context) -> Self {
        Self { ctx }
    }

    /// Largest lvstore cluster size: every volume is a whole number of clusters on every node.
    fn granule(&self) -> u64 {
        self.ctx
            .nodes
            .all()
            .iter()
            .map(|n| n.config.cluster_size.max(n.status().space.cluster_size))
            .max()
            .unwrap_or(crate::config::DEFAULT_CLUSTER_SIZE)
    }
}

fn capability(rpc: Rpc) -> ControllerServiceCapability {
    ControllerServiceCapability {
        r#type: Some(controller_service_capability::Type::Rpc(
            controller_service_capability::Rpc { r#type: rpc.into() },
        )),
    }
}

/// The controller capabilities that really work today.
pub const CAPABILITIES: &[Rpc] = &[
    Rpc::CreateDeleteVolume,
    Rpc::PublishUnpublishVolume,
    Rpc::ListVolumes,
    Rpc::ListVolumesPublishedNodes,
    Rpc::GetCapacity,
    Rpc::GetVolume,
    Rpc::VolumeCondition,
    Rpc::SingleNodeMultiWriter,
    Rpc::CreateDeleteSnapshot,
    Rpc::ListSnapshots,
    Rpc::GetSnapshot,
    Rpc::CloneVolume,
    Rpc::ExpandVolume,
    Rpc::ModifyVolume,
];

#[tonic::async_trait]
impl Controller for ControllerService {
    async fn create_volume(
        &self,
        request: Request<CreateVolumeRequest>,
    ) -> Result<Response<CreateVolumeResponse>, Status> {
        let call = async move { Ok(Response::new(self.create(request.into_inner()).await?)) };
        self.ctx.metrics.csi.observe("CreateVolume", call).await
    }

    async fn delete_volume(
        &self,
        request: Request<DeleteVolumeRequest>,
    ) -> Result<Response<DeleteVolumeResponse>, Status> {
        let call = async move {
            let req = request.into_inner();
            params::require("volume_id", &req.volume_id)?;
            ops::delete_volume::delete_volume(&self.ctx, &req.volume_id).await?;
            // Snapshots deleted while this volume still read from them can go now.
            if let Err(e) = ops::snapshot_delete::reclaim(&self.ctx).await {
                tracing::warn!(error = %e, "reclaiming deleted snapshots failed; the reconciler retries");
            }
            Ok(Response::new(DeleteVolumeResponse {}))
        };
        self.ctx.metrics.csi.observe("DeleteVolume", call).await
    }

    async fn controller_publish_volume(
        &self,
        request: Request<ControllerPublishVolumeRequest>,
    ) -> Result<Response<ControllerPublishVolumeResponse>, Status> {
        let call = async move { Ok(Response::new(self.publish(request.into_inner()).await?)) };
        self.ctx
            .metrics
            .csi
            .observe("ControllerPublishVolume", call)
            .await
    }

    async fn controller_unpublish_volume(
        &self,
        request: Request<ControllerUnpublishVolumeRequest>,
    ) -> Result<Response<ControllerUnpublishVolumeResponse>, Status> {
        let call = async move {
            let req = request.into_inner();
            params::require("volume_id", &req.volume_id)?;
            let node = (!req.node_id.is_empty()).then_some(req.node_id.as_str());
            ops::unpublish::unpublish(&self.ctx, &req.volume_id, node).await?;
            Ok(Response::new(ControllerUnpublishVolumeResponse {}))
        };
        self.ctx
            .metrics
            .csi
            .observe("ControllerUnpublishVolume", call)
            .await
    }

    async fn validate_volume_capabilities(
        &self,
        request: Request<ValidateVolumeCapabilitiesRequest>,
    ) -> Result<Response<ValidateVolumeCapabilitiesResponse>, Status> {
        let call = async move { Ok(Response::new(self.validate(request.into_inner()).await?)) };
        self.ctx
            .metrics
            .csi
            .observe("ValidateVolumeCapabilities", call)
            .await
    }

    async fn list_volumes(
        &self,
        request: Request<ListVolumesRequest>,
    ) -> Result<Response<ListVolumesResponse>, Status> {
        let call = async move { Ok(Response::new(self.list(request.into_inner()).await?)) };
        self.ctx.metrics.csi.observe("ListVolumes", call).await
    }

    async fn get_capacity(
        &self,
        request: Request<GetCapacityRequest>,
    ) -> Result<Response<GetCapacityResponse>, Status> {
        let call = async move { Ok(Response::new(self.capacity(request.into_inner()).await?)) };
        self.ctx.metrics.csi.observe("GetCapacity", call).await
    }

    async fn controller_get_capabilities(
        &self,
        _request: Request<ControllerGetCapabilitiesRequest>,
    ) -> Result<Response<ControllerGetCapabilitiesResponse>, Status> {
        let call = async move {
            Ok(Response::new(ControllerGetCapabilitiesResponse {
                capabilities: CAPABILITIES.iter().copied().map(capability).collect(),
            }))
        };
        self.ctx
            .metrics
            .csi
            .observe("ControllerGetCapabilities", call)
            .await
    }

    async fn create_snapshot(
        &self,
        request: Request<CreateSnapshotRequest>,
    ) -> Result<Response<CreateSnapshotResponse>, Status> {
        let call = async move {
            Ok(Response::new(
                self.snapshot_create(request.into_inner()).await?,
            ))
        };
        self.ctx.metrics.csi.observe("CreateSnapshot", call).await
    }

    async fn delete_snapshot(
        &self,
        request: Request<DeleteSnapshotRequest>,
    ) -> Result<Response<DeleteSnapshotResponse>, Status> {
        let call = async move {
            self.snapshot_delete(request.into_inner()).await?;
            Ok(Response::new(DeleteSnapshotResponse {}))
        };
        self.ctx.metrics.csi.observe("DeleteSnapshot", call).await
    }

    async fn list_snapshots(
        &self,
        request: Request<ListSnapshotsRequest>,
    ) -> Result<Response<ListSnapshotsResponse>, Status> {
        let call = async move {
            Ok(Response::new(
                self.snapshot_list(request.into_inner()).await?,
            ))
        };
        self.ctx.metrics.csi.observe("ListSnapshots", call).await
    }

    async fn get_snapshot(
        &self,
        request: Request<GetSnapshotRequest>,
    ) -> Result<Response<GetSnapshotResponse>, Status> {
        let call = async move {
            Ok(Response::new(
                self.snapshot_get(request.into_inner()).await?,
            ))
        };
        self.ctx.metrics.csi.observe("GetSnapshot", call).await
    }

    async fn controller_expand_volume(
        &self,
        request: Request<ControllerExpandVolumeRequest>,
    ) -> Result<Response<ControllerExpandVolumeResponse>, Status> {
        let call = async move { Ok(Response::new(self.expand(request.into_inner()).await?)) };
        self.ctx
            .metrics
            .csi
            .observe("ControllerExpandVolume", call)
            .await
    }

    async fn controller_get_volume(
        &self,
        request: Request<ControllerGetVolumeRequest>,
    ) -> Result<Response<ControllerGetVolumeResponse>, Status> {
        let call = async move { Ok(Response::new(self.get_volume(request.into_inner()).await?)) };
        self.ctx
            .metrics
            .csi
            .observe("ControllerGetVolume", call)
            .await
    }

    async fn controller_modify_volume(
        &self,
        request: Request<ControllerModifyVolumeRequest>,
    ) -> Result<Response<ControllerModifyVolumeResponse>, Status> {
        let call = async move { Ok(Response::new(self.modify(request.into_inner()).await?)) };
        self.ctx
            .metrics
            .csi
            .observe("ControllerModifyVolume", call)
            .await
    }
}
