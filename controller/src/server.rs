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
use crate::leader::{self, LeaderGate, Leadership};
use crate::nodes::stamp::ClusterIdentity;
use crate::nodes::NodeRegistry;
use crate::reconciler::sweep::SweepPolicy;
use crate::service::ControllerService;
use crate::store::{EmbeddedStore, EtcdConfig, EtcdStore, KvStore, Store};

/// Opens the configured state store, with no leader election: for tools
/// and tests that are the store's only writer. The controller itself uses
/// [`start`] or [`serve`].
pub async fn open_store(config: &StoreConfig) -> Result<Store> {
    let kv: Arc<dyn KvStore> = match config {
        StoreConfig::Embedded(path) => Arc::new(EmbeddedStore::open(path).await?),
        StoreConfig::Etcd { .. } => Arc::new(etcd_store(config)?),
    };
    Ok(Store::new(kv))
}

fn etcd_store(config: &StoreConfig) -> Result<EtcdStore> {
    let StoreConfig::Etcd { endpoints, prefix } = config else {
        return Err(ControllerError::Internal("not an etcd store".into()));
    };
    Ok(EtcdStore::new(EtcdConfig {
        endpoints: endpoints.clone(),
        prefix: prefix.clone(),
        ..Default::default()
    })?)
}

/// Opens the store with this controller's leadership: on etcd a campaign
/// for the leader lease (every write conditional on it), embedded the file
/// lock the open just took (a second controller fails here).
async fn open_led_store(config: &ControllerConfig) -> Result<(Store, Leadership)> {
    match &config.store {
        StoreConfig::Embedded(path) => {
            let kv = EmbeddedStore::open(path).await?;
            let identity = config
                .leader
                .identity
                .clone()
                .unwrap_or_else(leader::default_identity);
            Ok((Store::new(Arc::new(kv)), Leadership::held(identity)))
        }
        StoreConfig::Etcd { .. } => {
            let etcd = etcd_store(&config.store)?;
            let leadership = Leadership::campaign(etcd.clone(), &config.leader);
            Ok((Store::new(Arc::new(etcd)), leadership))
        }
    }
}

/// Opens the store (campaigning for leadership) and registers the nodes;
/// nothing acts yet.
async fn prepare(config: &ControllerConfig) -> Result<Context> {
    let nodes = Arc::new(NodeRegistry::from_config(config)?);
    let (store, leadership) = open_led_store(config).await?;
    let ctx = Context::new(store, nodes)
        .with_leadership(leadership)
        .with_sweep_policy(SweepPolicy::from(&config.sweep))
        .with_rebuild(config.rebuild.clone())
        .with_metrics(config.metrics.clone());
    if let Err(e) = ctx.nodes.rediscover().await {
        tracing::warn!(error = %e, "node agent discovery failed; retrying on the next reconciler pass");
    }
    // Nodes are bootstrapped (and stamped) only with the cluster identity
    // known; a store that has none yet gets it from its first leader.
    if let Some(cluster) = ctx.store.get_cluster().await? {
        adopt_identity(&ctx, cluster.record.id);
        ctx.nodes.refresh_all().await;
    }
    Ok(ctx)
}

fn adopt_identity(ctx: &Context, id: String) {
    tracing::info!(cluster = %id, "cluster identity");
    ctx.nodes.set_cluster(ClusterIdentity {
        id,
        adopt: ctx.nodes.adopt_clusters.clone(),
    });
}

/// Reads (or, as the leader, creates) the store's cluster identity and
/// hands it to the node registry, then brings every node up: done once,
/// before the first recovery.
pub(crate) async fn establish_cluster(ctx: &Context) -> Result<()> {
    if ctx.nodes.cluster().is_some() {
        return Ok(());
    }
    let cluster = ctx.store.ensure_cluster().await?;
    adopt_identity(ctx, cluster.id);
    ctx.nodes.refresh_all().await;
    Ok(())
}

/// Opens the store, registers the nodes, waits until this controller is the
/// leader (on etcd: for as long as another controller holds the lease) and
/// resumes interrupted operations: a context that acts. The lease is held
/// until the last clone of the context is dropped (or `ctx.leader.resign()`).
pub async fn start(config: &ControllerConfig) -> Result<Context> {
    let ctx = prepare(config).await?;
    if !ctx.leader.is_acting() {
        tracing::info!(
            identity = ctx.leader.identity(),
            "waiting to become the leader"
        );
    }
    let term = ctx.leader.elected().await;
    leader::take_charge(&ctx, term).await?;
    Ok(ctx)
}

/// Runs the CSI Identity and Controller services on `endpoint` until
/// `shutdown` resolves. They listen at once; calls that change state are
/// served only while this controller is the leader, after it resumed the
/// interrupted operations; the reconciler runs every
/// `reconcile_interval_secs` while it leads (see [`crate::leader`]).
pub async fn serve(
    config: ControllerConfig,
    endpoint: Endpoint,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    serve_with_admin(config, endpoint, None, None, shutdown).await
}

/// [`serve`], plus the admin API (`shorthorn ctl`) on `admin` when given,
/// from the same context. The admin socket is bound before CSI serves, and
/// stops with it. On return the leader lease is given up.
pub async fn serve_with_admin(
    config: ControllerConfig,
    endpoint: Endpoint,
    admin: Option<Endpoint>,
    admin_token_file: Option<&std::path::Path>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let admin_token = admin_token_file
        .map(crate::admin::AdminToken::from_file)
        .transpose()?;
    if let (Some(Endpoint::Tcp(addr)), None) = (&admin, &admin_token) {
        return Err(crate::error::ControllerError::Config(format!(
            "the admin API on tcp://{addr} would be open to the network: give it \
             --admin-token-file or serve it on a unix:// socket"
        )));
    }
    let ctx = prepare(&config).await?;
    let leadership = ctx.leader.clone();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let admin = match admin {
        Some(admin_endpoint) => {
            let listener = crate::admin::bind(&admin_endpoint)
                .await?
                .with_token(admin_token);
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
    let metrics = match config.metrics.address {
        Some(addr) => {
            let listener = crate::metrics::serve::bind(addr).await?;
            let mut stop = stop_rx.clone();
            Some(tokio::spawn(crate::metrics::serve::serve_on(
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
        tokio::spawn(leader::supervise(
            ctx,
            interval,
            config.health_interval(),
            async move {
                let _ = stop.wait_for(|s| *s).await;
            },
        ))
    };
    let router = tonic::transport::Server::builder()
        .add_service(IdentityServer::new(IdentityService::new(ctx.clone())))
        .add_service(LeaderGate::new(
            ControllerServer::new(ControllerService::new(ctx.clone())),
            leadership.clone(),
        ));
    drop(ctx);
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
    if let Some(task) = metrics {
        let _ = task.await;
    }
    let admin_outcome = match admin {
        Some(task) => task
            .await
            .map_err(|e| ControllerError::Internal(format!("admin API task failed: {e}"))),
        None => Ok(Ok(())),
    };
    leadership.resign().await;
    let admin_outcome = admin_outcome?;
    outcome.map_err(|e| ControllerError::Internal(format!("gRPC server failed: {e}")))?;
    admin_outcome
}
