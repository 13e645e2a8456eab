//! Real-kernel tests of the node's NVMe/TCP and device-mapper paths.
//!
//! They run only inside the throwaway QEMU guest that `vmtest/run.sh` boots
//! (a kernel with nvme-tcp, nvmet and device-mapper, as root, nothing else
//! running), so they are `#[ignore]`d and refuse to start elsewhere: they
//! create nvmet subsystems through configfs and device-mapper devices.
//!
//! Every volume is a file-backed namespace of a guest-local kernel NVMe/TCP
//! target (nvmet) on 127.0.0.1, attached by the node's own frontend, except
//! for the ublk test: there an in-process spdk-sim built with feature
//! `real-ublk` serves an lvol as a kernel ublk device.

mod common;

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use agent_api::attach::*;
use common::{MountGuard, MIB};
use shorthorn_node::command::SystemRunner;
use shorthorn_node::device::{block_device_size, is_block_device};
use shorthorn_node::dm::{dm_name, DmLinear};
use shorthorn_node::format::{format, probe_filesystem, FsType};
use shorthorn_node::frontend::nvme_tcp::{detach, sysfs, NvmeTcpFrontend};
use shorthorn_node::frontend::{AttachSpec, AttachedDevice, Frontend, NvmeTcpTarget};
use shorthorn_node::mount::{mount, prepare_target, unmount, TargetKind};
use shorthorn_node::quiesce::{QuiesceTarget, Quiescer};
use shorthorn_node::resize::resize_filesystem;
use shorthorn_node::stats::{volume_stats, VolumeStats};
use shorthorn_node::NodeError;

const GUEST_ONLY: &str = "runs inside the vmtest guest (vmtest/run.sh)";
const NVMET: &str = "/sys/kernel/config/nvmet";
/// Bound for anything that must eventually happen.
const GENEROUS: Duration = Duration::from_secs(60);
/// How long a suspended writer is watched to confirm it makes no progress.
const WATCH_BLOCKED: Duration = Duration::from_secs(2);

/// Panics unless running in the vmtest guest; sets up logging.
fn guest() {
    assert_eq!(
        std::env::var("SHORTHORN_VM_GUEST").as_deref(),
        Ok("1"),
        "this test reconfigures nvmet and device-mapper: {GUEST_ONLY}"
    );
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_test_writer()
        .try_init();
}

fn frontend() -> NvmeTcpFrontend {
    NvmeTcpFrontend::default()
}

fn dm() -> DmLinear {
    DmLinear::new(Arc::new(SystemRunner))
}

fn write_attr(path: &Path, value: &str) {
    fs::write(path, value).unwrap_or_else(|e| panic!("write {value:?} to {}: {e}", path.display()));
}

fn read_trimmed(path: &str) -> String {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {path}: {e}"))
        .trim()
        .to_owned()
}

/// A guest-local nvmet subsystem with one file-backed namespace, exported
/// on its own TCP port of 127.0.0.1. Torn down (host controllers first) on
/// drop.
struct NvmetVolume {
    nqn: String,
    backing: PathBuf,
    ns_uuid: uuid::Uuid,
    trsvcid: u16,
    subsys: PathBuf,
    port: PathBuf,
}

impl NvmetVolume {
    fn new(name: &str, trsvcid: u16, size: u64) -> Self {
        let nqn = format!("nqn.2024-01.io.shorthorn.vmtest:{name}");
        let backing = PathBuf::from(format!("/tmp/{name}.img"));
        File::create(&backing)
            .and_then(|f| f.set_len(size))
            .unwrap_or_else(|e| panic!("create {}: {e}", backing.display()));
        let ns_uuid = uuid::Uuid::new_v4();
        let subsys = Path::new(NVMET).join("subsystems").join(&nqn);
        fs::create_dir(&subsys).unwrap_or_else(|e| panic!("mkdir {}: {e}", subsys.display()));
        write_attr(&subsys.join("attr_allow_any_host"), "1");
        let ns = subsys.join("namespaces/1");
        fs::create_dir(&ns).unwrap_or_else(|e| panic!("mkdir {}: {e}", ns.display()));
        write_attr(&ns.join("device_path"), &backing.display().to_string());
        write_attr(&ns.join("device_uuid"), &ns_uuid.to_string());
        write_attr(&ns.join("buffered_io"), "1");
        write_attr(&ns.join("enable"), "1");
        let port = Path::new(NVMET).join("ports").join(trsvcid.to_string());
        fs::create_dir(&port).unwrap_or_else(|e| panic!("mkdir {}: {e}", port.display()));
        write_attr(&port.join("addr_trtype"), "tcp");
        write_attr(&port.join("addr_adrfam"), "ipv4");
        write_attr(&port.join("addr_traddr"), "127.0.0.1");
        write_attr(&port.join("addr_trsvcid"), &trsvcid.to_string());
        std::os::unix::fs::symlink(&subsys, port.join("subsystems").join(&nqn))
            .unwrap_or_else(|e| panic!("export {nqn} on port {trsvcid}: {e}"));
        NvmetVolume {
            nqn,
            backing,
            ns_uuid,
            trsvcid,
            subsys,
            port,
        }
    }

