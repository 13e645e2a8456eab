//! Serving the node plugin (Identity + Node) on a Unix socket.

use std::future::Future;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use csi_proto::identity_server::IdentityServer;
use csi_proto::node_server::NodeServer;
use tokio::net::UnixListener;

use super::{IdentityService, NodeService, NodeServiceConfig};
use crate::error::{NodeError, Result};

/// Serves CSI Identity and Node on the Unix socket `endpoint` until
/// `shutdown` resolves. A stale socket file from a previous run is replaced;
/// any other file at that path is an error.
pub async fn serve_node(
    config: NodeServiceConfig,
    endpoint: &Path,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let identity = IdentityService::new(config.driver_name.clone());
    let node = NodeService::new(config)?;
    match std::fs::symlink_metadata(endpoint) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(endpoint)
            .map_err(|e| NodeError::io("remove stale socket", endpoint, e))?,
        Ok(_) => {
            return Err(NodeError::Config {
                what: "CSI endpoint",
                reason: format!("{} exists and is not a socket", endpoint.display()),
            })
        }
        Err(_) => {}
    }
    if let Some(parent) = endpoint.parent() {
        std::fs::create_dir_all(parent).map_err(|e| NodeError::io("create", parent, e))?;
    }
    let listener =
        UnixListener::bind(endpoint).map_err(|e| NodeError::io("bind CSI socket", endpoint, e))?;
    tracing::info!(endpoint = %endpoint.display(), "CSI node service listening");
    tonic::transport::Server::builder()
        .add_service(IdentityServer::new(identity))
        .add_service(NodeServer::new(node))
        .serve_with_incoming_shutdown(csi_proto::uds::incoming(listener), shutdown)
        .await
        .map_err(|e| NodeError::Serve {
            what: "CSI node service",
            reason: e.to_string(),
        })
}
