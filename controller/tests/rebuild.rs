//! Replica rebuild (docs/rebuild.md) on sim nodes and a real etcd: a stale
//! replica rebuilt in place from the layers it lacks, a replica replaced on
//! a new node after `staleReplicaTimeout` with its snapshot chain, a
//! controller killed mid-rebuild, a target without room, and the full-copy
//! fallback of a published volume. Every test ends by reading each
//! replica's bytes directly from its node.

mod support;

use std::time::{Duration, Instant};

use agent_api::FrontendKind;
use shorthorn_controller::config::RebuildConfig;
use shorthorn_controller::context::Context;
use shorthorn_controller::fence::Fencing;
use shorthorn_controller::rebuild::{self, trigger, Mode, Request};
use spdk_client::{BdevLvolCloneParams, BdevLvolDeleteParams, BdevLvolGetLvolsParams};
use support::crash::crash_at;
use support::safety::wait_for;
use support::*;

const CHUNK: usize = 256 * 1024;
/// Volume size; writes land 4 MiB apart so each touches its own cluster.
const SIZE: i64 = 32 * MIB;
const SPAN: usize = 32 * 1024 * 1024;

/// Writes `data` at `offset` of a block device and flushes it.
fn write_at(path: &str, offset: u64, data: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {path}: {e}"));
    f.write_all_at(data, offset).expect("write device");
    f.sync_all().expect("fsync device");
}

async fn write_blocking(path: &str, offset: u64, data: Vec<u8>) {
    let p = path.to_string();
    tokio::task::spawn_blocking(move || write_at(&p, offset, &data))
        .await
        .expect("write");
}

/// A controller context of the test's own, polling copies every 20 ms.
async fn ctx_of(h: &Harness) -> Context {
    own_context(h.config(), FrontendKind::Ublk, Fencing::default())
        .await
        .with_rebuild(RebuildConfig {
            poll_interval_ms: 20,
            ..RebuildConfig::default()
        })
}

/// Allocated clusters of lvol `name` (without lvstore) on node `i`.
async fn allocated(h: &Harness, i: usize, name: &str) -> u64 {
    h.spdk(i)
        .bdev_lvol_get_lvols(&BdevLvolGetLvolsParams::default())
        .await
        .expect("lvols")
        .into_iter()
        .find(|l| l.name == name)
        .unwrap_or_else(|| panic!("no lvol {name} on node {i}"))
        .num_allocated_clusters
}

/// Names of the lvols on node `i` ending in a rebuild suffix.
async fn rebuild_leftovers(h: &Harness, i: usize) -> Vec<String> {
    let lvols = h
        .spdk(i)
        .bdev_lvol_get_lvols(&BdevLvolGetLvolsParams::default())
        .await
        .expect("lvols");
    let mut out: Vec<String> = lvols
        .into_iter()
        .map(|l| l.name)
        .filter(|n| n.ends_with("-rb") || n.ends_with("-rbs"))
        .collect();
    for line in h.leftovers_on(&[i]).await {
        if line.contains(":rebuild-") || line.contains("-rebuild-") {
            out.push(line);
        }
    }
    out
}

/// The health of the replica on `node`, from the store.
async fn health(ctx: &Context, volume: &str, node: &str) -> Option<String> {
    ctx.store
        .get_replica(volume, node)
        .await
        .expect("store")
        .map(|r| r.record.health.as_str().to_string())
}

/// Bytes `[0, SPAN)` of bdev `alias` on node `i`, read in 4 MiB pieces.
async fn read_all(h: &Harness, i: usize, alias: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(SPAN);
    let piece = 4 * 1024 * 1024;
    for off in (0..SPAN).step_by(piece) {
        out.extend(
            h.cluster
                .data_path()
                .read(h.cluster.node(i), alias, off as u64, piece as u64)
                .await
                .unwrap_or_else(|e| panic!("reading {alias} on node-{i}: {e}")),
        );
    }
    out
}

/// Asserts the replica of `volume` on each node in `nodes` holds `expect`.
async fn assert_identical(h: &Harness, volume: &str, nodes: &[usize], expect: &[u8]) {
    for &i in nodes {
        let bytes = read_all(h, i, &replica_alias(volume)).await;
        assert!(
            bytes == expect,
            "replica on node-{i} does not hold the volume's bytes"
        );
    }
}

