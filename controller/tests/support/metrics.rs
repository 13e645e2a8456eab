//! Scraping the controller's `/metrics` as Prometheus does and reading the
//! families back with a Prometheus text-format parser, plus the one
//! scenario `metrics.rs` (sim) and `real_spdk_metrics.rs` (real spdk_tgt)
//! both run. Included by those two targets only (`#[path]`), so the other
//! targets sharing `support` need no Prometheus parser.

use std::time::{Duration, Instant};

use prometheus_parse::{Sample, Scrape, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::real::write_volume;
use crate::support::*;

/// The `[metrics]` section of a harness that serves metrics on `port` and
/// re-reads everything on every scrape.
pub fn metrics_toml(port: u16) -> String {
    format!("[metrics]\naddress = \"127.0.0.1:{port}\"\ncache_ms = 0\nhistogram_max_age_ms = 0\n")
}

/// One scrape of `http://127.0.0.1:<port>/metrics`, parsed.
pub async fn scrape(port: u16) -> Scrape {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the metrics listener");
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: prometheus\r\n\r\n")
        .await
        .expect("send the scrape");
    let mut raw = String::new();
    stream
        .read_to_string(&mut raw)
        .await
        .expect("read the scrape");
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP answer");
    if std::env::var_os("SHOW_METRICS").is_some() {
        eprintln!("{body}");
    }
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text format")
}

fn matches(s: &Sample, labels: &[(&str, &str)]) -> bool {
    labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
}

/// The value of the one sample `metric{labels}` (counter, gauge or untyped).
pub fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric && matches(s, labels))
        .filter_map(|s| match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(v),
            _ => None,
        })
        .collect();
    assert!(
        found.len() <= 1,
        "{metric}{labels:?} is ambiguous: {found:?}"
    );
    found.first().copied()
}

/// The cumulative buckets `(le, count)` of histogram `metric{labels}`.
pub fn buckets(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<Vec<(f64, f64)>> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && matches(s, labels))
        .and_then(|s| match &s.value {
            Value::Histogram(b) => Some(b.iter().map(|c| (c.less_than, c.count)).collect()),
            _ => None,
        })
}

/// Checks that histogram `metric{labels}` is well formed: bounds rising,
/// counts never falling, `+Inf` equal to `_count`. Returns `_count`.
pub fn sane_histogram(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let b = buckets(scrape, metric, labels)
        .unwrap_or_else(|| panic!("no histogram {metric}{labels:?}"));
    assert!(
        b.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
        "{metric}: {b:?}"
    );
    let last = b.last().expect("buckets");
    assert!(last.0.is_infinite(), "{metric}: no +Inf bucket in {b:?}");
    let count = value(scrape, &format!("{metric}_count"), labels).expect("_count");
    assert_eq!(last.1, count, "{metric}: +Inf bucket and _count differ");
    let sum = value(scrape, &format!("{metric}_sum"), labels).expect("_sum");
    assert!(
        sum >= 0.0 && (count > 0.0 || sum == 0.0),
        "{metric}: sum {sum} for {count}"
    );
    count
}

