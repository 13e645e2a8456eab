//! Fences that cannot outlive their deadline (NVMe/TCP frontend): the ANA
//! fence of a published volume is held by the node agent on the publishing
//! node as a lease, so I/O resumes by the deadline even when no resume gets
//! through and even when the controller dies inside the fence; a resume
//! that fails is tried again; a snapshot not proven to have been taken
//! while I/O was held is rolled back and never recorded (ABORTED: retry).
//!
//! Sim nodes and a real etcd. node-0 publishes the volume; node-1's NVMe-oF
//! initiator plays node-0's kernel and keeps writing through the volume.
//! Faults are injected between the callers and SPDK (a JSON-RPC proxy that
//! refuses or delays chosen calls), between the controller and the agent (a
//! TCP proxy that can be cut), or by crashing the agent or the controller.
//! Each test ends by reading every replica's bytes directly.
//!
//! The ublk frontend's node-quiesce fence goes through the same release
//! path: its resume is retried, its deadline starts before the fence, and
//! a hold that lapsed voids the snapshot (a test double of the agent's
//! quiesce stands for the node's kernel side, as in `snapshot_fence`).

// The controller's test harness; these tests also run a real node agent,
// so they live in the crate that links both.
mod node_agent;
#[path = "../../controller/tests/support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_api::FrontendKind as Frontend;
use async_trait::async_trait;
use node_agent::NodeAgent;
use shorthorn_controller::context::Context;
use shorthorn_controller::error::ControllerError;
use shorthorn_controller::error::Result as CResult;
use shorthorn_controller::fence::ana::AnaFence;
use shorthorn_controller::fence::node_quiesce::NodeQuiesce;
use shorthorn_controller::fence::{Fencing, Resumed};
use shorthorn_controller::{naming, ops, reconciler};
use spdk_client::{BdevNvmeAttachControllerParams, SpdkClient};
use support::rpc_proxy::{Action, RpcProxy};
use support::tcp_cut::CutProxy;
use support::writer::{Writer, WRITER_SPAN};
use support::*;
use tonic::Code;

const SET_ANA: &str = "nvmf_subsystem_listener_set_ana_state";
const SNAPSHOT: &str = "bdev_lvol_snapshot";
/// Time the sim's initiator may take to notice the path is back.
const RESUME_SLACK: Duration = Duration::from_millis(1500);

/// How late the writer may record a write that completed before the fence.
const REPORT_LAG: Duration = Duration::from_millis(250);

/// Not a test: the body of the crashing controller, run only as a child.
#[tokio::test]
#[ignore = "runs only as the crashing child of the crash tests"]
async fn crash_child() {
    support::crash::child_main().await;
}

/// Who holds node-0's fence, and what stands in the way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holder {
    /// node-0's agent; the controller reaches it through a cuttable proxy.
    Agent,
    /// node-0 has no agent: a guard task in the controller.
    Controller,
}

/// A volume published on node-0 with a writer through it.
struct Rig {
    h: Harness,
    ctx: Context,
    vol: String,
    kernel: SpdkClient,
    writer: Option<Writer>,
    agent: Option<NodeAgent>,
    cut: Option<CutProxy>,
    /// In front of node-0's sim, behind its agent or the controller.
    node0: RpcProxy,
    /// In front of node-2's sim, for the controller.
    node2: RpcProxy,
}

