//! Metrics on real spdk_tgt v25.09 (`SHORTHORN_SPDK_TGT`; skips with a
//! message when unset):
//! - `bdev_enable_histogram` / `bdev_get_histogram` after real I/O (spdk_dd
//!   writing through an NVMe/TCP export): the histogram decodes, counts the
//!   writes iostat counted, and its buckets hold latencies within iostat's
//!   min and max; a never-enabled bdev is refused the way the sim refuses
//!   it; the full-range layout keeps the I/O of channels opened after the
//!   enable, which SPDK's default layout loses; the counts go with the
//!   channels when the export is deleted (iostat keeps its totals);
//! - the controller's `/metrics` scenario of `metrics.rs`, on real nodes.

#[path = "support/metrics.rs"]
mod scrape;
mod support;

use scrape::{metrics_toml, scenario};
use spdk_client::histogram::LatencyHistogram;
use spdk_client::{
    BdevEnableHistogramParams, BdevGetHistogramParams, BdevGetIostatParams, BdevMallocCreateParams,
    ListenAddress, NvmfCreateSubsystemParams, NvmfCreateTransportParams, NvmfDeleteSubsystemParams,
    NvmfNamespace, NvmfSubsystemAddHostParams, NvmfSubsystemAddListenerParams,
    NvmfSubsystemAddNsParams, SpdkClient,
};
use support::real::skip;
use support::*;
use testkit::data_path::{Export, TEST_HOST_NQN};
use testkit::nodes::TestCluster;

const IO: usize = 16 * 1024;
const WRITES: u64 = 4;

async fn write_ops(c: &SpdkClient, bdev: &str) -> (u64, u64, u64) {
    let s = c
        .bdev_get_iostat(&BdevGetIostatParams {
            name: Some(bdev.into()),
            ..Default::default()
        })
        .await
        .expect("iostat");
    let b = &s.bdevs[0];
    (
        b.num_write_ops,
        b.min_write_latency_ticks,
        b.max_write_latency_ticks,
    )
}

async fn histogram(c: &SpdkClient, bdev: &str) -> LatencyHistogram {
    let raw = c
        .bdev_get_histogram(&BdevGetHistogramParams { name: bdev.into() })
        .await
        .expect("bdev_get_histogram");
    LatencyHistogram::decode(&raw).expect("the histogram decodes")
}

