//! Data semantics of lvols, in process: copy-on-write snapshots and clones,
//! inflate/decouple, snapshot deletion merging into its clone, thin ENOSPC,
//! shallow copy between lvstores, fault injection and iostat.

mod common;

use std::sync::Arc;

use base64::Engine;
use serde_json::{json, Value};
use spdk_sim::rpc_error::RpcError;
use spdk_sim::{Sim, SimConfig};

const MIB: u64 = 1 << 20;

struct T {
    sim: Arc<Sim>,
    _dir: tempfile::TempDir,
}

impl T {
    fn new() -> T {
        let dir = tempfile::tempdir().expect("tempdir");
        let sim = Arc::new(Sim::new(SimConfig {
            rpc_socket: dir.path().join("s.sock"),
            data_dir: dir.path().join("data"),
        }));
        T { sim, _dir: dir }
    }

    async fn call(&self, m: &str, p: Value) -> Result<Value, RpcError> {
        spdk_sim::methods::dispatch(&self.sim, m, Some(&p)).await
    }

    async fn ok(&self, m: &str, p: Value) -> Value {
        match self.call(m, p.clone()).await {
            Ok(v) => v,
            Err(e) => panic!("{m} {p}: {e}"),
        }
    }

    async fn write(&self, name: &str, off: u64, data: &[u8]) -> Result<Value, RpcError> {
        let d = base64::engine::general_purpose::STANDARD.encode(data);
        self.call(
            "sim_bdev_write",
            json!({"name": name, "offset": off, "data": d}),
        )
        .await
    }

    async fn read(&self, name: &str, off: u64, len: u64) -> Vec<u8> {
        let v = self
            .ok(
                "sim_bdev_read",
                json!({"name": name, "offset": off, "length": len}),
            )
            .await;
        base64::engine::general_purpose::STANDARD
            .decode(v["data"].as_str().expect("data"))
            .expect("base64")
    }

    /// A malloc bdev with an lvstore of 1 MiB clusters.
    async fn lvs(&self, bdev: &str, lvs: &str, mib: u64) {
        self.ok(
            "bdev_malloc_create",
            json!({"name": bdev, "num_blocks": mib * 256, "block_size": 4096}),
        )
        .await;
        self.ok(
            "bdev_lvol_create_lvstore",
            json!({"bdev_name": bdev, "lvs_name": lvs, "cluster_sz": MIB}),
        )
        .await;
    }

    async fn lvol(&self, lvs: &str, name: &str, mib: u64, thin: bool) {
        self.ok(
            "bdev_lvol_create",
            json!({"lvs_name": lvs, "lvol_name": name, "size_in_mib": mib, "thin_provision": thin}),
        )
        .await;
    }

    async fn lvol_info(&self, name: &str) -> Value {
        self.ok("bdev_get_bdevs", json!({"name": name})).await[0]["driver_specific"]["lvol"].clone()
    }

    async fn allocated(&self, name: &str) -> u64 {
        self.lvol_info(name).await["num_allocated_clusters"]
            .as_u64()
            .expect("count")
    }
}

fn pat(seed: u64, len: u64) -> Vec<u8> {
    common::pattern(seed, len as usize)
}

