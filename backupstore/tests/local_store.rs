//! Backup, incremental backup, restore, corruption and garbage collection on
//! a local-directory target, plus Longhorn fixtures and an independent reader.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::process::Command;

use backupstore::format::{backup_cfg_path, block_path, volume_cfg_path};
use backupstore::{BackupRequest, Compression, Error};
use common::*;
use sha2::Digest;

const NBLOCKS: u64 = 8;

fn req(backup: &str, snapshot: &str) -> BackupRequest {
    BackupRequest::new("vol-a", NBLOCKS * BS, backup, snapshot)
}

#[tokio::test]
async fn round_trip_keeps_holes() {
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path());
    let image: Image = [(0, 1), (3, 2), (4, 3), (7, 4)].into_iter().collect();
    let out = store
        .create_backup(&req("backup-1", "snap-1"), blocks_of(&image))
        .await
        .unwrap();
    assert_eq!(out.blocks_uploaded, 4);
    assert_eq!(
        out.url,
        format!(
            "file://{}?backup=backup-1&volume=vol-a",
            dir.path().display()
        )
    );
    let map = store.block_map("vol-a", "backup-1").await.unwrap();
    let offsets: Vec<i64> = map.iter().map(|m| m.offset).collect();
    assert_eq!(
        offsets,
        vec![0, 3 * BS as i64, 4 * BS as i64, 7 * BS as i64]
    );

    let target = dir.path().join("restored.img");
    let r = store
        .restore_to_file("vol-a", "backup-1", &target)
        .await
        .unwrap();
    assert_eq!(r.blocks_written, 4);
    assert_file_is(&target, &image, NBLOCKS);

    // No lock file is left behind.
    let vol = store.load_volume("vol-a").await.unwrap();
    assert_eq!(vol.block_count, 4);
    assert_eq!(vol.compression_method, "lz4");
    assert_eq!(vol.data_engine, "v2");
    assert_eq!(vol.last_backup_name, "backup-1");
    let locks = std::fs::read_dir(dir.path().join(backupstore::format::locks_dir("vol-a")))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(locks, 0, "lock files left behind");
}

#[tokio::test]
async fn incremental_uploads_only_changed_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path());
    let first: Image = [(0, 1), (1, 1), (2, 1), (5, 1)].into_iter().collect();
    let o1 = store
        .create_backup(&req("backup-1", "snap-1"), blocks_of(&first))
        .await
        .unwrap();
    assert_eq!((o1.blocks_in, o1.blocks_uploaded), (4, 4));
    assert!(!o1.config.is_incremental);

    // Snapshot 2 rewrites block 1 and writes block 6: the delta is two blocks.
    let delta: Image = [(1, 9), (6, 9)].into_iter().collect();
    let mut r2 = req("backup-2", "snap-2");
    r2.delta_base_snapshot = Some("snap-1".into());
    let o2 = store.create_backup(&r2, blocks_of(&delta)).await.unwrap();
    assert_eq!(
        (o2.blocks_in, o2.blocks_uploaded),
        (2, 2),
        "only the delta is uploaded"
    );
    assert!(o2.config.is_incremental);
    assert_eq!(o2.config.blocks.len(), 5);
    println!(
        "upload counts: full backup {} of {} blocks, incremental {} of {} ({} bytes)",
        o1.blocks_uploaded, o1.blocks_in, o2.blocks_uploaded, o2.blocks_in, o2.bytes_uploaded
    );

    // A full backup of the same data uploads nothing: every block is stored.
    let mut all = first.clone();
    all.extend(delta.iter());
    let o3 = store
        .create_backup(&req("backup-3", "snap-2"), blocks_of(&all))
        .await
        .unwrap();
    assert_eq!(
        (o3.blocks_in, o3.blocks_uploaded, o3.blocks_already_stored),
        (5, 0, 5)
    );

    // Both backups restore to their own point in time.
    let f1 = dir.path().join("r1.img");
    store
        .restore_to_file("vol-a", "backup-1", &f1)
        .await
        .unwrap();
    assert_file_is(&f1, &first, NBLOCKS);
    let f2 = dir.path().join("r2.img");
    store
        .restore_to_file("vol-a", "backup-2", &f2)
        .await
        .unwrap();
    assert_file_is(&f2, &all, NBLOCKS);

    // A delta against a snapshot that is not the last backup's is refused.
    let mut bad = req("backup-4", "snap-4");
    bad.delta_base_snapshot = Some("snap-1".into());
    match store.create_backup(&bad, blocks_of(&delta)).await {
        Err(Error::BaseMismatch { last_snapshot, .. }) => assert_eq!(last_snapshot, "snap-2"),
        other => panic!("expected BaseMismatch, got {other:?}"),
    }
}

