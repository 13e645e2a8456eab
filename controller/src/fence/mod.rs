//! I/O fences: how a published volume's writes are held still while every
//! replica is snapshotted, so all replicas' snapshots hold the same bytes.
//!
//! - [`ana`]: NVMe/TCP frontend. The kernel-facing listener on the publishing
//!   node goes ANA-inaccessible (the host queues and retries), a namespace
//!   ANA-group re-set waits for in-flight I/O, and the listener goes back to
//!   optimized. The node agent holds it as a lease ([`ana_agent`]); on nodes
//!   without an agent a guard task here does ([`ana_guard`]).
//! - [`node_quiesce`]: ublk frontend. The node agent freezes the filesystem
//!   (or suspends the dm device) under a lease that expires by itself.
//!
//! Every fence has a deadline after which I/O resumes by itself; with an
//! agent, without the controller. Resume is tried again until it succeeds
//! or the deadline (plus [`RESUME_GRACE`]) has passed, after which the
//! lease or guard has restored I/O ([`resume_retrying`]). A resume says
//! whether the fence had already lifted by itself ([`Resumed`]): work done
//! under it is then not proven consistent. [`FenceGuard`] lifts a fence on
//! drop if nobody did, and [`FenceStats`] keeps recent hold times per kind
//! for metrics.

pub mod ana;
pub mod ana_agent;
pub mod ana_guard;
pub mod node_quiesce;

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use async_trait::async_trait;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

use crate::error::{ControllerError, Result};
use crate::nodes::NodeHandle;
use agent_api::FrontendKind;

use crate::store::PublicationRecord;
use node_quiesce::{AgentQuiesce, NodeQuiesce, NodeQuiesceFence};

/// Longest time a fence may hold a volume's I/O before it lifts by itself.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);
/// Hold times remembered per fence kind.
pub const RECENT_HOLDS: usize = 256;
/// How long past a fence's deadline a failing resume is still tried: by
/// then its lease (or guard) has restored I/O, and a resume that gets
/// through learns that the fence had lifted.
pub const RESUME_GRACE: Duration = Duration::from_secs(1);
/// First pause between resume attempts; doubled up to [`MAX_RESUME_PAUSE`].
const FIRST_RESUME_PAUSE: Duration = Duration::from_millis(50);
/// Longest pause between resume attempts.
const MAX_RESUME_PAUSE: Duration = Duration::from_millis(500);

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
    /// Lets I/O flow again and says whether the fence was still in force.
    /// Idempotent.
    async fn resume(&self) -> Result<Resumed>;
}

/// What a successful resume found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resumed {
    /// The fence was no longer in force when the resume arrived: its lease
    /// or guard had run out (or was lost, e.g. with an agent restart, or
    /// the fence was never taken). Work done under it is not proven to
    /// have seen no I/O.
    pub lease_expired: bool,
}

/// A fence lifted by [`FenceGuard::release`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Released {
    /// How long I/O was held (until the resume succeeded).
    pub held: Duration,
    /// See [`Resumed::lease_expired`].
    pub lease_expired: bool,
}

/// Resumes `fence`, trying again on failure until `lease_end` plus
/// [`RESUME_GRACE`] has passed (by then the fence's lease or guard has
/// restored I/O by itself). Returns the last error if no attempt succeeded.
pub async fn resume_retrying(fence: &dyn Fence, lease_end: Instant) -> Result<Resumed> {
    let give_up = lease_end + RESUME_GRACE;
    let mut pause = FIRST_RESUME_PAUSE;
    let mut tries = 1u32;
    loop {
        match fence.resume().await {
            Ok(resumed) => {
                if tries > 1 {
                    tracing::info!(
                        fence = fence.kind().as_str(),
                        tries,
                        "fence lifted after failed resume attempts"
                    );
                }
                return Ok(resumed);
            }
            Err(e) if Instant::now() + pause < give_up => {
                tracing::warn!(fence = fence.kind().as_str(), error = %e, tries, "resuming I/O failed; trying again until the fence's deadline");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_RESUME_PAUSE);
                tries += 1;
            }
            Err(e) => {
                tracing::error!(fence = fence.kind().as_str(), error = %e, tries, "resuming I/O failed until past the fence's deadline; its lease or guard restores I/O");
                return Err(e);
            }
        }
    }
}

/// Upper bounds (seconds) of the fence hold histogram.
const HOLD_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Label of the fence hold histogram: the fence kind.
#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct FenceLabels {
    /// `ana` or `node-quiesce`.
    pub kind: String,
}

fn hold_histogram() -> Histogram {
    Histogram::new(HOLD_BUCKETS)
}

