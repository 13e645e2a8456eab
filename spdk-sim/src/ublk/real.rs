//! A real ublk device (`/dev/ublkb<id>`) through the `libublk` crate, used
//! instead of the FUSE + loop stand-in when the kernel has ublk
//! (`/dev/ublk-control` exists). Feature `real-ublk`.
//!
//! Each disk runs its own server thread: it adds the device, serves its
//! queues on libublk's queue threads (the bdev I/O runs on the sim's tokio
//! runtime through `Handle::block_on`) and, once the device is stopped,
//! deletes it. FLUSH is handled first, since a flush carries no range;
//! reads and writes then need a range inside the device; bdev errors are
//! reported to the kernel as -EIO.
//!
//! A marker file per running device (`<data_dir>/ublk-real/<id>`) lets a
//! restarted sim delete the devices a crashed run left behind.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use libublk::ctrl::{UblkCtrl, UblkCtrlBuilder};
use libublk::io::{BufDescList, UblkDev, UblkIOCtx, UblkQueue};
use libublk::{BufDesc, UblkFlags, UblkIORes};
use nix::libc;
use tokio::runtime::Handle;

use crate::bdev::{Bdev, IoResult};

/// The ublk control device; real ublk is used only when it exists.
pub const CONTROL: &str = "/dev/ublk-control";
/// How long `start` waits for the kernel to bring the device up.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest I/O the kernel sends in one request.
const IO_BUF_BYTES: u32 = 512 * 1024;

/// Whether the kernel offers ublk.
pub fn available() -> bool {
    Path::new(CONTROL).exists()
}

/// A running real ublk device.
pub struct RealDisk {
    /// ublk id (the `N` of `/dev/ublkbN`).
    pub id: u32,
    /// Name the bdev was given by.
    pub bdev_name: String,
    /// Queues requested.
    pub num_queues: u32,
    /// Queue depth requested.
    pub queue_depth: u32,
    /// The kernel block device, `/dev/ublkb<id>`.
    pub dev: PathBuf,
    marker: PathBuf,
    server: Option<JoinHandle<()>>,
}

/// Directory of the markers of running devices under `data_dir`.
fn marker_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("ublk-real")
}

/// Deletes the ublk devices a previous run of the sim left under `data_dir`
/// (a crash skips `ublk_stop_disk`), unless a live process serves them.
pub fn cleanup_stale(data_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(marker_dir(data_dir)) else {
        return;
    };
    for entry in entries.flatten() {
        let id = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok());
        if let Some(ctrl) = id.and_then(|id| UblkCtrl::new_simple(id).ok()) {
            let pid = ctrl.dev_info().ublksrv_pid;
            let served = pid > 0
                && i64::from(pid) != i64::from(std::process::id())
                && Path::new(&format!("/proc/{pid}")).exists();
            if served {
                tracing::warn!(
                    id,
                    pid,
                    "ublk device of a previous run is served by a live process; kept"
                );
            } else {
                match ctrl.del_dev() {
                    Ok(_) => tracing::info!(id, "deleted stale ublk device"),
                    Err(e) => tracing::warn!(id, error = %e, "stale ublk device delete failed"),
                }
            }
        }
        let _ = std::fs::remove_file(entry.path());
    }
}