#[tokio::test]
async fn identical_blocks_are_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path());
    let blocks = (0..4)
        .map(|i| Ok((i * BS, block(7, 0))))
        .collect::<Vec<_>>();
    let o = store
        .create_backup(&req("backup-1", "s1"), blocks)
        .await
        .unwrap();
    assert_eq!(
        (o.blocks_in, o.blocks_uploaded, o.blocks_duplicate),
        (4, 1, 3)
    );
    assert_eq!(o.config.blocks.len(), 4);
    assert_eq!(store.list_blocks("vol-a").await.unwrap().len(), 1);
}

#[tokio::test]
async fn corrupted_block_fails_restore_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path());
    let image: Image = [(0, 1), (2, 2)].into_iter().collect();
    store
        .create_backup(&req("backup-1", "snap-1"), blocks_of(&image))
        .await
        .unwrap();
    let sum = backupstore::format::checksum(&block(2, 2));
    let path = block_path("vol-a", &sum);
    // Valid lz4 with different content: decompresses fine, checksum differs.
    let mut evil = block(2, 2);
    evil[12345] ^= 1;
    std::fs::write(
        dir.path().join(&path),
        Compression::Lz4.compress(&evil).unwrap(),
    )
    .unwrap();
    let err = store
        .restore_to_file("vol-a", "backup-1", &dir.path().join("r.img"))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, Error::CorruptBlock { offset, .. } if offset == 2 * BS),
        "{msg}"
    );
    assert!(msg.contains(&path), "error names the block: {msg}");

    // Garbage that is not lz4 at all fails the same way.
    std::fs::write(dir.path().join(&path), b"not a block").unwrap();
    let err = store
        .restore_to_file("vol-a", "backup-1", &dir.path().join("r.img"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::CorruptBlock { .. }) && err.to_string().contains(&path),
        "{err}"
    );
}

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![vec![]];
    }
    let mut out = Vec::new();
    for p in permutations(n - 1) {
        for i in 0..=p.len() {
            let mut q = p.clone();
            q.insert(i, n - 1);
            out.push(q);
        }
    }
    out
}

#[tokio::test]
async fn delete_in_every_order_keeps_exactly_referenced_blocks() {
    // Three backups sharing some blocks: b0 = {0:1,1:1,2:1}, b1 rewrites 1,
    // b2 rewrites 2 and adds 3.
    let images: Vec<Image> = vec![
        [(0, 1), (1, 1), (2, 1)].into_iter().collect(),
        [(0, 1), (1, 2), (2, 1)].into_iter().collect(),
        [(0, 1), (1, 2), (2, 3), (3, 3)].into_iter().collect(),
    ];
    for order in permutations(3) {
        let dir = tempfile::tempdir().unwrap();
        let store = local_store(dir.path());
        for (i, img) in images.iter().enumerate() {
            let mut r = req(&format!("backup-{i}"), &format!("snap-{i}"));
            // The last backup after a deletion is the one with the newest snapshot.
            r.snapshot_created_at = format!("2026-10-05T00:00:0{i}Z");
            store.create_backup(&r, blocks_of(img)).await.unwrap();
        }
        let mut alive: BTreeSet<usize> = (0..3).collect();
        for &victim in &order {
            store
                .delete_backup("vol-a", &format!("backup-{victim}"))
                .await
                .unwrap();
            alive.remove(&victim);
            let want: BTreeSet<String> = alive
                .iter()
                .flat_map(|&a| {
                    images[a]
                        .iter()
                        .map(|(&i, &s)| backupstore::format::checksum(&block(s, i)))
                })
                .collect();
            assert_eq!(
                store.list_blocks("vol-a").await.unwrap(),
                want,
                "order {order:?}, after deleting backup-{victim}"
            );
            let vol = store.load_volume("vol-a").await.unwrap();
            assert_eq!(vol.block_count as usize, want.len());
            let expect_last = alive
                .iter()
                .max()
                .map(|a| format!("backup-{a}"))
                .unwrap_or_default();
            assert_eq!(vol.last_backup_name, expect_last, "order {order:?}");
            // Survivors still restore.
            for &a in &alive {
                let f = dir.path().join(format!("r{a}.img"));
                store
                    .restore_to_file("vol-a", &format!("backup-{a}"), &f)
                    .await
                    .unwrap();
                assert_file_is(&f, &images[a], NBLOCKS);
            }
        }
    }
}

