//! Degraded publish on real spdk_tgt v25.09 (`SHORTHORN_SPDK_TGT`): stock
//! SPDK refuses a raid1 of fewer than two members, so a volume with one
//! current replica is assembled over that replica and a null pad that is
//! removed before any I/O. Data goes in and out through the volume's
//! NVMe-oF export (spdk_dd as the host) and is checked on the replica
//! itself. Skips with a message when the variable is unset.

mod support;

use support::real::{read_volume, skip, write_volume};
use support::*;

const LEN: usize = 128 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_replica_volume_with_one_lost_replica_publishes_degraded_on_real_spdk() {
    if skip("degraded publish") {
        return;
    }
    let mut h = Harness::start_opts(2, StoreKind::Etcd, "", &["nvme-tcp"]).await;
    assert!(h.cluster.is_real_spdk());
    let id = h
        .create_volume("pvc-real-degraded", 16 * MIB, Some(2))
        .await;
    let ctx = h.publish(&id, "node-0").await;
    write_volume(&h, &ctx, 0, &pattern(LEN, 1)).await;
    assert_eq!(h.raid_member_nodes(&id, 0).await.len(), 2);

    // node-1 dies; the next write drops its leg and succeeds degraded.
    h.cluster.kill_node(1);
    let b = pattern(LEN, 2);
    write_volume(&h, &ctx, 0, &b).await;
    h.wait_replica_state(&id, "node-1", "stale").await;
    h.unpublish(&id, "node-0").await;

    // One current replica: SPDK's raid1 minimum is met by the removed pad.
    let ctx = h.publish(&id, "node-0").await;
    assert_eq!(
        h.raid_member_nodes(&id, 0).await,
        vec!["node-0".to_string()]
    );
    assert_eq!(
        read_volume(&h, &ctx, 0, LEN).await,
        b,
        "degraded raid reads the last writes"
    );
    let c = pattern(LEN, 3);
    write_volume(&h, &ctx, 0, &c).await;
    h.unpublish(&id, "node-0").await;
    assert_eq!(
        h.replica_bytes(0, &id, LEN).await,
        c,
        "the serving replica holds the last writes"
    );
    assert!(
        !h.leftovers_on(&[0])
            .await
            .iter()
            .any(|l| l.contains("shp-")),
        "the null pad must be gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_replica_volume_publishes_on_real_spdk() {
    if skip("degraded publish") {
        return;
    }
    let mut h = Harness::start_opts(1, StoreKind::Etcd, "", &["nvme-tcp"]).await;
    assert!(h.cluster.is_real_spdk());
    let id = h.create_volume("pvc-real-single", 16 * MIB, Some(1)).await;
    let ctx = h.publish(&id, "node-0").await;
    assert_eq!(
        h.raid_member_nodes(&id, 0).await,
        vec!["node-0".to_string()]
    );
    let a = pattern(LEN, 4);
    write_volume(&h, &ctx, 0, &a).await;
    assert_eq!(read_volume(&h, &ctx, 0, LEN).await, a);
    h.unpublish(&id, "node-0").await;
    assert_eq!(h.replica_bytes(0, &id, LEN).await, a);
    h.delete_volume(&id).await;
}
