//! Losing a storage node: the raid keeps serving, the lost replica is marked
//! failed and never serves again, the volume reports itself degraded, and the
//! orphan sweep cleans the node once it returns.

mod support;

use csi_proto::ControllerGetVolumeRequest;
use shorthorn_controller::{reconciler, server};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_replica_is_failed_reported_and_left_out_of_the_next_publish() {
    let mut h = Harness::start(3, StoreKind::Etcd).await;
    let id = h
        .csi
        .create_volume(create_req("pvc-loss", 16 * MIB, Some(3)))
        .await
        .expect("create")
        .into_inner()
        .volume
        .expect("volume")
        .volume_id;
    let ctx = h
        .csi
        .controller_publish_volume(publish_req(&id, "node-0"))
        .await
        .expect("publish")
        .into_inner()
        .publish_context;
    let device = ctx["ublk.device"].clone();
    write_device(&device, &pattern(256 * 1024, 1));

    // node-2 dies; the next write reaches its leg, which the raid drops.
    h.cluster.kill_node(2);
    let data = pattern(256 * 1024, 2);
    let dev = device.clone();
    let d = data.clone();
    tokio::task::spawn_blocking(move || write_device(&dev, &d))
        .await
        .expect("write while degraded");

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
    let condition = status.volume_condition.expect("condition");
    assert!(condition.abnormal, "degraded volume reported healthy");
    assert!(
        condition.message.contains("node-2"),
        "condition should name the lost node: {}",
        condition.message
    );

    // Move to node-1: only the two healthy replicas serve, with the latest data.
    h.csi
        .controller_unpublish_volume(unpublish_req(&id, "node-0"))
        .await
        .expect("unpublish with a node down");
    let ctx = h
        .csi
        .controller_publish_volume(publish_req(&id, "node-1"))
        .await
        .expect("publish degraded")
        .into_inner()
        .publish_context;
    assert_eq!(read_device(&ctx["ublk.device"], data.len()), data);

    // node-2 returns with a stale replica: still failed, never re-used.
    h.cluster.restart_node(2).expect("restart node-2");
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
    let condition = status.volume_condition.expect("condition");
    assert!(
        condition.abnormal && condition.message.contains("replica on node-2 is Failed"),
        "the returned stale replica must stay failed: {}",
        condition.message
    );

    h.csi
        .controller_unpublish_volume(unpublish_req(&id, "node-1"))
        .await
        .expect("unpublish");
    h.csi.delete_volume(delete_req(&id)).await.expect("delete");
    // A reconciler pass sweeps anything the dead node kept.
    let ctx = server::start(&h.config()).await.expect("start");
    reconciler::reconcile_once(&ctx).await.expect("reconcile");
    h.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpublishing_from_a_dead_node_fences_it_and_fails_its_local_replica() {
    let mut h = Harness::start(3, StoreKind::Etcd).await;
    let id = h
        .csi
        .create_volume(create_req("pvc-fence", 16 * MIB, Some(3)))
        .await
        .expect("create")
        .into_inner()
        .volume
        .expect("volume")
        .volume_id;
    let ctx = h
        .csi
        .controller_publish_volume(publish_req(&id, "node-0"))
        .await
        .expect("publish")
        .into_inner()
        .publish_context;
    let data = pattern(256 * 1024, 4);
    write_device(&ctx["ublk.device"], &data);

    h.cluster.kill_node(0);
    h.csi
        .controller_unpublish_volume(unpublish_req(&id, "node-0"))
        .await
        .expect("unpublish from a dead node succeeds once it is fenced");
    let replica_exports: Vec<String> = h
        .leftovers_on(&[1, 2])
        .await
        .into_iter()
        .filter(|l| l.contains(":replica:"))
        .collect();
    assert!(
        replica_exports.is_empty(),
        "remote replicas must no longer be exported to the dead node: {replica_exports:?}"
    );

    let ctx = h
        .csi
        .controller_publish_volume(publish_req(&id, "node-1"))
        .await
        .expect("publish on node-1 without node-0")
        .into_inner()
        .publish_context;
    assert_eq!(read_device(&ctx["ublk.device"], data.len()), data);
    let condition = h
        .csi
        .controller_get_volume(ControllerGetVolumeRequest {
            volume_id: id.clone(),
        })
        .await
        .expect("get volume")
        .into_inner()
        .status
        .expect("status")
        .volume_condition
        .expect("condition");
    assert!(
        condition.abnormal && condition.message.contains("node-0"),
        "{}",
        condition.message
    );

    h.cluster.restart_node(0).expect("restart node-0");
    h.csi
        .controller_unpublish_volume(unpublish_req(&id, "node-1"))
        .await
        .expect("unpublish");
    h.csi.delete_volume(delete_req(&id)).await.expect("delete");
    let ctx = server::start(&h.config()).await.expect("start");
    reconciler::reconcile_once(&ctx).await.expect("reconcile");
    h.assert_clean().await;
}
