//! Shrinking: a failing run reduced to a small scenario that fails the same way.
//!
//! 1. Run the seed again, recording every fault's effect and every client operation
//!    (`engine::Recording`), and write the run down as a scenario: its settings, the faults
//!    at their microsecond, the operations, the liveness phase's majority.
//! 2. Check that the scenario replays to a violation of the same invariant: shrinking a
//!    scenario that fails differently would shrink the wrong bug.
//! 3. Cut the fault phase just after the violation: what came later cannot have caused it.
//! 4. Delta-debug the faults, then the operations, re-running the simulator on each
//!    candidate and keeping it when it still violates the same invariant.
//! 5. Try a shorter fault phase and fewer nodes; repeat 3 to 5 until nothing shrinks.
//!
//! A candidate is a different run, not a slice of the first (a fault less changes what
//! every later draw of the seed lands on), so "the same invariant" is the only thing kept
//! constant; the shrunk scenario usually fails earlier and elsewhere than the original.

mod ddmin;

pub use ddmin::ddmin;

use crate::engine::Recording;
use crate::fault::{Fault, Target};
use crate::run::{record, run, RunOptions, RunReport};
use crate::scenario::{Operation, Scenario, TimedFault};
use std::fmt;

/// How big a run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size {
    pub faults: usize,
    pub operations: usize,
    pub nodes: usize,
    pub duration_us: u64,
}

impl fmt::Display for Size {
    /// `412 faults, 3,811 operations, 5 nodes, 60 s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} faults, {} operations, {} nodes, {}",
            thousands(self.faults as u64),
            thousands(self.operations as u64),
            self.nodes,
            short_seconds(self.duration_us)
        )
    }
}

/// What shrinking found.
pub struct Shrunk {
    pub invariant: String,
    pub original: Size,
    pub shrunk: Size,
    /// The shrunk run, ready to write to a file.
    pub scenario: Scenario,
    /// The shrunk scenario's run, which violates `invariant`.
    pub report: RunReport,
    /// Simulator runs it took, the recording and its replay included.
    pub runs: usize,
}

/// Simulator runs one shrink may spend; it stops with what it has then.
pub const RUNS_MAX: usize = 3_000;

/// Shrinks the failing run `options` (see the module documentation). Fails when the run
/// passes, or when its recording does not replay to the same invariant.
pub fn shrink(options: &RunOptions, runs_max: usize) -> Result<Shrunk, String> {
    let (report, recording) = record(options);
    let failure = report.failure.as_ref().ok_or_else(|| {
        format!(
            "seed {} passes ({}): nothing to shrink",
            options.seed,
            options.replay_command()
        )
    })?;
    let invariant = failure.violation.invariant.to_string();
    let mut best = Candidate {
        nodes: options.nodes(),
        duration_ms: options.duration_us().div_ceil(1000),
        faults: recording.faults.clone(),
        operations: recording.operations.clone(),
        heal_majority: recording.heal_majority.clone(),
    };
    let mut base = write_down(options, &report, recording);
    base.name = format!("shrunk-seed-{}", options.seed);
    base.description = format!(
        "Shrunk by replog sim shrink from: {} ({} at {}: {})",
        options.replay_command(),
        invariant,
        crate::report::seconds(failure.time_us),
        failure.violation.detail
    );
    let original = best.size();
    let mut shrinker = Shrinker {
        seed: options.seed,
        base,
        invariant,
        runs: 1,
        runs_max,
        latest: None,
    };
    if !shrinker.fails(&best) {
        return Err(format!(
            "seed {}: its recording does not replay to a violation of {} (a recording bug)",
            options.seed, shrinker.invariant
        ));
    }
    loop {
        let before = best.size();
        shrinker.cut_after_violation(&mut best);
        shrinker.shrink_faults(&mut best);
        shrinker.shrink_operations(&mut best);
        shrinker.shrink_duration(&mut best);
        shrinker.shrink_nodes(&mut best);
        if best.size() == before || shrinker.runs >= shrinker.runs_max {
            break;
        }
    }
    Ok(Shrunk {
        shrunk: best.size(),
        scenario: shrinker.scenario(&best),
        report: shrinker.latest.take().expect("the best candidate failed"),
        invariant: shrinker.invariant,
        original,
        runs: shrinker.runs,
    })
}

