//! Format, mount, bind and unmount on real loop devices (needs root).

mod common;

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use common::{sparse_file, LoopDevice, MountGuard, MIB};
use shorthorn_node::command::SystemRunner;
use shorthorn_node::format::{format, probe_filesystem, FsType};
use shorthorn_node::mount::{
    bind_mount, is_mounted, mount, mount_source, prepare_target, unmount, TargetKind,
};
use shorthorn_node::NodeError;

fn format_mount_bind_remount(fs_type: FsType, size: u64) {
    let dir = tempfile::tempdir().unwrap();
    {
        let backing = dir.path().join("backing.img");
        sparse_file(&backing, size);
        let dev = LoopDevice::attach(&backing);
        let staging = dir.path().join("staging");
        let target = dir.path().join("pod/volume");
        let staging_guard = MountGuard::new(&staging);
        let target_guard = MountGuard::new(&target);

        assert_eq!(probe_filesystem(&SystemRunner, &dev.path).unwrap(), None);
        format(&SystemRunner, &dev.path, fs_type).unwrap();
        assert_eq!(
            probe_filesystem(&SystemRunner, &dev.path)
                .unwrap()
                .as_deref(),
            Some(fs_type.as_str())
        );

        prepare_target(&staging, TargetKind::Directory).unwrap();
        prepare_target(&target, TargetKind::Directory).unwrap();
        mount(&dev.path, &staging, fs_type.as_str(), &["noatime"]).unwrap();
        assert_eq!(
            mount_source(&staging).unwrap().as_deref(),
            Some(dev.path.to_str().unwrap())
        );
        bind_mount(&staging, &target, false).unwrap();
        assert!(is_mounted(&target).unwrap());

        fs::write(target.join("data.txt"), b"kept across remounts").unwrap();
        nix::unistd::sync();
        assert!(unmount(&target).unwrap());
        assert!(unmount(&staging).unwrap());
        assert!(!is_mounted(&staging).unwrap());
        // Unmounting again is fine.
        assert!(!unmount(&staging).unwrap());

        // A device holding a filesystem is never reformatted.
        for other in [FsType::Ext4, FsType::Xfs] {
            match format(&SystemRunner, &dev.path, other) {
                Err(NodeError::DeviceNotBlank { signature, .. }) => {
                    assert!(signature.contains(fs_type.as_str()), "{signature}")
                }
                r => panic!("format over {fs_type} as {other}: {r:?}"),
            }
        }

        mount(&dev.path, &staging, fs_type.as_str(), &[] as &[&str]).unwrap();
        assert_eq!(
            fs::read_to_string(staging.join("data.txt")).unwrap(),
            "kept across remounts"
        );
        drop(target_guard);
        drop(staging_guard);
    }
    common::assert_nothing_left(dir.path());
}

#[test]
fn ext4_format_mount_bind_and_data_survives() {
    require_root!();
    format_mount_bind_remount(FsType::Ext4, 64 * MIB);
}

#[test]
fn xfs_format_mount_bind_and_data_survives() {
    require_root!();
    format_mount_bind_remount(FsType::Xfs, 320 * MIB);
}

#[test]
fn read_only_bind_refuses_writes() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    {
        let backing = dir.path().join("backing.img");
        sparse_file(&backing, 64 * MIB);
        let dev = LoopDevice::attach(&backing);
        let staging = dir.path().join("staging");
        let ro = dir.path().join("ro");
        let _staging_guard = MountGuard::new(&staging);
        let _ro_guard = MountGuard::new(&ro);
        format(&SystemRunner, &dev.path, FsType::Ext4).unwrap();
        prepare_target(&staging, TargetKind::Directory).unwrap();
        prepare_target(&ro, TargetKind::Directory).unwrap();
        mount(&dev.path, &staging, "ext4", &[] as &[&str]).unwrap();
        bind_mount(&staging, &ro, true).unwrap();

        let err = fs::write(ro.join("nope"), b"x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(nix::libc::EROFS));
        // The staging mount itself stays writable.
        fs::write(staging.join("yes"), b"x").unwrap();
        assert!(ro.join("yes").exists());
    }
    common::assert_nothing_left(dir.path());
}

#[test]
fn block_device_bound_onto_a_file() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    {
        let backing = dir.path().join("backing.img");
        sparse_file(&backing, 16 * MIB);
        let dev = LoopDevice::attach(&backing);
        let target = dir.path().join("pod/block");
        let _guard = MountGuard::new(&target);
        prepare_target(&target, TargetKind::File).unwrap();
        bind_mount(&dev.path, &target, false).unwrap();
        assert!(shorthorn_node::device::is_block_device(&target));

        let pattern: Vec<u8> = (0..8192u32).map(|i| (i * 7 % 251) as u8).collect();
        let offset = 3 * MIB;
        write_at(&target, offset, &pattern);
        assert_eq!(read_at(&dev.path, offset, pattern.len()), pattern);
        // The data really reached the backing file.
        assert_eq!(read_at(&backing, offset, pattern.len()), pattern);
    }
    common::assert_nothing_left(dir.path());
}

#[test]
fn device_with_a_partition_table_is_not_formatted() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    {
        let backing = dir.path().join("backing.img");
        sparse_file(&backing, 16 * MIB);
        // A DOS partition table with one Linux partition at sector 2048.
        let mut entry = vec![0x00, 0x20, 0x21, 0x00, 0x83, 0x8a, 0x08, 0x02];
        entry.extend_from_slice(&2048u32.to_le_bytes());
        entry.extend_from_slice(&30720u32.to_le_bytes());
        write_at(&backing, 446, &entry);
        write_at(&backing, 510, &[0x55, 0xaa]);
        let dev = LoopDevice::attach(&backing);

        assert_eq!(probe_filesystem(&SystemRunner, &dev.path).unwrap(), None);
        match format(&SystemRunner, &dev.path, FsType::Ext4) {
            Err(NodeError::DeviceNotBlank { signature, .. }) => {
                assert_eq!(signature, "a dos partition table")
            }
            r => panic!("formatted a partitioned device: {r:?}"),
        }
        assert_eq!(read_at(&dev.path, 510, 2), [0x55, 0xaa]);
    }
    common::assert_nothing_left(dir.path());
}

fn write_at(path: &Path, offset: u64, data: &[u8]) {
    let mut f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(data).unwrap();
    f.sync_all().unwrap();
}

fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let mut f = fs::File::open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut buf = vec![0; len];
    f.read_exact(&mut buf).unwrap();
    buf
}
