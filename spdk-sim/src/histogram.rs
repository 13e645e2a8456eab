//! Per-bdev latency histograms (`bdev_enable_histogram`,
//! `bdev_get_histogram`), laid out bucket for bucket as spdk_tgt v25.09's
//! `spdk_histogram_data` (`include/spdk/histogram_data.h`).
//!
//! As in SPDK:
//! - a bdev starts with no histogram; `bdev_get_histogram` then fails with
//!   -12 "Cannot allocate memory" (the bdev's granularity is still 0);
//! - enabling takes `granularity` (default 7) and `min_nsec`/`max_nsec`
//!   (defaults 1 µs and 120 s, converted to ticks with SPDK's unchecked
//!   `nsec * tick_rate / 10^9`), which fix `min_range..=max_range`;
//!   latencies outside are counted in the first or last bucket;
//! - every completed I/O is counted (failed ones too), or only those of
//!   `opc`;
//! - disabling frees the counts; a later get fails with -32603 "Bad address"
//!   (SPDK's -EFAULT for an open channel without a histogram).
//!
//! Simplified: the sim has one I/O channel per bdev, always open, created
//! with the layout asked for at the first enable. Real SPDK (measured in
//! `controller/tests/real_spdk_metrics.rs`):
//! - keeps the counts in the channels, so they vanish when the last user of
//!   the bdev closes it (an export deleted), while iostat keeps its totals;
//!   a get with no channel open answers an empty histogram, also after a
//!   disable, where the sim says "Bad address";
//! - gives channels opened after the enable its *default* layout
//!   (granularity 7, 0 to `u64::MAX`) and leaves out of `bdev_get_histogram`
//!   every channel whose layout differs from the bdev's: enabled with SPDK's
//!   own defaults, the writes through a new export are not counted at all.
//!   The sim reproduces that only for a re-enable with another layout (the
//!   old channel's counts disappear from the answer).

use base64::Engine as _;
use serde_json::{json, Value};

use crate::bdev_rpc::TICK_RATE;
use crate::rpc_error::RpcError;

/// SPDK's `SPDK_HISTOGRAM_GRANULARITY_DEFAULT`.
pub const DEFAULT_GRANULARITY: u32 = 7;
/// `SPDK_BDEV_HISTOGRAM_DEFAULT_MIN_VALUE_NS`.
pub const DEFAULT_MIN_NSEC: u64 = 1_000;
/// `SPDK_BDEV_HISTOGRAM_DEFAULT_MAX_VALUE_NS`.
pub const DEFAULT_MAX_NSEC: u64 = 120_000_000_000;

/// I/O types a histogram can be limited to (`opc`), as
/// `spdk_bdev_get_io_type` names them.
const IO_TYPES: &[&str] = &[
    "read",
    "write",
    "unmap",
    "flush",
    "reset",
    "nvme_admin",
    "nvme_io",
    "nvme_io_md",
    "write_zeroes",
    "zcopy",
    "get_zone_info",
    "zone_management",
    "zone_append",
    "compare",
    "compare_and_write",
    "abort",
    "seek_hole",
    "seek_data",
    "copy",
    "nvme_iov_md",
];

/// Which I/O a completed request was, for the `opc` filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoType {
    /// A read.
    Read,
    /// A write.
    Write,
    /// An unmap.
    Unmap,
    /// A flush.
    Flush,
}

impl IoType {
    fn name(self) -> &'static str {
        match self {
            IoType::Read => "read",
            IoType::Write => "write",
            IoType::Unmap => "unmap",
            IoType::Flush => "flush",
        }
    }
}

/// Bucket layout of one histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    granularity: u32,
    min_range: u32,
    max_range: u32,
}

impl Layout {
    /// `spdk_histogram_data_alloc_sized_ext`: `None` when `min_val >= max_val`.
    fn new(granularity: u32, min_val: u64, max_val: u64) -> Option<Layout> {
        if min_val >= max_val || granularity == 0 || granularity > 32 {
            return None;
        }
        Some(Layout {
            granularity,
            min_range: range_of(granularity, min_val),
            max_range: range_of(granularity, max_val - 1),
        })
    }

    fn buckets(self) -> usize {
        (1usize << self.granularity) * (self.max_range - self.min_range + 1) as usize
    }
}

/// `__spdk_histogram_data_get_bucket_range`.
fn range_of(g: u32, value: u64) -> u32 {
    (64 - g).saturating_sub(value.leading_zeros())
}

/// The histogram state of one bdev.
#[derive(Debug, Default)]
pub struct Histogram {
    /// The layout `bdev_get_histogram` allocates: set by every
    /// `bdev_enable_histogram` (even one that disables); `None` before the
    /// first, or when its values make no layout.
    bdev_layout: Option<Layout>,
    opc: Option<String>,
    /// The one channel's counts and layout, while enabled.
    channel: Option<(Layout, Vec<u64>)>,
}

impl Histogram {
    /// Counts one completed I/O of `io` that took `ticks`.
    pub fn tally(&mut self, io: IoType, ticks: u64) {
        if self.opc.as_deref().is_some_and(|o| o != io.name()) {
            return;
        }
        let Some((layout, counts)) = &mut self.channel else {
            return;
        };
        let g = layout.granularity;
        let per_range = 1u64 << g;
        let range = range_of(g, ticks);
        let (range, index) = if range < layout.min_range {
            (layout.min_range, 0)
        } else if range > layout.max_range {
            (layout.max_range, per_range - 1)
        } else {
            (range, (ticks >> range.saturating_sub(1)) & (per_range - 1))
        };
        let slot = ((u64::from(range - layout.min_range)) << g) + index;
        if let Some(c) = usize::try_from(slot).ok().and_then(|s| counts.get_mut(s)) {
            *c += 1;
        }
    }

