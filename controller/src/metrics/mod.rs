//! Prometheus metrics of the controller, encoded with `prometheus-client`
//! in the Prometheus text format (0.0.4). See docs/metrics.md for every
//! family, its labels and how to scrape it.
//!
//! - [`csi`]: CSI call latency and errors by method.
//! - [`rpc`]: SPDK JSON-RPC latency and errors by node and method.
//! - [`collect`]: what a scrape reads from the nodes, batched and cached.
//! - [`serve`]: the plain-HTTP metrics listener (`[metrics] address`);
//!   the admin API serves `GET /metrics` too.
//!
//! Labels are only volume ids, node names, methods and small fixed sets
//! (`op`, `state`, `kind`, `code`), never free-form text.

pub mod collect;
pub mod csi;
pub mod rpc;
pub mod serve;

use std::collections::BTreeSet;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::config::MetricsConfig;
use crate::context::Context;
use crate::error::{ControllerError, Result};
use crate::naming;
use crate::store::ReplicaHealth;
use collect::{Cache, HistogramSample};

/// The `Content-Type` of [`render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every replica state, so each replica shows all of them (one at 1).
const STATES: [ReplicaHealth; 5] = [
    ReplicaHealth::Healthy,
    ReplicaHealth::Degraded,
    ReplicaHealth::Rebuilding,
    ReplicaHealth::Failed,
    ReplicaHealth::Stale,
];

/// The controller's metrics: the families recorded as things happen, the
/// scrape cache and its policy. One per [`Context`].
#[derive(Debug, Default)]
pub struct Metrics {
    /// `[metrics]` of the configuration.
    pub config: MetricsConfig,
    /// CSI calls.
    pub csi: csi::CsiMetrics,
    cache: Cache,
    last_collect: Mutex<Option<Duration>>,
}

impl Metrics {
    /// Metrics with the policy of `config`.
    pub fn new(config: MetricsConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }
}