#[tokio::test]
async fn in_progress_backup_blocks_gc() {
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path());
    let img: Image = [(0, 1)].into_iter().collect();
    store
        .create_backup(&req("backup-0", "s0"), blocks_of(&img))
        .await
        .unwrap();
    store
        .create_backup(
            &req("backup-1", "s1"),
            blocks_of(&[(1, 2)].into_iter().collect()),
        )
        .await
        .unwrap();
    // Another writer's backup in progress: Longhorn writes its config with no CreatedTime.
    let p = dir.path().join(backup_cfg_path("vol-a", "backup-9"));
    std::fs::write(&p, r#"{"Name":"backup-9","VolumeName":"vol-a","SnapshotName":"","SnapshotCreatedAt":"","CreatedTime":"","Size":"0","Labels":null,"Parameters":null,"IsIncremental":false,"CompressionMethod":"lz4","NewlyUploadedDataSize":"0","ReUploadedDataSize":"0","ProcessingBlocks":null,"SingleFile":{"FilePath":""}}"#).unwrap();
    let out = store.delete_backup("vol-a", "backup-0").await.unwrap();
    assert!(
        out.gc_skipped
            .as_deref()
            .unwrap_or("")
            .contains("in progress"),
        "{out:?}"
    );
    assert_eq!(store.list_blocks("vol-a").await.unwrap().len(), 2);
    // A failed backup (bad block) leaves no in-progress config that would block GC.
    std::fs::remove_file(&p).unwrap();
    let bad = vec![Ok((0, vec![0u8; 10]))];
    assert!(matches!(
        store.create_backup(&req("backup-5", "s5"), bad).await,
        Err(Error::InvalidBlock { .. })
    ));
    assert_eq!(
        store.list_backups("vol-a").await.unwrap(),
        vec!["backup-1".to_string()]
    );
}

/// The JSON the writer produces is what Go's encoding/json writes for
/// Longhorn's structs (field order, `,string` quoting, omitempty, null maps).
#[tokio::test]
async fn writer_json_matches_go_layout() {
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path());
    let mut r = req("backup-1", "snap-1");
    r.snapshot_created_at = "2026-10-05T00:40:38Z".into();
    r.labels = Some(
        [("k".to_string(), "v<&>".to_string())]
            .into_iter()
            .collect(),
    );
    store
        .create_backup(&r, blocks_of(&[(1, 5)].into_iter().collect()))
        .await
        .unwrap();
    let sum = backupstore::format::checksum(&block(5, 1));
    let cfg =
        std::fs::read_to_string(dir.path().join(backup_cfg_path("vol-a", "backup-1"))).unwrap();
    let created = store
        .load_backup("vol-a", "backup-1")
        .await
        .unwrap()
        .created_time;
    let newly = store
        .load_backup("vol-a", "backup-1")
        .await
        .unwrap()
        .newly_uploaded_data_size;
    let want = format!(
        concat!(
            r#"{{"Name":"backup-1","VolumeName":"vol-a","SnapshotName":"snap-1","SnapshotCreatedAt":"2026-10-05T00:40:38Z","#,
            r#""CreatedTime":"{created}","Size":"2097152","Labels":{{"k":"v\u003c\u0026\u003e"}},"Parameters":null,"#,
            r#""IsIncremental":false,"CompressionMethod":"lz4","NewlyUploadedDataSize":"{newly}","ReUploadedDataSize":"0","#,
            r#""ProcessingBlocks":{{}},"Blocks":[{{"Offset":2097152,"BlockChecksum":"{sum}"}}],"SingleFile":{{"FilePath":""}}}}"#
        ),
        created = created,
        newly = newly,
        sum = sum
    );
    assert_eq!(cfg, want);
    let vol = std::fs::read_to_string(dir.path().join(volume_cfg_path("vol-a"))).unwrap();
    let vcreated = store.load_volume("vol-a").await.unwrap().created_time;
    let want = format!(
        concat!(
            r#"{{"Name":"vol-a","Size":"16777216","Labels":{{"k":"v\u003c\u0026\u003e"}},"CreatedTime":"{vcreated}","#,
            r#""LastBackupName":"backup-1","LastBackupAt":"2026-10-05T00:40:38Z","BlockCount":"1","#,
            r#""BackingImageName":"\"\"","BackingImageChecksum":"\"\"","CompressionMethod":"\"lz4\"","#,
            r#""StorageClassName":"\"\"","DataEngine":"\"v2\""}}"#
        ),
        vcreated = vcreated
    );
    assert_eq!(vol, want);
}

