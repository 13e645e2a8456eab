//! The agent's parameter policy: every allowed method called as the
//! controller calls it passes through; each rule broken with a hostile
//! parameter is a 403 with the reason, and spdk_tgt never sees the call.

mod agent_support;

use std::sync::Arc;

use agent_support::{FakeReply, TestAgent};
use http::StatusCode;
use serde_json::{json, Value};
use shorthorn_node::agent::ALLOWED_METHODS;

const VOL: &str = "0b7c3f1e-5d2a-4c1b-9e8f-123456789abc";
const DISK: &str = "/var/lib/shorthorn/disk.img";
const NQN: &str = "nqn.2025-11.io.shorthorn:replica:0b7c3f1e-5d2a-4c1b-9e8f-123456789abc:node-a";
const HOST: &str = "nqn.2025-11.io.shorthorn:spdk-host:node-b";

/// Lvol bdevs (named by uuid) the fake spdk_tgt knows.
const OWN_UUID: &str = "11111111-1111-4111-8111-111111111111";
const FOREIGN_LVS_UUID: &str = "22222222-2222-4222-8222-222222222222";
const UNPREFIXED_UUID: &str = "33333333-3333-4333-8333-333333333333";
const NOT_LVOL_UUID: &str = "44444444-4444-4444-8444-444444444444";
const GONE_UUID: &str = "55555555-5555-4555-8555-555555555555";

fn lvol_bdev(uuid: &str, alias: &str) -> Value {
    json!([{"name": uuid, "aliases": [alias], "product_name": "Logical Volume",
            "block_size": 4096, "num_blocks": 256,
            "driver_specific": {"lvol": {"lvol_store_uuid": "x", "base_bdev": "b"}}}])
}

async fn agent() -> TestAgent {
    let responder = Arc::new(|method: &str, params: &Value| match method {
        "bdev_get_bdevs" => match params["name"].as_str() {
            Some(OWN_UUID) => Some(FakeReply::Result(lvol_bdev(
                OWN_UUID,
                &format!("shorthorn/shv-{VOL}"),
            ))),
            Some(FOREIGN_LVS_UUID) => Some(FakeReply::Result(lvol_bdev(
                FOREIGN_LVS_UUID,
                &format!("other-lvs/shv-{VOL}"),
            ))),
            Some(UNPREFIXED_UUID) => Some(FakeReply::Result(lvol_bdev(
                UNPREFIXED_UUID,
                "shorthorn/database",
            ))),
            Some(NOT_LVOL_UUID) => Some(FakeReply::Result(json!([{
                "name": NOT_LVOL_UUID, "aliases": ["shorthorn/shv-x"],
                "product_name": "AIO disk", "block_size": 512, "num_blocks": 8,
                "driver_specific": {"aio": {"filename": "/dev/sda"}}}]))),
            Some(GONE_UUID) => Some(FakeReply::Error(-19, "No such device".into())),
            _ => None,
        },
        "ublk_get_disks" => Some(FakeReply::Result(json!([
            {"id": 0, "bdev_name": format!("shr-{VOL}"), "ublk_device": "/dev/ublkb0"},
            {"id": 1, "bdev_name": "Malloc0", "ublk_device": "/dev/ublkb1"},
        ]))),
        "bdev_wait_for_examine" => Some(FakeReply::Result(json!(true))),
        _ => None,
    });
    TestAgent::start_scripted(responder, |c| {
        c.disks = vec![DISK.into()];
        c.base_bdevs = vec!["Nvme0n1".to_owned()];
    })
    .await
}

