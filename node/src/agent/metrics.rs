//! The agent's own Prometheus metrics, `GET /metrics`, encoded with
//! `prometheus-client` (text format 0.0.4):
//!
//! - `shorthorn_agent_requests_total{route, status}`: requests answered;
//! - `shorthorn_agent_request_duration_seconds{route}`: how long they took;
//! - `shorthorn_agent_auth_failures_total`: requests refused for a missing
//!   or wrong bearer token.
//!
//! `route` is one of the agent's routes or `other`, `status` the HTTP
//! status code: both bounded. `/metrics` needs no token, like `/healthz`:
//! it shows only these counts, and handing Prometheus the agent token would
//! give it the power to drive spdk_tgt. The token itself never appears in
//! a metric or a log line.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use agent_api::routes;
use http::StatusCode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The metrics route.
pub const ROUTE: &str = "/metrics";
/// The `Content-Type` of the answer.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Latency buckets of one request, in seconds (100 µs to 30 s: a fence
/// suspend waits for its drain).
const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5, 10.0, 30.0,
];

/// Routes with a label of their own; anything else is `other`.
const KNOWN: &[&str] = &[
    routes::JSONRPC,
    routes::IDENTITY,
    routes::QUIESCE_SUSPEND,
    routes::QUIESCE_RESUME,
    routes::ANA_FENCE_SUSPEND,
    routes::ANA_FENCE_RESUME,
    routes::HEALTHZ,
    ROUTE,
];

/// The label of a request path.
pub fn route_label(path: &str) -> &'static str {
    KNOWN
        .iter()
        .copied()
        .find(|r| *r == path)
        .unwrap_or("other")
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The agent's families.
#[derive(Debug)]
pub struct AgentMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    auth_failures: Counter<u64, AtomicU64>,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(histogram as fn() -> Histogram),
            auth_failures: Counter::default(),
        }
    }
}

impl AgentMetrics {
    /// Records one answered request.
    pub fn request(&self, route: &'static str, status: StatusCode, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_string(),
                status: status.as_u16().to_string(),
            })
            .inc();
        self.duration
            .get_or_create(&RouteLabels {
                route: route.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// Records a request refused for its bearer token.
    pub fn auth_failed(&self) {
        self.auth_failures.inc();
    }

    /// Every family in the Prometheus text format.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut registry = Registry::default();
        registry.register(
            "shorthorn_agent_requests",
            "Requests the node agent answered, by route and HTTP status",
            self.requests.clone(),
        );
        registry.register(
            "shorthorn_agent_request_duration_seconds",
            "How long the node agent took to answer, by route",
            self.duration.clone(),
        );
        registry.register(
            "shorthorn_agent_auth_failures",
            "Requests the node agent refused for a missing or wrong bearer token",
            self.auth_failures.clone(),
        );
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_paths_share_one_label() {
        assert_eq!(route_label("/jsonrpc"), "/jsonrpc");
        assert_eq!(route_label("/metrics"), "/metrics");
        assert_eq!(route_label("/jsonrpc/../etc/passwd"), "other");
        assert_eq!(route_label("/x9f3"), "other");
    }
}
