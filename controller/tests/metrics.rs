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

/// SPDK calls of `method` the controller made, summed over nodes, as the
/// scrape reports them.
fn calls(s: &prometheus_parse::Scrape, method: &str) -> f64 {
    s.samples
        .iter()
        .filter(|x| {
            x.metric == "shorthorn_spdk_rpc_duration_seconds_count"
                && x.labels.get("method") == Some(method)
        })
        .map(|x| match x.value {
            prometheus_parse::Value::Untyped(v) | prometheus_parse::Value::Counter(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_reads_each_node_once_not_each_volume() {
    let port = testkit::ports::reserve().expect("port");
    // The health monitor is off, so every SPDK call between two scrapes is
    // the second scrape's.
    let config = format!(
        "health_interval_ms = 0\n{}histograms_per_scrape = 4\n",
        metrics_toml(port.port())
    );
    let mut h = Harness::start_opts(2, StoreKind::Embedded, &config, &["nvme-tcp"]).await;
    let published = 12;
    for i in 0..24 {
        let vol = h
            .create_volume(&format!("pvc-scale-{i}"), 8 * MIB, Some(2))
            .await;
        if i < published {
            h.publish(&vol, "node-0").await;
        }
    }
    let mut last = scrape::scrape(port.port()).await;
    let mut took = Vec::new();
    for _ in 0..4 {
        let now = scrape::scrape(port.port()).await;
        // What the previous scrape spent reading the store and the nodes.
        took.push(
            scrape::value(&now, "shorthorn_metrics_collect_seconds", &[]).expect("collect time"),
        );
        let moved = |m: &str| calls(&now, m) - calls(&last, m);
        // One listing of statistics and one of bdevs per node, whatever
        // the number of volumes; the rebuild view reads the one publishing
        // node's raids; at most 4 histograms (plus their first enable).
        assert_eq!(moved("bdev_get_iostat"), 2.0);
        assert_eq!(moved("bdev_get_bdevs"), 2.0);
        assert_eq!(moved("bdev_raid_get_bdevs"), 1.0);
        assert!(
            moved("bdev_get_histogram") <= 8.0,
            "{}",
            moved("bdev_get_histogram")
        );
        assert!(moved("bdev_enable_histogram") <= 4.0);
        last = now;
    }
    // After 1 + 4 scrapes of 4 histograms each, 12 publications all have one.
    let with_histogram = last
        .samples
        .iter()
        .filter(|s| s.metric == "shorthorn_volume_io_latency_seconds_count")
        .count();
    assert_eq!(with_histogram, published);
    eprintln!("collecting 24 volumes ({published} published) on 2 sim nodes took {took:?} s");
}
