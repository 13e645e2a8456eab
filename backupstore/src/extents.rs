//! Reading a sparse file's data with `SEEK_DATA`/`SEEK_HOLE`, as backup
//! blocks: the file a snapshot was shallow-copied into holds exactly that
//! snapshot's allocated clusters as data extents.

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;

use nix::unistd::{lseek, Whence};

use crate::format::DEFAULT_BLOCK_SIZE;

/// The file's data extents as `(offset, length)`, in order.
pub fn data_extents(file: &File) -> std::io::Result<Vec<(u64, u64)>> {
    let len = file.metadata()?.len() as i64;
    let mut out = Vec::new();
    let mut pos: i64 = 0;
    while pos < len {
        let start = match lseek(file.as_fd(), pos, Whence::SeekData) {
            Ok(s) => s,
            Err(nix::errno::Errno::ENXIO) => break, // no data after pos
            Err(e) => return Err(e.into()),
        };
        let end = lseek(file.as_fd(), start, Whence::SeekHole)?;
        if end > start {
            out.push((start as u64, (end - start) as u64));
        }
        pos = end;
    }
    Ok(out)
}

/// The offsets of the 2 MiB blocks that overlap a data extent.
pub fn data_block_offsets(extents: &[(u64, u64)]) -> Vec<u64> {
    let bs = DEFAULT_BLOCK_SIZE;
    let mut out: Vec<u64> = Vec::new();
    for &(off, len) in extents {
        let first = off / bs;
        let last = (off + len - 1) / bs;
        for b in first..=last {
            if out.last() != Some(&(b * bs)) {
                out.push(b * bs);
            }
        }
    }
    out
}

/// Iterates the file's data as whole 2 MiB blocks `(offset, bytes)`,
/// skipping blocks that are entirely holes. A block past the end of the file
/// is padded with zeros.
pub fn data_blocks(
    file: File,
) -> std::io::Result<impl Iterator<Item = std::io::Result<(u64, Vec<u8>)>>> {
    let offsets = data_block_offsets(&data_extents(&file)?);
    Ok(offsets.into_iter().map(move |off| {
        let mut buf = vec![0u8; DEFAULT_BLOCK_SIZE as usize];
        let mut done = 0;
        while done < buf.len() {
            let n = file.read_at(&mut buf[done..], off + done as u64)?;
            if n == 0 {
                break;
            }
            done += n;
        }
        Ok((off, buf))
    }))
}
