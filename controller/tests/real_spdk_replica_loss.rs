//! Losing a replica node on real spdk_tgt v25.09 (`SHORTHORN_SPDK_TGT`):
//! spdk_tgt is killed while a stream of writes runs through the volume's
//! NVMe/TCP export; every write succeeds (the raid drops the dead leg), the
//! replica is recorded stale, the next publish leaves it out even after the
//! node returns, and every replica still serving holds the last writes
//! while the stale one does not. The models are `replica_loss.rs` and
//! `data_safety.rs`. Skips with a message when the variable is unset.

mod support;

use std::time::Duration;

use support::real::{lvol_bytes, read_volume, signal, skip, wait_writes_flowing, write_volume};
use support::safety::wait_for;
use support::*;

const LEN: usize = 256 * 1024;
/// The stream during which the node dies: 4 KiB writes (an odd count).
const STREAM_OFFSET: u64 = 1024 * 1024;
const STREAM_LEN: usize = 511 * 4096;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_lost_during_writes_is_stale_left_out_and_the_rest_hold_the_writes_on_real_spdk()
{
    if skip("replica loss during writes") {
        return;
    }
    let started = std::time::Instant::now();
    let mut h = Harness::start_opts(3, StoreKind::Etcd, "", &["nvme-tcp"]).await;
    let id = h.create_volume("pvc-real-loss", 16 * MIB, Some(3)).await;
    let ctx = h.publish(&id, "node-0").await;
    write_volume(&h, &ctx, 0, &pattern(LEN, 1)).await;

    // node-2's spdk_tgt dies in the middle of a stream of writes.
    let pid = h.cluster.node(2).pid().expect("node-2 pid");
    let stream = pattern(STREAM_LEN, 40);
    tokio::join!(write_volume(&h, &ctx, STREAM_OFFSET, &stream), async {
        wait_writes_flowing(&h, &id).await;
        signal(pid, "KILL");
    });
    // And a write surely after the death.
    let b = pattern(LEN, 2);
    write_volume(&h, &ctx, 0, &b).await;
    let recorded = h.wait_replica_state(&id, "node-2", "stale").await;
    println!("MEASURE real spdk_tgt: replica death -> recorded stale: {recorded:?}");
    let c = h.volume_condition(&id).await;
    assert!(c.abnormal && c.message.contains("node-2"), "{}", c.message);

    // Unpublished with node-2 down; published again without it.
    h.unpublish(&id, "node-0").await;
    h.cluster.restart_node(2).expect("restart node-2");
    let ctx = h.publish(&id, "node-0").await;
    assert_eq!(
        h.raid_member_nodes(&id, 0).await,
        vec!["node-0".to_string(), "node-1".to_string()],
        "the stale replica must not be a raid member"
    );
    assert_eq!(read_volume(&h, &ctx, 0, LEN).await, b, "the last writes");
    assert!(
        read_volume(&h, &ctx, STREAM_OFFSET, STREAM_LEN).await == stream,
        "the stream written while the node died"
    );
    let c = h.volume_condition(&id).await;
    assert!(
        c.abnormal && c.message.contains("replica on node-2 is stale"),
        "the returned stale replica must stay stale: {}",
        c.message
    );
    h.unpublish(&id, "node-0").await;

    let replica = shorthorn_controller::naming::replica_lvol(&id);
    for i in 0..2 {
        assert_eq!(
            h.replica_bytes(i, &id, LEN).await,
            b,
            "replica on node-{i} does not hold the last writes"
        );
        assert!(
            lvol_bytes(&h, i, &replica, STREAM_OFFSET, STREAM_LEN).await == stream,
            "replica on node-{i} does not hold the stream"
        );
    }
    wait_for("node-2's lvstore", Duration::from_secs(20), || async {
        h.lvstore_loaded(2).await.then_some(())
    })
    .await;
    assert_ne!(
        h.replica_bytes(2, &id, LEN).await,
        b,
        "the stale copy missed the writes: serving it would return old data"
    );
    h.delete_volume(&id).await;
    h.reconcile_and_assert_clean().await;
    println!(
        "MEASURE real spdk_tgt: replica loss took {:?}",
        started.elapsed()
    );
}