fn sha512_64(data: &[u8]) -> String {
    let d = sha2::Sha512::digest(data);
    d.iter().take(32).map(|b| format!("{b:02x}")).collect()
}

fn xxh32(input: &[u8], seed: u32) -> u32 {
    const P1: u32 = 2_654_435_761;
    const P2: u32 = 2_246_822_519;
    const P3: u32 = 3_266_489_917;
    const P4: u32 = 668_265_263;
    const P5: u32 = 374_761_393;
    assert!(input.len() < 16);
    let mut h = seed.wrapping_add(P5).wrapping_add(input.len() as u32);
    let mut chunks = input.chunks_exact(4);
    for c in &mut chunks {
        let v = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        h = h
            .wrapping_add(v.wrapping_mul(P3))
            .rotate_left(17)
            .wrapping_mul(P4);
    }
    for &b in chunks.remainder() {
        h = h
            .wrapping_add(u32::from(b).wrapping_mul(P5))
            .rotate_left(11)
            .wrapping_mul(P1);
    }
    h ^= h >> 15;
    h = h.wrapping_mul(P2);
    h ^= h >> 13;
    h = h.wrapping_mul(P3);
    h ^ (h >> 16)
}

/// An LZ4 frame built by hand from the frame format: one uncompressed block.
fn lz4_frame_by_hand(data: &[u8]) -> Vec<u8> {
    let mut f = vec![0x04, 0x22, 0x4d, 0x18];
    let (flg, bd) = (0x60u8, 0x70u8); // version 01, independent blocks; 4 MiB max block
    f.extend([flg, bd, ((xxh32(&[flg, bd], 0) >> 8) & 0xff) as u8]);
    f.extend((0x8000_0000u32 | data.len() as u32).to_le_bytes());
    f.extend_from_slice(data);
    f.extend(0u32.to_le_bytes());
    f
}

