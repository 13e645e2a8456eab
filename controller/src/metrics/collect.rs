//! What a scrape reads from the nodes, batched per node and cached.
//!
//! Per node and scrape at most one `bdev_get_iostat` (no name: every bdev)
//! and one `bdev_get_bdevs` (no name), reused for `cache_ms`; nodes the
//! registry knows to be unreachable are not asked. Latency histograms need
//! one `bdev_get_histogram` per volume, so at most `histograms_per_scrape`
//! of them (the oldest first) are re-read per scrape, each at most every
//! `histogram_max_age_ms`; the rest are served from their last reading.
//! A raid whose histogram was never enabled (a new or re-created raid) is
//! enabled on its first reading ([`BdevEnableHistogramParams::full_range`]),
//! by the leader only.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt;
use spdk_client::histogram::LatencyHistogram;
use spdk_client::{
    BdevEnableHistogramParams, BdevGetBdevsParams, BdevGetHistogramParams, BdevGetIostatParams,
    IoStats,
};

use crate::admin::RebuildView;
use crate::context::Context;
use crate::naming;
use crate::nodes::NodeHandle;

/// Longest a scrape waits for one node's readings.
const NODE_TIMEOUT: Duration = Duration::from_secs(5);
/// Histogram readings in flight at once.
const HISTOGRAM_CONCURRENCY: usize = 8;
/// Upper bounds (seconds) of the volume latency histogram's buckets.
pub const LATENCY_BUCKETS: [f64; 19] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// One node's statistics at one moment.
#[derive(Debug, Clone, Default)]
pub struct NodeReading {
    /// Ticks per second of the latency counters.
    pub tick_rate: u64,
    /// I/O statistics by bdev name (an lvol's name is its UUID).
    pub iostat: HashMap<String, IoStats>,
    /// Allocated bytes of every lvol, by its UUID.
    pub allocated: HashMap<String, u64>,
}

/// A volume latency histogram, already in Prometheus buckets.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSample {
    /// Estimated sum of the latencies in seconds (bucket midpoints).
    pub sum: f64,
    /// I/Os counted.
    pub count: u64,
    /// `(upper bound, I/Os in this bucket only)`, ending with `+Inf`.
    pub buckets: Vec<(f64, u64)>,
}

impl HistogramSample {
    /// Folds SPDK's fine buckets into [`LATENCY_BUCKETS`].
    pub fn from_spdk(h: &LatencyHistogram) -> Self {
        let mut buckets = Vec::with_capacity(LATENCY_BUCKETS.len() + 1);
        let mut below = 0;
        for bound in LATENCY_BUCKETS {
            let at = h.cumulative_at(bound);
            buckets.push((bound, at.saturating_sub(below)));
            below = at;
        }
        let count = h.total();
        buckets.push((f64::INFINITY, count.saturating_sub(below)));
        Self {
            sum: h.estimated_sum_seconds(),
            count,
            buckets,
        }
    }
}

/// A publication: `(volume id, node)`.
type Publication = (String, String);

#[derive(Debug)]
struct Timed<T> {
    at: Instant,
    value: T,
}

