//! The thin rebuild of a published NVMe/TCP volume (docs/rebuild.md, "Thin
//! rebuild of a published volume") on sims, with node-0's real node agent
//! serving `/swap/*` over a test double of the dm layer: `dmsetup suspend`
//! closes a gate every write of the "kernel" (node-1's NVMe-oF initiator,
//! attached to node-0's loopback subsystem as the kernel would be) passes
//! through, once in-flight writes are done; `reload` records the new device
//! and `resume` reopens the gate. Finding the re-created device reattaches
//! that initiator, as the kernel's rescan would find the new namespace.
//!
//! A replica is lost under a writer (node-2 killed) and comes back; the
//! delta rebuild onto it must take the thin swap: the writer never fails,
//! the dm double sees suspend, reload, resume in that order, the new
//! replica is current, a member and a leg of a raid of three, it holds as
//! many clusters as the source, and every replica read directly holds the
//! writer's bytes. Prints the hold time the double measured.

mod node_agent;
#[path = "../../controller/tests/support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent_api::FrontendKind;
use async_trait::async_trait;
use node_agent::NodeAgent;
use shorthorn_controller::config::RebuildConfig;
use shorthorn_controller::fence::Fencing;
use shorthorn_controller::ops;
use shorthorn_controller::rebuild::trigger;
use shorthorn_node::command::{CommandLine, CommandOutput, CommandRunner};
use shorthorn_node::dm::DmLinear;
use shorthorn_node::frontend::AttachedDevice;
use shorthorn_node::swap::{SwapBackend, SwapHolds, SwapVolume};
use shorthorn_node::NodeError;
use spdk_client::{BdevLvolGetLvolsParams, BdevNvmeAttachControllerParams, SpdkClient};
use support::crash::crash_at;
use support::safety::wait_for;
use support::*;
use tokio::sync::{OwnedRwLockWriteGuard, RwLock};

/// Bytes the writer cycles over.
const SPAN: u64 = 1024 * 1024;
const BLOCK: u64 = 4096;

/// The dm layer's double: the gate, and every dmsetup call.
#[derive(Default)]
struct FakeDm {
    gate: Arc<RwLock<()>>,
    held: Mutex<Option<(OwnedRwLockWriteGuard<()>, Instant)>>,
    calls: Mutex<Vec<String>>,
    holds_ms: Mutex<Vec<u128>>,
}

impl CommandRunner for FakeDm {
    fn run(&self, cmd: &CommandLine) -> shorthorn_node::Result<CommandOutput> {
        self.calls.lock().unwrap().push(cmd.to_string());
        match cmd.args.first().map(String::as_str) {
            // Like dm suspend: no new write starts, in-flight ones finish.
            Some("suspend") => {
                let guard =
                    tokio::runtime::Handle::current().block_on(self.gate.clone().write_owned());
                *self.held.lock().unwrap() = Some((guard, Instant::now()));
            }
            Some("resume") => {
                if let Some((g, since)) = self.held.lock().unwrap().take() {
                    self.holds_ms
                        .lock()
                        .unwrap()
                        .push(since.elapsed().as_millis());
                    drop(g);
                }
            }
            _ => {}
        }
        Ok(CommandOutput {
            status: Some(0),
            stdout: String::new(),
            stderr: String::new(),
        })
    }
}

/// The staged volume and its "kernel": node-1's initiator.
struct FakeKernel {
    volume: String,
    kernel: SpdkClient,
    attach: BdevNvmeAttachControllerParams,
    device: Mutex<AttachedDevice>,
    attaches: AtomicU32,
}

fn device(n: u32) -> AttachedDevice {
    AttachedDevice {
        kind: FrontendKind::NvmeTcp,
        path: PathBuf::from(format!("/dev/fake-nvme0n{n}")),
        size_bytes: 32 << 20,
        controllers: vec!["nvme0".into()],
    }
}

