//! Degraded publish on real spdk_tgt v25.09 (`SHORTHORN_SPDK_TGT`): stock
//! SPDK refuses a raid1 of fewer than two members, so a volume with one
//! current replica is assembled over that replica and a null pad that is
//! removed before any I/O. Data goes in and out through the volume's
//! NVMe-oF export (spdk_dd as the host) and is checked on the replica
//! itself. Skips with a message when the variable is unset.

mod support;

use std::collections::HashMap;

use support::*;
use testkit::data_path::Export;

const LEN: usize = 128 * 1024;

fn skip() -> bool {
    if std::env::var_os(testkit::nodes::SPDK_TGT_ENV).is_none() {
        eprintln!(
            "SKIPPED: set {}=/path/to/spdk_tgt (and SHORTHORN_SPDK_DD) to run degraded publish against real SPDK",
            testkit::nodes::SPDK_TGT_ENV
        );
        return true;
    }
    false
}

/// The volume's kernel-facing export, as the publish context names it.
fn export_of(ctx: &HashMap<String, String>) -> Export {
    use agent_api::attach::{KEY_NVME_HOSTNQN, KEY_NVME_SUBNQN, KEY_NVME_TRADDR, KEY_NVME_TRSVCID};
    let get = |k: &str| {
        ctx.get(k)
            .cloned()
            .unwrap_or_else(|| panic!("publish context has no {k}: {ctx:?}"))
    };
    Export {
        nqn: get(KEY_NVME_SUBNQN),
        host_nqn: get(KEY_NVME_HOSTNQN),
        address: get(KEY_NVME_TRADDR),
        port: get(KEY_NVME_TRSVCID).parse().expect("port"),
        nsid: 1,
    }
}

async fn write_volume(h: &Harness, ctx: &HashMap<String, String>, data: &[u8]) {
    h.cluster
        .data_path()
        .write_export(h.cluster.node(0), &export_of(ctx), 0, data)
        .await
        .expect("write through the volume");
}

async fn read_volume(h: &Harness, ctx: &HashMap<String, String>) -> Vec<u8> {
    h.cluster
        .data_path()
        .read_export(h.cluster.node(0), &export_of(ctx), 0, LEN as u64)
        .await
        .expect("read through the volume")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_replica_volume_with_one_lost_replica_publishes_degraded_on_real_spdk() {
    if skip() {
        return;
    }
    let mut h = Harness::start_opts(2, StoreKind::Etcd, "", &["nvme-tcp"]).await;
    assert!(h.cluster.is_real_spdk());
    let id = h
        .create_volume("pvc-real-degraded", 16 * MIB, Some(2))
        .await;
    let ctx = h.publish(&id, "node-0").await;
    write_volume(&h, &ctx, &pattern(LEN, 1)).await;
    assert_eq!(h.raid_member_nodes(&id, 0).await.len(), 2);

    // node-1 dies; the next write drops its leg and succeeds degraded.
    h.cluster.kill_node(1);
    let b = pattern(LEN, 2);
    write_volume(&h, &ctx, &b).await;
    h.wait_replica_state(&id, "node-1", "stale").await;
    h.unpublish(&id, "node-0").await;

    // One current replica: SPDK's raid1 minimum is met by the removed pad.
    let ctx = h.publish(&id, "node-0").await;
    assert_eq!(
        h.raid_member_nodes(&id, 0).await,
        vec!["node-0".to_string()]
    );
    assert_eq!(
        read_volume(&h, &ctx).await,
        b,
        "degraded raid reads the last writes"
    );
    let c = pattern(LEN, 3);
    write_volume(&h, &ctx, &c).await;
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
    if skip() {
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
    write_volume(&h, &ctx, &a).await;
    assert_eq!(read_volume(&h, &ctx).await, a);
    h.unpublish(&id, "node-0").await;
    assert_eq!(h.replica_bytes(0, &id, LEN).await, a);
    h.delete_volume(&id).await;
}
