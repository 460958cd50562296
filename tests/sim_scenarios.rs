//! Every scenario file runs (seed 1) with every invariant holding, and its summary is an
//! insta snapshot: a change in behaviour shows up as a reviewable diff.

use replog_sim::{run, RunOptions, Scenario};
use std::path::Path;

fn run_scenario(file: &str) -> String {
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
    let report = run(&options, None);
    assert!(
        report.passed(),
        "{}{}",
        report.summary(),
        report.failure_report().unwrap_or_default()
    );
    report.summary()
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
}
