//! One controller at a time (issue #13, item 6), on a real etcd:
//! - a second controller waits: it refuses calls that change state (UNAVAILABLE,
//!   naming the leader), serves reads, runs no recovery or reconciler;
//! - the leader is SIGKILLed and the standby takes over within the lease TTL
//!   (measured, printed);
//! - a deposed controller's writes are refused by etcd and change nothing,
//!   whether it was deposed behind its back or paused (SIGSTOP) past its lease;
//! - recovery re-reads a journal entry under the volume lock and leaves one
//!   that finished or changed meanwhile alone.
//!
//! Killable controllers are this test binary re-executed as `leader_child`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use csi_proto::controller_client::ControllerClient;
use csi_proto::identity_client::IdentityClient;
use csi_proto::{ListVolumesRequest, ProbeRequest};
use shorthorn_controller::config::{ControllerConfig, LeaderConfig};
use shorthorn_controller::context::Context;
use shorthorn_controller::journal::Journal;
use shorthorn_controller::leader::{Leadership, Role};
use shorthorn_controller::nodes::NodeRegistry;
use shorthorn_controller::ops::unpublish::UnpublishPayload;
use shorthorn_controller::reconciler;
use shorthorn_controller::server::{self, Endpoint};
use shorthorn_controller::store::{
    Claim, Entry, EtcdConfig, EtcdStore, Expect, KvStore, OperationKind, Revision, Store,
    StoreError, TxnOp,
};
use support::*;
use testkit::EtcdServer;
use tonic::transport::Channel;
use tonic::Code;

/// Child mode: `<config path>|<csi socket>`.
const CHILD_ENV: &str = "SHORTHORN_LEADER_CHILD";
/// The harness's etcd prefix.
const PREFIX: &str = "/shorthorn-test";

/// Not a test: a controller serving CSI until it is killed, run only as a child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs only as a child controller of the leader tests"]
async fn leader_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (config, socket) = spec.split_once('|').expect("config|socket");
    let config = ControllerConfig::load(config.as_ref()).expect("config");
    server::serve(
        config,
        Endpoint::Unix(socket.into()),
        std::future::pending(),
    )
    .await
    .expect("child controller");
}

/// A controller process of the test's own.
struct ChildController {
    child: Child,
    csi: ControllerClient<Channel>,
    identity: IdentityClient<Channel>,
}

