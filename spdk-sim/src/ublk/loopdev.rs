//! Loop devices through their ioctls: attach a file (direct I/O when the
//! kernel allows it), flush and detach.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::libc;

const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const BLKFLSBUF: libc::c_ulong = 0x1261;
const LO_FLAGS_DIRECT_IO: u32 = 16;

/// `struct loop_info64` from `<linux/loop.h>`.
#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// `struct loop_config` from `<linux/loop.h>`.
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

fn check(rc: libc::c_int) -> std::io::Result<libc::c_int> {
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn configure(dev: &File, backing: &File, block_size: u32, flags: u32) -> std::io::Result<()> {
    let fd = u32::try_from(backing.as_raw_fd()).map_err(std::io::Error::other)?;
    let mut name = [0u8; 64];
    let label = b"spdk-sim-ublk";
    name[..label.len()].copy_from_slice(label);
    let cfg = LoopConfig {
        fd,
        block_size,
        info: LoopInfo64 {
            lo_device: 0,
            lo_inode: 0,
            lo_rdevice: 0,
            lo_offset: 0,
            lo_sizelimit: 0,
            lo_number: 0,
            lo_encrypt_type: 0,
            lo_encrypt_key_size: 0,
            lo_flags: flags,
            lo_file_name: name,
            lo_crypt_name: [0; 64],
            lo_encrypt_key: [0; 32],
            lo_init: [0; 2],
        },
        reserved: [0; 8],
    };
    // SAFETY: LOOP_CONFIGURE reads one `struct loop_config`, which `cfg` is
    // (repr(C), same layout), and both fds are open for the call's duration.
    check(unsafe {
        libc::ioctl(
            dev.as_raw_fd(),
            LOOP_CONFIGURE as _,
            &cfg as *const LoopConfig,
        )
    })?;
    Ok(())
}

/// Attaches `backing` to a free loop device and returns its path.
pub fn attach(backing: &Path, block_size: u32) -> std::io::Result<PathBuf> {
    let file = OpenOptions::new().read(true).write(true).open(backing)?;
    let ctl = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/loop-control")?;
    let mut last = None;
    for _ in 0..8 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number.
        let n = check(unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE as _) })?;
        let path = PathBuf::from(format!("/dev/loop{n}"));
        let dev = OpenOptions::new().read(true).write(true).open(&path)?;
        let r = configure(&dev, &file, block_size, LO_FLAGS_DIRECT_IO).or_else(|e| {
            match e.raw_os_error() {
                Some(libc::EINVAL) => configure(&dev, &file, block_size, 0),
                _ => Err(e),
            }
        });
        match r {
            Ok(()) => return Ok(path),
            // Another process took the device between GET_FREE and CONFIGURE.
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free loop device")))
}

/// Flushes and detaches a loop device.
pub fn detach(dev_path: &Path) -> std::io::Result<()> {
    let dev = OpenOptions::new().read(true).write(true).open(dev_path)?;
    let _ = dev.sync_all();
    // SAFETY: BLKFLSBUF takes no argument on an open block device.
    let _ = unsafe { libc::ioctl(dev.as_raw_fd(), BLKFLSBUF as _, 0) };
    // SAFETY: LOOP_CLR_FD takes no argument.
    match check(unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CLR_FD as _, 0) }) {
        Ok(_) => Ok(()),
        // Already detached.
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => Ok(()),
        Err(e) => Err(e),
    }
}