/// The run `options` as a scenario, from its report and its recording: its settings, its
/// seed, and what happened in it, so that it replays the same run.
pub fn write_down(options: &RunOptions, report: &RunReport, recording: Recording) -> Scenario {
    Scenario {
        name: format!("recorded-seed-{}", options.seed),
        description: format!("Recorded from: {}", options.replay_command()),
        seed: Some(options.seed),
        duration_ms: Some(options.duration_us().div_ceil(1000)),
        schedule: recording.faults,
        operations: Some(recording.operations),
        heal_majority: recording.heal_majority,
        ..Scenario::with_settings_of("recorded", &report.params)
    }
}

/// A run being shrunk: what the scenario file will hold, besides the settings.
#[derive(Clone, Debug)]
struct Candidate {
    nodes: usize,
    duration_ms: u64,
    faults: Vec<TimedFault>,
    operations: Vec<Operation>,
    heal_majority: Option<Vec<u64>>,
}

impl Candidate {
    fn size(&self) -> Size {
        Size {
            faults: self.faults.len(),
            operations: self.operations.len(),
            nodes: self.nodes,
            duration_us: self.duration_ms * 1000,
        }
    }

    /// The same run with a fault phase of `duration_ms`: what would fall after it goes.
    fn cut(&self, duration_ms: u64) -> Candidate {
        let end_us = duration_ms * 1000;
        Candidate {
            duration_ms,
            faults: self
                .faults
                .iter()
                .filter(|timed| timed.time_us() < end_us)
                .cloned()
                .collect(),
            operations: self
                .operations
                .iter()
                .filter(|operation| operation.at_us < end_us)
                .copied()
                .collect(),
            ..self.clone()
        }
    }

    /// The same run on the first `nodes` nodes: faults and operations that name a node
    /// beyond them go, splits keep their members among them.
    fn on_nodes(&self, nodes: usize) -> Candidate {
        let majority = nodes / 2 + 1;
        let heal_majority = self.heal_majority.as_ref().map(|ids| {
            let mut kept: Vec<u64> = ids
                .iter()
                .copied()
                .filter(|&id| id <= nodes as u64)
                .collect();
            for id in 1..=nodes as u64 {
                if kept.len() < majority && !kept.contains(&id) {
                    kept.push(id);
                }
            }
            kept.truncate(majority);
            kept.sort_unstable();
            kept
        });
        Candidate {
            nodes,
            faults: self
                .faults
                .iter()
                .filter_map(|timed| {
                    let fault = on_nodes(&timed.fault, nodes)?;
                    Some(TimedFault {
                        fault,
                        ..timed.clone()
                    })
                })
                .collect(),
            operations: self
                .operations
                .iter()
                .filter(|operation| operation.node <= nodes as u64)
                .copied()
                .collect(),
            heal_majority,
            ..self.clone()
        }
    }
}

/// `fault` in a cluster of `nodes`, or `None` when it names a node beyond it.
fn on_nodes(fault: &Fault, nodes: usize) -> Option<Fault> {
    let within = |ids: &Vec<u64>| -> Vec<u64> {
        ids.iter()
            .copied()
            .filter(|&id| id <= nodes as u64)
            .collect()
    };
    let fault = match fault {
        Fault::Split { group: Some(group) } => Fault::Split {
            group: Some(within(group)),
        },
        Fault::Bridge {
            target,
            side: Some(side),
        } => Fault::Bridge {
            target: *target,
            side: Some(within(side)),
        },
        other => other.clone(),
    };
    fault.validate(nodes).ok()?;
    match &fault {
        Fault::Split { group: Some(group) } if group.len() == 1 => Some(Fault::Isolate {
            target: Target::Node(group[0]),
        }),
        _ => Some(fault),
    }
}

