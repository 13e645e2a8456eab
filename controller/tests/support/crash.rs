//! Crash injection for the crash tests: the crashing controller is the test
//! binary itself, re-executed in child mode with `SHORTHORN_FAULT_AT` set so
//! that it aborts right after the named step. Each crash test binary has a
//! `crash_child` test that calls [`child_main`].

use std::process::Command;

use csi_proto::controller_server::Controller;
use csi_proto::{CapacityRange, ControllerExpandVolumeRequest};
use shorthorn_controller::config::ControllerConfig;
use shorthorn_controller::journal::FAULT_ENV;
use shorthorn_controller::service::ControllerService;
use shorthorn_controller::{ops, server};

use super::{create_req, from_snapshot, from_volume, publish_req, snap_req, Harness, MIB};

/// Child mode: `<op>|<config path>|<arg>|<arg>`.
const CHILD_ENV: &str = "SHORTHORN_CRASH_CHILD";

/// The body of the crashing controller; returns at once unless this process
/// is a crash child. Child operations (arguments after the op):
/// `create NAME`, `publish VOLUME NODE`, `snapshot VOLUME NAME`,
/// `clone NAME SNAPSHOT`, `clone-volume NAME VOLUME`, `expand VOLUME BYTES`, `revert VOLUME SNAPSHOT`, `rebuild VOLUME` (every
/// rebuild due), `set-replicas VOLUME COUNT`.
/// Volumes are 16 MiB with 3 replicas.
pub async fn child_main() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let parts: Vec<&str> = spec.split('|').collect();
    let config = ControllerConfig::load(parts[1].as_ref()).expect("config");
    let ctx = server::start(&config).await.expect("start");
    let service = ControllerService::new(ctx.clone());
    let outcome = match parts[0] {
        "create" => service
            .create_volume(tonic::Request::new(create_req(parts[2], 16 * MIB, Some(3))))
            .await
            .map(|_| ()),
        "publish" => service
            .controller_publish_volume(tonic::Request::new(publish_req(parts[2], parts[3])))
            .await
            .map(|_| ()),
        "snapshot" => service
            .create_snapshot(tonic::Request::new(snap_req(parts[3], parts[2])))
            .await
            .map(|_| ()),
        "clone" => service
            .create_volume(tonic::Request::new(clone_req(parts[2], parts[3])))
            .await
            .map(|_| ()),
        "clone-volume" => service
            .create_volume(tonic::Request::new(clone_volume_req(parts[2], parts[3])))
            .await
            .map(|_| ()),
        "expand" => service
            .controller_expand_volume(tonic::Request::new(expand_req(
                parts[2],
                parts[3].parse().expect("bytes"),
            )))
            .await
            .map(|_| ()),
        "rebuild" => shorthorn_controller::rebuild::trigger::run_due(&ctx)
            .await
            .map(|runs| eprintln!("rebuilds: {}", runs.len()))
            .map_err(|e| tonic::Status::internal(e.to_string())),
        "revert" => ops::revert::revert_to_snapshot(&ctx, parts[2], parts[3])
            .await
            .map_err(|e| tonic::Status::internal(e.to_string())),
        "set-replicas" => {
            ops::replica_count::set_replica_count(&ctx, parts[2], parts[3].parse().expect("count"))
                .await
                .map(|_| ())
                .map_err(|e| tonic::Status::internal(e.to_string()))
        }
        other => panic!("unknown child op {other}"),
    };
    eprintln!("child finished without crashing: {outcome:?}");
    std::process::exit(3);
}

/// A CreateVolume request for `name` (16 MiB, 3 replicas) from `snapshot_id`.
pub fn clone_req(name: &str, snapshot_id: &str) -> csi_proto::CreateVolumeRequest {
    from_snapshot(create_req(name, 16 * MIB, Some(3)), snapshot_id)
}

/// A CreateVolume request for `name` (16 MiB, 3 replicas) copying volume `source_id`.
pub fn clone_volume_req(name: &str, source_id: &str) -> csi_proto::CreateVolumeRequest {
    from_volume(create_req(name, 16 * MIB, Some(3)), source_id)
}

/// A ControllerExpandVolume request growing `volume` to `bytes`.
pub fn expand_req(volume: &str, bytes: i64) -> ControllerExpandVolumeRequest {
    ControllerExpandVolumeRequest {
        volume_id: volume.to_string(),
        capacity_range: Some(CapacityRange {
            required_bytes: bytes,
            limit_bytes: 0,
        }),
        ..Default::default()
    }
}

/// Runs the child (`args`: op, then its arguments) with the fault set and
/// checks it died at the fault. Stop the harness's controller first.
pub async fn crash_at(h: &Harness, fault: &str, args: &[&str]) {
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
