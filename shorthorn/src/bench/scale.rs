//! Section 4: many small 3-replica volumes. Creates them (and a snapshot of
//! every tenth when snapshots are offered), walks ListVolumes and
//! ListSnapshots page by page, times the controller's `/metrics` scrape
//! (its collection and encoding), reads the process's peak RSS and the store
//! size, deletes everything and checks that no storage node keeps any of
//! their lvols. The controller's health monitor runs throughout, as it does
//! in `local up` and in a cluster (ListVolumes answers from its records).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use shorthorn_controller::{health, metrics, naming};
use spdk_client::{BdevLvolGetLvolsParams, SpdkClient};

use super::rpc::CallSnapshot;
use super::stack::Stack;
use super::stats::Samples;
use crate::csi_steps::{Csi, Offers, Page};

/// Size of each scale volume (thin).
pub const VOLUME_BYTES: u64 = 16 << 20;
/// Entries per list page.
const PAGE: i32 = 100;
/// One volume in this many gets a snapshot.
const SNAPSHOT_EVERY: usize = 10;
/// Most full walks of each list (each walk costs O(volumes) controller work).
const MAX_WALKS: usize = 3;
/// The health monitor's interval here, as `health_interval_ms` defaults.
const HEALTH_INTERVAL: Duration = Duration::from_secs(1);

/// Figures of one paginated list.
#[derive(Debug, Clone, Default)]
pub struct ListFigures {
    /// Latency of each page, ms.
    pub page: Samples,
    /// Latency of each full walk, ms.
    pub walk: Samples,
    /// Entries found by the last walk.
    pub entries: usize,
    /// Pages in the last walk.
    pub pages: usize,
    /// SPDK JSON-RPC calls the controller made per walk.
    pub calls: Samples,
}

/// Figures of the controller's `/metrics` scrape over every volume.
#[derive(Debug, Clone, Default)]
pub struct ScrapeFigures {
    /// The first scrape (nothing cached), ms.
    pub cold: Samples,
    /// The scrapes after it, within the node statistics' cache age, ms.
    pub warm: Samples,
    /// SPDK JSON-RPC calls of the first scrape.
    pub calls_cold: Samples,
    /// SPDK JSON-RPC calls of each scrape after it.
    pub calls_warm: Samples,
    /// Size of the text of the last scrape, bytes.
    pub bytes: usize,
}

/// Everything section 4 measured.
#[derive(Debug, Clone, Default)]
pub struct ScaleFigures {
    /// Volumes created.
    pub volumes: usize,
    /// Snapshots created.
    pub snapshots: usize,
    /// CreateVolume latency, ms.
    pub create: Samples,
    /// CreateVolume latency of the first tenth of the volumes (an almost
    /// empty cluster), ms.
    pub create_first: Samples,
    /// CreateVolume latency of the last tenth (a full store), ms.
    pub create_last: Samples,
    /// Wall time to create them all.
    pub create_total: Duration,
    /// ListVolumes.
    pub list_volumes: ListFigures,
    /// The `/metrics` scrape.
    pub scrape: ScrapeFigures,
    /// ListSnapshots (`None` when not offered).
    pub list_snapshots: Option<ListFigures>,
    /// Peak RSS of this process (controller, node service and bench), KiB.
    pub peak_rss_kib: Option<u64>,
    /// Store file size with everything created, bytes.
    pub store_bytes: Option<u64>,
    /// DeleteVolume latency, ms.
    pub delete: Samples,
    /// Wall time to delete everything.
    pub delete_total: Duration,
    /// Lvols of these volumes or snapshots still on a storage node afterwards.
    pub leftover_lvols: usize,
}

/// Runs the section with `volumes` volumes and `walks` list walks (at most
/// [`MAX_WALKS`]).
pub async fn run(
    stack: &Stack,
    csi: &mut Csi,
    offers: Offers,
    volumes: usize,
    walks: usize,
) -> anyhow::Result<ScaleFigures> {
    let walks = walks.clamp(1, MAX_WALKS);
    let (stop_monitor, stopped) = tokio::sync::oneshot::channel::<()>();
    let monitor = tokio::spawn(health::monitor::run(
        stack.ctx.clone(),
        HEALTH_INTERVAL,
        async move {
            let _ = stopped.await;
        },
    ));
    let figures = measure(stack, csi, offers, volumes, walks).await;
    let _ = stop_monitor.send(());
    let _ = monitor.await;
    figures
}

