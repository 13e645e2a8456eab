//! The block-device layer: the [`Bdev`] trait that every bdev kind (malloc,
//! aio, lvol, raid, nvme) implements, and the [`BdevRegistry`] that names them.
//!
//! This module is the seam between the storage model (lvstores, lvols) and
//! the network side (NVMe-oF target and initiator, raid, ublk). Change it
//! only additively.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::Value;
use uuid::Uuid;

use crate::histogram::{Histogram, IoType};

/// An I/O failure, as a negated errno (e.g. -5 EIO, -28 ENOSPC, -6 ENXIO).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("I/O failed with errno {0}")]
pub struct IoError(pub i32);

impl IoError {
    /// -5 EIO: the device failed the I/O.
    pub const EIO: IoError = IoError(-5);
    /// -28 ENOSPC: a thin lvstore ran out of clusters.
    pub const ENOSPC: IoError = IoError(-28);
    /// -6 ENXIO: the device is gone.
    pub const ENXIO: IoError = IoError(-6);
    /// -22 EINVAL: the I/O is out of range or misaligned.
    pub const EINVAL: IoError = IoError(-22);
}

/// Result of one bdev I/O.
pub type IoResult<T> = Result<T, IoError>;

/// Which kind of bdev module owns a bdev; drives `product_name` and the
/// shape of `driver_specific` in `bdev_get_bdevs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BdevKind {
    /// `bdev_malloc_create`.
    Malloc,
    /// `bdev_aio_create`.
    Aio,
    /// An lvol or lvol snapshot.
    Lvol,
    /// `bdev_raid_create`.
    Raid,
    /// A namespace of a controller attached with `bdev_nvme_attach_controller`.
    Nvme,
    /// `bdev_null_create`.
    Null,
}

/// One block device.
///
/// Offsets and lengths are in bytes and must be multiples of
/// [`Bdev::block_size`]; implementations return [`IoError::EINVAL`] otherwise.
#[async_trait]
pub trait Bdev: Send + Sync {
    /// The bdev's name (for lvols: the lvol UUID).
    fn name(&self) -> String;
    /// Extra names the bdev answers to (for lvols: `<lvs>/<lvol>`).
    fn aliases(&self) -> Vec<String>;
    /// The bdev's UUID.
    fn uuid(&self) -> Uuid;
    /// Which module owns it.
    fn kind(&self) -> BdevKind;
    /// `product_name` in `bdev_get_bdevs` ("Malloc disk", "AIO disk", "Logical Volume", "Raid Volume", "NVMe disk").
    fn product_name(&self) -> String;
    /// Logical block size in bytes.
    fn block_size(&self) -> u32;
    /// Size in blocks.
    fn num_blocks(&self) -> u64;
    /// The `driver_specific` object of `bdev_get_bdevs`.
    fn driver_specific(&self) -> Value;
    /// The `supported_io_types` object of `bdev_get_bdevs`.
    fn supported_io_types(&self) -> Value;
    /// Extra top-level members of this bdev's `bdev_get_bdevs` entry
    /// (e.g. `memory_domains`), merged after the common ones.
    fn extra_info(&self) -> serde_json::Map<String, Value> {
        serde_json::Map::new()
    }
    /// Reads `len` bytes at `offset`.
    async fn read(&self, offset: u64, len: u64) -> IoResult<Vec<u8>>;
    /// Writes `data` at `offset`. Durable once it returns for file-backed bdevs
    /// (the sim acknowledges a write only after it reached the file).
    async fn write(&self, offset: u64, data: &[u8]) -> IoResult<()>;
    /// Deallocates a byte range (reads back as zeroes where the bdev supports it).
    async fn unmap(&self, offset: u64, len: u64) -> IoResult<()> {
        let _ = (offset, len);
        Err(IoError::EINVAL)
    }
    /// Makes earlier writes durable.
    async fn flush(&self) -> IoResult<()> {
        Ok(())
    }
    /// SPDK's `optimal_io_boundary` in blocks (0: none). lvols set it to
    /// their cluster size; a raid superblock's data offset is rounded up to it.
    fn optimal_io_boundary(&self) -> u64 {
        0
    }
    /// Size in bytes.
    fn size_bytes(&self) -> u64 {
        self.num_blocks() * u64::from(self.block_size())
    }
}

/// Per-bdev I/O counters for `bdev_get_iostat`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IoStat {
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
    /// Ticks spent in reads (the sim's tick is one nanosecond).
    pub read_latency_ticks: u64,
    /// Ticks spent in writes.
    pub write_latency_ticks: u64,
    /// Ticks spent in unmaps.
    pub unmap_latency_ticks: u64,
    /// Longest read, in ticks.
    pub max_read_latency_ticks: u64,
    /// Shortest read, in ticks (0 before the first read).
    pub min_read_latency_ticks: u64,
    /// Longest write, in ticks.
    pub max_write_latency_ticks: u64,
    /// Shortest write, in ticks (0 before the first write).
    pub min_write_latency_ticks: u64,
    /// Longest unmap, in ticks.
    pub max_unmap_latency_ticks: u64,
    /// Shortest unmap, in ticks (0 before the first unmap).
    pub min_unmap_latency_ticks: u64,
    /// I/Os that completed with an error: SPDK's `io_error.failed`.
    pub failed_ops: u64,
}

