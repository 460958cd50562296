//! One seed, start to finish: build the simulation, run it, catch core assertions, and
//! report what happened.

use crate::checker::history::Tally;
use crate::coverage::Coverage;
use crate::engine::{Counters, Ending, Recording, Simulation};
use crate::params::Params;
use crate::report::{seconds, Violation};
use crate::rng::{SimRng, Stream};
use crate::scenario::{Scenario, TimedFault};
use crate::trace::{Trace, TraceRecord};
use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

/// Everything that determines a run. Same options, same trace hash.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub seed: u64,
    /// Cluster size; must equal the scenario's own when it names one (see `validate`).
    pub nodes: usize,
    /// Length of the fault phase; must equal the scenario's own when it names one.
    pub duration_us: u64,
    /// The scenario and the path it was read from (for the replay command).
    pub scenario: Option<(String, Scenario)>,
}

impl RunOptions {
    pub fn swarm(seed: u64, nodes: usize, duration_us: u64) -> RunOptions {
        RunOptions {
            seed,
            nodes,
            duration_us,
            scenario: None,
        }
    }

    pub fn nodes(&self) -> usize {
        self.scenario
            .as_ref()
            .and_then(|(_, scenario)| scenario.nodes)
            .unwrap_or(self.nodes)
    }

    pub fn duration_us(&self) -> u64 {
        self.scenario
            .as_ref()
            .and_then(|(_, scenario)| scenario.duration_ms)
            .map_or(self.duration_us, |ms| ms * 1000)
    }

    /// Checks that the run can do what it says: a cluster size the simulator supports, the
    /// same size and fault phase as the scenario's own when it fixes them (a disagreement
    /// is refused, not settled silently in the scenario's favour), and a schedule that fits
    /// both.
    pub fn validate(&self) -> Result<(), String> {
        crate::scenario::check_cluster_size(self.nodes)?;
        let Some((_, scenario)) = &self.scenario else {
            return Ok(());
        };
        if let Some(nodes) = scenario.nodes.filter(|&nodes| nodes != self.nodes) {
            return Err(format!(
                "scenario {} is for {nodes} nodes, but --nodes asks for {}; drop --nodes or \
                 give {nodes}",
                scenario.name, self.nodes
            ));
        }
        if let Some(ms) = scenario
            .duration_ms
            .filter(|&ms| ms * 1000 != self.duration_us)
        {
            return Err(format!(
                "scenario {} has a fault phase of {}, but --duration asks for {}; drop \
                 --duration or give {}",
                scenario.name,
                duration_arg(ms * 1000),
                duration_arg(self.duration_us),
                duration_arg(ms * 1000)
            ));
        }
        scenario.validate(self.nodes, self.duration_us)
    }

    pub fn params(&self) -> Params {
        match &self.scenario {
            Some((_, scenario)) => scenario.params(self.nodes()),
            None => Params::swarm(self.nodes(), &mut SimRng::new(self.seed, Stream::Swarm)),
        }
    }

    /// The command line that replays this run with its full trace.
    pub fn replay_command(&self) -> String {
        let mut command = format!(
            "replog sim replay --seed {} --nodes {} --duration {}",
            self.seed,
            self.nodes(),
            duration_arg(self.duration_us())
        );
        if let Some((path, _)) = &self.scenario {
            let _ = write!(command, " --scenario {path}");
        }
        command
    }
}

/// `60s` when whole seconds, else `1500ms`: what `--duration` reads back.
pub fn duration_arg(duration_us: u64) -> String {
    if duration_us.is_multiple_of(1_000_000) {
        format!("{}s", duration_us / 1_000_000)
    } else {
        format!("{}ms", duration_us / 1000)
    }
}

/// A violation, when and where it happened, and what led up to it.
#[derive(Clone, Debug)]
pub struct Failure {
    pub violation: Violation,
    pub time_us: u64,
    pub recent: Vec<TraceRecord>,
}

#[derive(Clone, Debug)]
pub struct RunReport {
    pub options: RunOptions,
    pub params: Params,
    pub end_us: u64,
    pub counters: Counters,
    pub elections: usize,
    pub commits: u64,
    pub ops: Tally,
    /// Liveness phase: (leader, fresh commit, converged), each after the heal.
    pub liveness: Option<(Option<u64>, Option<u64>, Option<u64>)>,
    pub trace_hash: u64,
    pub failure: Option<Failure>,
    pub coverage: Coverage,
}

