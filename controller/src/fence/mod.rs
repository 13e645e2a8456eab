//! I/O fences: how a published volume's writes are held still while every
//! replica is snapshotted, so all replicas' snapshots hold the same bytes.
//!
//! - [`ana`]: NVMe/TCP frontend. The kernel-facing listener on the publishing
//!   node goes ANA-inaccessible (the host queues and retries), a namespace
//!   ANA-group re-set waits for in-flight I/O, and the listener goes back to
//!   optimized. A guard task restores optimized when the deadline passes.
//! - [`node_quiesce`]: ublk frontend. The node agent freezes the filesystem
//!   (or suspends the dm device) under a lease that expires by itself.
//!
//! Every fence has a deadline after which I/O resumes without the
//! controller. [`FenceGuard`] lifts a fence on drop if nobody did, and
//! [`FenceStats`] keeps recent hold times per kind for metrics.

pub mod ana;
pub mod node_quiesce;

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::error::{ControllerError, Result};
use crate::nodes::NodeHandle;
use agent_api::FrontendKind;

use crate::store::PublicationRecord;
use node_quiesce::{AgentQuiesce, NodeQuiesce, NodeQuiesceFence};

/// Longest time a fence may hold a volume's I/O before it lifts by itself.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);
/// Hold times remembered per fence kind.
pub const RECENT_HOLDS: usize = 256;

/// Which mechanism holds the I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FenceKind {
    /// ANA inaccessible + drain barrier on the NVMe-oF frontend subsystem.
    Ana,
    /// The node agent's filesystem freeze / dm suspend.
    NodeQuiesce,
}

impl FenceKind {
    /// Name used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            FenceKind::Ana => "ana",
            FenceKind::NodeQuiesce => "node-quiesce",
        }
    }
}

/// Holds a volume's I/O still.
#[async_trait]
pub trait Fence: Send + Sync + fmt::Debug {
    /// The mechanism.
    fn kind(&self) -> FenceKind;
    /// Stops new I/O and waits for in-flight I/O to complete. I/O resumes by
    /// itself after `deadline` even if [`Fence::resume`] is never called.
    async fn suspend(&self, deadline: Duration) -> Result<()>;
    /// Lets I/O flow again. Idempotent.
    async fn resume(&self) -> Result<()>;
}

/// Recent fence hold times, by kind.
#[derive(Debug, Default)]
pub struct FenceStats {
    holds: Mutex<BTreeMap<FenceKind, VecDeque<Duration>>>,
}

impl FenceStats {
    /// Records one hold.
    pub fn record(&self, kind: FenceKind, held: Duration) {
        let mut holds = self.holds.lock().unwrap_or_else(PoisonError::into_inner);
        let recent = holds.entry(kind).or_default();
        if recent.len() == RECENT_HOLDS {
            recent.pop_front();
        }
        recent.push_back(held);
    }

    /// The recent holds of `kind`, oldest first.
    pub fn recent(&self, kind: FenceKind) -> Vec<Duration> {
        self.holds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&kind)
            .map(|d| d.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The `p`-th percentile (0..=100) of the recent holds of `kind`.
    pub fn percentile(&self, kind: FenceKind, p: u32) -> Option<Duration> {
        let mut holds = self.recent(kind);
        if holds.is_empty() {
            return None;
        }
        holds.sort_unstable();
        let rank = (holds.len() * p.min(100) as usize).div_ceil(100);
        holds.get(rank.saturating_sub(1)).copied()
    }
}

/// Fencing policy and statistics shared by every operation.
#[derive(Default)]
pub struct Fencing {
    /// Recent hold times.
    pub stats: FenceStats,
    /// Replaces the HTTP node-agent quiesce (tests, or nodes reached otherwise).
    node_quiesce: Option<Arc<dyn NodeQuiesce>>,
    /// Deadline override; [`DEFAULT_DEADLINE`] when `None`.
    deadline: Option<Duration>,
}

impl fmt::Debug for Fencing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fencing")
            .field("stats", &self.stats)
            .field("node_quiesce_override", &self.node_quiesce.is_some())
            .field("deadline", &self.deadline())
            .finish()
    }
}

impl Fencing {
    /// Uses `quiesce` for every node quiesce instead of the nodes' agents.
    #[must_use]
    pub fn with_node_quiesce(mut self, quiesce: Arc<dyn NodeQuiesce>) -> Self {
        self.node_quiesce = Some(quiesce);
        self
    }

    /// Sets the fence deadline.
    #[must_use]
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// How long a fence may hold I/O.
    pub fn deadline(&self) -> Duration {
        self.deadline.unwrap_or(DEFAULT_DEADLINE)
    }

