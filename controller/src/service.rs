//! The CSI Controller service: validates each request, calls the operation
//! in [`crate::ops`], and maps errors to gRPC statuses (via
//! `From<ControllerError> for Status`).

use std::collections::HashMap;

use csi_proto::controller_server::Controller;
use csi_proto::controller_service_capability::rpc::Type as Rpc;
use csi_proto::{
    controller_get_volume_response, controller_service_capability, list_volumes_response,
    validate_volume_capabilities_response, ControllerExpandVolumeRequest,
    ControllerExpandVolumeResponse, ControllerGetCapabilitiesRequest,
    ControllerGetCapabilitiesResponse, ControllerGetVolumeRequest, ControllerGetVolumeResponse,
    ControllerModifyVolumeRequest, ControllerModifyVolumeResponse, ControllerPublishVolumeRequest,
    ControllerPublishVolumeResponse, ControllerServiceCapability, ControllerUnpublishVolumeRequest,
    ControllerUnpublishVolumeResponse, CreateSnapshotRequest, CreateSnapshotResponse,
    CreateVolumeRequest, CreateVolumeResponse, DeleteSnapshotRequest, DeleteSnapshotResponse,
    DeleteVolumeRequest, DeleteVolumeResponse, GetCapacityRequest, GetCapacityResponse,
    GetSnapshotRequest, GetSnapshotResponse, ListSnapshotsRequest, ListSnapshotsResponse,
    ListVolumesRequest, ListVolumesResponse, ValidateVolumeCapabilitiesRequest,
    ValidateVolumeCapabilitiesResponse, Volume, VolumeCondition,
};
use tonic::{Request, Response, Status};

use crate::capacity;
use crate::error::{ControllerError, Result};
use crate::health;
use crate::journal::store_error;
use crate::naming;
use crate::ops::{self, Context};
use crate::params;
use crate::placement::segments_match;
use crate::store::VolumeRecord;

