//! The orphan sweep can never wipe a cluster: pointed at an empty store or
//! at another cluster's store it deletes nothing; it deletes a deleted
//! volume's lvols on a node that was down at once when the node returns;
//! what nothing explains it keeps for the grace period; stale revert lvols
//! and failed replicas' lvols go only once nothing uses them.
//!
//! Every test ends by reading replica bytes directly on the nodes.

mod support;

use std::time::Duration;

use shorthorn_controller::config::{ControllerConfig, StoreConfig};
use shorthorn_controller::context::Context;
use shorthorn_controller::nodes::stamp::{ClusterIdentity, Stamp};
use shorthorn_controller::nodes::NodeRegistry;
use shorthorn_controller::reconciler::sweep::SweepPolicy;
use shorthorn_controller::reconciler::{self, sweep_orphans};
use shorthorn_controller::store::{
    ClusterRecord, Expect, OperationKind, OperationRecord, ReplicaHealth, SCHEMA_VERSION,
};
use shorthorn_controller::{naming, ops, server};
use spdk_client::{BdevLvolCreateParams, SpdkClient};
use support::*;
use testkit::nodes::TestCluster;

const DATA_LEN: u64 = 256 * 1024;
/// The grace period of the tests that wait it out.
const GRACE: Duration = Duration::from_secs(2);

/// `config` on another etcd prefix of the same etcd.
fn on_prefix(mut config: ControllerConfig, prefix: &str) -> ControllerConfig {
    let StoreConfig::Etcd { prefix: p, .. } = &mut config.store else {
        panic!("these tests run on etcd");
    };
    *p = prefix.to_string();
    config
}

/// `config` with a short grace period.
fn short_grace(mut config: ControllerConfig) -> ControllerConfig {
    config.sweep.grace_secs = GRACE.as_secs();
    config
}

/// A context over `config` as a started controller has it (the store's
/// cluster identity, every node bootstrapped, its sweep policy), acting
/// beside the harness's controller without campaigning for the leader
/// lease: these tests run several sweepers with separate memories at once.
async fn acting_context(config: &ControllerConfig) -> Result<Context, String> {
    let store = server::open_store(&config.store)
        .await
        .map_err(|e| e.to_string())?;
    let nodes = std::sync::Arc::new(NodeRegistry::from_config(config).map_err(|e| e.to_string())?);
    let cluster = store.ensure_cluster().await.map_err(|e| e.to_string())?;
    nodes.set_cluster(ClusterIdentity {
        id: cluster.id,
        adopt: config.sweep.adopt_clusters.clone(),
    });
    nodes.refresh_all().await;
    Ok(Context::new(store, nodes).with_sweep_policy(SweepPolicy::from(&config.sweep)))
}

/// A context over `config` (and its sweep policy) that never read (or made)
/// a cluster identity: bootstrap stamps nothing, so only the sweep's own
/// guards stand between it and the nodes.
async fn bare_context(config: &ControllerConfig) -> Context {
    let store = server::open_store(&config.store).await.expect("store");
    let nodes = std::sync::Arc::new(NodeRegistry::from_config(config).expect("registry"));
    nodes.refresh_all().await;
    Context::new(store, nodes).with_sweep_policy(SweepPolicy::from(&config.sweep))
}

/// Every lvol on every node (stamps included) and every other Shorthorn
/// object: what a sweep that deletes nothing leaves unchanged.
async fn everything(h: &Harness) -> Vec<String> {
    let mut out = h.leftovers().await;
    out.extend(h.lvols_with_prefix(naming::CLUSTER_STAMP_PREFIX).await);
    out.sort();
    out
}

/// Writes a distinct pattern to `volume_id`'s replica lvol on every node
/// listed (directly, as the raid would).
async fn fill_replicas(h: &Harness, volume_id: &str, nodes: &[usize], seed: u8) -> Vec<u8> {
    let data = pattern(DATA_LEN as usize, seed);
    for &i in nodes {
        sim_write(&h.spdk(i), &replica_alias(volume_id), 0, &data).await;
    }
    data
}

