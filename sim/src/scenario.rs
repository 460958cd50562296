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

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The seed to run with when the command line gives none (a recording's own seed: the
    /// latencies, fsync times and client timing it replays are drawn from it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Cluster size; the command line's `--nodes` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<usize>,
    /// Spare nodes after the cluster's (ids `nodes + 1`, ...): booted empty, members only
    /// once a `membership` fault adds them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spares: Option<usize>,
    /// Length of the fault phase; the command line's `--duration` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Each node's clock runs off by a seed-drawn share up to this many percent, either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skew_percent_max: Option<u32>,
    #[serde(default, skip_serializing_if = "CoreOverrides::is_empty")]
    pub core: CoreOverrides,
    #[serde(default, skip_serializing_if = "NetworkOverrides::is_empty")]
    pub network: NetworkOverrides,
    #[serde(default, skip_serializing_if = "DiskOverrides::is_empty")]
    pub disk: DiskOverrides,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clients: Option<usize>,
    #[serde(default, skip_serializing_if = "WorkloadOverrides::is_empty")]
    pub workload: WorkloadOverrides,
    /// The core's in-memory log cache (`Config::log_cache_bytes`); 0 makes every lagging
    /// follower a catch-up from storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_cache_bytes: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    /// Client reads mixed into the workload (none by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reads: Option<Reads>,
    pub schedule: Vec<TimedFault>,
    /// When present, the clients run exactly these operations and no others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operations: Option<Vec<Operation>>,
    /// The nodes healed for the liveness phase (a majority); a seed-drawn one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heal_majority: Option<Vec<u64>>,
}

/// One client operation: client `client` (counted from 0) sends a fresh command (or, with
/// `read`, a read of that consistency) to node `node` (counted from 1) at `at_us`, or as
/// soon after as it is free, and then follows redirects as any client does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operation {
    pub at_us: u64,
    pub client: usize,
    pub node: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<crate::checker::history::Consistency>,
}

/// The core settings a swarm seed varies (`Config`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoreOverrides {
    pub max_append_entries: Option<usize>,
    pub max_append_bytes: Option<usize>,
    pub max_inflight_appends: Option<usize>,
    pub pre_vote: Option<bool>,
    pub check_quorum: Option<bool>,
}

/// How clients pace themselves (`WorkloadParams`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadOverrides {
    /// A client waits a uniform `0..=think_us_max` between operations.
    pub think_us_max: Option<u64>,
    /// A client gives up on an operation (outcome unknown) after this long.
    pub timeout_us: Option<u64>,
    /// The share of appends that carry a `(client, seq)` and are retried with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_appends: Option<Ratio>,
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
    /// This share of fsyncs stalls for up to `slow_fsync_us_max` instead.
    pub slow_fsync: Option<Ratio>,
    pub slow_fsync_us_max: Option<u64>,
    /// At a crash, the chance that some unsynced writes reached the disk anyway, and then
    /// that the last of them is torn.
    pub unsynced_survive: Option<Ratio>,
    pub torn: Option<Ratio>,
    /// The log's segment size in bytes (each entry's line is modelled as its payload plus
    /// 40 bytes); at least 64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_bytes: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimedFault {
    /// When the fault fires; exactly one of `at_ms` and `at_us` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<u64>,
    /// A recording's time, to the microsecond. Such a fault fires after every other event
    /// due at that microsecond, as it did in the run it was recorded from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_us: Option<u64>,
    /// With `at_us`: the fault fires after this many of the other events due at that
    /// microsecond (a recording's exact place among them); before all of them when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_events: Option<u32>,
    pub fault: Fault,
}

impl TimedFault {
    pub fn at_ms(at_ms: u64, fault: Fault) -> TimedFault {
        TimedFault {
            at_ms: Some(at_ms),
            at_us: None,
            after_events: None,
            fault,
        }
    }

    pub fn time_us(&self) -> u64 {
        self.at_us
            .unwrap_or_else(|| self.at_ms.unwrap_or(0).saturating_mul(1000))
    }

