//! Crash safety on real spdk_tgt v25.09 (`SHORTHORN_SPDK_TGT`): a
//! controller killed right after a journaled step of CreateVolume or
//! ControllerPublishVolume (the steps that touch the most SPDK objects)
//! leaves a state that a fresh controller completes or rolls back; the
//! retried call ends right, the volume carries data through its NVMe/TCP
//! export, and nothing leaks. The model is `crash.rs`; the crashing
//! controller is this test binary re-executed (`support::crash`). Skips
//! with a message when the variable is unset.

mod support;

use support::crash;
use support::real::{read_volume, skip, write_volume};
use support::*;

const CREATE_STEPS: &[&str] = &["replicas-created"];
const PUBLISH_STEPS: &[&str] = &["attached", "assembled", "frontend"];

/// Not a test: the body of the crashing controller, run only as a child.
#[tokio::test]
#[ignore = "runs only as the crashing child of the crash tests"]
async fn crash_child() {
    crash::child_main().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_and_publish_survive_crashes_on_real_spdk() {
    if skip("crash recovery") {
        return;
    }
    let started = std::time::Instant::now();
    let mut h = Harness::start_opts(3, StoreKind::Etcd, "", &["nvme-tcp"]).await;
    for step in CREATE_STEPS {
        let name = format!("pvc-real-crash-{step}");
        h.crash_and_restart(&format!("create-volume:{step}"), &["create", &name])
            .await;
        let retried = h
            .csi
            .create_volume(create_req(&name, 16 * MIB, Some(3)))
            .await
            .unwrap_or_else(|e| panic!("retry after crash at {step}: {e}"))
            .into_inner()
            .volume
            .expect("volume");
        assert_eq!(h.volume_ids().await, vec![retried.volume_id.clone()]);
        assert_eq!(
            h.replica_lvols().await.len(),
            3,
            "exactly three replicas after crash at {step}: {:?}",
            h.replica_lvols().await
        );
        h.delete_volume(&retried.volume_id).await;
        h.assert_clean().await;
    }

    let id = h
        .create_volume("pvc-real-publish-crash", 16 * MIB, Some(3))
        .await;
    for (i, step) in PUBLISH_STEPS.iter().enumerate() {
        h.crash_and_restart(
            &format!("publish-volume:{step}"),
            &["publish", &id, "node-0"],
        )
        .await;
        let ctx = h
            .csi
            .controller_publish_volume(publish_req(&id, "node-0"))
            .await
            .unwrap_or_else(|e| panic!("retry after crash at {step}: {e}"))
            .into_inner()
            .publish_context;
        let data = pattern(64 * 1024, i as u8);
        write_volume(&h, &ctx, 0, &data).await;
        assert_eq!(
            read_volume(&h, &ctx, 0, data.len()).await,
            data,
            "usable after crash at {step}"
        );
        assert_eq!(
            h.raid_member_nodes(&id, 0).await.len(),
            3,
            "after crash at {step}"
        );
        h.unpublish(&id, "node-0").await;
        h.assert_only_left(&[replica_alias(&id)], &format!("after crash at {step}"))
            .await;
    }
    h.delete_volume(&id).await;
    h.assert_clean().await;
    println!(
        "MEASURE real spdk_tgt: crash recovery took {:?}",
        started.elapsed()
    );
}
