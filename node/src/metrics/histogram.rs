//! Histograms with fixed buckets, kept in atomics so that observing never takes a lock.
//!
//! The crate's own `Histogram` guards its buckets with a lock on every observation; these
//! are written either by one thread with plain adds that it publishes now and then
//! ([`LocalHistogram`], the core thread's), or with relaxed atomic adds once per batch
//! (the storage thread's fsyncs). A scrape may see a count from one moment and a bucket
//! from the next, which Prometheus tolerates: both only grow.

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds, in microseconds, for latencies from 50 µs to 5 s.
pub const LATENCY_BOUNDS_MICROS: &[u64] = &[
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000,
];

/// Upper bounds for batch sizes, in entries: powers of two to 4096.
pub const BATCH_BOUNDS: &[u64] = &[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096];

/// The bucket a value falls in: the first bound at or above it, or the overflow bucket.
fn bucket_of(bounds: &[u64], value: u64) -> usize {
    bounds.partition_point(|&bound| bound < value)
}

/// A histogram one thread fills with plain adds, and publishes into a [`Histogram`].
pub struct LocalHistogram {
    bounds: &'static [u64],
    /// One more than `bounds`: the last counts values above every bound.
    buckets: Vec<u64>,
    count: u64,
    sum: u64,
}

impl LocalHistogram {
    pub fn new(bounds: &'static [u64]) -> LocalHistogram {
        LocalHistogram {
            bounds,
            buckets: vec![0; bounds.len() + 1],
            count: 0,
            sum: 0,
        }
    }

    /// Records `n` observations of `value`.
    pub fn observe_n(&mut self, value: u64, n: u64) {
        self.buckets[bucket_of(self.bounds, value)] += n;
        self.count += n;
        self.sum = self.sum.saturating_add(value.saturating_mul(n));
    }

    pub fn count(&self) -> u64 {
        self.count
    }
}

/// A histogram that a scrape reads while node threads write it.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [u64],
    /// Divides a value into the unit exposed (1e6 for microseconds to seconds; a division
    /// gives the bounds exactly as written, `5e-05`, where a multiplication by 1e-6 would
    /// not).
    divisor: f64,
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [u64], divisor: f64) -> Histogram {
        debug_assert!(bounds.windows(2).all(|pair| pair[0] < pair[1]));
        Histogram {
            bounds,
            divisor,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }
    }

    /// Records `n` observations of `value` (any thread).
    pub fn observe_n(&self, value: u64, n: u64) {
        self.buckets[bucket_of(self.bounds, value)].fetch_add(n, Ordering::Relaxed);
        self.sum
            .fetch_add(value.saturating_mul(n), Ordering::Relaxed);
        self.count.fetch_add(n, Ordering::Relaxed);
    }

    /// Copies `local` in: for a histogram only the owner of `local` writes.
    pub fn publish(&self, local: &LocalHistogram) {
        debug_assert_eq!(self.bounds, local.bounds);
        for (shared, &value) in self.buckets.iter().zip(&local.buckets) {
            shared.store(value, Ordering::Relaxed);
        }
        self.sum.store(local.sum, Ordering::Relaxed);
        self.count.store(local.count, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let mut buckets: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .zip(self.buckets.iter())
            .map(|(&bound, count)| (bound as f64 / self.divisor, count.load(Ordering::Relaxed)))
            .collect();
        let overflow = self.buckets[self.bounds.len()].load(Ordering::Relaxed);
        buckets.push((f64::INFINITY, overflow));
        // The total is what the buckets hold, so that `+Inf` and `_count` agree.
        let count = buckets.iter().map(|&(_, n)| n).sum();
        let sum = self.sum.load(Ordering::Relaxed) as f64 / self.divisor;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_on_a_bound_counts_in_that_bucket() {
        assert_eq!(bucket_of(BATCH_BOUNDS, 0), 0);
        assert_eq!(bucket_of(BATCH_BOUNDS, 1), 0);
        assert_eq!(bucket_of(BATCH_BOUNDS, 3), 2);
        assert_eq!(bucket_of(BATCH_BOUNDS, 4096), BATCH_BOUNDS.len() - 1);
        assert_eq!(bucket_of(BATCH_BOUNDS, 4097), BATCH_BOUNDS.len());
    }

    #[test]
    fn published_histograms_encode_cumulative_buckets_in_seconds() {
        let mut local = LocalHistogram::new(LATENCY_BOUNDS_MICROS);
        local.observe_n(40, 2);
        local.observe_n(1_000, 1);
        local.observe_n(9_000_000, 1);
        let shared = Histogram::new(LATENCY_BOUNDS_MICROS, 1e6);
        shared.publish(&local);
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("latency_seconds", "test", shared);
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("latency_seconds_bucket{le=\"5e-05\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("latency_seconds_bucket{le=\"0.001\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("latency_seconds_bucket{le=\"5\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("latency_seconds_bucket{le=\"+Inf\"} 4\n"),
            "{text}"
        );
        assert!(text.contains("latency_seconds_count 4\n"), "{text}");
        assert!(text.contains("latency_seconds_sum 9.00108\n"), "{text}");
    }
}
