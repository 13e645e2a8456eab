//! The controller's `/metrics` as an operator reads it, on the sim: after
//! a known amount of I/O through a published volume its counters moved by
//! that amount, its latency histogram is sane, replica states and node
//! space are right, and a failed CSI call shows in the error counter. The
//! same scenario runs on real spdk_tgt in `real_spdk_metrics.rs`.

#[path = "support/metrics.rs"]
mod scrape;
mod support;

use scrape::{metrics_toml, scenario};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_sees_the_io_replicas_nodes_and_csi_errors_in_metrics() {
    let port = testkit::ports::reserve().expect("port");
    let mut h = Harness::start_opts(
        2,
        StoreKind::Embedded,
        &metrics_toml(port.port()),
        &["nvme-tcp"],
    )
    .await;
    scenario(&mut h, port.port()).await;
    h.assert_clean().await;
}