    /// `bdev_enable_histogram` on this bdev, its params already decoded.
    pub fn enable(
        &mut self,
        enable: bool,
        opc: Option<String>,
        granularity: Option<u8>,
        min_nsec: Option<u64>,
        max_nsec: Option<u64>,
    ) -> Result<(), RpcError> {
        if let Some(o) = &opc {
            if !IO_TYPES.contains(&o.as_str()) {
                return Err(RpcError::new(-32603, "Invalid Io type"));
            }
        }
        let granularity = u32::from(granularity.unwrap_or(DEFAULT_GRANULARITY as u8));
        // SPDK multiplies unchecked, so large values wrap as they do there.
        let to_ticks = |nsec: u64| nsec.wrapping_mul(TICK_RATE) / 1_000_000_000;
        let min_val = to_ticks(min_nsec.unwrap_or(DEFAULT_MIN_NSEC));
        let max_val = match max_nsec.unwrap_or(DEFAULT_MAX_NSEC) {
            u64::MAX => u64::MAX,
            nsec => to_ticks(nsec),
        };
        // SPDK records the layout on the bdev whether enabling or not.
        self.bdev_layout = Layout::new(granularity, min_val, max_val);
        self.opc = opc;
        if !enable {
            self.channel = None;
            return Ok(());
        }
        let Some(layout) = self.bdev_layout else {
            // The channel's histogram cannot be allocated: SPDK disables it again.
            self.channel = None;
            return Err(RpcError::errno(-12));
        };
        if self.channel.is_none() {
            self.channel = Some((layout, vec![0; layout.buckets()]));
        }
        Ok(())
    }

    /// `bdev_get_histogram`'s answer.
    pub fn get(&self) -> Result<Value, RpcError> {
        let Some(layout) = self.bdev_layout else {
            return Err(RpcError::errno(-12));
        };
        let Some((channel_layout, counts)) = &self.channel else {
            return Err(RpcError::new(-32603, "Bad address"));
        };
        // SPDK's merge refuses a channel of another layout, silently.
        let merged: Vec<u64> = if *channel_layout == layout {
            counts.clone()
        } else {
            vec![0; layout.buckets()]
        };
        let bytes: Vec<u8> = merged.iter().flat_map(|c| c.to_le_bytes()).collect();
        Ok(json!({
            "histogram": base64::engine::general_purpose::STANDARD.encode(bytes),
            "granularity": layout.granularity,
            "min_range": layout.min_range,
            "max_range": layout.max_range,
            "tsc_rate": TICK_RATE,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(v: &Value) -> Vec<u64> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v["histogram"].as_str().expect("histogram"))
            .expect("base64");
        bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect()
    }

    #[test]
    fn never_enabled_fails_as_spdk_does() {
        assert_eq!(Histogram::default().get().unwrap_err().code, -12);
    }

    #[test]
    fn full_range_layout_matches_spdks_default_channel_histogram() {
        let mut h = Histogram::default();
        h.enable(true, None, Some(7), Some(0), Some(u64::MAX))
            .expect("enable");
        let v = h.get().expect("get");
        assert_eq!(
            (
                v["granularity"].as_u64(),
                v["min_range"].as_u64(),
                v["max_range"].as_u64()
            ),
            (Some(7), Some(0), Some(57))
        );
        assert_eq!(counts(&v).len(), 128 * 58);
    }

    #[test]
    fn defaults_wrap_their_maximum_as_spdk_does() {
        let mut h = Histogram::default();
        h.enable(true, None, None, None, None).expect("enable");
        let v = h.get().expect("get");
        // 1000 ticks is range 3 (512..1024). 120 s * 10^9 ticks/s overflows
        // u64 in SPDK's `max_nsec * tick_rate`: the wrapped 9.3e9 ticks is
        // range 27, not the 120e9 ticks' range 30.
        assert_eq!(
            (v["min_range"].as_u64(), v["max_range"].as_u64()),
            (Some(3), Some(27))
        );
    }

    #[test]
    fn ios_land_in_spdks_buckets_and_opc_filters() {
        let mut h = Histogram::default();
        h.enable(true, Some("write".into()), Some(7), Some(0), Some(u64::MAX))
            .expect("enable");
        h.tally(IoType::Write, 5);
        h.tally(IoType::Write, 300);
        h.tally(IoType::Read, 300);
        let c = counts(&h.get().expect("get"));
        assert_eq!(c[5], 1, "5 ticks: range 0, bucket 5");
        // 300 ticks: range 2 (256..512, two per bucket), index (300 >> 1) & 127 = 22.
        assert_eq!(c[2 * 128 + 22], 1);
        assert_eq!(c.iter().sum::<u64>(), 2, "the read is not counted");
    }

    #[test]
    fn disabling_frees_the_counts_and_a_get_then_fails() {
        let mut h = Histogram::default();
        h.enable(true, None, None, None, None).expect("enable");
        h.enable(false, None, None, None, None).expect("disable");
        assert_eq!(h.get().unwrap_err().message, "Bad address");
        assert_eq!(
            h.enable(true, Some("bogus".into()), None, None, None)
                .unwrap_err()
                .message,
            "Invalid Io type"
        );
    }
}