/// Scrapes until `check` accepts a scrape (at most `limit`); the accepted one.
pub async fn scrape_until(
    port: u16,
    limit: Duration,
    what: &str,
    check: impl Fn(&Scrape) -> bool,
) -> Scrape {
    let started = Instant::now();
    loop {
        let s = scrape(port).await;
        if check(&s) {
            return s;
        }
        assert!(
            started.elapsed() < limit,
            "{what}: not seen within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Bytes of one write of the scenario: one I/O on both flavors (spdk_dd
/// writes a whole 16 KiB buffer at a 16 KiB offset as one 16 KiB command).
pub const WRITE: usize = 16 * 1024;
/// Writes of the scenario.
pub const WRITES: usize = 3;

/// What an operator sees after publishing a volume and writing through it:
/// its write ops and bytes moved by exactly what was written, its latency
/// histogram counted those writes, both replicas are healthy and hold the
/// cluster written, the nodes' free space is the lvstores', and a failed CSI
/// call moves the error counter of its method and code. `h` must serve
/// metrics on `port` ([`metrics_toml`]) over 2 nvme-tcp nodes.
pub async fn scenario(h: &mut Harness, port: u16) {
    let vol = h.create_volume("pvc-metrics", 64 * MIB, Some(2)).await;
    let ctx = h.publish(&vol, "node-0").await;
    let volume = |op: &'static str| [("volume", vol.as_str()), ("node", "node-0"), ("op", op)];

    // The first scrape also enables the raid's latency histogram.
    let before = scrape(port).await;
    let ops0 = value(&before, "shorthorn_volume_ops_total", &volume("write"))
        .expect("the published volume's write ops");
    let bytes0 = value(&before, "shorthorn_volume_bytes_total", &volume("write")).expect("bytes");
    let vn = [("volume", vol.as_str()), ("node", "node-0")];
    let hist0 = sane_histogram(&before, "shorthorn_volume_io_latency_seconds", &vn);

    for i in 0..WRITES {
        write_volume(h, &ctx, (i * WRITE) as u64, &pattern(WRITE, i as u8 + 1)).await;
    }

    let after = scrape(port).await;
    let ops = value(&after, "shorthorn_volume_ops_total", &volume("write")).expect("ops");
    let bytes = value(&after, "shorthorn_volume_bytes_total", &volume("write")).expect("bytes");
    assert_eq!(
        ops - ops0,
        WRITES as f64,
        "write ops moved by the writes made"
    );
    assert_eq!(
        bytes - bytes0,
        (WRITES * WRITE) as f64,
        "written bytes moved by what was written"
    );
    assert_eq!(
        value(&after, "shorthorn_volume_ops_total", &volume("read")),
        value(&before, "shorthorn_volume_ops_total", &volume("read")),
        "nothing was read"
    );
    let latency = value(
        &after,
        "shorthorn_volume_latency_seconds_total",
        &volume("write"),
    )
    .expect("write latency sum");
    assert!(latency > 0.0, "writes take time");
    // Every completed I/O lands in the histogram (flushes a real initiator
    // may send included): at least the writes, and no more than all I/O.
    let hist = sane_histogram(&after, "shorthorn_volume_io_latency_seconds", &vn);
    let all_ops: f64 = ["read", "write", "unmap"]
        .iter()
        .map(|op| {
            value(&after, "shorthorn_volume_ops_total", &volume(op)).unwrap_or(0.0)
                - value(&before, "shorthorn_volume_ops_total", &volume(op)).unwrap_or(0.0)
        })
        .sum();
    assert!(
        hist - hist0 >= WRITES as f64,
        "histogram counted {} of {WRITES} writes",
        hist - hist0
    );
    if !h.cluster.is_real_spdk() {
        assert_eq!(
            hist - hist0,
            all_ops,
            "the sim's histogram counts exactly its I/O"
        );
    }

    // Replicas: both healthy (and only healthy), each holding the one
    // cluster the writes touched.
    let cluster = h.config().nodes[0].cluster_size as f64;
    for node in ["node-0", "node-1"] {
        let r = [("volume", vol.as_str()), ("node", node)];
        for state in ["healthy", "degraded", "rebuilding", "failed", "stale"] {
            let want = if state == "healthy" { 1.0 } else { 0.0 };
            let s = [("volume", vol.as_str()), ("node", node), ("state", state)];
            assert_eq!(
                value(&after, "shorthorn_replica_state", &s),
                Some(want),
                "{node} {state}"
            );
        }
        assert_eq!(
            value(&after, "shorthorn_replica_allocated_bytes", &r),
            Some(cluster),
            "replica on {node} allocated one cluster"
        );
        assert_eq!(
            value(&after, "shorthorn_replica_io_errors_total", &r),
            Some(0.0)
        );
    }

    // Nodes: reachable, and the free space the lvstore reports (the
    // controller re-reads node space every 10 s).
    let mut expected_free = Vec::new();
    for i in 0..2 {
        let lvs = h
            .spdk(i)
            .bdev_lvol_get_lvstores(&Default::default())
            .await
            .expect("lvstores")
            .into_iter()
            .find(|l| l.name == h.config().nodes[i].lvstore)
            .expect("the node's lvstore");
        expected_free.push((
            format!("node-{i}"),
            (lvs.free_clusters * lvs.cluster_size) as f64,
        ));
    }
    let nodes = scrape_until(port, Duration::from_secs(30), "node free space", |s| {
        expected_free.iter().all(|(node, free)| {
            value(s, "shorthorn_node_free_bytes", &[("node", node)]) == Some(*free)
        })
    })
    .await;
    for (node, _) in &expected_free {
        assert_eq!(
            value(&nodes, "shorthorn_node_reachable", &[("node", node)]),
            Some(1.0)
        );
        let capacity =
            value(&nodes, "shorthorn_node_capacity_bytes", &[("node", node)]).expect("capacity");
        let committed =
            value(&nodes, "shorthorn_node_committed_bytes", &[("node", node)]).expect("committed");
        assert!(
            committed >= 64.0 * MIB as f64 && committed <= capacity,
            "{node}: committed {committed} of {capacity}"
        );
    }
    // The controller's own SPDK calls are timed per node and method.
    assert!(
        value(
            &nodes,
            "shorthorn_spdk_rpc_duration_seconds_count",
            &[("node", "node-0"), ("method", "bdev_raid_create")]
        )
        .is_some_and(|n| n >= 1.0),
        "publish's bdev_raid_create is counted"
    );

    // A failed CSI call moves the error counter of its method and code.
    let code = [("method", "ControllerPublishVolume"), ("code", "NotFound")];
    let errors0 = value(&nodes, "shorthorn_csi_errors_total", &code).unwrap_or(0.0);
    let calls0 = value(
        &nodes,
        "shorthorn_csi_request_duration_seconds_count",
        &[("method", "ControllerPublishVolume")],
    )
    .expect("publish was timed");
    let refused = h
        .csi
        .controller_publish_volume(publish_req("no-such-volume", "node-0"))
        .await
        .expect_err("publishing an unknown volume fails");
    assert_eq!(refused.code(), tonic::Code::NotFound);
    let last = scrape(port).await;
    assert_eq!(
        value(&last, "shorthorn_csi_errors_total", &code),
        Some(errors0 + 1.0)
    );
    assert_eq!(
        value(
            &last,
            "shorthorn_csi_request_duration_seconds_count",
            &[("method", "ControllerPublishVolume")]
        ),
        Some(calls0 + 1.0)
    );
    sane_histogram(
        &last,
        "shorthorn_csi_request_duration_seconds",
        &[("method", "ControllerPublishVolume")],
    );

    h.unpublish(&vol, "node-0").await;
    h.delete_volume(&vol).await;
}
