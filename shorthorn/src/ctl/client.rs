//! A minimal HTTP/1 client for the controller's admin API, over a Unix
//! socket or TCP.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context as _};
use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use shorthorn_controller::admin::ErrorBody;
use shorthorn_controller::server::Endpoint;
use tokio::io::{AsyncRead, AsyncWrite};

/// Talks to one admin endpoint; connects afresh for every request.
#[derive(Debug, Clone)]
pub struct AdminClient {
    endpoint: Endpoint,
    shown: String,
    token: Option<String>,
}

impl AdminClient {
    /// A client for `endpoint` (`unix:///path/ctl.sock`, a bare socket path,
    /// or `tcp://host:port`).
    pub fn new(endpoint: &str) -> anyhow::Result<Self> {
        let parsed = if endpoint.starts_with('/') {
            Endpoint::Unix(PathBuf::from(endpoint))
        } else {
            endpoint.parse()?
        };
        Ok(Self {
            endpoint: parsed,
            shown: endpoint.to_string(),
            token: None,
        })
    }

    /// Sends `Authorization: Bearer <token>` read from `file` (needed on
    /// TCP); without a file, uses `admin.token` beside a Unix socket if
    /// there is one (`shorthorn local up` writes it there).
    pub fn with_token_file(mut self, file: Option<&std::path::Path>) -> anyhow::Result<Self> {
        let beside = match &self.endpoint {
            Endpoint::Unix(socket) => socket.parent().map(|d| d.join("admin.token")),
            Endpoint::Tcp(_) => None,
        };
        let path = match (file, beside) {
            (Some(f), _) => Some(f.to_path_buf()),
            (None, Some(b)) if b.exists() => Some(b),
            _ => None,
        };
        if let Some(path) = path {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading the admin token file {}", path.display()))?;
            self.token = Some(text.trim().to_string());
        }
        Ok(self)
    }

    /// `GET path`: the raw JSON body of a successful answer, or the API's
    /// error message.
    pub async fn get(&self, path: &str) -> anyhow::Result<Bytes> {
        self.send(Method::GET, path, None).await
    }

    /// `POST path` with a JSON `body`: the raw JSON body of a successful
    /// answer, or the API's error message.
    pub async fn post<T: Serialize>(&self, path: &str, body: &T) -> anyhow::Result<Bytes> {
        let body = serde_json::to_vec(body).context("encoding the request")?;
        self.send(Method::POST, path, Some(body)).await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<Bytes> {
        let token = self.token.as_deref();
        let (status, body) = match &self.endpoint {
            Endpoint::Unix(socket) => {
                let stream = tokio::net::UnixStream::connect(socket)
                    .await
                    .map_err(|e| self.unreachable(e))?;
                request(stream, method, path, body, token).await?
            }
            Endpoint::Tcp(addr) => {
                let stream = tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(|e| self.unreachable(e))?;
                request(stream, method, path, body, token).await?
            }
        };
        if status.is_success() {
            return Ok(body);
        }
        let message = serde_json::from_slice::<ErrorBody>(&body)
            .map(|b| b.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).trim().to_string());
        bail!("the controller answered {status}: {message}")
    }

    /// `GET path`, decoded.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let body = self.get(path).await?;
        serde_json::from_slice(&body)
            .with_context(|| format!("decoding the answer to GET {path} from {}", self.shown))
    }

    fn unreachable(&self, e: std::io::Error) -> anyhow::Error {
        let hint = match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                match &self.endpoint {
                    Endpoint::Unix(_) => {
                        "; is `shorthorn local up` running (or the controller started with --admin-endpoint)?"
                    }
                    Endpoint::Tcp(_) => "; is the controller started with --admin-endpoint?",
                }
            }
            std::io::ErrorKind::PermissionDenied => "; try again as root",
            _ => "",
        };
        anyhow!(
            "cannot reach the Shorthorn admin API at {}: {e}{hint}",
            self.shown
        )
    }
}

async fn request<S>(
    stream: S,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
    token: Option<&str>,
) -> anyhow::Result<(StatusCode, Bytes)>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake with the admin API")?;
    let conn = tokio::spawn(conn);
    let mut req = Request::builder().method(method.clone()).uri(path);
    if let Some(token) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let req = req
        .header(header::HOST, "shorthorn")
        .header(header::ACCEPT, "application/json");
    let req = match body {
        Some(body) => req
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body))),
        None => req.body(Full::new(Bytes::new())),
    }
    .context("building the request")?;
    let response = sender
        .send_request(req)
        .await
        .with_context(|| format!("{method} {path}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .with_context(|| format!("reading the answer to {method} {path}"))?
        .to_bytes();
    drop(sender);
    let _ = conn.await;
    Ok((status, body))
}
