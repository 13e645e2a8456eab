//! An lvstore running low on free clusters is reported before it runs out.

mod support;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volume_condition_warns_when_an_lvstore_is_nearly_full() {
    // Warn below 99.9 % free: the first allocated cluster crosses it.
    let mut h = Harness::start_with(
        3,
        StoreKind::Embedded,
        "lvstore_free_warning_percent = 99.9",
    )
    .await;
    let id = h.create_volume("pvc-space", 16 * MIB, Some(3)).await;
    let before = h.volume_condition(&id).await;
    assert!(
        !before.abnormal,
        "thin volume allocates nothing: {}",
        before.message
    );

    let ctx = h.publish(&id, "node-0").await;
    write_device(&ctx["ublk.device"], &pattern(1024 * 1024, 3));
    let after = h.volume_condition(&id).await;
    assert!(
        after.abnormal && after.message.contains("nearly full"),
        "{}",
        after.message
    );

    h.unpublish(&id, "node-0").await;
    h.delete_volume(&id).await;
    h.assert_clean().await;
}