/// Clones snapshot `snapshot_id` on node `i`, reads `[0, SPAN)`, deletes the clone.
async fn snapshot_bytes(h: &Harness, i: usize, snapshot_id: &str) -> Vec<u8> {
    let c = h.spdk(i);
    let clone = format!("verify-{}", &snapshot_id[..8]);
    c.bdev_lvol_clone(&BdevLvolCloneParams {
        snapshot_name: snapshot_alias(snapshot_id),
        clone_name: clone.clone(),
    })
    .await
    .unwrap_or_else(|e| panic!("clone of snapshot {snapshot_id} on node-{i}: {e}"));
    let alias = format!("{LVS}/{clone}");
    let bytes = read_all(h, i, &alias).await;
    c.bdev_lvol_delete(&BdevLvolDeleteParams { name: alias })
        .await
        .expect("delete clone");
    bytes
}

/// Publishes on node-0, writes `a` at 0, snapshots, writes more, kills
/// `victim` and writes `b` at 16 MiB while it is gone (it goes stale),
/// unpublishes. Returns the volume's bytes and the snapshot id.
async fn stale_after_writes(
    h: &mut Harness,
    id: &str,
    victim: usize,
    snapshots: usize,
) -> (Vec<u8>, Vec<String>) {
    let mut expect = vec![0u8; SPAN];
    let mut snaps = Vec::new();
    // Snapshots are taken unpublished (the sim nodes have no agent to fence ublk).
    for s in 0..snapshots.max(1) {
        let ctx = h.publish(id, "node-0").await;
        let off = s * 4 * 1024 * 1024;
        let data = pattern(CHUNK, 10 + s as u8);
        write_blocking(&ctx["ublk.device"], off as u64, data.clone()).await;
        expect[off..off + CHUNK].copy_from_slice(&data);
        h.unpublish(id, "node-0").await;
        if s < snapshots {
            snaps.push(h.create_snapshot(&format!("snap-{s}"), id).await);
        }
    }
    let dev = h.publish(id, "node-0").await["ublk.device"].clone();
    h.cluster.kill_node(victim);
    let b = pattern(CHUNK, 99);
    write_blocking(&dev, 16 * 1024 * 1024, b.clone()).await;
    expect[16 * 1024 * 1024..16 * 1024 * 1024 + CHUNK].copy_from_slice(&b);
    h.wait_replica_state(id, &h.node_name(victim), "stale")
        .await;
    h.unpublish(id, "node-0").await;
    (expect, snaps)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returning_stale_replica_gets_only_the_layers_it_lacks() {
    let mut h = Harness::start(3, StoreKind::Etcd).await;
    let id = h.create_volume("pvc-delta", SIZE, Some(3)).await;
    let (expect, _) = stale_after_writes(&mut h, &id, 2, 1).await;
    h.cluster.restart_node(2).expect("restart node-2");
    let ctx = ctx_of(&h).await;

    let start = Instant::now();
    let ran = trigger::run_due(&ctx).await.expect("rebuilds");
    assert_eq!(ran.len(), 1, "one rebuild is due");
    let (req, outcome) = &ran[0];
    assert_eq!((req.target.as_str(), req.mode), ("node-2", Mode::Delta));
    let outcome = outcome.as_ref().expect("delta rebuild");
    println!(
        "delta rebuild: {} bytes copied for {} bytes written since the shared snapshot ({} in all), {:?}",
        outcome.bytes_copied,
        CHUNK,
        2 * CHUNK,
        start.elapsed()
    );
    assert_eq!(
        outcome.layers_copied, 0,
        "the shared snapshot is not copied"
    );
    assert_eq!(
        health(&ctx, &id, "node-2").await.as_deref(),
        Some("healthy")
    );
    assert_identical(&h, &id, &[0, 1, 2], &expect).await;
    let live = shorthorn_controller::naming::replica_lvol(&id);
    assert_eq!(
        allocated(&h, 2, &live).await,
        allocated(&h, 0, &live).await,
        "the rebuilt live layer holds exactly the source's clusters"
    );
    for i in 0..3 {
        assert!(rebuild_leftovers(&h, i).await.is_empty(), "node-{i}");
    }
    // It serves again: a publish assembles all three legs.
    h.publish(&id, "node-1").await;
    assert_eq!(h.raid_member_nodes(&id, 1).await.len(), 3);
    h.unpublish(&id, "node-1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_gone_past_the_timeout_is_rebuilt_on_a_new_node_with_its_chain() {
    let mut h = Harness::start(4, StoreKind::Etcd).await;
    let mut req = create_req("pvc-chain", SIZE, Some(3));
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
    let ctx = ctx_of(&h).await;
    let holders: Vec<String> = ctx
        .store
        .list_replicas(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.record.node)
        .collect();
    let spare = (0..4)
        .find(|i| !holders.contains(&h.node_name(*i)))
        .unwrap();
    let victim = (1..4)
        .find(|i| holders.contains(&h.node_name(*i)) && *i != spare)
        .unwrap();
    let (expect, snaps) = stale_after_writes(&mut h, &id, victim, 3).await;

    // Inside the grace period nothing happens; after it, node `spare` gets it.
    let ran = trigger::run_due(&ctx).await.expect("rebuilds");
    let ran = if ran.is_empty() {
        tokio::time::sleep(Duration::from_millis(1300)).await;
        trigger::run_due(&ctx).await.expect("rebuilds")
    } else {
        ran
    };
    assert_eq!(ran.len(), 1);
    let (req, outcome) = &ran[0];
    assert_eq!(req.mode, Mode::NewNode);
    assert_eq!(req.target, h.node_name(spare));
    let outcome = outcome.as_ref().expect("rebuild onto the new node");
    println!(
        "new-node rebuild: {} bytes copied ({} layers) for {} bytes written, {:?}",
        outcome.bytes_copied,
        outcome.layers_copied,
        4 * CHUNK,
        outcome.elapsed
    );
    assert_eq!(outcome.layers_copied, 3);
    let replicas: Vec<String> = ctx
        .store
        .list_replicas(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.record.node)
        .collect();
    assert!(
        !replicas.contains(&h.node_name(victim)),
        "the dead replica's record is dropped"
    );
    let serving: Vec<usize> = (0..4).filter(|i| *i != victim).collect();
    assert_identical(&h, &id, &serving, &expect).await;
    for s in &snaps {
        let rec = ctx.store.get_snapshot(s).await.unwrap().unwrap().record;
        assert!(
            rec.replica_snapshots
                .iter()
                .any(|r| r.node == h.node_name(spare)),
            "snapshot record lists the new replica's copy"
        );
        let name = format!("shs-{s}");
        let base = snapshot_bytes(&h, serving[0], s).await;
        for &i in &serving {
            assert!(
                snapshot_bytes(&h, i, s).await == base,
                "snapshot {s} on node-{i}"
            );
            assert_eq!(
                allocated(&h, i, &name).await,
                allocated(&h, serving[0], &name).await,
                "snapshot {s} on node-{i} holds the same clusters"
            );
        }
    }
    for &i in &serving {
        assert!(rebuild_leftovers(&h, i).await.is_empty(), "node-{i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_without_room_is_refused_before_anything_is_made() {
    let mut h = Harness::start(4, StoreKind::Etcd).await;
    let id = h.create_volume("pvc-room", SIZE, Some(3)).await;
    let ctx = ctx_of(&h).await;
    let holders: Vec<String> = ctx
        .store
        .list_replicas(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.record.node)
        .collect();
    let spare = (0..4)
        .find(|i| !holders.contains(&h.node_name(*i)))
        .unwrap();
    let (_, _) = stale_after_writes(&mut h, &id, 2.min(spare.saturating_sub(1)).max(1), 0).await;
    // Fill the spare node's lvstore with a thick lvol.
    let c = h.spdk(spare);
    let lvs = c
        .bdev_lvol_get_lvstores(&Default::default())
        .await
        .unwrap()
        .into_iter()
        .next()
        .unwrap();
    let fill = (lvs.free_clusters.saturating_sub(1)) * lvs.cluster_size / (1024 * 1024);
    c.bdev_lvol_create(&spdk_client::BdevLvolCreateParams {
        lvol_name: "filler".into(),
        size_in_mib: fill,
        thin_provision: Some(false),
        lvs_name: Some(LVS.into()),
        ..Default::default()
    })
    .await
    .expect("filler");
    let before = h.leftovers_on(&[spare]).await;
    let err = rebuild::rebuild(
        &ctx,
        &Request {
            volume_id: id.clone(),
            source: "node-0".into(),
            target: h.node_name(spare),
            mode: Mode::NewNode,
            replaces: None,
        },
    )
    .await
    .expect_err("no room");
    println!("refused: {err}");
    assert!(err.to_string().contains("free clusters"), "{err}");
    assert_eq!(
        h.leftovers_on(&[spare]).await,
        before,
        "nothing was made on the target"
    );
    assert!(ctx
        .store
        .list_pending_operations()
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_killed_mid_rebuild_is_rolled_back_or_completed() {
    let mut h = Harness::start(3, StoreKind::Etcd).await;
    let id = h.create_volume("pvc-crash", SIZE, Some(3)).await;
    let (expect, _) = stale_after_writes(&mut h, &id, 2, 1).await;
    h.cluster.restart_node(2).expect("restart node-2");
    h.stop_controller().await;

    // Before the replica is promoted: rolled back, then started over.
    for step in [
        "working-created",
        "connected",
        "live-snapshotted",
        "live-copied",
    ] {
        crash_at(&h, &format!("rebuild-replica:{step}"), &["rebuild", &id]).await;
        h.restart_controller().await; // recovers the journal
        let ctx = ctx_of(&h).await;
        assert!(
            ctx.store
                .list_pending_operations()
                .await
                .unwrap()
                .is_empty(),
            "{step}"
        );
        assert_eq!(
            health(&ctx, &id, "node-2").await.as_deref(),
            Some("stale"),
            "{step}"
        );
        for i in 0..3 {
            assert!(
                rebuild_leftovers(&h, i).await.is_empty(),
                "after a crash at {step}: node-{i}"
            );
        }
        assert_identical(&h, &id, &[0, 1], &expect).await;
        println!("crash at {step}: rolled back cleanly");
        h.stop_controller().await;
    }
    // After it: completed on recovery.
    crash_at(&h, "rebuild-replica:promoted", &["rebuild", &id]).await;
    h.restart_controller().await;
    let ctx = ctx_of(&h).await;
    assert!(ctx
        .store
        .list_pending_operations()
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        health(&ctx, &id, "node-2").await.as_deref(),
        Some("healthy")
    );
    assert_identical(&h, &id, &[0, 1, 2], &expect).await;
    for i in 0..3 {
        assert!(rebuild_leftovers(&h, i).await.is_empty(), "node-{i}");
    }
    println!("crash at promoted: completed on recovery");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_volume_falls_back_to_a_full_raid_rebuild() {
    let mut h = Harness::start(3, StoreKind::Etcd).await;
    let id = h.create_volume("pvc-full", SIZE, Some(3)).await;
    let pctx = h.publish(&id, "node-0").await;
    let dev = pctx["ublk.device"].clone();
    let mut expect = vec![0u8; SPAN];
    let a = pattern(CHUNK, 1);
    write_blocking(&dev, 0, a.clone()).await;
    expect[..CHUNK].copy_from_slice(&a);
    h.cluster.kill_node(2);
    let b = pattern(CHUNK, 2);
    write_blocking(&dev, 8 * 1024 * 1024, b.clone()).await;
    expect[8 * 1024 * 1024..8 * 1024 * 1024 + CHUNK].copy_from_slice(&b);
    h.wait_replica_state(&id, "node-2", "stale").await;
    h.cluster.restart_node(2).expect("restart node-2");
    let ctx = ctx_of(&h).await;
    let ((), _) = wait_for("node-2 back", Duration::from_secs(20), || async {
        h.lvstore_loaded(2).await.then_some(())
    })
    .await;

    let ran = trigger::run_due(&ctx).await.expect("rebuilds");
    assert_eq!(ran.len(), 1);
    let outcome = ran[0].1.as_ref().expect("full rebuild");
    assert!(outcome.full_copy);
    println!(
        "full-copy fallback: {} bytes rebuilt for {} bytes written, {:?}",
        outcome.bytes_copied,
        2 * CHUNK,
        outcome.elapsed
    );
    assert_eq!(
        health(&ctx, &id, "node-2").await.as_deref(),
        Some("healthy")
    );
    let p = ctx
        .store
        .get_publication(&id, "node-0")
        .await
        .unwrap()
        .unwrap();
    assert!(p.record.members.contains(&"node-2".to_string()));
    assert_eq!(h.raid_member_nodes(&id, 0).await.len(), 3);
    let r = ctx.store.get_replica(&id, "node-2").await.unwrap().unwrap();
    assert!(
        r.record
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("thin swap not possible") && r.contains("ublk")),
        "the reason says why it was a full copy (a ublk frontend): {:?}",
        r.record.reason
    );
    // Writes after the rebuild reach the new leg too.
    let c = pattern(CHUNK, 3);
    write_blocking(&dev, 24 * 1024 * 1024, c.clone()).await;
    expect[24 * 1024 * 1024..24 * 1024 * 1024 + CHUNK].copy_from_slice(&c);
    h.unpublish(&id, "node-0").await;
    assert_identical(&h, &id, &[0, 1, 2], &expect).await;
}

/// Child mode of the crash test (see support::crash).
#[tokio::test]
#[ignore]
async fn crash_child() {
    support::crash::child_main().await;
}
