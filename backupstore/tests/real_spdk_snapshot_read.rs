//! Reading a snapshot's own allocated data on stock SPDK, with no kernel
//! initiator: an aio bdev over a sparse file, `bdev_lvol_start_shallow_copy`
//! of the read-only snapshot into it (polled with
//! `bdev_lvol_check_shallow_copy`), then the file's data extents with
//! SEEK_DATA/SEEK_HOLE. An unallocated cluster must stay a hole, and the
//! layer of a snapshot above the previously backed-up one is exactly the
//! delta of an incremental backup. The result is backed up and restored
//! with the backupstore crate.
//!
//! The sim test always runs; the real one needs
//! `SHORTHORN_SPDK_TGT=/work/shared/spdk/bin/spdk_tgt SHORTHORN_SPDK_DD=/work/shared/spdk/bin/spdk_dd
//!  cargo test -p backupstore --test real_spdk_snapshot_read -- --nocapture`
//! and prints the measured throughput (docs/backup.md).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use backupstore::extents::{data_block_offsets, data_blocks, data_extents};
use backupstore::BackupRequest;
use serde_json::{json, Value};
use spdk_client::SpdkClient;
use testkit::launch::Role;
use testkit::nodes::{Flavor, StorageNode, TestCluster};

const MIB: u64 = 1 << 20;
const CLUSTER: u64 = 4 * MIB; // the controller's default lvstore cluster size

async fn call(c: &SpdkClient, method: &str, params: Value) -> Value {
    c.call_raw(method, Some(params))
        .await
        .unwrap_or_else(|e| panic!("{method}: {e}"))
}

