//! NVMe-oF target + initiator + raid1, with two or three sims in one test
//! process talking over real loopback TCP.

mod net_common;

use std::time::Duration;

use net_common::*;
use serde_json::json;

const MIB: usize = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_bdev_is_attached_with_spdk_shapes_and_carries_data() {
    let b = TestSim::new();
    let a = TestSim::new();
    let port = free_port();
    b.malloc("mB", 8).await;
    b.export("nqn.2016-06.io.spdk:rep-b", "mB", port).await;

    let subs = b.ok("nvmf_get_subsystems", json!(null)).await;
    assert_eq!(subs[0]["subtype"], "Discovery");
    let ns = &subs[1]["namespaces"][0];
    let uuid = b.bdev("mB").uuid().to_string();
    assert_eq!(ns["nsid"], 1);
    assert_eq!(ns["uuid"], uuid);
    assert_eq!(ns["nguid"], uuid.replace('-', "").to_uppercase());
    assert_eq!(subs[1]["max_namespaces"], 32);
    assert_eq!(
        b.ok(
            "nvmf_subsystem_get_listeners",
            json!({"nqn": "nqn.2016-06.io.spdk:rep-b"})
        )
        .await,
        json!([{"address": listen(port)}])
    );

    let names = a
        .ok(
            "bdev_nvme_attach_controller",
            attach_params("nvB", "nqn.2016-06.io.spdk:rep-b", port),
        )
        .await;
    assert_eq!(names, json!(["nvBn1"]));
    let nv = a.bdev("nvBn1");
    assert_eq!(nv.product_name(), "NVMe disk");
    assert_eq!(nv.num_blocks(), 8 * 256);
    assert_eq!(nv.aliases(), vec![uuid.clone()]);
    let ds = nv.driver_specific();
    assert_eq!(ds["nvme"][0]["trid"]["trsvcid"], port.to_string());
    assert_eq!(ds["nvme"][0]["ctrlr_data"]["serial_number"], "SPDKTEST");
    let ctrlrs = a
        .ok("bdev_nvme_get_controllers", json!({"name": "nvB"}))
        .await;
    assert_eq!(ctrlrs[0]["ctrlrs"][0]["state"], "enabled");
    assert_eq!(
        b.ok(
            "nvmf_subsystem_get_controllers",
            json!({"nqn": "nqn.2016-06.io.spdk:rep-b"})
        )
        .await[0]["hostnqn"],
        ctrlrs[0]["ctrlrs"][0]["host"]["nqn"]
    );

    let data = pattern(7, MIB);
    nv.write(4096, &data).await.unwrap();
    assert_eq!(b.bdev("mB").read(4096, MIB as u64).await.unwrap(), data);
    assert_eq!(nv.read(4096, MIB as u64).await.unwrap(), data);

    let e = b
        .call(
            "nvmf_subsystem_listener_set_ana_state",
            json!({"nqn": "nqn.2016-06.io.spdk:rep-b", "listen_address": listen(port), "ana_state": "inaccessible"}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (-32603, "error setting ANA state: -22")
    );
    let stats = b.ok("nvmf_get_stats", json!(null)).await;
    assert_eq!(stats["poll_groups"][0]["current_io_qpairs"], 1);
    assert!(
        stats["poll_groups"][0]["completed_nvme_io"]
            .as_u64()
            .unwrap()
            >= 2
    );

    // Removing the namespace on the target hot-removes the host's bdev.
    b.ok(
        "nvmf_subsystem_remove_ns",
        json!({"nqn": "nqn.2016-06.io.spdk:rep-b", "nsid": 1}),
    )
    .await;
    wait_until("namespace bdev removed", || async { !a.has_bdev("nvBn1") }).await;
    assert!(b
        .sim
        .bdevs
        .lock()
        .unwrap()
        .lookup("mB")
        .unwrap()
        .claimed_by
        .is_none());
    b.ok(
        "nvmf_subsystem_add_ns",
        json!({"nqn": "nqn.2016-06.io.spdk:rep-b", "namespace": {"bdev_name": "mB"}}),
    )
    .await;
    wait_until("namespace bdev back", || async { a.has_bdev("nvBn1") }).await;

    // Exported bdevs are claimed, as SPDK's nvmf claims them.
    assert!(a
        .call("bdev_nvme_detach_controller", json!({"name": "nvB"}))
        .await
        .is_ok());
    assert!(!a.has_bdev("nvBn1"));
    b.ok(
        "nvmf_delete_subsystem",
        json!({"nqn": "nqn.2016-06.io.spdk:rep-b"}),
    )
    .await;
    assert!(b
        .sim
        .bdevs
        .lock()
        .unwrap()
        .lookup("mB")
        .unwrap()
        .claimed_by
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_fails_like_spdk_when_nothing_listens_or_host_is_not_allowed() {
    let a = TestSim::new();
    let b = TestSim::new();
    let err = a
        .call(
            "bdev_nvme_attach_controller",
            attach_params("Z", "nqn.2016-06.io.spdk:x", free_port()),
        )
        .await
        .unwrap_err();
    assert_eq!((err.code, err.message.as_str()), (-5, "Input/output error"));

    let port = free_port();
    b.malloc("m", 4).await;
    b.ok("nvmf_create_transport", json!({"trtype": "TCP"}))
        .await;
    let dup = b
        .call("nvmf_create_transport", json!({"trtype": "TCP"}))
        .await
        .unwrap_err();
    assert_eq!(
        (dup.code, dup.message.as_str()),
        (-32603, "Transport type 'TCP' already exists")
    );
    let nqn = "nqn.2016-06.io.spdk:locked";
    b.export_with(json!({"nqn": nqn}), "m", port).await;
    let hostnqn = "nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555";
    let mut p = attach_params("L", nqn, port);
    p["hostnqn"] = json!(hostnqn);
    assert_eq!(
        a.call("bdev_nvme_attach_controller", p.clone())
            .await
            .unwrap_err()
            .code,
        -5
    );
    b.ok(
        "nvmf_subsystem_add_host",
        json!({"nqn": nqn, "host": hostnqn}),
    )
    .await;
    assert_eq!(a.ok("bdev_nvme_attach_controller", p).await, json!(["Ln1"]));
    let e = b
        .call("nvmf_create_subsystem", json!({"nqn": "not-an-nqn"}))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (-32603, "Unable to create subsystem not-an-nqn")
    );
    let e = b
        .call(
            "nvmf_delete_subsystem",
            json!({"nqn": "nqn.2016-06.io.spdk:nosuch"}),
        )
        .await
        .unwrap_err();
    assert_eq!((e.code, e.message.as_str()), (-32602, "Invalid parameters"));
    let e = a
        .call("bdev_nvme_detach_controller", json!({"name": "nosuch"}))
        .await
        .unwrap_err();
    assert_eq!((e.code, e.message.as_str()), (-19, "No such device"));
}

/// raid1 over a local malloc and a remote one: I/O reaches both; losing the
/// remote subsystem drops the leg on the next write (which succeeds), as in d4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raid1_mirrors_and_drops_a_dead_leg_on_io() {
    let a = TestSim::new();
    let b = TestSim::new();
    let port = free_port();
    let nqn = "nqn.2016-06.io.spdk:rep-f";
    b.malloc("mF", 16).await;
    b.export(nqn, "mF", port).await;
    a.malloc("mA", 16).await;
    a.ok(
        "bdev_nvme_attach_controller",
        attach_params("nvF", nqn, port),
    )
    .await;
    a.ok(
        "bdev_raid_create",
        json!({"name": "r3", "raid_level": "raid1", "base_bdevs": ["mA", "nvFn1"]}),
    )
    .await;
    let info = raid_info(&a).await;
    assert_eq!(info["state"], "online");
    assert_eq!(info["num_base_bdevs_operational"], 2);
    assert_eq!(info["base_bdevs_list"][1]["data_size"], 16 * 256);
    let r = a.bdev("r3");
    assert_eq!(r.product_name(), "Raid Volume");

    let p1 = pattern(1, 2 * MIB);
    r.write(0, &p1).await.unwrap();
    assert_eq!(a.bdev("mA").read(0, 2 * MIB as u64).await.unwrap(), p1);
    assert_eq!(b.bdev("mF").read(0, 2 * MIB as u64).await.unwrap(), p1);

    b.ok("nvmf_delete_subsystem", json!({"nqn": nqn})).await;
    wait_until("controller failed", || async {
        a.ok("bdev_nvme_get_controllers", json!({"name": "nvF"}))
            .await[0]["ctrlrs"][0]["state"]
            == "failed"
    })
    .await;
    // Still reported operational until I/O reaches the dead leg.
    assert_eq!(raid_info(&a).await["num_base_bdevs_operational"], 2);
    let p2 = pattern(2, MIB);
    r.write(4 * MIB as u64, &p2).await.unwrap();
    let info = raid_info(&a).await;
    assert_eq!(info["state"], "online");
    assert_eq!(info["num_base_bdevs_operational"], 1);
    assert_eq!(info["base_bdevs_list"][1]["name"], json!(null));
    assert_eq!(
        info["base_bdevs_list"][1]["uuid"],
        "00000000-0000-0000-0000-000000000000"
    );
    assert_eq!(r.read(4 * MIB as u64, MIB as u64).await.unwrap(), p2);
    assert_eq!(r.read(0, 2 * MIB as u64).await.unwrap(), p1);
    let e = a
        .call("bdev_raid_remove_base_bdev", json!({"name": "nvFn1"}))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (-19, "Failed to remove base bdev from raid bdev")
    );
    // The dropped leg is released: it is still there, unclaimed.
    assert!(a
        .sim
        .bdevs
        .lock()
        .unwrap()
        .lookup("nvFn1")
        .unwrap()
        .claimed_by
        .is_none());
}