struct Shrinker {
    seed: u64,
    base: Scenario,
    invariant: String,
    runs: usize,
    runs_max: usize,
    /// The run of the best candidate so far.
    latest: Option<RunReport>,
}

impl Shrinker {
    fn scenario(&self, candidate: &Candidate) -> Scenario {
        Scenario {
            nodes: Some(candidate.nodes),
            duration_ms: Some(candidate.duration_ms),
            schedule: candidate.faults.clone(),
            operations: Some(candidate.operations.clone()),
            heal_majority: candidate.heal_majority.clone(),
            ..self.base.clone()
        }
    }

    /// Runs `candidate`; true (and it becomes `latest`) if it violates the invariant.
    fn fails(&mut self, candidate: &Candidate) -> bool {
        if self.runs >= self.runs_max {
            return false;
        }
        let scenario = self.scenario(candidate);
        let options = RunOptions {
            seed: self.seed,
            nodes: candidate.nodes,
            duration_us: candidate.duration_ms * 1000,
            scenario: Some((format!("{}.json", scenario.name), scenario)),
        };
        if options.validate().is_err() {
            return false;
        }
        self.runs += 1;
        let report = run(&options, None);
        let same = report
            .failure
            .as_ref()
            .is_some_and(|failure| failure.violation.invariant == self.invariant.as_str());
        if same {
            self.latest = Some(report);
        }
        same
    }

    fn violation_us(&self) -> u64 {
        let latest = self.latest.as_ref().expect("the best candidate failed");
        latest.failure.as_ref().expect("it failed").time_us
    }

    fn cut_after_violation(&mut self, best: &mut Candidate) {
        let duration_ms = self.violation_us() / 1000 + 1;
        if duration_ms < best.duration_ms {
            let cut = best.cut(duration_ms);
            if self.fails(&cut) {
                *best = cut;
            }
        }
    }

    /// The faults, delta-debugged. A failing candidate hands back only the faults up to
    /// its violation: the run fails the same without the rest.
    fn shrink_faults(&mut self, best: &mut Candidate) {
        let faults = std::mem::take(&mut best.faults);
        let template = best.clone();
        best.faults = ddmin(faults, &mut |faults| {
            let candidate = Candidate {
                faults: faults.to_vec(),
                ..template.clone()
            };
            self.fails(&candidate).then(|| {
                let violation_us = self.violation_us();
                let until = |timed: &&TimedFault| timed.time_us() <= violation_us;
                faults.iter().filter(until).cloned().collect()
            })
        });
    }

    /// The operations, delta-debugged like the faults.
    fn shrink_operations(&mut self, best: &mut Candidate) {
        let operations = std::mem::take(&mut best.operations);
        let template = best.clone();
        best.operations = ddmin(operations, &mut |operations| {
            let candidate = Candidate {
                operations: operations.to_vec(),
                ..template.clone()
            };
            self.fails(&candidate).then(|| {
                let violation_us = self.violation_us();
                let until = |operation: &&Operation| operation.at_us <= violation_us;
                operations.iter().filter(until).copied().collect()
            })
        });
    }

    /// Halves the fault phase while the run still fails.
    fn shrink_duration(&mut self, best: &mut Candidate) {
        while best.duration_ms > 1 {
            let shorter = best.cut(best.duration_ms / 2);
            if !self.fails(&shorter) {
                return;
            }
            *best = shorter;
            self.cut_after_violation(best);
        }
    }

    /// The smallest cluster on which the run still fails.
    fn shrink_nodes(&mut self, best: &mut Candidate) {
        for nodes in 3..best.nodes {
            let smaller = best.on_nodes(nodes);
            if self.fails(&smaller) {
                *best = smaller;
                return;
            }
        }
    }
}