/// What scrapes keep between them.
#[derive(Debug, Default)]
pub struct Cache {
    nodes: Mutex<HashMap<String, Timed<NodeReading>>>,
    histograms: Mutex<HashMap<Publication, Timed<Option<HistogramSample>>>>,
    rebuilds: Mutex<Option<Timed<Vec<RebuildView>>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Cache {
    /// Each reachable node's reading, re-read when older than `max_age`.
    pub async fn nodes(&self, ctx: &Context, max_age: Duration) -> BTreeMap<String, NodeReading> {
        let now = Instant::now();
        let due: Vec<_> = {
            let cached = lock(&self.nodes);
            ctx.nodes
                .all()
                .into_iter()
                .filter(|n| n.status().online)
                .filter(|n| {
                    cached
                        .get(n.name())
                        .is_none_or(|r| now.saturating_duration_since(r.at) >= max_age)
                })
                .collect()
        };
        let read = futures::future::join_all(due.iter().map(|n| async move {
            let reading = tokio::time::timeout(NODE_TIMEOUT, read_node(n)).await;
            (n.name().to_string(), reading)
        }))
        .await;
        let mut cached = lock(&self.nodes);
        for (name, reading) in read {
            match reading {
                Ok(Ok(value)) => {
                    cached.insert(name, Timed { at: now, value });
                }
                Ok(Err(e)) => {
                    tracing::debug!(node = %name, error = %e, "metrics: node statistics unreadable");
                    cached.remove(&name);
                }
                Err(_) => {
                    tracing::debug!(node = %name, "metrics: node statistics timed out");
                    cached.remove(&name);
                }
            }
        }
        let online: Vec<String> = ctx
            .nodes
            .all()
            .iter()
            .filter(|n| n.status().online)
            .map(|n| n.name().to_string())
            .collect();
        cached.retain(|name, _| online.contains(name));
        cached
            .iter()
            .map(|(name, r)| (name.clone(), r.value.clone()))
            .collect()
    }

    /// The latency histogram of every `(volume, node)` publication that has one.
    pub async fn histograms(
        &self,
        ctx: &Context,
        publications: &[(String, String)],
        per_scrape: usize,
        max_age: Duration,
    ) -> Vec<((String, String), HistogramSample)> {
        let now = Instant::now();
        let due: Vec<(String, String)> = {
            let mut cached = lock(&self.histograms);
            cached.retain(|key, _| publications.contains(key));
            let mut due: Vec<(Option<Instant>, &(String, String))> = publications
                .iter()
                .map(|key| (cached.get(key).map(|r| r.at), key))
                .filter(|(at, _)| at.is_none_or(|at| now.saturating_duration_since(at) >= max_age))
                .collect();
            due.sort();
            due.into_iter()
                .take(per_scrape)
                .map(|(_, key)| key.clone())
                .collect()
        };
        let leading = ctx.leader.is_acting();
        let read: Vec<_> = futures::stream::iter(due)
            .map(|(volume, node)| async move {
                let sample = match ctx.nodes.get(&node) {
                    Ok(handle) if handle.status().online => {
                        read_histogram(&handle, &volume, leading).await
                    }
                    _ => None,
                };
                ((volume, node), sample)
            })
            .buffer_unordered(HISTOGRAM_CONCURRENCY)
            .collect()
            .await;
        let mut cached = lock(&self.histograms);
        for (key, value) in read {
            cached.insert(key, Timed { at: now, value });
        }
        let mut out: Vec<_> = cached
            .iter()
            .filter_map(|(key, r)| r.value.clone().map(|v| (key.clone(), v)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The rebuild view (`GET /v1/rebuilds`), re-read when older than `max_age`.
    pub async fn rebuilds(&self, ctx: &Context, max_age: Duration) -> Vec<RebuildView> {
        if let Some(r) = lock(&self.rebuilds).as_ref() {
            if r.at.elapsed() < max_age {
                return r.value.clone();
            }
        }
        match crate::admin::rebuilds(ctx).await {
            Ok(value) => {
                *lock(&self.rebuilds) = Some(Timed {
                    at: Instant::now(),
                    value: value.clone(),
                });
                value
            }
            Err(e) => {
                tracing::debug!(error = %e, "metrics: rebuild view unreadable");
                Vec::new()
            }
        }
    }
}

/// One node's I/O statistics and lvol allocations: two calls, at once.
async fn read_node(node: &NodeHandle) -> spdk_client::Result<NodeReading> {
    let (all_stats, all_bdevs) = (
        BdevGetIostatParams::default(),
        BdevGetBdevsParams::default(),
    );
    let (iostat, bdevs) = tokio::join!(
        node.client.bdev_get_iostat(&all_stats),
        node.client.bdev_get_bdevs(&all_bdevs),
    );
    let (iostat, bdevs) = (iostat?, bdevs?);
    let cluster_size = node.status().space.cluster_size;
    Ok(NodeReading {
        tick_rate: iostat.tick_rate,
        iostat: iostat
            .bdevs
            .into_iter()
            .filter_map(|s| s.name.clone().map(|n| (n, s)))
            .collect(),
        allocated: bdevs
            .into_iter()
            .filter_map(|b| {
                let lvol = b.driver_specific.lvol?;
                Some((b.name, lvol.num_allocated_clusters * cluster_size))
            })
            .collect(),
    })
}

/// The histogram of volume `volume_id`'s raid on `node`; enables it first
/// when it never was (and `may_enable`). `None` when there is no raid or
/// the node cannot say.
async fn read_histogram(
    node: &NodeHandle,
    volume_id: &str,
    may_enable: bool,
) -> Option<HistogramSample> {
    let raid = naming::raid_bdev(volume_id);
    let get = BdevGetHistogramParams { name: raid.clone() };
    let raw = match node.client.bdev_get_histogram(&get).await {
        Ok(raw) => raw,
        Err(e) if e.is_not_found() || !matches!(e, spdk_client::SpdkError::Rpc { .. }) => {
            tracing::debug!(volume = volume_id, node = node.name(), error = %e, "metrics: no histogram");
            return None;
        }
        // Never enabled (a new or re-created raid): enable it, read again.
        Err(e) if may_enable => {
            tracing::debug!(volume = volume_id, node = node.name(), error = %e, "metrics: enabling the raid's latency histogram");
            let enable = BdevEnableHistogramParams::full_range(raid);
            if let Err(e) = node.client.bdev_enable_histogram(&enable).await {
                tracing::warn!(volume = volume_id, node = node.name(), error = %e, "metrics: cannot enable the raid's latency histogram");
                return None;
            }
            node.client.bdev_get_histogram(&get).await.ok()?
        }
        Err(_) => return None,
    };
    match LatencyHistogram::decode(&raw) {
        Ok(h) => Some(HistogramSample::from_spdk(&h)),
        Err(e) => {
            tracing::warn!(volume = volume_id, node = node.name(), error = %e, "metrics: undecodable histogram");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use spdk_client::BdevHistogram;

    #[test]
    fn spdk_buckets_fold_into_prometheus_buckets_without_losing_ios() {
        let g = 7;
        let mut counts = vec![0u64; 128 * 58];
        // 1 GHz ticks: 3 I/Os of 20 µs, 2 of 700 µs, 1 of 30 s.
        for ticks in [20_000u64, 20_000, 20_000, 700_000, 700_000, 30_000_000_000] {
            spdk_client::histogram::tally(&mut counts, g, 0, 57, ticks);
        }
        let bytes: Vec<u8> = counts.iter().flat_map(|c| c.to_le_bytes()).collect();
        let raw = BdevHistogram {
            histogram: base64::engine::general_purpose::STANDARD.encode(bytes),
            granularity: g,
            min_range: 0,
            max_range: 57,
            tsc_rate: 1_000_000_000,
        };
        let h = LatencyHistogram::decode(&raw).expect("decode");
        let s = HistogramSample::from_spdk(&h);
        assert_eq!(s.count, 6);
        assert_eq!(s.buckets.iter().map(|b| b.1).sum::<u64>(), 6);
        let at = |bound: f64| s.buckets.iter().find(|b| b.0 == bound).map(|b| b.1);
        assert_eq!(at(0.000025), Some(3));
        assert_eq!(at(0.001), Some(2));
        assert_eq!(at(f64::INFINITY), Some(1), "30 s is above the last bound");
    }
}