/// Non-repeating bytes (xorshift), so no two blocks of a write are equal.
fn pattern(seed: u8, len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ u64::from(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Shallow-copies read-only lvol `snap` into a new sparse file through an aio
/// bdev; returns the file path and the copy's duration.
async fn shallow_copy_to_file(
    c: &SpdkClient,
    node: &StorageNode,
    snap: &str,
    size: u64,
    name: &str,
) -> (std::path::PathBuf, Duration) {
    let path = node.data_dir.join(format!("{name}.img"));
    std::fs::File::create(&path).unwrap().set_len(size).unwrap();
    call(
        c,
        "bdev_aio_create",
        json!({"name": name, "filename": path.display().to_string(), "block_size": 4096}),
    )
    .await;
    let started = Instant::now();
    let op = call(
        c,
        "bdev_lvol_start_shallow_copy",
        json!({"src_lvol_name": snap, "dst_bdev_name": name}),
    )
    .await["operation_id"]
        .as_u64()
        .expect("operation_id");
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let st = call(
            c,
            "bdev_lvol_check_shallow_copy",
            json!({"operation_id": op}),
        )
        .await;
        match st["state"].as_str() {
            Some("complete") => break,
            Some("in progress") => {}
            _ => panic!("shallow copy of {snap} failed: {st}"),
        }
        assert!(
            Instant::now() < deadline,
            "shallow copy of {snap} took over 300 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed();
    // Deleting the aio bdev closes the file; the data is on it (O_DIRECT).
    call(c, "bdev_aio_delete", json!({"name": name})).await;
    (path, took)
}

fn cluster_extents(file: &Path) -> Vec<(u64, u64)> {
    data_extents(&std::fs::File::open(file).unwrap()).unwrap()
}

/// Merges a sorted list of cluster indexes into byte extents.
fn extents_of(clusters: &[u64]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &c in clusters {
        match out.last_mut() {
            Some((off, len)) if *off + *len == c * CLUSTER => *len += CLUSTER,
            _ => out.push((c * CLUSTER, CLUSTER)),
        }
    }
    out
}

async fn scenario(flavor: Flavor) {
    let real = flavor.is_real();
    let cluster =
        tokio::task::spawn_blocking(move || TestCluster::start_with(flavor, &[Role::Engine]))
            .await
            .expect("join")
            .expect("start node");
    let node = cluster.node(0);
    let dp = cluster.data_path();
    let c = SpdkClient::unix(&node.rpc_socket).with_timeout(Duration::from_secs(120));
    call(
        &c,
        "bdev_aio_create",
        json!({"name": "aio0", "filename": node.aio_file.display().to_string(), "block_size": 4096}),
    )
    .await;
    call(
        &c,
        "bdev_lvol_create_lvstore",
        json!({"bdev_name": "aio0", "lvs_name": "lvs", "cluster_sz": CLUSTER}),
    )
    .await;
    let size = 64 * MIB; // 16 clusters
    call(
        &c,
        "bdev_lvol_create",
        json!({"lvol_name": "vol", "size_in_mib": size / MIB, "lvs_name": "lvs", "thin_provision": true}),
    )
    .await;

    // Snapshot 1: data in clusters 0, 3, 4 and 15; the others never written.
    let mut model = vec![0u8; size as usize];
    let writes1: [(u64, usize, u8); 4] = [
        (0, 64 << 10, 1),
        (3 * CLUSTER, CLUSTER as usize, 2),
        (4 * CLUSTER + 3 * MIB, 4096, 3),
        (15 * CLUSTER + MIB, 128 << 10, 4),
    ];
    for (off, len, seed) in writes1 {
        let data = pattern(seed, len);
        dp.write(node, "lvs/vol", off, &data).await.expect("write");
        model[off as usize..off as usize + len].copy_from_slice(&data);
    }
    let model1 = model.clone();
    call(
        &c,
        "bdev_lvol_snapshot",
        json!({"lvol_name": "lvs/vol", "snapshot_name": "snap1"}),
    )
    .await;

    // Snapshot 2 on top: a partial rewrite of cluster 3 and a new cluster 7.
    let writes2: [(u64, usize, u8); 2] = [(3 * CLUSTER + 4096, 8192, 5), (7 * CLUSTER, 4096, 6)];
    for (off, len, seed) in writes2 {
        let data = pattern(seed, len);
        dp.write(node, "lvs/vol", off, &data).await.expect("write");
        model[off as usize..off as usize + len].copy_from_slice(&data);
    }
    let model2 = model;
    call(
        &c,
        "bdev_lvol_snapshot",
        json!({"lvol_name": "lvs/vol", "snapshot_name": "snap2"}),
    )
    .await;

    let (f1, t1) = shallow_copy_to_file(&c, node, "lvs/snap1", size, "copy1").await;
    assert_eq!(
        cluster_extents(&f1),
        extents_of(&[0, 3, 4, 15]),
        "snap1's file: data exactly in its allocated clusters, holes elsewhere"
    );
    assert!(
        std::fs::read(&f1).unwrap() == model1,
        "snap1's bytes differ"
    );

    let (f2, t2) = shallow_copy_to_file(&c, node, "lvs/snap2", size, "copy2").await;
    assert_eq!(
        cluster_extents(&f2),
        extents_of(&[3, 7]),
        "snap2's own layer is only the clusters written after snap1"
    );
    let bytes2 = std::fs::read(&f2).unwrap();
    for cl in [3u64, 7] {
        let r = (cl * CLUSTER) as usize..((cl + 1) * CLUSTER) as usize;
        assert!(
            bytes2[r.clone()] == model2[r],
            "snap2's cluster {cl} differs"
        );
    }
    println!(
        "{}: shallow copy snap1 {} clusters in {t1:?}, snap2 {} clusters in {t2:?}",
        if real { "real spdk_tgt" } else { "spdk-sim" },
        4,
        2
    );

    // Back both up (full, then the delta) and restore.
    let dir = tempfile::tempdir().unwrap();
    let store = common::local_store(dir.path());
    let o1 = store
        .create_backup(
            &BackupRequest::new("vol", size, "backup-1", "snap1"),
            data_blocks(std::fs::File::open(&f1).unwrap()).unwrap(),
        )
        .await
        .unwrap();
    let mut r2 = BackupRequest::new("vol", size, "backup-2", "snap2");
    r2.delta_base_snapshot = Some("snap1".into());
    let o2 = store
        .create_backup(&r2, data_blocks(std::fs::File::open(&f2).unwrap()).unwrap())
        .await
        .unwrap();
    // Full: 4 clusters = 8 blocks, 3 of them all zeros (stored once).
    assert_eq!((o1.blocks_in, o1.blocks_uploaded), (8, 6));
    // Delta: clusters 3 and 7 = 4 blocks; only the two holding new bytes are new.
    assert_eq!(
        (o2.blocks_in, o2.blocks_uploaded, o2.blocks_already_stored),
        (4, 2, 2)
    );
    println!(
        "upload counts: full {}/{} blocks ({} bytes), incremental {}/{} blocks ({} bytes) for {} bytes written",
        o1.blocks_uploaded,
        o1.blocks_in,
        o1.bytes_uploaded,
        o2.blocks_uploaded,
        o2.blocks_in,
        o2.bytes_uploaded,
        writes2.iter().map(|w| w.1).sum::<usize>()
    );
    for (b, m) in [("backup-1", &model1), ("backup-2", &model2)] {
        let out = dir.path().join(format!("{b}.img"));
        store.restore_to_file("vol", b, &out).await.unwrap();
        assert!(
            std::fs::read(&out).unwrap() == **m,
            "{b} restores different bytes"
        );
        let got = data_block_offsets(&cluster_extents(&out));
        let want = data_block_offsets(&extents_of(if b == "backup-1" {
            &[0, 3, 4, 15]
        } else {
            &[0, 3, 4, 7, 15]
        }));
        assert_eq!(got, want, "{b}: restored file keeps the holes");
    }

    if real {
        measure(&c, node, &dp).await;
    }
}

/// Throughput of the mechanism on real SPDK: 256 MiB written in a 1 GiB thin
/// lvol less the test's, snapshotted, shallow-copied, then read by extents.
async fn measure(c: &SpdkClient, node: &StorageNode, dp: &testkit::data_path::DataPath) {
    let size = 512 * MIB;
    call(
        c,
        "bdev_lvol_create",
        json!({"lvol_name": "big", "size_in_mib": size / MIB, "lvs_name": "lvs", "thin_provision": true}),
    )
    .await;
    let written = 128 * MIB;
    let chunk = 32 * MIB;
    for i in 0..(written / chunk) {
        // Every other 32 MiB: half the range written, holes between.
        dp.write(
            node,
            "lvs/big",
            i * 2 * chunk,
            &pattern(i as u8, chunk as usize),
        )
        .await
        .expect("write");
    }
    call(
        c,
        "bdev_lvol_snapshot",
        json!({"lvol_name": "lvs/big", "snapshot_name": "bigsnap"}),
    )
    .await;
    let (f, took) = shallow_copy_to_file(c, node, "lvs/bigsnap", size, "copybig").await;
    let ext = cluster_extents(&f);
    let data: u64 = ext.iter().map(|e| e.1).sum();
    assert_eq!(data, written, "extents: {ext:?}");
    let started = Instant::now();
    let mut n = 0u64;
    for b in data_blocks(std::fs::File::open(&f).unwrap()).unwrap() {
        n += b.unwrap().1.len() as u64;
    }
    let read_took = started.elapsed();
    let mibs = |bytes: u64, d: Duration| bytes as f64 / MIB as f64 / d.as_secs_f64();
    println!(
        "MEASURED real spdk_tgt: shallow copy of {} MiB allocated (of {} MiB) in {:.2?} = {:.0} MiB/s; \
         extent read of {} MiB in {:.2?} = {:.0} MiB/s",
        written / MIB,
        size / MIB,
        took,
        mibs(written, took),
        n / MIB,
        read_took,
        mibs(n, read_took)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_read_on_sim() {
    scenario(Flavor::sim().expect("spdk-sim")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_read_on_real_spdk() {
    let Some(real) = testkit::spdk_env::real_or_skip("snapshot_read_on_real_spdk") else {
        println!("SKIPPED: set SHORTHORN_SPDK_TGT (and SHORTHORN_SPDK_DD) to run on real SPDK");
        return;
    };
    scenario(Flavor::Real(real)).await;
}