/// A long-lived NVMe/TCP export of `bdev` on `node` admitting the data
/// path's host: the target opens the bdev's channels when it is created.
async fn export(
    c: &SpdkClient,
    node: &testkit::nodes::StorageNode,
    bdev: &str,
) -> (Export, testkit::ports::ReservedPort) {
    let nqn = format!("nqn.2016-06.io.shorthorn:metrics-{bdev}");
    c.nvmf_create_subsystem(&NvmfCreateSubsystemParams {
        nqn: nqn.clone(),
        allow_any_host: Some(false),
        ..Default::default()
    })
    .await
    .expect("subsystem");
    c.nvmf_subsystem_add_ns(&NvmfSubsystemAddNsParams {
        nqn: nqn.clone(),
        namespace: NvmfNamespace {
            bdev_name: bdev.into(),
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .expect("namespace");
    c.nvmf_subsystem_add_host(&NvmfSubsystemAddHostParams {
        nqn: nqn.clone(),
        host: TEST_HOST_NQN.into(),
        ..Default::default()
    })
    .await
    .expect("host");
    let port = testkit::ports::reserve().expect("port");
    c.nvmf_subsystem_add_listener(&NvmfSubsystemAddListenerParams {
        nqn: nqn.clone(),
        listen_address: ListenAddress::tcp_ipv4(&node.nvmf_address, port.port()),
        ..Default::default()
    })
    .await
    .expect("listener");
    let e = Export {
        nqn,
        host_nqn: TEST_HOST_NQN.into(),
        address: node.nvmf_address.clone(),
        port: port.port(),
        nsid: 1,
    };
    (e, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_histograms_decode_and_count_real_io_on_real_spdk() {
    if skip("bdev_get_histogram decoding") {
        return;
    }
    let cluster = tokio::task::spawn_blocking(|| TestCluster::start(1))
        .await
        .expect("join")
        .expect("start a real node");
    let node = cluster.node(0);
    let c = SpdkClient::unix(node.rpc_socket.clone());
    for name in ["hist-full", "hist-default"] {
        c.bdev_malloc_create(&BdevMallocCreateParams {
            name: Some(name.into()),
            num_blocks: 8192,
            block_size: 4096,
            ..Default::default()
        })
        .await
        .expect("malloc");
    }

    // Never enabled: refused, as the sim refuses it.
    let never = c
        .bdev_get_histogram(&BdevGetHistogramParams {
            name: "hist-full".into(),
        })
        .await
        .expect_err("a histogram never enabled");
    let spdk_client::SpdkError::Rpc { code, message, .. } = &never else {
        panic!("not an SPDK answer: {never}");
    };
    assert_eq!(*code, -12, "{message}");

    c.bdev_enable_histogram(&BdevEnableHistogramParams::full_range("hist-full"))
        .await
        .expect("enable full range");
    c.bdev_enable_histogram(&BdevEnableHistogramParams {
        name: "hist-default".into(),
        enable: true,
        ..Default::default()
    })
    .await
    .expect("enable with SPDK's defaults");
    let empty = histogram(&c, "hist-full").await;
    assert_eq!(empty.total(), 0);
    assert_eq!(
        empty.buckets.len(),
        128 * 58,
        "granularity 7, ranges 0..=57"
    );

    // Real I/O through exports created after the enable (their channels
    // open then), kept while the histograms are read, as a published
    // volume's frontend is.
    if let Err(e) = c
        .nvmf_create_transport(&NvmfCreateTransportParams {
            trtype: "TCP".into(),
            ..Default::default()
        })
        .await
    {
        eprintln!("TCP transport: {e}");
    }
    let path = cluster.data_path();
    let mut exports = Vec::new();
    for name in ["hist-full", "hist-default"] {
        let (e, port) = export(&c, node, name).await;
        for i in 0..WRITES {
            path.write_export(node, &e, i * IO as u64, &pattern(IO, i as u8 + 3))
                .await
                .expect("write through the export");
        }
        exports.push((e, port));
    }
    let (ops, min, max) = write_ops(&c, "hist-full").await;
    assert_eq!(ops, WRITES, "iostat counted every write");
    let h = histogram(&c, "hist-full").await;
    assert!(
        h.total() >= WRITES,
        "the full-range histogram counted {} of {WRITES} writes",
        h.total()
    );
    // Every counted latency lies within what iostat saw for writes (plus
    // whatever else the initiator sent, e.g. flushes, which are quicker).
    let filled: Vec<_> = h.buckets.iter().filter(|b| b.count > 0).collect();
    assert!(
        filled.iter().all(|b| b.start_ticks <= max),
        "{filled:?} vs max {max}"
    );
    assert!(
        filled.iter().any(|b| b.end_ticks.is_none_or(|e| e > min)),
        "{filled:?} vs min {min}"
    );
    let seconds = h.estimated_sum_seconds();
    assert!(seconds > 0.0 && seconds < 10.0, "sum {seconds} s");
    eprintln!(
        "real histogram: {} I/Os, tsc_rate {}, buckets {:?}",
        h.total(),
        h.tsc_rate,
        filled
    );

    // SPDK's default layout (1 µs to 120 s) differs from the default one new
    // channels get, and bdev_get_histogram leaves those channels out.
    let (default_ops, ..) = write_ops(&c, "hist-default").await;
    assert_eq!(default_ops, WRITES);
    let lost = histogram(&c, "hist-default").await;
    eprintln!(
        "default-layout histogram after {WRITES} writes: {} I/Os",
        lost.total()
    );
    assert_eq!(
        lost.total(),
        0,
        "SPDK now merges channels of another layout: full_range is no longer needed"
    );

    // The counts live in the channels: once the export is gone they are too
    // (iostat keeps its totals).
    for (e, _port) in &exports {
        c.nvmf_delete_subsystem(&NvmfDeleteSubsystemParams {
            nqn: e.nqn.clone(),
            tgt_name: None,
        })
        .await
        .expect("delete export");
    }
    let after = histogram(&c, "hist-full").await;
    eprintln!("after the export is gone: {} I/Os", after.total());
    assert_eq!(after.total(), 0, "the closed channels' counts are dropped");
    assert_eq!(write_ops(&c, "hist-full").await.0, WRITES);

    // Disabled again: what a read answers.
    c.bdev_enable_histogram(&BdevEnableHistogramParams {
        name: "hist-full".into(),
        enable: false,
        ..Default::default()
    })
    .await
    .expect("disable");
    let gone = c
        .bdev_get_histogram(&BdevGetHistogramParams {
            name: "hist-full".into(),
        })
        .await
        .map(|r| LatencyHistogram::decode(&r).map(|h| h.total()));
    eprintln!("after disabling, with no channel open: {gone:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_sees_real_io_replicas_nodes_and_csi_errors_in_metrics_on_real_spdk() {
    if skip("the controller's /metrics") {
        return;
    }
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