#[tokio::test]
async fn clone_reads_snapshot_data_while_origin_moves_on() {
    let t = T::new();
    t.lvs("m0", "lvs", 64).await;
    t.lvol("lvs", "vol", 8, true).await;
    let a = pat(1, 4 * MIB);
    t.write("lvs/vol", 0, &a).await.expect("write a");
    assert_eq!(t.allocated("lvs/vol").await, 4);

    t.ok(
        "bdev_lvol_snapshot",
        json!({"lvol_name": "lvs/vol", "snapshot_name": "s1"}),
    )
    .await;
    assert_eq!(t.allocated("lvs/vol").await, 0);
    assert_eq!(t.allocated("lvs/s1").await, 4);
    // A 4 KiB write in the middle of cluster 1 copies the rest of the cluster.
    let b = pat(2, 4096);
    t.write("lvs/vol", MIB + 8192, &b).await.expect("write b");
    t.ok(
        "bdev_lvol_clone",
        json!({"snapshot_name": "lvs/s1", "clone_name": "c1"}),
    )
    .await;

    let mut expect_vol = a.clone();
    expect_vol[(MIB + 8192) as usize..(MIB + 8192 + 4096) as usize].copy_from_slice(&b);
    assert_eq!(t.read("lvs/vol", 0, 4 * MIB).await, expect_vol);
    assert_eq!(t.read("lvs/c1", 0, 4 * MIB).await, a);
    assert_eq!(t.read("lvs/s1", 0, 4 * MIB).await, a);
    // Beyond the written range everything reads as zeroes.
    assert_eq!(
        t.read("lvs/c1", 4 * MIB, 4 * MIB).await,
        vec![0u8; (4 * MIB) as usize]
    );
    assert_eq!(t.allocated("lvs/vol").await, 1);
    assert_eq!(t.allocated("lvs/c1").await, 0);

    // Snapshots are read-only.
    let e = t.write("lvs/s1", 0, &b).await.expect_err("snapshot write");
    assert!(e.code < 0);
    let info = t.lvol_info("lvs/s1").await;
    assert_eq!(info["clones"], json!(["vol", "c1"]));
    // Two clones: the snapshot cannot be deleted.
    let e = t
        .call("bdev_lvol_delete", json!({"name": "lvs/s1"}))
        .await
        .expect_err("delete");
    assert_eq!(
        (e.code, e.message.as_str()),
        (-32603, "Operation not permitted")
    );
}

#[tokio::test]
async fn inflate_and_decouple_keep_data() {
    let t = T::new();
    t.lvs("m0", "lvs", 64).await;
    t.lvol("lvs", "vol", 6, true).await;
    let a = pat(3, 3 * MIB);
    t.write("lvs/vol", 0, &a).await.expect("write");
    t.ok(
        "bdev_lvol_snapshot",
        json!({"lvol_name": "lvs/vol", "snapshot_name": "s"}),
    )
    .await;
    t.ok(
        "bdev_lvol_clone",
        json!({"snapshot_name": "lvs/s", "clone_name": "c"}),
    )
    .await;
    let b = pat(4, 4096);
    t.write("lvs/c", 2 * MIB, &b).await.expect("write clone");
    let before_c = t.read("lvs/c", 0, 6 * MIB).await;
    let before_v = t.read("lvs/vol", 0, 6 * MIB).await;

    t.ok("bdev_lvol_decouple_parent", json!({"name": "lvs/c"}))
        .await;
    let info = t.lvol_info("lvs/c").await;
    assert_eq!(info["clone"], json!(false));
    assert_eq!(info["thin_provision"], json!(true));
    assert_eq!(info["num_allocated_clusters"], json!(3));
    assert_eq!(t.read("lvs/c", 0, 6 * MIB).await, before_c);

    t.ok("bdev_lvol_inflate", json!({"name": "lvs/vol"})).await;
    let info = t.lvol_info("lvs/vol").await;
    assert_eq!(info["thin_provision"], json!(false));
    assert_eq!(info["num_allocated_clusters"], json!(6));
    assert_eq!(t.read("lvs/vol", 0, 6 * MIB).await, before_v);
    // The snapshot has no clones left and can go; the data stays.
    t.ok("bdev_lvol_delete", json!({"name": "lvs/s"})).await;
    assert_eq!(t.read("lvs/vol", 0, 6 * MIB).await, before_v);
}

