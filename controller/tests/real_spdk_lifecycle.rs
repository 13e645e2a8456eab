//! A volume's whole life on real spdk_tgt v25.09 (`SHORTHORN_SPDK_TGT`):
//! create with a replica per node, publish through the NVMe/TCP frontend,
//! bytes in and out through the export (spdk_dd as the node's kernel),
//! every replica holding them, republish, a restarted controller that still
//! knows the volume, delete, nothing left. The model is `lifecycle.rs`; a
//! move to another node is left out: real replica-only nodes run in
//! interrupt mode and cannot assemble a raid. Skips with a message when the
//! variable is unset.

mod support;

use csi_proto::{ControllerGetVolumeRequest, ListVolumesRequest};
use support::real::{read_volume, skip, write_volume};
use support::*;

const LEN: usize = 512 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_publish_write_republish_and_delete_on_real_spdk() {
    if skip("a volume's lifecycle") {
        return;
    }
    let started = std::time::Instant::now();
    let mut h = Harness::start_opts(3, StoreKind::Etcd, "", &["nvme-tcp"]).await;
    assert!(h.cluster.is_real_spdk());
    let created = h
        .csi
        .create_volume(create_req("pvc-real-life", 32 * MIB, None))
        .await
        .expect("create")
        .into_inner()
        .volume
        .expect("volume");
    let id = created.volume_id.clone();
    assert_eq!(created.capacity_bytes, 32 * MIB);
    assert_eq!(h.replica_lvols().await.len(), 3, "one replica per node");

    let ctx = h.publish(&id, "node-0").await;
    assert_eq!(ctx.get("frontend").map(String::as_str), Some("nvme-tcp"));
    assert_eq!(h.raid_member_nodes(&id, 0).await.len(), 3);
    let data = pattern(LEN, 7);
    write_volume(&h, &ctx, 0, &data).await;
    assert_eq!(read_volume(&h, &ctx, 0, LEN).await, data);
    // Publishing again on the same node gives the same context.
    assert_eq!(h.publish(&id, "node-0").await, ctx);

    let status = h
        .csi
        .controller_get_volume(ControllerGetVolumeRequest {
            volume_id: id.clone(),
        })
        .await
        .expect("get volume")
        .into_inner()
        .status
        .expect("status");
    assert_eq!(status.published_node_ids, vec!["node-0".to_string()]);
    let condition = status.volume_condition.expect("condition");
    assert!(!condition.abnormal, "{}", condition.message);

    h.unpublish(&id, "node-0").await;
    h.unpublish(&id, "node-0").await; // twice is fine
    for i in 0..3 {
        assert_eq!(
            h.replica_bytes(i, &id, LEN).await,
            data,
            "replica on node-{i} after unpublish"
        );
    }

    // Published again: the same bytes; a restarted controller knows it.
    let ctx = h.publish(&id, "node-0").await;
    assert_eq!(read_volume(&h, &ctx, 0, LEN).await, data);
    h.restart_controller().await;
    let listed = h
        .csi
        .list_volumes(ListVolumesRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.entries.len(), 1);
    let status = listed.entries[0].status.clone().expect("status");
    assert_eq!(status.published_node_ids, vec!["node-0".to_string()]);

    h.unpublish(&id, "node-0").await;
    h.delete_volume(&id).await;
    h.delete_volume(&id).await; // deleting again is fine
    h.assert_clean().await;
    println!(
        "MEASURE real spdk_tgt: lifecycle took {:?}",
        started.elapsed()
    );
}
