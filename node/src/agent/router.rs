//! Request routing and the refusals: authentication, size limit, JSON
//! validation, the method allowlist and the parameter policy all happen here, before anything is
//! sent to spdk_tgt.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Body;
use serde::Deserialize;
use tracing::{debug, info, warn, Instrument};

use agent_api::routes;
use agent_api::NodeIdentity;

use super::allowlist;
use super::ana_fence::AnaFenceApi;
use super::body::{declared_too_large, read_limited, BodyError};
use super::forward::{ForwardError, SpdkForwarder};
use super::jsonrpc::RpcRequest;
use super::metrics::{self, AgentMetrics};
use super::policy::{AgentPolicy, Verdict};
use super::quiesce::QuiesceApi;
use super::response::{error, json, text, AgentResponse};
use super::swap::SwapApi;
use super::token::BearerToken;

/// The agent's shared state; one per server.
#[derive(Debug)]
pub struct Agent {
    pub(super) token: BearerToken,
    pub(super) forwarder: SpdkForwarder,
    pub(super) identity: NodeIdentity,
    pub(super) quiesce: QuiesceApi,
    pub(super) ana_fence: AnaFenceApi,
    pub(super) swap: SwapApi,
    pub(super) body_limit: usize,
    pub(super) policy: AgentPolicy,
    pub(super) metrics: AgentMetrics,
}

impl Agent {
    /// Answers one HTTP request.
    pub async fn handle<B>(self: Arc<Self>, req: Request<B>) -> AgentResponse
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let span =
            tracing::info_span!("agent", http.method = %req.method(), path = req.uri().path());
        let route = metrics::route_label(req.uri().path());
        let started = Instant::now();
        let resp = self.route(req).instrument(span).await;
        self.metrics
            .request(route, resp.status(), started.elapsed());
        resp
    }

    async fn route<B>(&self, req: Request<B>) -> AgentResponse
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let path = req.uri().path().to_owned();
        if path == routes::HEALTHZ {
            return match *req.method() {
                Method::GET | Method::HEAD => text(StatusCode::OK, "ok"),
                _ => error(StatusCode::METHOD_NOT_ALLOWED, "use GET"),
            };
        }
        if path == metrics::ROUTE {
            return match *req.method() {
                Method::GET | Method::HEAD => match self.metrics.render() {
                    Ok(body) => {
                        let mut resp = text(StatusCode::OK, &body);
                        resp.headers_mut().insert(
                            CONTENT_TYPE,
                            http::HeaderValue::from_static(metrics::CONTENT_TYPE),
                        );
                        resp
                    }
                    Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
                },
                _ => error(StatusCode::METHOD_NOT_ALLOWED, "use GET"),
            };
        }
        let auth = req.headers().get(AUTHORIZATION).map(|v| v.as_bytes());
        if !self.token.authorizes(auth) {
            self.metrics.auth_failed();
            warn!("refused: missing or invalid bearer token");
            let mut resp = error(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
            resp.headers_mut()
                .insert(WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
            return resp;
        }
        let expected = match path.as_str() {
            routes::JSONRPC
            | routes::QUIESCE_SUSPEND
            | routes::QUIESCE_RESUME
            | routes::ANA_FENCE_SUSPEND
            | routes::ANA_FENCE_RESUME
            | routes::SWAP_CHECK
            | routes::SWAP_SUSPEND
            | routes::SWAP_RESUME => Method::POST,
            routes::IDENTITY => Method::GET,
            _ => return error(StatusCode::NOT_FOUND, "no such endpoint"),
        };
        if req.method() != expected {
            return error(StatusCode::METHOD_NOT_ALLOWED, &format!("use {expected}"));
        }
        if path == routes::IDENTITY {
            return json(StatusCode::OK, &self.identity);
        }
        let body = match self.read_body(req).await {
            Ok(body) => body,
            Err(resp) => return resp,
        };
        match path.as_str() {
            routes::JSONRPC => self.jsonrpc(&body).await,
            routes::QUIESCE_SUSPEND => self.quiesce.suspend(&body).await,
            routes::QUIESCE_RESUME => self.quiesce.resume(&body).await,
            routes::ANA_FENCE_SUSPEND => self.ana_fence.suspend(&body).await,
            routes::SWAP_CHECK => self.swap.check(&body).await,
            routes::SWAP_SUSPEND => self.swap.suspend(&body).await,
            routes::SWAP_RESUME => self.swap.resume(&body).await,
            _ => self.ana_fence.resume(&body).await,
        }
    }

    async fn read_body<B>(&self, req: Request<B>) -> Result<Bytes, AgentResponse>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let too_large = || {
            warn!(limit = self.body_limit, "refused: body too large");
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("body exceeds {} bytes", self.body_limit),
            )
        };
        if declared_too_large(req.headers(), self.body_limit) {
            return Err(too_large());
        }
        match read_limited(req.into_body(), self.body_limit).await {
            Ok(body) => Ok(body),
            Err(BodyError::TooLarge) => Err(too_large()),
            Err(BodyError::Read(e)) => Err(error(StatusCode::BAD_REQUEST, &e)),
        }
    }

    async fn jsonrpc(&self, body: &[u8]) -> AgentResponse {
        let request = match RpcRequest::parse(body) {
            Ok(r) => r,
            Err(why) => {
                warn!(reason = %why, "refused: malformed JSON-RPC request");
                return error(StatusCode::BAD_REQUEST, &why);
            }
        };
        let method = request.method.as_str();
        if !allowlist::is_allowed(method) {
            warn!(rpc.method = method, "refused: method not on the allowlist");
            return error(
                StatusCode::FORBIDDEN,
                &format!("method {method:?} is not allowed through the node agent"),
            );
        }
        match self
            .policy
            .check(method, request.params.as_ref(), &self.forwarder)
            .await
        {
            Verdict::Allow => {}
            Verdict::Refuse(refusal) => {
                warn!(rpc.method = method, reason = %refusal.0, "refused: parameters outside the agent's policy");
                return error(StatusCode::FORBIDDEN, &refusal.0);
            }
            Verdict::LookupFailed(why) => {
                warn!(rpc.method = method, error = %why, "refused: policy lookup failed");
                return error(StatusCode::BAD_GATEWAY, &why);
            }
        }
        match self.forwarder.call(&request.to_wire()).await {
            Ok(reply) => {
                match spdk_error_code(&reply) {
                    Some(code) => info!(
                        rpc.method = method,
                        rpc.error = code,
                        "forwarded: SPDK error"
                    ),
                    // Routine traffic (the controller polls every node):
                    // debug, so refusals and failures stand out at info.
                    None => debug!(rpc.method = method, "forwarded: ok"),
                }
                let mut resp = Response::new(Full::new(reply));
                resp.headers_mut().insert(
                    CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                resp
            }
            Err(e @ ForwardError::Timeout(_)) => {
                warn!(rpc.method = method, error = %e, "forward failed: timeout");
                error(StatusCode::GATEWAY_TIMEOUT, &e.to_string())
            }
            Err(e) => {
                warn!(rpc.method = method, error = %e, "forward failed");
                error(StatusCode::BAD_GATEWAY, &e.to_string())
            }
        }
    }
}

/// The JSON-RPC error code in an SPDK reply, if it is an error.
fn spdk_error_code(reply: &[u8]) -> Option<i64> {
    #[derive(Deserialize)]
    struct Reply {
        error: Option<ErrorObject>,
    }
    #[derive(Deserialize)]
    struct ErrorObject {
        code: i64,
    }
    serde_json::from_slice::<Reply>(reply)
        .ok()?
        .error
        .map(|e| e.code)
}
