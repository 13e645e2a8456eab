//! ublk disks: a kernel block device (loop over a FUSE-served bdev file)
//! that carries a real filesystem, and leaves nothing behind on stop or crash.

mod net_common;

use std::path::Path;
use std::process::Command;

use net_common::*;
use serde_json::json;

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn blocking(f: impl FnOnce() + Send + 'static) {
    tokio::task::spawn_blocking(f).await.expect("blocking task");
}

/// Unmounts on drop so a failing test leaves no mount behind.
struct MountGuard(std::path::PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ext4_on_a_ublk_disk_survives_stop_and_start() {
    let s = TestSim::new();
    s.malloc("m", 64).await;
    let e = s
        .call("ublk_start_disk", json!({"bdev_name": "m", "ublk_id": 1}))
        .await
        .unwrap_err();
    assert_eq!((e.code, e.message.as_str()), (-19, "No such device"));
    s.ok("ublk_create_target", json!({})).await;
    let e = s.call("ublk_create_target", json!({})).await.unwrap_err();
    assert_eq!(e.code, -32603);
    assert_eq!(
        s.ok("ublk_start_disk", json!({"bdev_name": "m", "ublk_id": 1}))
            .await,
        json!(1)
    );
    let disks = s.ok("ublk_get_disks", json!(null)).await;
    assert_eq!(disks[0]["id"], 1);
    assert_eq!(disks[0]["bdev_name"], "m");
    let dev = disks[0]["ublk_device"].as_str().unwrap().to_string();
    assert!(dev.starts_with("/dev/loop"), "{dev}");
    assert!(loop_attached(&dev));

    let mnt = s.dir.path().join("fs");
    std::fs::create_dir_all(&mnt).unwrap();
    {
        let (dev, mnt) = (dev.clone(), mnt.clone());
        blocking(move || {
            run("mkfs.ext4", &["-q", "-F", &dev]);
            run("mount", &[&dev, mnt.to_str().unwrap()]);
            let _g = MountGuard(mnt.clone());
            std::fs::write(mnt.join("hello.txt"), b"data through the sim").unwrap();
            run("umount", &[mnt.to_str().unwrap()]);
        })
        .await;
    }
    s.ok("ublk_stop_disk", json!({"ublk_id": 1})).await;
    assert!(
        !loop_attached(&dev),
        "loop device still attached after stop"
    );
    assert!(
        !mounted_under(&s.sim.config.data_dir),
        "FUSE mount left after stop"
    );
    assert_eq!(s.ok("ublk_get_disks", json!(null)).await, json!([]));
    let e = s
        .call("ublk_stop_disk", json!({"ublk_id": 1}))
        .await
        .unwrap_err();
    assert_eq!(e.code, -19);

    s.ok("ublk_start_disk", json!({"bdev_name": "m", "ublk_id": 2}))
        .await;
    let dev2 = s.ok("ublk_get_disks", json!({"ublk_id": 2})).await[0]["ublk_device"]
        .as_str()
        .unwrap()
        .to_string();
    {
        let (dev2, mnt) = (dev2.clone(), mnt.clone());
        blocking(move || {
            run("mount", &[&dev2, mnt.to_str().unwrap()]);
            let _g = MountGuard(mnt.clone());
            let got = std::fs::read(mnt.join("hello.txt")).unwrap();
            assert_eq!(got, b"data through the sim");
        })
        .await;
    }
    s.ok("ublk_destroy_target", json!(null)).await;
    assert!(!loop_attached(&dev2));
    assert!(!mounted_under(&s.sim.config.data_dir));
}

#[test]
fn a_restarted_sim_removes_what_a_killed_one_left() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = SimProc::start(dir.path(), "u");
    p.ok(
        "bdev_malloc_create",
        json!({"name": "m", "num_blocks": 4096, "block_size": 4096}),
    );
    p.ok("ublk_create_target", json!({}));
    p.ok("ublk_start_disk", json!({"bdev_name": "m", "ublk_id": 7}));
    let dev = p.ok("ublk_get_disks", json!(null))[0]["ublk_device"]
        .as_str()
        .unwrap()
        .to_string();
    let data = p.data.clone();
    assert!(loop_attached(&dev));
    assert!(mounted_under(&data));
    p.kill();
    // The kill leaves the loop device and the (dead) FUSE mount behind...
    assert!(mounted_under(&data));
    // ...until the next start cleans them up.
    let p2 = SimProc::start(dir.path(), "u");
    assert!(!loop_attached(&dev), "stale loop device survived a restart");
    assert!(!mounted_under(&data), "stale FUSE mount survived a restart");
    assert!(!Path::new(&data.join("ublk/7")).exists());
    drop(p2);
}
