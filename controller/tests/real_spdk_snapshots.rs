//! Snapshots and clones on real spdk_tgt v25.09 (`SHORTHORN_SPDK_TGT`):
//! every replica's snapshot and every clone replica holds the right bytes,
//! clones outlive their origin and the snapshots they came from, and
//! nothing is left; and snapshots of a published volume taken under a
//! running writer are ANA-fenced (the frontend listener goes inaccessible
//! on real SPDK and back) so that every replica's snapshot is the same,
//! while the writer's writes all succeed. The models are `snapshot_data.rs`
//! and `snapshot_fence.rs`; bytes go through the volume's NVMe/TCP export
//! and are read on each node (spdk_dd as the host). Skips with a message
//! when the variable is unset.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use agent_api::FrontendKind as Frontend;
use shorthorn_controller::fence::{FenceKind, Fencing};
use shorthorn_controller::ops;
use support::real::*;
use support::*;

const REGION: usize = 512 * 1024;

async fn create(h: &mut Harness, req: csi_proto::CreateVolumeRequest) -> String {
    h.csi
        .create_volume(req)
        .await
        .expect("create volume")
        .into_inner()
        .volume
        .expect("volume")
        .volume_id
}

/// Checks every replica of `volume` (one per node) holds `expected` at 0.
async fn assert_replicas_hold(h: &Harness, volume: &str, expected: &[u8], what: &str) {
    for i in 0..3 {
        assert!(
            h.replica_bytes(i, volume, expected.len()).await == expected,
            "{what}: replica on node-{i} holds other bytes"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_and_clones_hold_their_bytes_on_every_replica_on_real_spdk() {
    if skip("snapshots and clones") {
        return;
    }
    let started = std::time::Instant::now();
    let mut h = Harness::start_opts(3, StoreKind::Etcd, "", &["nvme-tcp"]).await;
    let origin = create(&mut h, create_req("pvc-real-origin", 16 * MIB, Some(3))).await;

    // A, snapshot, B, snapshot: taken while published (fenced).
    let a = pattern(REGION / 2, 11);
    let b = pattern(REGION / 2, 97);
    let ctx = h.publish(&origin, "node-0").await;
    write_volume(&h, &ctx, 0, &a).await;
    let s1 = h.create_snapshot("snap-1", &origin).await;
    write_volume(&h, &ctx, (REGION / 2) as u64, &b).await;
    let s2 = h.create_snapshot("snap-2", &origin).await;
    assert_eq!(h.create_snapshot("snap-1", &origin).await, s1, "idempotent");
    h.unpublish(&origin, "node-0").await;

    let mut expect_a = a.clone();
    expect_a.resize(REGION, 0);
    let mut expect_ab = a.clone();
    expect_ab.extend_from_slice(&b);
    for i in 0..3 {
        assert!(
            snapshot_bytes(&h, i, &s1, REGION).await == expect_a,
            "snapshot 1 on node-{i}"
        );
        assert!(
            snapshot_bytes(&h, i, &s2, REGION).await == expect_ab,
            "snapshot 2 on node-{i}"
        );
    }

    let c1 = create(
        &mut h,
        from_snapshot(create_req("pvc-real-c1", 16 * MIB, Some(3)), &s1),
    )
    .await;
    let c2 = create(
        &mut h,
        from_snapshot(create_req("pvc-real-c2", 32 * MIB, Some(3)), &s2),
    )
    .await;
    let c3 = create(
        &mut h,
        from_volume(create_req("pvc-real-c3", 16 * MIB, Some(3)), &origin),
    )
    .await;
    assert_replicas_hold(&h, &c1, &expect_a, "clone of snapshot 1").await;
    assert_replicas_hold(&h, &c2, &expect_ab, "clone of snapshot 2").await;
    assert_replicas_hold(&h, &c3, &expect_ab, "clone of the volume").await;
    for i in 0..3 {
        let lvol = h
            .spdk(i)
            .bdev_get(&replica_alias(&c2))
            .await
            .expect("get")
            .expect("clone lvol");
        assert_eq!(
            lvol.size_bytes(),
            32 * MIB as u64,
            "larger clone on node-{i}"
        );
    }

    // A write to a clone, through its own export, touches only the clone.
    let ctx = h.publish(&c1, "node-0").await;
    let c1_head = pattern(4096, 3);
    write_volume(&h, &ctx, 0, &c1_head).await;
    h.unpublish(&c1, "node-0").await;
    let mut c1_data = c1_head.clone();
    c1_data.extend_from_slice(&expect_a[4096..]);

    // The origin and then the snapshots go; the clones keep their bytes.
    h.delete_volume(&origin).await;
    h.delete_snapshot(&s1).await;
    h.delete_snapshot(&s2).await;
    assert_replicas_hold(&h, &c1, &c1_data, "clone 1 after its sources went").await;
    assert_replicas_hold(&h, &c2, &expect_ab, "clone 2 after its sources went").await;
    assert_replicas_hold(&h, &c3, &expect_ab, "clone 3 after its sources went").await;
    for clone in [&c2, &c1, &c3] {
        h.delete_volume(clone).await;
    }
    h.assert_clean().await;
    println!(
        "MEASURE real spdk_tgt: snapshots and clones took {:?}",
        started.elapsed()
    );
}

const SNAPSHOTS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ana_fenced_snapshots_under_a_writer_are_identical_on_every_replica_on_real_spdk() {
    if skip("ANA-fenced snapshots under a writer") {
        return;
    }
    let started = std::time::Instant::now();
    let h = Harness::start_opts(3, StoreKind::Etcd, "", &["nvme-tcp"]).await;
    let ctx = own_context(h.config(), Frontend::NvmeTcp, Fencing::default()).await;
    let vol = own_volume(&ctx, "pvc-real-ana", 16, 3).await;
    let publish: HashMap<String, String> = ops::publish::publish(&ctx, &vol, "node-0", false)
        .await
        .expect("publish")
        .into_iter()
        .collect();

    let span = WRITER_BLOCKS * 4096;
    let (stop, rounds) = (AtomicBool::new(false), AtomicU64::new(0));
    let snapshots = async {
        let mut ids = Vec::new();
        for k in 0..SNAPSHOTS {
            // Into the stream of writes (not between spdk_dd runs).
            wait_writes_flowing(&h, &vol).await;
            let at = rounds.load(Ordering::Relaxed);
            let s = ops::snapshot_create::create_snapshot(&ctx, &format!("ana-{k}"), &vol)
                .await
                .expect("snapshot under the writer");
            ids.push((s.id, at));
        }
        stop.store(true, Ordering::Relaxed);
        ids
    };
    let ((writes, expected), ids) =
        tokio::join!(write_rounds(&h, &publish, &stop, &rounds), snapshots);
    assert!(
        raid_write_ops(&h, &vol).await >= writes * WRITER_BLOCKS as u64,
        "every write of the writer went through the raid"
    );
    println!("MEASURE real spdk_tgt: writer completed {writes} rounds of {WRITER_BLOCKS} writes during {SNAPSHOTS} snapshots");

    // Every snapshot was fenced, and holds the same bytes on every replica.
    let holds = ctx.fencing.stats.recent(FenceKind::Ana);
    assert_eq!(holds.len(), SNAPSHOTS, "every snapshot held the ANA fence");
    println!("MEASURE real spdk_tgt: ANA fence holds {holds:?}");
    for (id, at) in &ids {
        let first = lvol_bytes(
            &h,
            0,
            &shorthorn_controller::naming::snapshot_lvol(id),
            WRITER_OFFSET,
            span,
        )
        .await;
        for i in 1..3 {
            let other = lvol_bytes(
                &h,
                i,
                &shorthorn_controller::naming::snapshot_lvol(id),
                WRITER_OFFSET,
                span,
            )
            .await;
            assert!(
                other == first,
                "snapshot {id} (writer at round {at}) differs between node-0 and node-{i}"
            );
        }
    }
    assert_ana_optimized(&h, &vol, "after the snapshots").await;

    // The last round is what the volume and every replica hold.
    assert!(read_volume(&h, &publish, WRITER_OFFSET, span).await == expected);
    ops::unpublish::unpublish(&ctx, &vol, None)
        .await
        .expect("unpublish");
    for i in 0..3 {
        assert!(
            lvol_bytes(
                &h,
                i,
                &shorthorn_controller::naming::replica_lvol(&vol),
                WRITER_OFFSET,
                span
            )
            .await
                == expected,
            "replica on node-{i} does not hold the last writes"
        );
    }
    for (id, _) in &ids {
        ops::snapshot_delete::delete_snapshot(&ctx, id)
            .await
            .expect("delete snapshot");
    }
    ops::delete_volume::delete_volume(&ctx, &vol)
        .await
        .expect("delete volume");
    h.assert_clean().await;
    println!(
        "MEASURE real spdk_tgt: fenced snapshots under a writer took {:?}",
        started.elapsed()
    );
}