#[tokio::test]
async fn deleting_a_snapshot_with_one_clone_merges_its_data() {
    let t = T::new();
    t.lvs("m0", "lvs", 64).await;
    t.lvol("lvs", "vol", 4, true).await;
    t.write("lvs/vol", 0, &pat(5, 2 * MIB)).await.expect("w1");
    t.ok(
        "bdev_lvol_snapshot",
        json!({"lvol_name": "lvs/vol", "snapshot_name": "s1"}),
    )
    .await;
    t.write("lvs/vol", MIB, &pat(6, 2 * MIB)).await.expect("w2");
    t.ok(
        "bdev_lvol_snapshot",
        json!({"lvol_name": "lvs/vol", "snapshot_name": "s2"}),
    )
    .await;
    t.write("lvs/vol", 3 * MIB, &pat(7, 4096))
        .await
        .expect("w3");
    let before = t.read("lvs/vol", 0, 4 * MIB).await;
    let free_before = t
        .ok("bdev_lvol_get_lvstores", json!({"lvs_name": "lvs"}))
        .await[0]["free_clusters"]
        .clone();

    // s1 (child s2) merges into s2; then s2 (child vol) merges into vol.
    t.ok("bdev_lvol_delete", json!({"name": "lvs/s1"})).await;
    assert_eq!(t.allocated("lvs/s2").await, 3);
    assert_eq!(t.read("lvs/vol", 0, 4 * MIB).await, before);
    t.ok("bdev_lvol_delete", json!({"name": "lvs/s2"})).await;
    let info = t.lvol_info("lvs/vol").await;
    assert_eq!(info["clone"], json!(false));
    assert_eq!(info["num_allocated_clusters"], json!(4));
    assert_eq!(t.read("lvs/vol", 0, 4 * MIB).await, before);
    // Cluster 3 of s2 was shadowed by vol and got freed: one more free cluster.
    let free_after = t
        .ok("bdev_lvol_get_lvstores", json!({"lvs_name": "lvs"}))
        .await[0]["free_clusters"]
        .clone();
    assert_eq!(free_after.as_u64(), free_before.as_u64().map(|f| f + 1));
}

#[tokio::test]
async fn a_full_thin_lvstore_fails_writes_with_enospc() {
    let t = T::new();
    // 8 MiB device, 1 MiB clusters: 1 metadata cluster, 7 data clusters.
    t.lvs("m0", "lvs", 8).await;
    let lvs = t
        .ok("bdev_lvol_get_lvstores", json!({"lvs_name": "lvs"}))
        .await;
    assert_eq!(lvs[0]["total_data_clusters"], json!(7));
    t.lvol("lvs", "big", 16, true).await;
    t.write("lvs/big", 0, &pat(8, 7 * MIB)).await.expect("fill");
    let e = t
        .write("lvs/big", 9 * MIB, &pat(9, 4096))
        .await
        .expect_err("full");
    assert_eq!(e.code, -28);
    // Already allocated clusters stay writable, and the data is intact.
    t.write("lvs/big", 0, &pat(10, 4096))
        .await
        .expect("overwrite");
    assert_eq!(
        t.read("lvs/big", 4096, 4096).await,
        pat(8, 7 * MIB)[4096..8192].to_vec()
    );
    // A thick lvol larger than the free space is refused.
    let e = t
        .call(
            "bdev_lvol_create",
            json!({"lvs_name": "lvs", "lvol_name": "t", "size_in_mib": 1}),
        )
        .await
        .expect_err("thick");
    assert_eq!(
        (e.code, e.message.as_str()),
        (-32602, "No space left on device")
    );
}

