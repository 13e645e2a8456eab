//! A rebuild whose target or source node dies mid-copy (docs/rebuild.md,
//! "Failure at each step"), on sim nodes and a real etcd: the rebuild is
//! abandoned cleanly (nothing of it left on the nodes that answer, no
//! journal entry, the volume's records as they were, the volume serving
//! degraded), then retried onto a reachable node and completed; what the
//! dead node kept is swept once it answers again. Every test ends by
//! reading each replica's bytes, and each snapshot's through a clone, on
//! its node. Shallow copies are paced (`sim_set_copy_pace`) so that the
//! node dies while a copy runs.

mod support;

use std::time::Duration;

use agent_api::FrontendKind;
use serde_json::json;
use shorthorn_controller::config::RebuildConfig;
use shorthorn_controller::context::Context;
use shorthorn_controller::fence::Fencing;
use shorthorn_controller::naming;
use shorthorn_controller::rebuild::{self, trigger, Mode};
use spdk_client::{BdevLvolCloneParams, BdevLvolDeleteParams, BdevLvolGetLvolsParams};
use support::safety::wait_for;
use support::*;

const CHUNK: usize = 256 * 1024;
const CLUSTER: usize = 4 * 1024 * 1024;
const SPAN: usize = 16 * 1024 * 1024;
/// Each shallow copy waits this long before each cluster.
const PACE_MS: u64 = 300;

/// Writes `data` at `offset` of a block device and flushes it.
async fn write_at(path: &str, offset: usize, data: Vec<u8>) {
    let p = path.to_string();
    tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap_or_else(|e| panic!("open {p}: {e}"));
        f.write_all_at(&data, offset as u64).expect("write device");
        f.sync_all().expect("fsync device");
    })
    .await
    .expect("write");
}

/// Reads `[0, SPAN)` of a block device.
async fn read_dev(path: &str) -> Vec<u8> {
    let p = path.to_string();
    tokio::task::spawn_blocking(move || read_device(&p, SPAN))
        .await
        .expect("read")
}

/// Bytes `[0, SPAN)` of bdev `alias` on node `i`, in 4 MiB pieces.
async fn read_all(h: &Harness, i: usize, alias: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(SPAN);
    for off in (0..SPAN).step_by(CLUSTER) {
        out.extend(
            h.cluster
                .data_path()
                .read(h.cluster.node(i), alias, off as u64, CLUSTER as u64)
                .await
                .unwrap_or_else(|e| panic!("reading {alias} on node-{i}: {e}")),
        );
    }
    out
}

/// Restarts node `i` and waits until the controller has loaded its lvstore.
async fn bring_back(h: &mut Harness, ctx: &Context, i: usize) {
    h.cluster.restart_node(i).expect("restart");
    let h = &*h;
    wait_for(
        "the returning node's lvstore",
        Duration::from_secs(20),
        || async {
            ctx.nodes.refresh_all().await;
            h.lvstore_loaded(i).await.then_some(())
        },
    )
    .await;
}

/// Clones snapshot `id` on node `i`, reads it, deletes the clone.
async fn snapshot_bytes(h: &Harness, i: usize, id: &str) -> Vec<u8> {
    let c = h.spdk(i);
    let clone = format!("verify-{}", &id[..8]);
    c.bdev_lvol_clone(&BdevLvolCloneParams {
        snapshot_name: snapshot_alias(id),
        clone_name: clone.clone(),
    })
    .await
    .unwrap_or_else(|e| panic!("clone of snapshot {id} on node-{i}: {e}"));
    let alias = format!("{LVS}/{clone}");
    let bytes = read_all(h, i, &alias).await;
    c.bdev_lvol_delete(&BdevLvolDeleteParams { name: alias })
        .await
        .expect("delete clone");
    bytes
}

/// Lvols of node `i` (name, allocated clusters).
async fn lvols(h: &Harness, i: usize) -> Vec<(String, u64)> {
    h.spdk(i)
        .bdev_lvol_get_lvols(&BdevLvolGetLvolsParams::default())
        .await
        .expect("lvols")
        .into_iter()
        .map(|l| (l.name, l.num_allocated_clusters))
        .collect()
}

