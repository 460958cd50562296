//! What the storage thread measures: how long each group commit's write and fsync take,
//! how many entries each carries, and what the log holds on disk.

use super::histogram::{Histogram, BATCH_BOUNDS, LATENCY_BOUNDS_MICROS};
use super::{gauge, histogram, Metrics};
use crate::storage::Storage;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use std::sync::Arc;
use std::time::Duration;

pub(super) struct StorageShared {
    fsync_latency: Arc<Histogram>,
    batch_entries: Arc<Histogram>,
    first_index: Gauge,
    entries: Gauge,
    bytes: Gauge,
    segments: Gauge,
}

impl StorageShared {
    pub(super) fn register(registry: &mut Registry) -> StorageShared {
        StorageShared {
            fsync_latency: histogram(
                registry,
                "fsync_latency",
                "How long each group commit took to write and sync the log",
                Some(Unit::Seconds),
                Histogram::new(LATENCY_BOUNDS_MICROS, 1e6),
            ),
            batch_entries: histogram(
                registry,
                "fsync_batch_entries",
                "Entries made durable by each group commit",
                None,
                Histogram::new(BATCH_BOUNDS, 1.0),
            ),
            first_index: gauge(
                registry,
                "log_first_index",
                "The first index the log on disk holds",
            ),
            entries: gauge(registry, "log_entries", "Entries the log on disk holds"),
            bytes: gauge(
                registry,
                "log_bytes",
                "Bytes of log segment files on disk (the open one's preallocated zeros included)",
            ),
            segments: gauge(registry, "log_segments", "Log segment files on disk"),
        }
    }
}

/// The storage thread's handle; does nothing without `--metrics-addr`.
#[derive(Clone, Default)]
pub struct StorageMetrics {
    target: Option<Metrics>,
}

impl StorageMetrics {
    pub(super) fn new(target: Metrics) -> StorageMetrics {
        StorageMetrics {
            target: Some(target),
        }
    }

    /// One group commit of `entries` entries took `took`.
    pub fn persisted(&self, entries: usize, took: Duration) {
        let Some(target) = &self.target else {
            return;
        };
        let shared = &target.inner.storage;
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        shared.fsync_latency.observe_n(micros, 1);
        shared.batch_entries.observe_n(entries as u64, 1);
    }

    /// What the log holds now (after writes or a trim).
    pub fn log(&self, storage: &Storage) {
        let Some(target) = &self.target else {
            return;
        };
        let shared = &target.inner.storage;
        let as_gauge = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        let (first, last) = (storage.first_index().0, storage.last_index().0);
        shared.first_index.set(as_gauge(first));
        shared
            .entries
            .set(as_gauge((last + 1).saturating_sub(first)));
        shared.bytes.set(as_gauge(storage.log_bytes()));
        shared
            .segments
            .set(as_gauge(storage.segment_count() as u64));
    }

    /// Storage failed: the node stops, and `/health` says why meanwhile.
    pub fn failed(&self, problem: &str) {
        if let Some(target) = &self.target {
            target.inner.health.storage_failure.set(problem);
        }
    }
}