impl ChildController {
    /// Starts one on `config` serving at `dir/<name>.sock`; returns once it listens.
    async fn spawn(config: &Path, dir: &Path, name: &str) -> ChildController {
        let socket = dir.join(format!("{name}.sock"));
        let _ = std::fs::remove_file(&socket);
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("log");
        let child = Command::new(std::env::current_exe().expect("exe"))
            .args([
                "--exact",
                "leader_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(
                CHILD_ENV,
                format!("{}|{}", config.display(), socket.display()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn child controller");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "{name} never listened");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let channel = csi_proto::uds::connect(&socket).await.expect("connect");
        ChildController {
            child,
            csi: ControllerClient::new(channel.clone()),
            identity: IdentityClient::new(channel),
        }
    }

    async fn ready(&mut self) -> bool {
        self.identity
            .probe(ProbeRequest {})
            .await
            .map(|r| r.into_inner().ready == Some(true))
            .unwrap_or(false)
    }

    /// Waits until it acts as leader; how long that took.
    async fn wait_ready(&mut self, within: Duration) -> Duration {
        let started = Instant::now();
        while !self.ready().await {
            assert!(
                started.elapsed() < within,
                "controller not ready (leader) within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        started.elapsed()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal}");
    }

    /// SIGKILL: no chance to give the lease up.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildController {
    fn drop(&mut self) {
        // SIGKILL ends a stopped process too.
        self.kill();
    }
}

fn raw_etcd(endpoint: String) -> EtcdStore {
    EtcdStore::new(EtcdConfig {
        endpoints: vec![endpoint],
        prefix: PREFIX.into(),
        ..Default::default()
    })
    .expect("etcd client")
}

/// Every key and value under the prefix (the leader key included).
async fn everything(etcd: &EtcdStore) -> Vec<(String, Vec<u8>)> {
    etcd.list("")
        .await
        .expect("list")
        .into_iter()
        .map(|(k, v, _)| (k, v))
        .collect()
}

/// Raid bdevs on node `i`.
async fn raids(h: &Harness, i: usize) -> Vec<String> {
    h.spdk(i)
        .bdev_raid_get_bdevs(&spdk_client::BdevRaidGetBdevsParams::default())
        .await
        .expect("raids")
        .into_iter()
        .filter_map(|r| r.name)
        .collect()
}

/// The holder of the leader key.
async fn leader_holder(etcd: &EtcdStore) -> String {
    etcd.leader()
        .await
        .expect("read leader")
        .expect("someone leads")
        .holder
}

async fn volume_names(csi: &mut ControllerClient<Channel>) -> Vec<String> {
    let mut names: Vec<String> = csi
        .list_volumes(ListVolumesRequest::default())
        .await
        .expect("list volumes")
        .into_inner()
        .entries
        .into_iter()
        .filter_map(|e| e.volume)
        .map(|v| v.volume_id)
        .collect();
    names.sort();
    names
}

fn assert_refused_as_not_leader(outcome: Result<impl std::fmt::Debug, tonic::Status>, says: &str) {
    let status = outcome.expect_err("a controller that does not lead must refuse");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains(says) && status.message().contains("nothing was changed"),
        "{:?} should say {says:?}",
        status.message()
    );
}

fn p50(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// A harness (3 sim nodes, etcd) whose own controller is stopped, and a copy
/// of its config with a short reconcile interval for standbys.
async fn cluster() -> (Harness, PathBuf) {
    let mut h = Harness::start(3, StoreKind::Etcd).await;
    h.stop_controller().await;
    let text = std::fs::read_to_string(&h.config_path).expect("config");
    let eager = text.replace(
        "reconcile_interval_secs = 3600",
        "reconcile_interval_secs = 1",
    );
    assert_ne!(
        text, eager,
        "the harness config sets the reconcile interval"
    );
    let eager_path = h.dir.path().join("eager.toml");
    std::fs::write(&eager_path, eager).expect("write config");
    (h, eager_path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_waits_and_takes_over_within_the_lease_ttl_when_the_leader_is_killed() {
    let (h, eager) = cluster().await;
    let etcd = raw_etcd(h.etcd.as_ref().expect("etcd").endpoint());
    let dir = h.dir.path().to_path_buf();
    let ttl = Duration::from_secs(TEST_LEASE_TTL_SECS);
    let retry = LeaderConfig::default().retry_interval();
    // The lease runs out TTL after the last renewal; etcd's lessor checks for
    // expired leases every 500 ms; the standby looks every `retry`.
    let bound = ttl + retry + Duration::from_millis(1500);

    let mut leader = ChildController::spawn(&h.config_path, &dir, "a").await;
    leader.wait_ready(Duration::from_secs(30)).await;
    let a = leader_holder(&etcd).await;
    let mut standby = ChildController::spawn(&eager, &dir, "b").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !standby.ready().await,
        "the second controller must stand by"
    );

    // The leader serves; the standby refuses what changes state and serves reads.
    let id = leader
        .csi
        .create_volume(create_req("pvc-led", 16 * MIB, Some(3)))
        .await
        .expect("the leader creates")
        .into_inner()
        .volume
        .expect("volume")
        .volume_id;
    let before = everything(&etcd).await;
    assert_refused_as_not_leader(
        standby
            .csi
            .create_volume(create_req("pvc-standby", 16 * MIB, Some(3)))
            .await,
        &format!("controller {a} holds the leader lease"),
    );
    assert_refused_as_not_leader(
        standby.csi.delete_volume(delete_req(&id)).await,
        "standing by",
    );
    assert_eq!(volume_names(&mut standby.csi).await, vec![id.clone()]);
    assert_eq!(
        everything(&etcd).await,
        before,
        "the standby changed nothing"
    );
    assert_eq!(h.replica_lvols().await.len(), 3, "and created no lvol");

    // The standby runs no recovery or reconciler (its interval is 1 s): an
    // interrupted unpublish in the journal, which any pass would finish by
    // tearing the raid down (SPDK first, the store after), stays untouched.
    leader
        .csi
        .controller_publish_volume(publish_req(&id, "node-0"))
        .await
        .expect("the leader publishes");
    let raw = Store::new(Arc::new(etcd.clone()));
    let payload = UnpublishPayload {
        node: "node-0".into(),
        replicas: vec!["node-0".into(), "node-1".into(), "node-2".into()],
    };
    Journal::begin(
        &raw,
        OperationKind::UnpublishVolume,
        &id,
        Some("node-0"),
        "started",
        &payload,
    )
    .await
    .expect("journal");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        raids(&h, 0).await.len(),
        1,
        "a standby must not act on the journal"
    );
    assert_eq!(raw.list_pending_operations().await.expect("ops").len(), 1);

    // SIGKILL the leader: the standby takes over once the lease runs out.
    let killed = Instant::now();
    leader.kill();
    let first = standby.wait_ready(bound + Duration::from_secs(5)).await;
    let mut samples = vec![killed.elapsed()];
    assert_ne!(leader_holder(&etcd).await, a, "a new leader key");
    assert!(
        raw.list_pending_operations().await.expect("ops").is_empty(),
        "the new leader recovers the journal when it takes over"
    );
    assert!(raids(&h, 0).await.is_empty(), "by finishing the unpublish");
    println!("first takeover: ready {first:?} after the SIGKILL");

    // It serves what the first leader made, and new calls.
    assert_eq!(volume_names(&mut standby.csi).await, vec![id.clone()]);
    standby
        .csi
        .delete_volume(delete_req(&id))
        .await
        .expect("the new leader deletes");

    // More takeovers for the median: a fresh standby each time.
    let mut leader = standby;
    for round in 0..4 {
        let mut next = ChildController::spawn(&h.config_path, &dir, &format!("c{round}")).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(!next.ready().await, "round {round}: stands by");
        let killed = Instant::now();
        leader.kill();
        next.wait_ready(bound + Duration::from_secs(5)).await;
        samples.push(killed.elapsed());
        leader = next;
    }
    let max = samples.iter().max().copied().unwrap_or_default();
    println!(
        "takeover after SIGKILL of the leader (lease TTL {ttl:?}, keepalive {:?}, standby retry {retry:?}): \
         p50 {:?}, max {max:?}, samples {samples:?}",
        ttl / 3,
        p50(samples.clone())
    );
    assert!(
        max <= bound,
        "takeover took {max:?}, more than TTL + retry + etcd's expiry granularity ({bound:?})"
    );
    leader
        .csi
        .create_volume(create_req("pvc-after", 16 * MIB, Some(3)))
        .await
        .expect("the last leader serves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_paused_past_its_lease_is_deposed_and_its_calls_change_nothing() {
    let (h, _) = cluster().await;
    let etcd = raw_etcd(h.etcd.as_ref().expect("etcd").endpoint());
    let dir = h.dir.path().to_path_buf();
    let ttl = Duration::from_secs(TEST_LEASE_TTL_SECS);

    let mut a = ChildController::spawn(&h.config_path, &dir, "a").await;
    a.wait_ready(Duration::from_secs(30)).await;
    let mut b = ChildController::spawn(&h.config_path, &dir, "b").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!b.ready().await);

    // A stops dead (as a stalled VM or a long GC would) past its lease.
    a.signal("STOP");
    b.wait_ready(ttl + Duration::from_secs(10)).await;
    let b_id = leader_holder(&etcd).await;
    let kept = b
        .csi
        .create_volume(create_req("pvc-b", 16 * MIB, Some(3)))
        .await
        .expect("the new leader creates")
        .into_inner()
        .volume
        .expect("volume")
        .volume_id;
    let before = everything(&etcd).await;
    let lvols = h.replica_lvols().await;

    // A wakes up believing, for a moment, that it still leads: whatever it
    // tries is refused, by its own deadline or by etcd's compare.
    a.signal("CONT");
    assert_refused_as_not_leader(
        a.csi
            .create_volume(create_req("pvc-a-late", 16 * MIB, Some(3)))
            .await,
        "this controller",
    );
    assert_refused_as_not_leader(
        a.csi.delete_volume(delete_req(&kept)).await,
        "this controller",
    );
    assert_eq!(
        everything(&etcd).await,
        before,
        "the deposed controller changed the store"
    );
    assert_eq!(h.replica_lvols().await, lvols, "nor any lvol");

    // A notices, stands by, and names the new leader.
    let deadline = Instant::now() + ttl * 2;
    while a.ready().await {
        assert!(
            Instant::now() < deadline,
            "the deposed controller still says it is ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_refused_as_not_leader(
        a.csi
            .create_volume(create_req("pvc-a-later", 16 * MIB, Some(3)))
            .await,
        &format!("controller {b_id} holds the leader lease"),
    );
    assert!(b.ready().await, "the new leader is undisturbed");
    assert_eq!(leader_holder(&etcd).await, b_id);
    b.csi
        .delete_volume(delete_req(&kept))
        .await
        .expect("the leader deletes");
}

fn quick_leader() -> LeaderConfig {
    // Renewals far apart: nothing notices the deposition before the test writes.
    LeaderConfig {
        lease_ttl_secs: 60,
        keepalive_interval_ms: Some(20_000),
        ..LeaderConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_refuses_every_write_of_a_deposed_leader_and_nothing_changes() {
    let server = tokio::task::spawn_blocking(EtcdServer::start)
        .await
        .expect("join")
        .expect("etcd");
    let other = raw_etcd(server.endpoint());

    for (case, takeover) in [("lease revoked", false), ("another leader", true)] {
        let mine = raw_etcd(server.endpoint());
        let leadership = Leadership::campaign(mine.clone(), &quick_leader());
        tokio::time::timeout(Duration::from_secs(10), leadership.elected())
            .await
            .expect("elected");
        mine.put("k", format!("v-{case}").into_bytes(), Expect::Any)
            .await
            .expect("the leader writes");
        let record = other.leader().await.expect("read").expect("leader key");
        assert_eq!(record.holder, leadership.identity());

        // Deposed behind its back: its lease revoked (as if it expired), and
        // maybe another controller elected.
        other.revoke_lease(record.lease).await.expect("revoke");
        let says = if takeover {
            let lease = other
                .grant_lease(Duration::from_secs(60))
                .await
                .expect("grant");
            let won = other
                .claim_leadership("controller-b", lease.id)
                .await
                .expect("claim");
            assert!(matches!(won, Claim::Won { .. }), "{won:?}");
            "controller controller-b took over"
        } else {
            "lease expired or was revoked"
        };
        let before = everything(&other).await;
        let refused = mine
            .put("k", b"from a deposed leader".to_vec(), Expect::Any)
            .await;
        assert!(
            matches!(&refused, Err(StoreError::NotLeader { reason })
                if reason.starts_with("this controller lost leadership") && reason.contains(says)),
            "{case}: {refused:?}"
        );
        // And every later write, without asking etcd.
        let refused = mine
            .txn(vec![
                TxnOp::Put {
                    key: "k2".into(),
                    value: b"x".to_vec(),
                    expect: Expect::Absent,
                },
                TxnOp::Delete {
                    key: "k".into(),
                    expect: Expect::Any,
                },
            ])
            .await;
        assert!(
            matches!(refused, Err(StoreError::NotLeader { .. })),
            "{refused:?}"
        );
        let refused = mine.delete("k", Expect::Any).await;
        assert!(
            matches!(refused, Err(StoreError::NotLeader { .. })),
            "{refused:?}"
        );
        assert_eq!(
            everything(&other).await,
            before,
            "{case}: the store changed"
        );

        // The elector notices (the write woke it) and stands by.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let role = leadership.status().role;
            if takeover {
                if matches!(&role, Role::Standby { reason } if reason.contains("controller-b holds"))
                {
                    break;
                }
            } else if !matches!(role, Role::Acting) {
                break;
            }
            assert!(Instant::now() < deadline, "{case}: still {role:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        leadership.resign().await;
        if let Some(b) = other.leader().await.expect("read") {
            other.revoke_lease(b.lease).await.expect("release");
        }
    }
}

/// A store that says when the journal was listed.
#[derive(Debug)]
struct ListingSignal {
    inner: Arc<dyn KvStore>,
    listed: tokio::sync::Notify,
}

#[async_trait]
impl KvStore for ListingSignal {
    async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, Revision)>, StoreError> {
        self.inner.get(key).await
    }
    async fn list_from(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<Entry>, StoreError> {
        let entries = self.inner.list_from(prefix, start_after, limit).await;
        if prefix == "ops/" {
            self.listed.notify_one();
        }
        entries
    }
    async fn delete(&self, key: &str, expect: Expect) -> Result<bool, StoreError> {
        self.inner.delete(key, expect).await
    }
    async fn txn(&self, ops: Vec<TxnOp>) -> Result<Revision, StoreError> {
        self.inner.txn(ops).await
    }
    async fn health(&self) -> Result<(), StoreError> {
        self.inner.health().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_leaves_a_journal_entry_alone_that_finished_or_changed_while_it_waited() {
    let mut h = Harness::start(3, StoreKind::Etcd).await;
    let vol = h.create_volume("pvc-reread", 16 * MIB, Some(3)).await;
    let published = h.publish(&vol, "node-0").await;
    let device = published["ublk.device"].clone();
    let data = pattern(64 * 1024, 9);
    write_device(&device, &data);
    h.stop_controller().await;

    let signal = Arc::new(ListingSignal {
        inner: Arc::new(raw_etcd(h.etcd.as_ref().expect("etcd").endpoint())),
        listed: tokio::sync::Notify::new(),
    });
    let store = Store::new(signal.clone());
    let nodes = Arc::new(NodeRegistry::from_config(&h.config()).expect("nodes"));
    nodes.refresh_all().await;
    let ctx = Context::new(store, nodes);
    let payload = UnpublishPayload {
        node: "node-0".into(),
        replicas: vec!["node-0".into(), "node-1".into(), "node-2".into()],
    };

    for case in ["finished", "moved on"] {
        // An unpublish is in flight: it holds the volume lock, its entry is journaled.
        let guard = ctx.lock(&vol).await;
        let mut journal = Journal::begin(
            &ctx.store,
            OperationKind::UnpublishVolume,
            &vol,
            Some("node-0"),
            "started",
            &payload,
        )
        .await
        .expect("journal");
        // Recovery lists the entry, then waits for the lock.
        let recovery = tokio::spawn({
            let ctx = ctx.clone();
            async move { reconciler::recover_pending(&ctx).await }
        });
        tokio::time::timeout(Duration::from_secs(10), signal.listed.notified())
            .await
            .expect("recovery lists the journal");
        // Meanwhile the operation finishes (and the volume is published again,
        // as the publication still says), or moves to another step.
        match case {
            "finished" => journal.finish().await.expect("finish"),
            _ => journal.step("started", &payload).await.expect("step"),
        }
        drop(guard);
        tokio::time::timeout(Duration::from_secs(30), recovery)
            .await
            .expect("recovery ends")
            .expect("join")
            .expect("recover");

        // Acting on the stale entry would have torn the live publication down.
        assert!(
            ctx.store
                .get_publication(&vol, "node-0")
                .await
                .expect("read")
                .is_some(),
            "{case}: the publication must survive"
        );
        assert!(
            Path::new(&device).exists(),
            "{case}: recovery acted on a stale entry and tore the published device {device} down"
        );
        assert_eq!(
            read_device(&device, data.len()),
            data,
            "{case}: the published device must still serve"
        );
        let pending = ctx.store.list_pending_operations().await.expect("ops");
        match case {
            "finished" => assert!(pending.is_empty(), "{pending:?}"),
            _ => {
                assert_eq!(
                    pending.len(),
                    1,
                    "{case}: the changed entry stays for a later pass"
                );
                ctx.store
                    .finish_operation(&pending[0].record.id)
                    .await
                    .expect("clean up");
            }
        }
    }
    drop(ctx);

    h.restart_controller().await;
    h.unpublish(&vol, "node-0").await;
    h.delete_volume(&vol).await;
    h.assert_clean().await;
}
