//! Crash safety: a controller killed right after any journaled step of
//! CreateVolume or ControllerPublishVolume leaves a state that a fresh
//! controller completes or rolls back, so the retried call ends right and
//! nothing leaks.
//!
//! The crashing controller is this test binary re-executed in child mode
//! (`crash_child`, see `support::crash`), with `SHORTHORN_FAULT_AT` set so
//! it aborts at the step.

mod support;

use support::crash;
use support::*;

const CREATE_STEPS: &[&str] = &["placed", "replicas-created", "recorded"];
const PUBLISH_STEPS: &[&str] = &[
    "started",
    "exported",
    "attached",
    "assembled",
    "frontend",
    "recorded",
];

/// Not a test: the body of the crashing controller, run only as a child.
#[tokio::test]
#[ignore = "runs only as the crashing child of the crash tests"]
async fn crash_child() {
    crash::child_main().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_volume_survives_a_crash_after_every_step() {
    let mut h = Harness::start(3, StoreKind::Etcd).await;
    for step in CREATE_STEPS {
        let name = format!("pvc-crash-{step}");
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
        let ids = h.volume_ids().await;
        assert_eq!(
            ids,
            vec![retried.volume_id.clone()],
            "exactly one volume after crash at {step}"
        );
        assert_eq!(
            h.replica_lvols().await.len(),
            3,
            "exactly three replicas after crash at {step}: {:?}",
            h.replica_lvols().await
        );
        h.delete_volume(&retried.volume_id).await;
        h.assert_clean().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_survives_a_crash_after_every_step() {
    let mut h = Harness::start(3, StoreKind::Etcd).await;
    let id = h
        .create_volume("pvc-publish-crash", 16 * MIB, Some(3))
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
        let device = ctx.get("ublk.device").expect("ublk.device").clone();
        let data = pattern(64 * 1024, i as u8);
        write_device(&device, &data);
        assert_eq!(
            read_device(&device, data.len()),
            data,
            "usable after crash at {step}"
        );
        h.unpublish(&id, "node-0").await;
        h.assert_only_left(&[replica_alias(&id)], &format!("after crash at {step}"))
            .await;
    }
    h.delete_volume(&id).await;
    h.assert_clean().await;
}
