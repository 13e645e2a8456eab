//! The CSI Node service on the real kernel: loop devices over sparse files
//! stand in for volumes, handed over through a ublk-style publish_context.
//! Every test leaves nothing mounted or attached (see `csi_support`).

mod csi_support;

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::Instant;

use csi_proto::volume_capability::access_mode::Mode;
use csi_proto::*;
use csi_support::*;
use tonic::Code;

const MIB: u64 = 1024 * 1024;

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("shorthorn_node=info")
        .try_init();
}

fn code<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Code {
    match r {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

/// Stage, publish, write, tear down, stage again: the data is still there.
async fn filesystem_round_trip(fs: &str, size: u64) {
    init_logs();
    let mut fx = Fixture::new();
    let vol = fx.volume(size);
    let (staging, target) = (fx.path("staging"), fx.path("pods/p1/mount"));
    let node = Node::start(fx.dir.path()).await;
    let mut c = node.client.clone();
    let cap = mount_cap(fs, Mode::SingleNodeWriter);

    for round in 0..2 {
        let t = Instant::now();
        c.node_stage_volume(stage_req("vol-1", &vol, &staging, cap.clone()))
            .await
            .unwrap();
        println!(
            "{fs} stage round {round}: {:?} (attach/format/mount split in the log)",
            t.elapsed()
        );
        // Idempotent: staging the same way again is OK and mounts nothing more.
        c.node_stage_volume(stage_req("vol-1", &vol, &staging, cap.clone()))
            .await
            .unwrap();
        assert_eq!(mounts_at(&staging), 1);
        c.node_publish_volume(publish_req("vol-1", &staging, &target, cap.clone(), false))
            .await
            .unwrap();
        c.node_publish_volume(publish_req("vol-1", &staging, &target, cap.clone(), false))
            .await
            .unwrap();
        assert_eq!(mounts_at(&target), 1);
        let file = target.join("hello.txt");
        if round == 0 {
            std::fs::write(&file, b"survives restaging").unwrap();
        } else {
            assert_eq!(std::fs::read(&file).unwrap(), b"survives restaging");
        }
        c.node_unpublish_volume(unpublish_req("vol-1", &target))
            .await
            .unwrap();
        c.node_unpublish_volume(unpublish_req("vol-1", &target))
            .await
            .unwrap();
        assert!(!target.exists(), "target path removed");
        c.node_unstage_volume(unstage_req("vol-1", &staging))
            .await
            .unwrap();
        c.node_unstage_volume(unstage_req("vol-1", &staging))
            .await
            .unwrap();
        assert_eq!(mounts_at(&staging), 0);
    }
    let out = std::process::Command::new("blkid")
        .arg("-o")
        .arg("value")
        .arg("-s")
        .arg("TYPE")
        .arg(&vol.device)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), fs);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ext4_volume_keeps_its_data_across_unstage_and_stage() {
    filesystem_round_trip("ext4", 64 * MIB).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xfs_volume_keeps_its_data_across_unstage_and_stage() {
    filesystem_round_trip("xfs", 320 * MIB).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_volume_reads_back_what_was_written_through_the_published_file() {
    let mut fx = Fixture::new();
    let vol = fx.volume(16 * MIB);
    let (staging, target) = (fx.path("staging-b"), fx.path("pods/p2/dev"));
    let node = Node::start(fx.dir.path()).await;
    let mut c = node.client.clone();
    let cap = block_cap(Mode::SingleNodeWriter);
    let stage = stage_req("vol-b", &vol, &staging, cap.clone());
    c.node_stage_volume(stage.clone()).await.unwrap();
    c.node_stage_volume(stage).await.unwrap();
    c.node_publish_volume(publish_req("vol-b", &staging, &target, cap.clone(), false))
        .await
        .unwrap();
    c.node_publish_volume(publish_req("vol-b", &staging, &target, cap.clone(), false))
        .await
        .unwrap();

    let pattern: Vec<u8> = (0..1024 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&target)
            .unwrap();
        f.seek(SeekFrom::Start(3 * MIB)).unwrap();
        f.write_all(&pattern).unwrap();
        f.sync_all().unwrap();
    }
    let mut back = vec![0u8; pattern.len()];
    let mut dev = std::fs::File::open(&vol.device).unwrap();
    dev.seek(SeekFrom::Start(3 * MIB)).unwrap();
    dev.read_exact(&mut back).unwrap();
    assert!(back == pattern, "pattern read back from the device differs");

    let stats = c
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: "vol-b".into(),
            volume_path: target.display().to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.usage.len(), 1);
    assert_eq!(stats.usage[0].total, (16 * MIB) as i64);
    assert!(!stats.volume_condition.unwrap().abnormal);

    c.node_unpublish_volume(unpublish_req("vol-b", &target))
        .await
        .unwrap();
    assert!(!target.exists());
    c.node_unstage_volume(unstage_req("vol-b", &staging))
        .await
        .unwrap();
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_publish_refuses_writes_and_incompatible_republish_is_already_exists() {
    let mut fx = Fixture::new();
    let vol = fx.volume(64 * MIB);
    let req = stage_req(
        "vol-ro",
        &vol,
        &fx.path("st"),
        mount_cap("ext4", Mode::SingleNodeWriter),
    );
    let (staging, target) = (fx.path("st"), fx.path("pods/p3/mount"));
    let node = Node::start(fx.dir.path()).await;
    let mut c = node.client.clone();
    let cap = mount_cap("ext4", Mode::SingleNodeWriter);
    c.node_stage_volume(req).await.unwrap();
    c.node_publish_volume(publish_req("vol-ro", &staging, &target, cap.clone(), true))
        .await
        .unwrap();
    let err = std::fs::write(target.join("x"), b"no").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(nix::libc::EROFS));
    let status = c
        .node_publish_volume(publish_req("vol-ro", &staging, &target, cap.clone(), false))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists, "{status}");
    c.node_unpublish_volume(unpublish_req("vol-ro", &target))
        .await
        .unwrap();
    c.node_unstage_volume(unstage_req("vol-ro", &staging))
        .await
        .unwrap();
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_report_filesystem_usage_and_expand_grows_the_filesystem() {
    // xfs: ext4 online resize needs CAP_SYS_RESOURCE, which CI containers may lack.
    stats_and_expand().await;
}

async fn stats_and_expand() {
    let mut fx = Fixture::new();
    let vol = fx.volume(320 * MIB);
    let req = stage_req(
        "vol-x",
        &vol,
        &fx.path("st"),
        mount_cap("xfs", Mode::SingleNodeWriter),
    );
    let (staging, target) = (fx.path("st"), fx.path("pods/p4/mount"));
    let node = Node::start(fx.dir.path()).await;
    let mut c = node.client.clone();
    let cap = mount_cap("xfs", Mode::SingleNodeWriter);
    c.node_stage_volume(req).await.unwrap();
    c.node_publish_volume(publish_req("vol-x", &staging, &target, cap.clone(), false))
        .await
        .unwrap();
    std::fs::write(target.join("blob"), vec![1u8; 8 * MIB as usize]).unwrap();
    nix::unistd::sync();

    let stats_req = NodeGetVolumeStatsRequest {
        volume_id: "vol-x".into(),
        volume_path: target.display().to_string(),
        ..Default::default()
    };
    let stats = c
        .node_get_volume_stats(stats_req.clone())
        .await
        .unwrap()
        .into_inner();
    let bytes = stats
        .usage
        .iter()
        .find(|u| u.unit == volume_usage::Unit::Bytes as i32)
        .unwrap();
    let inodes = stats
        .usage
        .iter()
        .find(|u| u.unit == volume_usage::Unit::Inodes as i32)
        .unwrap();
    assert!(
        bytes.total > 200 * MIB as i64 && bytes.total <= 320 * MIB as i64,
        "{bytes:?}"
    );
    assert!(bytes.used >= 8 * MIB as i64, "{bytes:?}");
    assert!(bytes.available < bytes.total - 8 * MIB as i64, "{bytes:?}");
    assert!(inodes.total > 0 && inodes.used > 0, "{inodes:?}");

    vol.grow(480 * MIB);
    let expand = NodeExpandVolumeRequest {
        volume_id: "vol-x".into(),
        volume_path: target.display().to_string(),
        staging_target_path: staging.display().to_string(),
        volume_capability: Some(cap.clone()),
        ..Default::default()
    };
    let resp = c
        .node_expand_volume(expand.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.capacity_bytes, (480 * MIB) as i64);
    c.node_expand_volume(expand).await.unwrap();
    let after = c
        .node_get_volume_stats(stats_req)
        .await
        .unwrap()
        .into_inner();
    let grown = after
        .usage
        .iter()
        .find(|u| u.unit == volume_usage::Unit::Bytes as i32)
        .unwrap();
    assert!(
        grown.total > 380 * MIB as i64,
        "filesystem did not grow: {grown:?}"
    );

    // A path that is not this volume's is NOT_FOUND.
    let missing = c
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: "vol-x".into(),
            volume_path: fx.path("elsewhere").display().to_string(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    c.node_unpublish_volume(unpublish_req("vol-x", &target))
        .await
        .unwrap();
    c.node_unstage_volume(unstage_req("vol-x", &staging))
        .await
        .unwrap();
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_service_finds_its_staged_volume_and_does_not_mount_twice() {
    let mut fx = Fixture::new();
    let vol = fx.volume(64 * MIB);
    let req = stage_req(
        "vol-r",
        &vol,
        &fx.path("st"),
        mount_cap("", Mode::SingleNodeWriter),
    );
    let staging = fx.path("st");
    let node = Node::start(fx.dir.path()).await;
    node.client
        .clone()
        .node_stage_volume(req.clone())
        .await
        .unwrap();
    node.stop().await;

    let node = Node::start(fx.dir.path()).await;
    let mut c = node.client.clone();
    c.node_stage_volume(req).await.unwrap();
    assert_eq!(mounts_at(&staging), 1);
    // A different capability for the same staged volume is refused.
    let mut other = stage_req("vol-r", &vol, &staging, block_cap(Mode::SingleNodeWriter));
    other.volume_id = "vol-r".into();
    let status = c.node_stage_volume(other).await.unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    c.node_unstage_volume(unstage_req("vol-r", &staging))
        .await
        .unwrap();
    assert_eq!(mounts_at(&staging), 0);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_the_codes_the_spec_names() {
    let fx = Fixture::new();
    let node = Node::start(fx.dir.path()).await;
    let mut c = node.client.clone();
    let cap = mount_cap("ext4", Mode::SingleNodeWriter);
    let staging = fx.path("st");
    let target = fx.path("t");
    let ok_stage = NodeStageVolumeRequest {
        volume_id: "v".into(),
        staging_target_path: staging.display().to_string(),
        volume_capability: Some(cap.clone()),
        ..Default::default()
    };

    let mut r = ok_stage.clone();
    r.volume_id.clear();
    assert_eq!(code(c.node_stage_volume(r).await), Code::InvalidArgument);
    let mut r = ok_stage.clone();
    r.staging_target_path.clear();
    assert_eq!(code(c.node_stage_volume(r).await), Code::InvalidArgument);
    let mut r = ok_stage.clone();
    r.volume_capability = None;
    assert_eq!(code(c.node_stage_volume(r).await), Code::InvalidArgument);
    // No publish_context: the node cannot find the volume.
    assert_eq!(
        code(c.node_stage_volume(ok_stage.clone()).await),
        Code::NotFound
    );
    // A ublk device that never shows up.
    let mut r = ok_stage.clone();
    r.publish_context = [
        ("frontend", "ublk"),
        ("ublk.device", "/dev/ublkb999"),
        ("ublk.id", "999"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(code(c.node_stage_volume(r).await), Code::NotFound);
    let mut r = ok_stage.clone();
    r.publish_context = [("frontend", "iscsi")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert_eq!(code(c.node_stage_volume(r).await), Code::InvalidArgument);

    assert_eq!(
        code(c.node_unstage_volume(unstage_req("", &staging)).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(
            c.node_unstage_volume(NodeUnstageVolumeRequest {
                volume_id: "v".into(),
                ..Default::default()
            })
            .await
        ),
        Code::InvalidArgument
    );
    assert_eq!(
        code(
            c.node_unstage_volume(unstage_req("never-staged", &staging))
                .await
        ),
        Code::Ok
    );

    let p = publish_req("v", &staging, &target, cap.clone(), false);
    assert_eq!(
        code(c.node_publish_volume(p.clone()).await),
        Code::NotFound,
        "unstaged volume"
    );
    let mut r = p.clone();
    r.volume_id.clear();
    assert_eq!(code(c.node_publish_volume(r).await), Code::InvalidArgument);
    let mut r = p.clone();
    r.target_path.clear();
    assert_eq!(code(c.node_publish_volume(r).await), Code::InvalidArgument);
    let mut r = p.clone();
    r.volume_capability = None;
    assert_eq!(code(c.node_publish_volume(r).await), Code::InvalidArgument);
    let mut r = p.clone();
    r.staging_target_path.clear();
    assert_eq!(
        code(c.node_publish_volume(r).await),
        Code::FailedPrecondition
    );

    assert_eq!(
        code(c.node_unpublish_volume(unpublish_req("", &target)).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(
            c.node_unpublish_volume(NodeUnpublishVolumeRequest {
                volume_id: "v".into(),
                ..Default::default()
            })
            .await
        ),
        Code::InvalidArgument
    );
    assert_eq!(
        code(c.node_unpublish_volume(unpublish_req("v", &target)).await),
        Code::Ok
    );

    let stats = NodeGetVolumeStatsRequest {
        volume_id: "v".into(),
        volume_path: target.display().to_string(),
        ..Default::default()
    };
    assert_eq!(
        code(c.node_get_volume_stats(stats.clone()).await),
        Code::NotFound
    );
    let mut r = stats.clone();
    r.volume_path.clear();
    assert_eq!(
        code(c.node_get_volume_stats(r).await),
        Code::InvalidArgument
    );
    let expand = NodeExpandVolumeRequest {
        volume_id: "v".into(),
        volume_path: target.display().to_string(),
        ..Default::default()
    };
    assert_eq!(code(c.node_expand_volume(expand).await), Code::NotFound);

    let info = c
        .node_get_info(NodeGetInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.node_id, "node-a");
    assert_eq!(info.max_volumes_per_node, 64);
    assert_eq!(
        info.accessible_topology.unwrap().segments["topology.shorthorn.io/node"],
        "node-a"
    );
    let caps = c
        .node_get_capabilities(NodeGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    let types: Vec<i32> = caps
        .capabilities
        .iter()
        .filter_map(|c| {
            c.r#type
                .map(|node_service_capability::Type::Rpc(r)| r.r#type)
        })
        .collect();
    use node_service_capability::rpc::Type as T;
    for t in [
        T::StageUnstageVolume,
        T::GetVolumeStats,
        T::VolumeCondition,
        T::ExpandVolume,
    ] {
        assert!(types.contains(&(t as i32)), "{t:?} missing");
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_outside_the_kubelet_dir_is_unmounted_or_removed() {
    let fx = Fixture::new();
    let node = Node::start(fx.dir.path()).await;
    let mut c = node.client.clone();
    // A mounted directory holding a file, outside the node's kubelet dir.
    let outside = tempfile::tempdir().unwrap();
    let mnt = outside.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &mnt,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let _unmount = Unmount(mnt.clone());
    std::fs::write(mnt.join("precious"), b"keep").unwrap();

    for status in [
        c.node_unpublish_volume(unpublish_req("unknown", &mnt))
            .await,
        c.node_unpublish_volume(unpublish_req(
            "unknown",
            &PathBuf::from(format!(
                "{}/pods/../../../..{}",
                fx.dir.path().display(),
                mnt.display()
            )),
        ))
        .await,
    ] {
        let e = status.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains("kubelet directory"), "{}", e.message());
    }
    let e = c
        .node_unstage_volume(unstage_req("unknown", &mnt))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

    // A target inside the kubelet dir that is a symlink to the mount, and
    // one under a symlinked parent: the symlink goes, nothing behind it.
    std::os::unix::fs::symlink(&mnt, fx.path("link")).unwrap();
    std::os::unix::fs::symlink(outside.path(), fx.path("parent-link")).unwrap();
    let e = c
        .node_unpublish_volume(unpublish_req("unknown", &fx.path("parent-link/mnt")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    c.node_unpublish_volume(unpublish_req("unknown", &fx.path("link")))
        .await
        .unwrap();
    assert!(
        std::fs::symlink_metadata(fx.path("link")).is_err(),
        "the symlink itself is removed"
    );
    assert_eq!(mounts_at(&mnt), 1, "the mount behind the symlink stays");
    assert_eq!(std::fs::read(mnt.join("precious")).unwrap(), b"keep");

    // A publish_context naming a device that is not a ublk device.
    let mut r = NodeStageVolumeRequest {
        volume_id: "v".into(),
        staging_target_path: fx.path("st").display().to_string(),
        volume_capability: Some(mount_cap("ext4", Mode::SingleNodeWriter)),
        ..Default::default()
    };
    r.publish_context = [
        ("frontend", "ublk"),
        ("ublk.device", "/dev/sda"),
        ("ublk.id", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let e = c.node_stage_volume(r).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("/dev/ublkb0"), "{}", e.message());
    node.stop().await;
}