mod snapshot_rpcs;

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

    async fn create(&self, req: CreateVolumeRequest) -> Result<CreateVolumeResponse> {
        params::require("name", &req.name)?;
        params::check_capabilities(&req.volume_capabilities)?;
        let parsed = params::parse_volume_params(&req.parameters)?;
        let range = req.capacity_range.unwrap_or_default();
        let size =
            capacity::round_to_clusters(range.required_bytes, range.limit_bytes, self.granule())?;
        let request = ops::create_volume::CreateRequest {
            name: req.name,
            size,
            replicas: parsed.replicas,
            parameters: parsed.stored,
            topology: params::topology(req.accessibility_requirements.as_ref()),
        };
        let source = req.volume_content_source.and_then(|s| s.r#type);
        let volume = match source {
            None => ops::create_volume::create_volume(&self.ctx, request).await?,
            Some(source) => self.create_cloned(request, source).await?,
        };
        Ok(CreateVolumeResponse {
            volume: Some(to_csi_volume(&volume)),
        })
    }

    async fn publish(
        &self,
        req: ControllerPublishVolumeRequest,
    ) -> Result<ControllerPublishVolumeResponse> {
        params::require("volume_id", &req.volume_id)?;
        params::require("node_id", &req.node_id)?;
        let cap = req.volume_capability.as_ref().ok_or_else(|| {
            ControllerError::InvalidArgument("volume_capability is required".into())
        })?;
        params::check_capabilities(std::slice::from_ref(cap))?;
        if self.ctx.volume(&req.volume_id).await?.is_none() {
            return Err(ControllerError::NotFound(format!(
                "volume {} does not exist",
                req.volume_id
            )));
        }
        self.ctx.nodes.get(&req.node_id)?;
        let context =
            ops::publish::publish(&self.ctx, &req.volume_id, &req.node_id, req.readonly).await?;
        Ok(ControllerPublishVolumeResponse {
            publish_context: context.into_iter().collect(),
        })
    }

    async fn validate(
        &self,
        req: ValidateVolumeCapabilitiesRequest,
    ) -> Result<ValidateVolumeCapabilitiesResponse> {
        params::require("volume_id", &req.volume_id)?;
        if req.volume_capabilities.is_empty() {
            return Err(ControllerError::InvalidArgument(
                "volume_capabilities must not be empty".into(),
            ));
        }
        if self.ctx.volume(&req.volume_id).await?.is_none() {
            return Err(ControllerError::NotFound(format!(
                "volume {} does not exist",
                req.volume_id
            )));
        }
        let problems: Vec<String> = req
            .volume_capabilities
            .iter()
            .filter_map(params::unsupported)
            .collect();
        if !problems.is_empty() {
            return Ok(ValidateVolumeCapabilitiesResponse {
                confirmed: None,
                message: problems.join("; "),
            });
        }
        if let Err(e) = params::parse_volume_params(&req.parameters) {
            return Ok(ValidateVolumeCapabilitiesResponse {
                confirmed: None,
                message: e.to_string(),
            });
        }
        Ok(ValidateVolumeCapabilitiesResponse {
            confirmed: Some(validate_volume_capabilities_response::Confirmed {
                volume_context: req.volume_context,
                volume_capabilities: req.volume_capabilities,
                parameters: req.parameters,
                mutable_parameters: req.mutable_parameters,
            }),
            message: String::new(),
        })
    }

    /// Where a volume is published and its condition. `fresh` refreshes the
    /// replica nodes first; a listing refreshes every node once instead.
    async fn status(&self, volume_id: &str, fresh: bool) -> Result<(Vec<String>, VolumeCondition)> {
        let published = self
            .ctx
            .store
            .list_publications(volume_id)
            .await
            .map_err(store_error)?
            .into_iter()
            .map(|p| p.record.node)
            .collect();
        let condition = if fresh {
            health::condition(&self.ctx, volume_id).await?
        } else {
            health::condition_from_known_space(&self.ctx, volume_id).await?
        };
        Ok((
            published,
            VolumeCondition {
                abnormal: condition.abnormal,
                message: condition.message,
            },
        ))
    }

    async fn list(&self, req: ListVolumesRequest) -> Result<ListVolumesResponse> {
        if req.max_entries < 0 {
            return Err(ControllerError::InvalidArgument(format!(
                "max_entries {} must not be negative",
                req.max_entries
            )));
        }
        let start = if req.starting_token.is_empty() {
            None
        } else if naming::is_volume_id(&req.starting_token) {
            Some(req.starting_token.as_str())
        } else {
            return Err(ControllerError::Aborted(format!(
                "starting_token {:?} was not issued by this plugin; restart the listing without a token",
                req.starting_token
            )));
        };
        let page = self
            .ctx
            .store
            .list_volumes(start, req.max_entries as usize)
            .await
            .map_err(store_error)?;
        if !page.items.is_empty() {
            self.ctx.nodes.refresh_all().await;
        }
        let mut entries = Vec::with_capacity(page.items.len());
        for v in page.items {
            let (published, condition) = self.status(&v.record.id, false).await?;
            entries.push(list_volumes_response::Entry {
                volume: Some(to_csi_volume(&v.record)),
                status: Some(list_volumes_response::VolumeStatus {
                    published_node_ids: published,
                    volume_condition: Some(condition),
                }),
            });
        }
        Ok(ListVolumesResponse {
            entries,
            next_token: page.next.unwrap_or_default(),
        })
    }

    async fn capacity(&self, req: GetCapacityRequest) -> Result<GetCapacityResponse> {
        let parsed = params::parse_volume_params(&req.parameters)?;
        if req
            .volume_capabilities
            .iter()
            .any(|c| params::unsupported(c).is_some())
        {
            return Ok(GetCapacityResponse {
                available_capacity: 0,
                maximum_volume_size: Some(0),
                minimum_volume_size: None,
            });
        }
        let wanted = req
            .accessible_topology
            .as_ref()
            .map(params::topology_segments);
        let nodes = self.ctx.nodes.refresh_all().await;
        let mut free: Vec<u64> = nodes
            .iter()
            .filter(|n| n.status().online)
            .filter(|n| {
                wanted
                    .as_ref()
                    .is_none_or(|w| segments_match(&n.segments(), w))
            })
            .map(|n| n.status().space.provisionable_bytes(self.ctx.nodes.ratio))
            .collect();
        free.sort_unstable_by(|a, b| b.cmp(a));
        let replicas = parsed.replicas as usize;
        let granule = self.granule();
        let max = free
            .get(replicas.saturating_sub(1))
            .map_or(0, |b| b / granule * granule);
        let total: u64 = free.iter().sum::<u64>() / replicas.max(1) as u64;
        Ok(GetCapacityResponse {
            available_capacity: i64::try_from(total).unwrap_or(i64::MAX),
            maximum_volume_size: Some(i64::try_from(max).unwrap_or(i64::MAX)),
            minimum_volume_size: Some(i64::try_from(granule).unwrap_or(i64::MAX)),
        })
    }

    async fn get_volume(
        &self,
        req: ControllerGetVolumeRequest,
    ) -> Result<ControllerGetVolumeResponse> {
        params::require("volume_id", &req.volume_id)?;
        let Some((volume, _)) = self.ctx.volume(&req.volume_id).await? else {
            return Err(ControllerError::NotFound(format!(
                "volume {} does not exist",
                req.volume_id
            )));
        };
        let (published, condition) = self.status(&req.volume_id, true).await?;
        Ok(ControllerGetVolumeResponse {
            volume: Some(to_csi_volume(&volume)),
            status: Some(controller_get_volume_response::VolumeStatus {
                published_node_ids: published,
                volume_condition: Some(condition),
            }),
        })
    }
}