async fn wait_copy(t: &T, op: &Value) -> Value {
    loop {
        let v = t
            .ok("bdev_lvol_check_shallow_copy", json!({"operation_id": op}))
            .await;
        if v["state"] != "in progress" {
            return v;
        }
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn shallow_copy_reproduces_the_top_layer_on_another_lvstore() {
    let t = T::new();
    t.lvs("m0", "src", 64).await;
    t.lvs("m1", "dst", 64).await;
    t.lvol("src", "v", 8, true).await;
    t.write("src/v", 0, &pat(11, 3 * MIB)).await.expect("w1");
    t.ok(
        "bdev_lvol_snapshot",
        json!({"lvol_name": "src/v", "snapshot_name": "s1"}),
    )
    .await;
    t.write("src/v", 5 * MIB, &pat(12, MIB)).await.expect("w2");
    t.write("src/v", 4096, &pat(13, 4096)).await.expect("w3");
    t.ok(
        "bdev_lvol_snapshot",
        json!({"lvol_name": "src/v", "snapshot_name": "s2"}),
    )
    .await;

    // A writable source is refused through the operation's state.
    let op = t
        .ok(
            "bdev_lvol_start_shallow_copy",
            json!({"src_lvol_name": "src/v", "dst_bdev_name": "m1"}),
        )
        .await;
    let st = wait_copy(&t, &op["operation_id"]).await;
    assert_eq!(st["state"], json!("error"));
    assert_eq!(st["error"], json!("Operation not permitted"));

    // Full base layer: s1 onto d, snapshot d, then the delta s2 onto a clone.
    t.lvol("dst", "d", 8, true).await;
    let op = t
        .ok(
            "bdev_lvol_start_shallow_copy",
            json!({"src_lvol_name": "src/s1", "dst_bdev_name": "dst/d"}),
        )
        .await;
    let st = wait_copy(&t, &op["operation_id"]).await;
    assert_eq!(
        st,
        json!({"copied_clusters": 3, "total_clusters": 3, "state": "complete"})
    );
    let again = t
        .call(
            "bdev_lvol_check_shallow_copy",
            json!({"operation_id": op["operation_id"]}),
        )
        .await;
    assert_eq!(again.expect_err("read once").code, -19);
    t.ok(
        "bdev_lvol_snapshot",
        json!({"lvol_name": "dst/d", "snapshot_name": "ds1"}),
    )
    .await;
    t.ok(
        "bdev_lvol_clone",
        json!({"snapshot_name": "dst/ds1", "clone_name": "d2"}),
    )
    .await;
    let op = t
        .ok(
            "bdev_lvol_start_shallow_copy",
            json!({"src_lvol_name": "src/s2", "dst_bdev_name": "dst/d2"}),
        )
        .await;
    let st = wait_copy(&t, &op["operation_id"]).await;
    assert_eq!(st["total_clusters"], json!(2));
    assert_eq!(st["state"], json!("complete"));
    assert_eq!(t.allocated("dst/d2").await, 2);
    assert_eq!(
        t.read("dst/d2", 0, 8 * MIB).await,
        t.read("src/s2", 0, 8 * MIB).await
    );

    // A destination smaller than the source: error state; unknown destination: -32602.
    t.lvol("dst", "small", 2, true).await;
    let op = t
        .ok(
            "bdev_lvol_start_shallow_copy",
            json!({"src_lvol_name": "src/s2", "dst_bdev_name": "dst/small"}),
        )
        .await;
    assert_eq!(
        wait_copy(&t, &op["operation_id"]).await["error"],
        json!("Invalid argument")
    );
    let e = t
        .call(
            "bdev_lvol_start_shallow_copy",
            json!({"src_lvol_name": "src/s2", "dst_bdev_name": "nosuch"}),
        )
        .await
        .expect_err("no dst");
    assert_eq!((e.code, e.message.as_str()), (-32602, "No such device"));
}

#[tokio::test]
async fn injected_faults_fail_io_and_iostat_counts_it() {
    let t = T::new();
    t.lvs("m0", "lvs", 16).await;
    t.lvol("lvs", "v", 4, true).await;
    for i in 0..4u64 {
        t.write("lvs/v", i * 4096, &pat(20 + i, 4096))
            .await
            .expect("write");
    }
    let st = t.ok("bdev_get_iostat", json!({"name": "lvs/v"})).await;
    assert_eq!(st["bdevs"][0]["num_write_ops"], json!(4));
    assert_eq!(st["bdevs"][0]["bytes_written"], json!(4 * 4096));
    let st = t.ok("bdev_get_iostat", json!({"name": "m0"})).await;
    assert!(
        st["bdevs"][0]["num_write_ops"].as_u64() >= Some(1),
        "base writes counted"
    );

    t.ok("sim_fail_bdev", json!({"name": "m0"})).await;
    let e = t
        .call(
            "sim_bdev_read",
            json!({"name": "lvs/v", "offset": 0, "length": 4096}),
        )
        .await;
    assert_eq!(e.expect_err("fault").code, -5);
    // Like spdk_tgt (d4: `"io_error": {"failed": 3}` on a dead leg), the
    // failure counts on the failing bdev and on the lvol above it.
    for name in ["m0", "lvs/v"] {
        let st = t.ok("bdev_get_iostat", json!({ "name": name })).await;
        assert_eq!(st["bdevs"][0]["io_error"], json!({"failed": 1}), "{name}");
    }
    t.ok("sim_fail_bdev", json!({"name": "m0", "enable": false}))
        .await;
    assert_eq!(t.read("lvs/v", 4096, 4096).await, pat(21, 4096));
}

#[tokio::test]
async fn a_torn_metadata_update_falls_back_to_the_previous_generation() {
    let t = T::new();
    let file = t._dir.path().join("disk.img");
    std::fs::File::create(&file)
        .and_then(|f| f.set_len(64 * MIB))
        .expect("file");
    let path = file.to_string_lossy().to_string();
    t.ok(
        "bdev_aio_create",
        json!({"name": "aio0", "filename": path, "block_size": 4096}),
    )
    .await;
    t.ok(
        "bdev_lvol_create_lvstore",
        json!({"bdev_name": "aio0", "lvs_name": "lvs", "cluster_sz": MIB}),
    )
    .await;
    t.lvol("lvs", "first", 4, true).await;
    t.lvol("lvs", "second", 4, true).await;

    // Find the slot holding the newest generation and tear its payload.
    let bytes = std::fs::read(&file).expect("read");
    let anchor_slot = u64::from_le_bytes(bytes[24..32].try_into().expect("slot size"));
    let slot = |n: u64| (4096 + n * anchor_slot) as usize;
    let seq =
        |n: u64| u64::from_le_bytes(bytes[slot(n) + 8..slot(n) + 16].try_into().expect("seq"));
    let newest = if seq(0) > seq(1) { 0 } else { 1 };
    let mut torn = bytes.clone();
    torn[slot(newest) + 40] ^= 0xff;
    std::fs::write(&file, &torn).expect("tear");

    // A new process examining the file loads the previous generation.
    let t2 = T::new();
    t2.ok(
        "bdev_aio_create",
        json!({"name": "aio0", "filename": path, "block_size": 4096}),
    )
    .await;
    t2.ok("bdev_wait_for_examine", Value::Null)
        .await
        .as_bool()
        .expect("bool");
    let lvols = t2
        .ok("bdev_lvol_get_lvols", json!({"lvs_name": "lvs"}))
        .await;
    let names: Vec<&str> = lvols
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|l| l["name"].as_str())
        .collect();
    assert_eq!(names, vec!["first"]);
}

#[tokio::test]
async fn unmapping_whole_clusters_of_a_thin_lvol_releases_them() {
    let t = T::new();
    t.lvs("m0", "lvs", 16).await;
    t.lvol("lvs", "v", 4, true).await;
    t.write("lvs/v", 0, &pat(30, 3 * MIB)).await.expect("write");
    let v = t.ok("bdev_get_bdevs", json!({"name": "lvs/v"})).await;
    assert_eq!(v[0]["supported_io_types"]["unmap"], json!(true));
    let bdev = {
        let reg = t.sim.bdevs.lock().expect("registry");
        reg.lookup("lvs/v").expect("lvol").bdev.clone()
    };
    // Cluster 1 whole, plus 8 KiB of cluster 2.
    bdev.unmap(MIB, MIB + 8192).await.expect("unmap");
    assert_eq!(t.allocated("lvs/v").await, 2);
    let mut want = pat(30, 3 * MIB);
    want[MIB as usize..(2 * MIB + 8192) as usize].fill(0);
    assert_eq!(t.read("lvs/v", 0, 3 * MIB).await, want);
    let lvs = t
        .ok("bdev_lvol_get_lvstores", json!({"lvs_name": "lvs"}))
        .await;
    assert_eq!(
        lvs[0]["free_clusters"].as_u64(),
        lvs[0]["total_data_clusters"].as_u64().map(|n| n - 2)
    );
}
