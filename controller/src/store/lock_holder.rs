//! Who holds the `flock` on a file, from Linux's `/proc/locks`, so that a
//! refused open of the embedded store can name the other controller.
//!
//! Our own code rather than the `procfs` crate: it is one table lookup, and
//! the crate would pull in far more than it.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Describes the process holding a `flock` on `path` (`pid 123 (shorthorn)`),
/// or `another process` when `/proc/locks` does not say.
pub(crate) fn describe_flock_holder(path: &Path) -> String {
    flock_holder_pid(path)
        .map(describe_pid)
        .unwrap_or_else(|| "another process".to_string())
}

fn flock_holder_pid(path: &Path) -> Option<u32> {
    let meta = std::fs::metadata(path).ok()?;
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    find_flock_holder(
        &locks,
        dev_major(meta.dev()),
        dev_minor(meta.dev()),
        meta.ino(),
    )
}

fn describe_pid(pid: u32) -> String {
    if pid == std::process::id() {
        return format!("pid {pid} (this process)");
    }
    match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        Ok(comm) => format!("pid {pid} ({})", comm.trim()),
        Err(_) => format!("pid {pid}"),
    }
}

/// The pid owning the granted `FLOCK` on (major, minor, inode) in a
/// `/proc/locks` listing. Lines look like
/// `1: FLOCK  ADVISORY  WRITE 2345 fd:01:123456 0 EOF`; waiters (`1: -> FLOCK ...`)
/// and pid 0 (a holder in another PID namespace) are skipped.
fn find_flock_holder(locks: &str, major: u64, minor: u64, inode: u64) -> Option<u32> {
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) != Some(&"FLOCK") {
            return None;
        }
        let pid: u32 = fields.get(4)?.parse().ok()?;
        let mut id = fields.get(5)?.split(':');
        let maj = u64::from_str_radix(id.next()?, 16).ok()?;
        let min = u64::from_str_radix(id.next()?, 16).ok()?;
        let ino: u64 = id.next()?.parse().ok()?;
        (pid != 0 && (maj, min, ino) == (major, minor, inode)).then_some(pid)
    })
}

/// Major number of a userspace `st_dev` (glibc's `gnu_dev_major`).
fn dev_major(dev: u64) -> u64 {
    ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff)
}

/// Minor number of a userspace `st_dev` (glibc's `gnu_dev_minor`).
fn dev_minor(dev: u64) -> u64 {
    (dev & 0xff) | ((dev >> 12) & !0xff)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCKS: &str = "\
1: POSIX  ADVISORY  WRITE 900 fd:01:77 0 EOF
2: FLOCK  ADVISORY  WRITE 0 fd:01:55 0 EOF
3: FLOCK  ADVISORY  WRITE 4321 fd:01:123456 0 EOF
3: -> FLOCK  ADVISORY  WRITE 999 fd:01:123456 0 EOF
4: FLOCK  ADVISORY  WRITE 1111 103:02:123456 0 EOF
";

    #[test]
    fn finds_the_granted_flock_of_the_file_only() {
        assert_eq!(find_flock_holder(LOCKS, 0xfd, 1, 123456), Some(4321));
        assert_eq!(find_flock_holder(LOCKS, 0x103, 2, 123456), Some(1111));
        // A POSIX lock is not a flock; pid 0 says nothing; unknown inode.
        assert_eq!(find_flock_holder(LOCKS, 0xfd, 1, 77), None);
        assert_eq!(find_flock_holder(LOCKS, 0xfd, 1, 55), None);
        assert_eq!(find_flock_holder(LOCKS, 0xfd, 1, 1), None);
    }

    #[test]
    fn splits_userspace_device_numbers() {
        // major 253, minor 1 (a device-mapper disk); major 259, minor 300 (big numbers).
        assert_eq!((dev_major(0xfd01), dev_minor(0xfd01)), (253, 1));
        let big = (300 & 0xff) | (259 << 8) | ((300 & !0xff) << 12);
        assert_eq!((dev_major(big), dev_minor(big)), (259, 300));
    }

    #[test]
    fn names_this_process_when_it_holds_the_lock() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.redb");
        // redb takes the exclusive flock while the database is open.
        let _db = redb::Database::create(&path).expect("create");
        let holder = describe_flock_holder(&path);
        assert!(holder.contains("this process"), "{holder}");
    }
}
