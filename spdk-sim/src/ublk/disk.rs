//! One started disk: the FUSE mount serving the bdev as a file, the loop
//! device over that file, and the on-disk record that lets a restarted sim
//! tear both down after a crash.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::fuse_fs::{BdevFs, DISK_FILE};
use super::loopdev;
use crate::bdev::Bdev;

/// Name of the record file inside a disk's directory.
const RECORD: &str = "record.json";

/// What was set up for one disk, as written under the data dir.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Record {
    /// FUSE mount point.
    pub mount: PathBuf,
    /// Loop device path, once attached.
    pub loop_dev: Option<PathBuf>,
}

/// A running disk.
pub struct Disk {
    /// ublk id.
    pub id: u32,
    /// Name the bdev was given by.
    pub bdev_name: String,
    /// Queues requested.
    pub num_queues: u32,
    /// Queue depth requested.
    pub queue_depth: u32,
    /// The kernel block device (a loop device).
    pub loop_dev: PathBuf,
    dir: PathBuf,
    mount: PathBuf,
    session: Option<fuser::BackgroundSession>,
}

/// Directory of disk `id` under `data_dir`.
pub fn disk_dir(data_dir: &Path, id: u32) -> PathBuf {
    data_dir.join("ublk").join(id.to_string())
}

fn write_record(dir: &Path, rec: &Record) -> std::io::Result<()> {
    let tmp = dir.join(format!("{RECORD}.tmp"));
    std::fs::write(
        &tmp,
        serde_json::to_vec(rec).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(tmp, dir.join(RECORD))
}

/// Reads a disk directory's record.
pub fn read_record(dir: &Path) -> Option<Record> {
    serde_json::from_slice(&std::fs::read(dir.join(RECORD)).ok()?).ok()
}

impl Disk {
    /// Mounts the bdev through FUSE and attaches a loop device to it. Blocking.
    pub fn start(
        data_dir: &Path,
        id: u32,
        bdev_name: String,
        bdev: Arc<dyn Bdev>,
        num_queues: u32,
        queue_depth: u32,
        rt: tokio::runtime::Handle,
    ) -> std::io::Result<Disk> {
        let dir = disk_dir(data_dir, id);
        let mount = dir.join("mnt");
        std::fs::create_dir_all(&mount)?;
        let block_size = bdev.block_size();
        let mut config = fuser::Config::default();
        config.mount_options = vec![
            fuser::MountOption::FSName(format!("spdk-sim-ublk{id}")),
            fuser::MountOption::RW,
        ];
        let session = fuser::spawn_mount(BdevFs::new(bdev, rt), &mount, &config)?;
        let mut disk = Disk {
            id,
            bdev_name,
            num_queues,
            queue_depth,
            loop_dev: PathBuf::new(),
            dir: dir.clone(),
            mount: mount.clone(),
            session: Some(session),
        };
        let mut rec = Record {
            mount: mount.clone(),
            loop_dev: None,
        };
        if let Err(e) = write_record(&dir, &rec) {
            disk.teardown();
            return Err(e);
        }
        match loopdev::attach(&mount.join(DISK_FILE), block_size) {
            Ok(dev) => {
                rec.loop_dev = Some(dev.clone());
                disk.loop_dev = dev;
                if let Err(e) = write_record(&dir, &rec) {
                    disk.teardown();
                    return Err(e);
                }
                tracing::info!(id, dev = %disk.loop_dev.display(), "ublk disk started");
                Ok(disk)
            }
            Err(e) => {
                disk.teardown();
                Err(e)
            }
        }
    }

    /// Flushes and detaches the loop device, unmounts and removes the record. Blocking.
    pub fn stop(mut self) {
        self.teardown();
        tracing::info!(id = self.id, "ublk disk stopped");
    }

    fn teardown(&mut self) {
        if !self.loop_dev.as_os_str().is_empty() {
            if let Err(e) = loopdev::detach(&self.loop_dev) {
                tracing::warn!(dev = %self.loop_dev.display(), error = %e, "loop detach failed");
            }
        }
        unmount(&self.mount);
        if let Some(session) = self.session.take() {
            let _ = session.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Unmounts, waiting briefly for a just-detached loop device to let go, then lazily.
pub fn unmount(mount: &Path) {
    use nix::mount::{umount2, MntFlags};
    for _ in 0..50 {
        match umount2(mount, MntFlags::empty()) {
            Ok(()) => return,
            Err(nix::errno::Errno::EBUSY) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => break,
        }
    }
    let _ = umount2(mount, MntFlags::MNT_DETACH);
}