/// What a rebuild of `volume` left on node `i`: its working lvol, rebuild
/// snapshot, snapshot copies no record lists, rebuild exports and links.
async fn leftovers(h: &Harness, ctx: &Context, volume: &str, i: usize) -> Vec<String> {
    let mut out = Vec::new();
    for (name, _) in lvols(h, i).await {
        if name == naming::rebuild_lvol(volume) || name == naming::rebuild_snapshot_lvol(volume) {
            out.push(name);
        } else if let Some(id) = name.strip_prefix(naming::SNAPSHOT_PREFIX) {
            let listed = ctx
                .store
                .get_snapshot(id)
                .await
                .expect("store")
                .is_some_and(|s| {
                    s.record
                        .replica_snapshots
                        .iter()
                        .any(|r| r.node == h.node_name(i))
                });
            if !listed {
                out.push(format!("unlisted {name}"));
            }
        }
    }
    for line in h.leftovers_on(&[i]).await {
        if line.contains(":rebuild-") || line.contains("-rebuild-") {
            out.push(line);
        }
    }
    out
}

/// The replica records of `volume`: (node, health), by node.
async fn records(ctx: &Context, volume: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = ctx
        .store
        .list_replicas(volume)
        .await
        .expect("replicas")
        .into_iter()
        .map(|r| (r.record.node, r.record.health.as_str().to_string()))
        .collect();
    out.sort();
    out
}

fn rec(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, h)| (n.to_string(), h.to_string()))
        .collect()
}

async fn ctx_of(h: &Harness) -> Context {
    own_context(h.config(), FrontendKind::Ublk, Fencing::default())
        .await
        .with_rebuild(RebuildConfig {
            poll_interval_ms: 20,
            ..RebuildConfig::default()
        })
}

/// Paces every node's shallow copies.
async fn pace(h: &Harness, nodes: &[usize], ms: u64) {
    for &i in nodes {
        h.spdk(i)
            .call_raw("sim_set_copy_pace", Some(json!({ "cluster_delay_ms": ms })))
            .await
            .expect("sim_set_copy_pace");
    }
}

/// Five nodes, node-3 and node-4 standby; a 3-replica volume on node-0..2
/// with a snapshot of two clusters and two more clusters written above it,
/// the last while node-2 is dead (it goes stale); unpublished; node-3 and
/// node-4 join. Returns the volume, its bytes and the snapshot with its bytes.
async fn degraded(h: &mut Harness, name: &str) -> (String, Vec<u8>, String, Vec<u8>) {
    let mut req = create_req(name, SPAN as i64, Some(3));
    req.parameters
        .insert("staleReplicaTimeout".into(), "0.02".into());
    let id = h
        .csi
        .create_volume(req)
        .await
        .expect("create")
        .into_inner()
        .volume
        .expect("volume")
        .volume_id;
    let mut expect = vec![0u8; SPAN];
    let dev = h.publish(&id, "node-0").await["ublk.device"].clone();
    for (k, off) in [0, CLUSTER].into_iter().enumerate() {
        let data = pattern(CHUNK, 1 + k as u8);
        write_at(&dev, off, data.clone()).await;
        expect[off..off + CHUNK].copy_from_slice(&data);
    }
    h.unpublish(&id, "node-0").await;
    let snap = h.create_snapshot("faults-snap", &id).await;
    let snap_bytes = expect.clone();
    let dev = h.publish(&id, "node-0").await["ublk.device"].clone();
    let data = pattern(CHUNK, 7);
    write_at(&dev, 2 * CLUSTER, data.clone()).await;
    expect[2 * CLUSTER..2 * CLUSTER + CHUNK].copy_from_slice(&data);
    h.cluster.kill_node(2);
    let data = pattern(CHUNK, 8);
    write_at(&dev, 3 * CLUSTER + CHUNK, data.clone()).await;
    expect[3 * CLUSTER + CHUNK..3 * CLUSTER + 2 * CHUNK].copy_from_slice(&data);
    h.wait_replica_state(&id, "node-2", "stale").await;
    h.unpublish(&id, "node-0").await;
    for i in [3, 4] {
        h.cluster.launch_standby(i).expect("start a standby node");
    }
    // Past the volume's staleReplicaTimeout (1.2 s).
    tokio::time::sleep(Duration::from_millis(1300)).await;
    (id, expect, snap, snap_bytes)
}