/// Recent fence hold times, by kind, and every hold in a histogram (metrics).
#[derive(Debug)]
pub struct FenceStats {
    holds: Mutex<BTreeMap<FenceKind, VecDeque<Duration>>>,
    /// `shorthorn_fence_hold_seconds`: every hold since start, by kind.
    pub hold_seconds: Family<FenceLabels, Histogram, fn() -> Histogram>,
}

impl Default for FenceStats {
    fn default() -> Self {
        Self {
            holds: Mutex::default(),
            hold_seconds: Family::new_with_constructor(hold_histogram as fn() -> Histogram),
        }
    }
}

impl FenceStats {
    /// Records one hold.
    pub fn record(&self, kind: FenceKind, held: Duration) {
        self.hold_seconds
            .get_or_create(&FenceLabels {
                kind: kind.as_str().to_string(),
            })
            .observe(held.as_secs_f64());
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

    /// Suspends I/O through `fence` for at most [`Fencing::deadline`]; the
    /// returned guard lifts it.
    pub async fn hold(&self, fence: Arc<dyn Fence>) -> Result<FenceGuard<'_>> {
        let started = Instant::now();
        let lease_end = started + self.deadline();
        if let Err(e) = fence.suspend(self.deadline()).await {
            // A half-applied suspend (e.g. ANA set, drain failed) is undone.
            if let Err(undo) = resume_retrying(&*fence, lease_end).await {
                tracing::error!(fence = fence.kind().as_str(), error = %undo, "could not lift a half-applied fence; it lifts by itself at its deadline");
            }
            return Err(e);
        }
        Ok(FenceGuard {
            fence: Some(fence),
            started,
            lease_end,
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
    /// When the fence lifts by itself at the latest (its deadline counted
    /// from before the suspend was sent).
    lease_end: Instant,
    stats: &'a FenceStats,
}

impl FenceGuard<'_> {
    /// When the fence lifts by itself at the latest.
    pub fn lease_end(&self) -> Instant {
        self.lease_end
    }

    /// Lifts the fence, trying again until its deadline ([`resume_retrying`]);
    /// returns how long I/O was held and whether the fence had already
    /// lifted by itself.
    pub async fn release(mut self) -> Result<Released> {
        let Some(fence) = self.fence.take() else {
            return Ok(Released {
                held: Duration::ZERO,
                lease_expired: false,
            });
        };
        let outcome = resume_retrying(&*fence, self.lease_end).await;
        let held = self.started.elapsed();
        self.stats.record(fence.kind(), held);
        tracing::info!(
            fence = fence.kind().as_str(),
            held_ms = held.as_secs_f64() * 1000.0,
            lease_expired = outcome.as_ref().is_ok_and(|r| r.lease_expired),
            "fence lifted"
        );
        outcome.map(|r| Released {
            held,
            lease_expired: r.lease_expired,
        })
    }
}

impl Drop for FenceGuard<'_> {
    fn drop(&mut self) {
        if let Some(fence) = self.fence.take() {
            tracing::warn!(
                fence = fence.kind().as_str(),
                "fence dropped while held; lifting it in the background"
            );
            let lease_end = self.lease_end;
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    if let Err(e) = resume_retrying(&*fence, lease_end).await {
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
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A fence whose resume fails `failures` times, then succeeds.
    #[derive(Debug)]
    struct Flaky {
        failures: u32,
        tries: AtomicU32,
    }

    #[async_trait]
    impl Fence for Flaky {
        fn kind(&self) -> FenceKind {
            FenceKind::Ana
        }
        async fn suspend(&self, _deadline: Duration) -> Result<()> {
            Ok(())
        }
        async fn resume(&self) -> Result<Resumed> {
            if self.tries.fetch_add(1, Ordering::SeqCst) < self.failures {
                return Err(ControllerError::Internal("resume refused".into()));
            }
            Ok(Resumed {
                lease_expired: false,
            })
        }
    }

    #[tokio::test]
    async fn a_failing_resume_is_tried_again_until_the_deadline() {
        let flaky = Flaky {
            failures: 5,
            tries: AtomicU32::new(0),
        };
        let end = Instant::now() + Duration::from_secs(10);
        let resumed = resume_retrying(&flaky, end).await.expect("resumed");
        assert!(!resumed.lease_expired);
        assert_eq!(flaky.tries.load(Ordering::SeqCst), 6);

        let stubborn = Flaky {
            failures: u32::MAX,
            tries: AtomicU32::new(0),
        };
        let started = Instant::now();
        let end = started + Duration::from_millis(500);
        let err = resume_retrying(&stubborn, end).await.unwrap_err();
        assert!(err.to_string().contains("resume refused"), "{err}");
        let gave_up = started.elapsed();
        assert!(
            gave_up >= Duration::from_millis(500)
                && gave_up <= Duration::from_millis(600) + RESUME_GRACE,
            "gave up after {gave_up:?}"
        );
        assert!(stubborn.tries.load(Ordering::SeqCst) > 5);
    }

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
