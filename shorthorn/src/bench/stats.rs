//! Samples and their percentiles.

use std::time::Duration;

/// Repeated measurements of one figure.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    values: Vec<f64>,
}

impl Samples {
    /// Adds one measurement.
    pub fn push(&mut self, value: f64) {
        self.values.push(value);
    }

    /// Adds one duration, in milliseconds.
    pub fn push_ms(&mut self, d: Duration) {
        self.push(d.as_secs_f64() * 1000.0);
    }

    /// How many measurements.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether nothing was measured.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The `p`-th percentile (0..=100, nearest rank), or `None` when empty.
    pub fn percentile(&self, p: u32) -> Option<f64> {
        if self.values.is_empty() {
            return None;
        }
        let mut sorted = self.values.clone();
        sorted.sort_by(f64::total_cmp);
        let rank = (sorted.len() * p.min(100) as usize).div_ceil(100);
        sorted.get(rank.saturating_sub(1)).copied()
    }

    /// The median.
    pub fn p50(&self) -> Option<f64> {
        self.percentile(50)
    }

    /// The 99th percentile.
    pub fn p99(&self) -> Option<f64> {
        self.percentile(99)
    }

    /// `{"runs", "p50", "p99"}` as JSON (percentiles `null` when empty).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "runs": self.len(), "p50": self.p50(), "p99": self.p99() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut s = Samples::default();
        assert_eq!(s.p50(), None);
        for v in 1..=100 {
            s.push(f64::from(v));
        }
        assert_eq!(s.p50(), Some(50.0));
        assert_eq!(s.p99(), Some(99.0));
        assert_eq!(s.percentile(100), Some(100.0));
        let mut one = Samples::default();
        one.push(7.0);
        assert_eq!(one.p50(), Some(7.0));
        assert_eq!(one.p99(), Some(7.0));
    }
}