impl RealDisk {
    /// Adds `/dev/ublkb<id>` serving `bdev` and waits until the kernel
    /// started it. Blocking.
    pub fn start(
        data_dir: &Path,
        id: u32,
        bdev_name: String,
        bdev: Arc<dyn Bdev>,
        num_queues: u32,
        queue_depth: u32,
        rt: Handle,
    ) -> std::io::Result<RealDisk> {
        let nr_queues = u16::try_from(num_queues).map_err(invalid)?;
        let depth = u16::try_from(queue_depth).map_err(invalid)?;
        let dev_id = i32::try_from(id).map_err(invalid)?;
        let marker = marker_dir(data_dir).join(id.to_string());
        std::fs::create_dir_all(marker_dir(data_dir))?;
        std::fs::write(&marker, b"")?;
        let (tx, rx) = mpsc::channel();
        let server = std::thread::Builder::new()
            .name(format!("ublk{id}"))
            .spawn(move || serve(dev_id, nr_queues, depth, bdev, rt, tx))
            .inspect_err(|_| {
                let _ = std::fs::remove_file(&marker);
            })?;
        let mut disk = RealDisk {
            id,
            bdev_name,
            num_queues,
            queue_depth,
            dev: PathBuf::from(format!("/dev/ublkb{id}")),
            marker,
            server: Some(server),
        };
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(())) => {
                tracing::info!(id, dev = %disk.dev.display(), "ublk disk started (kernel ublk)");
                Ok(disk)
            }
            Ok(Err(e)) => {
                disk.join();
                Err(e)
            }
            Err(_) => {
                disk.kill();
                disk.join();
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("ublk device {id} did not start"),
                ))
            }
        }
    }

    /// Stops and deletes the device, waiting for its server. Blocking.
    pub fn stop(mut self) {
        self.kill();
        self.join();
        tracing::info!(id = self.id, "ublk disk stopped (kernel ublk)");
    }

    /// Asks the kernel to stop the device: its queues end and the server
    /// thread deletes it.
    fn kill(&self) {
        let Ok(dev_id) = i32::try_from(self.id) else {
            return;
        };
        match UblkCtrl::new_simple(dev_id) {
            Ok(ctrl) => {
                if let Err(e) = ctrl.kill_dev() {
                    tracing::warn!(id = self.id, error = %e, "ublk stop failed");
                }
            }
            Err(e) => tracing::warn!(id = self.id, error = %e, "ublk control open failed"),
        }
    }

    fn join(&mut self) {
        if let Some(server) = self.server.take() {
            if server.join().is_err() {
                tracing::warn!(id = self.id, "ublk server thread panicked");
            }
        }
        let _ = std::fs::remove_file(&self.marker);
    }
}

fn invalid<E: std::fmt::Display>(e: E) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string())
}

fn ublk_err(what: &str, e: libublk::UblkError) -> std::io::Error {
    std::io::Error::other(format!("{what}: {e}"))
}

/// The server thread of one device: adds it, serves it until it is stopped,
/// then deletes it (dropping the control of an added device deletes it).
/// Reports the start (or why it failed) on `started`.
fn serve(
    dev_id: i32,
    nr_queues: u16,
    depth: u16,
    bdev: Arc<dyn Bdev>,
    rt: Handle,
    started: mpsc::Sender<std::io::Result<()>>,
) {
    let ctrl = match UblkCtrlBuilder::default()
        .name("spdk-sim")
        .id(dev_id)
        .nr_queues(nr_queues)
        .depth(depth)
        .io_buf_bytes(IO_BUF_BYTES)
        .dev_flags(UblkFlags::UBLK_DEV_F_ADD_DEV)
        .build()
    {
        Ok(ctrl) => ctrl,
        Err(e) => {
            let _ = started.send(Err(ublk_err("ublk add device", e)));
            return;
        }
    };
    let size = bdev.size_bytes();
    let shift = bdev.block_size().max(512).trailing_zeros();
    let tgt_init = move |dev: &mut UblkDev| {
        dev.set_default_params(size);
        let basic = &mut dev.tgt.params.basic;
        basic.logical_bs_shift = u8::try_from(shift).unwrap_or(9);
        basic.physical_bs_shift = basic.physical_bs_shift.max(basic.logical_bs_shift);
        basic.io_min_shift = basic.io_min_shift.max(basic.logical_bs_shift);
        basic.io_opt_shift = basic.io_opt_shift.max(basic.logical_bs_shift);
        Ok(())
    };
    let q_fn = move |qid: u16, dev: &UblkDev| serve_queue(qid, dev, &bdev, &rt);
    let on_start = started.clone();
    let r = ctrl.run_target(tgt_init, q_fn, move |_ctrl: &UblkCtrl| {
        let _ = on_start.send(Ok(()));
    });
    if let Err(e) = r {
        tracing::warn!(dev_id, error = %e, "ublk device failed");
        let _ = started.send(Err(ublk_err("ublk start device", e)));
    }
    drop(ctrl);
}

