//! Changing `numberOfReplicas` of an existing volume (docs/rebuild.md,
//! "Changing the replica count") on sim nodes and a real etcd: through CSI
//! ControllerModifyVolume and the admin API `shorthorn ctl set-replicas`
//! uses, down and up while published with a writer running, up while
//! unpublished (thin), refusals that change nothing, repeats that do
//! nothing, and a controller killed mid-change. Every data test ends by
//! reading each replica's bytes directly from its node.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use csi_proto::ControllerModifyVolumeRequest;
use http_body_util::{BodyExt, Full};
use shorthorn_controller::admin::{self, ReplicaChangeView};
use shorthorn_controller::context::Context;
use shorthorn_controller::fence::Fencing;
use shorthorn_controller::naming;
use shorthorn_controller::rebuild::trigger;
use shorthorn_controller::store::ReplicaHealth;
use spdk_client::BdevLvolGetLvolsParams;
use support::crash::crash_at;
use support::writer::Writer;
use support::*;
use tonic::Code;

const SIZE: i64 = 32 * MIB;

fn modify_req(volume: &str, params: &[(&str, &str)]) -> ControllerModifyVolumeRequest {
    ControllerModifyVolumeRequest {
        volume_id: volume.to_string(),
        secrets: HashMap::new(),
        mutable_parameters: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// ControllerModifyVolume `numberOfReplicas=n` through the harness's CSI server.
async fn modify(h: &mut Harness, volume: &str, n: u32) -> Result<(), tonic::Status> {
    let n = n.to_string();
    h.csi
        .controller_modify_volume(modify_req(volume, &[("numberOfReplicas", &n)]))
        .await
        .map(|_| ())
}

async fn ctx_of(h: &Harness) -> Context {
    own_context(
        h.config(),
        agent_api::FrontendKind::Ublk,
        Fencing::default(),
    )
    .await
}

/// What the store says about a volume: its count, epoch, and each
/// replica's node and health (node order).
async fn state(ctx: &Context, volume: &str) -> (u32, u64, Vec<(String, ReplicaHealth)>) {
    let v = ctx
        .store
        .get_volume(volume)
        .await
        .expect("store")
        .expect("volume");
    let replicas = ctx
        .store
        .list_replicas(volume)
        .await
        .expect("store")
        .into_iter()
        .map(|r| (r.record.node, r.record.health))
        .collect();
    (v.record.replica_count, v.record.epoch, replicas)
}

fn nodes_of(replicas: &[(String, ReplicaHealth)]) -> Vec<String> {
    replicas.iter().map(|(n, _)| n.clone()).collect()
}

/// Whether node `i` holds the replica lvol of `volume`.
async fn holds_lvol(h: &Harness, i: usize, volume: &str) -> bool {
    let name = naming::replica_lvol(volume);
    h.spdk(i)
        .bdev_lvol_get_lvols(&BdevLvolGetLvolsParams::default())
        .await
        .expect("lvols")
        .iter()
        .any(|l| l.name == name)
}

/// Allocated clusters of the replica lvol of `volume` on node `i`.
async fn allocated(h: &Harness, i: usize, volume: &str) -> u64 {
    let name = naming::replica_lvol(volume);
    h.spdk(i)
        .bdev_lvol_get_lvols(&BdevLvolGetLvolsParams::default())
        .await
        .expect("lvols")
        .into_iter()
        .find(|l| l.name == name)
        .unwrap_or_else(|| panic!("no replica lvol on node-{i}"))
        .num_allocated_clusters
}

/// Asserts every replica of `volume` (read from its node, not through a
/// raid) holds `expect` in `[0, expect.len())`, and that they are `nodes`.
async fn assert_replicas_hold(h: &Harness, ctx: &Context, volume: &str, expect: &[u8]) {
    let (_, _, replicas) = state(ctx, volume).await;
    for (node, health) in &replicas {
        assert_eq!(*health, ReplicaHealth::Healthy, "replica on {node}");
        let i = h.node_index(node);
        let bytes = h.replica_bytes(i, volume, expect.len()).await;
        assert!(
            bytes == expect,
            "the replica on {node} does not hold the last acknowledged writes"
        );
    }
}

/// Waits until the writer has completed `n` more writes.
async fn let_write(w: &Writer, n: usize) {
    let start = w.completions().len();
    let deadline = Instant::now() + Duration::from_secs(20);
    while w.completions().len() < start + n {
        assert!(Instant::now() < deadline, "the writer stalled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_volume_scales_down_and_up_while_written() {
    let mut h = Harness::start(4, StoreKind::Etcd).await;
    let id = h.create_volume("pvc-scale", SIZE, Some(3)).await;
    let ctx = ctx_of(&h).await;
    let (_, _, before) = state(&ctx, &id).await;
    // Publish on a replica's node, so its local leg is the one to keep.
    let engine = before[0].0.clone();
    let e = h.node_index(&engine);
    h.publish(&id, &engine).await;
    let writer = Writer::start(h.spdk(e), naming::raid_bdev(&id));
    let_write(&writer, 50).await;

    // 3 -> 2 while the writer runs.
    let t = Instant::now();
    modify(&mut h, &id, 2).await.expect("scale down");
    println!("3 -> 2 while published: {:?}", t.elapsed());
    let (count, _, after) = state(&ctx, &id).await;
    assert_eq!(count, 2);
    assert_eq!(after.len(), 2);
    let removed: Vec<String> = nodes_of(&before)
        .into_iter()
        .filter(|n| !nodes_of(&after).contains(n))
        .collect();
    assert_eq!(removed.len(), 1);
    assert_ne!(removed[0], engine, "the engine node's own leg is kept");
    assert!(!holds_lvol(&h, h.node_index(&removed[0]), &id).await);
    assert_eq!(
        h.replica_export_hosts(&id, h.node_index(&removed[0])).await,
        None,
        "the dropped replica's export is gone"
    );
    assert_eq!(h.raid_member_nodes(&id, e).await, nodes_of(&after));
    let p = ctx
        .store
        .get_publication(&id, &engine)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.record.members, nodes_of(&after));
    let_write(&writer, 50).await;

    // 2 -> 3 while the writer runs: into the slot the removal freed.
    let t = Instant::now();
    modify(&mut h, &id, 3).await.expect("scale up");
    println!("2 -> 3 while published (full raid copy): {:?}", t.elapsed());
    let (count, _, grown) = state(&ctx, &id).await;
    assert_eq!(count, 3);
    assert_eq!(grown.len(), 3);
    assert!(grown.iter().all(|(_, h)| *h == ReplicaHealth::Healthy));
    assert_eq!(h.raid_member_nodes(&id, e).await, nodes_of(&grown));
    let_write(&writer, 50).await;

    // The same count again: nothing is done.
    let (_, epoch, _) = state(&ctx, &id).await;
    modify(&mut h, &id, 3).await.expect("repeat");
    assert_eq!(state(&ctx, &id).await.1, epoch, "a repeat changes nothing");

    let expect = writer.stop().await;
    h.unpublish(&id, &engine).await;
    assert_replicas_hold(&h, &ctx, &id, &expect).await;
    assert!(ctx
        .store
        .list_pending_operations()
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_published_raid_refuses_to_grow_and_the_unpublished_volume_grows_thin() {
    let mut h = Harness::start(3, StoreKind::Etcd).await;
    let id = h.create_volume("pvc-grow", SIZE, Some(2)).await;
    let ctx = ctx_of(&h).await;
    let engine = state(&ctx, &id).await.2[0].0.clone();
    let e = h.node_index(&engine);
    h.publish(&id, &engine).await;
    let writer = Writer::start(h.spdk(e), naming::raid_bdev(&id));
    let_write(&writer, 50).await;
    let (_, epoch, before) = state(&ctx, &id).await;
    let spare = (0..3)
        .find(|i| !nodes_of(&before).contains(&h.node_name(*i)))
        .unwrap();

    // The raid has two slots, both in use: refused, nothing changes.
    let err = modify(&mut h, &id, 3).await.expect_err("full raid");
    println!("refused: {}", err.message());
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("nothing was changed"), "{err:?}");
    assert!(err.message().contains("unpublished"), "{err:?}");
    assert_eq!(state(&ctx, &id).await, (2, epoch, before.clone()));
    assert!(!holds_lvol(&h, spare, &id).await);

    let mut expect = writer.stop().await;
    h.unpublish(&id, &engine).await;
    // Unpublished: a thin rebuild onto the spare node.
    let t = Instant::now();
    modify(&mut h, &id, 3).await.expect("scale up");
    println!("2 -> 3 unpublished (thin): {:?}", t.elapsed());
    let (count, _, grown) = state(&ctx, &id).await;
    assert_eq!(count, 3);
    assert!(nodes_of(&grown).contains(&h.node_name(spare)));
    assert_eq!(
        allocated(&h, spare, &id).await,
        allocated(&h, e, &id).await,
        "the new replica holds only the clusters written"
    );
    // It serves: a publish assembles three legs, and writes reach all.
    h.publish(&id, &engine).await;
    assert_eq!(h.raid_member_nodes(&id, e).await.len(), 3);
    let data = pattern(8192, 77);
    sim_write(&h.spdk(e), &naming::raid_bdev(&id), 4096, &data).await;
    expect[4096..4096 + 8192].copy_from_slice(&data);
    h.unpublish(&id, &engine).await;
    assert_replicas_hold(&h, &ctx, &id, &expect).await;

    // 3 -> 1 unpublished: two go, the lvols with them.
    modify(&mut h, &id, 1).await.expect("scale down");
    let (count, _, left) = state(&ctx, &id).await;
    assert_eq!((count, left.len()), (1, 1));
    for i in 0..3 {
        assert_eq!(
            holds_lvol(&h, i, &id).await,
            left[0].0 == h.node_name(i),
            "node-{i}"
        );
    }
    assert_replicas_hold(&h, &ctx, &id, &expect).await;
}

/// A refused ModifyVolume: volume id, mutable parameters, the code and a
/// piece of the message.
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Code, &'a str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_change_nothing_and_repeats_do_nothing() {
    let mut h = Harness::start(3, StoreKind::Etcd).await;
    let caps = h
        .csi
        .controller_get_capabilities(csi_proto::ControllerGetCapabilitiesRequest {})
        .await
        .expect("capabilities")
        .into_inner();
    assert!(
        format!("{caps:?}").contains("ModifyVolume"),
        "MODIFY_VOLUME is advertised: {caps:?}"
    );
    let id = h.create_volume("pvc-bad", SIZE, Some(2)).await;
    let ctx = ctx_of(&h).await;
    let before = state(&ctx, &id).await;
    let leftovers = h.leftovers().await;

    let cases: &[Case] = &[
        (
            &id,
            &[("XXX_FakeKey", "x")],
            Code::InvalidArgument,
            "numberOfReplicas",
        ),
        (
            &id,
            &[("staleReplicaTimeout", "5")],
            Code::InvalidArgument,
            "mutable",
        ),
        (
            &id,
            &[("numberOfReplicas", "0")],
            Code::InvalidArgument,
            "1 to 16",
        ),
        (
            &id,
            &[("numberOfReplicas", "17")],
            Code::InvalidArgument,
            "1 to 16",
        ),
        (
            &id,
            &[("numberOfReplicas", "three")],
            Code::InvalidArgument,
            "1 to 16",
        ),
        (&id, &[], Code::InvalidArgument, "mutable_parameters"),
        (
            "",
            &[("numberOfReplicas", "2")],
            Code::InvalidArgument,
            "volume_id",
        ),
        (
            "no-such-volume",
            &[("numberOfReplicas", "2")],
            Code::NotFound,
            "does not exist",
        ),
        // Three nodes, two hold replicas: two more cannot be placed.
        (
            &id,
            &[("numberOfReplicas", "4")],
            Code::ResourceExhausted,
            "nothing was changed",
        ),
    ];
    for (volume, params, code, needle) in cases {
        let err = h
            .csi
            .controller_modify_volume(modify_req(volume, params))
            .await
            .expect_err("refused");
        println!("{params:?}: {:?} {}", err.code(), err.message());
        assert_eq!(err.code(), *code, "{params:?}: {}", err.message());
        assert!(
            err.message().contains(needle),
            "{params:?}: {}",
            err.message()
        );
        assert_eq!(
            state(&ctx, &id).await,
            before,
            "{params:?} changed the volume"
        );
    }
    assert_eq!(h.leftovers().await, leftovers, "nothing was made on a node");
    assert!(ctx
        .store
        .list_pending_operations()
        .await
        .unwrap()
        .is_empty());

    // The same count: OK, nothing done (no epoch bump, no journal).
    modify(&mut h, &id, 2).await.expect("same count");
    assert_eq!(state(&ctx, &id).await, before);

    // The admin API (`shorthorn ctl set-replicas`) shares the function.
    let post = |body: &'static str| {
        http::Request::post(format!("/v1/volumes/{id}/replicas"))
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap()
    };
    let answer = admin::handle(&ctx, post("{\"count\": 2}")).await;
    assert_eq!(answer.status(), 200);
    let body = answer.into_body().collect().await.unwrap().to_bytes();
    let view: ReplicaChangeView = serde_json::from_slice(&body).unwrap();
    assert!(!view.changed);
    for bad in ["{\"count\": 0}", "{\"count\": \"x\"}", "{}"] {
        let answer = admin::handle(&ctx, post(bad)).await;
        assert_eq!(answer.status(), 400, "{bad}");
    }
    let answer = admin::handle(&ctx, post("{\"count\": 3}")).await;
    let status = answer.status();
    let body = answer.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let view: ReplicaChangeView = serde_json::from_slice(&body).unwrap();
    assert_eq!((view.from, view.to, view.added.len()), (2, 3, 1));
    assert!(!view.full_copy);
    assert_eq!(view.volume.replicas.len(), 3);
    assert_eq!(state(&ctx, &id).await.0, 3);

    // CreateVolume with a volume attribute class: the count comes from it.
    let mut req = create_req("pvc-vac", SIZE, Some(3));
    req.mutable_parameters
        .insert("numberOfReplicas".into(), "1".into());
    let vac = h
        .csi
        .create_volume(req)
        .await
        .expect("create with VAC")
        .into_inner()
        .volume
        .unwrap()
        .volume_id;
    assert_eq!(state(&ctx, &vac).await.0, 1);
    let mut req = create_req("pvc-vac-bad", SIZE, Some(3));
    req.mutable_parameters
        .insert("XXX_FakeKey".into(), "x".into());
    let err = h.csi.create_volume(req).await.expect_err("bad VAC");
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_killed_mid_change_is_completed_or_dropped() {
    let mut h = Harness::start(4, StoreKind::Etcd).await;
    let id = h.create_volume("pvc-crash", SIZE, Some(3)).await;
    let data = pattern(256 * 1024, 5);
    let ctx = ctx_of(&h).await;
    let holder = state(&ctx, &id).await.2[0].0.clone();
    h.publish(&id, &holder).await;
    sim_write(
        &h.spdk(h.node_index(&holder)),
        &naming::raid_bdev(&id),
        0,
        &data,
    )
    .await;
    h.unpublish(&id, &holder).await;
    h.stop_controller().await;

    // Down: at every step after the count is written, recovery completes
    // the removal; before it, nothing had changed.
    crash_at(&h, "change-replicas:planned", &["set-replicas", &id, "2"]).await;
    h.restart_controller().await;
    let ctx = ctx_of(&h).await;
    assert_eq!(state(&ctx, &id).await.0, 3);
    assert_eq!(state(&ctx, &id).await.2.len(), 3, "dropped at planned");
    assert!(ctx
        .store
        .list_pending_operations()
        .await
        .unwrap()
        .is_empty());
    let mut expect = vec![0u8; 512 * 1024];
    expect[..data.len()].copy_from_slice(&data);
    for (step, count) in [
        ("members-shrunk", 2),
        ("legs-removed", 1),
        ("count-raised", 2),
        ("lvols-deleted", 1),
    ] {
        h.stop_controller().await;
        crash_at(
            &h,
            &format!("change-replicas:{step}"),
            &["set-replicas", &id, &count.to_string()],
        )
        .await;
        h.restart_controller().await;
        let ctx = ctx_of(&h).await;
        assert!(
            ctx.store
                .list_pending_operations()
                .await
                .unwrap()
                .is_empty(),
            "{step}"
        );
        if step == "count-raised" {
            // Up: the count stays raised; the reconciler's rebuild adds
            // the missing replica.
            let (c, _, replicas) = state(&ctx, &id).await;
            assert_eq!((c, replicas.len()), (2, 1), "the count stays raised");
            let ran = trigger::run_due(&ctx).await.expect("rebuilds");
            assert_eq!(ran.len(), 1);
            ran[0].1.as_ref().expect("the missing replica is rebuilt");
        }
        let (c, _, replicas) = state(&ctx, &id).await;
        assert_eq!(
            (c, replicas.len() as u32),
            (count, count),
            "after a crash at {step}"
        );
        for i in 0..4 {
            assert_eq!(
                holds_lvol(&h, i, &id).await,
                nodes_of(&replicas).contains(&h.node_name(i)),
                "after a crash at {step}: node-{i}"
            );
        }
        assert_replicas_hold(&h, &ctx, &id, &expect).await;
        println!("crash at {step}: completed on recovery, {count} replica(s)");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowering_the_count_drops_a_stale_replica_first() {
    let mut h = Harness::start(3, StoreKind::Etcd).await;
    let id = h.create_volume("pvc-stale-first", SIZE, Some(3)).await;
    let ctx = ctx_of(&h).await;
    // node-0 goes stale: it is first in node order, so only the
    // stale-first rule picks it (healthy ones go from the end).
    h.publish(&id, "node-2").await;
    h.cluster.kill_node(0);
    let data = pattern(64 * 1024, 9);
    sim_write(&h.spdk(2), &naming::raid_bdev(&id), 0, &data).await;
    h.wait_replica_state(&id, "node-0", "stale").await;
    h.unpublish(&id, "node-2").await;
    h.cluster.restart_node(0).expect("restart node-0");
    support::safety::wait_for("node-0 back", Duration::from_secs(20), || async {
        h.lvstore_loaded(0).await.then_some(())
    })
    .await;
    assert!(holds_lvol(&h, 0, &id).await, "the stale lvol is back");

    modify(&mut h, &id, 2).await.expect("scale down");
    let (count, _, left) = state(&ctx, &id).await;
    assert_eq!(count, 2);
    assert_eq!(
        nodes_of(&left),
        ["node-1", "node-2"],
        "the stale replica goes first"
    );
    assert!(!holds_lvol(&h, 0, &id).await, "its lvol is deleted");
    assert_replicas_hold(&h, &ctx, &id, &data).await;
}

/// Child mode of the crash test (see support::crash).
#[tokio::test]
#[ignore]
async fn crash_child() {
    support::crash::child_main().await;
}
