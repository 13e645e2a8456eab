//! CSI Controller call latency and errors by method, recorded by
//! [`crate::service::ControllerService`] around every call.

use std::future::Future;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use tonic::Status;

/// Latency buckets of one CSI call, in seconds (1 ms to 60 s).
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0, 60.0,
];

/// Labels of a call: the CSI method (`CreateVolume`, ...).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CsiLabels {
    /// CSI method name.
    pub method: String,
}

/// Labels of a failed call.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CsiErrorLabels {
    /// CSI method name.
    pub method: String,
    /// The gRPC code answered (`NotFound`, `ResourceExhausted`, ...).
    pub code: String,
}

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The CSI families.
#[derive(Debug)]
pub struct CsiMetrics {
    /// `shorthorn_csi_request_duration_seconds`: every call, failed or not.
    pub duration: Family<CsiLabels, Histogram, fn() -> Histogram>,
    /// `shorthorn_csi_errors_total`.
    pub errors: Family<CsiErrorLabels, Counter>,
}

impl Default for CsiMetrics {
    fn default() -> Self {
        Self {
            duration: Family::new_with_constructor(histogram as fn() -> Histogram),
            errors: Family::default(),
        }
    }
}

impl CsiMetrics {
    /// Runs one call of `method` and records how long it took and how it failed.
    pub async fn observe<T>(
        &self,
        method: &'static str,
        call: impl Future<Output = Result<T, Status>>,
    ) -> Result<T, Status> {
        let started = Instant::now();
        let outcome = call.await;
        let labels = CsiLabels {
            method: method.to_string(),
        };
        self.duration
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        if let Err(status) = &outcome {
            self.errors
                .get_or_create(&CsiErrorLabels {
                    method: labels.method,
                    code: format!("{:?}", status.code()),
                })
                .inc();
        }
        outcome
    }
}
