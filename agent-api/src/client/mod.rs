//! [`AgentClient`]: the one client for a node agent (identity, quiesce, and
//! SPDK JSON-RPC through [`AgentClient::spdk`]).
//!
//! - `https://` verified with a [`ClientTls`] (a CA or a pinned
//!   certificate); plain `http://` only to a loopback address.
//! - The bearer token goes in every request and is never printed: `Debug`
//!   shows the URL only, and errors never carry it.
//! - Every call has a time limit; idempotent calls (`GET /identity`,
//!   `POST /quiesce/resume`, `POST /fence/ana/resume`) are tried again on
//!   transient failures. A suspend is not: it holds I/O, so its caller
//!   decides.

mod error;

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use serde::de::DeserializeOwned;
use serde::Serialize;
use spdk_client::SpdkClient;

pub use error::AgentError;
/// The TLS setup shared with `spdk-client`'s HTTP transport.
pub use spdk_client::https as tls;
pub use spdk_client::https::{ClientTls, ServerTrust};

use crate::ana_fence::{
    AnaFenceResumeRequest, AnaFenceResumeResponse, AnaFenceSuspendRequest, AnaFenceSuspendResponse,
};
use crate::identity::NodeIdentity;
use crate::quiesce::{ResumeRequest, ResumeResponse, SuspendRequest, SuspendResponse};
use crate::routes::{self, ErrorBody};

/// Time limit of one call, unless [`AgentClient::with_timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Tries of an idempotent call, the first included.
pub const IDEMPOTENT_TRIES: u32 = 3;
/// Pause before the second try; doubled before each further one.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// A client for one node agent. Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct AgentClient {
    base: String,
    agent: String,
    token: String,
    authorization: HeaderValue,
    tls: Option<ClientTls>,
    http: tls::HttpClient,
    timeout: Duration,
}

