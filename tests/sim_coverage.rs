//! The coverage a swarm sweep reports: the protocol paths that only the core's counters see
//! are reached, and the same sweep gives the same coverage on any number of threads.

use replog_sim::{sweep, SweepOptions};

fn options(jobs: usize) -> SweepOptions {
    SweepOptions {
        seeds: 0..12,
        jobs,
        nodes: vec![3, 5],
        duration_us: 20_000_000,
        scenario: None,
    }
}

#[test]
fn a_swarm_sweep_reaches_the_core_paths_it_exists_to_exercise() {
    let coverage = sweep(&options(2), &|_, _| {}).coverage();
    for path in [
        "CheckQuorum step-down",
        "conflict backtracking",
        "vote held for fsync",
        "pipelined window full",
    ] {
        let count = coverage.counts[&("core", path)];
        assert!(count > 0, "{path} never happened in\n{}", coverage.table());
    }
    assert!(coverage.counts[&("role", "leader -> follower")] > 0);
}

#[test]
fn coverage_is_the_same_on_one_or_two_threads() {
    let one = sweep(&options(1), &|_, _| {}).coverage();
    let two = sweep(&options(2), &|_, _| {}).coverage();
    assert_eq!(one, two);
    assert_eq!(one.table(), two.table());
}
