//! Crash safety: a controller killed right after any journaled step of
//! CreateVolume or ControllerPublishVolume leaves a state that a fresh
//! controller completes or rolls back, so the retried call ends right and
//! nothing leaks.
//!
//! The crashing controller is this test binary re-executed in child mode
//! (`crash_child`), with `SHORTHORN_FAULT_AT` set so it aborts at the step.

mod support;

use std::process::Command;

use csi_proto::controller_server::Controller;
use csi_proto::ListVolumesRequest;
use shorthorn_controller::config::ControllerConfig;
use shorthorn_controller::journal::FAULT_ENV;
use shorthorn_controller::server;
use shorthorn_controller::service::ControllerService;
use support::*;

/// Child mode: `<op>|<config path>|<arg>|<arg>`.
const CHILD_ENV: &str = "SHORTHORN_CRASH_CHILD";

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
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let parts: Vec<&str> = spec.split('|').collect();
    let config = ControllerConfig::load(parts[1].as_ref()).expect("config");
    let ctx = server::start(&config).await.expect("start");
    let service = ControllerService::new(ctx);
    let outcome = match parts[0] {
        "create" => service
            .create_volume(tonic::Request::new(create_req(parts[2], 16 * MIB, Some(3))))
            .await
            .map(|_| ()),
        "publish" => service
            .controller_publish_volume(tonic::Request::new(publish_req(parts[2], parts[3])))
            .await
            .map(|_| ()),
        other => panic!("unknown child op {other}"),
    };
    eprintln!("child finished without crashing: {outcome:?}");
    std::process::exit(3);
}

/// Runs the child with the fault set and checks it died at the fault.
async fn crash_at(h: &Harness, fault: &str, args: &[&str]) {
    let spec = std::iter::once(args[0])
        .chain(std::iter::once(h.config_path.to_str().expect("utf-8 path")))
        .chain(args[1..].iter().copied())
        .collect::<Vec<_>>()
        .join("|");
    let exe = std::env::current_exe().expect("current exe");
    let fault = fault.to_string();
    let status = tokio::task::spawn_blocking(move || {
        // `ulimit -c 0`: the deliberate abort must not leave a core file behind.
        Command::new("sh")
            .arg("-c")
            .arg("ulimit -c 0; exec \"$0\" \"$@\"")
            .arg(exe)
            .args([
                "--exact",
                "crash_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, spec)
            .env(FAULT_ENV, fault)
            .status()
            .expect("spawn child")
    })
    .await
    .expect("join");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(6),
        "the child should abort (SIGABRT) at the fault, got {status:?}"
    );
}

/// Ids of every volume the controller lists.
async fn volume_ids(h: &mut Harness) -> Vec<String> {
    h.csi
        .list_volumes(ListVolumesRequest::default())
        .await
        .expect("list")
        .into_inner()
        .entries
        .into_iter()
        .filter_map(|e| e.volume)
        .map(|v| v.volume_id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_volume_survives_a_crash_after_every_step() {
    let mut h = Harness::start(3, StoreKind::Etcd).await;
    for step in CREATE_STEPS {
        let name = format!("pvc-crash-{step}");
        h.stop_controller().await;
        crash_at(&h, &format!("create-volume:{step}"), &["create", &name]).await;
        h.restart_controller().await;
        let retried = h
            .csi
            .create_volume(create_req(&name, 16 * MIB, Some(3)))
            .await
            .unwrap_or_else(|e| panic!("retry after crash at {step}: {e}"))
            .into_inner()
            .volume
            .expect("volume");
        let ids = volume_ids(&mut h).await;
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
        h.csi
            .delete_volume(delete_req(&retried.volume_id))
            .await
            .expect("delete");
        h.assert_clean().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_survives_a_crash_after_every_step() {
    let mut h = Harness::start(3, StoreKind::Etcd).await;
    let id = h
        .csi
        .create_volume(create_req("pvc-publish-crash", 16 * MIB, Some(3)))
        .await
        .expect("create")
        .into_inner()
        .volume
        .expect("volume")
        .volume_id;
    for (i, step) in PUBLISH_STEPS.iter().enumerate() {
        h.stop_controller().await;
        crash_at(
            &h,
            &format!("publish-volume:{step}"),
            &["publish", &id, "node-0"],
        )
        .await;
        h.restart_controller().await;
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
        h.csi
            .controller_unpublish_volume(unpublish_req(&id, "node-0"))
            .await
            .expect("unpublish");
        let left: Vec<String> = h
            .leftovers()
            .await
            .into_iter()
            .filter(|l| !l.contains(": lvol "))
            .collect();
        assert!(
            left.is_empty(),
            "after crash at {step}, left behind: {left:#?}"
        );
    }
    h.csi.delete_volume(delete_req(&id)).await.expect("delete");
    h.assert_clean().await;
}