impl fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentClient")
            .field("agent", &self.agent)
            .field("tls", &self.tls)
            .field("timeout", &self.timeout)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl AgentClient {
    /// A client for the agent at `url` (`https://10.0.0.1:9810`, or
    /// `http://127.0.0.1:9810` on this machine), sending `token`.
    /// Refuses URLs that would carry the token in clear.
    pub fn new(url: &str, token: &str, tls: Option<ClientTls>) -> Result<Self, AgentError> {
        let base = url.trim_end_matches('/').to_string();
        let endpoint = |reason: String| AgentError::Endpoint {
            agent: base.clone(),
            reason,
        };
        let uri: Uri = base
            .parse()
            .map_err(|e| endpoint(format!("not a URL: {e}")))?;
        if uri.path() != "/" && !uri.path().is_empty() {
            return Err(endpoint("the agent URL must not have a path".into()));
        }
        tls::check_endpoint(&uri, tls.as_ref()).map_err(endpoint)?;
        let mut authorization = HeaderValue::from_str(&format!("Bearer {}", token.trim()))
            .map_err(|_| endpoint("the token has characters not allowed in a header".into()))?;
        authorization.set_sensitive(true);
        Ok(Self {
            agent: base.clone(),
            base,
            token: token.trim().to_string(),
            authorization,
            http: tls::HttpClient::new(tls.as_ref()),
            tls,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Names the agent's node in errors.
    #[must_use]
    pub fn for_node(mut self, node: &str) -> Self {
        self.agent = format!("of node {node} ({})", self.base);
        self
    }

    /// Uses `timeout` as the time limit of each call.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The agent's base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// The TLS setup, when the agent is reached over HTTPS.
    pub fn tls(&self) -> Option<&ClientTls> {
        self.tls.as_ref()
    }

    /// `GET /identity`; tried again on transient failures.
    pub async fn identity(&self) -> Result<NodeIdentity, AgentError> {
        self.idempotent(|| self.call(Method::GET, routes::IDENTITY, None, self.timeout))
            .await
    }

    /// `POST /quiesce/suspend`: holds the volume's I/O for at most the
    /// request's deadline. Tried once; the call may take that deadline plus
    /// the client's time limit.
    pub async fn suspend(&self, request: &SuspendRequest) -> Result<SuspendResponse, AgentError> {
        let body = encode(request);
        let limit = Duration::from_millis(request.deadline_ms) + self.timeout;
        self.call(Method::POST, routes::QUIESCE_SUSPEND, Some(body), limit)
            .await
    }

    /// `POST /quiesce/resume`; idempotent, so tried again on transient failures.
    pub async fn resume(&self, request: &ResumeRequest) -> Result<ResumeResponse, AgentError> {
        let body = encode(request);
        self.idempotent(|| {
            self.call(
                Method::POST,
                routes::QUIESCE_RESUME,
                Some(body.clone()),
                self.timeout,
            )
        })
        .await
    }

    /// `POST /fence/ana/suspend`: the agent sets the volume's loopback
    /// listener ANA-inaccessible and drains its I/O, under a lease of the
    /// request's deadline that restores `optimized` by itself. Tried once;
    /// the call may take that deadline plus the client's time limit.
    pub async fn ana_fence_suspend(
        &self,
        request: &AnaFenceSuspendRequest,
    ) -> Result<AnaFenceSuspendResponse, AgentError> {
        let body = encode(request);
        let limit = Duration::from_millis(request.deadline_ms) + self.timeout;
        self.call(Method::POST, routes::ANA_FENCE_SUSPEND, Some(body), limit)
            .await
    }

    /// `POST /fence/ana/resume`: restores `optimized` and says whether the
    /// lease had already run out; idempotent, so tried again on transient
    /// failures.
    pub async fn ana_fence_resume(
        &self,
        request: &AnaFenceResumeRequest,
    ) -> Result<AnaFenceResumeResponse, AgentError> {
        let body = encode(request);
        self.idempotent(|| {
            self.call(
                Method::POST,
                routes::ANA_FENCE_RESUME,
                Some(body.clone()),
                self.timeout,
            )
        })
        .await
    }

    /// `POST /swap/check`: whether the volume is staged on this node over a
    /// dm-linear device a swap can hold; tried again on transient failures.
    pub async fn swap_check(
        &self,
        request: &crate::swap::SwapCheckRequest,
    ) -> Result<crate::swap::SwapCheckResponse, AgentError> {
        let body = encode(request);
        self.idempotent(|| {
            self.call(
                Method::POST,
                routes::SWAP_CHECK,
                Some(body.clone()),
                self.timeout,
            )
        })
        .await
    }

    /// `POST /swap/suspend`: suspends the volume's dm device under a lease
    /// of the request's deadline. Tried once (a repeat only restarts the
    /// lease); the call may take that deadline plus the time limit.
    pub async fn swap_suspend(
        &self,
        request: &crate::swap::SwapSuspendRequest,
    ) -> Result<crate::swap::SwapSuspendResponse, AgentError> {
        let body = encode(request);
        let limit = Duration::from_millis(request.deadline_ms) + self.timeout;
        self.call(Method::POST, routes::SWAP_SUSPEND, Some(body), limit)
            .await
    }

    /// `POST /swap/resume`: reattaches when asked, reloads the dm table onto
    /// the found device and resumes; idempotent, so tried again on transient
    /// failures. Each try may take the reattach wait plus the time limit.
    pub async fn swap_resume(
        &self,
        request: &crate::swap::SwapResumeRequest,
    ) -> Result<crate::swap::SwapResumeResponse, AgentError> {
        let body = encode(request);
        let limit = Duration::from_millis(request.reattach_wait_ms) + self.timeout;
        self.idempotent(|| self.call(Method::POST, routes::SWAP_RESUME, Some(body.clone()), limit))
            .await
    }

    /// An SPDK JSON-RPC client through the agent's `/jsonrpc`, with the same
    /// TLS setup and token.
    pub fn spdk(&self) -> Result<SpdkClient, AgentError> {
        let url = format!("{}{}", self.base, routes::JSONRPC);
        let client = match &self.tls {
            Some(tls) => SpdkClient::https(&url, &self.token, tls),
            None => SpdkClient::http(&url, &self.token),
        };
        client.map_err(|e| AgentError::Endpoint {
            agent: self.agent.clone(),
            reason: e.to_string(),
        })
    }

    async fn idempotent<T, F, Fut>(&self, call: F) -> Result<T, AgentError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, AgentError>>,
    {
        let mut pause = RETRY_PAUSE;
        let mut tries = 1;
        loop {
            match call().await {
                Err(e) if e.is_transient() && tries < IDEMPOTENT_TRIES => {
                    tracing::debug!(agent = %self.agent, error = %e, tries, "agent call failed; trying again");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                    tries += 1;
                }
                outcome => return outcome,
            }
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &'static str,
        body: Option<Bytes>,
        limit: Duration,
    ) -> Result<T, AgentError> {
        match tokio::time::timeout(limit, self.exchange(method, path, body)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(AgentError::Timeout {
                agent: self.agent.clone(),
                path,
                after: limit,
            }),
        }
    }

    async fn exchange<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &'static str,
        body: Option<Bytes>,
    ) -> Result<T, AgentError> {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(AUTHORIZATION, self.authorization.clone());
        if body.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| AgentError::Endpoint {
                agent: self.agent.clone(),
                reason: format!("building the {path} request: {e}"),
            })?;
        let response = self.http.request(request).await.map_err(|e| {
            let agent = self.agent.clone();
            match tls::tls_failure(&e) {
                Some(reason) => AgentError::Tls { agent, reason },
                None => AgentError::Unreachable {
                    agent,
                    reason: tls::error_chain(&e),
                },
            }
        })?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| AgentError::Unreachable {
                agent: self.agent.clone(),
                reason: format!("reading the answer to {path}: {}", tls::error_chain(&e)),
            })?
            .to_bytes();
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| AgentError::Decode {
                agent: self.agent.clone(),
                path,
                reason: e.to_string(),
            });
        }
        let message = serde_json::from_slice::<ErrorBody>(&bytes)
            .map(|b| b.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).trim().to_string());
        let agent = self.agent.clone();
        Err(match status {
            StatusCode::UNAUTHORIZED => AgentError::Unauthorized { agent, path },
            StatusCode::CONFLICT => AgentError::Conflict {
                agent,
                path,
                message,
            },
            other => AgentError::Status {
                agent,
                path,
                status: other.as_u16(),
                message,
            },
        })
    }
}