async fn rig(holder: Holder, deadline: Duration) -> Rig {
    let mut h = Harness::start_opts(3, StoreKind::Etcd, "", &["nvme_tcp"]).await;
    let dir = h.dir.path().to_path_buf();
    let node0 = RpcProxy::start(
        &dir.join("node-0-proxy.sock"),
        &h.cluster.node(0).rpc_socket,
    )
    .await;
    let node2 = RpcProxy::start(
        &dir.join("node-2-proxy.sock"),
        &h.cluster.node(2).rpc_socket,
    )
    .await;
    let (agent, cut) = match holder {
        Holder::Agent => {
            let agent = NodeAgent::start(
                &dir,
                "node-0",
                h.cluster.node(0).nvmf_port,
                &h.cluster.node(0).aio_file,
                &node0.socket,
            )
            .await;
            let cut = CutProxy::start(agent.addr).await;
            h.reroute_node(0, &agent.endpoint_toml(&cut.url()));
            (Some(agent), Some(cut))
        }
        Holder::Controller => {
            h.reroute_node(0, &socket_toml(&node0));
            (None, None)
        }
    };
    h.reroute_node(2, &socket_toml(&node2));
    h.restart_controller().await;
    let ctx = own_context(
        h.config(),
        Frontend::NvmeTcp,
        Fencing::default().with_deadline(deadline),
    )
    .await;
    let vol = own_volume(&ctx, "pvc-lease", 16, 3).await;
    ops::publish::publish(&ctx, &vol, "node-0", false)
        .await
        .expect("publish");
    let fence = AnaFence::new(ctx.nodes.get("node-0").expect("node-0"), &vol);
    assert_eq!(fence.is_agent_lease(), holder == Holder::Agent);

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
    let writer = Writer::start(kernel.clone(), ns);
    writer
        .next_completion_after(Instant::now(), Duration::from_secs(10))
        .await;
    Rig {
        h,
        ctx,
        vol,
        kernel,
        writer: Some(writer),
        agent,
        cut,
        node0,
        node2,
    }
}

fn socket_toml(proxy: &RpcProxy) -> String {
    format!("spdk_socket = {:?}", proxy.socket.display().to_string())
}

impl Rig {
    fn writer(&self) -> &Writer {
        self.writer.as_ref().expect("writer running")
    }

    /// CreateSnapshot in the background.
    fn snapshot(&self, name: &str) -> tokio::task::JoinHandle<Result<String, ControllerError>> {
        let (ctx, name, vol) = (self.ctx.clone(), name.to_string(), self.vol.clone());
        tokio::spawn(async move {
            ops::snapshot_create::create_snapshot(&ctx, &name, &vol)
                .await
                .map(|s| s.id)
        })
    }

    /// The snapshot was rolled back: no record, no snapshot lvol, no
    /// journal entry left.
    async fn assert_not_recorded(&self, when: &str) {
        let recorded = self
            .ctx
            .store
            .list_snapshots_of_volume(&self.vol)
            .await
            .expect("snapshots");
        assert!(recorded.is_empty(), "{when}: recorded {recorded:?}");
        let lvols = self.h.lvols_with_prefix(naming::SNAPSHOT_PREFIX).await;
        assert!(lvols.is_empty(), "{when}: snapshot lvols left {lvols:?}");
        let pending = self
            .ctx
            .store
            .list_pending_operations()
            .await
            .expect("operations");
        assert!(pending.is_empty(), "{when}: journal left {pending:?}");
    }

    /// Stops the writer, checks every replica holds its last writes, and
    /// removes everything.
    async fn finish(mut self, snapshots: &[String]) {
        assert_ana_optimized(&self.h, &self.vol, "at the end").await;
        let expected = self.writer.take().expect("writer").stop().await;
        for i in 0..3 {
            let got = sim_read(&self.h.spdk(i), &replica_alias(&self.vol), 0, WRITER_SPAN).await;
            assert!(
                got == expected,
                "replica on node-{i} does not hold the last acknowledged writes"
            );
        }
        detach_kernel(&self.kernel).await;
        for id in snapshots {
            ops::snapshot_delete::delete_snapshot(&self.ctx, id)
                .await
                .expect("delete snapshot");
        }
        ops::unpublish::unpublish(&self.ctx, &self.vol, None)
            .await
            .expect("unpublish");
        ops::delete_volume::delete_volume(&self.ctx, &self.vol)
            .await
            .expect("delete volume");
        self.h.assert_clean().await;
        drop(self.agent);
    }
}