/// A volume on the node it is published to.
#[derive(Debug, Clone, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct VolumeLabels {
    volume: String,
    node: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VolumeOpLabels {
    volume: String,
    node: String,
    op: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VolumeOnlyLabels {
    volume: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReplicaStateLabels {
    volume: String,
    node: String,
    state: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    node: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;
type FloatCounter = Counter<f64, AtomicU64>;

/// The volume latency histograms, encoded from SPDK's buckets as read.
#[derive(Debug)]
struct VolumeLatency(Vec<(VolumeLabels, HistogramSample)>);

impl Collector for VolumeLatency {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        if self.0.is_empty() {
            return Ok(());
        }
        let mut family = encoder.encode_descriptor(
            "shorthorn_volume_io_latency_seconds",
            "Latency of every I/O (reads, writes, unmaps, flushes) completed by the volume's raid on its publishing node, from SPDK's bdev_get_histogram (sum estimated from bucket midpoints)",
            None,
            MetricType::Histogram,
        )?;
        for (labels, h) in &self.0 {
            family
                .encode_family(labels)?
                .encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)?;
        }
        Ok(())
    }
}

fn counter_family<L>(registry: &mut Registry, name: &str, help: &str) -> Family<L, Counter>
where
    L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static,
{
    let family = Family::<L, Counter>::default();
    registry.register(name, help, family.clone());
    family
}

fn gauge_family<L>(registry: &mut Registry, name: &str, help: &str) -> Family<L, FloatGauge>
where
    L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static,
{
    let family = Family::<L, FloatGauge>::default();
    registry.register(name, help, family.clone());
    family
}

fn ticks_to_secs(ticks: u64, rate: u64) -> f64 {
    if rate == 0 {
        0.0
    } else {
        ticks as f64 / rate as f64
    }
}

/// Reads what the scrape needs (batched per node, cached per
/// [`MetricsConfig`]) and encodes every family in the Prometheus text format.
pub async fn render(ctx: &Context) -> Result<String> {
    let started = Instant::now();
    let metrics = &ctx.metrics;
    let config = &metrics.config;
    let cache_age = Duration::from_millis(config.cache_ms);

    let volumes = ctx.store.list_volumes(None, 0).await?.items;
    let replicas = ctx.store.list_all_replicas().await?;
    let publications: Vec<(String, String)> = ctx
        .store
        .list_all_publications()
        .await?
        .into_iter()
        .map(|p| (p.record.volume_id, p.record.node))
        .collect();
    let store_done = started.elapsed();
    let readings = metrics.cache.nodes(ctx, cache_age).await;
    let nodes_done = started.elapsed();
    let histograms = metrics
        .cache
        .histograms(
            ctx,
            &publications,
            config.histograms_per_scrape,
            Duration::from_millis(config.histogram_max_age_ms),
        )
        .await;
    let histograms_done = started.elapsed();
    let rebuilds = metrics.cache.rebuilds(ctx, cache_age).await;
    tracing::debug!(
        store = ?store_done,
        nodes = ?(nodes_done - store_done),
        histograms = ?(histograms_done - nodes_done),
        rebuilds = ?(started.elapsed() - histograms_done),
        "metrics: collected"
    );

    let mut registry = Registry::default();

    // Per volume, from its raid's statistics on the publishing node.
    let ops = counter_family::<VolumeOpLabels>(
        &mut registry,
        "shorthorn_volume_ops",
        "I/O operations completed by the volume's raid on its publishing node, by op (read, write, unmap)",
    );
    let bytes = counter_family::<VolumeOpLabels>(
        &mut registry,
        "shorthorn_volume_bytes",
        "Bytes moved by the volume's raid on its publishing node, by op (read, write, unmap)",
    );
    let latency = Family::<VolumeOpLabels, FloatCounter>::default();
    registry.register(
        "shorthorn_volume_latency_seconds",
        "Sum of the latencies of the volume's completed I/O by op; divide its rate by shorthorn_volume_ops_total's for the mean latency",
        latency.clone(),
    );
    let volume_errors = counter_family::<VolumeLabels>(
        &mut registry,
        "shorthorn_volume_io_errors",
        "I/O that the volume's raid completed with an error",
    );
    let size = gauge_family::<VolumeOnlyLabels>(
        &mut registry,
        "shorthorn_volume_size_bytes",
        "Provisioned size of the volume",
    );
    for v in &volumes {
        size.get_or_create(&VolumeOnlyLabels {
            volume: v.record.id.clone(),
        })
        .set(v.record.capacity_bytes as f64);
    }
    for (volume, node) in &publications {
        let Some(reading) = readings.get(node) else {
            continue;
        };
        let Some(s) = reading.iostat.get(&naming::raid_bdev(volume)) else {
            continue;
        };
        let rate = reading.tick_rate;
        for (op, n, b, lat) in [
            ("read", s.num_read_ops, s.bytes_read, s.read_latency_ticks),
            (
                "write",
                s.num_write_ops,
                s.bytes_written,
                s.write_latency_ticks,
            ),
            (
                "unmap",
                s.num_unmap_ops,
                s.bytes_unmapped,
                s.unmap_latency_ticks,
            ),
        ] {
            let labels = VolumeOpLabels {
                volume: volume.clone(),
                node: node.clone(),
                op: op.to_string(),
            };
            ops.get_or_create(&labels).inc_by(n);
            bytes.get_or_create(&labels).inc_by(b);
            latency
                .get_or_create(&labels)
                .inc_by(ticks_to_secs(lat, rate));
        }
        volume_errors
            .get_or_create(&VolumeLabels {
                volume: volume.clone(),
                node: node.clone(),
            })
            .inc_by(s.io_error.values().sum());
    }
    registry.register_collector(Box::new(VolumeLatency(
        histograms
            .into_iter()
            .map(|((volume, node), h)| (VolumeLabels { volume, node }, h))
            .collect(),
    )));

    // Per replica.
    let state = gauge_family::<ReplicaStateLabels>(
        &mut registry,
        "shorthorn_replica_state",
        "1 for the replica's recorded state (healthy, degraded, rebuilding, failed, stale), 0 for the others",
    );
    let allocated = gauge_family::<VolumeLabels>(
        &mut registry,
        "shorthorn_replica_allocated_bytes",
        "Bytes of the replica's thin lvol that hold clusters (num_allocated_clusters x cluster size)",
    );
    let replica_errors = counter_family::<VolumeLabels>(
        &mut registry,
        "shorthorn_replica_io_errors",
        "I/O that the replica's lvol completed with an error on its node",
    );
    for r in replicas.iter().map(|r| &r.record) {
        for s in STATES {
            state
                .get_or_create(&ReplicaStateLabels {
                    volume: r.volume_id.clone(),
                    node: r.node.clone(),
                    state: s.as_str().to_string(),
                })
                .set(if r.health == s { 1.0 } else { 0.0 });
        }
        let Some(reading) = readings.get(&r.node) else {
            continue;
        };
        let labels = VolumeLabels {
            volume: r.volume_id.clone(),
            node: r.node.clone(),
        };
        if let Some(a) = reading.allocated.get(&r.lvol_uuid) {
            allocated.get_or_create(&labels).set(*a as f64);
        }
        if let Some(s) = reading.iostat.get(&r.lvol_uuid) {
            replica_errors
                .get_or_create(&labels)
                .inc_by(s.io_error.values().sum());
        }
    }

    // Per node, from the registry's last refresh (the health monitor's).
    let reachable = gauge_family::<NodeLabels>(
        &mut registry,
        "shorthorn_node_reachable",
        "1 when the node's spdk_tgt answered the controller's last call",
    );
    let capacity = gauge_family::<NodeLabels>(
        &mut registry,
        "shorthorn_node_capacity_bytes",
        "Data capacity of the node's lvstore",
    );
    let free = gauge_family::<NodeLabels>(
        &mut registry,
        "shorthorn_node_free_bytes",
        "Unallocated bytes of the node's lvstore",
    );
    let committed = gauge_family::<NodeLabels>(
        &mut registry,
        "shorthorn_node_committed_bytes",
        "Sum of the provisioned sizes of the lvols on the node's lvstore",
    );
    let node_replicas = gauge_family::<NodeLabels>(
        &mut registry,
        "shorthorn_node_replicas",
        "Shorthorn replica lvols on the node's lvstore",
    );
    let restarts = counter_family::<NodeLabels>(
        &mut registry,
        "shorthorn_node_spdk_restarts",
        "Restarts of the node's spdk_tgt this controller noticed",
    );
    for n in ctx.nodes.all() {
        let s = n.status();
        let labels = NodeLabels {
            node: n.name().to_string(),
        };
        reachable
            .get_or_create(&labels)
            .set(if s.online { 1.0 } else { 0.0 });
        capacity
            .get_or_create(&labels)
            .set(s.space.total_bytes() as f64);
        free.get_or_create(&labels).set(s.space.free_bytes() as f64);
        committed
            .get_or_create(&labels)
            .set(s.space.provisioned_bytes as f64);
        node_replicas.get_or_create(&labels).set(s.replicas as f64);
        restarts
            .get_or_create(&labels)
            .inc_by(u64::from(s.restarts));
    }

    // Rebuilds, as GET /v1/rebuilds shows them.
    single(
        &mut registry,
        "shorthorn_rebuilds_running",
        "Replica rebuilds running now",
        rebuilds.len() as f64,
    );
    let progress = gauge_family::<VolumeLabels>(
        &mut registry,
        "shorthorn_rebuild_progress_ratio",
        "Progress of the volume's running rebuild, 0 to 1 (node: where it runs)",
    );
    let copied = gauge_family::<VolumeLabels>(
        &mut registry,
        "shorthorn_rebuild_copied_bytes",
        "Bytes the volume's running rebuild copied so far (thin copies; 0 for SPDK's raid rebuild, which reports only progress)",
    );
    let total = gauge_family::<VolumeLabels>(
        &mut registry,
        "shorthorn_rebuild_total_bytes",
        "Bytes the volume's running rebuild has to copy (thin copies)",
    );
    let mut seen = BTreeSet::new();
    for r in &rebuilds {
        let labels = VolumeLabels {
            volume: r.volume_id.clone(),
            node: r.node.clone(),
        };
        if !seen.insert(labels.clone()) {
            continue;
        }
        progress
            .get_or_create(&labels)
            .set((r.percent / 100.0).clamp(0.0, 1.0));
        copied.get_or_create(&labels).set(r.copied_bytes as f64);
        total.get_or_create(&labels).set(r.total_bytes as f64);
    }

    // Operations, recorded as they happen.
    registry.register(
        "shorthorn_csi_request_duration_seconds",
        "Latency of CSI Controller calls by method, failed ones included",
        metrics.csi.duration.clone(),
    );
    registry.register(
        "shorthorn_csi_errors",
        "CSI Controller calls that failed, by method and gRPC code",
        metrics.csi.errors.clone(),
    );
    registry.register(
        "shorthorn_spdk_rpc_duration_seconds",
        "Latency of the controller's SPDK JSON-RPC calls by node and method",
        ctx.nodes.rpc_metrics.duration.clone(),
    );
    registry.register(
        "shorthorn_spdk_rpc_errors",
        "The controller's SPDK JSON-RPC calls that failed, by node, method and kind (rpc: SPDK answered an error, expected ones such as \"not found\" of idempotent deletes included; timeout; transport)",
        ctx.nodes.rpc_metrics.errors.clone(),
    );
    registry.register(
        "shorthorn_fence_hold_seconds",
        "How long snapshot fences held a volume's I/O, by fence kind",
        ctx.fencing.stats.hold_seconds.clone(),
    );

    // The controller itself.
    single(
        &mut registry,
        "shorthorn_controller_leader",
        "1 while this controller leads and acts",
        if ctx.leader.is_acting() { 1.0 } else { 0.0 },
    );
    let previous = *metrics
        .last_collect
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    single(
        &mut registry,
        "shorthorn_metrics_collect_seconds",
        "How long the previous scrape took to read the store and the nodes",
        previous.map_or(0.0, |d| d.as_secs_f64()),
    );
    *metrics
        .last_collect
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = Some(started.elapsed());

    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
        .map_err(|e| ControllerError::Internal(format!("encoding the metrics: {e}")))?;
    Ok(out)
}

/// Registers a gauge of one series set to `value`.
fn single(registry: &mut Registry, name: &str, help: &str, value: f64) {
    let gauge = FloatGauge::default();
    gauge.set(value);
    registry.register(name, help, gauge);
}
