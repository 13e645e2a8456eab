//! Decoding SPDK's latency histograms (`bdev_get_histogram`).
//!
//! SPDK (`include/spdk/histogram_data.h`, v25.05+) counts latencies in TSC
//! ticks in ranges of `2^granularity` buckets each. Range 0 holds the values
//! `0..2^g` one per bucket, range 1 the values `2^g..2^(g+1)` one per bucket,
//! and every range `r > 1` covers `2^(g+r-1)..2^(g+r)` with buckets
//! `2^(r-1)` ticks wide. Only ranges `min_range..=max_range` are sent; a
//! value below them was counted in the first bucket, one above them in the
//! last. The counts travel as base64 of little-endian `u64`s, range after
//! range.
//!
//! [`LatencyHistogram::decode`] turns that into buckets with tick bounds;
//! [`LatencyHistogram::cumulative_at`] answers "how many I/Os took at most
//! this long", which is what a Prometheus `le` bucket needs.

use base64::Engine as _;

use crate::error::{Result, SpdkError};
use crate::methods::bdev::BdevHistogram;

/// SPDK's default granularity (`SPDK_HISTOGRAM_GRANULARITY_DEFAULT`): 128
/// buckets per range, under 1 % relative width.
pub const DEFAULT_GRANULARITY: u8 = 7;
/// Bits of a tick count.
const TICK_BITS: u32 = 64;

/// One bucket: I/Os whose latency was at least `start_ticks` and less than
/// `end_ticks` (`None`: no upper bound, the last bucket of a histogram that
/// stops below `u64::MAX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// Lowest latency counted here, in ticks (0 for the first bucket, which
    /// also holds every value below the histogram's first range).
    pub start_ticks: u64,
    /// First latency not counted here, in ticks; `None` when unbounded.
    pub end_ticks: Option<u64>,
    /// I/Os counted.
    pub count: u64,
}

/// A decoded latency histogram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// Ticks per second.
    pub tsc_rate: u64,
    /// Every bucket, in ascending latency order (empty ones included).
    pub buckets: Vec<Bucket>,
}