/// Checks `volume_id`'s replica lvol on each of `nodes` holds `data`.
async fn assert_replicas_hold(h: &Harness, volume_id: &str, nodes: &[usize], data: &[u8]) {
    for &i in nodes {
        let read = sim_read(&h.spdk(i), &replica_alias(volume_id), 0, data.len() as u64).await;
        assert!(
            read == data,
            "replica of {volume_id} on node-{i} lost its bytes"
        );
    }
}

/// Creates lvol `name` (4 MiB, thin) on `c`; its uuid.
async fn make_lvol(c: &SpdkClient, name: &str) -> String {
    c.bdev_lvol_create(&BdevLvolCreateParams {
        lvol_name: name.to_string(),
        size_in_mib: 4,
        thin_provision: Some(true),
        lvs_name: Some(LVS.to_string()),
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("create lvol {name}: {e}"))
}

/// Whether lvol `name` exists on `c`.
async fn has_lvol(c: &SpdkClient, name: &str) -> bool {
    c.bdev_get(&format!("{LVS}/{name}"))
        .await
        .expect("bdev_get")
        .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_store_deletes_nothing_on_nodes_holding_another_stores_volumes() {
    let mut h = Harness::start(3, StoreKind::Etcd).await;
    let parked = h.create_volume("pvc-parked", 16 * MIB, Some(3)).await;
    let parked_data = fill_replicas(&h, &parked, &[0, 1, 2], 11).await;
    let used = h.create_volume("pvc-used", 16 * MIB, Some(3)).await;
    let device = h.publish(&used, "node-0").await["ublk.device"].clone();
    let used_data = pattern(DATA_LEN as usize, 12);
    write_device(&device, &used_data);
    let before = everything(&h).await;
    assert!(
        before.iter().any(|l| l.contains(": raid ")) && before.len() > 10,
        "the previous store's volumes are on the nodes: {before:#?}"
    );

    // 1. A new etcd prefix, as a controller started on it sees it: it makes
    // a cluster identity of its own and refuses the nodes at bootstrap.
    let fresh = on_prefix(short_grace(h.config()), "/fresh-store");
    let ctx = acting_context(&fresh)
        .await
        .expect("start on the empty store");
    for node in ctx.nodes.all() {
        let status = node.status();
        let error = status.last_error.unwrap_or_default();
        assert!(
            !status.bootstrapped && error.contains("stamped by Shorthorn cluster"),
            "{} must be refused as another cluster's node: {error:?}",
            node.name()
        );
    }
    for _ in 0..2 {
        reconciler::reconcile_once(&ctx).await.expect("reconcile");
        tokio::time::sleep(GRACE + Duration::from_millis(200)).await;
    }
    reconciler::reconcile_once(&ctx).await.expect("reconcile");
    assert_eq!(
        everything(&h).await,
        before,
        "a controller on a new store changed the nodes"
    );
    drop(ctx);

    // 2. A store without even a cluster record (wiped), with a context that
    // never stamped anything: the sweep itself refuses.
    let wiped = on_prefix(short_grace(h.config()), "/wiped-store");
    let ctx = bare_context(&wiped).await;
    assert!(ctx.store.get_cluster().await.expect("get").is_none());
    for _ in 0..2 {
        sweep_orphans(&ctx).await.expect("sweep");
        tokio::time::sleep(GRACE + Duration::from_millis(200)).await;
    }
    sweep_orphans(&ctx).await.expect("sweep");
    assert_eq!(
        everything(&h).await,
        before,
        "a wiped store changed the nodes"
    );

    // 3. The right cluster identity but no volume at all (a restore from
    // before the volumes existed): the nodes are ours, yet the store looks
    // empty next to what they hold.
    let original = server::open_store(&h.config().store).await.expect("store");
    let identity: ClusterRecord = original
        .get_cluster()
        .await
        .expect("get")
        .expect("the harness made one")
        .record;
    let restored = on_prefix(short_grace(h.config()), "/restored-store");
    let ctx = bare_context(&restored).await;
    let raw = serde_json::to_vec(&identity).expect("encode");
    // "cluster" is the cluster record's key (store/keys.rs).
    ctx.store
        .kv()
        .put("cluster", raw, Expect::Absent)
        .await
        .expect("restore the cluster record alone");
    for _ in 0..2 {
        sweep_orphans(&ctx).await.expect("sweep");
        tokio::time::sleep(GRACE + Duration::from_millis(200)).await;
    }
    sweep_orphans(&ctx).await.expect("sweep");
    assert_eq!(
        ctx.nodes.get("node-1").expect("node").status().stamp,
        Some(Stamp::Ours)
    );
    assert_eq!(
        everything(&h).await,
        before,
        "an empty store of the right cluster changed the nodes"
    );
    drop(ctx);

    // The real store's controller still serves both volumes, bytes intact.
    assert_replicas_hold(&h, &parked, &[0, 1, 2], &parked_data).await;
    assert_eq!(read_device(&device, used_data.len()), used_data);
    h.unpublish(&used, "node-0").await;
    assert_replicas_hold(&h, &used, &[0, 1, 2], &used_data).await;
    h.delete_volume(&used).await;
    h.delete_volume(&parked).await;
    h.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_clusters_store_deletes_nothing_on_this_clusters_nodes() {
    let mut h = Harness::start(2, StoreKind::Etcd).await;
    let ours = h.create_volume("pvc-ours", 16 * MIB, Some(2)).await;
    let data = fill_replicas(&h, &ours, &[0, 1], 21).await;

    // Cluster B: its own store (another prefix) and its own node, with a volume.
    let other = tokio::task::spawn_blocking(|| TestCluster::start(1))
        .await
        .expect("join")
        .expect("start B's node");
    let b_node = other
        .controller_toml(&["ublk"])
        .replace("\"node-0\"", "\"b-0\"");
    let etcd = h.etcd.as_ref().expect("etcd").endpoint();
    let b_toml = format!(
        "reconcile_interval_secs = 3600\n[sweep]\ngrace_secs = {}\n[store]\netcd = {{ endpoints = [{etcd:?}], prefix = \"/cluster-b\" }}\n",
        GRACE.as_secs()
    );
    let b_config = ControllerConfig::from_toml(&format!("{b_toml}\n{b_node}")).expect("B config");
    let b = acting_context(&b_config).await.expect("start B");
    let theirs = own_volume(&b, "pvc-theirs", 16, 1).await;

    // B's store, mistakenly given this cluster's nodes too, with a context
    // that never stamped anything: only the sweep's stamp check protects.
    let mut mixed = b_config.clone();
    mixed.nodes.extend(h.config().nodes);
    let before = everything(&h).await;
    let ctx = bare_context(&mixed).await;
    for _ in 0..2 {
        sweep_orphans(&ctx).await.expect("sweep");
        tokio::time::sleep(GRACE + Duration::from_millis(200)).await;
    }
    sweep_orphans(&ctx).await.expect("sweep");
    for name in ["node-0", "node-1"] {
        assert!(
            matches!(
                ctx.nodes.get(name).expect("node").status().stamp,
                Some(Stamp::Foreign { .. })
            ),
            "{name} must be seen as another cluster's"
        );
    }
    assert_eq!(
        everything(&h).await,
        before,
        "another cluster's sweep changed this cluster's nodes"
    );
    // B's own node is B's: its volume stays, swept normally.
    let b_spdk = SpdkClient::unix(other.node(0).rpc_socket.clone());
    assert!(has_lvol(&b_spdk, &naming::replica_lvol(&theirs)).await);

    // And a controller started on B's store refuses this cluster's nodes.
    let started = acting_context(&mixed).await.expect("start mixed");
    let refused = started.nodes.get("node-0").expect("node").status();
    assert!(
        refused
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("adopt_clusters")),
        "{refused:?}"
    );
    reconciler::reconcile_once(&started)
        .await
        .expect("reconcile");
    assert_eq!(everything(&h).await, before);

    assert_replicas_hold(&h, &ours, &[0, 1], &data).await;
    h.delete_volume(&ours).await;
    h.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_volumes_lvol_on_a_node_that_was_down_is_swept_when_it_returns() {
    let mut h = Harness::start(3, StoreKind::Etcd).await;
    let kept = h.create_volume("pvc-kept", 16 * MIB, Some(3)).await;
    let kept_data = fill_replicas(&h, &kept, &[0, 1, 2], 31).await;
    let doomed = h.create_volume("pvc-doomed", 16 * MIB, Some(3)).await;

    h.cluster.kill_node(2);
    h.delete_volume(&doomed).await;
    // While node-2 is down the tombstone stays: it may still hold the lvol.
    let down = acting_context(&h.config()).await.expect("start");
    sweep_orphans(&down).await.expect("sweep with node-2 down");
    assert!(down
        .store
        .get_tombstone(&doomed)
        .await
        .expect("get")
        .is_some());
    drop(down);
    h.cluster.restart_node(2).expect("restart node-2");

    // Default grace period (10 min): only the tombstone can explain a
    // deletion within this test. Starting bootstraps node-2 again (its
    // lvstore loads from its base bdev).
    let ctx = acting_context(&h.config()).await.expect("start");
    let lvol = naming::replica_lvol(&doomed);
    assert!(
        has_lvol(&h.spdk(2), &lvol).await,
        "node-2 was down during DeleteVolume and still holds the lvol"
    );
    assert!(!has_lvol(&h.spdk(0), &lvol).await);
    assert_eq!(ctx.sweeper.policy.grace, Duration::from_secs(600));
    assert!(ctx
        .store
        .get_tombstone(&doomed)
        .await
        .expect("get")
        .is_some());
    sweep_orphans(&ctx).await.expect("sweep");
    assert!(
        !has_lvol(&h.spdk(2), &lvol).await,
        "the deleted volume's lvol is swept when its node returns"
    );
    // Nothing of it is left anywhere: the tombstone goes too.
    assert!(ctx
        .store
        .get_tombstone(&doomed)
        .await
        .expect("get")
        .is_none());
    assert_replicas_hold(&h, &kept, &[0, 1, 2], &kept_data).await;
    h.delete_volume(&kept).await;
    h.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unexplained_lvol_is_kept_through_the_grace_period_then_swept() {
    let mut h = Harness::start(2, StoreKind::Etcd).await;
    let real = h.create_volume("pvc-real", 16 * MIB, Some(2)).await;
    let data = fill_replicas(&h, &real, &[0, 1], 41).await;
    let stranger = naming::replica_lvol(&naming::new_volume_id());
    let uuid = make_lvol(&h.spdk(1), &stranger).await;
    let stranger_data = pattern(DATA_LEN as usize, 42);
    sim_write(&h.spdk(1), &uuid, 0, &stranger_data).await;

    let config = short_grace(h.config());
    let ctx = acting_context(&config).await.expect("start");
    sweep_orphans(&ctx).await.expect("first sight");
    tokio::time::sleep(GRACE / 2).await;
    sweep_orphans(&ctx).await.expect("within the grace period");
    assert!(
        has_lvol(&h.spdk(1), &stranger).await,
        "kept during the grace period"
    );
    assert_eq!(
        sim_read(&h.spdk(1), &uuid, 0, DATA_LEN).await,
        stranger_data,
        "its bytes untouched during the grace period"
    );

    // A restarted controller starts the clock again.
    tokio::time::sleep(GRACE).await;
    let restarted = acting_context(&config).await.expect("restart");
    sweep_orphans(&restarted).await.expect("first sight again");
    assert!(
        has_lvol(&h.spdk(1), &stranger).await,
        "a restarted controller waits the grace period again"
    );

    // The first controller has now seen it for longer than the grace period.
    sweep_orphans(&ctx).await.expect("after the grace period");
    assert!(
        !has_lvol(&h.spdk(1), &stranger).await,
        "swept once unexplained for the grace period"
    );
    assert_replicas_hold(&h, &real, &[0, 1], &data).await;
    h.delete_volume(&real).await;
    h.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_revert_lvol_is_swept_only_once_no_revert_is_journaled() {
    let mut h = Harness::start(2, StoreKind::Etcd).await;
    let id = h.create_volume("pvc-revert", 16 * MIB, Some(2)).await;
    let data = fill_replicas(&h, &id, &[0, 1], 51).await;
    let temp = naming::revert_lvol(&id);
    let temp_uuid = make_lvol(&h.spdk(0), &temp).await;
    sim_write(&h.spdk(0), &temp_uuid, 0, &pattern(DATA_LEN as usize, 52)).await;

    let ctx = acting_context(&short_grace(h.config()))
        .await
        .expect("start");
    // A revert in flight (journaled): its temporary lvol is never touched.
    let op = OperationRecord {
        version: SCHEMA_VERSION,
        id: format!("revert-volume-{id}"),
        kind: OperationKind::RevertVolume,
        volume_id: id.clone(),
        step: "cloned".into(),
        payload: serde_json::json!({}),
        started_at: std::time::SystemTime::now(),
    };
    ctx.store.begin_operation(&op).await.expect("journal");
    for _ in 0..2 {
        sweep_orphans(&ctx).await.expect("sweep");
        tokio::time::sleep(GRACE + Duration::from_millis(200)).await;
    }
    sweep_orphans(&ctx).await.expect("sweep");
    assert!(
        has_lvol(&h.spdk(0), &temp).await,
        "a journaled revert's lvol is kept"
    );

    // The revert is over: the leftover waits out the grace period, then goes.
    ctx.store.finish_operation(&op.id).await.expect("finish");
    sweep_orphans(&ctx).await.expect("first sight");
    assert!(has_lvol(&h.spdk(0), &temp).await, "kept at first sight");
    tokio::time::sleep(GRACE + Duration::from_millis(200)).await;
    sweep_orphans(&ctx).await.expect("after the grace period");
    assert!(
        !has_lvol(&h.spdk(0), &temp).await,
        "the stale -rv lvol is swept"
    );
    assert_replicas_hold(&h, &id, &[0, 1], &data).await;
    h.delete_volume(&id).await;
    h.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_replicas_lvol_is_kept_and_a_failed_ones_swept_once_unpublished() {
    let mut h = Harness::start(3, StoreKind::Etcd).await;
    let id = h.create_volume("pvc-failed", 16 * MIB, Some(3)).await;
    let device = h.publish(&id, "node-0").await["ublk.device"].clone();
    write_device(&device, &pattern(DATA_LEN as usize, 61));

    // node-2 dies; the next write drops its leg and the replica is stale.
    h.cluster.kill_node(2);
    let data = pattern(DATA_LEN as usize, 62);
    let (dev, d) = (device.clone(), data.clone());
    tokio::task::spawn_blocking(move || write_device(&dev, &d))
        .await
        .expect("write while degraded");
    assert!(h.volume_condition(&id).await.message.contains("node-2"));
    h.cluster.restart_node(2).expect("restart node-2");
    let ctx = acting_context(&short_grace(h.config()))
        .await
        .expect("start");
    let stale = ctx
        .store
        .get_replica(&id, "node-2")
        .await
        .expect("get")
        .expect("record");
    assert_eq!(stale.record.health, ReplicaHealth::Stale);
    let lvol = naming::replica_lvol(&id);
    assert!(has_lvol(&h.spdk(2), &lvol).await);

    // A stale replica's lvol is what a delta rebuild starts from: kept,
    // published or not, however long it waits.
    for _ in 0..2 {
        sweep_orphans(&ctx).await.expect("sweep");
        tokio::time::sleep(GRACE + Duration::from_millis(200)).await;
    }
    sweep_orphans(&ctx).await.expect("sweep");
    assert!(
        has_lvol(&h.spdk(2), &lvol).await,
        "stale: kept while published"
    );
    ops::unpublish::unpublish(&ctx, &id, Some("node-0"))
        .await
        .expect("unpublish");
    sweep_orphans(&ctx).await.expect("sweep");
    tokio::time::sleep(GRACE + Duration::from_millis(200)).await;
    sweep_orphans(&ctx).await.expect("sweep");
    assert!(
        has_lvol(&h.spdk(2), &lvol).await,
        "stale: kept once unpublished"
    );

    // Given up as failed (lost for good), it goes after the grace period;
    // the healthy ones stay.
    let mut failed = stale.record.clone();
    failed.health = ReplicaHealth::Failed;
    ctx.store
        .put_replica(&failed, Expect::Revision(stale.revision))
        .await
        .expect("mark failed");
    sweep_orphans(&ctx).await.expect("first sight");
    assert!(has_lvol(&h.spdk(2), &lvol).await, "kept at first sight");
    tokio::time::sleep(GRACE + Duration::from_millis(200)).await;
    sweep_orphans(&ctx).await.expect("after the grace period");
    assert!(
        !has_lvol(&h.spdk(2), &lvol).await,
        "the failed replica's lvol is swept"
    );
    assert_replicas_hold(&h, &id, &[0, 1], &data).await;
    let record = ctx
        .store
        .get_replica(&id, "node-2")
        .await
        .expect("get")
        .expect("the failed replica stays recorded until it is replaced");
    assert_eq!(record.record.health, ReplicaHealth::Failed);

    // It is published again from the healthy replicas, with the last writes.
    let publish_context = ops::publish::publish(&ctx, &id, "node-1", false)
        .await
        .expect("publish");
    assert_eq!(
        read_device(&publish_context["ublk.device"], data.len()),
        data
    );
    ops::unpublish::unpublish(&ctx, &id, Some("node-1"))
        .await
        .expect("unpublish");
    drop(ctx);
    h.delete_volume(&id).await;
    h.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_changes_cluster_only_by_proof_from_the_store_or_by_the_operator() {
    let mut h = Harness::start(2, StoreKind::Etcd).await;
    let id = h.create_volume("pvc-adopt", 16 * MIB, Some(2)).await;
    let data = fill_replicas(&h, &id, &[0, 1], 71).await;
    let original = server::open_store(&h.config().store).await.expect("store");
    let ours = original
        .get_cluster()
        .await
        .expect("get")
        .expect("cluster")
        .record
        .id;
    let stamp = naming::cluster_stamp_lvol(&ours);
    assert!(has_lvol(&h.spdk(0), &stamp).await && has_lvol(&h.spdk(1), &stamp).await);
    let config = short_grace(h.config());

    // node-1 loses its stamp and holds an lvol this store cannot explain:
    // bootstrap does not stamp it, and the sweep neither stamps nor cleans it.
    h.spdk(1)
        .bdev_lvol_delete(&spdk_client::BdevLvolDeleteParams {
            name: format!("{LVS}/{stamp}"),
        })
        .await
        .expect("delete the stamp by hand");
    let stranger = naming::replica_lvol(&naming::new_volume_id());
    make_lvol(&h.spdk(1), &stranger).await;
    let ctx = acting_context(&config).await.expect("start");
    for _ in 0..2 {
        sweep_orphans(&ctx).await.expect("sweep");
        tokio::time::sleep(GRACE + Duration::from_millis(200)).await;
    }
    sweep_orphans(&ctx).await.expect("sweep");
    assert_eq!(
        ctx.nodes.get("node-1").expect("node").status().stamp,
        Some(Stamp::Unstamped { data_lvols: 2 })
    );
    assert!(
        has_lvol(&h.spdk(1), &stranger).await && !has_lvol(&h.spdk(1), &stamp).await,
        "an unstamped node the store cannot explain is neither cleaned nor stamped"
    );

    // Once the store explains every lvol on it, the sweep stamps it again.
    h.spdk(1)
        .bdev_lvol_delete(&spdk_client::BdevLvolDeleteParams {
            name: format!("{LVS}/{stranger}"),
        })
        .await
        .expect("the operator removes the stranger");
    sweep_orphans(&ctx).await.expect("sweep");
    assert!(
        has_lvol(&h.spdk(1), &stamp).await,
        "the store proved the node is this cluster's"
    );
    drop(ctx);

    // A controller on a new store takes the nodes over only when told to.
    let mut takeover = on_prefix(config, "/takeover");
    takeover.sweep.adopt_clusters = vec![ours.clone()];
    let ctx = acting_context(&takeover)
        .await
        .expect("start with adopt_clusters");
    let new_id = ctx.nodes.cluster().expect("identity").id.clone();
    assert_ne!(new_id, ours);
    for i in 0..2 {
        assert!(
            has_lvol(&h.spdk(i), &naming::cluster_stamp_lvol(&new_id)).await
                && !has_lvol(&h.spdk(i), &stamp).await,
            "node-{i} is re-stamped as the new cluster's"
        );
    }
    let node = ctx.nodes.get("node-0").expect("node").status();
    assert!(node.bootstrapped && node.last_error.is_none(), "{node:?}");
    // The new store has no volume: the old one's lvols are left alone.
    sweep_orphans(&ctx).await.expect("sweep");
    assert_replicas_hold(&h, &id, &[0, 1], &data).await;
    drop(ctx);

    h.delete_volume(&id).await;
    h.assert_clean().await;
}