/// The ABORTED error of a rolled-back snapshot, which tells to retry.
fn assert_aborted_retry(outcome: Result<String, ControllerError>, says: &str) {
    let err = outcome.expect_err("the snapshot must not stand");
    assert_eq!(err.code(), Code::Aborted, "{err}");
    let text = err.to_string();
    assert!(text.contains("retry") && text.contains(says), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_resume_getting_through_the_agent_lifts_the_fence_by_its_deadline() {
    let deadline = Duration::from_secs(3);
    let r = rig(Holder::Agent, deadline).await;
    r.node2
        .set_rule(|m, _| (m == SNAPSHOT).then_some(Action::Delay(Duration::from_millis(300))));
    let snap = r.snapshot("cut-off");
    // The fence holds once the replica snapshots start; then the controller
    // loses the agent.
    let fenced = r.node2.wait_for(SNAPSHOT, 0, Duration::from_secs(20)).await;
    r.cut.as_ref().expect("cut proxy").cut();

    // A write drained by the fence may report back a little after it.
    let back = r
        .writer()
        .next_completion_after(fenced + REPORT_LAG, deadline + Duration::from_secs(10))
        .await;
    let stalled = back - fenced;
    println!("MEASURE agent lease, no resume: I/O stalled {stalled:?} (deadline {deadline:?})");
    assert!(
        stalled >= deadline - Duration::from_secs(1),
        "the fence held until its deadline without a resume: {stalled:?}"
    );
    assert!(
        stalled <= deadline + RESUME_SLACK,
        "I/O resumes by the deadline: {stalled:?}"
    );
    assert_aborted_retry(snap.await.expect("join"), "could not confirm");
    // node-0 was out of reach, so the rollback is left to the reconciler.
    r.cut.as_ref().expect("cut proxy").heal();
    reconciler::recover_pending(&r.ctx).await.expect("recover");
    r.assert_not_recorded("after a fence no resume reached")
        .await;
    r.finish(&[]).await;
}

/// SPDK refuses to restore the path for `refused` after the fence: resume
/// is tried again until it gets through, before the deadline; the snapshot
/// stands and is consistent.
async fn a_refused_resume_is_retried(holder: Holder) {
    let deadline = Duration::from_secs(4);
    let refused = Duration::from_millis(1500);
    let r = rig(holder, deadline).await;
    let until = Instant::now() + refused;
    r.node0.set_rule(move |m, p| {
        (m == SET_ANA && p["ana_state"] == "optimized" && Instant::now() < until)
            .then(|| Action::Refuse(-32602, "Invalid parameters".into()))
    });
    let id = r
        .snapshot("refused-resume")
        .await
        .expect("join")
        .expect("the snapshot stands: the fence held until a resume got through");
    r.node0.clear_rule();
    let sets = r.node0.seen_of(SET_ANA);
    let fenced = sets
        .iter()
        .find(|s| s.params["ana_state"] == "inaccessible")
        .expect("the fence was taken")
        .at;
    let optimized: Vec<_> = sets
        .iter()
        .filter(|s| s.params["ana_state"] == "optimized")
        .collect();
    let lifted = optimized
        .iter()
        .find(|s| !s.refused)
        .expect("a resume got through")
        .at;
    assert!(
        optimized.iter().filter(|s| s.refused).count() >= 2,
        "resume was tried again: {optimized:?}"
    );
    assert!(
        lifted - fenced < deadline,
        "lifted by a resume, before the deadline"
    );
    let back = r
        .writer()
        .next_completion_after(lifted, Duration::from_secs(10))
        .await;
    let stall = back - fenced;
    println!(
        "MEASURE {holder:?} fence, resume refused for {refused:?}: {} refusals, I/O stalled {stall:?} (deadline {deadline:?})",
        optimized.iter().filter(|s| s.refused).count()
    );
    assert!(stall >= refused - Duration::from_millis(500), "{stall:?}");
    assert!(
        stall < deadline,
        "I/O resumed before the deadline: {stall:?}"
    );
    let clients: Vec<_> = (0..3).map(|i| r.h.spdk(i)).collect();
    let sums = checksums(&clients, &snapshot_alias(&id), WRITER_SPAN).await;
    assert!(
        sums.iter().all(|s| *s == sums[0]),
        "replicas differ: {sums:x?}"
    );
    r.finish(&[id]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_spdk_refuses_is_retried_through_the_agent() {
    a_refused_resume_is_retried(Holder::Agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_spdk_refuses_is_retried_by_the_controller_guard() {
    a_refused_resume_is_retried(Holder::Controller).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_still_running_at_the_deadline_is_rolled_back_and_never_recorded() {
    let deadline = Duration::from_secs(2);
    let r = rig(Holder::Agent, deadline).await;
    // node-2's replica snapshot completes a second after the deadline.
    r.node2.set_rule(move |m, _| {
        (m == SNAPSHOT).then_some(Action::Delay(deadline + Duration::from_secs(1)))
    });
    let snap = r.snapshot("too-slow");
    let fenced = r.node2.wait_for(SNAPSHOT, 0, Duration::from_secs(20)).await;
    let back = r
        .writer()
        .next_completion_after(fenced, deadline + Duration::from_secs(10))
        .await;
    assert!(
        back - fenced <= deadline + RESUME_SLACK,
        "{:?}",
        back - fenced
    );
    assert_aborted_retry(snap.await.expect("join"), "did not complete within");
    r.node2.clear_rule();
    r.assert_not_recorded("after a snapshot that outlived its fence")
        .await;
    r.finish(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_restart_inside_the_fence_restores_io_and_voids_the_snapshot() {
    let deadline = Duration::from_secs(8);
    let mut r = rig(Holder::Agent, deadline).await;
    r.node2
        .set_rule(|m, _| (m == SNAPSHOT).then_some(Action::Delay(Duration::from_millis(1500))));
    let snap = r.snapshot("agent-restart");
    let fenced = r.node2.wait_for(SNAPSHOT, 0, Duration::from_secs(20)).await;
    r.agent.as_mut().expect("agent").crash_and_restart().await;
    let restarted = Instant::now();
    // The new agent finds the path it no longer holds a lease for and restores it.
    let back = r
        .writer()
        .next_completion_after(restarted, Duration::from_secs(10))
        .await;
    println!(
        "MEASURE agent restart inside the fence: I/O back {:?} after the restart",
        back - restarted
    );
    assert!(
        back - fenced < deadline - Duration::from_secs(2),
        "restored at start-up, long before the deadline"
    );
    // The controller's resume learns the lease is gone: the snapshot is void.
    assert_aborted_retry(snap.await.expect("join"), "lifted by itself");
    r.node2.clear_rule();
    r.assert_not_recorded("after an agent restart inside the fence")
        .await;
    r.finish(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_lifts_the_fence_of_a_controller_killed_inside_it() {
    let mut h = Harness::start_opts(3, StoreKind::Etcd, "", &["nvme_tcp"]).await;
    let dir = h.dir.path().to_path_buf();
    let agent = NodeAgent::start(
        &dir,
        "node-0",
        h.cluster.node(0).nvmf_port,
        &h.cluster.node(0).aio_file.clone(),
        &h.cluster.node(0).rpc_socket.clone(),
    )
    .await;
    h.reroute_node(0, &agent.endpoint_toml(&agent.url()));
    h.restart_controller().await;
    let vol = h
        .create_volume("pvc-killed-in-fence", 16 * MIB, Some(3))
        .await;
    h.publish(&vol, "node-0").await;
    let kernel = h.spdk(1);
    let bdevs = kernel
        .bdev_nvme_attach_controller(&BdevNvmeAttachControllerParams {
            ctrlr_loss_timeout_sec: Some(60),
            reconnect_delay_sec: Some(1),
            ..kernel_attach_params(&h, &vol)
        })
        .await
        .expect("attach the frontend as the kernel would");
    let writer = Writer::start(kernel.clone(), bdevs[0].clone());
    writer
        .next_completion_after(Instant::now(), Duration::from_secs(10))
        .await;

    // The controller dies while its fence holds I/O (default deadline).
    let deadline = shorthorn_controller::fence::DEFAULT_DEADLINE;
    h.stop_controller().await;
    support::crash::crash_at(&h, "create-snapshot:fenced", &["snapshot", &vol, "killed"]).await;
    let died = Instant::now();
    let listeners = h
        .spdk(0)
        .call_raw(
            "nvmf_subsystem_get_listeners",
            Some(serde_json::json!({ "nqn": naming::volume_nqn(&vol) })),
        )
        .await
        .expect("listeners")
        .to_string();
    assert!(
        listeners.contains("inaccessible"),
        "the fence outlived its controller: {listeners}"
    );
    // No controller runs now: only the agent's lease can lift the fence.
    let back = writer
        .next_completion_after(died, deadline + Duration::from_secs(10))
        .await;
    println!(
        "MEASURE controller killed inside the fence: I/O back {:?} after its death (deadline {deadline:?})",
        back - died
    );
    assert!(
        back - died >= deadline / 2,
        "the fence held: {:?}",
        back - died
    );
    assert!(
        back - died <= deadline + RESUME_SLACK,
        "by the deadline: {:?}",
        back - died
    );
    assert_ana_optimized(&h, &vol, "after the lease ran out").await;

    // A fresh controller rolls the snapshot back; a retry takes it whole.
    h.restart_controller().await;
    assert!(
        h.lvols_with_prefix(naming::SNAPSHOT_PREFIX)
            .await
            .is_empty(),
        "recovery removed the half-taken snapshot"
    );
    let id = h.create_snapshot("killed", &vol).await;
    let clients: Vec<_> = (0..3).map(|i| h.spdk(i)).collect();
    let sums = checksums(&clients, &snapshot_alias(&id), WRITER_SPAN).await;
    assert!(
        sums.iter().all(|s| *s == sums[0]),
        "replicas differ: {sums:x?}"
    );
    let expected = writer.stop().await;
    for i in 0..3 {
        let got = sim_read(&h.spdk(i), &replica_alias(&vol), 0, WRITER_SPAN).await;
        assert!(
            got == expected,
            "replica on node-{i} lost acknowledged writes"
        );
    }
    detach_kernel(&kernel).await;
    h.delete_snapshot(&id).await;
    h.unpublish(&vol, "node-0").await;
    h.delete_volume(&vol).await;
    h.assert_clean().await;
    drop(agent);
}

/// The node side of a ublk volume's quiesce: its resume fails the first
/// `failing_resumes` times; with `lapses`, its hold ends by itself at once
/// (as when the agent lost it), so resume finds none; suspend takes `slow`.
#[derive(Debug, Default)]
struct QuiesceDouble {
    failing_resumes: u32,
    lapses: bool,
    slow: Duration,
    held: AtomicBool,
    resumes: AtomicU32,
}

#[async_trait]
impl NodeQuiesce for QuiesceDouble {
    async fn suspend(&self, _volume_id: &str, _deadline: Duration) -> CResult<()> {
        tokio::time::sleep(self.slow).await;
        self.held.store(!self.lapses, Ordering::SeqCst);
        Ok(())
    }

    async fn resume(&self, _volume_id: &str) -> CResult<Resumed> {
        if self.resumes.fetch_add(1, Ordering::SeqCst) < self.failing_resumes {
            return Err(ControllerError::Internal("agent unreachable".into()));
        }
        let was_held = self.held.swap(false, Ordering::SeqCst);
        Ok(Resumed {
            lease_expired: !was_held,
        })
    }
}

/// A ublk volume published on node-0 with data on it, node-2 behind a
/// proxy; one snapshot under `double` with a 1 s deadline.
async fn quiesced_snapshot(
    double: Arc<QuiesceDouble>,
) -> (
    Harness,
    Context,
    String,
    RpcProxy,
    Result<String, ControllerError>,
) {
    let mut h = Harness::start(3, StoreKind::Etcd).await;
    let node2 = RpcProxy::start(
        &h.dir.path().join("node-2-proxy.sock"),
        &h.cluster.node(2).rpc_socket,
    )
    .await;
    h.reroute_node(2, &socket_toml(&node2));
    let fencing = Fencing::default()
        .with_node_quiesce(double)
        .with_deadline(Duration::from_secs(1));
    let ctx = own_context(h.config(), Frontend::Ublk, fencing).await;
    let vol = own_volume(&ctx, "pvc-quiesce-lease", 16, 3).await;
    ops::publish::publish(&ctx, &vol, "node-0", false)
        .await
        .expect("publish");
    sim_write(
        &h.spdk(0),
        &raid(&vol),
        0,
        &pattern(WRITER_SPAN as usize, 9),
    )
    .await;
    let outcome = ops::snapshot_create::create_snapshot(&ctx, "quiesced", &vol)
        .await
        .map(|s| s.id);
    (h, ctx, vol, node2, outcome)
}

async fn quiesced_cleanup(h: &Harness, ctx: &Context, vol: &str, snapshots: &[String]) {
    let want = pattern(WRITER_SPAN as usize, 9);
    for i in 0..3 {
        let got = sim_read(&h.spdk(i), &replica_alias(vol), 0, WRITER_SPAN).await;
        assert!(got == want, "replica on node-{i} changed");
    }
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

async fn assert_no_snapshot(h: &Harness, ctx: &Context, vol: &str) {
    assert!(ctx
        .store
        .list_snapshots_of_volume(vol)
        .await
        .expect("snapshots")
        .is_empty());
    assert!(h
        .lvols_with_prefix(naming::SNAPSHOT_PREFIX)
        .await
        .is_empty());
    assert!(ctx
        .store
        .list_pending_operations()
        .await
        .expect("operations")
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_quiesce_resume_that_fails_is_retried_and_the_snapshot_stands() {
    let double = Arc::new(QuiesceDouble {
        failing_resumes: 3,
        ..Default::default()
    });
    let (h, ctx, vol, _node2, outcome) = quiesced_snapshot(double.clone()).await;
    let id = outcome.expect("the snapshot stands once a resume got through");
    assert_eq!(
        double.resumes.load(Ordering::SeqCst),
        4,
        "three failed, one lifted"
    );
    assert!(!double.held.load(Ordering::SeqCst));
    let clients: Vec<_> = (0..3).map(|i| h.spdk(i)).collect();
    let sums = checksums(&clients, &snapshot_alias(&id), WRITER_SPAN).await;
    assert!(
        sums.iter().all(|s| *s == sums[0]),
        "replicas differ: {sums:x?}"
    );
    quiesced_cleanup(&h, &ctx, &vol, &[id]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_quiesce_hold_that_lapsed_voids_the_snapshot() {
    let double = Arc::new(QuiesceDouble {
        lapses: true,
        ..Default::default()
    });
    let (h, ctx, vol, _node2, outcome) = quiesced_snapshot(double).await;
    assert_aborted_retry(outcome, "lifted by itself");
    assert_no_snapshot(&h, &ctx, &vol).await;
    quiesced_cleanup(&h, &ctx, &vol, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fence_that_took_its_whole_deadline_to_hold_sends_no_replica_snapshot() {
    // The snapshot's clock started before the fence: once held, no time is left.
    let double = Arc::new(QuiesceDouble {
        slow: Duration::from_millis(1200),
        ..Default::default()
    });
    let (h, ctx, vol, node2, outcome) = quiesced_snapshot(double.clone()).await;
    assert_aborted_retry(outcome, "did not complete within");
    assert!(
        node2.seen_of(SNAPSHOT).is_empty(),
        "no replica snapshot is taken once the deadline passed"
    );
    assert!(!double.held.load(Ordering::SeqCst), "the fence was lifted");
    assert_no_snapshot(&h, &ctx, &vol).await;
    quiesced_cleanup(&h, &ctx, &vol, &[]).await;
}
