//! NVMe/TCP discovery against fabricated sysfs trees (no kernel support
//! needed): controllers are matched by subsystem, transport and address,
//! namespaces by UUID, never by name.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use shorthorn_node::frontend::nvme_tcp::sysfs::{
    find_controllers, find_namespace, list_controllers, wait_for_namespace,
};
use shorthorn_node::frontend::nvme_tcp::{NvmeTcpConfig, NvmeTcpFrontend};
use shorthorn_node::frontend::{AttachSpec, Frontend, FrontendKind, NvmeTcpTarget};
use shorthorn_node::NodeError;
use uuid::Uuid;

const NQN_A: &str = "nqn.2024-01.io.shorthorn:vol-a";
const NQN_B: &str = "nqn.2024-01.io.shorthorn:vol-b";
const NQN_C: &str = "nqn.2024-01.io.shorthorn:vol-c";
const UUID_X: &str = "11111111-1111-4111-8111-111111111111";
const UUID_Y: &str = "22222222-2222-4222-8222-222222222222";
const UUID_Z: &str = "33333333-3333-4333-8333-333333333333";
const UUID_W: &str = "44444444-4444-4444-8444-444444444444";

struct FakeSys {
    dir: tempfile::TempDir,
}

impl FakeSys {
    fn new() -> Self {
        FakeSys {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn sysfs(&self) -> PathBuf {
        self.dir.path().join("sys")
    }

    fn dev(&self) -> PathBuf {
        self.dir.path().join("dev")
    }

    fn write(&self, rel: &str, content: &str) {
        let p = self.sysfs().join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, format!("{content}\n")).unwrap();
    }

    fn controller(&self, name: &str, nqn: &str, transport: &str, address: &str, state: &str) {
        let base = format!("class/nvme/{name}");
        self.write(&format!("{base}/subsysnqn"), nqn);
        self.write(&format!("{base}/transport"), transport);
        self.write(&format!("{base}/address"), address);
        self.write(&format!("{base}/state"), state);
        self.write(&format!("{base}/delete_controller"), "");
        self.write(&format!("{base}/rescan_controller"), "");
    }

    /// A namespace block device directory at `rel` with `attr=value` ids.
    fn namespace(&self, rel: &str, ids: &[(&str, &str)], sectors: u64) {
        for (attr, value) in ids {
            self.write(&format!("{rel}/{attr}"), value);
        }
        self.write(&format!("{rel}/size"), &sectors.to_string());
        let name = Path::new(rel).file_name().unwrap().to_owned();
        fs::create_dir_all(self.dev()).unwrap();
        fs::write(self.dev().join(name), "").unwrap();
    }

    fn subsystem(&self, name: &str, nqn: &str, controllers: &[&str]) {
        self.write(&format!("class/nvme-subsystem/{name}/subsysnqn"), nqn);
        for c in controllers {
            fs::create_dir_all(
                self.sysfs()
                    .join(format!("class/nvme-subsystem/{name}/{c}")),
            )
            .unwrap();
        }
    }

    fn attr(&self, rel: &str) -> String {
        fs::read_to_string(self.sysfs().join(rel)).unwrap()
    }

    fn frontend(&self, timeout: Duration) -> NvmeTcpFrontend {
        NvmeTcpFrontend::new(NvmeTcpConfig {
            fabrics_device: self.dir.path().join("no-fabrics-here"),
            sysfs: self.sysfs(),
            dev_dir: self.dev(),
            attach_timeout: timeout,
            poll_interval: Duration::from_millis(10),
        })
    }
}

fn target(nqn: &str, ns: &str, traddr: &str, port: u16) -> NvmeTcpTarget {
    NvmeTcpTarget {
        traddr: traddr.parse().unwrap(),
        trsvcid: port,
        subnqn: nqn.into(),
        ns_uuid: ns.parse().unwrap(),
        hostnqn: "nqn.2014-08.org.nvmexpress:uuid:host".into(),
        hostid: Uuid::nil(),
        ctrl_loss_tmo: -1,
        reconnect_delay: 2,
        keep_alive_tmo: 5,
    }
}

fn uuid(s: &str) -> Uuid {
    s.parse().unwrap()
}

/// Several controllers and subsystems, non-multipath namespaces whose names
/// do not follow their NSIDs, and a multipath subsystem.
fn populated() -> FakeSys {
    let f = FakeSys::new();
    f.controller(
        "nvme0",
        NQN_A,
        "tcp",
        "traddr=10.0.0.1,trsvcid=4420",
        "live",
    );
    // Same subsystem, other transport / port / dying: never chosen.
    f.controller(
        "nvme2",
        NQN_A,
        "rdma",
        "traddr=10.0.0.1,trsvcid=4420",
        "live",
    );
    f.controller(
        "nvme3",
        NQN_A,
        "tcp",
        "traddr=10.0.0.1,trsvcid=44200",
        "live",
    );
    f.controller(
        "nvme4",
        NQN_A,
        "tcp",
        "traddr=10.0.0.1,trsvcid=4420",
        "deleting",
    );
    f.namespace(
        "class/nvme/nvme0/nvme0n1",
        &[("uuid", UUID_X), ("nsid", "1")],
        2048,
    );

    f.controller(
        "nvme1",
        NQN_B,
        "tcp",
        "traddr=10.0.0.2,trsvcid=4420,src_addr=10.0.0.9",
        "live",
    );
    // nvme1n1 is NSID 2 and nvme1n2 is NSID 1.
    f.namespace(
        "class/nvme/nvme1/nvme1n1",
        &[("uuid", UUID_W), ("nsid", "2")],
        4096,
    );
    f.namespace(
        "class/nvme/nvme1/nvme1n2",
        &[("uuid", UUID_Y), ("nsid", "1")],
        8192,
    );

    // Native multipath: head under the subsystem, hidden per-path devices.
    f.controller("nvme5", NQN_C, "tcp", "traddr=fd00::5,trsvcid=4420", "live");
    f.controller(
        "nvme6",
        NQN_C,
        "tcp",
        "traddr=fd00::5,trsvcid=4420",
        "connecting",
    );
    f.subsystem("nvme-subsys5", NQN_C, &["nvme5", "nvme6"]);
    f.namespace(
        "class/nvme-subsystem/nvme-subsys5/nvme5n1",
        &[("uuid", UUID_Z)],
        16384,
    );
    f.namespace("class/nvme/nvme5/nvme5c5n1", &[("uuid", UUID_Z)], 16384);
    f.namespace("class/nvme/nvme6/nvme6c6n1", &[("uuid", UUID_Z)], 16384);
    f
}

#[test]
fn controllers_are_matched_by_subsystem_transport_and_exact_address() {
    let f = populated();
    assert_eq!(list_controllers(&f.sysfs()).len(), 7);
    let names = |t: &NvmeTcpTarget| -> Vec<String> {
        find_controllers(&f.sysfs(), t)
            .into_iter()
            .map(|c| c.name)
            .collect()
    };
    assert_eq!(names(&target(NQN_A, UUID_X, "10.0.0.1", 4420)), ["nvme0"]);
    assert_eq!(names(&target(NQN_B, UUID_Y, "10.0.0.2", 4420)), ["nvme1"]);
    assert!(names(&target(NQN_B, UUID_Y, "10.0.0.3", 4420)).is_empty());
    // IPv6 compared as addresses, both paths of the multipath subsystem.
    assert_eq!(
        names(&target(NQN_C, UUID_Z, "fd00:0::5", 4420)),
        ["nvme5", "nvme6"]
    );
}

#[test]
fn namespaces_are_found_by_uuid_not_by_name_or_nsid() {
    let f = populated();
    let s = f.sysfs();
    let ns = find_namespace(&s, NQN_B, &uuid(UUID_Y)).unwrap();
    assert_eq!(ns.name, "nvme1n2");
    assert_eq!(ns.size_bytes, 8192 * 512);
    assert_eq!(
        find_namespace(&s, NQN_B, &uuid(UUID_W)).unwrap().name,
        "nvme1n1"
    );
    assert_eq!(
        find_namespace(&s, NQN_A, &uuid(UUID_X)).unwrap().name,
        "nvme0n1"
    );
    // Right UUID, wrong subsystem.
    assert!(find_namespace(&s, NQN_A, &uuid(UUID_Y)).is_none());
    assert!(find_namespace(&s, NQN_B, &Uuid::nil()).is_none());
}

#[test]
fn multipath_head_is_returned_and_per_path_devices_are_hidden() {
    let f = populated();
    let ns = find_namespace(&f.sysfs(), NQN_C, &uuid(UUID_Z)).unwrap();
    assert_eq!(ns.name, "nvme5n1");
}

#[test]
fn nguid_and_wwid_identify_a_namespace_without_uuid_attribute() {
    let f = FakeSys::new();
    f.controller(
        "nvme0",
        NQN_A,
        "tcp",
        "traddr=10.0.0.1,trsvcid=4420",
        "live",
    );
    f.namespace(
        "class/nvme/nvme0/nvme0n1",
        &[("nguid", "11111111-1111-4111-8111-111111111111")],
        8,
    );
    f.namespace(
        "class/nvme/nvme0/nvme0n2",
        &[("wwid", "uuid.22222222-2222-4222-8222-222222222222")],
        8,
    );
    assert_eq!(
        find_namespace(&f.sysfs(), NQN_A, &uuid(UUID_X))
            .unwrap()
            .name,
        "nvme0n1"
    );
    assert_eq!(
        find_namespace(&f.sysfs(), NQN_A, &uuid(UUID_Y))
            .unwrap()
            .name,
        "nvme0n2"
    );
}

#[test]
fn re_added_namespace_is_found_under_its_new_name() {
    let f = populated();
    fs::remove_dir_all(f.sysfs().join("class/nvme/nvme1/nvme1n2")).unwrap();
    assert!(find_namespace(&f.sysfs(), NQN_B, &uuid(UUID_Y)).is_none());
    f.namespace("class/nvme/nvme1/nvme1n3", &[("uuid", UUID_Y)], 8192);
    assert_eq!(
        find_namespace(&f.sysfs(), NQN_B, &uuid(UUID_Y))
            .unwrap()
            .name,
        "nvme1n3"
    );
}

#[tokio::test]
async fn waiting_times_out_when_missing_and_returns_when_it_appears() {
    let f = populated();
    let missing = uuid("55555555-5555-4555-8555-555555555555");
    let err = wait_for_namespace(
        &f.sysfs(),
        NQN_B,
        &missing,
        Duration::from_millis(50),
        Duration::from_millis(10),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, NodeError::DeviceTimeout { .. }));
    assert!(err
        .to_string()
        .contains("55555555-5555-4555-8555-555555555555"));

