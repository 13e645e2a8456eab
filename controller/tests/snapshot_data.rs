//! Snapshots and clones hold the right bytes on every replica, survive the
//! deletion of their origin, and leave nothing behind however they are
//! deleted (3 sim nodes, real etcd).

mod support;

use csi_proto::{GetSnapshotRequest, ListSnapshotsRequest};
use support::*;

const REGION: u64 = 1024 * 1024;

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

async fn snapshot(h: &mut Harness, name: &str, volume: &str) -> String {
    let s = h
        .csi
        .create_snapshot(snap_req(name, volume))
        .await
        .expect("create snapshot")
        .into_inner()
        .snapshot
        .expect("snapshot");
    assert!(s.ready_to_use);
    assert_eq!(s.source_volume_id, volume);
    s.snapshot_id
}

/// Writes `data` at `offset` through the volume's raid1 (published on node-0).
async fn write_through_raid(h: &mut Harness, volume: &str, offset: u64, data: &[u8]) {
    h.csi
        .controller_publish_volume(publish_req(volume, "node-0"))
        .await
        .expect("publish");
    sim_write(&h.spdk(0), &raid(volume), offset, data).await;
    h.unpublish(volume, "node-0").await;
}

/// Checksums of `[0, REGION)` of `volume`'s replica lvol on every node holding one.
async fn replica_sums(h: &Harness, volume: &str) -> Vec<u64> {
    let mut clients = Vec::new();
    for i in 0..3 {
        let c = h.spdk(i);
        if c.bdev_get(&replica_alias(volume))
            .await
            .expect("bdev_get")
            .is_some()
        {
            clients.push(c);
        }
    }
    checksums(&clients, &replica_alias(volume), REGION).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clones_read_their_snapshot_on_every_replica_and_outlive_the_origin() {
    let mut h = Harness::start(3, StoreKind::Etcd).await;
    let origin = create(&mut h, create_req("pvc-origin", 16 * MIB, Some(3))).await;

    let a = pattern(REGION as usize / 2, 11);
    let b = pattern(REGION as usize / 2, 97);
    write_through_raid(&mut h, &origin, 0, &a).await;
    let s1 = snapshot(&mut h, "snap-1", &origin).await;
    write_through_raid(&mut h, &origin, REGION / 2, &b).await;
    let s2 = snapshot(&mut h, "snap-2", &origin).await;

    // Idempotent by name.
    assert_eq!(snapshot(&mut h, "snap-1", &origin).await, s1);

    let mut expect_a = a.clone();
    expect_a.resize(REGION as usize, 0);
    let mut expect_ab = a.clone();
    expect_ab.extend_from_slice(&b);

    let c1 = create(
        &mut h,
        from_snapshot(create_req("pvc-c1", 16 * MIB, Some(3)), &s1),
    )
    .await;
    let c2 = create(
        &mut h,
        from_snapshot(create_req("pvc-c2", 32 * MIB, Some(3)), &s2),
    )
    .await;
    let c3 = create(
        &mut h,
        from_volume(create_req("pvc-c3", 16 * MIB, Some(3)), &origin),
    )
    .await;
    for (clone, expected) in [(&c1, &expect_a), (&c2, &expect_ab), (&c3, &expect_ab)] {
        let sums = replica_sums(&h, clone).await;
        println!("clone {clone}: replica checksums {sums:x?}");
        assert!(
            sums.iter().all(|s| *s == checksum(expected)),
            "clone {clone} replicas {sums:x?}"
        );
    }
    // The larger clone has its requested size on every replica.
    for i in 0..3 {
        let b = h
            .spdk(i)
            .bdev_get(&replica_alias(&c2))
            .await
            .expect("get")
            .expect("clone lvol");
        assert_eq!(b.size_bytes(), 32 * MIB as u64);
    }
    // The volume clone's internal snapshot is not listed.
    let listed = h
        .csi
        .list_snapshots(ListSnapshotsRequest::default())
        .await
        .expect("list")
        .into_inner();
    let mut ids: Vec<_> = listed
        .entries
        .iter()
        .filter_map(|e| e.snapshot.as_ref())
        .map(|s| s.snapshot_id.clone())
        .collect();
    ids.sort();
    let mut want = vec![s1.clone(), s2.clone()];
    want.sort();
    assert_eq!(ids, want);

    // Writing to a clone changes neither the origin nor the other clones.
    write_through_raid(&mut h, &c1, 0, &pattern(4096, 3)).await;
    assert!(replica_sums(&h, &c2)
        .await
        .iter()
        .all(|s| *s == checksum(&expect_ab)));

    // Delete the origin: clones keep their data.
    h.delete_volume(&origin).await;
    for (clone, expected) in [(&c2, &expect_ab), (&c3, &expect_ab)] {
        assert!(replica_sums(&h, clone)
            .await
            .iter()
            .all(|s| *s == checksum(expected)));
    }
    // Snapshots outlive their source volume.
    let got = h
        .csi
        .get_snapshot(GetSnapshotRequest {
            snapshot_id: s1.clone(),
            ..Default::default()
        })
        .await
        .expect("get snapshot")
        .into_inner();
    assert_eq!(got.snapshot.expect("snapshot").snapshot_id, s1);

    // Delete S1 while C1 reads it: hidden, data kept; then S2.
    h.delete_snapshot(&s1).await;
    h.delete_snapshot(&s1).await; // delete s1 again
    h.delete_snapshot(&s2).await;
    let listed = h
        .csi
        .list_snapshots(ListSnapshotsRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert!(listed.entries.is_empty(), "{listed:?}");
    let mut c1_data = pattern(4096, 3);
    c1_data.extend_from_slice(&expect_a[4096..]);
    assert!(replica_sums(&h, &c1)
        .await
        .iter()
        .all(|s| *s == checksum(&c1_data)));
    assert!(replica_sums(&h, &c2)
        .await
        .iter()
        .all(|s| *s == checksum(&expect_ab)));
    assert!(replica_sums(&h, &c3)
        .await
        .iter()
        .all(|s| *s == checksum(&expect_ab)));

    for clone in [&c2, &c1, &c3] {
        h.delete_volume(clone).await;
    }
    h.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_deleted_in_every_order_leave_nothing() {
    let mut h = Harness::start(3, StoreKind::Etcd).await;
    let orders: [[usize; 3]; 6] = [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ];
    for (round, order) in orders.iter().enumerate() {
        let vol = create(
            &mut h,
            create_req(&format!("pvc-order-{round}"), 8 * MIB, Some(2)),
        )
        .await;
        let mut snaps = Vec::new();
        for i in 0..3u8 {
            write_through_raid(&mut h, &vol, 0, &pattern(8192, i)).await;
            snaps.push(snapshot(&mut h, &format!("o{round}-s{i}"), &vol).await);
        }
        // A clone of the middle snapshot keeps it alive past its deletion.
        let clone = create(
            &mut h,
            from_snapshot(
                create_req(&format!("pvc-order-{round}-c"), 8 * MIB, Some(2)),
                &snaps[1],
            ),
        )
        .await;
        let clone_sum = replica_sums(&h, &clone).await;
        assert_eq!(clone_sum.len(), 2);
        assert_eq!(clone_sum[0], clone_sum[1]);
        for &i in order {
            h.delete_snapshot(&snaps[i]).await;
        }
        assert_eq!(replica_sums(&h, &clone).await, clone_sum, "order {order:?}");
        let mut volume_data = pattern(8192, 2);
        volume_data.resize(REGION as usize, 0);
        let sums = replica_sums(&h, &vol).await;
        assert!(
            sums.iter()
                .filter(|s| **s == checksum(&volume_data))
                .count()
                == 2,
            "order {order:?}: {sums:x?}"
        );
        h.delete_volume(&vol).await;
        h.delete_volume(&clone).await;
        h.assert_clean().await;
    }
}
