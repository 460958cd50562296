//! Same seed and options, same run: twice in one process, and across sweeps that spread the
//! seeds over different numbers of threads.

use replog_sim::{run, sweep, RunOptions, SweepOptions};
use std::process::Command;

#[test]
fn a_seed_run_twice_gives_the_same_trace_and_summary() {
    for seed in [0, 1, 2, 3] {
        let options = RunOptions::swarm(seed, 3 + (seed as usize % 2) * 2, 10_000_000);
        let first = run(&options, None);
        let second = run(&options, None);
        assert_eq!(first.trace_hash, second.trace_hash, "seed {seed}");
        assert_eq!(first.summary(), second.summary());
    }
}

#[test]
fn sweeps_give_the_same_per_seed_results_on_one_or_two_threads() {
    let options = |jobs| SweepOptions {
        seeds: 100..112,
        jobs,
        nodes: vec![3, 5],
        duration_us: 5_000_000,
        scenario: None,
    };
    let one = sweep(&options(1), &|_, _| {});
    let two = sweep(&options(2), &|_, _| {});
    assert_eq!(one.results, two.results);
    assert_eq!(one.combined_hash(), two.combined_hash());
    let seeds: Vec<u64> = two.results.iter().map(|r| r.seed).collect();
    assert_eq!(
        seeds,
        (100..112).collect::<Vec<_>>(),
        "reported in seed order"
    );
}

#[test]
fn the_cli_sweep_hash_is_the_same_with_jobs_1_and_jobs_2() {
    let sweep_hash = |jobs: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_replog"))
            .args([
                "sim",
                "sweep",
                "--seeds",
                "20..30",
                "--nodes",
                "3,5",
                "--duration",
                "4s",
                "--jobs",
                jobs,
            ])
            .output()
            .expect("replog runs");
        assert_eq!(output.status.code(), Some(0));
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .find(|line| line.starts_with("sweep hash: "))
            .expect("sweep prints its hash")
            .to_string()
    };
    assert_eq!(sweep_hash("1"), sweep_hash("2"));
}
