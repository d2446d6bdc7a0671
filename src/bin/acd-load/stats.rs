//! Latency histograms: 10 µs buckets up to 100 ms, then 1 ms buckets up to
//! 120 s; exact enough for p50/p99 of setup and queue times. And the frame
//! rates of RTP streams, one value per stream.

use std::time::Duration;

const FINE: usize = 10_000; // 10 µs × 10,000 = 100 ms
const COARSE: usize = 120_000; // 1 ms × 120,000 = 120 s

#[derive(Clone)]
pub struct Histogram {
    buckets: Vec<u32>,
    count: u64,
    max_us: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { buckets: vec![0; FINE + COARSE + 1], count: 0, max_us: 0 }
    }
}

impl Histogram {
    pub fn record(&mut self, d: Duration) {
        let us = d.as_micros() as u64;
        let i = if us < 100_000 { (us / 10) as usize } else { (FINE + (us / 1000) as usize - 100).min(FINE + COARSE) };
        self.buckets[i] += 1;
        self.count += 1;
        self.max_us = self.max_us.max(us);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The upper edge of the bucket holding quantile `q`, in milliseconds
    /// (0 when empty).
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = ((self.count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n as u64;
            if seen >= rank {
                let upper_us = if i < FINE { (i as u64 + 1) * 10 } else { (i - FINE + 101) as u64 * 1000 };
                return upper_us.min(self.max_us.max(1)) as f64 / 1000.0;
            }
        }
        self.max_us as f64 / 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        self.max_us as f64 / 1000.0
    }
}

/// Frames a second of a set of streams (one value each), with the streams
/// too short to judge and those below the threshold counted apart.
#[derive(Clone, Default)]
pub struct Rates {
    rates: Vec<f64>,
    /// Streams too short to judge.
    pub short: u64,
    /// Judged streams below the threshold.
    pub below: u64,
}

impl Rates {
    pub fn record(&mut self, per_sec: f64) {
        self.rates.push(per_sec);
    }

    /// Streams judged.
    pub fn count(&self) -> u64 {
        self.rates.len() as u64
    }

    /// The nearest-rank quantile `q` (0 when empty).
    pub fn quantile(&self, q: f64) -> f64 {
        if self.rates.is_empty() {
            return 0.0;
        }
        let mut v = self.rates.clone();
        v.sort_by(f64::total_cmp);
        let rank = ((v.len() as f64) * q).ceil().max(1.0) as usize;
        v[rank.min(v.len()) - 1]
    }

    /// Share of the judged streams below the threshold (0 when none).
    pub fn below_share(&self) -> f64 {
        if self.rates.is_empty() {
            0.0
        } else {
            self.below as f64 / self.rates.len() as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_land_in_the_right_bucket() {
        let mut h = Histogram::default();
        for i in 1..=100u64 {
            h.record(Duration::from_micros(i * 100)); // 0.1 .. 10 ms
        }
        assert!((h.quantile_ms(0.5) - 5.0).abs() < 0.02, "{}", h.quantile_ms(0.5));
        assert!((h.quantile_ms(0.99) - 9.9).abs() < 0.02, "{}", h.quantile_ms(0.99));
        h.record(Duration::from_millis(2500));
        assert_eq!(h.max_ms(), 2500.0);
        assert!((h.quantile_ms(1.0) - 2500.0).abs() < 1.01);
        assert_eq!(h.count(), 101);
        assert_eq!(Histogram::default().quantile_ms(0.99), 0.0);
    }

    #[test]
    fn rate_quantiles_are_nearest_rank() {
        let mut r = Rates::default();
        assert_eq!(r.quantile(0.01), 0.0);
        for i in (1..=100).rev() {
            r.record(i as f64);
        }
        r.below = 5;
        assert_eq!(r.quantile(0.01), 1.0);
        assert_eq!(r.quantile(0.5), 50.0);
        assert_eq!(r.quantile(0.0), 1.0);
        assert_eq!(r.quantile(1.0), 100.0);
        assert_eq!(r.count(), 100);
        assert!((r.below_share() - 0.05).abs() < 1e-12);
    }
}
