//! `bdev_aio`: a bdev on a regular file. A write is acknowledged only once
//! `pwrite` returned (the data is in the file); `flush` is `fdatasync`.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::bdev::{Bdev, BdevKind, IoError, IoResult};

/// An aio bdev backed by one open file.
pub struct AioBdev {
    name: String,
    uuid: Uuid,
    filename: String,
    block_size: u32,
    block_size_override: bool,
    readonly: bool,
    fallocate: bool,
    num_blocks: AtomicU64,
    file: Arc<File>,
}

/// How to open an aio bdev (the `bdev_aio_create` params after checks).
pub struct AioOptions {
    /// Bdev name.
    pub name: String,
    /// Backing file path.
    pub filename: String,
    /// Block size, if given.
    pub block_size: Option<u32>,
    /// Open read-only.
    pub readonly: bool,
    /// Unmap with fallocate(PUNCH_HOLE).
    pub fallocate: bool,
    /// Fixed UUID, if given.
    pub uuid: Option<Uuid>,
}

impl AioBdev {
    /// Opens the file; fails with the negated errno of `open(2)`.
    pub fn open(opts: AioOptions) -> Result<Self, i32> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(!opts.readonly)
            .open(PathBuf::from(&opts.filename))
            .map_err(|e| -e.raw_os_error().unwrap_or(5))?;
        let block_size = opts.block_size.unwrap_or(512);
        let len = file
            .metadata()
            .map_err(|e| -e.raw_os_error().unwrap_or(5))?
            .len();
        Ok(Self {
            name: opts.name,
            uuid: opts.uuid.unwrap_or_else(Uuid::new_v4),
            filename: opts.filename,
            block_size,
            block_size_override: opts.block_size.is_some(),
            readonly: opts.readonly,
            fallocate: opts.fallocate,
            num_blocks: AtomicU64::new(len / u64::from(block_size)),
            file: Arc::new(file),
        })
    }

    /// Re-reads the file size (`bdev_aio_rescan`).
    pub fn rescan(&self) -> Result<(), i32> {
        let len = self
            .file
            .metadata()
            .map_err(|e| -e.raw_os_error().unwrap_or(5))?
            .len();
        self.num_blocks
            .store(len / u64::from(self.block_size), Ordering::SeqCst);
        Ok(())
    }

    fn io_error(e: std::io::Error) -> IoError {
        tracing::warn!(error = %e, "aio I/O failed");
        IoError(-e.raw_os_error().unwrap_or(5))
    }
}

#[async_trait]
impl Bdev for AioBdev {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn aliases(&self) -> Vec<String> {
        vec![self.uuid.to_string()]
    }
    fn uuid(&self) -> Uuid {
        self.uuid
    }
    fn kind(&self) -> BdevKind {
        BdevKind::Aio
    }
    fn product_name(&self) -> String {
        "AIO disk".into()
    }
    fn block_size(&self) -> u32 {
        self.block_size
    }
    fn num_blocks(&self) -> u64 {
        self.num_blocks.load(Ordering::SeqCst)
    }
    fn driver_specific(&self) -> Value {
        json!({"aio": {
            "filename": self.filename,
            "block_size_override": self.block_size_override,
            "readonly": self.readonly,
            "fallocate": self.fallocate,
        }})
    }
    fn supported_io_types(&self) -> Value {
        let mut t = vec!["read", "flush", "reset"];
        if !self.readonly {
            t.extend(["write", "write_zeroes"]);
        }
        if self.fallocate {
            t.push("unmap");
        }
        crate::base::io_types(&t)
    }
    async fn read(&self, offset: u64, len: u64) -> IoResult<Vec<u8>> {
        crate::base::check_range(self.block_size, self.size_bytes(), offset, len)?;
        let file = self.file.clone();
        let n = usize::try_from(len).map_err(|_| IoError::EINVAL)?;
        tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; n];
            let mut done = 0;
            while done < n {
                match file.read_at(&mut buf[done..], offset + done as u64) {
                    Ok(0) => break, // past EOF reads as zeroes
                    Ok(k) => done += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(Self::io_error(e)),
                }
            }
            Ok(buf)
        })
        .await
        .map_err(|_| IoError::EIO)?
    }
    async fn write(&self, offset: u64, data: &[u8]) -> IoResult<()> {
        if self.readonly {
            return Err(IoError::EIO);
        }
        crate::base::check_range(
            self.block_size,
            self.size_bytes(),
            offset,
            data.len() as u64,
        )?;
        let file = self.file.clone();
        let data = data.to_vec();
        tokio::task::spawn_blocking(move || {
            file.write_all_at(&data, offset).map_err(Self::io_error)
        })
        .await
        .map_err(|_| IoError::EIO)?
    }
    async fn unmap(&self, offset: u64, len: u64) -> IoResult<()> {
        if !self.fallocate || self.readonly {
            return Err(IoError::EINVAL);
        }
        crate::base::check_range(self.block_size, self.size_bytes(), offset, len)?;
        let zeroes = vec![0u8; usize::try_from(len).map_err(|_| IoError::EINVAL)?];
        self.write(offset, &zeroes).await
    }
    async fn flush(&self) -> IoResult<()> {
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || file.sync_data().map_err(Self::io_error))
            .await
            .map_err(|_| IoError::EIO)?
    }
}