/// Writes the files Longhorn would have written for volume `pvc-fixture`,
/// by hand from the Go struct definitions, and restores them.
#[tokio::test]
async fn restores_a_hand_built_longhorn_fixture() {
    for method in ["lz4", "gzip"] {
        let dir = tempfile::tempdir().unwrap();
        let vol = "pvc-0123abcd-test";
        // Volume path: first four hex digits of sha512(name): a7/9b.
        let vdir = dir.path().join("backupstore/volumes/a7/9b").join(vol);
        std::fs::create_dir_all(vdir.join("backups")).unwrap();
        let b0 = common::block(11, 0);
        let b2 = common::block(12, 2);
        let (c0, c2) = (sha512_64(&b0), sha512_64(&b2));
        for (c, data) in [(&c0, &b0), (&c2, &b2)] {
            let d = vdir.join("blocks").join(&c[0..2]).join(&c[2..4]);
            std::fs::create_dir_all(&d).unwrap();
            let packed = if method == "lz4" {
                lz4_frame_by_hand(data)
            } else {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            };
            std::fs::write(d.join(format!("{c}.blk")), packed).unwrap();
        }
        // A v1-engine Longhorn volume.cfg as json.Marshal(Volume) writes it.
        std::fs::write(
            vdir.join("volume.cfg"),
            format!(
                concat!(
                    r#"{{"Name":"{vol}","Size":"8388608","Labels":{{"RecurringJob":"daily"}},"CreatedTime":"2026-10-05T00:40:30Z","#,
                    r#""LastBackupName":"backup-854f6ced7b4942d4","LastBackupAt":"2026-10-05T00:40:38Z","BlockCount":"2","#,
                    r#""BackingImageName":"\"\"","BackingImageChecksum":"\"\"","CompressionMethod":"\"{m}\"","#,
                    r#""StorageClassName":"\"longhorn\"","DataEngine":"\"v1\""}}"#
                ),
                vol = vol,
                m = method
            ),
        )
        .unwrap();
        std::fs::write(
            vdir.join("backups/backup_backup-854f6ced7b4942d4.cfg"),
            format!(
                concat!(
                    r#"{{"Name":"backup-854f6ced7b4942d4","VolumeName":"{vol}","SnapshotName":"snap-1","#,
                    r#""SnapshotCreatedAt":"2026-10-05T00:40:38Z","CreatedTime":"2026-10-05T00:40:43Z","Size":"4194304","#,
                    r#""Labels":{{"RecurringJob":"daily"}},"Parameters":null,"IsIncremental":false,"CompressionMethod":"{m}","#,
                    r#""NewlyUploadedDataSize":"4194400","ReUploadedDataSize":"0","ProcessingBlocks":{{}},"#,
                    r#""Blocks":[{{"Offset":0,"BlockChecksum":"{c0}"}},{{"Offset":4194304,"BlockChecksum":"{c2}"}}],"#,
                    r#""SingleFile":{{"FilePath":""}}}}"#
                ),
                vol = vol,
                m = method,
                c0 = c0,
                c2 = c2
            ),
        )
        .unwrap();
        let store = local_store(dir.path());
        let v = store.load_volume(vol).await.unwrap();
        assert_eq!(
            (
                v.size,
                v.compression_method.as_str(),
                v.storage_class_name.as_str()
            ),
            (8 << 20, method, "longhorn")
        );
        let target = dir.path().join("restored.img");
        let r = store
            .restore_to_file(vol, "backup-854f6ced7b4942d4", &target)
            .await
            .unwrap();
        assert_eq!(r.blocks_written, 2, "{method}");
        let image: Image = [(0, 11), (2, 12)].into_iter().collect();
        assert_file_is(&target, &image, 4);
        // An incremental backup here on top of Longhorn's backup.
        let mut r2 = BackupRequest::new(vol, 8 << 20, "backup-shorthorn-2", "snap-2");
        r2.delta_base_snapshot = Some("snap-1".into());
        let o = store
            .create_backup(&r2, vec![Ok((BS, common::block(13, 1)))])
            .await
            .unwrap();
        assert_eq!(o.blocks_uploaded, 1);
        assert_eq!(
            o.config.compression_method, method,
            "the volume's method is kept"
        );
        let t2 = dir.path().join("restored2.img");
        store
            .restore_to_file(vol, "backup-shorthorn-2", &t2)
            .await
            .unwrap();
        let image2: Image = [(0, 11), (1, 13), (2, 12)].into_iter().collect();
        assert_file_is(&t2, &image2, 4);
    }
}

