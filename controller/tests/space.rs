//! An lvstore running low on free clusters is reported before it runs out.

mod support;

use csi_proto::ControllerGetVolumeRequest;
use support::*;

async fn condition(h: &mut Harness, id: &str) -> csi_proto::VolumeCondition {
    h.csi
        .controller_get_volume(ControllerGetVolumeRequest {
            volume_id: id.to_string(),
        })
        .await
        .expect("get volume")
        .into_inner()
        .status
        .expect("status")
        .volume_condition
        .expect("condition")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volume_condition_warns_when_an_lvstore_is_nearly_full() {
    // Warn below 99.9 % free: the first allocated cluster crosses it.
    let mut h = Harness::start_with(
        3,
        StoreKind::Embedded,
        "lvstore_free_warning_percent = 99.9",
    )
    .await;
    let id = h
        .csi
        .create_volume(create_req("pvc-space", 16 * MIB, Some(3)))
        .await
        .expect("create")
        .into_inner()
        .volume
        .expect("volume")
        .volume_id;
    let before = condition(&mut h, &id).await;
    assert!(
        !before.abnormal,
        "thin volume allocates nothing: {}",
        before.message
    );

    let ctx = h
        .csi
        .controller_publish_volume(publish_req(&id, "node-0"))
        .await
        .expect("publish")
        .into_inner()
        .publish_context;
    write_device(&ctx["ublk.device"], &pattern(1024 * 1024, 3));
    let after = condition(&mut h, &id).await;
    assert!(
        after.abnormal && after.message.contains("nearly full"),
        "{}",
        after.message
    );

    h.csi
        .controller_unpublish_volume(unpublish_req(&id, "node-0"))
        .await
        .expect("unpublish");
    h.csi.delete_volume(delete_req(&id)).await.expect("delete");
    h.assert_clean().await;
}