    let sysfs = f.sysfs();
    let waiter = tokio::spawn(async move {
        wait_for_namespace(
            &sysfs,
            NQN_B,
            &missing,
            Duration::from_secs(30),
            Duration::from_millis(10),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    f.namespace(
        "class/nvme/nvme1/nvme1n7",
        &[("uuid", "55555555-5555-4555-8555-555555555555")],
        16,
    );
    assert_eq!(waiter.await.unwrap().unwrap().name, "nvme1n7");
}

#[tokio::test]
async fn frontend_finds_existing_device_without_connecting() {
    let f = populated();
    let fe = f.frontend(Duration::from_millis(100));
    let spec = AttachSpec::NvmeTcp(target(NQN_C, UUID_Z, "fd00::5", 4420));
    let dev = fe.find_existing(&spec).await.unwrap().unwrap();
    assert_eq!(dev.kind, FrontendKind::NvmeTcp);
    assert_eq!(dev.path, f.dev().join("nvme5n1"));
    assert_eq!(dev.size_bytes, 16384 * 512);
    assert_eq!(dev.controllers, ["nvme5", "nvme6"]);
    // The fabrics device does not exist: attach must not need it.
    assert_eq!(fe.attach(&spec).await.unwrap(), dev);
}

#[tokio::test]
async fn frontend_waits_for_namespace_on_an_existing_controller() {
    let f = populated();
    let fe = f.frontend(Duration::from_secs(30));
    let spec = AttachSpec::NvmeTcp(target(NQN_A, UUID_W, "10.0.0.1", 4420));
    assert_eq!(fe.find_existing(&spec).await.unwrap(), None);
    let attach = {
        let fe = fe.clone();
        let spec = spec.clone();
        tokio::spawn(async move { fe.attach(&spec).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    f.namespace("class/nvme/nvme0/nvme0n9", &[("uuid", UUID_W)], 64);
    let dev = attach.await.unwrap().unwrap();
    assert_eq!(dev.path, f.dev().join("nvme0n9"));
    assert_eq!(dev.controllers, ["nvme0"]);
}

#[tokio::test]
async fn frontend_connect_failure_is_reported() {
    let f = FakeSys::new();
    let fe = f.frontend(Duration::from_millis(50));
    let spec = AttachSpec::NvmeTcp(target(NQN_A, UUID_X, "10.0.0.1", 4420));
    match fe.attach(&spec).await {
        Err(NodeError::Io { op, path, .. }) => {
            assert_eq!(op, "open");
            assert!(path.ends_with("no-fabrics-here"));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn detach_deletes_only_matching_controllers_and_is_idempotent() {
    let f = populated();
    let fe = f.frontend(Duration::from_millis(50));
    let spec = AttachSpec::NvmeTcp(target(NQN_A, UUID_X, "10.0.0.1", 4420));
    fe.detach(&spec).await.unwrap();
    assert_eq!(f.attr("class/nvme/nvme0/delete_controller"), "1");
    for other in ["nvme1", "nvme2", "nvme3", "nvme4", "nvme5"] {
        assert_eq!(
            f.attr(&format!("class/nvme/{other}/delete_controller")),
            "\n",
            "{other} touched"
        );
    }
    // Once the controller is gone, detaching again succeeds.
    fs::remove_dir_all(f.sysfs().join("class/nvme/nvme0")).unwrap();
    fe.detach(&spec).await.unwrap();
}

#[tokio::test]
async fn rescan_pokes_controllers_and_reports_new_size() {
    let f = populated();
    let fe = f.frontend(Duration::from_millis(50));
    let spec = AttachSpec::NvmeTcp(target(NQN_C, UUID_Z, "fd00::5", 4420));
    let dev = fe.find_existing(&spec).await.unwrap().unwrap();
    f.write("class/block/nvme5n1/size", "32768");
    assert_eq!(fe.rescan(&dev).await.unwrap(), 32768 * 512);
    assert_eq!(f.attr("class/nvme/nvme5/rescan_controller"), "1");
    assert_eq!(f.attr("class/nvme/nvme6/rescan_controller"), "1");
}

#[tokio::test]
async fn wrong_spec_kind_is_rejected() {
    let f = FakeSys::new();
    let fe = f.frontend(Duration::from_millis(50));
    let spec = AttachSpec::Ublk(shorthorn_node::frontend::UblkTarget {
        device: "/dev/ublkb0".into(),
        id: 0,
    });
    assert!(matches!(
        fe.attach(&spec).await,
        Err(NodeError::WrongFrontend { .. })
    ));
}
