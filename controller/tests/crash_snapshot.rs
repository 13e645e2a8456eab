//! Crash safety of the snapshot-era operations: a controller killed right
//! after any journaled step of CreateSnapshot (of an unpublished volume, and
//! of an NVMe/TCP-published one, also while its ANA fence holds I/O),
//! CreateVolume from a snapshot, ControllerExpandVolume and revert leaves a
//! state that a fresh controller (its reconciler runs at startup) and the
//! retried call complete or roll back: exactly one snapshot or clone, the
//! same bytes on every replica, the fence lifted, and no stray snapshot
//! lvol, clone, temporary lvol or subsystem on any node.
//!
//! The crashing controller is this test binary re-executed in child mode
//! (`crash_child`, see `support::crash`). The node-quiesce fence needs a
//! node agent the child cannot reach here, so its crash while fenced is
//! reproduced in place: the journal entry and the suspended node I/O that
//! crash leaves, then the startup recovery.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agent_api::FrontendKind as Frontend;
use async_trait::async_trait;
use csi_proto::ListSnapshotsRequest;
use shorthorn_controller::error::Result as CResult;
use shorthorn_controller::fence::node_quiesce::NodeQuiesce;
use shorthorn_controller::fence::{Fencing, Resumed};
use shorthorn_controller::journal::Journal;
use shorthorn_controller::ops::snapshot_create::SnapshotPayload;
use shorthorn_controller::reconciler;
use shorthorn_controller::store::OperationKind;
use shorthorn_controller::{naming, ops};
use support::crash::{self, clone_req, clone_volume_req, expand_req};
use support::*;

const SNAPSHOT_STEPS: &[&str] = &["started", "snapshotted", "recorded"];
/// With a fence: `fenced` is the crash while the fence holds I/O.
const FENCED_SNAPSHOT_STEPS: &[&str] = &["started", "fenced", "snapshotted", "recorded"];
const CLONE_STEPS: &[&str] = &["placed", "replicas-created", "recorded"];
/// A copy of a volume: its internal snapshot's steps, then the clone's.
const VOLUME_CLONE_FAULTS: &[&str] = &[
    "create-snapshot:started",
    "create-snapshot:snapshotted",
    "create-snapshot:recorded",
    "create-volume:placed",
    "create-volume:replicas-created",
    "create-volume:recorded",
];
const EXPAND_STEPS: &[&str] = &["started", "resized"];
const REVERT_STEPS: &[&str] = &["started", "cloned", "reverted"];

/// Bytes written and compared.
const SPAN: usize = 128 * 1024;

/// Not a test: the body of the crashing controller, run only as a child.
#[tokio::test]
#[ignore = "runs only as the crashing child of the crash tests"]
async fn crash_child() {
    crash::child_main().await;
}

/// Writes `data` at offset 0 of every replica lvol of an unpublished volume.
async fn write_replicas(h: &Harness, volume_id: &str, data: &[u8]) {
    for i in 0..3 {
        sim_write(&h.spdk(i), &replica_alias(volume_id), 0, data).await;
    }
}

/// Checksums of the first [`SPAN`] bytes of `bdev` on every node.
async fn sums(h: &Harness, bdev: &str) -> Vec<u64> {
    let clients: Vec<_> = (0..3).map(|i| h.spdk(i)).collect();
    checksums(&clients, bdev, SPAN as u64).await
}

/// Ids of the snapshots the controller lists for `volume_id`.
async fn snapshot_ids(h: &mut Harness, volume_id: &str) -> Vec<String> {
    h.csi
        .list_snapshots(ListSnapshotsRequest {
            source_volume_id: volume_id.to_string(),
            ..Default::default()
        })
        .await
        .expect("list snapshots")
        .into_inner()
        .entries
        .into_iter()
        .filter_map(|e| e.snapshot)
        .map(|s| s.snapshot_id)
        .collect()
}