/// One call of every allowed method as the controller makes it.
fn legitimate() -> Vec<(&'static str, Value)> {
    let lvol = format!("shorthorn/shv-{VOL}");
    let snap = format!("shorthorn/shs-{VOL}");
    vec![
        (
            "bdev_aio_create",
            json!({"name": "shorthorn-base-shorthorn", "filename": DISK, "block_size": 4096}),
        ),
        ("bdev_get_bdevs", json!({"name": lvol})),
        (
            "bdev_enable_histogram",
            json!({"name": format!("shr-{VOL}"), "enable": true, "granularity": 7, "min_nsec": 0, "max_nsec": u64::MAX}),
        ),
        ("bdev_get_histogram", json!({"name": format!("shr-{VOL}")})),
        ("bdev_get_iostat", json!({})),
        (
            "bdev_lvol_clone",
            json!({"snapshot_name": snap, "clone_name": format!("shv-{VOL}-rv")}),
        ),
        (
            "bdev_lvol_create",
            json!({"lvol_name": format!("shv-{VOL}"), "size_in_mib": 4, "thin_provision": true, "lvs_name": "shorthorn"}),
        ),
        (
            "bdev_lvol_create_lvstore",
            json!({"bdev_name": "shorthorn-base-shorthorn", "lvs_name": "shorthorn"}),
        ),
        ("bdev_lvol_delete", json!({"name": OWN_UUID})),
        ("bdev_lvol_get_lvols", json!({"lvs_name": "shorthorn"})),
        ("bdev_lvol_get_lvstores", json!({})),
        (
            "bdev_lvol_rename",
            json!({"old_name": format!("shorthorn/shv-{VOL}-rv"), "new_name": format!("shv-{VOL}")}),
        ),
        ("bdev_lvol_resize", json!({"name": lvol, "size_in_mib": 8})),
        (
            "bdev_lvol_snapshot",
            json!({"lvol_name": lvol, "snapshot_name": format!("shs-{VOL}")}),
        ),
        (
            "bdev_null_create",
            json!({"name": format!("shp-{VOL}"), "num_blocks": 256, "block_size": 4096}),
        ),
        ("bdev_null_delete", json!({"name": format!("shp-{VOL}")})),
        (
            "bdev_nvme_attach_controller",
            json!({"name": format!("shn-{VOL}-node-b"), "trtype": "TCP", "traddr": "10.0.0.8", "adrfam": "IPv4", "trsvcid": "4420", "subnqn": NQN, "hostnqn": HOST}),
        ),
        (
            "bdev_nvme_detach_controller",
            json!({"name": format!("shn-{VOL}-node-b")}),
        ),
        ("bdev_nvme_get_controllers", json!({})),
        (
            "bdev_raid_create",
            json!({"name": format!("shr-{VOL}"), "raid_level": "raid1", "base_bdevs": [lvol, format!("shn-{VOL}-node-bn1"), format!("shp-{VOL}")], "superblock": false}),
        ),
        ("bdev_raid_delete", json!({"name": format!("shr-{VOL}")})),
        (
            "bdev_raid_add_base_bdev",
            json!({"raid_bdev": format!("shr-{VOL}"), "base_bdev": format!("shn-{VOL}-node-bn1")}),
        ),
        (
            "bdev_raid_set_options",
            json!({"process_max_bandwidth_mb_sec": 100}),
        ),
        (
            "bdev_lvol_start_shallow_copy",
            json!({"src_lvol_name": format!("shorthorn/shs-{VOL}"), "dst_bdev_name": format!("shn-{VOL}-rebuild-node-bn1")}),
        ),
        ("bdev_lvol_check_shallow_copy", json!({"operation_id": 0})),
        ("bdev_raid_get_bdevs", json!({"category": "all"})),
        (
            "bdev_raid_remove_base_bdev",
            json!({"name": format!("shp-{VOL}")}),
        ),
        ("bdev_wait_for_examine", json!({})),
        (
            "nvmf_create_subsystem",
            json!({"nqn": NQN, "serial_number": "SH1", "allow_any_host": false, "max_namespaces": 1}),
        ),
        ("nvmf_create_transport", json!({"trtype": "TCP"})),
        ("nvmf_delete_subsystem", json!({"nqn": NQN})),
        ("nvmf_get_subsystems", json!({})),
        ("nvmf_get_transports", json!({})),
        ("nvmf_subsystem_add_host", json!({"nqn": NQN, "host": HOST})),
        (
            "nvmf_subsystem_add_listener",
            json!({"nqn": NQN, "listen_address": {"trtype": "TCP", "adrfam": "IPv4", "traddr": "10.0.0.7", "trsvcid": "4420"}}),
        ),
        (
            "nvmf_subsystem_add_ns",
            json!({"nqn": NQN, "namespace": {"bdev_name": lvol}}),
        ),
        (
            "nvmf_subsystem_listener_set_ana_state",
            json!({"nqn": NQN, "listen_address": {"trtype": "TCP", "traddr": "127.0.0.1", "trsvcid": "4420"}, "ana_state": "inaccessible"}),
        ),
        (
            "nvmf_subsystem_remove_host",
            json!({"nqn": NQN, "host": HOST}),
        ),
        ("nvmf_subsystem_remove_ns", json!({"nqn": NQN, "nsid": 1})),
        (
            "nvmf_subsystem_set_ns_ana_group",
            json!({"nqn": NQN, "nsid": 1, "anagrpid": 1}),
        ),
        ("spdk_get_version", json!({})),
        ("ublk_create_target", json!({})),
        ("ublk_get_disks", json!({})),
        (
            "ublk_start_disk",
            json!({"bdev_name": format!("shr-{VOL}"), "ublk_id": 0}),
        ),
        ("ublk_stop_disk", json!({"ublk_id": 0})),
    ]
}