async fn measure(
    stack: &Stack,
    csi: &mut Csi,
    offers: Offers,
    volumes: usize,
    walks: usize,
) -> anyhow::Result<ScaleFigures> {
    let mut f = ScaleFigures::default();
    let mut ids = Vec::with_capacity(volumes);
    let started = Instant::now();
    let tenth = (volumes / 10).max(1);
    for i in 0..volumes {
        let t = Instant::now();
        ids.push(
            csi.create_volume(&format!("bench-scale-{i}"), VOLUME_BYTES, 3, None)
                .await?,
        );
        let took = t.elapsed();
        f.create.push_ms(took);
        if i < tenth {
            f.create_first.push_ms(took);
        }
        if i >= volumes.saturating_sub(tenth) {
            f.create_last.push_ms(took);
        }
    }
    f.create_total = started.elapsed();
    f.volumes = ids.len();
    let mut snapshots = Vec::new();
    if offers.snapshots {
        for (i, id) in ids.iter().enumerate().step_by(SNAPSHOT_EVERY) {
            let (snap, _) = csi
                .create_snapshot(id, &format!("bench-scale-snap-{i}"))
                .await?;
            snapshots.push(snap);
        }
    }
    f.snapshots = snapshots.len();

    // Walk as a cluster would: with the monitor's records current.
    let deadline = Instant::now() + HEALTH_INTERVAL * 10;
    while !stack.ctx.health.is_current() && Instant::now() < deadline {
        tokio::time::sleep(HEALTH_INTERVAL / 10).await;
    }
    for _ in 0..walks {
        walk(stack, &mut f.list_volumes, |token| {
            let mut c = csi.clone();
            async move { c.list_volumes(PAGE, &token).await }
        })
        .await?;
    }
    if offers.list_snapshots {
        let mut figures = ListFigures::default();
        for _ in 0..walks {
            walk(stack, &mut figures, |token| {
                let mut c = csi.clone();
                async move { c.list_snapshots(PAGE, &token).await }
            })
            .await?;
        }
        f.list_snapshots = Some(figures);
    }
    for i in 0..walks + 1 {
        let before = CallSnapshot::take(&stack.ctx);
        let t = Instant::now();
        let text = metrics::render(&stack.ctx).await?;
        let took = t.elapsed();
        let calls = CallSnapshot::take(&stack.ctx)
            .since(&before)
            .values()
            .sum::<u64>() as f64;
        if i == 0 {
            f.scrape.cold.push_ms(took);
            f.scrape.calls_cold.push(calls);
        } else {
            f.scrape.warm.push_ms(took);
            f.scrape.calls_warm.push(calls);
        }
        f.scrape.bytes = text.len();
    }
    f.peak_rss_kib = peak_rss_kib();
    f.store_bytes = std::fs::metadata(stack.layout.store_file())
        .ok()
        .map(|m| m.len());

    let started = Instant::now();
    for snap in &snapshots {
        csi.delete_snapshot(snap).await?;
    }
    for id in &ids {
        let t = Instant::now();
        csi.delete_volume(id).await?;
        f.delete.push_ms(t.elapsed());
    }
    f.delete_total = started.elapsed();
    f.leftover_lvols = leftovers(stack, &ids, &snapshots).await?;
    Ok(f)
}

/// Walks a paginated list once, timing each page and the whole walk.
async fn walk<F, Fut>(stack: &Stack, figures: &mut ListFigures, mut page: F) -> anyhow::Result<()>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Page>>,
{
    let before = CallSnapshot::take(&stack.ctx);
    let started = Instant::now();
    let (mut token, mut entries, mut pages) = (String::new(), 0, 0);
    loop {
        let t = Instant::now();
        let p = page(token).await?;
        figures.page.push_ms(t.elapsed());
        entries += p.entries;
        pages += 1;
        if p.next_token.is_empty() {
            break;
        }
        token = p.next_token;
    }
    figures.walk.push_ms(started.elapsed());
    let calls: u64 = CallSnapshot::take(&stack.ctx).since(&before).values().sum();
    figures.calls.push(calls as f64);
    figures.entries = entries;
    figures.pages = pages;
    Ok(())
}

/// VmHWM of this process, in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Counts the lvols of `volumes` and `snapshots` still on any storage node,
/// asking each node directly (not through the controller's clients).
async fn leftovers(
    stack: &Stack,
    volumes: &[String],
    snapshots: &[String],
) -> anyhow::Result<usize> {
    let volumes: BTreeSet<&str> = volumes.iter().map(String::as_str).collect();
    let snapshot_lvols: BTreeSet<String> =
        snapshots.iter().map(|s| naming::snapshot_lvol(s)).collect();
    let mut left = 0;
    for (name, socket) in stack.node_sockets() {
        let client = SpdkClient::unix(&socket);
        let lvols = client
            .bdev_lvol_get_lvols(&BdevLvolGetLvolsParams::default())
            .await
            .map_err(|e| anyhow::anyhow!("bdev_lvol_get_lvols on {name}: {e}"))?;
        left += lvols
            .iter()
            .filter(|l| {
                naming::volume_of_lvol(&l.name).is_some_and(|v| volumes.contains(v))
                    || snapshot_lvols.contains(&l.name)
            })
            .count();
    }
    Ok(left)
}
