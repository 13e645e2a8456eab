//! A FUSE filesystem with one regular file, `disk`, whose bytes are a bdev.
//! Reads and writes at any offset and length (read-modify-write for partial
//! blocks); flush and fsync flush the bdev.

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyWrite,
    Request, WriteFlags,
};
use tokio::runtime::Handle;

use crate::bdev::{Bdev, IoError, IoResult};

/// Name of the single file.
pub const DISK_FILE: &str = "disk";
const DISK_INO: INodeNo = INodeNo(2);
const TTL: Duration = Duration::from_secs(1);

/// The filesystem: one bdev, driven from FUSE threads through the sim's runtime.
pub struct BdevFs {
    bdev: Arc<dyn Bdev>,
    rt: Handle,
}

impl BdevFs {
    /// Serves `bdev`, running its I/O on `rt`.
    pub fn new(bdev: Arc<dyn Bdev>, rt: Handle) -> Self {
        Self { bdev, rt }
    }

    fn attr(&self, ino: INodeNo) -> FileAttr {
        let now = SystemTime::now();
        let (kind, perm, size, nlink) = if ino == DISK_INO {
            (FileType::RegularFile, 0o600, self.bdev.size_bytes(), 1)
        } else {
            (FileType::Directory, 0o755, 0, 2)
        };
        FileAttr {
            ino,
            size,
            blocks: size.div_ceil(512),
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
            kind,
            perm,
            nlink,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: self.bdev.block_size(),
            flags: 0,
        }
    }

    /// Reads any byte range (clamped to the device size).
    fn read_range(&self, offset: u64, size: u64) -> IoResult<Vec<u8>> {
        let dev = self.bdev.size_bytes();
        if offset >= dev {
            return Ok(Vec::new());
        }
        let size = size.min(dev - offset);
        let bs = u64::from(self.bdev.block_size());
        let start = offset / bs * bs;
        let end = (offset + size).div_ceil(bs) * bs;
        let data = self.rt.block_on(self.bdev.read(start, end - start))?;
        let from = usize::try_from(offset - start).map_err(|_| IoError::EINVAL)?;
        let to = from + usize::try_from(size).map_err(|_| IoError::EINVAL)?;
        Ok(data.get(from..to).ok_or(IoError::EIO)?.to_vec())
    }

    /// Writes any byte range inside the device, merging partial blocks.
    fn write_range(&self, offset: u64, data: &[u8]) -> IoResult<()> {
        let len = data.len() as u64;
        if offset
            .checked_add(len)
            .is_none_or(|e| e > self.bdev.size_bytes())
        {
            return Err(IoError(-28));
        }
        let bs = u64::from(self.bdev.block_size());
        if offset.is_multiple_of(bs) && len.is_multiple_of(bs) {
            return self.rt.block_on(self.bdev.write(offset, data));
        }
        let start = offset / bs * bs;
        let end = (offset + len).div_ceil(bs) * bs;
        let mut buf = self.rt.block_on(self.bdev.read(start, end - start))?;
        let from = usize::try_from(offset - start).map_err(|_| IoError::EINVAL)?;
        buf.get_mut(from..from + data.len())
            .ok_or(IoError::EIO)?
            .copy_from_slice(data);
        self.rt.block_on(self.bdev.write(start, &buf))
    }
}

fn errno(e: IoError) -> Errno {
    Errno::from_i32(e.0.abs())
}

impl Filesystem for BdevFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if parent == INodeNo::ROOT && name == DISK_FILE {
            reply.entry(&TTL, &self.attr(DISK_INO), Generation(0));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if ino == INodeNo::ROOT || ino == DISK_INO {
            reply.attr(&TTL, &self.attr(ino));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // The size is the bdev's; other attributes are fixed.
        reply.attr(&TTL, &self.attr(ino));
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if ino == DISK_INO {
            reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO);
        } else {
            reply.error(Errno::EISDIR);
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.read_range(offset, u64::from(size)) {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.write_range(offset, data) {
            Ok(()) => reply.written(u32::try_from(data.len()).unwrap_or(u32::MAX)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        match self.rt.block_on(self.bdev.flush()) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.rt.block_on(self.bdev.flush()) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if ino != INodeNo::ROOT {
            reply.error(Errno::ENOTDIR);
            return;
        }
        let entries = [
            (INodeNo::ROOT, FileType::Directory, "."),
            (INodeNo::ROOT, FileType::Directory, ".."),
            (DISK_INO, FileType::RegularFile, DISK_FILE),
        ];
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(*ino, (i + 1) as u64, *kind, name) {
                break;
            }
        }
        reply.ok();
    }
}