/// Folds one latency sample into a (total, max, min) triple.
fn add_latency(total: &mut u64, max: &mut u64, min: &mut u64, ticks: u64) {
    *total = total.saturating_add(ticks);
    *max = (*max).max(ticks);
    *min = if *min == 0 {
        ticks.max(1)
    } else {
        (*min).min(ticks.max(1))
    };
}

/// A registered bdev, with its claim and statistics.
pub struct BdevEntry {
    /// The device.
    pub bdev: Arc<dyn Bdev>,
    /// Which module holds an exclusive claim on it (lvstore, raid, ...), if any.
    pub claimed_by: Option<String>,
    /// I/O counters.
    pub stats: Arc<Mutex<IoStat>>,
    /// Latency histogram (`bdev_enable_histogram`).
    pub histogram: Arc<Mutex<Histogram>>,
    /// Injected fault: when non-zero, every I/O through the registry fails
    /// with this negated errno (set by the sim-only `sim_fail_bdev` method).
    pub fault: Arc<AtomicI32>,
}

impl BdevEntry {
    /// SPDK's `claim_type` for the module holding the claim: lvstores open
    /// their base "read_many_write_one", raid opens "exclusive_write".
    pub fn claim_type(&self) -> Option<&'static str> {
        self.claimed_by.as_deref().map(|m| match m {
            "lvol" => "read_many_write_one",
            _ => "exclusive_write",
        })
    }
}

/// All bdevs of the process, by name, with alias lookup. Iteration follows
/// registration order, as SPDK lists bdevs.
#[derive(Default)]
pub struct BdevRegistry {
    entries: BTreeMap<String, BdevEntry>,
    order: Vec<String>,
}

impl BdevRegistry {
    /// Adds a bdev. Fails with -17 if the name or an alias is taken.
    ///
    /// The registry wraps the device so that every I/O made through the
    /// `Arc` it hands out is counted in that bdev's [`IoStat`]: always take a
    /// bdev from the registry, never keep the unwrapped `Arc`.
    pub fn register(
        &mut self,
        bdev: Arc<dyn Bdev>,
    ) -> Result<Arc<dyn Bdev>, crate::rpc_error::RpcError> {
        let name = bdev.name();
        if self.lookup(&name).is_some() || bdev.aliases().iter().any(|a| self.lookup(a).is_some()) {
            return Err(crate::rpc_error::RpcError::exists());
        }
        let stats = Arc::new(Mutex::new(IoStat::default()));
        let histogram = Arc::new(Mutex::new(Histogram::default()));
        let fault = Arc::new(AtomicI32::new(0));
        let counted: Arc<dyn Bdev> = Arc::new(Counted {
            inner: bdev,
            stats: stats.clone(),
            histogram: histogram.clone(),
            fault: fault.clone(),
        });
        self.order.push(name.clone());
        self.entries.insert(
            name,
            BdevEntry {
                bdev: counted.clone(),
                claimed_by: None,
                stats,
                histogram,
                fault,
            },
        );
        Ok(counted)
    }

    /// Takes an exclusive claim on a bdev for `module` (e.g. "lvol", "raid").
    /// Fails with -1 "Operation not permitted" if any module (the same one
    /// included: a second namespace, a second lvstore) holds it, and -19 if
    /// the bdev does not exist.
    pub fn claim(
        &mut self,
        key: &str,
        module: &str,
    ) -> Result<Arc<dyn Bdev>, crate::rpc_error::RpcError> {
        let entry = self
            .lookup_mut(key)
            .ok_or_else(crate::rpc_error::RpcError::no_such_device)?;
        match &entry.claimed_by {
            Some(_) => Err(crate::rpc_error::RpcError::errno(-1)),
            None => {
                entry.claimed_by = Some(module.to_string());
                Ok(entry.bdev.clone())
            }
        }
    }

    /// Releases a claim taken with [`BdevRegistry::claim`]; a no-op if the bdev is gone.
    pub fn release(&mut self, key: &str) {
        if let Some(entry) = self.lookup_mut(key) {
            entry.claimed_by = None;
        }
    }

    /// Removes a bdev by name or alias, returning it.
    pub fn unregister(&mut self, name_or_alias: &str) -> Option<BdevEntry> {
        let name = self.lookup(name_or_alias)?.bdev.name();
        self.order.retain(|n| n != &name);
        self.entries.remove(&name)
    }

    /// Finds a bdev by name, alias or UUID string.
    pub fn lookup(&self, key: &str) -> Option<&BdevEntry> {
        if let Some(e) = self.entries.get(key) {
            return Some(e);
        }
        self.entries
            .values()
            .find(|e| e.bdev.aliases().iter().any(|a| a == key) || e.bdev.uuid().to_string() == key)
    }

