//! `bdev_null`: a bdev of any size that stores nothing. Writes are dropped
//! and reads return zeroes (SPDK leaves the buffer as it was; the sim fills
//! it with zeroes so tests are deterministic).

use async_trait::async_trait;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::bdev::{Bdev, BdevKind, IoError, IoResult};

/// A null bdev.
pub struct NullBdev {
    name: String,
    uuid: Uuid,
    block_size: u32,
    num_blocks: u64,
}

impl NullBdev {
    /// A null bdev of `num_blocks` blocks of `block_size` bytes.
    pub fn new(name: String, uuid: Uuid, block_size: u32, num_blocks: u64) -> Self {
        Self {
            name,
            uuid,
            block_size,
            num_blocks,
        }
    }
}

#[async_trait]
impl Bdev for NullBdev {
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
        BdevKind::Null
    }
    fn product_name(&self) -> String {
        "Null disk".into()
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
        crate::base::io_types(&["read", "write", "reset", "write_zeroes", "abort"])
    }
    async fn read(&self, offset: u64, len: u64) -> IoResult<Vec<u8>> {
        crate::base::check_range(self.block_size, self.size_bytes(), offset, len)?;
        Ok(vec![
            0u8;
            usize::try_from(len).map_err(|_| IoError::EINVAL)?
        ])
    }
    async fn write(&self, offset: u64, data: &[u8]) -> IoResult<()> {
        crate::base::check_range(
            self.block_size,
            self.size_bytes(),
            offset,
            data.len() as u64,
        )
    }
}
