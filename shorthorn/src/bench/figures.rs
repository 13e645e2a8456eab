//! The figures of the CSI latency section, one row per operation.

use super::rpc::{CallTally, Minimum};
use super::stats::Samples;

/// One measured CSI operation.
#[derive(Debug, Clone)]
pub struct OpFigures {
    /// Its name as shown.
    pub name: &'static str,
    /// Whether the controller offers it (ControllerGetCapabilities).
    pub offered: bool,
    /// Latency per run, in milliseconds.
    pub latency: Samples,
    /// SPDK JSON-RPC calls per run.
    pub calls: CallTally,
    /// The least calls it needs (`None` when not meaningful).
    pub minimum: Option<Minimum>,
    /// Why it was not run although offered (no kernel initiator here).
    pub skipped: Option<&'static str>,
}

impl OpFigures {
    /// An operation with no runs yet.
    pub fn new(name: &'static str, offered: bool, minimum: Option<Minimum>) -> Self {
        Self {
            name,
            offered,
            latency: Samples::default(),
            calls: CallTally::default(),
            minimum,
            skipped: None,
        }
    }

    /// Marks the operation as not run, for `why`.
    pub fn skip(mut self, why: Option<&'static str>) -> Self {
        self.skipped = why;
        self
    }

    /// Whether it was measured: offered and not skipped.
    pub fn measured(&self) -> bool {
        self.offered && self.skipped.is_none()
    }

    /// As JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "operation": self.name,
            "offered": self.offered,
            "skipped": self.skipped,
            "latency_ms": self.latency.to_json(),
            "spdk_calls": {
                "per_run": self.calls.per_run.to_json(),
                "by_method_total": self.calls.by_method,
                "minimum": self.minimum.map(|m| m.calls),
                "minimum_is": self.minimum.map(|m| m.why),
            },
        })
    }
}

/// Stage split: attach, format and mount, as the node service timed them.
#[derive(Debug, Clone, Default)]
pub struct StageFigures {
    /// Attach (frontend), ms.
    pub attach: Samples,
    /// Filesystem probe and format, ms.
    pub format: Samples,
    /// Mount, ms.
    pub mount: Samples,
}

/// Snapshot quiesce window.
#[derive(Debug, Clone, Default)]
pub struct QuiesceFigures {
    /// Longest gap between two completed writes during CreateSnapshot, ms.
    pub writer_gap: Samples,
    /// Writes completed during each measured window.
    pub writes: Samples,
    /// How long the controller's fence held I/O, ms (its own statistics).
    pub fence_hold: Samples,
    /// The fence kinds seen.
    pub fence_kinds: Vec<&'static str>,
}