/// The CSI view of a volume record.
pub fn to_csi_volume(v: &VolumeRecord) -> Volume {
    Volume {
        capacity_bytes: i64::try_from(v.capacity_bytes).unwrap_or(i64::MAX),
        volume_id: v.id.clone(),
        volume_context: HashMap::from([(
            params::PARAM_REPLICAS.to_string(),
            v.replica_count.to_string(),
        )]),
        content_source: snapshot_rpcs::to_csi_source(v.content_source.as_ref()),
        accessible_topology: v
            .accessible_topology
            .iter()
            .map(params::to_topology)
            .collect(),
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
];

fn not_yet(what: &str) -> Status {
    Status::from(ControllerError::Unimplemented(format!(
        "{what} is not implemented by Shorthorn yet"
    )))
}

#[tonic::async_trait]
impl Controller for ControllerService {
    async fn create_volume(
        &self,
        request: Request<CreateVolumeRequest>,
    ) -> Result<Response<CreateVolumeResponse>, Status> {
        Ok(Response::new(self.create(request.into_inner()).await?))
    }

    async fn delete_volume(
        &self,
        request: Request<DeleteVolumeRequest>,
    ) -> Result<Response<DeleteVolumeResponse>, Status> {
        let req = request.into_inner();
        params::require("volume_id", &req.volume_id)?;
        ops::delete_volume::delete_volume(&self.ctx, &req.volume_id).await?;
        // Snapshots deleted while this volume still read from them can go now.
        if let Err(e) = ops::snapshot_delete::reclaim(&self.ctx).await {
            tracing::warn!(error = %e, "reclaiming deleted snapshots failed; the reconciler retries");
        }
        Ok(Response::new(DeleteVolumeResponse {}))
    }

    async fn controller_publish_volume(
        &self,
        request: Request<ControllerPublishVolumeRequest>,
    ) -> Result<Response<ControllerPublishVolumeResponse>, Status> {
        Ok(Response::new(self.publish(request.into_inner()).await?))
    }

    async fn controller_unpublish_volume(
        &self,
        request: Request<ControllerUnpublishVolumeRequest>,
    ) -> Result<Response<ControllerUnpublishVolumeResponse>, Status> {
        let req = request.into_inner();
        params::require("volume_id", &req.volume_id)?;
        let node = (!req.node_id.is_empty()).then_some(req.node_id.as_str());
        ops::unpublish::unpublish(&self.ctx, &req.volume_id, node).await?;
        Ok(Response::new(ControllerUnpublishVolumeResponse {}))
    }

    async fn validate_volume_capabilities(
        &self,
        request: Request<ValidateVolumeCapabilitiesRequest>,
    ) -> Result<Response<ValidateVolumeCapabilitiesResponse>, Status> {
        Ok(Response::new(self.validate(request.into_inner()).await?))
    }

    async fn list_volumes(
        &self,
        request: Request<ListVolumesRequest>,
    ) -> Result<Response<ListVolumesResponse>, Status> {
        Ok(Response::new(self.list(request.into_inner()).await?))
    }

    async fn get_capacity(
        &self,
        request: Request<GetCapacityRequest>,
    ) -> Result<Response<GetCapacityResponse>, Status> {
        Ok(Response::new(self.capacity(request.into_inner()).await?))
    }

    async fn controller_get_capabilities(
        &self,
        _request: Request<ControllerGetCapabilitiesRequest>,
    ) -> Result<Response<ControllerGetCapabilitiesResponse>, Status> {
        Ok(Response::new(ControllerGetCapabilitiesResponse {
            capabilities: CAPABILITIES.iter().copied().map(capability).collect(),
        }))
    }

    async fn create_snapshot(
        &self,
        request: Request<CreateSnapshotRequest>,
    ) -> Result<Response<CreateSnapshotResponse>, Status> {
        Ok(Response::new(
            self.snapshot_create(request.into_inner()).await?,
        ))
    }

    async fn delete_snapshot(
        &self,
        request: Request<DeleteSnapshotRequest>,
    ) -> Result<Response<DeleteSnapshotResponse>, Status> {
        self.snapshot_delete(request.into_inner()).await?;
        Ok(Response::new(DeleteSnapshotResponse {}))
    }

    async fn list_snapshots(
        &self,
        request: Request<ListSnapshotsRequest>,
    ) -> Result<Response<ListSnapshotsResponse>, Status> {
        Ok(Response::new(
            self.snapshot_list(request.into_inner()).await?,
        ))
    }

    async fn get_snapshot(
        &self,
        request: Request<GetSnapshotRequest>,
    ) -> Result<Response<GetSnapshotResponse>, Status> {
        Ok(Response::new(
            self.snapshot_get(request.into_inner()).await?,
        ))
    }

    async fn controller_expand_volume(
        &self,
        request: Request<ControllerExpandVolumeRequest>,
    ) -> Result<Response<ControllerExpandVolumeResponse>, Status> {
        Ok(Response::new(self.expand(request.into_inner()).await?))
    }

    async fn controller_get_volume(
        &self,
        request: Request<ControllerGetVolumeRequest>,
    ) -> Result<Response<ControllerGetVolumeResponse>, Status> {
        Ok(Response::new(self.get_volume(request.into_inner()).await?))
    }

    async fn controller_modify_volume(
        &self,
        _request: Request<ControllerModifyVolumeRequest>,
    ) -> Result<Response<ControllerModifyVolumeResponse>, Status> {
        Err(not_yet("ControllerModifyVolume"))
    }
}
