//! The CI sweep: 500 seeds x 60 simulated seconds, alternating 3- and 5-node clusters, each
//! seed with its own swarm fault mix, and not one violation. About 6 s on 2 cores.
//!
//! Bigger sweeps: `cargo run --release -- sim sweep --seeds 0..10000 --nodes 3,5 --jobs 2`.

use replog_sim::{sweep, SweepOptions};

#[test]
fn ci_sweep_500_seeds_60_seconds_3_and_5_nodes_finds_no_violation() {
    let options = SweepOptions {
        seeds: 0..500,
        jobs: 2,
        nodes: vec![3, 5],
        duration_us: 60_000_000,
        scenario: None,
    };
    let report = sweep(&options, &|_, _| {});
    let failures: Vec<String> = report
        .failures()
        .map(|f| {
            format!(
                "seed {}: {}\n  {}",
                f.seed,
                f.failure.as_deref().unwrap_or(""),
                f.replay
            )
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(report.results.len(), 500);
    assert!(
        report.results.iter().any(|r| r.nodes == 3) && report.results.iter().any(|r| r.nodes == 5)
    );
}