impl RunReport {
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }

    /// A deterministic summary: the same for the same options on any machine.
    pub fn summary(&self) -> String {
        let options = &self.options;
        let mut out = String::new();
        let what = match &options.scenario {
            Some((_, scenario)) => format!("scenario {}", scenario.name),
            None => "swarm".to_string(),
        };
        let _ = writeln!(
            out,
            "seed {} · {} nodes · {what} · fault phase {}",
            options.seed,
            options.nodes(),
            seconds(options.duration_us())
        );
        let counters = &self.counters;
        let _ = writeln!(
            out,
            "events: {} (messages sent {}, dropped {})",
            counters.events, counters.messages_sent, counters.messages_dropped
        );
        let _ = writeln!(out, "elections: {} terms with a leader", self.elections);
        let _ = writeln!(out, "commits: {} entries", self.commits);
        let faults: Vec<String> = counters
            .faults
            .iter()
            .map(|(name, count)| format!("{name}={count}"))
            .collect();
        let _ = writeln!(
            out,
            "faults injected: {} ({} crashes)",
            if faults.is_empty() {
                "none".to_string()
            } else {
                faults.join(" ")
            },
            counters.crashes
        );
        let ops = &self.ops;
        let _ = writeln!(
            out,
            "operations: {} invoked, {} acknowledged, {} failed, {} unknown",
            ops.invoked, ops.acknowledged, ops.failed, ops.unknown
        );
        if ops.reads > 0 {
            let _ = writeln!(
                out,
                "reads: {} invoked, {} answered",
                ops.reads, ops.reads_answered
            );
        }
        if let Some((leader, commit, converged)) = self.liveness {
            let show = |t: Option<u64>| t.map_or("-".to_string(), seconds);
            let _ = writeln!(
                out,
                "liveness: leader after {}, fresh commit after {}, converged after {}",
                show(leader),
                show(commit),
                show(converged)
            );
        }
        let _ = writeln!(out, "simulated time: {}", seconds(self.end_us));
        let _ = writeln!(out, "trace hash: {:016x}", self.trace_hash);
        match &self.failure {
            None => {
                let _ = writeln!(out, "result: ok");
            }
            Some(failure) => {
                let _ = writeln!(out, "result: VIOLATION of {}", failure.violation.invariant);
            }
        }
        out
    }

    /// The full violation report: invariant, time, nodes, last events, replay command.
    pub fn failure_report(&self) -> Option<String> {
        let failure = self.failure.as_ref()?;
        let mut out = String::new();
        let violation = &failure.violation;
        let _ = writeln!(
            out,
            "VIOLATION: {} at {}",
            violation.invariant,
            seconds(failure.time_us)
        );
        let nodes: Vec<String> = violation.nodes.iter().map(|id| id.to_string()).collect();
        let _ = writeln!(
            out,
            "  nodes:  {}",
            if nodes.is_empty() {
                "-".into()
            } else {
                nodes.join(", ")
            }
        );
        let _ = writeln!(out, "  detail: {}", violation.detail);
        let _ = writeln!(out, "last {} trace events:", failure.recent.len());
        for record in &failure.recent {
            let _ = writeln!(out, "  {record}");
        }
        let _ = writeln!(out, "replay: {}", self.options.replay_command());
        Some(out)
    }
}