/// The snapshot lvols of `snapshot_id`, one per node, as `lvols_with_prefix` lists them.
fn snapshot_lvols(h: &Harness, snapshot_id: &str) -> Vec<String> {
    let mut out: Vec<String> = (0..3)
        .map(|i| format!("{}:{}", h.cluster.node(i).name, snapshot_alias(snapshot_id)))
        .collect();
    out.sort();
    out
}

/// Retries CreateVolume `req` (with `source`'s data as its content) after
/// the crash at `step`: exactly `source` and the one new volume exist, with
/// three replicas of the new one, each holding `data`. Returns its id.
async fn retry_copy(
    h: &mut Harness,
    req: csi_proto::CreateVolumeRequest,
    source: &str,
    data: &[u8],
    step: &str,
) -> String {
    let clone = h
        .csi
        .create_volume(req)
        .await
        .unwrap_or_else(|e| panic!("retry after crash at {step}: {e}"))
        .into_inner()
        .volume
        .expect("volume")
        .volume_id;
    let mut ids = h.volume_ids().await;
    ids.sort();
    let mut want = vec![source.to_string(), clone.clone()];
    want.sort();
    assert_eq!(ids, want, "exactly one new volume after crash at {step}");
    let mut clone_lvols = h.lvols_with_prefix(naming::LVOL_PREFIX).await;
    clone_lvols.retain(|l| !l.ends_with(&replica_alias(source)));
    assert_eq!(
        clone_lvols.len(),
        3,
        "exactly three replicas of the new volume after crash at {step}: {clone_lvols:?}"
    );
    assert!(clone_lvols
        .iter()
        .all(|l| l.ends_with(&replica_alias(&clone))));
    let got = sums(h, &replica_alias(&clone)).await;
    assert!(
        got.iter().all(|s| *s == checksum(data)),
        "every replica of the new volume holds the source's data after crash at {step}: {got:x?}"
    );
    clone
}

/// Checks that only `vol`'s replicas and `snap`'s lvols (one per node) are
/// left after the crash at `step` was recovered.
async fn assert_only_volume_and_snapshot_left(h: &Harness, vol: &str, snap: &str, step: &str) {
    assert_eq!(
        h.lvols_with_prefix(naming::SNAPSHOT_PREFIX).await,
        snapshot_lvols(h, snap),
        "the snapshot's lvols stay, no others (crash at {step})"
    );
    h.assert_only_left(
        &[replica_alias(vol), snapshot_alias(snap)],
        &format!("after crash at {step}"),
    )
    .await;
}