/// Waits until `check` holds on node `i`'s lvols, polling every 10 ms.
async fn wait_lvols(h: &Harness, i: usize, what: &str, check: impl Fn(&[(String, u64)]) -> bool) {
    wait_for(what, Duration::from_secs(20), || async {
        let l = lvols(h, i).await;
        check(&l).then_some(())
    })
    .await;
}

/// Checks every replica on `nodes` holds `expect`, and its snapshot
/// `snap` holds `snap_expect`.
async fn assert_replicas(
    h: &Harness,
    volume: &str,
    nodes: &[usize],
    expect: &[u8],
    snap: &str,
    snap_expect: &[u8],
) {
    for &i in nodes {
        assert!(
            read_all(h, i, &replica_alias(volume)).await == expect,
            "replica on node-{i} does not hold the volume's bytes"
        );
        assert!(
            snapshot_bytes(h, i, snap).await == snap_expect,
            "snapshot on node-{i} does not hold its bytes"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_dying_mid_copy_abandons_the_rebuild_which_is_retried_elsewhere() {
    let mut h = Harness::start_standby(5, 2, StoreKind::Etcd, "", &["ublk"]).await;
    let (id, expect, snap, snap_expect) = degraded(&mut h, "pvc-target-dies").await;
    let ctx = ctx_of(&h).await;
    pace(&h, &[0, 1], PACE_MS).await;

    let due = trigger::due(&ctx).await.expect("due");
    assert_eq!(due.len(), 1, "{due:?}");
    let req = due[0].clone();
    assert_eq!(req.mode, Mode::NewNode);
    let t = h.node_index(&req.target);
    let working = naming::rebuild_lvol(&id);
    let run = {
        let ctx = ctx.clone();
        let req = req.clone();
        tokio::spawn(async move { rebuild::rebuild(&ctx, &req).await })
    };
    // The target dies in the copy of the live layer: the snapshot layer is
    // copied and snapshotted there, one of the two live clusters landed.
    let copy = naming::snapshot_lvol(&snap);
    wait_lvols(
        &h,
        t,
        "the snapshot copy and a live cluster on the target",
        |l| l.iter().any(|(n, _)| *n == copy) && l.iter().any(|(n, c)| *n == working && *c == 1),
    )
    .await;
    h.cluster.kill_node(t);
    let err = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the rebuild gives up")
        .expect("join")
        .expect_err("the target died mid-copy");
    println!("target {} died mid-copy: {err}", req.target);

    // Abandoned cleanly: no journal, records as they were, nothing left on
    // the nodes that answer, and the volume serves (degraded).
    assert!(ctx
        .store
        .list_pending_operations()
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        records(&ctx, &id).await,
        rec(&[
            ("node-0", "healthy"),
            ("node-1", "healthy"),
            ("node-2", "stale")
        ])
    );
    for i in [0, 1] {
        assert!(
            leftovers(&h, &ctx, &id, i).await.is_empty(),
            "node-{i}: {:?}",
            leftovers(&h, &ctx, &id, i).await
        );
    }
    let dev = h.publish(&id, "node-0").await["ublk.device"].clone();
    assert!(
        read_dev(&dev).await == expect,
        "the degraded volume serves its bytes"
    );
    assert_eq!(h.raid_member_nodes(&id, 0).await, vec!["node-0", "node-1"]);
    h.unpublish(&id, "node-0").await;

    // Retried onto the node that answers.
    let other = if t == 3 { 4 } else { 3 };
    let ran = trigger::run_due(&ctx).await.expect("retry");
    assert_eq!(ran.len(), 1);
    assert_eq!(
        ran[0].0.target,
        h.node_name(other),
        "the dead node is not chosen"
    );
    let outcome = ran[0].1.as_ref().expect("the retried rebuild");
    println!(
        "retried onto node-{other}: {} bytes copied in {:?}",
        outcome.bytes_copied, outcome.elapsed
    );
    let other_name = h.node_name(other);
    assert_eq!(
        records(&ctx, &id).await,
        rec(&[
            ("node-0", "healthy"),
            ("node-1", "healthy"),
            (other_name.as_str(), "healthy")
        ])
    );

    // The dead target returns: what it kept of the failed copy is swept.
    bring_back(&mut h, &ctx, t).await;
    let before = leftovers(&h, &ctx, &id, t).await;
    assert_eq!(
        before.len(),
        2,
        "the dead target kept its working lvol and the snapshot copy: {before:?}"
    );
    println!("left on the returning target: {before:?}");
    shorthorn_controller::reconciler::reconcile_once(&ctx)
        .await
        .expect("reconcile");
    assert!(
        leftovers(&h, &ctx, &id, t).await.is_empty(),
        "{:?}",
        leftovers(&h, &ctx, &id, t).await
    );
    assert!(
        !lvols(&h, t)
            .await
            .iter()
            .any(|(n, _)| n.contains(&id) || n == &naming::snapshot_lvol(&snap)),
        "nothing of the volume stays on node-{t}: {:?}",
        lvols(&h, t).await
    );
    assert_replicas(&h, &id, &[0, 1, other], &expect, &snap, &snap_expect).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_dying_mid_copy_abandons_the_rebuild_which_is_retried_from_another() {
    let mut h = Harness::start_standby(5, 2, StoreKind::Etcd, "", &["ublk"]).await;
    let (id, expect, snap, snap_expect) = degraded(&mut h, "pvc-source-dies").await;
    let ctx = ctx_of(&h).await;
    pace(&h, &[0, 1], PACE_MS).await;

    let due = trigger::due(&ctx).await.expect("due");
    assert_eq!(due.len(), 1, "{due:?}");
    let req = due[0].clone();
    let s = h.node_index(&req.source);
    let t = h.node_index(&req.target);
    let rbs = naming::rebuild_snapshot_lvol(&id);
    let run = {
        let ctx = ctx.clone();
        let req = req.clone();
        tokio::spawn(async move { rebuild::rebuild(&ctx, &req).await })
    };
    // The source dies while the live layer is copied: its rebuild snapshot
    // exists, and the copy of its two clusters has not finished.
    wait_lvols(&h, s, "the source's rebuild snapshot", |l| {
        l.iter().any(|(n, _)| *n == rbs)
    })
    .await;
    h.cluster.kill_node(s);
    let err = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the rebuild gives up")
        .expect("join")
        .expect_err("the source died mid-copy");
    println!("source {} died mid-copy: {err}", req.source);

    assert!(ctx
        .store
        .list_pending_operations()
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        records(&ctx, &id).await,
        rec(&[
            ("node-0", "healthy"),
            ("node-1", "healthy"),
            ("node-2", "stale")
        ]),
        "the volume's records are as they were"
    );
    assert!(
        leftovers(&h, &ctx, &id, t).await.is_empty(),
        "the target was cleaned: {:?}",
        leftovers(&h, &ctx, &id, t).await
    );
    assert!(
        !lvols(&h, t).await.iter().any(|(n, _)| n.contains(&id)),
        "nothing of the volume on the target"
    );

    // Retried from the other current replica, onto a node that answers.
    let ran = trigger::run_due(&ctx).await.expect("retry");
    assert_eq!(ran.len(), 1);
    let (retry, outcome) = &ran[0];
    assert_ne!(retry.source, req.source, "the dead source is not used");
    let outcome = outcome.as_ref().expect("the retried rebuild");
    println!(
        "retried from {} onto {}: {} bytes copied in {:?}",
        retry.source, retry.target, outcome.bytes_copied, outcome.elapsed
    );
    let n = h.node_index(&retry.target);

    // The source returns: its rebuild snapshot is merged back, and its
    // replica (it missed no write) serves again.
    bring_back(&mut h, &ctx, s).await;
    assert!(
        lvols(&h, s).await.iter().any(|(n, _)| *n == rbs),
        "the dead source kept its rebuild snapshot"
    );
    shorthorn_controller::reconciler::reconcile_once(&ctx)
        .await
        .expect("reconcile");
    assert!(
        leftovers(&h, &ctx, &id, s).await.is_empty(),
        "{:?}",
        leftovers(&h, &ctx, &id, s).await
    );
    let mut serving = vec![0, 1, n];
    serving.sort();
    let names: Vec<String> = serving.iter().map(|&i| h.node_name(i)).collect();
    assert_eq!(
        records(&ctx, &id).await,
        names
            .iter()
            .map(|n| (n.clone(), "healthy".to_string()))
            .collect::<Vec<_>>()
    );
    assert_replicas(&h, &id, &serving, &expect, &snap, &snap_expect).await;
    let dev = h.publish(&id, "node-0").await["ublk.device"].clone();
    assert!(read_dev(&dev).await == expect);
    assert_eq!(h.raid_member_nodes(&id, 0).await, names);
    h.unpublish(&id, "node-0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_filling_up_between_copy_rounds_stops_the_rebuild_cleanly() {
    let mut h = Harness::start_standby(5, 2, StoreKind::Etcd, "", &["ublk"]).await;
    let (id, expect, snap, snap_expect) = degraded(&mut h, "pvc-target-fills").await;
    let ctx = ctx_of(&h).await;
    pace(&h, &[0, 1], PACE_MS).await;
    let due = trigger::due(&ctx).await.expect("due");
    assert_eq!(due.len(), 1, "{due:?}");
    let req = due[0].clone();
    let t = h.node_index(&req.target);
    let working = naming::rebuild_lvol(&id);
    let run = {
        let ctx = ctx.clone();
        let req = req.clone();
        tokio::spawn(async move { rebuild::rebuild(&ctx, &req).await })
    };
    // While the snapshot layer is copied (one of its two clusters landed),
    // something else takes all the target's free space but one cluster,
    // which the snapshot layer's second cluster then takes: the live layer
    // (two clusters) no longer fits.
    wait_lvols(&h, t, "the first copied cluster on the target", |l| {
        l.iter().any(|(n, c)| *n == working && *c == 1)
    })
    .await;
    let c = h.spdk(t);
    let lvs = c
        .bdev_lvol_get_lvstores(&Default::default())
        .await
        .expect("lvstores")
        .into_iter()
        .next()
        .expect("lvstore");
    let fill = (lvs.free_clusters - 1) * lvs.cluster_size / (1024 * 1024);
    c.bdev_lvol_create(&spdk_client::BdevLvolCreateParams {
        lvol_name: "filler".into(),
        size_in_mib: fill,
        thin_provision: Some(false),
        lvs_name: Some(LVS.into()),
        ..Default::default()
    })
    .await
    .expect("filler");
    let err = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the rebuild stops")
        .expect("join")
        .expect_err("no room for the live layer");
    println!("stopped between rounds: {err}");
    assert!(
        err.to_string().contains("free clusters") && err.to_string().contains("rolled back"),
        "the re-check between rounds refused it, before a copy hit a full lvstore: {err}"
    );
    assert!(ctx
        .store
        .list_pending_operations()
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        records(&ctx, &id).await,
        rec(&[
            ("node-0", "healthy"),
            ("node-1", "healthy"),
            ("node-2", "stale")
        ])
    );
    assert!(
        !lvols(&h, t)
            .await
            .iter()
            .any(|(n, _)| n.contains(&id) || *n == naming::snapshot_lvol(&snap)),
        "nothing of the rebuild is left on the target: {:?}",
        lvols(&h, t).await
    );
    for i in [0, 1, t] {
        assert!(leftovers(&h, &ctx, &id, i).await.is_empty(), "node-{i}");
    }

    // With room again, the next pass rebuilds it.
    c.bdev_lvol_delete(&BdevLvolDeleteParams {
        name: format!("{LVS}/filler"),
    })
    .await
    .expect("delete filler");
    ctx.nodes.refresh_all().await;
    let ran = trigger::run_due(&ctx).await.expect("retry");
    assert_eq!(ran.len(), 1);
    let n = h.node_index(&ran[0].0.target);
    ran[0].1.as_ref().expect("the retried rebuild");
    assert_replicas(&h, &id, &[0, 1, n], &expect, &snap, &snap_expect).await;
}