/// Serves one queue until the device stops.
fn serve_queue(qid: u16, dev: &UblkDev, bdev: &Arc<dyn Bdev>, rt: &Handle) {
    let mut bufs = dev.alloc_queue_io_bufs();
    let queue = match UblkQueue::new(qid, dev)
        .and_then(|q| q.submit_fetch_commands_unified(BufDescList::Slices(Some(&bufs))))
    {
        Ok(q) => q,
        Err(e) => {
            tracing::warn!(qid, error = %e, "ublk queue setup failed");
            return;
        }
    };
    let handler = move |q: &UblkQueue, tag: u16, _io: &UblkIOCtx| {
        let iod = q.get_iod(tag);
        let op = iod.op_flags & 0xff;
        let offset = iod.start_sector << 9;
        let len = u64::from(iod.nr_sectors) << 9;
        let Some(buf) = bufs.get_mut(usize::from(tag)) else {
            return;
        };
        let res = handle_io(bdev.as_ref(), rt, op, offset, len, buf.as_mut_slice());
        let done = q.complete_io_cmd_unified(
            tag,
            BufDesc::Slice(buf.as_slice()),
            Ok(UblkIORes::Result(res)),
        );
        if let Err(e) = done {
            tracing::warn!(tag, error = %e, "ublk completion failed");
        }
    };
    queue.wait_and_handle_io(handler);
}

/// Runs one request: returns the bytes transferred (0 for a flush) or a
/// negative errno.
pub fn handle_io(
    bdev: &dyn Bdev,
    rt: &Handle,
    op: u32,
    offset: u64,
    len: u64,
    buf: &mut [u8],
) -> i32 {
    use libublk::sys::{UBLK_IO_OP_FLUSH, UBLK_IO_OP_READ, UBLK_IO_OP_WRITE};
    // A flush has no range: never bounds-check it.
    if op == UBLK_IO_OP_FLUSH {
        return match rt.block_on(bdev.flush()) {
            Ok(()) => 0,
            Err(_) => -libc::EIO,
        };
    }
    let Ok(n) = usize::try_from(len) else {
        return -libc::EIO;
    };
    let Ok(res) = i32::try_from(n) else {
        return -libc::EIO;
    };
    let in_device = offset
        .checked_add(len)
        .is_some_and(|end| end <= bdev.size_bytes());
    let Some(buf) = buf.get_mut(..n).filter(|_| in_device) else {
        return -libc::EIO;
    };
    let r = match op {
        UBLK_IO_OP_READ => read_at(bdev, rt, offset, buf),
        UBLK_IO_OP_WRITE => write_at(bdev, rt, offset, buf),
        _ => return -libc::EOPNOTSUPP,
    };
    match r {
        Ok(()) => res,
        Err(_) => -libc::EIO,
    }
}

/// The block-aligned range covering `len` bytes at `offset`.
fn aligned(bdev: &dyn Bdev, offset: u64, len: u64) -> (u64, u64) {
    let bs = u64::from(bdev.block_size().max(1));
    let start = offset / bs * bs;
    (start, (offset + len).div_ceil(bs) * bs)
}

/// Reads `buf.len()` bytes at any `offset` inside the device.
fn read_at(bdev: &dyn Bdev, rt: &Handle, offset: u64, buf: &mut [u8]) -> IoResult<()> {
    let (start, end) = aligned(bdev, offset, buf.len() as u64);
    let data = rt.block_on(bdev.read(start, end - start))?;
    let from = usize::try_from(offset - start).map_err(|_| crate::bdev::IoError::EIO)?;
    let src = data
        .get(from..from + buf.len())
        .ok_or(crate::bdev::IoError::EIO)?;
    buf.copy_from_slice(src);
    Ok(())
}