/// `3811` as `3,811`.
pub fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (position, digit) in digits.chars().enumerate() {
        if position > 0 && (digits.len() - position).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// The command that replays `scenario` once written to `path`.
pub fn replay_command(path: &str) -> String {
    format!("replog sim run --scenario {path}")
}

/// `60 s`, `1.2 s`, `0.015 s`: simulated seconds without trailing zeros.
fn short_seconds(time_us: u64) -> String {
    let fraction = format!("{:06}", time_us % 1_000_000);
    let fraction = fraction.trim_end_matches('0');
    if fraction.is_empty() {
        format!("{} s", time_us / 1_000_000)
    } else {
        format!("{}.{fraction} s", time_us / 1_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shrinking rests on this: a run written down replays as the same run. Its end,
    /// commits, messages and client outcomes all come back.
    #[test]
    fn a_recorded_swarm_run_replays_as_the_same_run() {
        for seed in 0..60 {
            let options = RunOptions::swarm(seed, 3 + 2 * (seed as usize % 2), 30_000_000);
            let (report, recording) = record(&options);
            assert!(report.passed(), "seed {seed}: {:?}", report.failure);
            let scenario = write_down(&options, &report, recording);
            let text = serde_json::to_string_pretty(&scenario).expect("serializable");
            let scenario = Scenario::parse(&text).expect("reads back");
            let replay = RunOptions {
                seed,
                nodes: options.nodes,
                duration_us: options.duration_us,
                scenario: Some(("recorded.json".into(), scenario)),
            };
            replay.validate().expect("valid");
            let replayed = run(&replay, None);
            let summary = |report: &RunReport| {
                let counters = &report.counters;
                (
                    report.end_us,
                    report.commits,
                    report.elections,
                    counters.messages_sent,
                )
            };
            assert_eq!(summary(&replayed), summary(&report), "seed {seed}");
            assert_eq!(format!("{:?}", replayed.ops), format!("{:?}", report.ops));
        }
    }

    #[test]
    fn counts_print_with_thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(412), "412");
        assert_eq!(thousands(3_811), "3,811");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(short_seconds(60_000_000), "60 s");
        assert_eq!(short_seconds(1_200_000), "1.2 s");
    }

    fn placed(at_us: u64, fault: Fault) -> TimedFault {
        TimedFault {
            at_ms: None,
            at_us: Some(at_us),
            after_events: Some(0),
            fault,
        }
    }

    #[test]
    fn a_smaller_cluster_keeps_what_fits_and_a_majority_to_heal() {
        let candidate = Candidate {
            nodes: 5,
            duration_ms: 1_000,
            faults: vec![
                placed(
                    1,
                    Fault::Split {
                        group: Some(vec![1, 4]),
                    },
                ),
                placed(
                    2,
                    Fault::Crash {
                        target: Target::Node(5),
                        restart_after_ms: None,
                        restart_after_us: None,
                    },
                ),
                placed(
                    3,
                    Fault::Split {
                        group: Some(vec![2, 3]),
                    },
                ),
            ],
            operations: vec![
                Operation {
                    at_us: 1,
                    client: 0,
                    node: 4,
                    read: None,
                },
                Operation {
                    at_us: 2,
                    client: 0,
                    node: 2,
                    read: None,
                },
            ],
            heal_majority: Some(vec![3, 4, 5]),
        };
        let smaller = candidate.on_nodes(3);
        assert_eq!(
            smaller.faults,
            [
                placed(
                    1,
                    Fault::Isolate {
                        target: Target::Node(1)
                    }
                ),
                placed(
                    3,
                    Fault::Split {
                        group: Some(vec![2, 3])
                    }
                ),
            ]
        );
        assert_eq!(
            smaller.operations,
            [Operation {
                at_us: 2,
                client: 0,
                node: 2,
                read: None,
            }]
        );
        assert_eq!(smaller.heal_majority, Some(vec![1, 3]));
    }
}
