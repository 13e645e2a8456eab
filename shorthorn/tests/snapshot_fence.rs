//! Snapshots of volumes under a concurrent writer: every replica's snapshot
//! holds the same bytes, with the ANA fence (NVMe/TCP frontend, written
//! through another sim's NVMe-oF initiator playing the kernel) and with the
//! node-quiesce fence (ublk frontend). The node side of the quiesce is a
//! test double of the agent's fsfreeze (a gate every write passes through,
//! closed by suspend once in-flight writes are done, reopened by resume or
//! by its lease): the controller side is the real `Fence` path.
//!
//! The ANA fence runs twice: held by the publishing node's agent as a lease
//! (nodes with an agent), and by the controller's guard task (nodes reached
//! through their SPDK socket).
//!
//! Prints fence hold times (p50/p99 over 50 snapshots of a 3-replica
//! volume) and SPDK calls per CreateSnapshot; asserts only data.

// The controller's test harness; these tests also run a real node agent,
// so they live in the crate that links both.
mod node_agent;
#[path = "../../controller/tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_api::FrontendKind as Frontend;
use async_trait::async_trait;
use node_agent::NodeAgent;
use shorthorn_controller::context::Context;
use shorthorn_controller::error::Result as CResult;
use shorthorn_controller::fence::node_quiesce::NodeQuiesce;
use shorthorn_controller::fence::{ana::AnaFence, Fence, FenceKind, Fencing, Resumed};
use shorthorn_controller::ops;
use spdk_client::{BdevNvmeAttachControllerParams, SpdkClient};
use support::*;
use tokio::sync::{OwnedRwLockWriteGuard, RwLock};

/// Bytes the writer touches (64 blocks of 4 KiB).
const SPAN: u64 = 256 * 1024;
const SNAPSHOTS: usize = 50;

fn total_calls(ctx: &Context) -> (u64, BTreeMap<String, u64>) {
    let mut by = BTreeMap::new();
    let mut total = 0;
    for n in ctx.nodes.all() {
        total += n.client.call_count();
        for (m, c) in n.client.calls_by_method() {
            *by.entry(m).or_insert(0) += c;
        }
    }
    (total, by)
}

/// Writes block after block with ever-changing content until stopped.
struct Writer {
    stop: Arc<AtomicBool>,
    writes: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    fn start(client: SpdkClient, bdev: String, gate: Option<Arc<RwLock<()>>>) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let writes = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn({
            let (stop, writes) = (stop.clone(), writes.clone());
            async move {
                let mut i: u64 = 0;
                while !stop.load(Ordering::Relaxed) {
                    let block = vec![(i % 251) as u8; 4096];
                    let offset = (i % (SPAN / 4096)) * 4096;
                    let _open = match &gate {
                        Some(g) => Some(g.clone().read_owned().await),
                        None => None,
                    };
                    sim_write(&client, &bdev, offset, &block).await;
                    writes.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            }
        });
        Writer { stop, writes, task }
    }

    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("writer");
        self.writes.load(Ordering::Relaxed)
    }
}

/// Takes 50 snapshots under the writer; checks replicas; prints figures.
async fn snapshot_under_writer(
    ctx: &Context,
    h: &Harness,
    vol: &str,
    kind: FenceKind,
    writer: &Writer,
) -> Vec<String> {
    let clients: Vec<_> = (0..3).map(|i| h.spdk(i)).collect();
    let (calls_before, by_before) = total_calls(ctx);
    let mut ids = Vec::new();
    for k in 0..SNAPSHOTS {
        let before = writer.writes.load(Ordering::Relaxed);
        let s = ops::snapshot_create::create_snapshot(ctx, &format!("{}-{k}", kind.as_str()), vol)
            .await
            .expect("snapshot");
        ids.push(s.id.clone());
        assert_all_replicas_current(ctx, vol, k).await;
        let sums = checksums(&clients, &snapshot_alias(&s.id), SPAN).await;
        assert!(
            sums.iter().all(|x| *x == sums[0]),
            "snapshot {k} replicas differ: {sums:x?} (writer at {before} writes)"
        );
    }
    let (calls_after, by_after) = total_calls(ctx);
    let stats = &ctx.fencing.stats;
    let p = |q| {
        stats
            .percentile(kind, q)
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(f64::NAN)
    };
    println!(
        "MEASURE fence={} holds={} p50={:.2}ms p99={:.2}ms spdk_calls_per_create_snapshot={:.1}",
        kind.as_str(),
        stats.recent(kind).len(),
        p(50),
        p(99),
        (calls_after - calls_before) as f64 / SNAPSHOTS as f64
    );
    let per_method: BTreeMap<_, _> = by_after
        .iter()
        .map(|(m, c)| (m.clone(), c - by_before.get(m).copied().unwrap_or(0)))
        .filter(|(_, c)| *c > 0)
        .collect();
    println!("MEASURE calls by method over {SNAPSHOTS} snapshots: {per_method:?}");
    ids
}

/// Fails with the recorded reason when a replica left the volume (so its
/// snapshot was dropped): nothing in these tests should make a leg leave.
async fn assert_all_replicas_current(ctx: &Context, vol: &str, k: usize) {
    let (_, replicas) = ctx.existing_volume(vol).await.expect("volume");
    let left: Vec<String> = replicas
        .iter()
        .filter(|r| !r.health.is_current())
        .map(|r| format!("{} {} ({:?})", r.node, r.health.as_str(), r.reason))
        .collect();
    assert!(
        left.is_empty(),
        "after snapshot {k}, replicas left the volume: {}",
        left.join("; ")
    );
}