/// Retries CreateSnapshot after a crash at `step` and checks exactly one
/// snapshot exists, on every replica, holding `data`; deletes it again.
async fn check_snapshot_after_crash(
    h: &mut Harness,
    vol: &str,
    name: &str,
    step: &str,
    data: &[u8],
) {
    let snap = h
        .csi
        .create_snapshot(snap_req(name, vol))
        .await
        .unwrap_or_else(|e| panic!("retry after crash at {step}: {e}"))
        .into_inner()
        .snapshot
        .expect("snapshot");
    assert_eq!(
        snapshot_ids(h, vol).await,
        vec![snap.snapshot_id.clone()],
        "exactly one snapshot after crash at {step}"
    );
    assert_eq!(
        h.lvols_with_prefix(naming::SNAPSHOT_PREFIX).await,
        snapshot_lvols(h, &snap.snapshot_id),
        "exactly one snapshot lvol per replica after crash at {step}"
    );
    let want = checksum(data);
    let got = sums(h, &snapshot_alias(&snap.snapshot_id)).await;
    assert!(
        got.iter().all(|s| *s == want),
        "every replica's snapshot holds the data after crash at {step}: {got:x?}"
    );
    h.delete_snapshot(&snap.snapshot_id).await;
    assert!(
        h.lvols_with_prefix(naming::SNAPSHOT_PREFIX)
            .await
            .is_empty(),
        "snapshot lvols left after deleting the snapshot (crash at {step})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_snapshot_survives_a_crash_after_every_step() {
    let mut h = Harness::start(3, StoreKind::Etcd).await;
    let vol = h.create_volume("pvc-snap-crash", 16 * MIB, Some(3)).await;
    for (i, step) in SNAPSHOT_STEPS.iter().enumerate() {
        let data = pattern(SPAN, i as u8);
        write_replicas(&h, &vol, &data).await;
        let name = format!("snap-crash-{step}");
        h.crash_and_restart(
            &format!("create-snapshot:{step}"),
            &["snapshot", &vol, &name],
        )
        .await;
        check_snapshot_after_crash(&mut h, &vol, &name, step, &data).await;
        h.assert_only_left(&[replica_alias(&vol)], &format!("after crash at {step}"))
            .await;
    }
    h.delete_volume(&vol).await;
    h.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fenced_create_snapshot_survives_a_crash_after_every_step_and_lifts_the_fence() {
    let mut h = Harness::start_opts(3, StoreKind::Etcd, "", &["nvme_tcp"]).await;
    let vol = h.create_volume("pvc-fenced-crash", 16 * MIB, Some(3)).await;
    h.publish(&vol, "node-0").await;
    for (i, step) in FENCED_SNAPSHOT_STEPS.iter().enumerate() {
        let data = pattern(SPAN, 10 + i as u8);
        sim_write(&h.spdk(0), &raid(&vol), 0, &data).await;
        let name = format!("fenced-crash-{step}");
        h.crash_and_restart(
            &format!("create-snapshot:{step}"),
            &["snapshot", &vol, &name],
        )
        .await;
        assert_ana_optimized(
            &h,
            &vol,
            &format!("the fence is lifted once the controller is back after a crash at {step}"),
        )
        .await;
        check_snapshot_after_crash(&mut h, &vol, &name, step, &data).await;
        assert_ana_optimized(
            &h,
            &vol,
            &format!("the fence is lifted after the retried snapshot (crash at {step})"),
        )
        .await;
        // The published volume still takes writes and reads them back.
        let after = pattern(SPAN, 100 + i as u8);
        sim_write(&h.spdk(0), &raid(&vol), 0, &after).await;
        assert_eq!(
            sim_read(&h.spdk(0), &raid(&vol), 0, SPAN as u64).await,
            after
        );
    }
    h.unpublish(&vol, "node-0").await;
    h.delete_volume(&vol).await;
    h.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clone_from_a_snapshot_survives_a_crash_after_every_step() {
    let mut h = Harness::start(3, StoreKind::Etcd).await;
    let vol = h.create_volume("pvc-clone-source", 16 * MIB, Some(3)).await;
    let data = pattern(SPAN, 7);
    write_replicas(&h, &vol, &data).await;
    let snap = h.create_snapshot("clone-source", &vol).await;
    for step in CLONE_STEPS {
        let name = format!("pvc-clone-crash-{step}");
        h.crash_and_restart(&format!("create-volume:{step}"), &["clone", &name, &snap])
            .await;
        let clone = retry_copy(&mut h, clone_req(&name, &snap), &vol, &data, step).await;
        h.delete_volume(&clone).await;
        assert_only_volume_and_snapshot_left(&h, &vol, &snap, step).await;
    }
    h.delete_snapshot(&snap).await;
    h.delete_volume(&vol).await;
    h.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clone_from_a_volume_survives_a_crash_after_every_step() {
    let mut h = Harness::start(3, StoreKind::Etcd).await;
    let vol = h.create_volume("pvc-copy-source", 16 * MIB, Some(3)).await;
    let data = pattern(SPAN, 9);
    write_replicas(&h, &vol, &data).await;
    for fault in VOLUME_CLONE_FAULTS {
        let name = format!("pvc-copy-crash-{}", fault.replace(':', "-"));
        h.crash_and_restart(fault, &["clone-volume", &name, &vol])
            .await;
        let clone = retry_copy(&mut h, clone_volume_req(&name, &vol), &vol, &data, fault).await;
        assert!(
            snapshot_ids(&mut h, &vol).await.is_empty(),
            "the internal snapshot is never listed (crash at {fault})"
        );
        let internal = h.lvols_with_prefix(naming::SNAPSHOT_PREFIX).await;
        assert_eq!(
            internal.len(),
            3,
            "exactly one internal snapshot, one lvol per replica, after crash at {fault}: {internal:#?}"
        );
        h.delete_volume(&clone).await;
        h.assert_only_left(&[replica_alias(&vol)], &format!("after crash at {fault}"))
            .await;
    }
    h.delete_volume(&vol).await;
    h.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expand_survives_a_crash_after_every_step() {
    let mut h = Harness::start(3, StoreKind::Etcd).await;
    let vol = h.create_volume("pvc-expand-crash", 16 * MIB, Some(3)).await;
    let data = pattern(SPAN, 3);
    write_replicas(&h, &vol, &data).await;
    for (i, step) in EXPAND_STEPS.iter().enumerate() {
        let size = (32 + 16 * i as i64) * MIB;
        h.crash_and_restart(
            &format!("expand-volume:{step}"),
            &["expand", &vol, &size.to_string()],
        )
        .await;
        let answer = h
            .csi
            .controller_expand_volume(expand_req(&vol, size))
            .await
            .unwrap_or_else(|e| panic!("retry after crash at {step}: {e}"))
            .into_inner();
        assert_eq!(answer.capacity_bytes, size, "after crash at {step}");
        for n in 0..3 {
            let lvol = h
                .spdk(n)
                .bdev_get(&replica_alias(&vol))
                .await
                .expect("get")
                .expect("replica lvol");
            assert_eq!(
                lvol.size_bytes(),
                size as u64,
                "replica on node-{n} grown after crash at {step}"
            );
        }
        let listed = h
            .csi
            .list_volumes(csi_proto::ListVolumesRequest::default())
            .await
            .expect("list")
            .into_inner()
            .entries;
        assert_eq!(listed.len(), 1);
        assert_eq!(
            listed[0].volume.as_ref().map(|v| v.capacity_bytes),
            Some(size),
            "the recorded capacity follows after crash at {step}"
        );
        let got = sums(&h, &replica_alias(&vol)).await;
        assert!(
            got.iter().all(|s| *s == checksum(&data)),
            "data kept on every replica after crash at {step}: {got:x?}"
        );
        h.assert_only_left(&[replica_alias(&vol)], &format!("after crash at {step}"))
            .await;
    }
    h.delete_volume(&vol).await;
    h.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revert_survives_a_crash_after_every_step() {
    let mut h = Harness::start(3, StoreKind::Etcd).await;
    let vol = h.create_volume("pvc-revert-crash", 16 * MIB, Some(3)).await;
    let a = pattern(SPAN, 1);
    write_replicas(&h, &vol, &a).await;
    let snap = h.create_snapshot("revert-to", &vol).await;
    for (i, step) in REVERT_STEPS.iter().enumerate() {
        write_replicas(&h, &vol, &pattern(SPAN, 50 + i as u8)).await;
        h.crash_and_restart(&format!("revert-volume:{step}"), &["revert", &vol, &snap])
            .await;
        let ctx = own_context(h.config(), Frontend::Ublk, Fencing::default()).await;
        ops::revert::revert_to_snapshot(&ctx, &vol, &snap)
            .await
            .unwrap_or_else(|e| panic!("retry after crash at {step}: {e}"));
        let got = sums(&h, &replica_alias(&vol)).await;
        assert!(
            got.iter().all(|s| *s == checksum(&a)),
            "every replica holds the snapshot's data after crash at {step}: {got:x?}"
        );
        assert_replica_records_follow_lvols(
            &h,
            &ctx,
            &vol,
            &format!("replica record follows the new lvol after crash at {step}"),
        )
        .await;
        let mut want: Vec<String> = (0..3)
            .map(|n| format!("{}:{}", h.cluster.node(n).name, replica_alias(&vol)))
            .collect();
        want.sort();
        assert_eq!(
            h.lvols_with_prefix(naming::LVOL_PREFIX).await,
            want,
            "no temporary revert lvol after crash at {step}"
        );
        assert_only_volume_and_snapshot_left(&h, &vol, &snap, step).await;
    }
    h.delete_snapshot(&snap).await;
    h.delete_volume(&vol).await;
    h.assert_clean().await;
}

/// The node side of a quiesce whose lease outlives the test: I/O stays
/// suspended until the controller resumes it.
#[derive(Debug, Default)]
struct HeldQuiesce {
    suspended: AtomicBool,
    resumes: AtomicU64,
}

#[async_trait]
impl NodeQuiesce for HeldQuiesce {
    async fn suspend(&self, _volume_id: &str, _deadline: Duration) -> CResult<()> {
        self.suspended.store(true, Ordering::SeqCst);
        Ok(())
    }

    async fn resume(&self, _volume_id: &str) -> CResult<Resumed> {
        let was_held = self.suspended.swap(false, Ordering::SeqCst);
        self.resumes.fetch_add(1, Ordering::SeqCst);
        Ok(Resumed {
            lease_expired: !was_held,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_resumes_a_node_quiesce_a_crash_left_in_place() {
    let h = Harness::start(3, StoreKind::Etcd).await;
    let node = Arc::new(HeldQuiesce::default());
    let fencing = || Fencing::default().with_node_quiesce(node.clone());
    let ctx = own_context(h.config(), Frontend::Ublk, fencing()).await;
    let vol = own_volume(&ctx, "pvc-quiesce-crash", 16, 3).await;
    ops::publish::publish(&ctx, &vol, "node-0", false)
        .await
        .expect("publish");
    let data = pattern(SPAN, 21);
    sim_write(&h.spdk(0), &raid(&vol), 0, &data).await;

    // What a controller that crashed at `create-snapshot:fenced` leaves: the
    // journal at `started` and the node's I/O suspended.
    let publications: Vec<_> = ctx
        .store
        .list_publications(&vol)
        .await
        .expect("publications")
        .into_iter()
        .map(|p| p.record)
        .collect();
    let fence = ctx
        .fencing
        .fence_for(&vol, &publications, |n| ctx.nodes.get(n))
        .expect("fence")
        .expect("a writer to fence");
    fence
        .suspend(Duration::from_secs(600))
        .await
        .expect("suspend");
    let payload = SnapshotPayload {
        snapshot_id: shorthorn_controller::naming::new_snapshot_id(),
        name: "quiesce-crash".into(),
        nodes: (0..3).map(|i| format!("node-{i}")).collect(),
        lvols: BTreeMap::new(),
    };
    let journal = Journal::begin(
        &ctx.store,
        OperationKind::CreateSnapshot,
        &vol,
        None,
        "started",
        &payload,
    )
    .await
    .expect("journal");
    drop(journal);
    drop(ctx);
    assert!(node.suspended.load(Ordering::SeqCst));

    // A restarted controller's startup recovery lifts the fence.
    let ctx = own_context(h.config(), Frontend::Ublk, fencing()).await;
    assert_eq!(reconciler::recover_pending(&ctx).await.expect("recover"), 1);
    assert!(
        !node.suspended.load(Ordering::SeqCst),
        "the node's I/O is resumed by recovery"
    );
    let resumes = node.resumes.load(Ordering::SeqCst);

    // The retried snapshot is the only one, fenced and lifted again.
    let snap = ops::snapshot_create::create_snapshot(&ctx, "quiesce-crash", &vol)
        .await
        .expect("retry");
    assert!(!node.suspended.load(Ordering::SeqCst));
    assert_eq!(node.resumes.load(Ordering::SeqCst), resumes + 1);
    assert_eq!(
        h.lvols_with_prefix(naming::SNAPSHOT_PREFIX).await,
        snapshot_lvols(&h, &snap.id)
    );
    let got = sums(&h, &snapshot_alias(&snap.id)).await;
    assert!(got.iter().all(|s| *s == checksum(&data)), "{got:x?}");

    ops::unpublish::unpublish(&ctx, &vol, None)
        .await
        .expect("unpublish");
    ops::snapshot_delete::delete_snapshot(&ctx, &snap.id)
        .await
        .expect("delete snapshot");
    ops::delete_volume::delete_volume(&ctx, &vol)
        .await
        .expect("delete volume");
    h.assert_clean().await;
}