    fn target(&self) -> NvmeTcpTarget {
        NvmeTcpTarget {
            traddr: "127.0.0.1".parse().expect("loopback address"),
            trsvcid: self.trsvcid,
            subnqn: self.nqn.clone(),
            ns_uuid: self.ns_uuid,
            hostnqn: read_trimmed("/etc/nvme/hostnqn"),
            hostid: read_trimmed("/etc/nvme/hostid")
                .parse()
                .expect("hostid is a uuid"),
            ctrl_loss_tmo: 10,
            reconnect_delay: 1,
            keep_alive_tmo: 5,
        }
    }

    fn spec(&self) -> AttachSpec {
        AttachSpec::NvmeTcp(self.target())
    }

    /// Grows the backing file and tells nvmet, which notifies the host.
    fn grow(&self, size: u64) {
        OpenOptions::new()
            .write(true)
            .open(&self.backing)
            .and_then(|f| f.set_len(size))
            .unwrap_or_else(|e| panic!("grow {}: {e}", self.backing.display()));
        write_attr(&self.subsys.join("namespaces/1/revalidate_size"), "1");
    }

    /// Every host controller of this subsystem, usable or not.
    fn host_controllers(&self) -> Vec<String> {
        sysfs::list_controllers(Path::new("/sys"))
            .into_iter()
            .filter(|c| c.subsysnqn == self.nqn)
            .map(|c| c.name)
            .collect()
    }
}

impl Drop for NvmetVolume {
    fn drop(&mut self) {
        for c in sysfs::list_controllers(Path::new("/sys")) {
            if c.subsysnqn == self.nqn {
                let _ = detach::delete_controller(&c);
            }
        }
        let _ = fs::remove_file(self.port.join("subsystems").join(&self.nqn));
        let ns = self.subsys.join("namespaces/1");
        let _ = fs::write(ns.join("enable"), "0");
        let _ = fs::remove_dir(&ns);
        let _ = fs::remove_dir(&self.subsys);
        let _ = fs::remove_dir(&self.port);
        let _ = fs::remove_file(&self.backing);
    }
}

/// A dm device removed on drop (after the mounts on it: declare it first).
struct DmGuard(String);

impl Drop for DmGuard {
    fn drop(&mut self) {
        let _ = Command::new("dmsetup").args(["resume", &self.0]).output();
        let _ = Command::new("dmsetup").args(["remove", &self.0]).output();
    }
}

/// Deterministic, position-dependent bytes.
fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u64)
                .wrapping_mul(31)
                .wrapping_add(u64::from(seed) * 7) as u8
                ^ seed
        })
        .collect()
}

fn write_file(path: &Path, data: &[u8]) {
    let mut f = File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    f.write_all(data).expect("write");
    f.sync_all().expect("fsync");
}

