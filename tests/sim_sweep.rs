//! A small swarm sweep inside `cargo test`, across 3- and 5-node clusters. CI runs the big
//! one (500 seeds x 60 s) in release mode with `replog sim sweep`.

use replog_sim::{sweep, SweepOptions};

#[test]
fn a_small_swarm_sweep_finds_no_violation() {
    let options = SweepOptions {
        seeds: 0..40,
        jobs: 2,
        nodes: vec![3, 5],
        duration_us: 10_000_000,
        scenario: None,
    };
    let report = sweep(&options, &|_, _| {});
    let failures: Vec<String> = report
        .failures()
        .map(|f| {
            format!(
                "{}: {}\n  {}",
                f.seed,
                f.failure.as_deref().unwrap_or(""),
                f.replay
            )
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(report.results.len(), 40);
}
