//! `shorthorn controller`: the CSI Identity and Controller services.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use csi_proto::controller_server::ControllerServer;
use csi_proto::identity_server::IdentityServer;
use shorthorn_controller::admin;
use shorthorn_controller::config::{ControllerConfig, StoreConfig};
use shorthorn_controller::identity::IdentityService;
use shorthorn_controller::reconciler;
use shorthorn_controller::server::{serve, start, Endpoint};
use shorthorn_controller::service::ControllerService;
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};

use crate::signals::shutdown_signal;

/// Arguments of `shorthorn controller`.
#[derive(Debug, clap::Args)]
pub struct ControllerArgs {
    /// Controller configuration file (TOML): storage nodes or agent discovery, state store, placement limits.
    #[arg(long, env = "SHORTHORN_CONTROLLER_CONFIG")]
    pub config: PathBuf,
    /// Where to serve CSI: `unix:///path/csi.sock` or `tcp://host:port`.
    #[arg(long, env = "CSI_ENDPOINT", default_value = "unix:///csi/csi.sock")]
    pub csi_endpoint: String,
    /// Comma-separated etcd endpoints; overrides the store chosen in the config file.
    #[arg(long, env = "SHORTHORN_ETCD_ENDPOINTS", value_delimiter = ',')]
    pub etcd_endpoints: Vec<String>,
    /// Also serve the read-only admin API (`shorthorn ctl`) here:
    /// `unix:///path/ctl.sock` or `tcp://127.0.0.1:9808`.
    #[arg(long, env = "SHORTHORN_ADMIN_ENDPOINT")]
    pub admin_endpoint: Option<String>,
}

/// Serves the controller until SIGINT or SIGTERM.
pub async fn run(args: ControllerArgs) -> anyhow::Result<()> {
    let mut config = ControllerConfig::load(&args.config)
        .with_context(|| format!("loading {}", args.config.display()))?;
    if !args.etcd_endpoints.is_empty() {
        let prefix = match &config.store {
            StoreConfig::Etcd { prefix, .. } => prefix.clone(),
            StoreConfig::Embedded(_) => "/shorthorn".to_string(),
        };
        config.store = StoreConfig::Etcd {
            endpoints: args.etcd_endpoints,
            prefix,
        };
    }
    let endpoint: Endpoint = args.csi_endpoint.parse()?;
    match args.admin_endpoint {
        None => serve(config, endpoint, shutdown_signal()).await?,
        Some(admin_endpoint) => {
            with_admin(config, endpoint, admin_endpoint.parse()?).await?;
        }
    }
    Ok(())
}

/// What [`serve`] does, with the admin API served from the same context.
async fn with_admin(
    config: ControllerConfig,
    endpoint: Endpoint,
    admin_endpoint: Endpoint,
) -> anyhow::Result<()> {
    let ctx = start(&config).await?;
    let admin_listener = admin::bind(&admin_endpoint).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let admin = tokio::spawn(admin::serve_on(
        ctx.clone(),
        admin_listener,
        stopped(stop_rx.clone()),
    ));
    let reconcile = tokio::spawn(reconciler::run(
        ctx.clone(),
        Duration::from_secs(config.reconcile_interval_secs.max(1)),
        stopped(stop_rx.clone()),
    ));
    let router = tonic::transport::Server::builder()
        .add_service(IdentityServer::new(IdentityService::new(ctx.clone())))
        .add_service(ControllerServer::new(ControllerService::new(ctx)));
    let served = match endpoint {
        Endpoint::Unix(path) => {
            if path.exists() {
                std::fs::remove_file(&path)
                    .with_context(|| format!("removing stale socket {}", path.display()))?;
            }
            let listener = tokio::net::UnixListener::bind(&path)
                .with_context(|| format!("binding {}", path.display()))?;
            tracing::info!(socket = %path.display(), "controller serving");
            router
                .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown_signal())
                .await
        }
        Endpoint::Tcp(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding {addr}"))?;
            tracing::info!(%addr, "controller serving");
            router
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown_signal())
                .await
        }
    };
    let _ = stop_tx.send(true);
    let _ = reconcile.await;
    let admin_outcome = admin.await;
    served.context("CSI server")?;
    admin_outcome.context("admin API task")??;
    Ok(())
}