fn read_file(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Reads `len` bytes at `offset` of a device, bypassing the page cache.
fn read_direct(dev: &Path, offset: u64, len: u64) -> Vec<u8> {
    assert_eq!(offset % MIB, 0);
    assert_eq!(len % MIB, 0);
    let out = Command::new("dd")
        .arg(format!("if={}", dev.display()))
        .args(["bs=1M", "iflag=direct", "status=none"])
        .arg(format!("skip={}", offset / MIB))
        .arg(format!("count={}", len / MIB))
        .output()
        .expect("run dd");
    assert!(
        out.status.success(),
        "dd: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Copies a whole device onto another with direct I/O.
fn copy_device(from: &Path, to: &Path) {
    let out = Command::new("dd")
        .arg(format!("if={}", from.display()))
        .arg(format!("of={}", to.display()))
        .args([
            "bs=1M",
            "iflag=direct",
            "oflag=direct",
            "conv=fsync",
            "status=none",
        ])
        .output()
        .expect("run dd");
    assert!(
        out.status.success(),
        "dd: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn dmsetup(args: &[&str]) -> String {
    let out = Command::new("dmsetup")
        .args(args)
        .output()
        .expect("run dmsetup");
    assert!(
        out.status.success(),
        "dmsetup {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `major:minor` of a device node.
fn dev_numbers(dev: &Path) -> String {
    let rdev = fs::metadata(dev)
        .unwrap_or_else(|e| panic!("stat {}: {e}", dev.display()))
        .rdev();
    format!(
        "{}:{}",
        nix::sys::stat::major(rdev),
        nix::sys::stat::minor(rdev)
    )
}

/// Attaches and checks what the frontend reports against the kernel.
async fn attach(fe: &NvmeTcpFrontend, vol: &NvmetVolume, size: u64) -> AttachedDevice {
    let dev = fe
        .attach(&vol.spec())
        .await
        .unwrap_or_else(|e| panic!("attach {}: {e}", vol.nqn));
    assert!(
        is_block_device(&dev.path),
        "{} is no block device",
        dev.path.display()
    );
    assert_eq!(dev.size_bytes, size);
    assert_eq!(block_device_size(&dev.path).expect("device size"), size);
    assert_eq!(dev.controllers, vol.host_controllers());
    assert_eq!(dev.controllers.len(), 1, "one controller per attach");
    dev
}

/// Detaches and checks the kernel kept nothing of the attachment.
async fn detach_all(fe: &NvmeTcpFrontend, vol: &NvmetVolume, dev: &AttachedDevice) {
    fe.detach(&vol.spec())
        .await
        .unwrap_or_else(|e| panic!("detach {}: {e}", vol.nqn));
    assert_eq!(
        vol.host_controllers(),
        Vec::<String>::new(),
        "controller left behind"
    );
    for c in &dev.controllers {
        assert!(
            !Path::new("/sys/class/nvme").join(c).exists(),
            "/sys/class/nvme/{c} still exists"
        );
    }
    assert!(!dev.path.exists(), "{} still exists", dev.path.display());
    assert_eq!(fe.find_existing(&vol.spec()).await.expect("lookup"), None);
}

/// Stage as `fs`, write, unmount, detach, attach again, read back.
async fn filesystem_round_trip(fs_type: FsType, name: &str, trsvcid: u16) {
    guest();
    let size = 512 * MIB;
    let vol = NvmetVolume::new(name, trsvcid, size);
    let fe = frontend();
    assert_eq!(fe.find_existing(&vol.spec()).await.expect("lookup"), None);
    let dev = attach(&fe, &vol, size).await;
    // Attaching an attached volume finds the same device, no new controller.
    let again = fe.attach(&vol.spec()).await.expect("second attach");
    assert_eq!(again.path, dev.path);
    assert_eq!(again.controllers, dev.controllers);

    format(&SystemRunner, &dev.path, fs_type).expect("format");
    assert_eq!(
        probe_filesystem(&SystemRunner, &dev.path)
            .expect("probe")
            .as_deref(),
        Some(fs_type.as_str())
    );
    let mnt = PathBuf::from(format!("/tmp/{name}-mnt"));
    let guard = MountGuard::new(&mnt);
    prepare_target(&mnt, TargetKind::Directory).expect("mount target");
    mount(&dev.path, &mnt, fs_type.as_str(), &["noatime"]).expect("mount");
    let payload = pattern(7, 3 * MIB as usize + 123);
    write_file(&mnt.join("payload"), &payload);
    assert!(unmount(&mnt).expect("unmount"));
    detach_all(&fe, &vol, &dev).await;

    let dev = attach(&fe, &vol, size).await;
    match format(&SystemRunner, &dev.path, fs_type) {
        Err(NodeError::DeviceNotBlank { .. }) => {}
        other => panic!("formatting a device holding {fs_type} gave {other:?}"),
    }
    mount(&dev.path, &mnt, fs_type.as_str(), &[] as &[&str]).expect("mount again");
    assert!(
        read_file(&mnt.join("payload")) == payload,
        "payload changed"
    );
    assert!(unmount(&mnt).expect("unmount"));
    drop(guard);
    detach_all(&fe, &vol, &dev).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs inside the vmtest guest (vmtest/run.sh)"]
async fn nvme_tcp_ext4_survives_detach_and_reattach() {
    filesystem_round_trip(FsType::Ext4, "stage-ext4", 4420).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs inside the vmtest guest (vmtest/run.sh)"]
async fn nvme_tcp_xfs_survives_detach_and_reattach() {
    filesystem_round_trip(FsType::Xfs, "stage-xfs", 4421).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs inside the vmtest guest (vmtest/run.sh)"]
async fn nvme_tcp_block_mode_from_publish_context() {
    guest();
    let size = 64 * MIB;
    let vol = NvmetVolume::new("block", 4422, size);
    let t = vol.target();
    // The spec comes through the publish_context parser, as from the controller.
    let ctx = publish_context(&t);
    let spec = AttachSpec::from_publish_context(&ctx).expect("publish_context");
    assert_eq!(spec, vol.spec());
    let fe = frontend();
    let dev = attach(&fe, &vol, size).await;

    let head = pattern(1, MIB as usize);
    let tail = pattern(2, MIB as usize);
    {
        let f = OpenOptions::new()
            .write(true)
            .open(&dev.path)
            .expect("open device");
        f.write_all_at(&head, 0).expect("write head");
        f.write_all_at(&tail, size - MIB).expect("write tail");
        f.sync_all().expect("fsync device");
    }
    detach_all(&fe, &vol, &dev).await;

    // The target's backing file holds the bytes at the same offsets.
    let mut backing = File::open(&vol.backing).expect("open backing file");
    let mut got = vec![0u8; MIB as usize];
    backing.read_exact(&mut got).expect("read backing head");
    assert!(got == head, "backing file head differs");
    backing
        .seek(SeekFrom::Start(size - MIB))
        .expect("seek backing");
    backing.read_exact(&mut got).expect("read backing tail");
    assert!(got == tail, "backing file tail differs");

    let dev = attach(&fe, &vol, size).await;
    assert!(
        read_direct(&dev.path, 0, MIB) == head,
        "head read back differs"
    );
    assert!(
        read_direct(&dev.path, size - MIB, MIB) == tail,
        "tail read back differs"
    );
    detach_all(&fe, &vol, &dev).await;
}

/// A thread writing and fdatasync-ing 4 KiB blocks in a loop, counting
/// completed rounds, until stopped.
struct Writer {
    done: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<std::io::Result<()>>>,
}

impl Writer {
    fn start(dev: &Path) -> Writer {
        let f = OpenOptions::new()
            .write(true)
            .open(dev)
            .unwrap_or_else(|e| panic!("open {}: {e}", dev.display()));
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (d, s) = (done.clone(), stop.clone());
        let handle = std::thread::spawn(move || {
            let block = pattern(9, 4096);
            let mut i: u64 = 0;
            while !s.load(Ordering::SeqCst) {
                f.write_all_at(&block, (i % 1024) * 4096)?;
                f.sync_data()?;
                d.fetch_add(1, Ordering::SeqCst);
                i += 1;
            }
            Ok(())
        });
        Writer {
            done,
            stop,
            handle: Some(handle),
        }
    }

    fn count(&self) -> u64 {
        self.done.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until more than `n` rounds completed.
    async fn wait_past(&self, n: u64) -> bool {
        let start = Instant::now();
        while start.elapsed() < GENEROUS {
            if self.count() > n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    fn finish(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            h.join()
                .expect("writer thread panicked")
                .expect("writer I/O failed");
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn dm_state(name: &str) -> String {
    dmsetup(&["info", "-c", "--noheadings", "-o", "suspended", name])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs inside the vmtest guest (vmtest/run.sh)"]
async fn dm_linear_quiesce_blocks_writer_and_lease_expiry_resumes() {
    guest();
    let size = 64 * MIB;
    let vol = NvmetVolume::new("dm-quiesce", 4423, size);
    let fe = frontend();
    let dev = attach(&fe, &vol, size).await;
    let volume_id = "vm-quiesce";
    let name = dm_name(volume_id).expect("dm name");
    let _dm_guard = DmGuard(name.clone());
    let dm = dm();
    assert!(!dm.exists(&name).expect("dm exists"));
    let path = dm
        .create(volume_id, &dev.path, size / 512)
        .expect("dm create");
    assert!(is_block_device(&path), "{} missing", path.display());
    assert_eq!(block_device_size(&path).expect("dm size"), size);
    assert!(dm.exists(&name).expect("dm exists"));
    // Creating again keeps the device.
    assert_eq!(
        dm.create(volume_id, &dev.path, size / 512)
            .expect("dm create again"),
        path
    );
    assert_eq!(
        dmsetup(&["table", &name]),
        format!("0 {} linear {} 0", size / 512, dev_numbers(&dev.path))
    );

    let writer = Writer::start(&path);
    assert!(writer.wait_past(0).await, "writer made no progress");
    let q = Quiescer::new(dm.clone());
    let target = QuiesceTarget::DmDevice(name.clone());
    let info = q
        .suspend(volume_id, target.clone(), GENEROUS)
        .await
        .expect("suspend");
    assert!(!info.already_held);
    assert_eq!(dm_state(&name), "Suspended");
    // A round already past the dm layer may still finish; then nothing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = writer.count();
    tokio::time::sleep(WATCH_BLOCKED).await;
    assert_eq!(writer.count(), held, "writes completed while suspended");

    let report = q.resume(volume_id).await.expect("resume");
    assert!(report.was_held);
    assert_eq!(dm_state(&name), "Active");
    assert!(writer.wait_past(held).await, "writer stuck after resume");

    // A hold nobody releases ends with its lease.
    q.suspend(volume_id, target, Duration::from_secs(1))
        .await
        .expect("suspend with short lease");
    let start = Instant::now();
    while q.is_suspended(volume_id).await {
        assert!(start.elapsed() < GENEROUS, "lease never resumed the device");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(dm_state(&name), "Active");
    let after = writer.count();
    assert!(
        writer.wait_past(after).await,
        "writer stuck after lease expiry"
    );
    let recent = q.recent_holds();
    assert_eq!(recent.len(), 2);
    assert!(!recent[0].expired);
    assert!(recent[1].expired);
    writer.finish();

    // What went through dm-linear is at the same offset on the nvme device.
    let block = pattern(9, 4096);
    let got = read_direct(&dev.path, 0, MIB);
    assert!(got[..4096] == block[..], "dm-linear did not map offset 0");

    dm.remove(&name).expect("dm remove");
    assert!(!dm.exists(&name).expect("dm exists"));
    assert!(!path.exists(), "{} left behind", path.display());
    dm.remove(&name).expect("second remove is a no-op");
    detach_all(&fe, &vol, &dev).await;
}

/// Mounts `dev` read-only at `mnt`, returns the named files' contents
/// (`None` when missing) and unmounts.
fn files_on(dev: &Path, mnt: &Path, names: &[&str]) -> Vec<Option<Vec<u8>>> {
    prepare_target(mnt, TargetKind::Directory).expect("mount target");
    mount(dev, mnt, "ext4", &["ro"]).expect("mount ro");
    let got = names.iter().map(|n| fs::read(mnt.join(n)).ok()).collect();
    assert!(unmount(mnt).expect("unmount"));
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs inside the vmtest guest (vmtest/run.sh)"]
async fn dm_linear_reload_moves_a_mounted_filesystem_to_another_device() {
    guest();
    let size = 128 * MIB;
    let vol_a = NvmetVolume::new("move-a", 4424, size);
    let vol_b = NvmetVolume::new("move-b", 4425, size);
    let fe = frontend();
    let dev_a = attach(&fe, &vol_a, size).await;
    let dev_b = attach(&fe, &vol_b, size).await;
    let volume_id = "vm-move";
    let name = dm_name(volume_id).expect("dm name");
    let _dm_guard = DmGuard(name.clone());
    let dm = dm();
    let path = dm
        .create(volume_id, &dev_a.path, size / 512)
        .expect("dm create");
    format(&SystemRunner, &path, FsType::Ext4).expect("format dm device");
    let mnt = PathBuf::from("/tmp/move-mnt");
    let guard = MountGuard::new(&mnt);
    prepare_target(&mnt, TargetKind::Directory).expect("mount target");
    mount(&path, &mnt, "ext4", &[] as &[&str]).expect("mount");
    let before = pattern(3, 2 * MIB as usize);
    write_file(&mnt.join("before"), &before);

    // Suspending flushes and freezes the filesystem; copy, then switch.
    dm.suspend(&name).expect("suspend");
    copy_device(&dev_a.path, &dev_b.path);
    dm.reload(&name, &dev_b.path, size / 512).expect("reload");
    assert_eq!(dm_state(&name), "Suspended", "reload must not resume");
    dm.resume(&name).expect("resume");
    assert_eq!(
        dmsetup(&["table", &name]),
        format!("0 {} linear {} 0", size / 512, dev_numbers(&dev_b.path))
    );

    assert!(
        read_file(&mnt.join("before")) == before,
        "data lost in the move"
    );
    let after = pattern(4, MIB as usize);
    write_file(&mnt.join("after"), &after);
    assert!(unmount(&mnt).expect("unmount"));
    drop(guard);
    dm.remove(&name).expect("dm remove");

    let check = PathBuf::from("/tmp/move-check");
    let _check_guard = MountGuard::new(&check);
    let on_b = files_on(&dev_b.path, &check, &["before", "after"]);
    assert!(on_b[0].as_deref() == Some(&before[..]), "B lacks `before`");
    assert!(on_b[1].as_deref() == Some(&after[..]), "B lacks `after`");
    let on_a = files_on(&dev_a.path, &check, &["before", "after"]);
    assert!(on_a[0].as_deref() == Some(&before[..]), "A lost `before`");
    assert!(on_a[1].is_none(), "a write after the reload reached A");

    detach_all(&fe, &vol_a, &dev_a).await;
    detach_all(&fe, &vol_b, &dev_b).await;
}

fn fs_total(mnt: &Path) -> u64 {
    match volume_stats(mnt).expect("volume stats") {
        VolumeStats::Filesystem(s) => s.bytes_total,
        other => panic!("{} is not a filesystem: {other:?}", mnt.display()),
    }
}

/// Grow the namespace on the target, rescan through the frontend, grow the
/// filesystem online; statvfs sees the new size and the data is intact.
async fn online_expansion(fs_type: FsType, name: &str, trsvcid: u16) {
    guest();
    let (small, large) = (320 * MIB, 800 * MIB);
    let vol = NvmetVolume::new(name, trsvcid, small);
    let fe = frontend();
    let dev = attach(&fe, &vol, small).await;
    format(&SystemRunner, &dev.path, fs_type).expect("format");
    let mnt = PathBuf::from(format!("/tmp/{name}-mnt"));
    let guard = MountGuard::new(&mnt);
    prepare_target(&mnt, TargetKind::Directory).expect("mount target");
    mount(&dev.path, &mnt, fs_type.as_str(), &[] as &[&str]).expect("mount");
    let payload = pattern(5, MIB as usize);
    write_file(&mnt.join("payload"), &payload);
    let before = fs_total(&mnt);
    assert!(before <= small, "filesystem larger than its device");

    vol.grow(large);
    let rescanned = fe.rescan(&dev).await.expect("rescan");
    assert_eq!(rescanned, large, "rescan reported the old size");
    assert_eq!(block_device_size(&dev.path).expect("device size"), large);
    resize_filesystem(&SystemRunner, &dev.path, &mnt, fs_type).expect("grow filesystem");
    let after = fs_total(&mnt);
    assert!(
        after > small && after <= large,
        "{fs_type} is {after} bytes after growing {small} -> {large}"
    );
    assert!(
        read_file(&mnt.join("payload")) == payload,
        "payload changed"
    );
    assert!(unmount(&mnt).expect("unmount"));
    drop(guard);
    detach_all(&fe, &vol, &dev).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs inside the vmtest guest (vmtest/run.sh)"]
async fn nvme_tcp_online_expansion_ext4() {
    online_expansion(FsType::Ext4, "grow-ext4", 4426).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs inside the vmtest guest (vmtest/run.sh)"]
async fn nvme_tcp_online_expansion_xfs() {
    online_expansion(FsType::Xfs, "grow-xfs", 4427).await;
}

fn publish_context(t: &NvmeTcpTarget) -> HashMap<String, String> {
    [
        (KEY_FRONTEND, "nvme-tcp".to_owned()),
        (KEY_NVME_TRADDR, t.traddr.to_string()),
        (KEY_NVME_TRSVCID, t.trsvcid.to_string()),
        (KEY_NVME_SUBNQN, t.subnqn.clone()),
        (KEY_NVME_NS_UUID, t.ns_uuid.to_string()),
        (KEY_NVME_HOSTNQN, t.hostnqn.clone()),
        (KEY_NVME_HOSTID, t.hostid.to_string()),
        (KEY_NVME_CTRL_LOSS_TMO, t.ctrl_loss_tmo.to_string()),
        (KEY_NVME_RECONNECT_DELAY, t.reconnect_delay.to_string()),
        (KEY_NVME_KEEP_ALIVE_TMO, t.keep_alive_tmo.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// The CSI node service end to end over NVMe/TCP with its dm-linear layer:
/// stage (attach, dm, format, mount), publish, expand, unpublish, unstage,
/// and staging again finds the data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs inside the vmtest guest (vmtest/run.sh)"]
async fn csi_node_service_over_nvme_tcp_with_device_mapper() {
    use csi_proto::node_server::Node;
    use csi_proto::volume_capability::{access_mode::Mode, AccessMode, AccessType, MountVolume};
    use csi_proto::*;
    use shorthorn_node::csi::{NodeService, NodeServiceConfig};
    use tonic::Request;

    guest();
    let (small, large) = (320 * MIB, 800 * MIB);
    let vol = NvmetVolume::new("csi", 4428, small);
    let volume_id = "csi-vol";
    let dm_dev = PathBuf::from(format!(
        "/dev/mapper/{}",
        dm_name(volume_id).expect("dm name")
    ));
    let _dm_guard = DmGuard(dm_name(volume_id).expect("dm name"));
    let root = PathBuf::from("/tmp/csi");
    let staging = root.join("staging");
    let target = root.join("pod/mount");
    let _staging_guard = MountGuard::new(&staging);
    let _target_guard = MountGuard::new(&target);
    let mut config = NodeServiceConfig::new("shorthorn.vmtest", "vm", root.join("state"));
    config.kubelet_dir = root.clone();
    config.device_mapper = Some(true);
    let svc = NodeService::new(config.clone()).expect("node service");
    let cap = VolumeCapability {
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: "xfs".into(),
            ..Default::default()
        })),
    };
    let stage = NodeStageVolumeRequest {
        volume_id: volume_id.into(),
        publish_context: publish_context(&vol.target()),
        staging_target_path: staging.display().to_string(),
        volume_capability: Some(cap.clone()),
        ..Default::default()
    };
    svc.node_stage_volume(Request::new(stage.clone()))
        .await
        .expect("stage");
    assert_eq!(vol.host_controllers().len(), 1);
    assert!(
        is_block_device(&dm_dev),
        "no dm layer at {}",
        dm_dev.display()
    );
    let source = shorthorn_node::mount::mount_source(&staging)
        .expect("mountinfo")
        .expect("staging is mounted");
    assert_eq!(
        Path::new(&source),
        dm_dev,
        "staging not mounted from the dm layer"
    );
    // Staging again is a no-op.
    svc.node_stage_volume(Request::new(stage.clone()))
        .await
        .expect("stage again");
    assert_eq!(vol.host_controllers().len(), 1);

    let publish = NodePublishVolumeRequest {
        volume_id: volume_id.into(),
        staging_target_path: staging.display().to_string(),
        target_path: target.display().to_string(),
        volume_capability: Some(cap.clone()),
        ..Default::default()
    };
    svc.node_publish_volume(Request::new(publish))
        .await
        .expect("publish");
    let payload = pattern(6, MIB as usize);
    write_file(&target.join("payload"), &payload);
    let before = fs_total(&target);

    vol.grow(large);
    let expanded = svc
        .node_expand_volume(Request::new(NodeExpandVolumeRequest {
            volume_id: volume_id.into(),
            volume_path: target.display().to_string(),
            staging_target_path: staging.display().to_string(),
            capacity_range: Some(CapacityRange {
                required_bytes: large as i64,
                limit_bytes: 0,
            }),
            volume_capability: Some(cap.clone()),
            ..Default::default()
        }))
        .await
        .expect("expand")
        .into_inner();
    assert_eq!(expanded.capacity_bytes, large as i64);
    assert_eq!(block_device_size(&dm_dev).expect("dm size"), large);
    let after = fs_total(&target);
    assert!(
        after > small && after > before,
        "xfs is {after} bytes after expanding {small} -> {large}"
    );

    svc.node_unpublish_volume(Request::new(NodeUnpublishVolumeRequest {
        volume_id: volume_id.into(),
        target_path: target.display().to_string(),
    }))
    .await
    .expect("unpublish");
    svc.node_unstage_volume(Request::new(NodeUnstageVolumeRequest {
        volume_id: volume_id.into(),
        staging_target_path: staging.display().to_string(),
    }))
    .await
    .expect("unstage");
    assert!(!shorthorn_node::mount::is_mounted(&staging).expect("mountinfo"));
    assert!(!dm_dev.exists(), "dm layer left behind");
    assert_eq!(
        vol.host_controllers(),
        Vec::<String>::new(),
        "controller left behind"
    );

    // A new service instance (a restarted node plugin) stages it again.
    let svc = NodeService::new(config).expect("node service");
    svc.node_stage_volume(Request::new(stage))
        .await
        .expect("stage after restart");
    let mut f = File::open(staging.join("payload")).expect("payload after restage");
    let mut got = Vec::new();
    f.read_to_end(&mut got).expect("read payload");
    assert!(got == payload, "payload changed");
    drop(f);
    svc.node_unstage_volume(Request::new(NodeUnstageVolumeRequest {
        volume_id: volume_id.into(),
        staging_target_path: staging.display().to_string(),
    }))
    .await
    .expect("unstage again");
    assert_eq!(vol.host_controllers(), Vec::<String>::new());
}

/// An spdk-sim serving JSON-RPC in this process, on its own runtime and
/// thread (its ublk servers block on that runtime while this test's runtime
/// waits on the kernel). Shut down on drop.
struct InProcessSim {
    socket: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl InProcessSim {
    fn start(dir: &Path) -> Self {
        let _ = fs::remove_dir_all(dir);
        fs::create_dir_all(dir).expect("sim dir");
        let socket = dir.join("spdk.sock");
        let config = spdk_sim::SimConfig {
            rpc_socket: socket.clone(),
            data_dir: dir.join("data"),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("sim runtime");
            rt.block_on(spdk_sim::run(config, async {
                let _ = stopped.await;
            }))
            .expect("spdk-sim");
        });
        let deadline = Instant::now() + GENEROUS;
        while !socket.exists() {
            assert!(Instant::now() < deadline, "spdk-sim did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        InProcessSim {
            socket,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for InProcessSim {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn rpc(
    client: &spdk_client::SpdkClient,
    method: &str,
    params: serde_json::Value,
) -> serde_json::Value {
    client
        .call_raw(method, Some(params))
        .await
        .unwrap_or_else(|e| panic!("{method}: {e}"))
}

/// Starts ublk disk `id` over `bdev` and returns the device `ublk_get_disks` reports.
async fn start_ublk_disk(client: &spdk_client::SpdkClient, bdev: &str, id: u32) -> PathBuf {
    let started = rpc(
        client,
        "ublk_start_disk",
        serde_json::json!({"bdev_name": bdev, "ublk_id": id}),
    )
    .await;
    assert_eq!(started, serde_json::json!(id));
    let disks = rpc(client, "ublk_get_disks", serde_json::json!({"ublk_id": id})).await;
    let dev = disks[0]["ublk_device"].as_str().expect("ublk_device");
    assert_eq!(dev, format!("/dev/ublkb{id}"), "not a kernel ublk device");
    let dev = PathBuf::from(dev);
    assert!(
        is_block_device(&dev),
        "{} is no block device",
        dev.display()
    );
    dev
}

/// Stops ublk disk `id` and checks its device went away.
async fn stop_ublk_disk(client: &spdk_client::SpdkClient, id: u32, dev: &Path) {
    rpc(client, "ublk_stop_disk", serde_json::json!({"ublk_id": id})).await;
    let deadline = Instant::now() + GENEROUS;
    while dev.exists() {
        assert!(Instant::now() < deadline, "{} left behind", dev.display());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The CSI node service end to end over a real ublk device served by
/// spdk-sim (feature `real-ublk`) from an lvol on a malloc bdev: stage as
/// ext4, write, unstage, restart the disk, stage again and read back; the
/// device is gone once the disk is stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs inside the vmtest guest (vmtest/run.sh)"]
async fn csi_node_service_over_spdk_sim_real_ublk() {
    use csi_proto::node_server::Node;
    use csi_proto::volume_capability::{access_mode::Mode, AccessMode, AccessType, MountVolume};
    use csi_proto::*;
    use serde_json::json;
    use shorthorn_node::csi::{NodeService, NodeServiceConfig};
    use tonic::Request;

    guest();
    assert!(
        Path::new("/dev/ublk-control").exists(),
        "ublk_drv is not loaded"
    );
    let sim = InProcessSim::start(Path::new("/tmp/ublk-sim"));
    let client = spdk_client::SpdkClient::unix(&sim.socket);
    rpc(
        &client,
        "bdev_malloc_create",
        json!({"name": "m0", "num_blocks": 65536, "block_size": 4096}),
    )
    .await;
    rpc(
        &client,
        "bdev_lvol_create_lvstore",
        json!({"bdev_name": "m0", "lvs_name": "lvs0"}),
    )
    .await;
    let lvol = rpc(
        &client,
        "bdev_lvol_create",
        json!({"lvol_name": "v0", "size_in_mib": 128, "lvs_name": "lvs0"}),
    )
    .await;
    let lvol = lvol.as_str().expect("lvol name").to_owned();
    rpc(&client, "ublk_create_target", json!({})).await;
    let id = 7;
    let dev = start_ublk_disk(&client, &lvol, id).await;
    assert_eq!(block_device_size(&dev).expect("size"), 128 * MIB);

    let volume_id = "ublk-vol";
    let root = PathBuf::from("/tmp/csi-ublk");
    let staging = root.join("staging");
    let _staging_guard = MountGuard::new(&staging);
    let mut config = NodeServiceConfig::new("shorthorn.vmtest", "vm", root.join("state"));
    config.kubelet_dir = root.clone();
    config.device_mapper = Some(false);
    let svc = NodeService::new(config.clone()).expect("node service");
    let stage = NodeStageVolumeRequest {
        volume_id: volume_id.into(),
        publish_context: [
            (KEY_FRONTEND, "ublk".to_owned()),
            (KEY_UBLK_DEVICE, dev.display().to_string()),
            (KEY_UBLK_ID, id.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect(),
        staging_target_path: staging.display().to_string(),
        volume_capability: Some(VolumeCapability {
            access_mode: Some(AccessMode {
                mode: Mode::SingleNodeWriter as i32,
            }),
            access_type: Some(AccessType::Mount(MountVolume {
                fs_type: "ext4".into(),
                ..Default::default()
            })),
        }),
        ..Default::default()
    };
    let unstage = NodeUnstageVolumeRequest {
        volume_id: volume_id.into(),
        staging_target_path: staging.display().to_string(),
    };
    svc.node_stage_volume(Request::new(stage.clone()))
        .await
        .expect("stage");
    let source = shorthorn_node::mount::mount_source(&staging)
        .expect("mountinfo")
        .expect("staging is mounted");
    assert_eq!(Path::new(&source), dev, "staging not mounted from ublk");
    assert_eq!(
        probe_filesystem(&SystemRunner, &dev)
            .expect("probe")
            .as_deref(),
        Some("ext4"),
        "no ext4 on {}",
        dev.display()
    );
    // fsync sends the kernel's FLUSH through the ublk server.
    let payload = pattern(9, 3 * MIB as usize + 123);
    write_file(&staging.join("payload"), &payload);
    svc.node_unstage_volume(Request::new(unstage.clone()))
        .await
        .expect("unstage");
    assert!(!shorthorn_node::mount::is_mounted(&staging).expect("mountinfo"));

    // The disk stops (its device goes away) and starts again over the same lvol.
    stop_ublk_disk(&client, id, &dev).await;
    let dev = start_ublk_disk(&client, &lvol, id).await;
    let svc = NodeService::new(config).expect("node service");
    svc.node_stage_volume(Request::new(stage))
        .await
        .expect("stage after disk restart");
    assert!(
        read_file(&staging.join("payload")) == payload,
        "payload changed across the disk restart"
    );
    svc.node_unstage_volume(Request::new(unstage))
        .await
        .expect("unstage again");
    stop_ublk_disk(&client, id, &dev).await;
    drop(sim);
}
