//! Lease reads rest on bounded clock drift (`Config::lease_ticks`): with clocks beyond the
//! bound the simulator must find a stale read, and within it (or with ReadIndex) it must
//! not. Each case is one scenario over the same seeds.

use replog_sim::{run, RunOptions, Scenario};

const SEEDS: std::ops::RangeInclusive<u64> = 1..=40;

/// Every node's clock `fast` % fast; whoever leads is then slowed to `slow` % and cut off
/// while clients (with a short timeout, so they soon find the new leader) keep reading.
fn isolated_slow_leader(fast: i32, slow: i32, lease: bool) -> Scenario {
    let mut schedule: Vec<String> = (1..=3)
        .map(|node| {
            format!(
                r#"{{ "at_ms": 0, "fault": {{ "kind": "skew", "target": {{ "node": {node} }}, "percent": {fast} }} }}"#
            )
        })
        .collect();
    for round in 0..4 {
        let at = 2000 + round * 4000;
        schedule.push(format!(
            r#"{{ "at_ms": {at}, "fault": {{ "kind": "skew", "target": "leader", "percent": {slow} }} }}"#
        ));
        schedule.push(format!(
            r#"{{ "at_ms": {}, "fault": {{ "kind": "isolate", "target": "leader" }} }}"#,
            at + 1000
        ));
        schedule.push(format!(
            r#"{{ "at_ms": {}, "fault": {{ "kind": "heal" }} }}"#,
            at + 3000
        ));
    }
    let text = format!(
        r#"{{
            "name": "isolated-slow-leader",
            "nodes": 3,
            "duration_ms": 20000,
            "clients": 5,
            "workload": {{ "timeout_us": 100000 }},
            "reads": {{ "percent": 60, "lease": {lease} }},
            "schedule": [{}]
        }}"#,
        schedule.join(",")
    );
    Scenario::parse(&text).expect("the scenario parses")
}

/// The violations over `SEEDS`, as their explanations.
fn violations(scenario: &Scenario) -> Vec<String> {
    SEEDS
        .filter_map(|seed| {
            let options = RunOptions {
                seed,
                nodes: 3,
                duration_us: 20_000_000,
                scenario: Some(("isolated-slow-leader".into(), scenario.clone())),
            };
            options.validate().expect("valid scenario");
            let report = run(&options, None);
            report
                .failure
                .map(|failure| format!("seed {seed}: {}", failure.violation))
        })
        .collect()
}

#[test]
fn lease_reads_beyond_the_clock_bound_are_caught_stale() {
    // The leader's clock runs at a fifth of nominal against the others' five times: its
    // lease outlives the others' election timeouts many times over.
    let found = violations(&isolated_slow_leader(-80, 400, true));
    assert!(
        found
            .iter()
            .any(|v| v.contains("stale read") && v.contains("Lease")),
        "no stale lease read found in seeds {SEEDS:?}: {found:?}"
    );
    assert!(
        found.iter().all(|v| v.contains("Linearizability")),
        "{found:?}"
    );
}

#[test]
fn lease_reads_within_the_clock_bound_stay_linearizable() {
    // Clocks 20 % fast and 20 % slow: periods 1.5 apart, the most the bound allows.
    let found = violations(&isolated_slow_leader(-20, 20, true));
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn linearizable_reads_need_no_clock_bound() {
    let found = violations(&isolated_slow_leader(-80, 400, false));
    assert!(found.is_empty(), "{found:?}");
}