    /// Mutable lookup by name, alias or UUID string.
    pub fn lookup_mut(&mut self, key: &str) -> Option<&mut BdevEntry> {
        let name = self.lookup(key)?.bdev.name();
        self.entries.get_mut(&name)
    }

    /// Every bdev, in registration order (SPDK's listing order).
    pub fn iter(&self) -> impl Iterator<Item = &BdevEntry> {
        self.order.iter().filter_map(|n| self.entries.get(n))
    }
}

/// A registered bdev: forwards to the device and counts every I/O.
struct Counted {
    inner: Arc<dyn Bdev>,
    stats: Arc<Mutex<IoStat>>,
    histogram: Arc<Mutex<Histogram>>,
    fault: Arc<AtomicI32>,
}

impl Counted {
    /// An injected fault fails the I/O like a failing device would, so it
    /// counts in `io_error.failed` too.
    fn check_fault(&self) -> IoResult<()> {
        match self.fault.load(Ordering::Relaxed) {
            0 => Ok(()),
            errno => self.failed_counted(Err(IoError(errno))),
        }
    }

    /// Counts `r` in `io_error.failed` when it is an error (spdk_tgt counts
    /// every I/O completed with a failed status, e.g. on a dead NVMe-oF leg).
    fn failed_counted<T>(&self, r: IoResult<T>) -> IoResult<T> {
        if r.is_err() {
            self.record(|s| s.failed_ops += 1);
        }
        r
    }

    /// Counts a completed I/O (failed or not) in the histogram, as SPDK
    /// does for every completion.
    fn tally(&self, io: IoType, start: std::time::Instant) {
        if let Ok(mut h) = self.histogram.lock() {
            h.tally(io, elapsed_ticks(start));
        }
    }

    fn record(&self, f: impl FnOnce(&mut IoStat)) {
        if let Ok(mut stats) = self.stats.lock() {
            f(&mut stats);
        }
    }
}

fn elapsed_ticks(start: std::time::Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

#[async_trait]
impl Bdev for Counted {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn aliases(&self) -> Vec<String> {
        self.inner.aliases()
    }
    fn uuid(&self) -> Uuid {
        self.inner.uuid()
    }
    fn kind(&self) -> BdevKind {
        self.inner.kind()
    }
    fn product_name(&self) -> String {
        self.inner.product_name()
    }
    fn block_size(&self) -> u32 {
        self.inner.block_size()
    }
    fn num_blocks(&self) -> u64 {
        self.inner.num_blocks()
    }
    fn driver_specific(&self) -> Value {
        self.inner.driver_specific()
    }
    fn supported_io_types(&self) -> Value {
        self.inner.supported_io_types()
    }
    fn extra_info(&self) -> serde_json::Map<String, Value> {
        self.inner.extra_info()
    }
    fn optimal_io_boundary(&self) -> u64 {
        self.inner.optimal_io_boundary()
    }
    async fn read(&self, offset: u64, len: u64) -> IoResult<Vec<u8>> {
        self.check_fault()?;
        let start = std::time::Instant::now();
        let r = self.failed_counted(self.inner.read(offset, len).await);
        self.tally(IoType::Read, start);
        if r.is_ok() {
            let t = elapsed_ticks(start);
            self.record(|s| {
                s.bytes_read += len;
                s.num_read_ops += 1;
                add_latency(
                    &mut s.read_latency_ticks,
                    &mut s.max_read_latency_ticks,
                    &mut s.min_read_latency_ticks,
                    t,
                );
            });
        }
        r
    }
    async fn write(&self, offset: u64, data: &[u8]) -> IoResult<()> {
        self.check_fault()?;
        let start = std::time::Instant::now();
        let r = self.failed_counted(self.inner.write(offset, data).await);
        self.tally(IoType::Write, start);
        if r.is_ok() {
            let t = elapsed_ticks(start);
            self.record(|s| {
                s.bytes_written += data.len() as u64;
                s.num_write_ops += 1;
                add_latency(
                    &mut s.write_latency_ticks,
                    &mut s.max_write_latency_ticks,
                    &mut s.min_write_latency_ticks,
                    t,
                );
            });
        }
        r
    }
    async fn unmap(&self, offset: u64, len: u64) -> IoResult<()> {
        self.check_fault()?;
        let start = std::time::Instant::now();
        let r = self.failed_counted(self.inner.unmap(offset, len).await);
        self.tally(IoType::Unmap, start);
        if r.is_ok() {
            let t = elapsed_ticks(start);
            self.record(|s| {
                s.bytes_unmapped += len;
                s.num_unmap_ops += 1;
                add_latency(
                    &mut s.unmap_latency_ticks,
                    &mut s.max_unmap_latency_ticks,
                    &mut s.min_unmap_latency_ticks,
                    t,
                );
            });
        }
        r
    }
    async fn flush(&self) -> IoResult<()> {
        self.check_fault()?;
        let start = std::time::Instant::now();
        let r = self.inner.flush().await;
        self.tally(IoType::Flush, start);
        self.failed_counted(r)
    }
}