/// Each rule broken once, with what the refusal must mention.
fn hostile() -> Vec<(&'static str, Value, &'static str)> {
    let lvol = format!("shorthorn/shv-{VOL}");
    vec![
        // bdev_aio_create: only the configured disks, only as shorthorn-base-*.
        (
            "bdev_aio_create",
            json!({"name": "shorthorn-base-shorthorn", "filename": "/dev/sda"}),
            "configured disks",
        ),
        (
            "bdev_aio_create",
            json!({"name": "shorthorn-base-shorthorn", "filename": "/var/lib/shorthorn/../../../dev/sda"}),
            "configured disks",
        ),
        (
            "bdev_aio_create",
            json!({"name": "root", "filename": DISK}),
            "prefix",
        ),
        (
            "bdev_aio_create",
            json!({"name": "shorthorn-base-x"}),
            "filename",
        ),
        // lvstores: only the node's, only on its base bdevs.
        (
            "bdev_lvol_create_lvstore",
            json!({"bdev_name": "Nvme1n1", "lvs_name": "shorthorn"}),
            "base bdev",
        ),
        (
            "bdev_lvol_create_lvstore",
            json!({"bdev_name": "shorthorn-base-shorthorn", "lvs_name": "evil"}),
            "lvstore",
        ),
        (
            "bdev_lvol_create",
            json!({"lvol_name": "backdoor", "size_in_mib": 4, "lvs_name": "shorthorn"}),
            "lvol name",
        ),
        (
            "bdev_lvol_create",
            json!({"lvol_name": format!("shv-{VOL}"), "size_in_mib": 4, "lvs_name": "other-lvs"}),
            "lvstore",
        ),
        (
            "bdev_lvol_create",
            json!({"lvol_name": format!("shv-{VOL}"), "size_in_mib": 4, "uuid": "x"}),
            "lvs_name",
        ),
        // Deletes, renames, resizes, snapshots, clones: only Shorthorn lvols on this node's lvstore.
        (
            "bdev_lvol_delete",
            json!({"name": "other-lvs/shv-x"}),
            "lvstore",
        ),
        (
            "bdev_lvol_delete",
            json!({"name": "shorthorn/database"}),
            "not a Shorthorn lvol",
        ),
        ("bdev_lvol_delete", json!({"name": "Nvme0n1"}), "neither"),
        (
            "bdev_lvol_delete",
            json!({"name": FOREIGN_LVS_UUID}),
            "not a Shorthorn lvol",
        ),
        (
            "bdev_lvol_delete",
            json!({"name": UNPREFIXED_UUID}),
            "not a Shorthorn lvol",
        ),
        (
            "bdev_lvol_delete",
            json!({"name": NOT_LVOL_UUID}),
            "not a Shorthorn lvol",
        ),
        ("bdev_lvol_delete", json!({}), "`name`"),
        (
            "bdev_lvol_resize",
            json!({"name": "other-lvs/shv-x", "size_in_mib": 1}),
            "lvstore",
        ),
        (
            "bdev_lvol_rename",
            json!({"old_name": "shorthorn/database", "new_name": format!("shv-{VOL}")}),
            "not a Shorthorn lvol",
        ),
        (
            "bdev_lvol_rename",
            json!({"old_name": lvol, "new_name": "database"}),
            "new_name",
        ),
        (
            "bdev_lvol_snapshot",
            json!({"lvol_name": UNPREFIXED_UUID, "snapshot_name": "shs-x"}),
            "not a Shorthorn lvol",
        ),
        (
            "bdev_lvol_snapshot",
            json!({"lvol_name": lvol, "snapshot_name": "snap"}),
            "prefix",
        ),
        (
            "bdev_lvol_snapshot",
            json!({"lvol_name": lvol, "snapshot_name": format!("shv-{VOL}")}),
            "prefix",
        ),
        (
            "bdev_lvol_clone",
            json!({"snapshot_name": "other-lvs/shs-x", "clone_name": "shv-x"}),
            "lvstore",
        ),
        (
            "bdev_lvol_clone",
            json!({"snapshot_name": "shorthorn/shs-x", "clone_name": "exfil"}),
            "clone_name",
        ),
        // Null pads, raids, NVMe controllers: only Shorthorn names.
        (
            "bdev_null_create",
            json!({"name": "Null0", "num_blocks": 1, "block_size": 512}),
            "prefix",
        ),
        ("bdev_null_delete", json!({"name": "Null0"}), "prefix"),
        (
            "bdev_raid_create",
            json!({"name": "raid0", "raid_level": "raid1", "base_bdevs": [lvol]}),
            "prefix",
        ),
        (
            "bdev_raid_create",
            json!({"name": "shr-x", "raid_level": "raid1", "base_bdevs": [lvol, "Nvme0n1"]}),
            "neither",
        ),
        (
            "bdev_raid_create",
            json!({"name": "shr-x", "raid_level": "raid1", "base_bdevs": [FOREIGN_LVS_UUID]}),
            "not a Shorthorn lvol",
        ),
        (
            "bdev_raid_create",
            json!({"name": "shr-x", "raid_level": "raid1", "base_bdevs": []}),
            "base_bdevs",
        ),
        ("bdev_raid_delete", json!({"name": "raid0"}), "prefix"),
        (
            "bdev_raid_add_base_bdev",
            json!({"raid_bdev": "raid0", "base_bdev": format!("shn-{VOL}-node-bn1")}),
            "prefix",
        ),
        (
            "bdev_raid_add_base_bdev",
            json!({"raid_bdev": format!("shr-{VOL}"), "base_bdev": "Nvme0n1"}),
            "neither",
        ),
        (
            "bdev_raid_set_options",
            json!({"process_window_size_kb": "1; rm -rf /"}),
            "not allowed",
        ),
        (
            "bdev_lvol_start_shallow_copy",
            json!({"src_lvol_name": FOREIGN_LVS_UUID, "dst_bdev_name": format!("shn-{VOL}-rebuild-node-bn1")}),
            "not a Shorthorn lvol",
        ),
        (
            "bdev_lvol_start_shallow_copy",
            json!({"src_lvol_name": format!("shorthorn/shs-{VOL}"), "dst_bdev_name": "Nvme0n1"}),
            "prefix",
        ),
        (
            "bdev_raid_remove_base_bdev",
            json!({"name": "Nvme0n1"}),
            "neither",
        ),
        (
            "bdev_nvme_attach_controller",
            json!({"name": "Nvme9", "trtype": "TCP", "traddr": "6.6.6.6", "trsvcid": "4420", "subnqn": NQN, "hostnqn": HOST}),
            "prefix",
        ),
        (
            "bdev_nvme_attach_controller",
            json!({"name": "shn-x", "trtype": "TCP", "traddr": "6.6.6.6", "trsvcid": "4420", "subnqn": "nqn.2016-06.io.spdk:cnode1", "hostnqn": HOST}),
            "subnqn",
        ),
        (
            "bdev_nvme_attach_controller",
            json!({"name": "shn-x", "trtype": "RDMA", "traddr": "6.6.6.6", "subnqn": NQN, "hostnqn": HOST}),
            "TCP",
        ),
        (
            "bdev_nvme_detach_controller",
            json!({"name": "Nvme0"}),
            "prefix",
        ),
        // Subsystems: Shorthorn NQNs only, never open to any host.
        (
            "nvmf_create_subsystem",
            json!({"nqn": NQN, "allow_any_host": true}),
            "allow_any_host",
        ),
        (
            "nvmf_create_subsystem",
            json!({"nqn": NQN, "allow_any_host": "yes"}),
            "allow_any_host",
        ),
        (
            "nvmf_create_subsystem",
            json!({"nqn": "nqn.2016-06.io.spdk:cnode1"}),
            "not a Shorthorn NQN",
        ),
        (
            "nvmf_create_subsystem",
            json!({"nqn": "nqn.2025-11.io.shorthorn"}),
            "not a Shorthorn NQN",
        ),
        (
            "nvmf_delete_subsystem",
            json!({"nqn": "nqn.2016-06.io.spdk:cnode1"}),
            "not a Shorthorn NQN",
        ),
        (
            "nvmf_subsystem_add_host",
            json!({"nqn": "nqn.2016-06.io.spdk:cnode1", "host": HOST}),
            "not a Shorthorn NQN",
        ),
        (
            "nvmf_subsystem_remove_host",
            json!({"nqn": "nqn.2016-06.io.spdk:cnode1", "host": HOST}),
            "not a Shorthorn NQN",
        ),
        (
            "nvmf_subsystem_remove_ns",
            json!({"nqn": "nqn.2016-06.io.spdk:cnode1", "nsid": 1}),
            "not a Shorthorn NQN",
        ),
        (
            "nvmf_subsystem_add_ns",
            json!({"nqn": NQN, "namespace": {"bdev_name": "Nvme0n1"}}),
            "neither",
        ),
        (
            "nvmf_subsystem_add_ns",
            json!({"nqn": NQN, "namespace": {"bdev_name": UNPREFIXED_UUID}}),
            "not a Shorthorn lvol",
        ),
        (
            "nvmf_subsystem_add_ns",
            json!({"nqn": "nqn.2016-06.io.spdk:cnode1", "namespace": {"bdev_name": lvol}}),
            "not a Shorthorn NQN",
        ),
        (
            "nvmf_subsystem_listener_set_ana_state",
            json!({"nqn": "nqn.2016-06.io.spdk:cnode1", "listen_address": {"trtype": "TCP", "traddr": "127.0.0.1", "trsvcid": "4420"}, "ana_state": "inaccessible"}),
            "not a Shorthorn NQN",
        ),
        (
            "nvmf_subsystem_set_ns_ana_group",
            json!({"nqn": "nqn.2016-06.io.spdk:cnode1", "nsid": 1, "anagrpid": 1}),
            "not a Shorthorn NQN",
        ),
        // Listeners: this node's NVMe-oF address or loopback, its port, TCP.
        (
            "nvmf_subsystem_add_listener",
            json!({"nqn": NQN, "listen_address": {"trtype": "TCP", "traddr": "0.0.0.0", "trsvcid": "4420"}}),
            "neither",
        ),
        (
            "nvmf_subsystem_add_listener",
            json!({"nqn": NQN, "listen_address": {"trtype": "TCP", "traddr": "192.168.1.1", "trsvcid": "4420"}}),
            "neither",
        ),
        (
            "nvmf_subsystem_add_listener",
            json!({"nqn": NQN, "listen_address": {"trtype": "TCP", "traddr": "10.0.0.7", "trsvcid": "22"}}),
            "port",
        ),
        (
            "nvmf_subsystem_add_listener",
            json!({"nqn": NQN, "listen_address": {"trtype": "RDMA", "traddr": "10.0.0.7", "trsvcid": "4420"}}),
            "TCP",
        ),
        (
            "nvmf_subsystem_add_listener",
            json!({"nqn": "nqn.2016-06.io.spdk:cnode1", "listen_address": {"trtype": "TCP", "traddr": "10.0.0.7", "trsvcid": "4420"}}),
            "not a Shorthorn NQN",
        ),
        ("nvmf_create_transport", json!({"trtype": "RDMA"}), "TCP"),
        // ublk: only Shorthorn raids.
        (
            "ublk_start_disk",
            json!({"bdev_name": "Nvme0n1", "ublk_id": 3}),
            "prefix",
        ),
        ("ublk_stop_disk", json!({"ublk_id": 1}), "Malloc0"),
        // Statistics are never reset; histograms only of Shorthorn raids.
        (
            "bdev_get_iostat",
            json!({"reset_mode": "all"}),
            "only \"none\"",
        ),
        (
            "bdev_enable_histogram",
            json!({"name": "Nvme0n1", "enable": true}),
            "prefix",
        ),
        (
            "bdev_enable_histogram",
            json!({"name": format!("shr-{VOL}"), "enable": true, "granularity": 20}),
            "granularity",
        ),
        (
            "bdev_enable_histogram",
            json!({"name": format!("shr-{VOL}"), "enable": true, "opc": "read"}),
            "opc",
        ),
        ("bdev_get_histogram", json!({"name": "Malloc0"}), "prefix"),
    ]
}

