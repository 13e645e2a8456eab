//! Generic bdev methods: listing, aio and malloc bdevs, examine, I/O statistics.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::lvol::LvolDriverInfo;
use super::nvme::NvmeNamespaceInfo;
use super::raid::RaidBdev;
use crate::client::SpdkClient;
use crate::error::Result;

/// Params of `bdev_get_bdevs`; all default lists every bdev.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BdevGetBdevsParams {
    /// Only this bdev (name or alias).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Milliseconds to wait for `name` to appear.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
}

/// One bdev as listed by `bdev_get_bdevs`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Bdev {
    /// Bdev name (for lvols, the lvol UUID).
    pub name: String,
    /// Other names (for lvols, `<lvs>/<lvol>`).
    pub aliases: Vec<String>,
    /// Module description, e.g. `"Malloc disk"`, `"Logical Volume"`, `"Raid Volume"`.
    pub product_name: String,
    /// Logical block size in bytes.
    pub block_size: u32,
    /// Size in blocks.
    pub num_blocks: u64,
    /// Bdev UUID.
    pub uuid: Option<String>,
    /// Whether a module (lvstore, raid, nvmf...) has claimed the bdev.
    pub claimed: bool,
    /// Claim type when claimed, e.g. `"read_many_write_one"`.
    pub claim_type: Option<String>,
    /// Supported I/O types, e.g. `"unmap" => true`.
    pub supported_io_types: BTreeMap<String, bool>,
    /// Module-specific details.
    pub driver_specific: DriverSpecific,
}

impl Bdev {
    /// Size in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.num_blocks.saturating_mul(u64::from(self.block_size))
    }
}

/// Module-specific part of a [`Bdev`]; only the owning module's key is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DriverSpecific {
    /// Present on logical volumes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lvol: Option<LvolDriverInfo>,
    /// Present on raid bdevs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raid: Option<RaidBdev>,
    /// Present on NVMe bdevs: one entry per path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nvme: Option<Vec<NvmeNamespaceInfo>>,
    /// NVMe multipath policy, present on NVMe bdevs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mp_policy: Option<String>,
    /// Present on aio bdevs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aio: Option<AioInfo>,
}

/// aio bdev details.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AioInfo {
    /// Backing file or device.
    pub filename: String,
    /// Whether the block size was given explicitly.
    pub block_size_override: bool,
    /// Read-only bdev.
    pub readonly: bool,
    /// Unmap/write-zeroes through fallocate.
    pub fallocate: bool,
}

/// Params of `bdev_aio_create`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BdevAioCreateParams {
    /// Bdev name.
    pub name: String,
    /// Path of the backing file or block device.
    pub filename: String,
    /// Block size in bytes; detected when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_size: Option<u32>,
    /// Create read-only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readonly: Option<bool>,
    /// Support unmap/write-zeroes via fallocate (testing only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallocate: Option<bool>,
    /// UUID of the new bdev.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
}

/// Params of `bdev_aio_delete`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BdevAioDeleteParams {
    /// Bdev name.
    pub name: String,
}

/// Params of `bdev_malloc_create`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BdevMallocCreateParams {
    /// Bdev name; generated when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Number of blocks.
    pub num_blocks: u64,
    /// Block size in bytes (multiple of 512).
    pub block_size: u32,
    /// UUID of the new bdev.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Split I/O on this boundary, in blocks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optimal_io_boundary: Option<u32>,
    /// Physical block size (power of two, at least 512).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub physical_block_size: Option<u32>,
}

/// Params of `bdev_malloc_delete`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BdevMallocDeleteParams {
    /// Bdev name.
    pub name: String,
}

/// Params of `bdev_examine`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BdevExamineParams {
    /// Bdev to examine (lvstores, raid superblocks on it are loaded).
    pub name: String,
}

/// Params of `bdev_get_iostat`; all default reports every bdev.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BdevGetIostatParams {
    /// Only this bdev.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Report per channel (thread) instead of totals; needs `name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_channel: Option<bool>,
    /// Reset after reading: `"all"`, `"maxmin"` or `"none"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reset_mode: Option<String>,
}

/// Result of `bdev_get_iostat`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BdevIostat {
    /// Ticks per second.
    pub tick_rate: u64,
    /// Current tick count.
    pub ticks: u64,
    /// Per-bdev totals (when `per_channel` is not set).
    pub bdevs: Vec<IoStats>,
    /// The bdev name (when `per_channel` is set).
    pub name: Option<String>,
    /// Per-channel figures (when `per_channel` is set).
    pub channels: Vec<IoStats>,
}

/// I/O counters of one bdev or one channel.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IoStats {
    /// Bdev name (per-bdev entries).
    pub name: Option<String>,
    /// SPDK thread id (per-channel entries).
    pub thread_id: Option<u64>,
    /// Bytes read.
    pub bytes_read: u64,
    /// Read operations.
    pub num_read_ops: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Write operations.
    pub num_write_ops: u64,
    /// Bytes unmapped.
    pub bytes_unmapped: u64,
    /// Unmap operations.
    pub num_unmap_ops: u64,
    /// Bytes copied.
    pub bytes_copied: u64,
    /// Copy operations.
    pub num_copy_ops: u64,
    /// Sum of read latencies, in ticks.
    pub read_latency_ticks: u64,
    /// Largest read latency, in ticks.
    pub max_read_latency_ticks: u64,
    /// Smallest read latency, in ticks.
    pub min_read_latency_ticks: u64,
    /// Sum of write latencies, in ticks.
    pub write_latency_ticks: u64,
    /// Largest write latency, in ticks.
    pub max_write_latency_ticks: u64,
    /// Smallest write latency, in ticks.
    pub min_write_latency_ticks: u64,
    /// Sum of unmap latencies, in ticks.
    pub unmap_latency_ticks: u64,
    /// Error counts by error type, when collected.
    pub io_error: BTreeMap<String, u64>,
}

