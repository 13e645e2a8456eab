//! The bdev `<ctrlr>n<nsid>` for one namespace of an attached controller.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::controller::Controller;
use crate::bdev::{Bdev, BdevKind, IoError, IoResult};
use crate::nvmf::wire::IoOp;

/// One remote namespace as a local bdev.
pub struct NvmeNs {
    ctrlr: Arc<Controller>,
    nsid: u32,
    uuid: Uuid,
    block_size: u32,
    attach_blocks: u64,
}

impl NvmeNs {
    /// The bdev for namespace `nsid` of `ctrlr`, or `None` if the target does not list it.
    pub fn new(ctrlr: Arc<Controller>, nsid: u32) -> Option<Self> {
        let ns = ctrlr.namespace(nsid)?;
        Some(Self {
            ctrlr,
            nsid,
            uuid: ns.uuid,
            block_size: ns.block_size,
            attach_blocks: ns.num_blocks,
        })
    }

    fn check(&self, offset: u64, len: u64) -> IoResult<()> {
        let bs = u64::from(self.block_size);
        let end = offset.checked_add(len).ok_or(IoError::EINVAL)?;
        if !offset.is_multiple_of(bs) || !len.is_multiple_of(bs) || end > self.size_bytes() {
            return Err(IoError::EINVAL);
        }
        Ok(())
    }
}

#[async_trait]
impl Bdev for NvmeNs {
    fn name(&self) -> String {
        format!("{}n{}", self.ctrlr.name, self.nsid)
    }
    fn aliases(&self) -> Vec<String> {
        vec![self.uuid.to_string()]
    }
    fn uuid(&self) -> Uuid {
        self.uuid
    }
    fn kind(&self) -> BdevKind {
        BdevKind::Nvme
    }
    fn product_name(&self) -> String {
        "NVMe disk".to_string()
    }
    fn block_size(&self) -> u32 {
        self.block_size
    }
    fn num_blocks(&self) -> u64 {
        self.ctrlr
            .namespace(self.nsid)
            .map(|n| n.num_blocks)
            .unwrap_or(self.attach_blocks)
    }
    fn driver_specific(&self) -> Value {
        let info = self.ctrlr.info();
        let mut ns_data = json!({"id": self.nsid, "can_share": true});
        if info.ana_reporting {
            if let Some(ns) = self.ctrlr.namespace(self.nsid) {
                ns_data["ana_state"] = json!(ns.ana_state.as_str());
            }
        }
        json!({
            "nvme": [{
                "trid": self.ctrlr.trid.to_json(),
                "ctrlr_data": {
                    "cntlid": info.cntlid,
                    "vendor_id": "0x8086",
                    "model_number": info.model_number,
                    "serial_number": info.serial_number,
                    "firmware_revision": "25.09",
                    "subnqn": info.subnqn,
                    "oacs": {"security": 0, "format": 0, "firmware": 0, "ns_manage": 0},
                    "multi_ctrlr": true,
                    "ana_reporting": info.ana_reporting
                },
                "vs": {"nvme_version": "1.4"},
                "ns_data": ns_data
            }],
            "mp_policy": "active_passive"
        })
    }
    fn supported_io_types(&self) -> Value {
        json!({
            "read": true, "write": true, "unmap": true, "flush": true, "reset": true,
            "nvme_admin": true, "nvme_io": true, "nvme_io_md": false, "write_zeroes": true,
            "zcopy": false, "get_zone_info": false, "zone_management": false,
            "zone_append": false, "compare": true, "compare_and_write": true, "abort": true,
            "seek_hole": false, "seek_data": false, "copy": true, "nvme_iov_md": false,
            "nvme_nssr": false
        })
    }
    fn extra_info(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("preferred_write_alignment".into(), json!(1));
        m.insert("preferred_write_granularity".into(), json!(1));
        m.insert("optimal_write_size".into(), json!(32));
        m.insert("preferred_unmap_alignment".into(), json!(1));
        m.insert("preferred_unmap_granularity".into(), json!(1));
        m.insert("numa_id".into(), json!(-1));
        m.insert(
            "memory_domains".into(),
            json!([{"dma_device_id": "system", "dma_device_type": 1}]),
        );
        m
    }
    async fn read(&self, offset: u64, len: u64) -> IoResult<Vec<u8>> {
        self.check(offset, len)?;
        let out = self
            .ctrlr
            .io(IoOp::Read, self.nsid, offset, len, &[])
            .await?;
        if out.len() as u64 != len {
            return Err(IoError::EIO);
        }
        Ok(out)
    }
    async fn write(&self, offset: u64, data: &[u8]) -> IoResult<()> {
        self.check(offset, data.len() as u64)?;
        self.ctrlr
            .io(IoOp::Write, self.nsid, offset, data.len() as u64, data)
            .await
            .map(|_| ())
    }
    async fn unmap(&self, offset: u64, len: u64) -> IoResult<()> {
        self.check(offset, len)?;
        self.ctrlr
            .io(IoOp::Unmap, self.nsid, offset, len, &[])
            .await
            .map(|_| ())
    }
    async fn flush(&self) -> IoResult<()> {
        self.ctrlr
            .io(IoOp::Flush, self.nsid, 0, 0, &[])
            .await
            .map(|_| ())
    }
}
