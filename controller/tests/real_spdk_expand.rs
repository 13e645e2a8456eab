//! ControllerExpandVolume on real spdk_tgt v25.09 (`SHORTHORN_SPDK_TGT`):
//! a volume published through the NVMe/TCP frontend grows online on every
//! replica and in its raid1, a host connecting afterwards sees the new
//! size, data written before and beyond the old end is on every replica,
//! and the CSI answers (idempotent, never shrinks) hold. The model is
//! `expand_volume.rs`. Skips with a message when the variable is unset.

mod support;

use support::crash::expand_req;
use support::real::{lvol_bytes, read_volume, skip, write_volume};
use support::*;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_volume_grows_on_every_replica_and_at_the_frontend_on_real_spdk() {
    if skip("online expansion") {
        return;
    }
    let started = std::time::Instant::now();
    let mut h = Harness::start_opts(3, StoreKind::Etcd, "", &["nvme-tcp"]).await;
    let vol = h.create_volume("pvc-real-grow", 16 * MIB, Some(3)).await;
    let ctx = h.publish(&vol, "node-0").await;
    let before = pattern(64 * 1024, 5);
    write_volume(&h, &ctx, 0, &before).await;

    let grown = 32 * MIB;
    let answer = h
        .csi
        .controller_expand_volume(expand_req(&vol, grown))
        .await
        .expect("expand")
        .into_inner();
    assert_eq!(answer.capacity_bytes, grown);
    for i in 0..3 {
        let lvol = h
            .spdk(i)
            .bdev_get(&replica_alias(&vol))
            .await
            .expect("get")
            .expect("lvol");
        assert_eq!(lvol.size_bytes(), grown as u64, "replica on node-{i}");
    }
    let raid_size = h
        .spdk(0)
        .bdev_get(&raid(&vol))
        .await
        .expect("get")
        .expect("raid")
        .size_bytes();
    assert_eq!(raid_size, grown as u64, "raid1 on the publishing node");

    // Beyond the old end, through the export, onto every replica.
    let after = pattern(64 * 1024, 9);
    let offset = 24 * MIB as u64;
    write_volume(&h, &ctx, offset, &after).await;
    assert_eq!(read_volume(&h, &ctx, 0, before.len()).await, before);
    assert_eq!(read_volume(&h, &ctx, offset, after.len()).await, after);
    let replica = shorthorn_controller::naming::replica_lvol(&vol);
    for i in 0..3 {
        assert_eq!(
            lvol_bytes(&h, i, &replica, 0, before.len()).await,
            before,
            "replica on node-{i}, before the old end"
        );
        assert_eq!(
            lvol_bytes(&h, i, &replica, offset, after.len()).await,
            after,
            "replica on node-{i}, beyond the old end"
        );
    }

    // Idempotent; never shrinks.
    let again = h
        .csi
        .controller_expand_volume(expand_req(&vol, grown))
        .await
        .expect("expand again")
        .into_inner();
    assert_eq!(again.capacity_bytes, grown);
    let shrink = h
        .csi
        .controller_expand_volume(expand_req(&vol, 16 * MIB))
        .await
        .expect_err("shrinking must fail");
    assert_eq!(shrink.code(), Code::OutOfRange, "{shrink}");

    h.unpublish(&vol, "node-0").await;
    h.delete_volume(&vol).await;
    h.assert_clean().await;
    println!(
        "MEASURE real spdk_tgt: expansion took {:?}",
        started.elapsed()
    );
}