#[async_trait]
impl SwapBackend for FakeKernel {
    fn resolve(&self, volume_id: &str) -> shorthorn_node::Result<SwapVolume> {
        if volume_id != self.volume {
            return Err(NodeError::SwapUnsupported {
                volume_id: volume_id.into(),
                reason: "the volume is not staged on this node".into(),
            });
        }
        Ok(SwapVolume {
            volume_id: volume_id.into(),
            dm_name: format!("shorthorn-{volume_id}"),
            device: self.device.lock().unwrap().clone(),
        })
    }

    async fn find_device(
        &self,
        volume: &SwapVolume,
        _wait: Duration,
        require_new: bool,
    ) -> shorthorn_node::Result<Option<AttachedDevice>> {
        if !require_new {
            return Ok(Some(volume.device.clone()));
        }
        // The kernel's rescan: the namespace was removed and added again.
        let _ = self
            .kernel
            .bdev_nvme_detach_controller(&spdk_client::BdevNvmeDetachControllerParams {
                name: KERNEL_CTRLR.into(),
                ..Default::default()
            })
            .await;
        self.kernel
            .bdev_nvme_attach_controller(&self.attach)
            .await
            .map_err(|e| NodeError::Task(format!("reattaching the kernel: {e}")))?;
        let n = self.attaches.fetch_add(1, Ordering::SeqCst) + 2;
        Ok(Some(device(n)))
    }

    fn record_device(
        &self,
        _volume_id: &str,
        device: &AttachedDevice,
    ) -> shorthorn_node::Result<()> {
        *self.device.lock().unwrap() = device.clone();
        Ok(())
    }
}

/// Writes 4 KiB blocks over `[0, SPAN)` through the gate, keeping what it
/// wrote acknowledged in `expect`; records its first error.
struct Writer {
    stop: Arc<AtomicBool>,
    writes: Arc<AtomicU64>,
    expect: Arc<Mutex<Vec<u8>>>,
    error: Arc<Mutex<Option<String>>>,
    longest: Arc<Mutex<Duration>>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    fn start(client: SpdkClient, bdev: String, gate: Arc<RwLock<()>>) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let writes = Arc::new(AtomicU64::new(0));
        let expect = Arc::new(Mutex::new(vec![0u8; SPAN as usize]));
        let error = Arc::new(Mutex::new(None));
        let longest = Arc::new(Mutex::new(Duration::ZERO));
        let task = tokio::spawn({
            let (stop, writes, expect, error, longest) = (
                stop.clone(),
                writes.clone(),
                expect.clone(),
                error.clone(),
                longest.clone(),
            );
            async move {
                let mut i: u64 = 0;
                let mut last = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    let block = vec![(i % 251) as u8 + 1; BLOCK as usize];
                    let offset = (i % (SPAN / BLOCK)) * BLOCK;
                    let open = gate.clone().read_owned().await;
                    let b64 = base64_encode(&block);
                    let r = client
                        .call_raw(
                            "sim_bdev_write",
                            Some(serde_json::json!({"name": bdev, "offset": offset, "data": b64})),
                        )
                        .await;
                    if let Err(e) = r {
                        *error.lock().unwrap() = Some(format!("write {i}: {e}"));
                        return;
                    }
                    expect.lock().unwrap()[offset as usize..(offset + BLOCK) as usize]
                        .copy_from_slice(&block);
                    // Acknowledged (and recorded) before the gate can close.
                    drop(open);
                    writes.fetch_add(1, Ordering::Relaxed);
                    let gap = last.elapsed();
                    last = Instant::now();
                    {
                        let mut l = longest.lock().unwrap();
                        *l = (*l).max(gap);
                    }
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        });
        Writer {
            stop,
            writes,
            expect,
            error,
            longest,
            task,
        }
    }

