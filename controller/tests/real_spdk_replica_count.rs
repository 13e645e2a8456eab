//! Changing `numberOfReplicas` on real spdk_tgt v25.09
//! (`SHORTHORN_SPDK_TGT`), through CSI ControllerModifyVolume, while writes
//! stream through the volume's NVMe/TCP export: 3 -> 2 (the leg leaves the
//! raid, its lvol is deleted), then 2 -> 3 into the freed slot (the
//! full-copy fallback, `bdev_raid_add_base_bdev`), every write succeeding;
//! a raid with no free slot is refused before SPDK would answer -22; then
//! unpublished 3 -> 2 -> 3 (thin). Every replica's bytes are read on its
//! node at the end. The sim model is `replica_count.rs`. Skips with a
//! message when the variable is unset.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use csi_proto::ControllerModifyVolumeRequest;
use support::real::{
    lvol_bytes, skip, wait_writes_flowing, write_rounds, write_volume, WRITER_OFFSET,
};
use support::*;
use tonic::Code;

const LEN: usize = 256 * 1024;

async fn modify(h: &mut Harness, volume: &str, n: u32) -> Result<(), tonic::Status> {
    h.csi
        .controller_modify_volume(ControllerModifyVolumeRequest {
            volume_id: volume.to_string(),
            secrets: HashMap::new(),
            mutable_parameters: HashMap::from([("numberOfReplicas".into(), n.to_string())]),
        })
        .await
        .map(|_| ())
}

/// The volume's replica nodes in the store.
async fn holders(h: &Harness, volume: &str) -> Vec<String> {
    let ctx = own_context(
        h.config(),
        agent_api::FrontendKind::NvmeTcp,
        Default::default(),
    )
    .await;
    ctx.store
        .list_replicas(volume)
        .await
        .expect("store")
        .into_iter()
        .map(|r| r.record.node)
        .collect()
}

/// ModifyVolume to `n` while a writer streams through the export; returns
/// what the writer's range must hold.
async fn modify_while_writing(
    h: &Harness,
    pctx: &HashMap<String, String>,
    volume: &str,
    n: u32,
) -> Vec<u8> {
    let stop = AtomicBool::new(false);
    let rounds = AtomicU64::new(0);
    let h2 = h;
    let mut csi = h2.csi.clone();
    let started = Instant::now();
    let ((r, last), ()) = tokio::join!(write_rounds(h2, pctx, &stop, &rounds), async {
        wait_writes_flowing(h2, volume).await;
        csi.controller_modify_volume(ControllerModifyVolumeRequest {
            volume_id: volume.to_string(),
            secrets: HashMap::new(),
            mutable_parameters: HashMap::from([("numberOfReplicas".into(), n.to_string())]),
        })
        .await
        .unwrap_or_else(|e| panic!("ModifyVolume to {n}: {e}"));
        println!(
            "MEASURE real spdk_tgt: ModifyVolume to {n} while written: {:?}",
            started.elapsed()
        );
        stop.store(true, Ordering::Relaxed);
    });
    println!("{r} writer rounds during the change, every write acknowledged");
    last
}

/// Every replica (nodes 0 to 2), read on its node, holds the first write
/// `a` and the writer's last round `last`.
async fn check(h: &Harness, id: &str, a: &[u8], last: &[u8]) {
    let replica = shorthorn_controller::naming::replica_lvol(id);
    for i in 0..3 {
        assert!(
            lvol_bytes(h, i, &replica, 2 * 1024 * 1024, LEN).await == a,
            "replica on node-{i} lost the first write"
        );
        assert!(
            lvol_bytes(h, i, &replica, WRITER_OFFSET, last.len()).await == last,
            "replica on node-{i} does not hold the writer's last round"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replica_count_changes_while_written_on_real_spdk() {
    if skip("replica count changes") {
        return;
    }
    let started = Instant::now();
    let mut h = Harness::start_opts(3, StoreKind::Etcd, "", &["nvme-tcp"]).await;
    let id = h.create_volume("pvc-real-count", 16 * MIB, Some(3)).await;
    let pctx = h.publish(&id, "node-0").await;
    let a = pattern(LEN, 1);
    write_volume(&h, &pctx, 2 * 1024 * 1024, &a).await;

    // 3 -> 2 while written: node-2 (not the engine's leg) goes.
    let mut last = modify_while_writing(&h, &pctx, &id, 2).await;
    assert_eq!(holders(&h, &id).await, ["node-0", "node-1"]);
    assert_eq!(h.raid_member_nodes(&id, 0).await, ["node-0", "node-1"]);
    assert!(
        !h.replica_lvols()
            .await
            .iter()
            .any(|l| l.starts_with("node-2:")),
        "node-2's replica lvol is deleted"
    );

    // 2 -> 3 while written: the full copy into the slot node-2 left.
    last = {
        let l = modify_while_writing(&h, &pctx, &id, 3).await;
        assert_eq!(l.len(), last.len());
        l
    };
    assert_eq!(holders(&h, &id).await, ["node-0", "node-1", "node-2"]);
    assert_eq!(
        h.raid_member_nodes(&id, 0).await,
        ["node-0", "node-1", "node-2"]
    );

    // Full again: growing is refused before SPDK is asked, nothing changes.
    let err = modify(&mut h, &id, 4).await.expect_err("no slot, no node");
    assert!(
        matches!(
            err.code(),
            Code::FailedPrecondition | Code::ResourceExhausted
        ),
        "{err:?}"
    );
    assert_eq!(holders(&h, &id).await.len(), 3);
    h.unpublish(&id, "node-0").await;

    check(&h, &id, &a, &last).await;

    // Unpublished: 3 -> 2 -> 3, the way back a thin copy.
    modify(&mut h, &id, 2).await.expect("3 -> 2 unpublished");
    assert_eq!(holders(&h, &id).await, ["node-0", "node-1"]);
    let t = Instant::now();
    modify(&mut h, &id, 3).await.expect("2 -> 3 unpublished");
    println!(
        "MEASURE real spdk_tgt: 2 -> 3 unpublished (thin): {:?}",
        t.elapsed()
    );
    check(&h, &id, &a, &last).await;
    println!("real replica count test: {:?}", started.elapsed());
}
