//! Every scenario file runs (seed 1) with every invariant holding, and its summary is an
//! insta snapshot: a change in behaviour shows up as a reviewable diff.

use replog_sim::scenario::TimedFault;
use replog_sim::{run, Fault, RunOptions, Scenario};
use std::collections::BTreeSet;
use std::path::Path;

/// Seed 1 of `scenarios/FILE`, with the scenario's own size and length.
fn scenario_options(file: &str) -> RunOptions {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(file);
    let scenario = Scenario::load(&path).expect("scenario parses");
    let options = RunOptions {
        seed: 1,
        nodes: scenario.nodes.unwrap_or(5),
        duration_us: scenario.duration_ms.map_or(20_000_000, |ms| ms * 1000),
        scenario: Some((format!("scenarios/{file}"), scenario)),
    };
    options.validate().expect("scenario is valid");
    options
}

fn run_scenario(file: &str) -> String {
    let report = run(&scenario_options(file), None);
    assert!(
        report.passed(),
        "{}{}",
        report.summary(),
        report.failure_report().unwrap_or_default()
    );
    report.summary()
}

/// The name a fault kind has in a scenario file. No wildcard arm: a new kind of fault does
/// not compile here until it is named, and then `ALL_KINDS` and docs/scenarios.md need it.
fn kind(fault: &Fault) -> &'static str {
    match fault {
        Fault::Heal => "heal",
        Fault::Split { .. } => "split",
        Fault::Isolate { .. } => "isolate",
        Fault::Minority => "minority",
        Fault::OneWay { .. } => "one_way",
        Fault::Bridge { .. } => "bridge",
        Fault::Flap { .. } => "flap",
        Fault::Crash { .. } => "crash",
        Fault::CrashMajority { .. } => "crash_majority",
        Fault::Restart { .. } => "restart",
        Fault::Pause { .. } => "pause",
        Fault::Loss { .. } => "loss",
        Fault::Duplicate { .. } => "duplicate",
        Fault::Skew { .. } => "skew",
        Fault::Transfer { .. } => "transfer",
        Fault::Membership { .. } => "membership",
    }
}

const ALL_KINDS: [&str; 16] = [
    "heal",
    "split",
    "isolate",
    "minority",
    "one_way",
    "bridge",
    "flap",
    "crash",
    "crash_majority",
    "restart",
    "pause",
    "loss",
    "duplicate",
    "skew",
    "transfer",
    "membership",
];

/// The contents of every ```json block of a Markdown file.
fn json_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```json") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), text) => {
                block.push_str(text);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "an unclosed ```json block");
    blocks
}

#[test]
fn the_documented_scenario_format_parses_and_shows_every_fault_kind() {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/scenarios.md");
    let text = std::fs::read_to_string(&doc).expect("docs/scenarios.md exists");
    let mut shown = BTreeSet::new();
    let mut whole_files = 0;
    for block in json_blocks(&text) {
        // A block is a whole scenario file or one entry of a schedule.
        let (scenario, entries) = match Scenario::parse(&block) {
            Ok(scenario) => {
                whole_files += 1;
                let entries = scenario.schedule.clone();
                (scenario, entries)
            }
            Err(as_file) => {
                let entry: TimedFault = serde_json::from_str(&block).unwrap_or_else(|as_entry| {
                    panic!("neither a scenario ({as_file}) nor a schedule entry ({as_entry}):\n{block}")
                });
                let scenario = Scenario {
                    name: "doc-example".into(),
                    description: String::new(),
                    nodes: Some(5),
                    duration_ms: Some(20_000),
                    network: Default::default(),
                    disk: Default::default(),
                    clients: None,
                    log_cache_bytes: None,
                    retention: None,
                    reads: None,
                    schedule: vec![entry.clone()],
                    ..Scenario::default()
                };
                (scenario, vec![entry])
            }
        };
        let options = RunOptions {
            seed: 1,
            nodes: scenario.nodes.unwrap_or(5),
            duration_us: scenario.duration_ms.map_or(60_000_000, |ms| ms * 1000),
            scenario: Some(("docs/scenarios.md".into(), scenario)),
        };
        options
            .validate()
            .unwrap_or_else(|error| panic!("{error}:\n{block}"));
        shown.extend(entries.iter().map(|entry| kind(&entry.fault)));
    }
    assert!(whole_files >= 1, "the doc shows a whole scenario file");
    let missing: Vec<_> = ALL_KINDS.iter().filter(|k| !shown.contains(*k)).collect();
    assert!(missing.is_empty(), "no example of {missing:?}");
}