fn encode<T: Serialize>(body: &T) -> Bytes {
    // Plain structs of strings and numbers: encoding cannot fail.
    Bytes::from(serde_json::to_vec(body).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_tokens_in_clear_and_never_prints_them() {
        let err = AgentClient::new("http://10.0.0.7:9810", "s3cret", None).unwrap_err();
        assert!(matches!(err, AgentError::Endpoint { .. }), "{err}");
        assert!(err.to_string().contains("in clear"), "{err}");
        assert!(!err.to_string().contains("s3cret"));
        let client = AgentClient::new("http://127.0.0.1:9810/", "s3cret", None).unwrap();
        assert_eq!(client.url(), "http://127.0.0.1:9810");
        let shown = format!("{client:?}");
        assert!(
            !shown.contains("s3cret") && shown.contains("127.0.0.1"),
            "{shown}"
        );
        let err = AgentClient::new("http://127.0.0.1:1", "bad\ntoken", None).unwrap_err();
        assert!(!err.to_string().contains("token\n") && !err.to_string().contains("bad\n"));
    }

    #[tokio::test]
    async fn an_absent_agent_is_unreachable_after_the_retries() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = AgentClient::new(&format!("http://127.0.0.1:{port}"), "t", None)
            .unwrap()
            .for_node("node-x");
        let started = std::time::Instant::now();
        let err = client.identity().await.unwrap_err();
        assert!(matches!(err, AgentError::Unreachable { .. }), "{err}");
        assert!(err.to_string().contains("node-x"), "{err}");
        // Two pauses (200 ms, 400 ms) between three tries.
        assert!(
            started.elapsed() >= RETRY_PAUSE * 3,
            "{:?}",
            started.elapsed()
        );
    }
}