thread_local! {
    /// Set while a simulation runs on this thread, so the panic hook captures, not prints.
    static IN_SIMULATION: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Core assertions are findings, not crashes of the simulator: capture their message and
/// location instead of printing them, on simulation threads only.
fn install_panic_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_SIMULATION.with(Cell::get) {
                LAST_PANIC.with(|last| *last.borrow_mut() = Some(info.to_string()));
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs one seed. `sink`, when given, receives the readable trace of every event.
pub fn run(options: &RunOptions, sink: Option<Box<dyn std::io::Write>>) -> RunReport {
    run_with(options, sink, Keep::default()).0
}

/// Runs one seed like [`run`], also keeping what the HTML viewer shows (same trace hash).
pub fn run_recorded(
    options: &RunOptions,
    sink: Option<Box<dyn std::io::Write>>,
) -> (RunReport, crate::viewer::record::Recording) {
    let keep = Keep {
        viewer: true,
        script: false,
    };
    let (report, recording, _) = run_with(options, sink, keep);
    (report, recording.expect("recording was asked for"))
}

/// Runs one seed and writes down its faults and client operations as they happen.
pub fn record(options: &RunOptions) -> (RunReport, Recording) {
    let keep = Keep {
        viewer: false,
        script: true,
    };
    let (report, _, recording) = run_with(options, None, keep);
    (report, recording.expect("recording was on"))
}

/// What a run keeps besides its report: the viewer's picture, the shrinker's script.
#[derive(Clone, Copy, Default)]
struct Keep {
    viewer: bool,
    script: bool,
}

fn run_with(
    options: &RunOptions,
    sink: Option<Box<dyn std::io::Write>>,
    keep: Keep,
) -> (
    RunReport,
    Option<crate::viewer::record::Recording>,
    Option<Recording>,
) {
    install_panic_hook();
    let params = options.params();
    let scenario = options.scenario.as_ref().map(|(_, scenario)| scenario);
    let timed = scenario.into_iter().flat_map(|scenario| &scenario.schedule);
    // Faults placed to the microsecond are played back in their place among that
    // microsecond's events; the others are queued like any event.
    let (placed, planned): (Vec<TimedFault>, Vec<TimedFault>) =
        timed.cloned().partition(|timed| timed.at_us.is_some());
    let schedule: Vec<_> = planned
        .into_iter()
        .map(|timed| (timed.time_us(), timed.fault))
        .collect();
    let mut trace = Trace::new(sink);
    trace.note(&format!("# {}", options.replay_command()));
    trace.note(&format!("# {params:?}"));
    let mut sim = Simulation::new(
        options.seed,
        params.clone(),
        options.duration_us(),
        &schedule,
        trace,
    );
    if keep.viewer {
        sim.record_for_viewer();
    }
    if let Some(scenario) = scenario {
        let operations = scenario.operations.as_deref();
        sim.play(&placed, operations, scenario.heal_majority.as_deref());
    }
    if keep.script {
        sim.start_recording();
    }
    IN_SIMULATION.with(|flag| flag.set(true));
    let ending = catch_unwind(AssertUnwindSafe(|| sim.run()));
    IN_SIMULATION.with(|flag| flag.set(false));
    let violation = match ending {
        Ok(Ending::Converged) => None,
        Ok(Ending::Violated(violation)) => Some(violation),
        Err(payload) => {
            let message = LAST_PANIC
                .with(|last| last.borrow_mut().take())
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a core assertion failed".to_string());
            let nodes: Vec<_> = sim.current_node.into_iter().collect();
            Some(Violation::new("Core Invariant", &nodes, message))
        }
    };
    let failure = violation.map(|violation| Failure {
        violation,
        time_us: sim.now_us(),
        recent: sim.trace().recent(),
    });
    if let Some(failure) = &failure {
        let line = format!("# VIOLATION: {}", failure.violation);
        sim.trace_mut().note(&line);
    }
    sim.trace_mut().flush();
    let viewer = sim.take_viewer_recording();
    let coverage = Coverage::of_run(
        &sim.trace().tally,
        &sim.counters.faults,
        &sim.core_stats(),
        &params,
    );
    let report = RunReport {
        options: options.clone(),
        params,
        end_us: sim.now_us(),
        counters: sim.counters.clone(),
        elections: sim.checker().elections(),
        commits: sim.checker().committed_len().0,
        ops: sim.checker().history.tally(),
        liveness: sim.liveness_times(),
        trace_hash: sim.trace().hash(),
        failure,
        coverage,
    };
    (report, viewer, sim.take_recording())
}

#[cfg(test)]
mod tests {
    use super::*;
    use replog_core::NodeId;

    #[test]
    fn a_violation_report_names_the_invariant_time_nodes_recent_events_and_replay() {
        let options = RunOptions::swarm(4, 3, 2_000_000);
        let mut report = run(&options, None);
        assert!(report.passed(), "{:?}", report.failure);
        // Fabricate a failure at the end of a real run, with its real recent events.
        let recent = {
            let mut trace = Trace::new(None);
            let record = TraceRecord {
                time_us: 1_500_000,
                node: 2,
                what: crate::trace::What::Pause,
            };
            for _ in 0..60 {
                trace.record(record);
            }
            trace.recent()
        };
        report.failure = Some(Failure {
            violation: Violation::new(
                "Election Safety",
                &[NodeId(1), NodeId(2)],
                "two leaders in t3",
            ),
            time_us: 1_234_567,
            recent,
        });
        let text = report.failure_report().expect("failed run");
        assert!(
            text.starts_with("VIOLATION: Election Safety at 1.234567s\n"),
            "{text}"
        );
        assert!(text.contains("  nodes:  n1, n2\n"));
        assert!(text.contains("  detail: two leaders in t3\n"));
        assert!(text.contains("last 50 trace events:\n"));
        assert_eq!(text.matches("n2 PAUSE").count(), 50);
        assert!(text.ends_with("replay: replog sim replay --seed 4 --nodes 3 --duration 2s\n"));
        assert!(report
            .summary()
            .contains("result: VIOLATION of Election Safety"));
    }

    #[test]
    fn durations_print_as_the_cli_reads_them() {
        assert_eq!(duration_arg(60_000_000), "60s");
        assert_eq!(duration_arg(1_500_000), "1500ms");
    }
}
