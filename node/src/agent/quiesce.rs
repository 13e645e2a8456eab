//! `POST /quiesce/suspend` and `POST /quiesce/resume`: fencing a volume's
//! I/O on this node while the controller snapshots its replicas.

use std::fmt;
use std::time::Duration;

use agent_api::quiesce::MAX_DEADLINE;
use agent_api::{ResumeRequest, ResumeResponse, SuspendRequest, SuspendResponse};
use http::StatusCode;
use tracing::{info, warn, Instrument};

use super::response::{error, json, AgentResponse};
use crate::csi::StagingStore;
use crate::error::{NodeError, Result};
use crate::quiesce::{HoldReport, QuiesceTarget, Quiescer};

/// The quiesce routes over the kernel layer's quiescer.
pub struct QuiesceApi {
    backend: KernelQuiesce,
}

impl fmt::Debug for QuiesceApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("QuiesceApi")
    }
}

impl QuiesceApi {
    /// The routes over the kernel layer; targets are resolved from the CSI
    /// node service's staging records under `state_dir`, so a caller can
    /// never freeze anything but a staged volume.
    pub fn kernel(state_dir: &std::path::Path) -> Result<Self> {
        let runner: std::sync::Arc<dyn crate::command::CommandRunner> =
            std::sync::Arc::new(crate::command::SystemRunner);
        Ok(QuiesceApi {
            backend: KernelQuiesce {
                quiescer: Quiescer::new(crate::dm::DmLinear::new(runner)),
                store: StagingStore::open(state_dir)?,
            },
        })
    }

    pub(super) async fn suspend(&self, body: &[u8]) -> AgentResponse {
        let req: SuspendRequest = match parse(body) {
            Ok(r) => r,
            Err(why) => return error(StatusCode::BAD_REQUEST, &why),
        };
        if req.volume_id.is_empty() {
            return error(StatusCode::BAD_REQUEST, "volume_id is required");
        }
        let deadline = Duration::from_millis(req.deadline_ms);
        if deadline.is_zero() || deadline > MAX_DEADLINE {
            return error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "deadline_ms must be between 1 and {}",
                    MAX_DEADLINE.as_millis()
                ),
            );
        }
        let span = tracing::info_span!("quiesce", volume_id = %req.volume_id);
        let result = self
            .backend
            .suspend(&req.volume_id, req.target.as_deref(), deadline)
            .instrument(span.clone())
            .await;
        let _enter = span.enter();
        match result {
            Ok(()) => {
                info!(deadline_ms = req.deadline_ms, "volume I/O suspended");
                json(
                    StatusCode::OK,
                    &SuspendResponse {
                        volume_id: req.volume_id,
                    },
                )
            }
            Err(e) => failure("suspend", e),
        }
    }

    pub(super) async fn resume(&self, body: &[u8]) -> AgentResponse {
        let req: ResumeRequest = match parse(body) {
            Ok(r) => r,
            Err(why) => return error(StatusCode::BAD_REQUEST, &why),
        };
        let span = tracing::info_span!("quiesce", volume_id = %req.volume_id);
        let result = self
            .backend
            .resume(&req.volume_id)
            .instrument(span.clone())
            .await;
        let _enter = span.enter();
        match result {
            Ok(report) => {
                let held = report.held_for.unwrap_or_default();
                let held_ms = u64::try_from(held.as_millis()).unwrap_or(u64::MAX);
                info!(held_ms, was_held = report.was_held, "volume I/O resumed");
                json(
                    StatusCode::OK,
                    &ResumeResponse {
                        volume_id: req.volume_id,
                        held_ms,
                        expired: !report.was_held,
                    },
                )
            }
            Err(e) => failure("resume", e),
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> std::result::Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("bad request body: {e}"))
}

fn failure(op: &str, e: NodeError) -> AgentResponse {
    warn!(error = %e, "quiesce {op} failed");
    let status = match e {
        NodeError::QuiesceUnsupported { .. } | NodeError::QuiesceConflict { .. } => {
            StatusCode::CONFLICT
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, &e.to_string())
}

/// Suspends and resumes staged volumes through the kernel layer.
struct KernelQuiesce {
    quiescer: Quiescer,
    store: StagingStore,
}

impl KernelQuiesce {
    fn resolve(&self, volume_id: &str) -> Result<QuiesceTarget> {
        let rec = self
            .store
            .load(volume_id)?
            .ok_or_else(|| NodeError::QuiesceUnsupported {
                volume_id: volume_id.to_owned(),
                reason: "the volume is not staged on this node".to_owned(),
            })?;
        Ok(match (&rec.dm_name, rec.access.is_block()) {
            (Some(name), _) => QuiesceTarget::DmDevice(name.clone()),
            (None, false) => QuiesceTarget::Filesystem(rec.staging_path.clone()),
            (None, true) => QuiesceTarget::RawBlock(rec.device_path()),
        })
    }

    /// Freezes the volume's I/O for at most `deadline`, after which the
    /// quiescer resumes on its own. `target`, when given, must name what the
    /// node itself would freeze (staging path, dm name or device).
    async fn suspend(
        &self,
        volume_id: &str,
        target: Option<&str>,
        deadline: Duration,
    ) -> Result<()> {
        let resolved = self.resolve(volume_id)?;
        if let Some(wanted) = target {
            if !names(&resolved, wanted) {
                return Err(NodeError::QuiesceUnsupported {
                    volume_id: volume_id.to_owned(),
                    reason: format!("target {wanted:?} is not this volume's {resolved}"),
                });
            }
        }
        self.quiescer
            .suspend(volume_id, resolved, deadline)
            .await
            .map(drop)
    }

    /// Resumes I/O: whether a hold was in force, and how long it lasted.
    async fn resume(&self, volume_id: &str) -> Result<HoldReport> {
        self.quiescer.resume(volume_id).await
    }
}

fn names(target: &QuiesceTarget, wanted: &str) -> bool {
    match target {
        QuiesceTarget::DmDevice(n) => n == wanted,
        QuiesceTarget::Filesystem(p) | QuiesceTarget::RawBlock(p) => p.as_os_str() == wanted,
    }
}
