//! `--metrics-addr`: the node's metrics in the Prometheus text format at `/metrics`, and
//! `/health`, over HTTP on a port of their own.
//!
//! Node threads never take a lock to update a metric. Each writes atomics that only it
//! writes, and the HTTP thread reads them when scraped:
//! - the core thread counts in plain fields ([`core::CoreMetrics`]) and publishes them
//!   once per tick, so its hot path pays an add, not an atomic, per message or entry;
//! - the storage thread adds to its histograms once per group commit;
//! - the client front end counts requests in plain fields and publishes once per wake-up.
//!
//! `/health` answers 200 when the node knows a leader, its storage has not failed and its
//! core thread has published lately; otherwise 503 with the reason (see `health`).

pub mod core;
mod health;
mod histogram;
mod http;
pub mod requests;
mod storage;

pub use self::core::CoreMetrics;
pub use self::requests::RequestCounts;
pub use self::storage::StorageMetrics;
pub use histogram::{Histogram, LocalHistogram, BATCH_BOUNDS, LATENCY_BOUNDS_MICROS};

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use replog_core::NodeId;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Every metric of one node, shared by the threads that update them and the HTTP thread.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    core: core::CoreShared,
    storage: storage::StorageShared,
    clients: requests::ClientShared,
    /// What `/health` needs besides the published metrics.
    health: health::HealthState,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabel {
    peer: u64,
}

impl Metrics {
    /// Registers every metric, for a node whose other voters are `peers`.
    pub fn new(peers: &[NodeId]) -> Metrics {
        let mut registry = Registry::with_prefix("replog");
        let core = core::CoreShared::register(&mut registry, peers);
        let storage = storage::StorageShared::register(&mut registry);
        let clients = requests::ClientShared::register(&mut registry);
        Metrics {
            inner: Arc::new(Inner {
                registry,
                core,
                storage,
                clients,
                health: health::HealthState::new(),
            }),
        }
    }

    /// The core thread's counters, publishing here.
    pub fn core(&self) -> CoreMetrics {
        CoreMetrics::publishing(self.clone())
    }

    /// The storage thread's handle.
    pub fn storage(&self) -> StorageMetrics {
        StorageMetrics::new(self.clone())
    }

    /// The client front end's counters, publishing here.
    pub fn requests(&self) -> RequestCounts {
        RequestCounts::publishing(self.clone())
    }

    /// The scrape: every metric in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail, and our metrics encode only numbers.
        let _ =
            prometheus_client::encoding::prometheus_text::encode(&mut text, &self.inner.registry);
        text
    }

    /// Why the node is not healthy, if it is not.
    pub fn health(&self) -> Result<String, String> {
        health::check(&self.inner)
    }
}

/// Binds `addr` for the metrics endpoint and serves it on a thread of its own; returns
/// the address bound (port 0 picks a free port). An address that cannot be bound is an
/// error here, before the node starts.
pub fn serve(addr: &str, metrics: Metrics) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    http::spawn(listener, metrics)?;
    Ok(bound)
}

/// Milliseconds since `base`, for the atomics that record when something last happened.
fn millis_since(base: Instant) -> u64 {
    u64::try_from(base.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A metric the registry encodes while node threads hold the same `Arc`.
#[derive(Debug)]
struct Shared<T>(Arc<T>);

impl<T: EncodeMetric> EncodeMetric for Shared<T> {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn counter(registry: &mut Registry, name: &str, help: &str) -> Counter {
    let counter = Counter::default();
    registry.register(name, help, counter.clone());
    counter
}

fn gauge(registry: &mut Registry, name: &str, help: &str) -> Gauge {
    let gauge = Gauge::default();
    registry.register(name, help, gauge.clone());
    gauge
}

fn histogram(
    registry: &mut Registry,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    histogram: Histogram,
) -> Arc<Histogram> {
    let histogram = Arc::new(histogram);
    let shared = Shared(histogram.clone());
    match unit {
        Some(unit) => registry.register_with_unit(name, help, unit, shared),
        None => registry.register(name, help, shared),
    }
    histogram
}

/// One counter per peer, labelled `peer="ID"`, in the order of `peers`.
fn peer_counters(
    registry: &mut Registry,
    name: &str,
    help: &str,
    peers: &[NodeId],
) -> Vec<Counter> {
    let family = Family::<PeerLabel, Counter>::default();
    registry.register(name, help, family.clone());
    peers
        .iter()
        .map(|peer| family.get_or_create(&PeerLabel { peer: peer.0 }).clone())
        .collect()
}

/// Sets a counter that one thread counts elsewhere and publishes here as a total.
fn set_total(counter: &Counter, total: u64) {
    counter.inner().store(total, Ordering::Relaxed);
}

/// A failure the health check reports, set once.
#[derive(Default)]
struct Failure(Mutex<Option<String>>);

impl Failure {
    fn set(&self, problem: &str) {
        let mut failure = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        failure.get_or_insert_with(|| problem.to_string());
    }

    fn get(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}
