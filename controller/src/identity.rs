//! The CSI Identity service.

use std::collections::HashMap;

use csi_proto::identity_server::Identity;
use csi_proto::{
    plugin_capability, GetPluginCapabilitiesRequest, GetPluginCapabilitiesResponse,
    GetPluginInfoRequest, GetPluginInfoResponse, PluginCapability, ProbeRequest, ProbeResponse,
};
use tonic::{Request, Response, Status};

use crate::context::Context;
use crate::error::ControllerError;

/// The CSI driver name Shorthorn registers under.
pub const DRIVER_NAME: &str = "shorthorn.csi.io";
/// The driver version reported to orchestrators.
pub const VENDOR_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Identity service of the controller plugin.
#[derive(Debug, Clone)]
pub struct IdentityService {
    ctx: Context,
}

impl IdentityService {
    /// Serves identity for the controller running on `ctx`.
    pub fn new(ctx: Context) -> Self {
        Self { ctx }
    }

    /// Ready when this controller acts as leader, the store answers and at
    /// least one storage node is usable. A standby is healthy but not ready
    /// (CSI's "still initializing"), so the sidecars wait for it.
    pub async fn ready(&self) -> Result<(), ControllerError> {
        self.ctx.leader.check_acting()?;
        self.ctx.store.health().await?;
        let nodes = self.ctx.nodes.refresh_all().await;
        if nodes.iter().any(|n| n.status().online) {
            Ok(())
        } else {
            Err(ControllerError::NodeUnreachable {
                node: "(all)".into(),
                reason: format!("none of the {} storage nodes answered", nodes.len()),
            })
        }
    }
}

fn service(kind: plugin_capability::service::Type) -> PluginCapability {
    PluginCapability {
        r#type: Some(plugin_capability::Type::Service(
            plugin_capability::Service {
                r#type: kind.into(),
            },
        )),
    }
}

/// Volumes grow while published (NVMe/TCP frontend; see `ops::expand`).
fn online_expansion() -> PluginCapability {
    use plugin_capability::volume_expansion::Type;
    PluginCapability {
        r#type: Some(plugin_capability::Type::VolumeExpansion(
            plugin_capability::VolumeExpansion {
                r#type: Type::Online.into(),
            },
        )),
    }
}

#[tonic::async_trait]
impl Identity for IdentityService {
    async fn get_plugin_info(
        &self,
        _request: Request<GetPluginInfoRequest>,
    ) -> Result<Response<GetPluginInfoResponse>, Status> {
        Ok(Response::new(GetPluginInfoResponse {
            name: DRIVER_NAME.to_string(),
            vendor_version: VENDOR_VERSION.to_string(),
            manifest: HashMap::from([(
                "csi-spec".to_string(),
                csi_proto::CSI_SPEC_VERSION.to_string(),
            )]),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _request: Request<GetPluginCapabilitiesRequest>,
    ) -> Result<Response<GetPluginCapabilitiesResponse>, Status> {
        use plugin_capability::service::Type;
        Ok(Response::new(GetPluginCapabilitiesResponse {
            capabilities: vec![
                service(Type::ControllerService),
                service(Type::VolumeAccessibilityConstraints),
                online_expansion(),
            ],
        }))
    }

    async fn probe(
        &self,
        _request: Request<ProbeRequest>,
    ) -> Result<Response<ProbeResponse>, Status> {
        let ready = match self.ready().await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "probe: not ready");
                false
            }
        };
        Ok(Response::new(ProbeResponse { ready: Some(ready) }))
    }
}
