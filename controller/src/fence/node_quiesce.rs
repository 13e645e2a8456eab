//! The node-quiesce fence of a ublk-published volume: the node agent freezes
//! the volume's filesystem (or suspends its dm device) under a lease, so a
//! controller that disappears mid-snapshot cannot leave the pod stuck.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use shorthorn_node::agent::{ResumeRequest, SuspendRequest};

use super::{Fence, FenceKind};
use crate::config::NodeEndpoint;
use crate::error::{ControllerError, Result};
use crate::nodes::NodeHandle;

/// How long one agent call may take beyond the hold's own deadline.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Suspends and resumes a volume's I/O on the node that uses it.
#[async_trait]
pub trait NodeQuiesce: Send + Sync + std::fmt::Debug {
    /// Freezes `volume_id`'s I/O for at most `deadline`.
    async fn suspend(&self, volume_id: &str, deadline: Duration) -> Result<()>;
    /// Thaws `volume_id`'s I/O. Idempotent.
    async fn resume(&self, volume_id: &str) -> Result<()>;
}

/// The node agent's `POST /quiesce/suspend` and `/quiesce/resume`.
#[derive(Debug, Clone)]
pub struct AgentQuiesce {
    node: String,
    url: String,
    token: String,
}

impl AgentQuiesce {
    /// The agent of `node`, or `None` when the node is reached through a
    /// local SPDK socket (no agent) or its token cannot be read.
    pub fn for_node(node: &NodeHandle) -> Option<Self> {
        let NodeEndpoint::Agent { url, token_file } = &node.config.endpoint else {
            return None;
        };
        let token = std::fs::read_to_string(token_file)
            .map_err(|e| tracing::warn!(node = node.name(), error = %e, "reading the agent token"))
            .ok()?;
        Some(Self {
            node: node.name().to_string(),
            url: url.trim_end_matches('/').to_string(),
            token: token.trim().to_string(),
        })
    }

    async fn post(&self, path: &str, body: Vec<u8>) -> Result<()> {
        let fail = |reason: String| ControllerError::NodeUnreachable {
            node: self.node.clone(),
            reason,
        };
        let authority = self
            .url
            .strip_prefix("http://")
            .ok_or_else(|| fail(format!("agent URL {} is not http://", self.url)))?
            .to_string();
        let stream = tokio::net::TcpStream::connect(&authority)
            .await
            .map_err(|e| fail(format!("connect: {e}")))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| fail(format!("HTTP handshake: {e}")))?;
        tokio::spawn(conn);
        let request = http::Request::post(path)
            .header(http::header::HOST, authority.as_str())
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            )
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(bytes::Bytes::from(body)))
            .map_err(|e| ControllerError::Internal(format!("building {path} request: {e}")))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| fail(format!("POST {path}: {e}")))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| fail(format!("reading {path}: {e}")))?
            .to_bytes();
        if status.is_success() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&body);
        if status == http::StatusCode::CONFLICT {
            return Err(ControllerError::FailedPrecondition(format!(
                "node {} cannot quiesce the volume: {text}",
                self.node
            )));
        }
        Err(ControllerError::Internal(format!(
            "node agent of {} answered {status} to {path}: {text}",
            self.node
        )))
    }
}

fn encode<T: serde::Serialize>(body: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(body)
        .map_err(|e| ControllerError::Internal(format!("encoding a quiesce request: {e}")))
}

#[async_trait]
impl NodeQuiesce for AgentQuiesce {
    async fn suspend(&self, volume_id: &str, deadline: Duration) -> Result<()> {
        let body = encode(&SuspendRequest {
            volume_id: volume_id.to_string(),
            target: None,
            deadline_ms: u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX),
        })?;
        tokio::time::timeout(deadline + CALL_TIMEOUT, self.post("/quiesce/suspend", body))
            .await
            .map_err(|_| ControllerError::NodeUnreachable {
                node: self.node.clone(),
                reason: "POST /quiesce/suspend timed out".into(),
            })?
    }

    async fn resume(&self, volume_id: &str) -> Result<()> {
        let body = encode(&ResumeRequest {
            volume_id: volume_id.to_string(),
        })?;
        tokio::time::timeout(CALL_TIMEOUT, self.post("/quiesce/resume", body))
            .await
            .map_err(|_| ControllerError::NodeUnreachable {
                node: self.node.clone(),
                reason: "POST /quiesce/resume timed out".into(),
            })?
    }
}

/// Fences one volume through a [`NodeQuiesce`].
#[derive(Debug)]
pub struct NodeQuiesceFence {
    quiesce: Arc<dyn NodeQuiesce>,
    volume_id: String,
    node: String,
}

impl NodeQuiesceFence {
    /// The fence of `volume_id` published on `node`.
    pub fn new(quiesce: Arc<dyn NodeQuiesce>, volume_id: &str, node: &str) -> Self {
        Self {
            quiesce,
            volume_id: volume_id.to_string(),
            node: node.to_string(),
        }
    }
}

#[async_trait]
impl Fence for NodeQuiesceFence {
    fn kind(&self) -> FenceKind {
        FenceKind::NodeQuiesce
    }

    async fn suspend(&self, deadline: Duration) -> Result<()> {
        tracing::debug!(node = %self.node, "quiescing volume I/O on its node");
        self.quiesce.suspend(&self.volume_id, deadline).await
    }

    async fn resume(&self) -> Result<()> {
        self.quiesce.resume(&self.volume_id).await
    }
}
