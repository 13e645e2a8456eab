//! `POST /fence/ana/suspend` and `POST /fence/ana/resume`: the ANA fence of
//! a volume published here over NVMe/TCP, held by this agent as a lease
//! ([`lease`]), and the fences a previous run left ([`restore`]).
//!
//! Every request is checked ([`agent_api::ana_fence`]) before SPDK sees
//! anything: a Shorthorn volume NQN, a TCP listener on a loopback address,
//! a lease of at most `MAX_DEADLINE`. Refusals are 400. Suspends wait
//! (briefly) until the start-up restore is done, then 503.

mod lease;
mod restore;

use std::fmt;
use std::time::Duration;

use agent_api::{
    AnaFenceResumeRequest, AnaFenceResumeResponse, AnaFenceSuspendRequest, AnaFenceSuspendResponse,
};
use http::StatusCode;
use spdk_client::{SpdkClient, SpdkError};
use tokio::sync::watch;
use tracing::{warn, Instrument};

use super::response::{error, json, AgentResponse};
use crate::error::NodeError;
use lease::AnaLeases;

/// Longest a suspend waits for the start-up restore.
const READY_WAIT: Duration = Duration::from_secs(5);

/// The ANA fence routes and their leases.
pub struct AnaFenceApi {
    leases: AnaLeases,
    ready: watch::Receiver<bool>,
}

impl fmt::Debug for AnaFenceApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnaFenceApi")
            .field("ready", &*self.ready.borrow())
            .finish_non_exhaustive()
    }
}

impl AnaFenceApi {
    /// The routes over `spdk`; starts restoring the fences a previous run
    /// left (in the background; suspends wait for it).
    pub fn start(spdk: SpdkClient) -> Self {
        let (tx, ready) = watch::channel(false);
        tokio::spawn(restore::restore_until_done(spdk.clone(), tx));
        Self {
            leases: AnaLeases::new(spdk),
            ready,
        }
    }

    pub(super) async fn suspend(&self, body: &[u8]) -> AgentResponse {
        let req: AnaFenceSuspendRequest = match parse(body) {
            Ok(r) => r,
            Err(why) => return bad_body(&why),
        };
        let deadline = match req.check() {
            Ok(d) => d,
            Err(why) => return refused(&why),
        };
        let span = tracing::info_span!("ana_fence", nqn = %req.nqn);
        async {
            if !self.wait_ready().await {
                return failure("suspend", NodeError::AnaFenceStarting);
            }
            match self.leases.suspend(&req.nqn, &req.listener, deadline).await {
                Ok(s) => json(
                    StatusCode::OK,
                    &AnaFenceSuspendResponse {
                        nqn: req.nqn.clone(),
                        extended: s.extended,
                        expires_in_ms: millis(s.expires_in),
                    },
                ),
                Err(e) => failure("suspend", e),
            }
        }
        .instrument(span)
        .await
    }

    pub(super) async fn resume(&self, body: &[u8]) -> AgentResponse {
        let req: AnaFenceResumeRequest = match parse(body) {
            Ok(r) => r,
            Err(why) => return bad_body(&why),
        };
        if let Err(why) = req.check() {
            return refused(&why);
        }
        let span = tracing::info_span!("ana_fence", nqn = %req.nqn);
        async {
            match self.leases.resume(&req.nqn, &req.listener).await {
                Ok(r) => json(
                    StatusCode::OK,
                    &AnaFenceResumeResponse {
                        nqn: req.nqn.clone(),
                        expired: r.expired,
                        held_ms: millis(r.held_for),
                    },
                ),
                // The lease (if any) keeps retrying; a retried resume may succeed.
                Err(e @ NodeError::AnaFenceSpdk { .. }) => {
                    warn!(error = %e, "ANA fence resume failed");
                    error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
                }
                Err(e) => failure("resume", e),
            }
        }
        .instrument(span)
        .await
    }

    async fn wait_ready(&self) -> bool {
        let mut ready = self.ready.clone();
        let outcome = tokio::time::timeout(READY_WAIT, ready.wait_for(|r| *r)).await;
        matches!(outcome, Ok(Ok(_)))
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("bad request body: {e}"))
}

fn bad_body(why: &str) -> AgentResponse {
    warn!(reason = why, "refused: bad ANA fence request body");
    error(StatusCode::BAD_REQUEST, why)
}

fn refused(why: &agent_api::FenceRefusal) -> AgentResponse {
    warn!(reason = %why, "refused: ANA fence request");
    error(StatusCode::BAD_REQUEST, &why.to_string())
}

fn failure(op: &str, e: NodeError) -> AgentResponse {
    warn!(error = %e, "ANA fence {op} failed");
    let status = match &e {
        NodeError::AnaFenceConflict { .. } => StatusCode::CONFLICT,
        NodeError::AnaFenceStarting => StatusCode::SERVICE_UNAVAILABLE,
        NodeError::AnaFenceDrainTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        NodeError::AnaFenceSpdk { source, .. } => match source {
            // SPDK answered no: the volume is not published here as asked.
            SpdkError::Rpc { .. } => StatusCode::CONFLICT,
            SpdkError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::BAD_GATEWAY,
        },
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, &e.to_string())
}