    /// `3000 ms` or `3000123 us`, for error messages.
    fn when(&self) -> String {
        match self.at_us {
            Some(us) => format!("{us} us"),
            None => format!("{} ms", self.at_ms.unwrap_or(0)),
        }
    }
}

impl CoreOverrides {
    fn is_empty(&self) -> bool {
        *self == CoreOverrides::default()
    }
}

impl NetworkOverrides {
    fn is_empty(&self) -> bool {
        *self == NetworkOverrides::default()
    }
}

impl DiskOverrides {
    fn is_empty(&self) -> bool {
        *self == DiskOverrides::default()
    }
}

impl WorkloadOverrides {
    fn is_empty(&self) -> bool {
        *self == WorkloadOverrides::default()
    }
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
        for (position, timed) in scenario.schedule.iter().enumerate() {
            if timed.at_ms.is_some() == timed.at_us.is_some() {
                return Err(format!(
                    "schedule entry {} ({}) needs exactly one of at_ms and at_us",
                    position + 1,
                    timed.fault.name()
                ));
            }
            if timed.after_events.is_some() && timed.at_us.is_none() {
                return Err(format!(
                    "schedule entry {} ({}): after_events goes with at_us",
                    position + 1,
                    timed.fault.name()
                ));
            }
        }
        Ok(scenario)
    }

    /// Checks the schedule against the run it will be part of: `nodes` nodes and a fault
    /// phase of `duration_us`. A fault at or after the end of the fault phase is refused
    /// rather than dropped: the liveness phase starts there, and a schedule that silently
    /// loses its last faults tests less than its author thinks.
    pub fn validate(&self, nodes: usize, duration_us: u64) -> Result<(), String> {
        let spares = self.spares.unwrap_or(0);
        if spares > 4 {
            return Err(format!("at most 4 spares, not {spares}"));
        }
        for (position, timed) in self.schedule.iter().enumerate() {
            let name = timed.fault.name();
            let when = timed.when();
            timed
                .fault
                .validate(nodes + spares)
                .map_err(|error| format!("at {when}: {name}: {error}"))?;
            if timed.time_us() >= duration_us {
                return Err(format!(
                    "at {when}: {name} (schedule entry {}) is not before the end of the {} ms \
                     fault phase, so it would never fire; schedule it earlier or lengthen \
                     duration_ms",
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
        self.validate_script(nodes, spares)?;
        if self.disk.segment_bytes.is_some_and(|bytes| bytes < 64) {
            return Err("disk: segment_bytes below 64 would seal a segment per entry".into());
        }
        let net = &self.network;
        let disk = &self.disk;
        let ratios = [net.loss, net.duplicate, net.reorder, disk.slow_fsync]
            .into_iter()
            .chain([
                disk.unsynced_survive,
                disk.torn,
                self.workload.session_appends,
            ]);
        for ratio in ratios.flatten() {
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
        disk.slow_fsync = self.disk.slow_fsync.unwrap_or(disk.slow_fsync);
        disk.slow_fsync_us_max = self
            .disk
            .slow_fsync_us_max
            .unwrap_or(disk.slow_fsync_us_max);
        disk.unsynced_survive = self.disk.unsynced_survive.unwrap_or(disk.unsynced_survive);
        disk.torn = self.disk.torn.unwrap_or(disk.torn);
        disk.segment_bytes = self.disk.segment_bytes.unwrap_or(disk.segment_bytes);
        self.core.apply(&mut params.core);
        params.skew_percent_max = self.skew_percent_max.unwrap_or(params.skew_percent_max);
        let workload = &mut params.workload;
        workload.think_us_max = self.workload.think_us_max.unwrap_or(workload.think_us_max);
        workload.timeout_us = self.workload.timeout_us.unwrap_or(workload.timeout_us);
        workload.session_appends = self
            .workload
            .session_appends
            .unwrap_or(workload.session_appends);
        if let Some(clients) = self.clients {
            params.workload.clients = clients;
        }
        params.membership.spares = self.spares.unwrap_or(0);
        if let Some(bytes) = self.log_cache_bytes {
            params.core.log_cache_bytes = bytes;
        }
        if let Some(retention) = &self.retention {
            params.workload.trim_interval_us = retention.interval_ms.saturating_mul(1000);
            params.workload.trim_keep_max = retention.keep_max;
        }
        if let Some(reads) = &self.reads {
            params.workload.read_percent = reads.percent;
            params.core.read_lease = reads.lease;
        }
        params
    }
}

impl Scenario {
    /// A scenario that writes `params` down: every setting a swarm seed draws, so that
    /// `self.params(params.nodes)` gives `params` back with the random faults switched off
    /// (a recording's schedule replaces them).
    pub fn with_settings_of(name: &str, params: &Params) -> Scenario {
        let (net, disk, core) = (&params.net, &params.disk, &params.core);
        let workload = &params.workload;
        Scenario {
            name: name.to_string(),
            nodes: Some(params.nodes),
            spares: (params.membership.spares > 0).then_some(params.membership.spares),
            skew_percent_max: Some(params.skew_percent_max),
            core: CoreOverrides {
                max_append_entries: Some(core.max_append_entries),
                max_append_bytes: Some(core.max_append_bytes),
                max_inflight_appends: Some(core.max_inflight_appends),
                pre_vote: Some(core.pre_vote),
                check_quorum: Some(core.check_quorum),
            },
            network: NetworkOverrides {
                latency_us_min: Some(net.latency_us_min),
                latency_us_max: Some(net.latency_us_max),
                loss: Some(net.loss),
                duplicate: Some(net.duplicate),
                reorder: Some(net.reorder),
                reorder_delay_us_max: Some(net.reorder_delay_us_max),
            },
            disk: DiskOverrides {
                fsync_us_min: Some(disk.fsync_us_min),
                fsync_us_max: Some(disk.fsync_us_max),
                slow_fsync: Some(disk.slow_fsync),
                slow_fsync_us_max: Some(disk.slow_fsync_us_max),
                unsynced_survive: Some(disk.unsynced_survive),
                torn: Some(disk.torn),
                segment_bytes: (disk.segment_bytes != crate::params::SEGMENT_BYTES_DEFAULT)
                    .then_some(disk.segment_bytes),
            },
            clients: Some(params.workload.clients),
            workload: WorkloadOverrides {
                think_us_max: Some(params.workload.think_us_max),
                timeout_us: Some(params.workload.timeout_us),
                session_appends: Some(params.workload.session_appends),
            },
            log_cache_bytes: Some(core.log_cache_bytes),
            reads: (workload.read_percent > 0 || core.read_lease).then_some(Reads {
                percent: workload.read_percent,
                lease: core.read_lease,
            }),
            retention: (workload.trim_interval_us > 0 || workload.trim_keep_max > 0).then_some(
                Retention {
                    interval_ms: workload.trim_interval_us / 1000,
                    keep_max: workload.trim_keep_max,
                },
            ),
            ..Scenario::default()
        }
    }

    /// The scripted operations and the healed majority must name nodes of the cluster and
    /// clients that exist.
    fn validate_script(&self, nodes: usize, spares: usize) -> Result<(), String> {
        let clients = self.clients.unwrap_or(Params::calm(nodes).workload.clients);
        for operation in self.operations.iter().flatten() {
            if operation.node == 0 || operation.node > (nodes + spares) as u64 {
                return Err(format!(
                    "operation at {} us: node {} is not in a {nodes}-node cluster",
                    operation.at_us, operation.node
                ));
            }
            if operation.client >= clients {
                return Err(format!(
                    "operation at {} us: client {} is not one of the {clients} clients \
                     (counted from 0)",
                    operation.at_us, operation.client
                ));
            }
        }
        if let Some(majority) = &self.heal_majority {
            let mut ids = majority.clone();
            ids.sort_unstable();
            ids.dedup();
            // With configuration changes the final configuration decides the majority's
            // size (`engine/liveness.rs`); without, it is a majority of the cluster.
            let size_ok = ids.len() == nodes / 2 + 1 || (spares > 0 && !ids.is_empty());
            let valid = ids.len() == majority.len()
                && size_ok
                && ids
                    .iter()
                    .all(|&id| id >= 1 && id <= (nodes + spares) as u64);
            if !valid {
                return Err(format!(
                    "heal_majority {majority:?} is not {} distinct nodes of a {nodes}-node \
                     cluster",
                    nodes / 2 + 1
                ));
            }
        }
        Ok(())
    }
}

impl CoreOverrides {
    fn apply(&self, core: &mut replog_core::Config) {
        core.max_append_entries = self.max_append_entries.unwrap_or(core.max_append_entries);
        core.max_append_bytes = self.max_append_bytes.unwrap_or(core.max_append_bytes);
        core.max_inflight_appends = self
            .max_inflight_appends
            .unwrap_or(core.max_inflight_appends);
        core.pre_vote = self.pre_vote.unwrap_or(core.pre_vote);
        core.check_quorum = self.check_quorum.unwrap_or(core.check_quorum);
    }
}

pub fn check_cluster_size(nodes: usize) -> Result<(), String> {
    if (3..=9).contains(&nodes) {
        Ok(())
    } else {
        Err(format!("a cluster has 3 to 9 nodes, not {nodes}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{SimRng, Stream};

    /// A recording is replayed from its written-down settings, so they must be complete:
    /// everything a swarm seed draws comes back, and only the random faults stay off.
    #[test]
    fn a_swarm_seeds_settings_written_down_read_back_the_same() {
        for seed in 0..300 {
            let swarm = Params::swarm(5, &mut SimRng::new(seed, Stream::Swarm));
            let written = Scenario::with_settings_of("settings", &swarm);
            let text = serde_json::to_string(&written).expect("serializable");
            let read = Scenario::parse(&text).expect("parses");
            let mut expected = swarm.clone();
            expected.faults = Params::calm(5).faults;
            // Configuration changes are random faults too; the spares are settings.
            expected.membership.interval_us_min = 0;
            expected.membership.interval_us_max = 0;
            assert_eq!(read.params(5), expected, "seed {seed}");
        }
    }

    #[test]
    fn a_schedule_entry_needs_exactly_one_time() {
        let both = r#"{"name":"x","schedule":[{"at_ms":1,"at_us":1000,"fault":{"kind":"heal"}}]}"#;
        let error = Scenario::parse(both).expect_err("two times");
        assert!(error.contains("exactly one of at_ms and at_us"), "{error}");
        let none = r#"{"name":"x","schedule":[{"fault":{"kind":"heal"}}]}"#;
        assert!(Scenario::parse(none).is_err());
        let us = r#"{"name":"x","schedule":[{"at_us":1500,"fault":{"kind":"heal"}}]}"#;
        assert_eq!(
            Scenario::parse(us).expect("at_us").schedule[0].time_us(),
            1500
        );
    }

    #[test]
    fn scripted_operations_must_name_real_nodes_clients_and_a_majority() {
        let parse = |extra: &str| {
            let text = format!(r#"{{"name":"x","nodes":3,"schedule":[],{extra}}}"#);
            Scenario::parse(&text)
                .expect("parses")
                .validate(3, 1_000_000)
        };
        assert_eq!(
            parse(r#""operations":[{"at_us":5,"client":0,"node":3}]"#),
            Ok(())
        );
        let error = parse(r#""operations":[{"at_us":5,"client":0,"node":4}]"#).unwrap_err();
        assert!(
            error.contains("node 4 is not in a 3-node cluster"),
            "{error}"
        );
        let error = parse(r#""operations":[{"at_us":5,"client":3,"node":1}]"#).unwrap_err();
        assert!(error.contains("client 3"), "{error}");
        assert_eq!(parse(r#""heal_majority":[1,3]"#), Ok(()));
        assert!(parse(r#""heal_majority":[1,1]"#).is_err());
        assert!(parse(r#""heal_majority":[1]"#).is_err());
    }
}
