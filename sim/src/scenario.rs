//! Scenario files: a named, timed fault schedule for a classic situation, read with serde.
//!
//! ```json
//! { "name": "leader-isolated", "description": "...", "nodes": 5, "duration_ms": 20000,
//!   "network": { "loss": [1, 10] },
//!   "schedule": [ { "at_ms": 3000, "fault": { "kind": "isolate", "target": "leader" } },
//!                 { "at_ms": 9000, "fault": { "kind": "heal" } } ] }
//! ```
//!
//! A scenario starts from [`Params::calm`] (no random faults), applies its overrides, and
//! fires its schedule; the seed still draws latencies, fsync times and client timing.
//! The format, with an example of every fault kind, is in `docs/scenarios.md`; a test
//! parses that file's examples.

use crate::fault::Fault;
use crate::params::Params;
use crate::rng::Ratio;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Cluster size; the command line's `--nodes` when absent.
    #[serde(default)]
    pub nodes: Option<usize>,
    /// Length of the fault phase; the command line's `--duration` when absent.
    #[serde(default)]
    pub duration_ms: Option<u64>,
    #[serde(default)]
    pub network: NetworkOverrides,
    #[serde(default)]
    pub disk: DiskOverrides,
    #[serde(default)]
    pub clients: Option<usize>,
    /// The core's in-memory log cache (`Config::log_cache_bytes`); 0 makes every lagging
    /// follower a catch-up from storage.
    #[serde(default)]
    pub log_cache_bytes: Option<usize>,
    #[serde(default)]
    pub retention: Option<Retention>,
    /// How long a client waits for an answer before it gives up (default 1 s).
    #[serde(default)]
    pub client_timeout_ms: Option<u64>,
    /// Client reads mixed into the workload (none by default).
    #[serde(default)]
    pub reads: Option<Reads>,
    pub schedule: Vec<TimedFault>,
}

/// `"reads": { "percent": P, "lease": true }`: P % of client operations are reads, each
/// linearizable or local (and, with `lease`, lease reads on nodes with leases on).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reads {
    pub percent: u64,
    #[serde(default)]
    pub lease: bool,
}

/// The leader proposes a retention point every `interval_ms`, up to `keep_max` entries below
/// what it applied (`WorkloadParams::trim_interval_us`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    pub interval_ms: u64,
    #[serde(default)]
    pub keep_max: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkOverrides {
    pub latency_us_min: Option<u64>,
    pub latency_us_max: Option<u64>,
    pub loss: Option<Ratio>,
    pub duplicate: Option<Ratio>,
    pub reorder: Option<Ratio>,
    pub reorder_delay_us_max: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskOverrides {
    pub fsync_us_min: Option<u64>,
    pub fsync_us_max: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimedFault {
    pub at_ms: u64,
    pub fault: Fault,
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Scenario, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
        Scenario::parse(&text).map_err(|error| format!("{}: {error}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Scenario, String> {
        let scenario: Scenario = serde_json::from_str(text).map_err(|error| error.to_string())?;
        if let Some(nodes) = scenario.nodes {
            check_cluster_size(nodes)?;
        }
        if let Some(ms) = scenario.duration_ms {
            if ms == 0 || ms.checked_mul(1000).is_none() {
                return Err(format!("duration_ms {ms} is not a usable fault phase"));
            }
        }
        Ok(scenario)
    }

    /// Checks the schedule against the run it will be part of: `nodes` nodes and a fault
    /// phase of `duration_us`. A fault at or after the end of the fault phase is refused
    /// rather than dropped: the liveness phase starts there, and a schedule that silently
    /// loses its last faults tests less than its author thinks.
    pub fn validate(&self, nodes: usize, duration_us: u64) -> Result<(), String> {
        for (position, timed) in self.schedule.iter().enumerate() {
            let name = timed.fault.name();
            timed
                .fault
                .validate(nodes)
                .map_err(|error| format!("at {} ms: {name}: {error}", timed.at_ms))?;
            if timed.at_ms.saturating_mul(1000) >= duration_us {
                return Err(format!(
                    "at {} ms: {name} (schedule entry {}) is not before the end of the {} ms \
                     fault phase, so it would never fire; schedule it earlier or lengthen \
                     duration_ms",
                    timed.at_ms,
                    position + 1,
                    duration_us / 1000
                ));
            }
        }
        if let Some(reads) = &self.reads {
            if reads.percent > 100 {
                return Err(format!(
                    "reads: percent {} is more than 100 % of operations",
                    reads.percent
                ));
            }
        }
        let net = &self.network;
        for ratio in [net.loss, net.duplicate, net.reorder].into_iter().flatten() {
            ratio.validate()?;
        }
        Ok(())
    }

    /// The run's parameters: calm, then this scenario's overrides.
    pub fn params(&self, nodes: usize) -> Params {
        let mut params = Params::calm(nodes);
        let net = &self.network;
        let target = &mut params.net;
        target.latency_us_min = net.latency_us_min.unwrap_or(target.latency_us_min);
        target.latency_us_max = net
            .latency_us_max
            .unwrap_or(target.latency_us_max)
            .max(target.latency_us_min);
        target.loss = net.loss.unwrap_or(target.loss);
        target.duplicate = net.duplicate.unwrap_or(target.duplicate);
        target.reorder = net.reorder.unwrap_or(target.reorder);
        target.reorder_delay_us_max = net
            .reorder_delay_us_max
            .unwrap_or(target.reorder_delay_us_max);
        let disk = &mut params.disk;
        disk.fsync_us_min = self.disk.fsync_us_min.unwrap_or(disk.fsync_us_min);
        disk.fsync_us_max = self
            .disk
            .fsync_us_max
            .unwrap_or(disk.fsync_us_max)
            .max(disk.fsync_us_min);
        if let Some(clients) = self.clients {
            params.workload.clients = clients;
        }
        if let Some(bytes) = self.log_cache_bytes {
            params.core.log_cache_bytes = bytes;
        }
        if let Some(retention) = &self.retention {
            params.workload.trim_interval_us = retention.interval_ms.saturating_mul(1000);
            params.workload.trim_keep_max = retention.keep_max;
        }
        if let Some(ms) = self.client_timeout_ms {
            params.workload.timeout_us = ms.saturating_mul(1000).max(1);
        }
        if let Some(reads) = &self.reads {
            params.workload.read_percent = reads.percent;
            params.core.read_lease = reads.lease;
        }
        params
    }
}

pub fn check_cluster_size(nodes: usize) -> Result<(), String> {
    if (3..=9).contains(&nodes) {
        Ok(())
    } else {
        Err(format!("a cluster has 3 to 9 nodes, not {nodes}"))
    }
}