    async fn wait_writes(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.writes.load(Ordering::Relaxed) < n {
            assert!(
                self.error.lock().unwrap().is_none(),
                "writer failed: {:?}",
                self.error.lock().unwrap()
            );
            assert!(
                Instant::now() < deadline,
                "the writer stalled below {n} writes"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn base64_encode(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

async fn allocated(c: &SpdkClient, volume: &str) -> u64 {
    c.bdev_lvol_get_lvols(&BdevLvolGetLvolsParams::default())
        .await
        .expect("lvols")
        .into_iter()
        .find(|l| l.alias == replica_alias(volume))
        .map(|l| l.num_allocated_clusters)
        .unwrap_or_else(|| panic!("no replica lvol of {volume}"))
}

/// What every test here runs on.
struct Setup {
    h: Harness,
    dm: Arc<FakeDm>,
    kernel: SpdkClient,
    agent: NodeAgent,
    ctx: shorthorn_controller::context::Context,
    vol: String,
    writer: Writer,
}

/// Three sims, node-0 behind its agent with the dm double; a 32 MiB
/// 3-replica volume published on node-0 over NVMe/TCP, its "kernel"
/// attached on node-1, and a writer running.
async fn setup() -> Setup {
    let mut h = Harness::start(3, StoreKind::Etcd).await;
    let dm = Arc::new(FakeDm::default());
    let kernel = h.spdk(1);

    // The volume first (its id names the staged volume), then node-0's agent.
    let ctx = own_context(h.config(), FrontendKind::NvmeTcp, Fencing::default()).await;
    let vol = own_volume(&ctx, "pvc-swap", 32, 3).await;
    let backend = Arc::new(FakeKernel {
        volume: vol.clone(),
        kernel: kernel.clone(),
        attach: BdevNvmeAttachControllerParams {
            ctrlr_loss_timeout_sec: Some(60),
            reconnect_delay_sec: Some(1),
            ..kernel_attach_params(&h, &vol)
        },
        device: Mutex::new(device(1)),
        attaches: AtomicU32::new(0),
    });
    let holds = SwapHolds::new(
        DmLinear::new(dm.clone()),
        backend.clone(),
        Duration::from_millis(200),
    );
    let node = h.cluster.node(0);
    let (port, disk, socket) = (
        node.nvmf_port,
        node.aio_file.clone(),
        node.rpc_socket.clone(),
    );
    let agent =
        NodeAgent::start_with_swap(h.dir.path(), "node-0", port, &disk, &socket, Some(holds)).await;
    h.reroute_node(0, &agent.endpoint_toml(&agent.url()));
    let ctx = own_context(h.config(), FrontendKind::NvmeTcp, Fencing::default())
        .await
        .with_rebuild(RebuildConfig {
            poll_interval_ms: 20,
            ..RebuildConfig::default()
        });
    ops::publish::publish(&ctx, &vol, "node-0", false)
        .await
        .expect("publish");
    let bdevs = kernel
        .bdev_nvme_attach_controller(&backend.attach)
        .await
        .expect("attach the frontend as the kernel would");
    let ns = bdevs.first().cloned().expect("namespace bdev");
    let writer = Writer::start(kernel.clone(), ns, dm.gate.clone());
    writer.wait_writes(50).await;
    Setup {
        h,
        dm,
        kernel,
        agent,
        ctx,
        vol,
        writer,
    }
}

/// Kills node-2 under the writer, waits until its replica is stale and
/// restarts it (lvstore loaded): a delta rebuild is due. Needs the
/// harness's controller running (its health monitor demotes the replica).
async fn lose_and_return_node_2(h: &mut Harness, vol: &str) {
    h.cluster.kill_node(2);
    h.wait_replica_state(vol, "node-2", "stale").await;
    h.cluster.restart_node(2).expect("restart node-2");
    wait_for("node-2 back", Duration::from_secs(20), || async {
        h.lvstore_loaded(2).await.then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_replica_of_a_published_volume_comes_back_by_the_thin_swap_under_a_writer() {
    let Setup {
        mut h,
        dm,
        kernel,
        agent,
        ctx,
        vol,
        writer,
    } = setup().await;
    // node-2 dies under the writer and comes back: stale, then a delta.
    lose_and_return_node_2(&mut h, &vol).await;
    // One controller from here on: the harness's would read the raid
    // while the swap replaces it.
    h.stop_controller().await;
    let w0 = writer.writes.load(Ordering::Relaxed);
    *writer.longest.lock().unwrap() = Duration::ZERO;
    let ran = trigger::run_due(&ctx).await.expect("rebuilds");
    let stall = *writer.longest.lock().unwrap();
    assert_eq!(ran.len(), 1, "one rebuild ran");
    let outcome = ran[0].1.as_ref().expect("the thin swap rebuild");
    let w1 = writer.writes.load(Ordering::Relaxed);
    writer.wait_writes(w1 + 50).await;
    writer.stop.store(true, Ordering::Relaxed);
    writer.task.await.expect("writer");
    assert_eq!(
        *writer.error.lock().unwrap(),
        None,
        "the writer saw an error"
    );
    assert!(!outcome.full_copy, "a full copy ran, not the thin swap");
    let calls = dm.calls.lock().unwrap().clone();
    let name = format!("shorthorn-{vol}");
    assert_eq!(
        calls,
        vec![
            format!("dmsetup suspend {name}"),
            format!("dmsetup reload {name} --table \"0 65536 linear /dev/fake-nvme0n2 0\""),
            format!("dmsetup resume {name}"),
        ],
        "the dm layer saw suspend, reload onto the new device, resume"
    );
    let holds = dm.holds_ms.lock().unwrap().clone();
    println!(
        "MEASURE sim thin swap: {} bytes copied in {:?}; writes during the rebuild {}; dm hold {holds:?} ms; \
         the writer's longest stall during the rebuild {stall:?}",
        outcome.bytes_copied,
        outcome.elapsed,
        w1 - w0,
    );

    let r = ctx
        .store
        .get_replica(&vol, "node-2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.record.health.as_str(), "healthy");
    assert!(
        r.record.reason.unwrap_or_default().contains("thin swap"),
        "the reason says the thin swap rebuilt it"
    );
    let p = ctx
        .store
        .get_publication(&vol, "node-0")
        .await
        .unwrap()
        .unwrap();
    assert!(p.record.members.contains(&"node-2".to_string()));
    assert_eq!(
        h.raid_member_nodes(&vol, 0).await.len(),
        3,
        "a raid of three"
    );
    assert!(ctx
        .store
        .list_pending_operations()
        .await
        .unwrap()
        .is_empty());

    // Thin, and every replica holds the writer's bytes.
    let (a0, a2) = (
        allocated(&h.spdk(0), &vol).await,
        allocated(&h.spdk(2), &vol).await,
    );
    println!("MEASURE sim thin swap: allocated clusters source {a0}, rebuilt {a2}");
    assert_eq!(
        a2, a0,
        "the rebuilt replica holds as many clusters as the source"
    );
    let expect = writer.expect.lock().unwrap().clone();
    for i in 0..3 {
        let bytes = sim_read(&h.spdk(i), &replica_alias(&vol), 0, SPAN).await;
        assert!(
            bytes == expect,
            "the replica on node-{i} does not hold the writer's bytes"
        );
    }
    for i in 0..3 {
        let left: Vec<String> = h
            .spdk(i)
            .bdev_lvol_get_lvols(&BdevLvolGetLvolsParams::default())
            .await
            .expect("lvols")
            .into_iter()
            .map(|l| l.name)
            .filter(|n| n.contains("-rb"))
            .collect();
        assert!(left.is_empty(), "rebuild lvols left on node-{i}: {left:?}");
    }
    detach_kernel(&kernel).await;
    drop(agent);
}

/// The replicas' bytes equal the writer's, and no rebuild lvol is left.
async fn assert_replicas(h: &Harness, vol: &str, expect: &[u8], nodes: &[usize], when: &str) {
    for &i in nodes {
        let bytes = sim_read(&h.spdk(i), &replica_alias(vol), 0, SPAN).await;
        assert!(
            bytes == expect,
            "{when}: the replica on node-{i} does not hold the writer's bytes"
        );
    }
    for i in 0..3 {
        let left: Vec<String> = h
            .spdk(i)
            .bdev_lvol_get_lvols(&BdevLvolGetLvolsParams::default())
            .await
            .expect("lvols")
            .into_iter()
            .map(|l| l.name)
            .filter(|n| n.contains("-rb"))
            .collect();
        assert!(
            left.is_empty(),
            "{when}: rebuild lvols left on node-{i}: {left:?}"
        );
    }
}

/// A controller killed (abort) right after each journaled swap step; the
/// next controller's recovery undoes the swap before the raid is replaced
/// (the replica stays stale, the old raid serves) and completes it after.
/// The writer never fails and the dm device ends resumed each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_killed_at_each_swap_step_is_undone_or_completed_by_recovery() {
    let Setup {
        mut h,
        dm,
        kernel,
        agent,
        vol,
        writer,
        ..
    } = setup().await;
    lose_and_return_node_2(&mut h, &vol).await;
    for (step, forward) in [
        ("round-copied", false),
        ("suspended", false),
        ("final-copied", false),
        ("frontend-removed", false),
        ("raid-replaced", true),
        ("promoted", true),
    ] {
        h.stop_controller().await;
        let w0 = writer.writes.load(Ordering::Relaxed);
        crash_at(&h, &format!("rebuild-replica:{step}"), &["rebuild", &vol]).await;
        h.restart_controller().await; // recovers the journal before it serves
        let ctx = own_context(h.config(), FrontendKind::NvmeTcp, Fencing::default()).await;
        assert!(
            ctx.store
                .list_pending_operations()
                .await
                .unwrap()
                .is_empty(),
            "{step}: the journal entry is gone"
        );
        let r = ctx
            .store
            .get_replica(&vol, "node-2")
            .await
            .unwrap()
            .unwrap();
        let want = if forward { "healthy" } else { "stale" };
        assert_eq!(r.record.health.as_str(), want, "after a crash at {step}");
        let legs = h.raid_member_nodes(&vol, 0).await.len();
        assert_eq!(
            legs,
            if forward { 3 } else { 2 },
            "raid legs after a crash at {step}"
        );
        writer.wait_writes(w0 + 20).await;
        let calls = dm.calls.lock().unwrap().clone();
        assert!(
            dm.held.lock().unwrap().is_none(),
            "after a crash at {step}: the dm device is still suspended ({calls:?})"
        );
        let expect = writer.expect.lock().unwrap().clone();
        let nodes: &[usize] = if forward { &[0, 1, 2] } else { &[0, 1] };
        // Quiesce the writer while the replicas are read.
        let gate = dm.gate.clone().write_owned().await;
        let expect_now = writer.expect.lock().unwrap().clone();
        assert_replicas(
            &h,
            &vol,
            &expect_now,
            nodes,
            &format!("after a crash at {step}"),
        )
        .await;
        drop(gate);
        drop(expect);
        println!(
            "crash at {step}: {} by recovery; dm calls so far {}",
            if forward { "completed" } else { "undone" },
            calls.len()
        );
        if forward {
            lose_and_return_node_2(&mut h, &vol).await;
        }
    }
    writer.stop.store(true, Ordering::Relaxed);
    writer.task.await.expect("writer");
    assert_eq!(
        *writer.error.lock().unwrap(),
        None,
        "the writer saw an error"
    );
    detach_kernel(&kernel).await;
    drop(agent);
}

/// Child mode of the crash test (see support::crash).
#[tokio::test]
#[ignore]
async fn crash_child() {
    support::crash::child_main().await;
}
