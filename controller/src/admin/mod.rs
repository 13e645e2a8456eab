//! The admin API: a small read-mostly HTTP/JSON API for operators and
//! `shorthorn ctl`, served on a Unix socket (or TCP) next to CSI.
//!
//! | request | answer |
//! |---|---|
//! | `GET /v1/nodes` | `[`[`NodeView`]`]`: reachability, lvstore space, committed bytes, frontends, topology |
//! | `GET /v1/volumes` | `[`[`VolumeView`]`]`: replicas with health, publications, condition |
//! | `GET /v1/volumes/<id>` | [`VolumeView`], or 404 |
//! | `GET /v1/snapshots` | `[`[`SnapshotView`]`]` |
//! | `GET /v1/rebuilds` | `[`[`RebuildView`]`]`: raid processes SPDK runs on publishing nodes |
//! | `GET /metrics` | Prometheus text ([`crate::metrics`], docs/metrics.md) |
//! | `POST /v1/volumes/<id>/revert` with [`RevertRequest`] | [`VolumeView`] after reverting the unpublished volume to its snapshot |
//! | `POST /v1/volumes/<id>/replicas` with [`SetReplicasRequest`] | [`ReplicaChangeView`] after changing the replica count (as ControllerModifyVolume does) |
//!
//! `POST` needs `Authorization: Bearer <token>` ([`AdminToken`], see
//! [`Listener::with_token`]); on TCP every request does, and serving TCP
//! without a token is refused. Reads on the Unix socket are open to whoever
//! the socket file admits.
//!
//! Errors answer an [`ErrorBody`] with the status [`http_status`] picks:
//! 404 for an unknown volume, 409 for a published one being reverted, 503
//! when the store or a node is unavailable.
//!
//! ```no_run
//! # async fn run(ctx: shorthorn_controller::context::Context) -> shorthorn_controller::error::Result<()> {
//! use shorthorn_controller::admin;
//! let endpoint = "unix:///run/shorthorn/ctl.sock".parse()?;
//! admin::serve(ctx, endpoint, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

mod auth;
mod model;
mod routes;
mod views;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};

pub use auth::AdminToken;
pub use model::{
    ConditionView, ErrorBody, NodeView, PublicationView, RebuildView, ReplicaChangeView,
    ReplicaSnapshotView, ReplicaView, RevertRequest, SetReplicasRequest, SnapshotView, VolumeView,
};
pub use routes::{handle, http_status};
pub use views::{nodes, rebuilds, snapshots, volume, volumes};

use crate::context::Context;
use crate::endpoint::Endpoint;
use crate::error::{ControllerError, Result};

/// How long open connections may finish their request after shutdown.
const DRAIN: Duration = Duration::from_secs(5);

/// A bound admin endpoint, ready for [`serve_on`]. Binding first lets a
/// caller announce readiness only once the socket exists.
#[derive(Debug)]
pub struct Listener {
    inner: Inner,
    token: Option<AdminToken>,
}

#[derive(Debug)]
enum Inner {
    Unix {
        listener: UnixListener,
        path: PathBuf,
    },
    Tcp(TcpListener),
}

impl Listener {
    /// Requires `token` for mutating requests, and on TCP for all.
    pub fn with_token(mut self, token: Option<AdminToken>) -> Self {
        self.token = token;
        self
    }

    /// What the listener is bound to, for logs.
    pub fn describe(&self) -> String {
        match &self.inner {
            Inner::Unix { path, .. } => format!("unix://{}", path.display()),
            Inner::Tcp(l) => match l.local_addr() {
                Ok(addr) => format!("tcp://{addr}"),
                Err(_) => "tcp".to_string(),
            },
        }
    }
}

/// Binds `endpoint`, replacing a stale Unix socket file.
pub async fn bind(endpoint: &Endpoint) -> Result<Listener> {
    let inner = match endpoint {
        Endpoint::Unix(path) => {
            if path.exists() {
                std::fs::remove_file(path).map_err(|e| {
                    ControllerError::io(format!("removing stale socket {}", path.display()), e)
                })?;
            }
            let listener = UnixListener::bind(path)
                .map_err(|e| ControllerError::io(format!("binding {}", path.display()), e))?;
            Inner::Unix {
                listener,
                path: path.clone(),
            }
        }
        Endpoint::Tcp(addr) => Inner::Tcp(
            TcpListener::bind(addr)
                .await
                .map_err(|e| ControllerError::io(format!("binding {addr}"), e))?,
        ),
    };
    Ok(Listener { inner, token: None })
}

/// Binds `endpoint` and serves the admin API until `shutdown` resolves.
pub async fn serve(
    ctx: Context,
    endpoint: Endpoint,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    serve_on(ctx, bind(&endpoint).await?, shutdown).await
}

/// Serves the admin API on an already bound listener until `shutdown`
/// resolves; requests in flight get a few seconds to finish, and a Unix
/// socket file is removed on the way out.
pub async fn serve_on(
    ctx: Context,
    listener: Listener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    if matches!(listener.inner, Inner::Tcp(_)) && listener.token.is_none() {
        return Err(ControllerError::Config(format!(
            "the admin API on {} would be open to the network: give it a token \
             (--admin-token-file) or serve it on a unix:// socket",
            listener.describe()
        )));
    }
    tracing::info!(endpoint = %listener.describe(), authenticated = listener.token.is_some(), "admin API serving");
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = accept(&listener) => accepted,
        };
        match accepted {
            Ok(Accepted::Unix(io)) => {
                connection(&ctx, &graceful, io, listener.token.clone(), false)
            }
            Ok(Accepted::Tcp(io)) => connection(&ctx, &graceful, io, listener.token.clone(), true),
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!(error = %e, "admin API accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("admin API connections did not finish in time; closing them");
    }
    if let Inner::Unix { path, .. } = &listener.inner {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

enum Accepted {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
}

async fn accept(listener: &Listener) -> std::io::Result<Accepted> {
    Ok(match &listener.inner {
        Inner::Unix { listener, .. } => Accepted::Unix(listener.accept().await?.0),
        Inner::Tcp(listener) => Accepted::Tcp(listener.accept().await?.0),
    })
}

fn connection<I>(
    ctx: &Context,
    graceful: &GracefulShutdown,
    io: I,
    token: Option<AdminToken>,
    tcp: bool,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ctx = ctx.clone();
    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let ctx = ctx.clone();
        let refused = auth::refusal(token.as_ref(), tcp, req.method(), req.headers());
        async move {
            if let Some((status, message)) = refused {
                tracing::warn!(method = %req.method(), path = req.uri().path(), %status, "admin request refused");
                return Ok::<_, std::convert::Infallible>(routes::error(status, message));
            }
            Ok(handle(&ctx, req).await)
        }
    });
    let conn = http1::Builder::new().serve_connection(TokioIo::new(io), service);
    let conn = graceful.watch(conn);
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "admin API connection ended with an error");
        }
    });
}