/// Writes `data` at any `offset` inside the device, merging partial blocks.
fn write_at(bdev: &dyn Bdev, rt: &Handle, offset: u64, data: &[u8]) -> IoResult<()> {
    let (start, end) = aligned(bdev, offset, data.len() as u64);
    if start == offset && end - start == data.len() as u64 {
        return rt.block_on(bdev.write(offset, data));
    }
    let mut merged = rt.block_on(bdev.read(start, end - start))?;
    let from = usize::try_from(offset - start).map_err(|_| crate::bdev::IoError::EIO)?;
    merged
        .get_mut(from..from + data.len())
        .ok_or(crate::bdev::IoError::EIO)?
        .copy_from_slice(data);
    rt.block_on(bdev.write(start, &merged))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::malloc::MallocBdev;
    use libublk::sys::{UBLK_IO_OP_DISCARD, UBLK_IO_OP_FLUSH, UBLK_IO_OP_READ, UBLK_IO_OP_WRITE};

    fn setup() -> (tokio::runtime::Runtime, MallocBdev) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        (
            rt,
            MallocBdev::new("m".into(), uuid::Uuid::new_v4(), 4096, 16),
        )
    }

    #[test]
    fn flush_is_served_before_any_bounds_check() {
        let (rt, bdev) = setup();
        let h = rt.handle();
        // A flush carries no range: whatever the descriptor holds is ignored.
        assert_eq!(
            handle_io(&bdev, h, UBLK_IO_OP_FLUSH, u64::MAX - 511, 0, &mut []),
            0
        );
        assert_eq!(
            handle_io(&bdev, h, UBLK_IO_OP_FLUSH, 1 << 40, 4096, &mut []),
            0
        );
    }

    #[test]
    fn out_of_range_and_unknown_ops_fail() {
        let (rt, bdev) = setup();
        let h = rt.handle();
        let mut buf = vec![0u8; 8192];
        let size = bdev.size_bytes();
        let eio = -libc::EIO;
        assert_eq!(
            handle_io(&bdev, h, UBLK_IO_OP_READ, size - 4096, 8192, &mut buf),
            eio
        );
        assert_eq!(
            handle_io(&bdev, h, UBLK_IO_OP_WRITE, u64::MAX - 511, 512, &mut buf),
            eio
        );
        // Longer than the buffer the kernel gave.
        assert_eq!(
            handle_io(&bdev, h, UBLK_IO_OP_READ, 0, 16384, &mut buf),
            eio
        );
        assert_eq!(
            handle_io(&bdev, h, UBLK_IO_OP_DISCARD, 0, 4096, &mut buf),
            -libc::EOPNOTSUPP
        );
    }

    #[test]
    fn reads_and_writes_at_any_sector() {
        let (rt, bdev) = setup();
        let h = rt.handle();
        let mut data: Vec<u8> = (0..1536u32).map(|i| (i % 251) as u8).collect();
        // Three sectors straddling the first 4 KiB block boundary.
        assert_eq!(
            handle_io(&bdev, h, UBLK_IO_OP_WRITE, 3584, 1536, &mut data),
            1536
        );
        let mut back = vec![0u8; 1536];
        assert_eq!(
            handle_io(&bdev, h, UBLK_IO_OP_READ, 3584, 1536, &mut back),
            1536
        );
        assert_eq!(back, data);
        let mut around = vec![0xffu8; 8192];
        assert_eq!(
            handle_io(&bdev, h, UBLK_IO_OP_READ, 0, 8192, &mut around),
            8192
        );
        assert!(around[..3584].iter().all(|&b| b == 0));
        assert_eq!(&around[3584..5120], &data[..]);
        assert!(around[5120..].iter().all(|&b| b == 0));
    }
}