impl SpdkClient {
    /// `bdev_get_bdevs`: lists bdevs. A missing `name` fails with NotFound.
    pub async fn bdev_get_bdevs(&self, params: &BdevGetBdevsParams) -> Result<Vec<Bdev>> {
        self.call_opt("bdev_get_bdevs", params).await
    }

    /// Looks up one bdev by name or alias; `Ok(None)` when it does not exist.
    pub async fn bdev_get(&self, name: &str) -> Result<Option<Bdev>> {
        let params = BdevGetBdevsParams {
            name: Some(name.to_owned()),
            timeout: None,
        };
        match self.bdev_get_bdevs(&params).await {
            Ok(bdevs) => Ok(bdevs.into_iter().next()),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `bdev_aio_create`: returns the new bdev's name.
    pub async fn bdev_aio_create(&self, params: &BdevAioCreateParams) -> Result<String> {
        self.call("bdev_aio_create", Some(params)).await
    }

    /// `bdev_aio_delete`.
    pub async fn bdev_aio_delete(&self, params: &BdevAioDeleteParams) -> Result<()> {
        self.call_unit("bdev_aio_delete", Some(params)).await
    }

    /// `bdev_malloc_create`: returns the new bdev's name.
    pub async fn bdev_malloc_create(&self, params: &BdevMallocCreateParams) -> Result<String> {
        self.call("bdev_malloc_create", Some(params)).await
    }

    /// `bdev_malloc_delete`.
    pub async fn bdev_malloc_delete(&self, params: &BdevMallocDeleteParams) -> Result<()> {
        self.call_unit("bdev_malloc_delete", Some(params)).await
    }

    /// `bdev_wait_for_examine`: returns once examine of all bdevs finished.
    pub async fn bdev_wait_for_examine(&self) -> Result<()> {
        self.call_unit::<()>("bdev_wait_for_examine", None).await
    }

    /// `bdev_examine`: examines one bdev explicitly (needed only when
    /// `bdev_auto_examine` is off).
    pub async fn bdev_examine(&self, params: &BdevExamineParams) -> Result<()> {
        self.call_unit("bdev_examine", Some(params)).await
    }

    /// `bdev_get_iostat`.
    pub async fn bdev_get_iostat(&self, params: &BdevGetIostatParams) -> Result<BdevIostat> {
        self.call_opt("bdev_get_iostat", params).await
    }
}

/// Params of `bdev_enable_histogram` (SPDK v25.05+: `opc`, `granularity`,
/// `min_nsec`, `max_nsec`).
///
/// Channels (threads) that open the bdev after the histogram was enabled
/// get SPDK's *default* histogram (granularity 7, every value from 0 to
/// `u64::MAX`), and `bdev_get_histogram` silently leaves out every channel
/// whose layout differs from the bdev's. [`BdevEnableHistogramParams::full_range`]
/// asks for exactly that default layout, so no channel's I/O goes missing;
/// SPDK's own defaults (1 µs to 120 s) would lose them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BdevEnableHistogramParams {
    /// Bdev name.
    pub name: String,
    /// Collect (`true`) or stop collecting and free the data (`false`).
    pub enable: bool,
    /// Only this I/O type (`"read"`, `"write"`, `"unmap"`, ...); every type when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opc: Option<String>,
    /// Buckets per power-of-two range are `2^granularity` (SPDK's default 7).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub granularity: Option<u8>,
    /// Lowest latency tracked, in nanoseconds (lower ones land in the first bucket).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_nsec: Option<u64>,
    /// Highest latency tracked, in nanoseconds (higher ones land in the last bucket).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_nsec: Option<u64>,
}

impl BdevEnableHistogramParams {
    /// Enables a histogram of every I/O type of `name` with the layout SPDK
    /// gives channels opened later (granularity 7, 0 ns to `u64::MAX`), so
    /// `bdev_get_histogram` merges every channel.
    pub fn full_range(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            enable: true,
            opc: None,
            granularity: Some(crate::histogram::DEFAULT_GRANULARITY),
            min_nsec: Some(0),
            max_nsec: Some(u64::MAX),
        }
    }
}

/// Params of `bdev_get_histogram`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BdevGetHistogramParams {
    /// Bdev name.
    pub name: String,
}

/// Result of `bdev_get_histogram`: the raw histogram, decoded by
/// [`crate::histogram::LatencyHistogram::decode`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BdevHistogram {
    /// Base64 of the bucket counts: little-endian `u64`s, `2^granularity`
    /// per range, ranges `min_range..=max_range`.
    pub histogram: String,
    /// Buckets per range are `2^granularity`.
    pub granularity: u32,
    /// First range present.
    pub min_range: u32,
    /// Last range present.
    pub max_range: u32,
    /// Ticks per second (latencies are counted in ticks).
    pub tsc_rate: u64,
}

impl SpdkClient {
    /// `bdev_enable_histogram`: starts (or stops) collecting a latency
    /// histogram on a bdev. A bdev created again starts without one.
    pub async fn bdev_enable_histogram(&self, params: &BdevEnableHistogramParams) -> Result<()> {
        self.call_unit("bdev_enable_histogram", Some(params)).await
    }

    /// `bdev_get_histogram`: the bdev's latency histogram, merged over its
    /// open channels (counts of closed channels are gone). Fails on a bdev
    /// whose histogram was never enabled (v25.09: -12 "Cannot allocate memory").
    pub async fn bdev_get_histogram(
        &self,
        params: &BdevGetHistogramParams,
    ) -> Result<BdevHistogram> {
        self.call("bdev_get_histogram", Some(params)).await
    }
}
