//! The CSI Node service: shared state and the tonic trait, delegating each
//! call to the module that does it.

use std::collections::HashMap;
use std::sync::Arc;

use csi_proto::node_server::Node;
use csi_proto::node_service_capability::{rpc, Rpc, Type};
use csi_proto::*;
use tonic::{Request, Response, Status};

use super::engine::Engine;
use super::locks::VolumeLocks;
use super::state::StagingStore;
use super::NodeServiceConfig;
use crate::command::{CommandRunner, SystemRunner};
use crate::dm::DmLinear;
use crate::error::{NodeError, Result};
use crate::frontend::nvme_tcp::NvmeTcpFrontend;
use crate::frontend::ublk::UblkFrontend;
use crate::frontend::{Frontend, FrontendKind};
use crate::probe::ProbeHost;

/// The CSI Node service over the kernel layer.
#[derive(Clone)]
pub struct NodeService {
    pub(super) config: Arc<NodeServiceConfig>,
    pub(super) store: StagingStore,
    pub(super) locks: VolumeLocks,
    pub(super) frontends: Arc<HashMap<FrontendKind, Arc<dyn Frontend>>>,
    pub(super) runner: Arc<dyn CommandRunner>,
    pub(super) dm: Option<DmLinear>,
    /// The local spdk_tgt, asked about each volume's raid.
    pub(super) engine: Option<Engine>,
}

impl std::fmt::Debug for NodeService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeService")
            .field("node_id", &self.config.node_id)
            .finish_non_exhaustive()
    }
}

impl NodeService {
    /// Builds the service: opens the staging records and the frontends.
    pub fn new(config: NodeServiceConfig) -> Result<Self> {
        let store = StagingStore::open(&config.state_dir)?;
        let runner: Arc<dyn CommandRunner> = Arc::new(SystemRunner);
        let mut frontends: HashMap<FrontendKind, Arc<dyn Frontend>> = HashMap::new();
        frontends.insert(
            FrontendKind::Ublk,
            Arc::new(UblkFrontend::new(
                config.attach_timeout,
                std::time::Duration::from_millis(100),
            )),
        );
        let nvme = crate::frontend::nvme_tcp::NvmeTcpConfig {
            attach_timeout: config.attach_timeout,
            ..Default::default()
        };
        frontends.insert(FrontendKind::NvmeTcp, Arc::new(NvmeTcpFrontend::new(nvme)));
        let dm = config
            .device_mapper
            .unwrap_or_else(|| crate::probe::KernelFeatures::probe().device_mapper)
            .then(|| DmLinear::new(Arc::clone(&runner)));
        let engine = config.spdk_socket.as_deref().map(Engine::new);
        let svc = NodeService {
            engine,
            config: Arc::new(config),
            store,
            locks: VolumeLocks::default(),
            frontends: Arc::new(frontends),
            runner,
            dm,
        };
        svc.report_recovered();
        Ok(svc)
    }

    /// The staging records (shared with the agent's quiesce lookup).
    pub fn store(&self) -> &StagingStore {
        &self.store
    }

    /// Logs what a previous run staged, and which of it lost its mount.
    fn report_recovered(&self) {
        let Ok(records) = self.store.list() else {
            return;
        };
        for rec in records {
            let mounted = rec.access.is_block()
                || crate::mount::is_mounted(&rec.staging_path).unwrap_or(false);
            tracing::info!(
                volume_id = %rec.volume_id,
                staging = %rec.staging_path.display(),
                mounted,
                publications = rec.publications.len(),
                "found staged volume from a previous run"
            );
        }
    }

    pub(super) fn frontend(&self, kind: FrontendKind) -> Result<Arc<dyn Frontend>, Status> {
        self.frontends
            .get(&kind)
            .cloned()
            .ok_or_else(|| Status::failed_precondition(format!("frontend {kind} is not available")))
    }
}

/// Runs blocking kernel work off the async threads.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| NodeError::Task(e.to_string()))?
}

fn capability(t: rpc::Type) -> NodeServiceCapability {
    NodeServiceCapability {
        r#type: Some(Type::Rpc(Rpc { r#type: t as i32 })),
    }
}

#[tonic::async_trait]
impl Node for NodeService {
    async fn node_stage_volume(
        &self,
        request: Request<NodeStageVolumeRequest>,
    ) -> Result<Response<NodeStageVolumeResponse>, Status> {
        self.stage(request.into_inner()).await?;
        Ok(Response::new(NodeStageVolumeResponse {}))
    }

    async fn node_unstage_volume(
        &self,
        request: Request<NodeUnstageVolumeRequest>,
    ) -> Result<Response<NodeUnstageVolumeResponse>, Status> {
        self.unstage(request.into_inner()).await?;
        Ok(Response::new(NodeUnstageVolumeResponse {}))
    }

    async fn node_publish_volume(
        &self,
        request: Request<NodePublishVolumeRequest>,
    ) -> Result<Response<NodePublishVolumeResponse>, Status> {
        self.publish(request.into_inner()).await?;
        Ok(Response::new(NodePublishVolumeResponse {}))
    }

    async fn node_unpublish_volume(
        &self,
        request: Request<NodeUnpublishVolumeRequest>,
    ) -> Result<Response<NodeUnpublishVolumeResponse>, Status> {
        self.unpublish(request.into_inner()).await?;
        Ok(Response::new(NodeUnpublishVolumeResponse {}))
    }

    async fn node_get_volume_stats(
        &self,
        request: Request<NodeGetVolumeStatsRequest>,
    ) -> Result<Response<NodeGetVolumeStatsResponse>, Status> {
        Ok(Response::new(
            self.volume_stats(request.into_inner()).await?,
        ))
    }

    async fn node_expand_volume(
        &self,
        request: Request<NodeExpandVolumeRequest>,
    ) -> Result<Response<NodeExpandVolumeResponse>, Status> {
        Ok(Response::new(self.expand(request.into_inner()).await?))
    }

    async fn node_get_capabilities(
        &self,
        _request: Request<NodeGetCapabilitiesRequest>,
    ) -> Result<Response<NodeGetCapabilitiesResponse>, Status> {
        Ok(Response::new(NodeGetCapabilitiesResponse {
            capabilities: vec![
                capability(rpc::Type::StageUnstageVolume),
                capability(rpc::Type::GetVolumeStats),
                capability(rpc::Type::VolumeCondition),
                capability(rpc::Type::ExpandVolume),
            ],
        }))
    }

    async fn node_get_info(
        &self,
        _request: Request<NodeGetInfoRequest>,
    ) -> Result<Response<NodeGetInfoResponse>, Status> {
        let segments: HashMap<String, String> = self
            .config
            .topology
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(Response::new(NodeGetInfoResponse {
            node_id: self.config.node_id.clone(),
            max_volumes_per_node: self.config.max_volumes_per_node,
            accessible_topology: (!segments.is_empty()).then_some(Topology { segments }),
        }))
    }
}
