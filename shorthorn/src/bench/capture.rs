//! The split of NodeStageVolume into attach, format and mount, read from the
//! node service's own "volume staged" event rather than timed from outside.
//!
//! The node service runs on a thread of its own whose default `tracing`
//! subscriber is [`subscriber`]: it prints like the global one and also hands
//! every "volume staged" event to a [`StageSplits`].

use std::sync::{Arc, Mutex, PoisonError};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::{EnvFilter, Layer};

/// The message of the node service's stage event.
const STAGED_MESSAGE: &str = "volume staged";

/// One NodeStageVolume as the node service timed it, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageSplit {
    /// Attaching the device (frontend).
    pub attach_ms: u64,
    /// Probing and, when blank, formatting the filesystem.
    pub format_ms: u64,
    /// Mounting at the staging path.
    pub mount_ms: u64,
    /// The whole stage.
    pub total_ms: u64,
}

/// Stage events captured so far, oldest first.
#[derive(Debug, Clone, Default)]
pub struct StageSplits {
    seen: Arc<Mutex<Vec<StageSplit>>>,
}

impl StageSplits {
    /// Removes and returns what was captured since the last call.
    pub fn drain(&self) -> Vec<StageSplit> {
        std::mem::take(&mut *self.seen.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

struct CaptureLayer {
    splits: StageSplits,
}

#[derive(Default)]
struct SplitVisitor {
    message: bool,
    split: StageSplit,
}

impl SplitVisitor {
    fn set(&mut self, name: &str, value: u64) {
        match name {
            "attach_ms" => self.split.attach_ms = value,
            "format_ms" => self.split.format_ms = value,
            "mount_ms" => self.split.mount_ms = value,
            "total_ms" => self.split.total_ms = value,
            _ => {}
        }
    }
}

impl Visit for SplitVisitor {
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(field.name(), value);
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.set(field.name(), u64::try_from(value).unwrap_or(u64::MAX));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field.name(), u64::try_from(value).unwrap_or(0));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" && value == STAGED_MESSAGE {
            self.message = true;
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message |= format!("{value:?}") == STAGED_MESSAGE;
        } else if let Ok(v) = format!("{value:?}").parse::<u64>() {
            self.set(field.name(), v);
        }
    }
}

impl<S: Subscriber> Layer<S> for CaptureLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if !event.metadata().target().starts_with("shorthorn_node") {
            return;
        }
        let mut visitor = SplitVisitor::default();
        event.record(&mut visitor);
        if visitor.message {
            self.splits
                .seen
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(visitor.split);
        }
    }
}

/// A subscriber that prints to stderr (filtered by `RUST_LOG`, default
/// `info`) and captures stage events into `splits`.
pub fn subscriber(splits: StageSplits) -> impl Subscriber + Send + Sync {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(filter),
        )
        .with(CaptureLayer { splits })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_the_split_of_a_stage_event() {
        let splits = StageSplits::default();
        let _guard = tracing::subscriber::set_default(subscriber(splits.clone()));
        let (a, f, m): (u128, u128, u128) = (3, 40, 5);
        tracing::info!(target: "shorthorn_node::csi::stage", attach_ms = a, format_ms = f, mount_ms = m, total_ms = 48u128, "volume staged");
        tracing::info!(target: "shorthorn_node::csi::stage", "something else");
        assert_eq!(
            splits.drain(),
            vec![StageSplit {
                attach_ms: 3,
                format_ms: 40,
                mount_ms: 5,
                total_ms: 48
            }]
        );
        assert!(splits.drain().is_empty());
    }
}
