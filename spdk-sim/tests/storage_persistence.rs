//! Process-level persistence: everything acknowledged before `kill -9`
//! comes back after a restart once the aio bdev is re-created (examine).

mod common;

use serde_json::{json, Value};

use common::{pattern, SimProcess};

const MIB: u64 = 1 << 20;

fn state(rpc: &mut common::Rpc) -> (Value, Value) {
    let lvols = rpc.ok("bdev_lvol_get_lvols", Value::Null);
    let lvs = rpc.ok("bdev_lvol_get_lvstores", Value::Null);
    (lvols, lvs)
}

#[test]
fn lvstore_lvols_snapshots_clones_and_data_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let img = dir.path().join("disk.img");
    std::fs::File::create(&img)
        .and_then(|f| f.set_len(256 * MIB))
        .expect("aio file");
    let aio = json!({"name": "aio0", "filename": img.to_string_lossy(), "block_size": 4096});

    let mut sim = SimProcess::start(dir.path());
    let mut rpc = sim.rpc();
    rpc.ok("bdev_aio_create", aio.clone());
    rpc.ok(
        "bdev_lvol_create_lvstore",
        json!({"bdev_name": "aio0", "lvs_name": "lvs", "cluster_sz": MIB}),
    );
    for (name, mib, thin) in [("vol", 16, true), ("thick", 4, false)] {
        rpc.ok(
            "bdev_lvol_create",
            json!({"lvs_name": "lvs", "lvol_name": name, "size_in_mib": mib, "thin_provision": thin}),
        );
    }
    rpc.write("lvs/vol", 0, &pattern(1, (3 * MIB) as usize));
    rpc.write("lvs/vol", 7 * MIB + 4096, &pattern(2, 8192));
    rpc.ok(
        "bdev_lvol_snapshot",
        json!({"lvol_name": "lvs/vol", "snapshot_name": "snap"}),
    );
    rpc.write("lvs/vol", MIB, &pattern(3, MIB as usize));
    rpc.ok(
        "bdev_lvol_clone",
        json!({"snapshot_name": "lvs/snap", "clone_name": "clone"}),
    );
    rpc.write("lvs/clone", 12 * MIB, &pattern(4, 4096));
    rpc.write("lvs/thick", 0, &pattern(5, (4 * MIB) as usize));
    rpc.ok(
        "bdev_lvol_rename",
        json!({"old_name": "lvs/thick", "new_name": "thick2"}),
    );

    let names = ["lvs/vol", "lvs/snap", "lvs/clone", "lvs/thick2"];
    let before_data: Vec<Vec<u8>> = names.iter().map(|n| rpc.read(n, 0, 4 * MIB)).collect();
    let before_tail: Vec<Vec<u8>> = names[..3]
        .iter()
        .map(|n| rpc.read(n, 4 * MIB, 12 * MIB))
        .collect();
    let before = state(&mut rpc);
    drop(rpc);

    sim.kill9();
    let sim = SimProcess::start(dir.path());
    let mut rpc = sim.rpc();
    assert_eq!(rpc.ok("bdev_lvol_get_lvstores", Value::Null), json!([]));
    rpc.ok("bdev_aio_create", aio);
    assert_eq!(rpc.ok("bdev_wait_for_examine", Value::Null), json!(true));

    assert_eq!(
        state(&mut rpc),
        before,
        "lvstore and lvols (uuids, counts) come back"
    );
    let after_data: Vec<Vec<u8>> = names.iter().map(|n| rpc.read(n, 0, 4 * MIB)).collect();
    let after_tail: Vec<Vec<u8>> = names[..3]
        .iter()
        .map(|n| rpc.read(n, 4 * MIB, 12 * MIB))
        .collect();
    assert!(
        after_data == before_data,
        "data in the first 4 MiB differs after restart"
    );
    assert!(
        after_tail == before_tail,
        "data beyond 4 MiB differs after restart"
    );
    let clone = rpc.ok("bdev_get_bdevs", json!({"name": "lvs/clone"}));
    assert_eq!(
        clone[0]["driver_specific"]["lvol"]["base_snapshot"],
        json!("snap")
    );
    let base = rpc.ok("bdev_get_bdevs", json!({"name": "aio0"}));
    assert_eq!(base[0]["claimed"], json!(true));
    assert_eq!(base[0]["claim_type"], json!("read_many_write_one"));
    // The restored lvstore keeps working: new data, then restart again.
    rpc.write("lvs/clone", 0, &pattern(6, 4096));
    assert_eq!(rpc.read("lvs/clone", 0, 4096), pattern(6, 4096));
}

#[test]
fn kill_instance_stops_the_process_and_a_malloc_lvstore_is_gone_after_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sim = SimProcess::start(dir.path());
    let mut rpc = sim.rpc();
    rpc.ok(
        "bdev_malloc_create",
        json!({"name": "m0", "num_blocks": 4096, "block_size": 4096}),
    );
    rpc.ok(
        "bdev_lvol_create_lvstore",
        json!({"bdev_name": "m0", "lvs_name": "lvs"}),
    );
    assert_eq!(
        rpc.ok("spdk_kill_instance", json!({"sig_name": "SIGTERM"})),
        json!(true)
    );
    drop(rpc);
    sim.wait_exit();
    let sim = SimProcess::start(dir.path());
    let mut rpc = sim.rpc();
    assert_eq!(rpc.ok("bdev_get_bdevs", Value::Null), json!([]));
    assert_eq!(rpc.ok("bdev_lvol_get_lvstores", Value::Null), json!([]));
}