impl LatencyHistogram {
    /// Decodes SPDK's answer; [`SpdkError::BadHistogram`] when the data does
    /// not fit its own layout.
    pub fn decode(raw: &BdevHistogram) -> Result<Self> {
        let bad = |why: String| SpdkError::BadHistogram(why);
        let g = raw.granularity;
        if g == 0 || g > 32 {
            return Err(bad(format!("granularity {g} is outside 1..=32")));
        }
        let last_range = TICK_BITS - g;
        if raw.min_range > raw.max_range || raw.max_range > last_range {
            return Err(bad(format!(
                "ranges {}..={} do not fit granularity {g} (at most range {last_range})",
                raw.min_range, raw.max_range
            )));
        }
        if raw.tsc_rate == 0 {
            return Err(bad("tsc_rate is 0".into()));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(raw.histogram.as_bytes())
            .map_err(|e| bad(format!("histogram is not base64: {e}")))?;
        let per_range = 1usize << g;
        let ranges = (raw.max_range - raw.min_range + 1) as usize;
        let expected = per_range * ranges * 8;
        if bytes.len() != expected {
            return Err(bad(format!(
                "{} bytes of counts, expected {expected} ({ranges} ranges of {per_range} buckets)",
                bytes.len()
            )));
        }
        let mut counts = bytes.chunks_exact(8).map(|c| {
            let mut word = [0u8; 8];
            word.copy_from_slice(c);
            u64::from_le_bytes(word)
        });
        let mut buckets = Vec::with_capacity(per_range * ranges);
        for range in raw.min_range..=raw.max_range {
            for index in 0..per_range as u64 {
                let (start, end) = bounds(g, range, index);
                buckets.push(Bucket {
                    start_ticks: start,
                    end_ticks: end,
                    count: counts.next().unwrap_or(0),
                });
            }
        }
        // Values below the first range and above the last one were clamped
        // into the end buckets.
        if let Some(first) = buckets.first_mut() {
            first.start_ticks = 0;
        }
        if raw.max_range < last_range {
            if let Some(last) = buckets.last_mut() {
                last.end_ticks = None;
            }
        }
        Ok(Self {
            tsc_rate: raw.tsc_rate,
            buckets,
        })
    }

    /// I/Os counted.
    pub fn total(&self) -> u64 {
        self.buckets.iter().map(|b| b.count).sum()
    }

    /// I/Os whose latency was certainly at most `seconds`: the buckets that
    /// end at or below it (a bucket straddling the bound is left out, so the
    /// answer errs low by at most one bucket's width, under 1 % of the bound
    /// at granularity 7).
    pub fn cumulative_at(&self, seconds: f64) -> u64 {
        let limit = seconds * self.tsc_rate as f64;
        self.buckets
            .iter()
            .filter(|b| b.end_ticks.is_some_and(|end| end as f64 <= limit + 1.0))
            .map(|b| b.count)
            .sum()
    }

    /// Estimated sum of all latencies in seconds: every I/O taken at the
    /// middle of its bucket (the last, unbounded bucket at its start).
    pub fn estimated_sum_seconds(&self) -> f64 {
        let rate = self.tsc_rate as f64;
        self.buckets
            .iter()
            .filter(|b| b.count > 0)
            .map(|b| {
                let mid = match b.end_ticks {
                    Some(end) => (b.start_ticks as f64 + end as f64) / 2.0,
                    None => b.start_ticks as f64,
                };
                b.count as f64 * mid / rate
            })
            .sum()
    }
}

/// `[start, end)` in ticks of bucket `index` of `range`; `None` for an end
/// of `2^64`.
fn bounds(g: u32, range: u32, index: u64) -> (u64, Option<u64>) {
    let (start, width) = if range == 0 {
        (u128::from(index), 1u128)
    } else {
        let width = 1u128 << (range - 1);
        (
            (1u128 << (range + g - 1)) + u128::from(index) * width,
            width,
        )
    };
    let end = start + width;
    (
        u64::try_from(start).unwrap_or(u64::MAX),
        u64::try_from(end).ok(),
    )
}

/// Counts one latency of `ticks` the way SPDK's `spdk_histogram_data_tally`
/// does, into `counts` laid out as [`BdevHistogram::histogram`] is (ranges
/// `min_range..=max_range` of `2^g` buckets): for building histograms in
/// tests and stand-ins that must match real SPDK bucket for bucket.
pub fn tally(counts: &mut [u64], g: u32, min_range: u32, max_range: u32, ticks: u64) {
    let lsb = TICK_BITS - g;
    let clz = ticks.leading_zeros();
    let range = lsb.saturating_sub(clz);
    let per_range = 1u64 << g;
    let (range, index) = if range < min_range {
        (min_range, 0)
    } else if range > max_range {
        (max_range, per_range - 1)
    } else {
        let shift = range.saturating_sub(1);
        (range, (ticks >> shift) & (per_range - 1))
    };
    let slot = (u64::from(range - min_range) << g) + index;
    if let Some(count) = usize::try_from(slot).ok().and_then(|s| counts.get_mut(s)) {
        *count += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(counts: &[u64]) -> String {
        let bytes: Vec<u8> = counts.iter().flat_map(|c| c.to_le_bytes()).collect();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn raw(counts: &[u64], g: u32, min_range: u32, max_range: u32) -> BdevHistogram {
        BdevHistogram {
            histogram: encode(counts),
            granularity: g,
            min_range,
            max_range,
            tsc_rate: 1_000_000_000,
        }
    }

    fn full(g: u32) -> Vec<u64> {
        vec![0; (1usize << g) * (TICK_BITS - g + 1) as usize]
    }

    #[test]
    fn bucket_bounds_follow_spdk_ranges() {
        // Granularity 7: range 0 and 1 one value per bucket, range 2 two, range 3 four.
        assert_eq!(bounds(7, 0, 5), (5, Some(6)));
        assert_eq!(bounds(7, 1, 0), (128, Some(129)));
        assert_eq!(bounds(7, 2, 0), (256, Some(258)));
        assert_eq!(bounds(7, 2, 127), (510, Some(512)));
        assert_eq!(bounds(7, 3, 1), (516, Some(520)));
        // The very last bucket ends at 2^64.
        assert_eq!(bounds(7, 57, 127).1, None);
    }

    #[test]
    fn tallied_values_land_in_the_bucket_that_contains_them() {
        let g = 7;
        for ticks in [
            0u64,
            1,
            127,
            128,
            255,
            256,
            257,
            1000,
            12_345,
            7_000_000,
            u64::MAX / 3,
        ] {
            let mut counts = full(g);
            tally(&mut counts, g, 0, TICK_BITS - g, ticks);
            let h = LatencyHistogram::decode(&raw(&counts, g, 0, TICK_BITS - g)).expect("decode");
            let hit: Vec<&Bucket> = h.buckets.iter().filter(|b| b.count == 1).collect();
            assert_eq!(hit.len(), 1, "{ticks}");
            let b = hit[0];
            assert!(b.start_ticks <= ticks, "{ticks} below {b:?}");
            assert!(b.end_ticks.is_none_or(|e| ticks < e), "{ticks} above {b:?}");
        }
    }

    #[test]
    fn a_limited_range_clamps_into_its_end_buckets_like_spdk() {
        // min 1 µs, max 1 s at 1 GHz, as `min_nsec`/`max_nsec` would give.
        let g = 7;
        let lsb = TICK_BITS - g;
        let range_of = |v: u64| lsb.saturating_sub(v.leading_zeros());
        let (lo, hi) = (range_of(1_000), range_of(1_000_000_000 - 1));
        let mut counts = vec![0u64; (1usize << g) * (hi - lo + 1) as usize];
        for ticks in [3, 1_500, 2_000_000_000] {
            tally(&mut counts, g, lo, hi, ticks);
        }
        let h = LatencyHistogram::decode(&raw(&counts, g, lo, hi)).expect("decode");
        assert_eq!(h.total(), 3);
        assert_eq!(
            h.buckets[0].count, 1,
            "3 ticks is clamped into the first bucket"
        );
        assert_eq!(h.buckets[0].start_ticks, 0);
        let last = h.buckets.last().expect("buckets");
        assert_eq!(last.count, 1, "2 s is clamped into the last bucket");
        assert_eq!(last.end_ticks, None);
    }

    #[test]
    fn cumulative_counts_answer_at_most_this_long() {
        let g = 7;
        let mut counts = full(g);
        // 10 I/Os of 50 µs, 5 of 2 ms, 1 of 3 s (1 tick = 1 ns).
        for _ in 0..10 {
            tally(&mut counts, g, 0, TICK_BITS - g, 50_000);
        }
        for _ in 0..5 {
            tally(&mut counts, g, 0, TICK_BITS - g, 2_000_000);
        }
        tally(&mut counts, g, 0, TICK_BITS - g, 3_000_000_000);
        let h = LatencyHistogram::decode(&raw(&counts, g, 0, TICK_BITS - g)).expect("decode");
        assert_eq!(h.total(), 16);
        assert_eq!(h.cumulative_at(0.000_01), 0);
        assert_eq!(h.cumulative_at(0.000_1), 10);
        assert_eq!(h.cumulative_at(0.001), 10);
        assert_eq!(h.cumulative_at(0.01), 15);
        assert_eq!(h.cumulative_at(10.0), 16);
        // Bucket midpoints are within 1 % of the true values.
        let sum = h.estimated_sum_seconds();
        let truth = 10.0 * 50e-6 + 5.0 * 2e-3 + 3.0;
        assert!((sum - truth).abs() / truth < 0.01, "{sum} vs {truth}");
    }

    #[test]
    fn malformed_histograms_are_refused() {
        let ok = raw(&full(7), 7, 0, 57);
        assert!(LatencyHistogram::decode(&ok).is_ok());
        let mut short = ok.clone();
        short.histogram = encode(&[0; 10]);
        let mut ranges = ok.clone();
        ranges.min_range = 9;
        ranges.max_range = 3;
        let mut beyond = ok.clone();
        beyond.max_range = 58;
        let mut text = ok.clone();
        text.histogram = "not base64!".into();
        let mut no_rate = ok.clone();
        no_rate.tsc_rate = 0;
        for bad in [short, ranges, beyond, text, no_rate] {
            let err = LatencyHistogram::decode(&bad).expect_err("must be refused");
            assert!(matches!(err, SpdkError::BadHistogram(_)), "{err}");
        }
    }
}