    /// The fence a snapshot of `volume_id` needs: `None` when no node can
    /// write to it (unpublished, or published read-only).
    /// FAILED_PRECONDITION when a writer exists but cannot be fenced.
    pub fn fence_for(
        &self,
        volume_id: &str,
        publications: &[PublicationRecord],
        node_of: impl Fn(&str) -> Result<Arc<NodeHandle>>,
    ) -> Result<Option<Arc<dyn Fence>>> {
        let writers: Vec<_> = publications.iter().filter(|p| !p.readonly).collect();
        let publication = match writers.as_slice() {
            [] => return Ok(None),
            [one] => *one,
            _ => {
                return Err(ControllerError::MultipleWriters {
                    volume: volume_id.to_string(),
                    writers: writers.len(),
                })
            }
        };
        let node = node_of(&publication.node)?;
        match publication.frontend {
            FrontendKind::NvmeTcp => Ok(Some(Arc::new(ana::AnaFence::new(node, volume_id)))),
            FrontendKind::Ublk => {
                let quiesce: Arc<dyn NodeQuiesce> = match &self.node_quiesce {
                    Some(q) => q.clone(),
                    None => Arc::new(AgentQuiesce::for_node(&node).ok_or_else(|| {
                        ControllerError::Unfenceable {
                            volume: volume_id.to_string(),
                            node: node.name().to_string(),
                        }
                    })?),
                };
                Ok(Some(Arc::new(NodeQuiesceFence::new(
                    quiesce,
                    volume_id,
                    node.name(),
                ))))
            }
        }
    }

    /// Suspends I/O through `fence`; the returned guard lifts it.
    pub async fn hold(&self, fence: Arc<dyn Fence>) -> Result<FenceGuard<'_>> {
        let started = Instant::now();
        if let Err(e) = fence.suspend(self.deadline()).await {
            // A half-applied suspend (e.g. ANA set, drain failed) is undone.
            if let Err(undo) = fence.resume().await {
                tracing::error!(fence = fence.kind().as_str(), error = %undo, "could not lift a half-applied fence; it lifts by itself at its deadline");
            }
            return Err(e);
        }
        Ok(FenceGuard {
            fence: Some(fence),
            started,
            stats: &self.stats,
        })
    }
}

/// A held fence. [`FenceGuard::release`] lifts it and records the hold;
/// dropping it unreleased lifts it in the background.
#[derive(Debug)]
pub struct FenceGuard<'a> {
    fence: Option<Arc<dyn Fence>>,
    started: Instant,
    stats: &'a FenceStats,
}

impl FenceGuard<'_> {
    /// Lifts the fence; returns how long I/O was held.
    pub async fn release(mut self) -> Result<Duration> {
        let Some(fence) = self.fence.take() else {
            return Ok(Duration::ZERO);
        };
        let outcome = fence.resume().await;
        let held = self.started.elapsed();
        self.stats.record(fence.kind(), held);
        tracing::info!(
            fence = fence.kind().as_str(),
            held_ms = held.as_secs_f64() * 1000.0,
            "fence lifted"
        );
        outcome.map(|()| held)
    }
}

impl Drop for FenceGuard<'_> {
    fn drop(&mut self) {
        if let Some(fence) = self.fence.take() {
            tracing::warn!(
                fence = fence.kind().as_str(),
                "fence dropped while held; lifting it in the background"
            );
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    if let Err(e) = fence.resume().await {
                        tracing::error!(error = %e, "background fence lift failed; the fence lifts by itself at its deadline");
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_recent_holds() {
        let stats = FenceStats::default();
        assert_eq!(stats.percentile(FenceKind::Ana, 50), None);
        for ms in 1..=100 {
            stats.record(FenceKind::Ana, Duration::from_millis(ms));
        }
        assert_eq!(
            stats.percentile(FenceKind::Ana, 50),
            Some(Duration::from_millis(50))
        );
        assert_eq!(
            stats.percentile(FenceKind::Ana, 99),
            Some(Duration::from_millis(99))
        );
        assert_eq!(stats.recent(FenceKind::NodeQuiesce), Vec::<Duration>::new());
        for _ in 0..RECENT_HOLDS {
            stats.record(FenceKind::Ana, Duration::from_millis(500));
        }
        assert_eq!(stats.recent(FenceKind::Ana).len(), RECENT_HOLDS);
        assert_eq!(
            stats.percentile(FenceKind::Ana, 1),
            Some(Duration::from_millis(500))
        );
    }
}
