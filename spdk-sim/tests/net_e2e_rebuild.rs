//! End to end across sim processes: a raid1 on A over A's lvol and lvols on
//! B and C exported over the sims' NVMe-oF; C is killed, the raid goes on
//! degraded, a fresh replica on D is added and rebuilt, and every replica
//! then holds exactly the bytes written through the raid.

mod net_common;

use net_common::*;
use serde_json::json;

const MIB: usize = 1 << 20;
const VOL_MIB: usize = 16;

/// Starts a node with an aio-backed lvstore and a thin 16 MiB lvol `lvs/rep`.
fn node(dir: &std::path::Path, name: &str) -> SimProc {
    let p = SimProc::start(dir, name);
    let img = dir.join(format!("{name}.img"));
    std::fs::File::create(&img)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    p.ok(
        "bdev_aio_create",
        json!({"name": "aio0", "filename": img, "block_size": 4096}),
    );
    p.ok(
        "bdev_lvol_create_lvstore",
        json!({"bdev_name": "aio0", "lvs_name": "lvs"}),
    );
    p.ok("bdev_lvol_create", json!({"lvs_name": "lvs", "lvol_name": "rep", "size_in_mib": VOL_MIB, "thin_provision": true}));
    p
}

/// Exports `lvs/rep` of `p` on a fresh port; returns (nqn, port).
fn export(p: &SimProc, name: &str) -> (String, u16) {
    let nqn = format!("nqn.2016-06.io.spdk:rep-{name}");
    let port = free_port();
    p.ok("nvmf_create_transport", json!({"trtype": "TCP"}));
    p.ok(
        "nvmf_create_subsystem",
        json!({"nqn": nqn, "allow_any_host": true, "serial_number": "SPDKREP"}),
    );
    p.ok(
        "nvmf_subsystem_add_ns",
        json!({"nqn": nqn, "namespace": {"bdev_name": "lvs/rep"}}),
    );
    p.ok(
        "nvmf_subsystem_add_listener",
        json!({"nqn": nqn, "listen_address": listen(port)}),
    );
    (nqn, port)
}

fn attach(a: &SimProc, ctrlr: &str, nqn: &str, port: u16) {
    let mut p = attach_params(ctrlr, nqn, port);
    p["ctrlr_loss_timeout_sec"] = json!(3);
    p["reconnect_delay_sec"] = json!(1);
    p["fast_io_fail_timeout_sec"] = json!(1);
    assert_eq!(
        a.ok("bdev_nvme_attach_controller", p),
        json!([format!("{ctrlr}n1")])
    );
}

fn write(a: &SimProc, expect: &mut [u8], offset: usize, data: &[u8]) {
    a.ok(
        "sim_bdev_write",
        json!({"name": "r", "offset": offset, "data": b64(data)}),
    );
    expect[offset..offset + data.len()].copy_from_slice(data);
}

fn read_all(p: &SimProc, name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..VOL_MIB {
        out.extend(unb64(&p.ok(
            "sim_bdev_read",
            json!({"name": name, "offset": i * MIB, "length": MIB}),
        )));
    }
    out
}

fn raid(a: &SimProc) -> serde_json::Value {
    a.ok("bdev_raid_get_bdevs", json!({"category": "all"}))[0].clone()
}

#[test]
fn replica_loss_and_rebuild_keep_every_copy_identical() {
    let dir = tempfile::tempdir().unwrap();
    let a = node(dir.path(), "a");
    let b = node(dir.path(), "b");
    let mut c = node(dir.path(), "c");
    let d = node(dir.path(), "d");
    let (nqn_b, port_b) = export(&b, "b");
    let (nqn_c, port_c) = export(&c, "c");
    attach(&a, "nvB", &nqn_b, port_b);
    attach(&a, "nvC", &nqn_c, port_c);
    a.ok(
        "bdev_raid_create",
        json!({"name": "r", "raid_level": "raid1", "base_bdevs": ["lvs/rep", "nvBn1", "nvCn1"]}),
    );
    let info = raid(&a);
    assert_eq!(info["state"], "online");
    assert_eq!(info["num_base_bdevs_operational"], 3);

    let size = VOL_MIB * MIB;
    let mut expect = vec![0u8; size];
    for i in 0..VOL_MIB {
        write(&a, &mut expect, i * MIB, &pattern(i as u8, MIB));
    }

    c.kill();
    // Degraded writes: the first one to reach C's dead leg drops it and still succeeds.
    write(&a, &mut expect, 3 * MIB, &pattern(100, 2 * MIB));
    let info = raid(&a);
    assert_eq!(info["state"], "online");
    assert_eq!(info["num_base_bdevs_operational"], 2);
    assert_eq!(info["base_bdevs_list"][2]["name"], json!(null));
    write(&a, &mut expect, 9 * MIB + 4096, &pattern(101, 64 * 1024));

    let (nqn_d, port_d) = export(&d, "d");
    attach(&a, "nvD", &nqn_d, port_d);
    a.ok(
        "bdev_raid_set_options",
        json!({"process_max_bandwidth_mb_sec": 16}),
    );
    a.ok(
        "bdev_raid_add_base_bdev",
        json!({"raid_bdev": "r", "base_bdev": "nvDn1"}),
    );
    assert_eq!(raid(&a)["process"]["target"], "nvDn1");
    // A write racing the rebuild must reach D too.
    write(&a, &mut expect, 12 * MIB, &pattern(102, MIB));
    let mut done = false;
    for _ in 0..3000 {
        if raid(&a).get("process").is_none() {
            done = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(done, "rebuild did not finish");
    assert_eq!(raid(&a)["num_base_bdevs_operational"], 3);

    assert!(read_all(&a, "r") == expect, "raid read-back differs");
    assert!(read_all(&a, "lvs/rep") == expect, "replica on A differs");
    assert!(read_all(&b, "lvs/rep") == expect, "replica on B differs");
    assert!(
        read_all(&d, "lvs/rep") == expect,
        "rebuilt replica on D differs"
    );
    let stat = a.ok("bdev_get_iostat", json!({"name": "nvDn1"}));
    assert!(stat["bdevs"][0]["bytes_written"].as_u64().unwrap() >= size as u64);
}
