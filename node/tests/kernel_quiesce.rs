//! fsfreeze-based quiesce on a real ext4 mount (needs root).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use common::{sparse_file, LoopDevice, MountGuard, MIB};
use shorthorn_node::command::SystemRunner;
use shorthorn_node::dm::DmLinear;
use shorthorn_node::format::{format, FsType};
use shorthorn_node::mount::{mount, prepare_target, TargetKind};
use shorthorn_node::quiesce::{QuiesceTarget, Quiescer};

/// Long enough that a writer on a thawed filesystem has certainly finished.
const GENEROUS: Duration = Duration::from_secs(60);
/// How long a frozen writer is watched to confirm it is blocked.
const WATCH_BLOCKED: Duration = Duration::from_secs(2);

/// A mounted ext4 filesystem on a loop device.
struct Fixture {
    mnt: PathBuf,
    _mount: MountGuard,
    _dev: LoopDevice,
}

fn fixture(dir: &Path) -> Fixture {
    let backing = dir.join("backing.img");
    sparse_file(&backing, 64 * MIB);
    let dev = LoopDevice::attach(&backing);
    let mnt = dir.join("mnt");
    let guard = MountGuard::new(&mnt);
    format(&SystemRunner, &dev.path, FsType::Ext4).unwrap();
    prepare_target(&mnt, TargetKind::Directory).unwrap();
    mount(&dev.path, &mnt, "ext4", &[] as &[&str]).unwrap();
    Fixture {
        mnt,
        _mount: guard,
        _dev: dev,
    }
}

/// Starts a thread that writes and fsyncs a file, reporting when done.
fn writer(path: PathBuf) -> Done {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let res = (|| {
            let mut f = std::fs::File::create(&path)?;
            f.write_all(&[0x5a; 64 * 1024])?;
            f.sync_all()
        })();
        let _ = tx.send(res);
    });
    rx
}

fn quiescer() -> Quiescer {
    Quiescer::new(DmLinear::new(Arc::new(SystemRunner)))
}

type Done = Receiver<std::io::Result<()>>;

/// Waits (off the runtime threads) up to `wait` for the writer's result.
async fn recv(rx: Done, wait: Duration) -> (Result<std::io::Result<()>, RecvTimeoutError>, Done) {
    tokio::task::spawn_blocking(move || (rx.recv_timeout(wait), rx))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_writer_blocks_until_resume() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    {
        let fx = fixture(dir.path());
        let q = quiescer();
        let target = QuiesceTarget::Filesystem(fx.mnt.clone());
        let info = q.suspend("vol-a", target.clone(), GENEROUS).await.unwrap();
        assert!(!info.already_held);
        // Suspending again keeps the single hold.
        assert!(
            q.suspend("vol-a", target, GENEROUS)
                .await
                .unwrap()
                .already_held
        );

        let done = writer(fx.mnt.join("during-freeze"));
        let (first, done) = recv(done, WATCH_BLOCKED).await;
        assert!(
            matches!(first, Err(RecvTimeoutError::Timeout)),
            "write+fsync finished on a frozen filesystem: {first:?}"
        );

        let report = q.resume("vol-a").await.unwrap();
        assert!(report.was_held);
        let (second, _) = recv(done, GENEROUS).await;
        assert!(
            matches!(second, Ok(Ok(()))),
            "writer did not finish after resume: {second:?}"
        );
        assert!(!q.resume("vol-a").await.unwrap().was_held);
        assert_eq!(q.recent_holds().len(), 1);
    }
    common::assert_nothing_left(dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_expiry_thaws_by_itself() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    {
        let fx = fixture(dir.path());
        let q = quiescer();
        q.suspend(
            "vol-b",
            QuiesceTarget::Filesystem(fx.mnt.clone()),
            Duration::from_secs(1),
        )
        .await
        .unwrap();
        let done = writer(fx.mnt.join("after-expiry"));
        // No resume: the lease must thaw the filesystem.
        let (res, _) = recv(done, GENEROUS).await;
        assert!(matches!(res, Ok(Ok(()))), "writer stuck: {res:?}");
        assert!(!q.is_suspended("vol-b").await);
        let recent = q.recent_holds();
        assert_eq!(recent.len(), 1);
        assert!(recent[0].expired);
        assert_eq!(recent[0].volume_id, "vol-b");
    }
    common::assert_nothing_left(dir.path());
}

#[tokio::test]
async fn unmounted_path_is_not_frozen() {
    let dir = tempfile::tempdir().unwrap();
    let q = quiescer();
    let err = q
        .suspend(
            "vol-c",
            QuiesceTarget::Filesystem(dir.path().to_owned()),
            GENEROUS,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, shorthorn_node::NodeError::NotMounted { .. }));
    assert!(!q.is_suspended("vol-c").await);
}
