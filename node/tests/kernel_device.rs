//! Online expansion, volume stats and the ublk frontend on real loop
//! devices (needs root).

mod common;

use std::fs::OpenOptions;
use std::time::Duration;

use common::{sparse_file, LoopDevice, MountGuard, MIB};
use shorthorn_node::command::SystemRunner;
use shorthorn_node::device::block_device_size;
use shorthorn_node::format::{format, FsType};
use shorthorn_node::frontend::ublk::UblkFrontend;
use shorthorn_node::frontend::{AttachSpec, Frontend, FrontendKind, UblkTarget};
use shorthorn_node::mount::{mount, prepare_target, TargetKind};
use shorthorn_node::resize::resize_filesystem;
use shorthorn_node::stats::{volume_stats, VolumeStats};
use shorthorn_node::NodeError;

fn fs_stats(path: &std::path::Path) -> shorthorn_node::stats::FilesystemStats {
    match volume_stats(path).unwrap() {
        VolumeStats::Filesystem(s) => s,
        other => panic!("expected filesystem stats, got {other:?}"),
    }
}

fn grow_online(fs: FsType, from: u64, to: u64) {
    let dir = tempfile::tempdir().unwrap();
    {
        let backing = dir.path().join("backing.img");
        sparse_file(&backing, from);
        let dev = LoopDevice::attach(&backing);
        let mnt = dir.path().join("mnt");
        let _guard = MountGuard::new(&mnt);
        format(&SystemRunner, &dev.path, fs).unwrap();
        prepare_target(&mnt, TargetKind::Directory).unwrap();
        mount(&dev.path, &mnt, fs.as_str(), &[] as &[&str]).unwrap();
        let before = fs_stats(&mnt);
        assert_eq!(block_device_size(&dev.path).unwrap(), from);

        OpenOptions::new()
            .write(true)
            .open(&backing)
            .unwrap()
            .set_len(to)
            .unwrap();
        dev.refresh_capacity();
        assert_eq!(block_device_size(&dev.path).unwrap(), to);
        resize_filesystem(&SystemRunner, &dev.path, &mnt, fs).unwrap();

        let after = fs_stats(&mnt);
        assert!(
            after.bytes_total > before.bytes_total + (to - from) / 2,
            "{fs} did not grow: {before:?} -> {after:?}"
        );
        assert!(after.bytes_total <= to);
    }
    common::assert_nothing_left(dir.path());
}

#[test]
fn ext4_grows_online() {
    require_root!();
    if !common::has_cap_sys_resource() {
        eprintln!("skipping: ext4 online resize needs CAP_SYS_RESOURCE, which this process lacks");
        return;
    }
    grow_online(FsType::Ext4, 64 * MIB, 160 * MIB);
}

#[test]
fn xfs_grows_online() {
    require_root!();
    grow_online(FsType::Xfs, 320 * MIB, 480 * MIB);
}

#[test]
fn stats_of_a_mounted_filesystem_track_usage() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    {
        let backing = dir.path().join("backing.img");
        sparse_file(&backing, 64 * MIB);
        let dev = LoopDevice::attach(&backing);
        let mnt = dir.path().join("mnt");
        let _guard = MountGuard::new(&mnt);
        format(&SystemRunner, &dev.path, FsType::Ext4).unwrap();
        prepare_target(&mnt, TargetKind::Directory).unwrap();
        mount(&dev.path, &mnt, "ext4", &[] as &[&str]).unwrap();

        let before = fs_stats(&mnt);
        assert!(before.bytes_total > 0 && before.bytes_total <= 64 * MIB);
        assert!(before.bytes_available <= before.bytes_total - before.bytes_used);
        assert_eq!(before.inodes_used + before.inodes_free, before.inodes_total);

        for i in 0..10 {
            std::fs::write(mnt.join(format!("f{i}")), vec![1u8; MIB as usize]).unwrap();
        }
        nix::unistd::sync();
        let after = fs_stats(&mnt);
        assert!(after.bytes_used >= before.bytes_used + 10 * MIB);
        assert!(after.inodes_used >= before.inodes_used + 10);
    }
    common::assert_nothing_left(dir.path());
}

#[test]
fn stats_of_a_block_device_is_its_size() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    {
        let backing = dir.path().join("backing.img");
        sparse_file(&backing, 24 * MIB);
        let dev = LoopDevice::attach(&backing);
        assert_eq!(
            volume_stats(&dev.path).unwrap(),
            VolumeStats::Block {
                bytes_total: 24 * MIB
            }
        );
    }
    common::assert_nothing_left(dir.path());
}

#[tokio::test]
async fn ublk_frontend_uses_the_reported_device() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    {
        let backing = dir.path().join("backing.img");
        sparse_file(&backing, 32 * MIB);
        let dev = LoopDevice::attach(&backing);
        let frontend = UblkFrontend::new(Duration::from_secs(5), Duration::from_millis(20));
        let spec = AttachSpec::Ublk(UblkTarget {
            device: dev.path.clone(),
            id: 7,
        });
        let attached = frontend.attach(&spec).await.unwrap();
        assert_eq!(attached.kind, FrontendKind::Ublk);
        assert_eq!(attached.path, dev.path);
        assert_eq!(attached.size_bytes, 32 * MIB);
        assert_eq!(
            frontend.find_existing(&spec).await.unwrap(),
            Some(attached.clone())
        );

        OpenOptions::new()
            .write(true)
            .open(&backing)
            .unwrap()
            .set_len(48 * MIB)
            .unwrap();
        dev.refresh_capacity();
        assert_eq!(frontend.rescan(&attached).await.unwrap(), 48 * MIB);
        frontend.detach(&spec).await.unwrap();
    }
    common::assert_nothing_left(dir.path());
}

#[tokio::test]
async fn ublk_frontend_rejects_a_non_block_path() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let frontend = UblkFrontend::new(Duration::from_millis(100), Duration::from_millis(20));
    let spec = AttachSpec::Ublk(UblkTarget {
        device: file.path().to_owned(),
        id: 1,
    });
    assert_eq!(frontend.find_existing(&spec).await.unwrap(), None);
    assert!(matches!(
        frontend.attach(&spec).await,
        Err(NodeError::DeviceTimeout { .. })
    ));
}