/// The independent Python reader (backupstore/tests/longhorn_reader.py,
/// written from deltablock.go) restores backups this crate wrote.
#[tokio::test]
async fn independent_reader_restores_our_backups() {
    if Command::new("python3").arg("--version").output().is_err() {
        println!("SKIPPED: python3 not found; the independent reader needs it");
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/longhorn_reader.py");
    for compression in [Compression::Lz4, Compression::Gzip, Compression::None] {
        let dir = tempfile::tempdir().unwrap();
        let store = local_store(dir.path());
        let first: Image = [(0, 1), (3, 2), (6, 3)].into_iter().collect();
        let mut r1 = req("backup-1", "snap-1");
        r1.compression = compression;
        store.create_backup(&r1, blocks_of(&first)).await.unwrap();
        let delta: Image = [(3, 4), (5, 4)].into_iter().collect();
        let mut r2 = req("backup-2", "snap-2");
        r2.delta_base_snapshot = Some("snap-1".into());
        store.create_backup(&r2, blocks_of(&delta)).await.unwrap();
        let mut all = first.clone();
        all.extend(delta.iter());
        for (backup, image) in [("backup-1", &first), ("backup-2", &all)] {
            let out = dir.path().join(format!("{backup}.img"));
            let res = Command::new("python3")
                .args([
                    script,
                    dir.path().to_str().unwrap(),
                    "vol-a",
                    backup,
                    out.to_str().unwrap(),
                ])
                .output()
                .unwrap();
            assert!(
                res.status.success(),
                "reader failed on {backup} ({compression:?}): {}",
                String::from_utf8_lossy(&res.stderr)
            );
            let summary: serde_json::Value = serde_json::from_slice(&res.stdout).unwrap();
            assert_eq!(summary["backup_compression"], compression.as_str());
            assert_eq!(summary["volume_compression"], compression.as_str());
            assert_eq!(summary["data_engine"], "v2");
            assert_eq!(summary["blocks"], image.len());
            assert_file_is(&out, image, NBLOCKS);
        }
    }
}

/// Longhorn's lock rules: a held deletion lock refuses a backup and a
/// restore; backups and restores share a type and run together; an expired
/// lock is ignored.
#[tokio::test]
async fn lock_rules() {
    use backupstore::lock::{acquire, BACKUP_LOCK, DELETION_LOCK};
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path());
    let img: Image = [(0, 1)].into_iter().collect();
    store
        .create_backup(&req("backup-0", "s0"), blocks_of(&img))
        .await
        .unwrap();

    let del = acquire(store.target(), "vol-a", DELETION_LOCK, fast_locks())
        .await
        .unwrap();
    match store
        .create_backup(&req("backup-1", "s1"), blocks_of(&img))
        .await
    {
        Err(Error::Locked { other, .. }) => assert_eq!(other, "delete"),
        other => panic!("backup ran under a deletion lock: {other:?}"),
    }
    assert!(matches!(
        store
            .restore_to_file("vol-a", "backup-0", &dir.path().join("r"))
            .await,
        Err(Error::Locked { .. })
    ));
    del.release().await.unwrap();

    let held = acquire(store.target(), "vol-a", BACKUP_LOCK, fast_locks())
        .await
        .unwrap();
    store
        .restore_to_file("vol-a", "backup-0", &dir.path().join("r"))
        .await
        .unwrap();
    assert!(matches!(
        store.delete_backup("vol-a", "backup-0").await,
        Err(Error::Locked { .. })
    ));
    // A lock whose holder died stops counting once it is older than the lock duration.
    drop(held);
    let short = backupstore::LockOptions {
        duration: std::time::Duration::from_millis(1),
        ..fast_locks()
    };
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    store
        .clone()
        .with_lock_options(short)
        .delete_backup("vol-a", "backup-0")
        .await
        .unwrap();
}

/// A DR volume's step: a file holding backup-1 is brought to backup-2 by
/// writing only the changed blocks and zeroing the ones backup-2 dropped.
#[tokio::test]
async fn incremental_restore_applies_only_the_difference() {
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path());
    let b1: Image = [(0, 1), (1, 1), (2, 1), (4, 1)].into_iter().collect();
    store
        .create_backup(&req("backup-1", "s1"), blocks_of(&b1))
        .await
        .unwrap();
    // backup-2 is a full backup after block 1 was discarded and 2 rewritten.
    let b2: Image = [(0, 1), (2, 2), (4, 1), (6, 2)].into_iter().collect();
    store
        .create_backup(&req("backup-2", "s2"), blocks_of(&b2))
        .await
        .unwrap();
    let f = dir.path().join("dr.img");
    store
        .restore_to_file("vol-a", "backup-1", &f)
        .await
        .unwrap();
    let mut file = std::fs::OpenOptions::new().write(true).open(&f).unwrap();
    let out = store
        .restore_incremental("vol-a", "backup-1", "backup-2", &mut file)
        .await
        .unwrap();
    drop(file);
    // Blocks 2 and 6 fetched, block 1 zeroed; 0 and 4 untouched.
    assert_eq!(out.blocks_written, 3);
    let bytes = std::fs::read(&f).unwrap();
    for i in 0..NBLOCKS {
        let got = &bytes[(i * BS) as usize..((i + 1) * BS) as usize];
        match b2.get(&i) {
            Some(&s) => assert!(got == block(s, i).as_slice(), "block {i} differs"),
            None => assert!(got.iter().all(|&b| b == 0), "block {i} is not zero"),
        }
    }
}
