//! SPDK JSON-RPC latency and errors by node and method, observed on every
//! node's `SpdkClient` ([`spdk_client::CallObserver`], installed by
//! [`crate::nodes::NodeRegistry`] when a node is registered).

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use spdk_client::{CallObserver, SpdkError};

/// Latency buckets of one JSON-RPC call, in seconds (100 µs to 10 s).
const BUCKETS: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0,
];

/// Labels of a call: the node and the JSON-RPC method.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    /// Node name.
    pub node: String,
    /// JSON-RPC method; `other` for one the controller does not call.
    pub method: String,
}

/// Labels of a failed call.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcErrorLabels {
    /// Node name.
    pub node: String,
    /// JSON-RPC method.
    pub method: String,
    /// `rpc` (SPDK answered an error, "not found" of an idempotent delete
    /// included), `timeout` or `transport` (no answer).
    pub kind: String,
}

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The families, shared by every node's observer.
#[derive(Debug)]
pub struct RpcMetrics {
    /// `shorthorn_spdk_rpc_duration_seconds`.
    pub duration: Family<RpcLabels, Histogram, fn() -> Histogram>,
    /// `shorthorn_spdk_rpc_errors_total`.
    pub errors: Family<RpcErrorLabels, Counter>,
}

impl Default for RpcMetrics {
    fn default() -> Self {
        Self {
            duration: Family::new_with_constructor(histogram as fn() -> Histogram),
            errors: Family::default(),
        }
    }
}

impl RpcMetrics {
    /// The observer of node `node`'s client.
    pub fn observer(self: &Arc<Self>, node: &str) -> Arc<dyn CallObserver> {
        Arc::new(NodeObserver {
            node: node.to_string(),
            metrics: self.clone(),
        })
    }
}

#[derive(Debug)]
struct NodeObserver {
    node: String,
    metrics: Arc<RpcMetrics>,
}

impl CallObserver for NodeObserver {
    fn observe(&self, method: &str, elapsed: Duration, error: Option<&SpdkError>) {
        // Bounded: only the methods the controller calls get their own label.
        let method = if agent_api::methods::CONTROLLER_METHODS
            .binary_search(&method)
            .is_ok()
        {
            method
        } else {
            "other"
        };
        let labels = RpcLabels {
            node: self.node.clone(),
            method: method.to_string(),
        };
        self.metrics
            .duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        if let Some(error) = error {
            let kind = match error {
                SpdkError::Rpc { .. } => "rpc",
                SpdkError::Timeout => "timeout",
                _ => "transport",
            };
            self.metrics
                .errors
                .get_or_create(&RpcErrorLabels {
                    node: labels.node,
                    method: labels.method,
                    kind: kind.to_string(),
                })
                .inc();
        }
    }
}
