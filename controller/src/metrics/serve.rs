//! The metrics listener (`[metrics] address`): plain HTTP, `GET /metrics`
//! only, no token. It shows volume ids, node names and counts, nothing that
//! changes state; keep it on a pod or cluster network that Prometheus reaches
//! (the admin API, which can change state, stays on its own endpoint).

use std::future::Future;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::context::Context;
use crate::error::{ControllerError, Result};

/// Binds the metrics listener.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| ControllerError::io(format!("binding the metrics listener {addr}"), e))
}

/// Answers one request: `GET /metrics` (or `HEAD`), 404 or 405 otherwise.
pub async fn answer<B>(ctx: &Context, req: &Request<B>) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r
    };
    if req.uri().path() != "/metrics" {
        return text(
            StatusCode::NOT_FOUND,
            "only /metrics is served here\n".into(),
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n".into());
    }
    match super::render(ctx).await {
        Ok(body) => {
            let mut r = text(StatusCode::OK, body);
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(super::CONTENT_TYPE),
            );
            r
        }
        Err(e) => {
            tracing::warn!(error = %e, "metrics scrape failed");
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot collect the metrics: {e}\n"),
            )
        }
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` resolves.
pub async fn serve_on(
    ctx: Context,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    tracing::info!(addr = ?listener.local_addr().ok(), "metrics serving");
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let ctx = ctx.clone();
        let service = service_fn(move |req: Request<hyper::body::Incoming>| {
            let ctx = ctx.clone();
            async move { Ok::<_, std::convert::Infallible>(answer(&ctx, &req).await) }
        });
        let conn =
            graceful.watch(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "metrics connection ended with an error");
            }
        });
    }
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), graceful.shutdown()).await;
    Ok(())
}
