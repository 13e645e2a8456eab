//! Null bdevs: a bdev of any size that stores nothing (writes are dropped,
//! reads return whatever the buffer held). A placeholder member for a raid1
//! that must start with fewer real members than SPDK's minimum of two.

use serde::{Deserialize, Serialize};

use crate::client::SpdkClient;
use crate::error::Result;

/// Params of `bdev_null_create`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BdevNullCreateParams {
    /// Bdev name.
    pub name: String,
    /// Size in blocks (more than 0).
    pub num_blocks: u64,
    /// Block size in bytes (a multiple of 512).
    pub block_size: u32,
    /// UUID of the new bdev.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Physical block size in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub physical_block_size: Option<u32>,
    /// Metadata size per block (0, 8, 16, 32, 64 or 128).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub md_size: Option<u32>,
}

/// Params of `bdev_null_delete`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BdevNullDeleteParams {
    /// Bdev name.
    pub name: String,
}

impl SpdkClient {
    /// `bdev_null_create`: returns the new bdev's name. A name in use gives
    /// AlreadyExists (-17); zero blocks or a bad block size InvalidArgument (-22).
    pub async fn bdev_null_create(&self, params: &BdevNullCreateParams) -> Result<String> {
        self.call("bdev_null_create", Some(params)).await
    }

    /// `bdev_null_delete`: a missing bdev gives NotFound (-19).
    pub async fn bdev_null_delete(&self, params: &BdevNullDeleteParams) -> Result<()> {
        self.call_unit("bdev_null_delete", Some(params)).await
    }
}
