//! A volume's whole life against simulated storage nodes and a real etcd.

mod support;

use csi_proto::{ControllerGetVolumeRequest, ListVolumesRequest, ProbeRequest};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_publish_move_and_delete_keeps_data_and_leaves_nothing() {
    let mut h = Harness::start(3, StoreKind::Etcd).await;
    let probe = h.identity.probe(ProbeRequest {}).await.expect("probe");
    assert_eq!(probe.into_inner().ready, Some(true));

    let created = h
        .csi
        .create_volume(create_req("pvc-life", 64 * MIB, None))
        .await
        .expect("create")
        .into_inner()
        .volume
        .expect("volume");
    let id = created.volume_id.clone();
    assert_eq!(created.capacity_bytes, 64 * MIB);
    assert_eq!(h.replica_lvols().await.len(), 3, "one replica per node");
    assert_eq!(created.accessible_topology.len(), 3);

    // Publish on node-0 and write through its ublk device.
    let ctx = h.publish(&id, "node-0").await;
    assert_eq!(ctx.get("frontend").map(String::as_str), Some("ublk"));
    let device = ctx.get("ublk.device").expect("ublk.device").clone();
    let data = pattern(1024 * 1024, 7);
    write_device(&device, &data);

    // Publishing again on the same node gives the same context.
    let again = h.publish(&id, "node-0").await;
    assert_eq!(again, ctx);

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
    // Unpublishing twice is fine.
    h.unpublish(&id, "node-0").await;

    // Move to node-1 and read the same bytes back.
    let ctx = h.publish(&id, "node-1").await;
    let device = ctx.get("ublk.device").expect("ublk.device").clone();
    assert_eq!(read_device(&device, data.len()), data);

    // A restarted controller still knows the volume and its publication.
    h.restart_controller().await;
    let listed = h
        .csi
        .list_volumes(ListVolumesRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.entries.len(), 1);
    let status = listed.entries[0].status.clone().expect("status");
    assert_eq!(status.published_node_ids, vec!["node-1".to_string()]);

    h.unpublish(&id, "node-1").await;
    h.delete_volume(&id).await;
    h.delete_volume(&id).await; // deleting again is fine
    h.assert_clean().await;
}