macro_rules! scenario_tests {
    ($($name:ident => $file:literal),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                insta::assert_snapshot!(run_scenario($file));
            }
        )*

        #[test]
        fn every_scenario_file_has_a_test() {
            let tested = [$($file),*];
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
            let mut files: Vec<String> = std::fs::read_dir(dir)
                .expect("scenarios/ exists")
                .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with(".json"))
                .collect();
            files.sort();
            let mut tested: Vec<String> = tested.iter().map(|s| s.to_string()).collect();
            tested.sort();
            assert_eq!(files, tested);
            assert!(files.len() >= 10);
        }
    };
}

scenario_tests! {
    leader_isolated => "leader-isolated.json",
    minority_partition => "minority-partition.json",
    majority_partition_then_heal => "majority-partition-then-heal.json",
    flapping_partitions => "flapping-partitions.json",
    one_way_partition => "one-way-partition.json",
    bridge_node => "bridge-node.json",
    rolling_crashes => "rolling-crashes.json",
    leader_crash_mid_replication => "leader-crash-mid-replication.json",
    majority_crash_unsynced => "majority-crash-unsynced.json",
    message_loss_30_percent => "message-loss-30-percent.json",
    clock_skew => "clock-skew.json",
    leader_pause => "leader-pause.json",
    duplication_and_reordering => "duplication-and-reordering.json",
    follower_partitioned_across_a_trim => "follower-partitioned-across-a-trim.json",
    leader_crash_mid_catch_up => "leader-crash-mid-catch-up.json",
    follower_crash_mid_install => "follower-crash-mid-install.json",
    reads_isolated_leader => "reads-isolated-leader.json",
    lease_reads_within_skew => "lease-reads-within-skew.json",
    transfer_to_lagging_node => "transfer-to-lagging-node.json",
    rolling_restart_with_transfers => "rolling-restart-with-transfers.json",
    restart_with_hundreds_of_segments => "restart-with-hundreds-of-segments.json",
    replace_a_dead_node => "replace-a-dead-node.json",
    remove_the_leader => "remove-the-leader.json",
    add_a_node_during_a_partition => "add-a-node-during-a-partition.json",
}

/// A trace sink the test can read back.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The retention scenarios really take the paths they are named after: trims on every
/// node, catch-up reads from storage, and an install of the log's boundary on the follower
/// left behind (a scenario that drifted into never installing would still pass its
/// snapshot, so count the trace's lines).
#[test]
fn the_retention_scenarios_trim_read_back_from_storage_and_install() {
    for file in [
        "follower-partitioned-across-a-trim.json",
        "leader-crash-mid-catch-up.json",
        "follower-crash-mid-install.json",
    ] {
        let captured = Captured::default();
        let report = run(&scenario_options(file), Some(Box::new(captured.clone())));
        assert!(report.passed(), "{file}: {}", report.summary());
        let trace = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let count = |what: &str| trace.lines().filter(|line| line.contains(what)).count();
        assert!(count("recv InstallSnapshot") >= 1, "{file}: no install");
        assert!(
            count("read from storage") >= 10,
            "{file}: no catch-up reads"
        );
        assert!(count("trimmed storage") >= 10, "{file}: no trims");
    }
}

/// Issue 9: a node restarts from hundreds of segments, and trims delete whole ones (the
/// checker holds throughout; the snapshot test runs the same scenario).
#[test]
fn a_node_restarts_from_hundreds_of_segments() {
    let file = "restart-with-hundreds-of-segments.json";
    let captured = Captured::default();
    let report = run(&scenario_options(file), Some(Box::new(captured.clone())));
    assert!(report.passed(), "{}", report.summary());
    let trace = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let segments: Vec<u64> = trace
        .lines()
        .filter(|line| line.contains("RESTART from disk"))
        .map(|line| {
            let count = line.rsplit(", ").next().unwrap();
            count.trim_end_matches(" segments").parse().unwrap()
        })
        .collect();
    assert_eq!(segments.len(), 2, "a follower and the leader restart");
    assert!(
        segments.iter().all(|&count| count >= 200),
        "restarts from {segments:?} segments"
    );
    let trims = trace
        .lines()
        .filter(|line| line.contains("trimmed storage"))
        .count();
    assert!(trims >= 3, "{trims} trims");
}
