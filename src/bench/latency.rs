//! Exact latency percentiles: every sample is kept (a few bytes each), sorted once at the end.

use std::time::Duration;

/// Latencies of completed operations, in microseconds.
#[derive(Clone, Debug, Default)]
pub struct Latencies {
    samples_us: Vec<u32>,
}

/// The summary a report prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Percentiles {
    pub count: usize,
    pub p50_us: u32,
    pub p90_us: u32,
    pub p99_us: u32,
    pub max_us: u32,
}

impl Latencies {
    pub fn record(&mut self, latency: Duration) {
        let us = latency.as_micros().min(u32::MAX as u128) as u32;
        self.samples_us.push(us);
    }

    pub fn len(&self) -> usize {
        self.samples_us.len()
    }

    /// Nearest-rank percentiles over every sample; `None` with no samples.
    pub fn percentiles(mut self) -> Option<Percentiles> {
        if self.samples_us.is_empty() {
            return None;
        }
        self.samples_us.sort_unstable();
        let rank = |p: usize| {
            // Nearest rank: the smallest sample with at least p% of samples at or below it.
            let n = self.samples_us.len();
            let index = (p * n).div_ceil(100).clamp(1, n) - 1;
            self.samples_us[index]
        };
        Some(Percentiles {
            count: self.samples_us.len(),
            p50_us: rank(50),
            p90_us: rank(90),
            p99_us: rank(99),
            max_us: *self.samples_us.last().expect("non-empty"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(us: &[u32]) -> Percentiles {
        let mut latencies = Latencies::default();
        for &u in us {
            latencies.record(Duration::from_micros(u as u64));
        }
        latencies.percentiles().unwrap()
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<u32> = (1..=100).collect();
        let p = of(&samples);
        assert_eq!((p.p50_us, p.p90_us, p.p99_us, p.max_us), (50, 90, 99, 100));
        let p = of(&[7]);
        assert_eq!((p.p50_us, p.p99_us, p.max_us), (7, 7, 7));
        let p = of(&[5, 1, 3, 2, 4]);
        assert_eq!((p.p50_us, p.p90_us, p.max_us), (3, 5, 5));
    }

    #[test]
    fn no_samples_no_percentiles() {
        assert!(Latencies::default().percentiles().is_none());
    }
}