#[tokio::test]
async fn every_allowed_method_called_as_the_controller_does_reaches_spdk() {
    let agent = agent().await;
    let calls = legitimate();
    let mut methods: Vec<&str> = calls.iter().map(|(m, _)| *m).collect();
    methods.sort_unstable();
    assert_eq!(
        methods, ALLOWED_METHODS,
        "one legitimate call per allowed method"
    );
    for (method, params) in calls {
        agent.spdk.clear();
        let (status, body) = agent.rpc(method, params.clone()).await;
        assert_eq!(status, StatusCode::OK, "{method} {params}: {body}");
        assert!(
            agent.spdk.methods().iter().any(|m| m == method),
            "{method} never reached spdk_tgt"
        );
    }
    // A uuid that names nothing is passed on: SPDK answers "not found",
    // which the controller's idempotent deletes rely on.
    agent.spdk.clear();
    let (status, _) = agent
        .rpc("bdev_lvol_delete", json!({"name": GONE_UUID}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(agent.spdk.methods(), ["bdev_get_bdevs", "bdev_lvol_delete"]);
    agent.stop().await;
}

#[tokio::test]
async fn each_rule_broken_is_403_with_the_reason_and_spdk_never_sees_it() {
    let agent = agent().await;
    let cases = hostile();
    let mut refused = 0;
    for (method, params, reason) in &cases {
        agent.spdk.clear();
        let (status, body) = agent.rpc(method, params.clone()).await;
        let message = body["error"].as_str().unwrap_or_default();
        let reached: Vec<String> = agent
            .spdk
            .methods()
            .into_iter()
            .filter(|m| m != "bdev_get_bdevs" && m != "ublk_get_disks")
            .collect();
        if status == StatusCode::FORBIDDEN && reached.is_empty() {
            refused += 1;
        }
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {params}: {body}");
        assert!(
            message.contains(reason) && message.starts_with(method),
            "{method} {params}: {message:?} should say {reason:?}"
        );
        assert!(
            reached.is_empty(),
            "{method} {params} reached spdk_tgt: {reached:?}"
        );
    }
    // Array params, which SPDK would decode positionally, are refused too.
    agent.spdk.clear();
    let (status, _) = agent
        .rpc("bdev_lvol_delete", json!(["shorthorn/shv-x"]))
        .await;
    if status == StatusCode::FORBIDDEN && agent.spdk.methods().is_empty() {
        refused += 1;
    }
    let tried = cases.len() + 1;
    println!(
        "hostile requests against the agent: {tried} tried, {refused} refused before spdk_tgt"
    );
    assert_eq!(refused, tried);
    agent.stop().await;
}