/// Removing a leg, writing degraded, then adding a fresh one rebuilds every
/// block, and writes racing the rebuild land on the new leg too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raid1_rebuild_copies_everything_including_racing_writes() {
    let a = TestSim::new();
    let b = TestSim::new();
    let (p1, p2) = (free_port(), free_port());
    b.malloc("m1", 16).await;
    b.malloc("m2", 16).await;
    b.export("nqn.2016-06.io.spdk:one", "m1", p1).await;
    b.export("nqn.2016-06.io.spdk:two", "m2", p2).await;
    a.malloc("mA", 16).await;
    a.ok(
        "bdev_nvme_attach_controller",
        attach_params("n1", "nqn.2016-06.io.spdk:one", p1),
    )
    .await;
    a.ok(
        "bdev_nvme_attach_controller",
        attach_params("n2", "nqn.2016-06.io.spdk:two", p2),
    )
    .await;
    a.ok("bdev_raid_create", json!({"name": "r1", "raid_level": "raid1", "base_bdevs": ["mA", "n1n1"], "superblock": true})).await;
    let info = raid_info(&a).await;
    assert_eq!(info["base_bdevs_list"][0]["data_offset"], 256);
    assert_eq!(info["base_bdevs_list"][0]["data_size"], 16 * 256 - 256);
    let r = a.bdev("r1");
    assert_eq!(r.num_blocks(), 16 * 256 - 256);
    let full = r.size_bytes() as usize;
    let mut expect = pattern(3, full);
    r.write(0, &expect).await.unwrap();

    a.ok("bdev_raid_remove_base_bdev", json!({"name": "n1n1"}))
        .await;
    let info = raid_info(&a).await;
    assert_eq!(info["state"], "online");
    assert_eq!(info["base_bdevs_list"][1]["is_configured"], false);
    let e = a
        .call(
            "bdev_raid_add_base_bdev",
            json!({"raid_bdev": "nosuch", "base_bdev": "n2n1"}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (-19, "raid bdev nosuch is not found in config")
    );

    let degraded = pattern(4, MIB);
    r.write(MIB as u64, &degraded).await.unwrap();
    expect[MIB..2 * MIB].copy_from_slice(&degraded);

    // Slow the rebuild down so writes race it.
    a.ok(
        "bdev_raid_set_options",
        json!({"process_max_bandwidth_mb_sec": 8, "process_window_size_kb": 256}),
    )
    .await;
    a.ok(
        "bdev_raid_add_base_bdev",
        json!({"raid_bdev": "r1", "base_bdev": "n2n1"}),
    )
    .await;
    let info = raid_info(&a).await;
    assert_eq!(info["process"]["type"], "rebuild");
    assert_eq!(info["process"]["target"], "n2n1");
    let e = a
        .call(
            "bdev_raid_add_base_bdev",
            json!({"raid_bdev": "r1", "base_bdev": "n1n1"}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            -22,
            "Failed to add base bdev n1n1 to RAID bdev r1: Invalid argument"
        )
    );
    for i in 0..8u8 {
        let off = (i as usize * 7 + 3) * 4096 * 100 % (full - 65536);
        let d = pattern(10 + i, 65536);
        r.write(off as u64, &d).await.unwrap();
        expect[off..off + 65536].copy_from_slice(&d);
    }
    let mut saw_progress = false;
    for _ in 0..3000 {
        let info = raid_info(&a).await;
        if info["process"]["progress"]["blocks"].as_u64().unwrap_or(0) > 0 {
            saw_progress = true;
        }
        if info.get("process").is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        raid_info(&a).await.get("process").is_none(),
        "rebuild did not finish"
    );
    assert!(saw_progress, "rebuild progress was never reported");
    let off = 256 * 4096;
    assert_eq!(b.bdev("m2").read(off, full as u64).await.unwrap(), expect);
    assert_eq!(a.bdev("mA").read(off, full as u64).await.unwrap(), expect);
    assert_eq!(r.read(0, full as u64).await.unwrap(), expect);
    assert_eq!(raid_info(&a).await["num_base_bdevs_operational"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raid_waits_in_configuring_until_base_bdevs_appear() {
    let a = TestSim::new();
    a.ok(
        "bdev_raid_create",
        json!({"name": "rc", "raid_level": "raid1", "base_bdevs": ["x1", "x2"]}),
    )
    .await;
    let info = raid_info(&a).await;
    assert_eq!(info["state"], "configuring");
    assert_eq!(info["uuid"], "00000000-0000-0000-0000-000000000000");
    assert_eq!(info["num_base_bdevs_discovered"], 0);
    assert_eq!(
        a.ok("bdev_raid_get_bdevs", json!({"category": "online"}))
            .await,
        json!([])
    );
    assert!(!a.has_bdev("rc"));
    a.malloc("x1", 4).await;
    a.malloc("x2", 4).await;
    wait_until("raid online", || async {
        raid_info(&a).await["state"] == "online"
    })
    .await;
    assert!(a.has_bdev("rc"));
    let e = a
        .call("bdev_raid_get_bdevs", json!({"category": "bogus"}))
        .await
        .unwrap_err();
    assert_eq!((e.code, e.message.as_str()), (-22, "Invalid argument"));
    a.malloc("dup", 4).await;
    let e = a
        .call(
            "bdev_raid_create",
            json!({"name": "rd", "raid_level": "raid1", "base_bdevs": ["dup", "dup"]}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (-1, "Failed to create RAID bdev rd: Operation not permitted")
    );
    let e = a
        .call(
            "bdev_raid_create",
            json!({"name": "r7", "raid_level": "raid7", "base_bdevs": ["dup"]}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, -32700);
    a.ok("bdev_raid_delete", json!({"name": "rc"})).await;
    assert!(!a.has_bdev("rc"));
    assert!(a
        .sim
        .bdevs
        .lock()
        .unwrap()
        .lookup("x1")
        .unwrap()
        .claimed_by
        .is_none());
    let e = a
        .call("bdev_raid_delete", json!({"name": "rc"}))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (-19, "raid bdev rc not found")
    );
}

/// With reconnect options, a controller whose target comes back resumes I/O;
/// once ctrlr_loss_timeout_sec expires it is deleted and its bdev goes away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_reconnects_then_is_deleted_after_loss_timeout() {
    let a = TestSim::new();
    let b = TestSim::new();
    let port = free_port();
    let nqn = "nqn.2016-06.io.spdk:flaky";
    b.malloc("m", 4).await;
    b.export(nqn, "m", port).await;
    let mut p = attach_params("nvX", nqn, port);
    p["ctrlr_loss_timeout_sec"] = json!(3);
    p["reconnect_delay_sec"] = json!(1);
    p["fast_io_fail_timeout_sec"] = json!(0);
    a.ok("bdev_nvme_attach_controller", p).await;
    let bad = json!({"name": "bad", "trtype": "TCP", "traddr": "127.0.0.1", "trsvcid": port.to_string(),
                     "subnqn": nqn, "ctrlr_loss_timeout_sec": 2, "reconnect_delay_sec": 0});
    assert_eq!(
        a.call("bdev_nvme_attach_controller", bad)
            .await
            .unwrap_err()
            .code,
        -22
    );

    // Drop the connection; the write waits for the reconnect instead of failing.
    b.ok(
        "nvmf_subsystem_remove_listener",
        json!({"nqn": nqn, "listen_address": listen(port)}),
    )
    .await;
    wait_until("failed", || async {
        a.ok("bdev_nvme_get_controllers", json!(null)).await[0]["ctrlrs"][0]["state"] == "failed"
    })
    .await;
    let nv = a.bdev("nvXn1");
    let data = pattern(9, 8192);
    let w = tokio::spawn({
        let nv = nv.clone();
        let data = data.clone();
        async move { nv.write(0, &data).await }
    });
    b.ok(
        "nvmf_subsystem_add_listener",
        json!({"nqn": nqn, "listen_address": listen(port)}),
    )
    .await;
    w.await.unwrap().unwrap();
    assert_eq!(b.bdev("m").read(0, 8192).await.unwrap(), data);

    b.ok("nvmf_delete_subsystem", json!({"nqn": nqn})).await;
    wait_until("controller deleted", || async {
        a.ok("bdev_nvme_get_controllers", json!(null)).await == json!([])
    })
    .await;
    assert!(!a.has_bdev("nvXn1"));
    assert!(nv.write(0, &data).await.is_err());
}

/// An inaccessible listener makes host I/O wait (not fail) until the path is
/// optimized again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ana_inaccessible_path_holds_io_until_optimized() {
    let a = TestSim::new();
    let b = TestSim::new();
    let port = free_port();
    let nqn = "nqn.2016-06.io.spdk:ana";
    b.malloc("m", 4).await;
    b.ok("nvmf_create_transport", json!({"trtype": "TCP"}))
        .await;
    b.export_with(
        json!({"nqn": nqn, "allow_any_host": true, "ana_reporting": true}),
        "m",
        port,
    )
    .await;
    a.ok(
        "bdev_nvme_attach_controller",
        attach_params("nvA", nqn, port),
    )
    .await;
    let nv = a.bdev("nvAn1");

    b.ok(
        "nvmf_subsystem_listener_set_ana_state",
        json!({"nqn": nqn, "listen_address": listen(port), "ana_state": "inaccessible"}),
    )
    .await;
    let l = b
        .ok("nvmf_subsystem_get_listeners", json!({"nqn": nqn}))
        .await;
    assert_eq!(
        l[0]["ana_states"][0],
        json!({"ana_group": 1, "ana_state": "inaccessible"})
    );
    let data = pattern(5, 4096);
    let mut w = tokio::spawn({
        let nv = nv.clone();
        let data = data.clone();
        async move { nv.write(8192, &data).await }
    });
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut w)
            .await
            .is_err(),
        "write completed through an inaccessible path"
    );
    assert_ne!(b.bdev("m").read(8192, 4096).await.unwrap(), data);
    b.ok("nvmf_subsystem_listener_set_ana_state",
         json!({"nqn": nqn, "listen_address": listen(port), "ana_state": "optimized", "anagrpid": 1})).await;
    w.await.unwrap().unwrap();
    assert_eq!(b.bdev("m").read(8192, 4096).await.unwrap(), data);
}
