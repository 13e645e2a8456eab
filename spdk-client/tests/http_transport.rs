//! HttpTransport against a tiny hyper server that checks the bearer token.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use spdk_client::{BdevGetBdevsParams, SpdkClient, SpdkError};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const TOKEN: &str = "good-token-123";

/// Answers JSON-RPC: `bdev_get_bdevs` with one bdev, anything else with -32601.
async fn handle(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let authorized = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {TOKEN}"));
    if !authorized || request.uri().path() != "/jsonrpc" {
        let status = if authorized {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::UNAUTHORIZED
        };
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = status;
        return Ok(response);
    }
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let rpc: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let reply = match rpc["method"].as_str() {
        Some("bdev_get_bdevs") => json!({"jsonrpc": "2.0", "id": rpc["id"], "result": [
            {"name": rpc["params"]["name"], "aliases": [], "product_name": "Malloc disk",
             "block_size": 4096, "num_blocks": 256, "claimed": false, "driver_specific": {}}
        ]}),
        _ => {
            json!({"jsonrpc": "2.0", "id": rpc["id"], "error": {"code": -32601, "message": "Method not found"}})
        }
    };
    let bytes = serde_json::to_vec(&reply).unwrap_or_default();
    Ok(Response::new(Full::new(Bytes::from(bytes))))
}

/// Serves until the returned handle is aborted.
async fn serve() -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(handle))
                    .await;
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn bearer_token_is_sent_and_result_decoded() {
    let (addr, server) = serve().await;
    let client = SpdkClient::http(&format!("http://{addr}/jsonrpc"), TOKEN).expect("client");
    let bdevs = client
        .bdev_get_bdevs(&BdevGetBdevsParams {
            name: Some("m0".into()),
            timeout: None,
        })
        .await
        .expect("authorized call");
    assert_eq!(bdevs.len(), 1);
    assert_eq!(bdevs[0].name, "m0");
    assert_eq!(bdevs[0].size_bytes(), 4096 * 256);

    let err = client
        .call_raw("nope", None)
        .await
        .expect_err("unknown method");
    assert!(err.is_method_not_found(), "{err:?}");
    assert_eq!(client.call_count(), 2);
    server.abort();
}

#[tokio::test]
async fn wrong_token_is_http_401() {
    let (addr, server) = serve().await;
    let client = SpdkClient::http(&format!("http://{addr}/jsonrpc"), "wrong").expect("client");
    let err = client.spdk_get_version().await.expect_err("unauthorized");
    assert!(matches!(err, SpdkError::Http { status: 401 }), "{err:?}");
    server.abort();
}

#[tokio::test]
async fn unreachable_endpoint_is_a_transport_error() {
    // Bind then drop to get a port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let client =
        SpdkClient::http(&format!("http://127.0.0.1:{port}/jsonrpc"), TOKEN).expect("client");
    let err = client.spdk_get_version().await.expect_err("refused");
    assert!(matches!(err, SpdkError::Transport(_)), "{err:?}");
    assert!(!format!("{err:?} {err}").contains(TOKEN));
}
