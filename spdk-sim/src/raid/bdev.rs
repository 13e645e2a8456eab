//! The raid as a registered bdev ("Raid Volume").

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::volume::Raid;
use crate::bdev::{Bdev, BdevKind, IoResult};
use crate::nvmf::lock;

/// A raid1 volume seen through the [`Bdev`] trait.
pub struct RaidBdev(pub Arc<Raid>);

#[async_trait]
impl Bdev for RaidBdev {
    fn name(&self) -> String {
        self.0.name.clone()
    }
    fn aliases(&self) -> Vec<String> {
        vec![self.uuid().to_string()]
    }
    fn uuid(&self) -> Uuid {
        lock(&self.0.st).uuid
    }
    fn kind(&self) -> BdevKind {
        BdevKind::Raid
    }
    fn product_name(&self) -> String {
        "Raid Volume".to_string()
    }
    fn block_size(&self) -> u32 {
        lock(&self.0.st).block_size
    }
    fn num_blocks(&self) -> u64 {
        self.0.follow_base_resize()
    }
    fn driver_specific(&self) -> Value {
        json!({ "raid": self.0.to_json(false) })
    }
    fn supported_io_types(&self) -> Value {
        json!({
            "read": true, "write": true, "unmap": true, "flush": false, "reset": true,
            "nvme_admin": false, "nvme_io": false, "nvme_io_md": false, "write_zeroes": true,
            "zcopy": false, "get_zone_info": false, "zone_management": false,
            "zone_append": false, "compare": false, "compare_and_write": false, "abort": false,
            "seek_hole": false, "seek_data": false, "copy": false, "nvme_iov_md": false,
            "nvme_nssr": false
        })
    }
    fn extra_info(&self) -> Map<String, Value> {
        let mut m = Map::new();
        let domains = self.0.memory_domains();
        if !domains.is_empty() {
            m.insert("memory_domains".into(), Value::Array(domains));
        }
        m
    }
    async fn read(&self, offset: u64, len: u64) -> IoResult<Vec<u8>> {
        self.0.read(offset, len).await
    }
    async fn write(&self, offset: u64, data: &[u8]) -> IoResult<()> {
        self.0.write(offset, data).await
    }
    async fn unmap(&self, offset: u64, len: u64) -> IoResult<()> {
        self.0.unmap(offset, len).await
    }
    async fn flush(&self) -> IoResult<()> {
        self.0.flush().await
    }
}
