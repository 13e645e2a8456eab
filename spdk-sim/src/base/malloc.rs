//! `bdev_malloc`: a RAM disk. Its contents vanish with the process, as in SPDK.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::bdev::{Bdev, BdevKind, IoError, IoResult};

/// Bytes per lazily allocated chunk; untouched chunks read as zeroes.
const CHUNK: u64 = 64 * 1024;

/// A malloc bdev with sparse in-memory storage.
pub struct MallocBdev {
    name: String,
    uuid: Uuid,
    block_size: u32,
    num_blocks: u64,
    chunks: Mutex<HashMap<u64, Box<[u8]>>>,
}

impl MallocBdev {
    /// A zero-filled malloc bdev.
    pub fn new(name: String, uuid: Uuid, block_size: u32, num_blocks: u64) -> Self {
        Self {
            name,
            uuid,
            block_size,
            num_blocks,
            chunks: Mutex::new(HashMap::new()),
        }
    }

    fn check(&self, offset: u64, len: u64) -> IoResult<()> {
        crate::base::check_range(self.block_size, self.size_bytes(), offset, len)
    }
}

/// `memory_domains` as spdk_tgt reports them for malloc bdevs (and lvols on them).
pub fn memory_domains() -> Value {
    json!([
        {"dma_device_id": "system", "dma_device_type": 1},
        {"dma_device_id": "SPDK_ACCEL_DMA_DEVICE", "dma_device_type": 2}
    ])
}

#[async_trait]
impl Bdev for MallocBdev {
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
        BdevKind::Malloc
    }
    fn product_name(&self) -> String {
        "Malloc disk".into()
    }
    fn block_size(&self) -> u32 {
        self.block_size
    }
    fn num_blocks(&self) -> u64 {
        self.num_blocks
    }
    fn driver_specific(&self) -> Value {
        json!({})
    }
    fn supported_io_types(&self) -> Value {
        crate::base::io_types(&[
            "read",
            "write",
            "unmap",
            "flush",
            "reset",
            "write_zeroes",
            "zcopy",
            "abort",
            "copy",
        ])
    }
    fn extra_info(&self) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        m.insert("memory_domains".into(), memory_domains());
        m
    }
    async fn read(&self, offset: u64, len: u64) -> IoResult<Vec<u8>> {
        self.check(offset, len)?;
        let mut out = vec![0u8; usize::try_from(len).map_err(|_| IoError::EINVAL)?];
        let chunks = self.chunks.lock().map_err(|_| IoError::EIO)?;
        let mut pos = offset;
        while pos < offset + len {
            let idx = pos / CHUNK;
            let within = pos % CHUNK;
            let n = (CHUNK - within).min(offset + len - pos);
            if let Some(c) = chunks.get(&idx) {
                let dst = (pos - offset) as usize;
                out[dst..dst + n as usize]
                    .copy_from_slice(&c[within as usize..(within + n) as usize]);
            }
            pos += n;
        }
        Ok(out)
    }
    async fn write(&self, offset: u64, data: &[u8]) -> IoResult<()> {
        self.check(offset, data.len() as u64)?;
        let mut chunks = self.chunks.lock().map_err(|_| IoError::EIO)?;
        let end = offset + data.len() as u64;
        let mut pos = offset;
        while pos < end {
            let idx = pos / CHUNK;
            let within = pos % CHUNK;
            let n = (CHUNK - within).min(end - pos);
            let src = &data[(pos - offset) as usize..(pos - offset + n) as usize];
            if let Some(c) = chunks.get_mut(&idx) {
                c[within as usize..(within + n) as usize].copy_from_slice(src);
            } else if src.iter().any(|b| *b != 0) {
                let mut c = vec![0u8; CHUNK as usize].into_boxed_slice();
                c[within as usize..(within + n) as usize].copy_from_slice(src);
                chunks.insert(idx, c);
            }
            pos += n;
        }
        Ok(())
    }
    async fn unmap(&self, offset: u64, len: u64) -> IoResult<()> {
        self.check(offset, len)?;
        let zeroes = vec![0u8; usize::try_from(len).map_err(|_| IoError::EINVAL)?];
        self.write(offset, &zeroes).await
    }
}