async fn cleanup(ctx: &Context, h: &Harness, vol: &str, snapshots: &[String]) {
    for id in snapshots {
        ops::snapshot_delete::delete_snapshot(ctx, id)
            .await
            .expect("delete snapshot");
    }
    ops::unpublish::unpublish(ctx, vol, None)
        .await
        .expect("unpublish");
    ops::delete_volume::delete_volume(ctx, vol)
        .await
        .expect("delete volume");
    h.assert_clean().await;
}

/// 50 ANA-fenced snapshots of a volume published on node-0 under a writer;
/// node-0's fence is held by its node agent (a lease) when `agent`, by the
/// controller's guard task otherwise.
async fn ana_fenced_snapshots(agent: bool) {
    let mut h = Harness::start(3, StoreKind::Etcd).await;
    let node_agent = if agent {
        let node = h.cluster.node(0);
        let (port, disk, socket) = (
            node.nvmf_port,
            node.aio_file.clone(),
            node.rpc_socket.clone(),
        );
        let a = NodeAgent::start(h.dir.path(), "node-0", port, &disk, &socket).await;
        h.reroute_node(0, &a.endpoint_toml(&a.url()));
        Some(a)
    } else {
        None
    };
    let ctx = own_context(h.config(), Frontend::NvmeTcp, Fencing::default()).await;
    let vol = own_volume(&ctx, "pvc-ana", 16, 3).await;
    ops::publish::publish(&ctx, &vol, "node-0", false)
        .await
        .expect("publish");
    let fence = AnaFence::new(ctx.nodes.get("node-0").expect("node"), &vol);
    assert_eq!(fence.is_agent_lease(), agent);
    let holder = if agent {
        "agent lease"
    } else {
        "controller guard"
    };

    // node-1's initiator plays node-0's kernel.
    let kernel = h.spdk(1);
    let bdevs = kernel
        .bdev_nvme_attach_controller(&BdevNvmeAttachControllerParams {
            ctrlr_loss_timeout_sec: Some(60),
            reconnect_delay_sec: Some(1),
            ..kernel_attach_params(&h, &vol)
        })
        .await
        .expect("attach the frontend as the kernel would");
    let ns = bdevs.first().cloned().expect("namespace bdev");

    let writer = Writer::start(kernel.clone(), ns.clone(), None);
    println!("MEASURE ana fence held by the {holder}:");
    let ids = snapshot_under_writer(&ctx, &h, &vol, FenceKind::Ana, &writer).await;
    let writes = writer.stop().await;
    println!(
        "MEASURE ana ({holder}): writer completed {writes} writes during {SNAPSHOTS} snapshots"
    );

    // The deadline (lease or guard) restores the path even if nobody resumes.
    fence
        .suspend(Duration::from_millis(300))
        .await
        .expect("suspend");
    sim_write(&kernel, &ns, 0, &[7u8; 4096]).await; // waits for the deadline, then succeeds
    assert_ana_optimized(&h, &vol, "after the deadline").await;

    detach_kernel(&kernel).await;
    cleanup(&ctx, &h, &vol, &ids).await;
    drop(node_agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ana_fenced_snapshots_under_a_writer_are_identical_on_every_replica() {
    ana_fenced_snapshots(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_ana_fenced_snapshots_under_a_writer_are_identical_on_every_replica() {
    ana_fenced_snapshots(true).await;
}

/// The node side of a quiesce: a gate writes pass through, like FIFREEZE.
#[derive(Debug, Default)]
struct FreezeDouble {
    gate: Arc<RwLock<()>>,
    held: Arc<Mutex<Option<OwnedRwLockWriteGuard<()>>>>,
    suspends: Arc<AtomicU64>,
}

#[async_trait]
impl NodeQuiesce for FreezeDouble {
    async fn suspend(&self, _volume_id: &str, deadline: Duration) -> CResult<()> {
        let guard = self.gate.clone().write_owned().await; // in-flight writes done
        *self.held.lock().expect("lock") = Some(guard);
        let this_hold = self.suspends.fetch_add(1, Ordering::Relaxed) + 1;
        let (held, suspends) = (self.held.clone(), self.suspends.clone());
        tokio::spawn(async move {
            tokio::time::sleep(deadline).await;
            // The lease of this hold only: a later suspend has its own.
            if suspends.load(Ordering::Relaxed) == this_hold {
                held.lock().expect("lock").take();
            }
        });
        Ok(())
    }

    async fn resume(&self, _volume_id: &str) -> CResult<Resumed> {
        let was_held = self.held.lock().expect("lock").take().is_some();
        Ok(Resumed {
            lease_expired: !was_held,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_quiesced_snapshots_under_a_writer_are_identical_on_every_replica() {
    let h = Harness::start(3, StoreKind::Etcd).await;
    let double = Arc::new(FreezeDouble::default());
    let ctx = own_context(
        h.config(),
        Frontend::Ublk,
        Fencing::default().with_node_quiesce(double.clone()),
    )
    .await;
    let vol = own_volume(&ctx, "pvc-quiesce", 16, 3).await;
    ops::publish::publish(&ctx, &vol, "node-0", false)
        .await
        .expect("publish");

    let writer = Writer::start(h.spdk(0), raid(&vol), Some(double.gate.clone()));
    let ids = snapshot_under_writer(&ctx, &h, &vol, FenceKind::NodeQuiesce, &writer).await;
    let writes = writer.stop().await;
    println!("MEASURE node-quiesce: writer completed {writes} writes during {SNAPSHOTS} snapshots");
    assert_eq!(double.suspends.load(Ordering::Relaxed), SNAPSHOTS as u64);
    cleanup(&ctx, &h, &vol, &ids).await;
}
