//! Running the controller: [`serve`] is the one entry point the binary calls.
//!
//! ```no_run
//! # async fn run() -> Result<(), shorthorn_controller::error::ControllerError> {
//! use shorthorn_controller::config::ControllerConfig;
//! use shorthorn_controller::server::{serve, Endpoint};
//! let config = ControllerConfig::load("/etc/shorthorn/controller.toml".as_ref())?;
//! let endpoint: Endpoint = "unix:///csi/csi.sock".parse()?;
//! serve(config, endpoint, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use csi_proto::controller_server::ControllerServer;
use csi_proto::identity_server::IdentityServer;
use tokio_stream::wrappers::TcpListenerStream;

use crate::config::{ControllerConfig, StoreConfig};
use crate::context::Context;
pub use crate::endpoint::Endpoint;
use crate::error::{ControllerError, Result};
use crate::identity::IdentityService;
use crate::nodes::stamp::ClusterIdentity;
use crate::nodes::NodeRegistry;
use crate::reconciler;
use crate::reconciler::sweep::SweepPolicy;
use crate::service::ControllerService;
use crate::store::{EmbeddedStore, EtcdConfig, EtcdStore, KvStore, Store};

/// Opens the configured state store.
pub async fn open_store(config: &StoreConfig) -> Result<Store> {
    let kv: Arc<dyn KvStore> = match config {
        StoreConfig::Embedded(path) => Arc::new(EmbeddedStore::open(path).await?),
        StoreConfig::Etcd { endpoints, prefix } => Arc::new(EtcdStore::new(EtcdConfig {
            endpoints: endpoints.clone(),
            prefix: prefix.clone(),
            ..Default::default()
        })?),
    };
    Ok(Store::new(kv))
}

/// Opens the store, reads (or creates) its cluster identity, registers the
/// nodes (stamped with it at bootstrap) and resumes interrupted operations:
/// everything [`serve`] does before it starts listening.
pub async fn start(config: &ControllerConfig) -> Result<Context> {
    let store = open_store(&config.store).await?;
    let nodes = Arc::new(NodeRegistry::from_config(config)?);
    let cluster = store.ensure_cluster().await?;
    tracing::info!(cluster = %cluster.id, "cluster identity");
    nodes.set_cluster(ClusterIdentity {
        id: cluster.id,
        adopt: config.sweep.adopt_clusters.clone(),
    });
    let ctx = Context::new(store, nodes).with_sweep_policy(SweepPolicy::from(&config.sweep));
    if let Err(e) = ctx.nodes.rediscover().await {
        tracing::warn!(error = %e, "node agent discovery failed; retrying on the next reconciler pass");
    }
    ctx.nodes.refresh_all().await;
    let resumed = reconciler::recover_pending(&ctx).await?;
    if resumed > 0 {
        tracing::info!(resumed, "finished or rolled back interrupted operations");
    }
    Ok(ctx)
}

/// Runs the CSI Identity and Controller services on `endpoint` until
/// `shutdown` resolves. Interrupted operations are resumed before the first
/// request is served; the reconciler runs every `reconcile_interval_secs`.
pub async fn serve(
    config: ControllerConfig,
    endpoint: Endpoint,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    serve_with_admin(config, endpoint, None, shutdown).await
}

/// [`serve`], plus the admin API (`shorthorn ctl`) on `admin` when given,
/// from the same context. The admin socket is bound before CSI serves, and
/// stops with it.
pub async fn serve_with_admin(
    config: ControllerConfig,
    endpoint: Endpoint,
    admin: Option<Endpoint>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let ctx = start(&config).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let admin = match admin {
        Some(admin_endpoint) => {
            let listener = crate::admin::bind(&admin_endpoint).await?;
            let mut stop = stop_rx.clone();
            Some(tokio::spawn(crate::admin::serve_on(
                ctx.clone(),
                listener,
                async move {
                    let _ = stop.wait_for(|s| *s).await;
                },
            )))
        }
        None => None,
    };
    let reconcile = {
        let ctx = ctx.clone();
        let mut stop = stop_rx.clone();
        let interval = Duration::from_secs(config.reconcile_interval_secs.max(1));
        tokio::spawn(reconciler::run(ctx, interval, async move {
            let _ = stop.wait_for(|s| *s).await;
        }))
    };
    let router = tonic::transport::Server::builder()
        .add_service(IdentityServer::new(IdentityService::new(ctx.clone())))
        .add_service(ControllerServer::new(ControllerService::new(ctx)));
    let outcome = match endpoint {
        Endpoint::Unix(path) => {
            if path.exists() {
                std::fs::remove_file(&path).map_err(|e| {
                    ControllerError::io(format!("removing stale socket {}", path.display()), e)
                })?;
            }
            let listener = tokio::net::UnixListener::bind(&path)
                .map_err(|e| ControllerError::io(format!("binding {}", path.display()), e))?;
            tracing::info!(socket = %path.display(), "controller serving");
            router
                .serve_with_incoming_shutdown(csi_proto::uds::incoming(listener), shutdown)
                .await
        }
        Endpoint::Tcp(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| ControllerError::io(format!("binding {addr}"), e))?;
            tracing::info!(%addr, "controller serving");
            router
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
                .await
        }
    };
    let _ = stop_tx.send(true);
    let _ = reconcile.await;
    let admin_outcome = match admin {
        Some(task) => task
            .await
            .map_err(|e| ControllerError::Internal(format!("admin API task failed: {e}")))?,
        None => Ok(()),
    };
    outcome.map_err(|e| ControllerError::Internal(format!("gRPC server failed: {e}")))?;
    admin_outcome
}
