//! Many seeds across threads. Each seed runs alone on one thread, so its result does not
//! depend on how seeds are spread over threads; results are reported in seed order.
//!
//! A sweep may stop early (at the first failure, or when its time is up): threads then stop
//! taking new seeds and finish the ones they hold, so the seeds run are always a prefix of
//! the range, `start..start + results.len()`.

use crate::coverage::Coverage;
use crate::run::{run, RunOptions};
use crate::scenario::Scenario;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Clone, Debug)]
pub struct SweepOptions {
    /// `start..u64::MAX` is open-ended: it runs until the sweep is told to stop.
    pub seeds: Range<u64>,
    pub jobs: usize,
    /// Cluster sizes; seed `s` runs with `nodes[s % nodes.len()]`.
    pub nodes: Vec<usize>,
    pub duration_us: u64,
    pub scenario: Option<(String, Scenario)>,
}

impl SweepOptions {
    pub fn run_options(&self, seed: u64) -> RunOptions {
        RunOptions {
            seed,
            nodes: self.nodes[(seed % self.nodes.len() as u64) as usize],
            duration_us: self.duration_us,
            scenario: self.scenario.clone(),
        }
    }

    /// Checks what every seed will run with (see [`RunOptions::validate`]) before any runs:
    /// each cluster size in turn, since a scenario may fit one and not another.
    pub fn validate(&self) -> Result<(), String> {
        if self.nodes.is_empty() {
            return Err("a sweep needs at least one cluster size".into());
        }
        self.nodes.iter().try_for_each(|&nodes| {
            RunOptions {
                seed: self.seeds.start,
                nodes,
                duration_us: self.duration_us,
                scenario: self.scenario.clone(),
            }
            .validate()
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedResult {
    pub seed: u64,
    pub nodes: usize,
    pub events: u64,
    pub sim_us: u64,
    pub trace_hash: u64,
    /// The violation, in one line, when the seed failed.
    pub failure: Option<String>,
    pub replay: String,
    pub coverage: Coverage,
}

#[derive(Clone, Debug, Default)]
pub struct SweepReport {
    /// Ordered by seed.
    pub results: Vec<SeedResult>,
}

impl SweepReport {
    pub fn failures(&self) -> impl Iterator<Item = &SeedResult> {
        self.results.iter().filter(|r| r.failure.is_some())
    }

    pub fn events(&self) -> u64 {
        self.results.iter().map(|r| r.events).sum()
    }

    /// Every seed's coverage, summed.
    pub fn coverage(&self) -> Coverage {
        let mut total = Coverage::default();
        for result in &self.results {
            total.add(&result.coverage);
        }
        total
    }

    pub fn sim_us(&self) -> u64 {
        self.results.iter().map(|r| r.sim_us).sum()
    }

    /// One hash over every seed's trace hash, in seed order: equal for equal sweeps,
    /// however many threads ran them.
    pub fn combined_hash(&self) -> u64 {
        self.results.iter().fold(0xCBF2_9CE4_8422_2325, |hash, r| {
            (hash ^ r.trace_hash ^ r.seed.rotate_left(32)).wrapping_mul(0x0000_0100_0000_01B3)
        })
    }
}

/// Runs every seed of `options.seeds` on `options.jobs` threads. `progress(done, total)` is
/// called after each seed, from whichever thread ran it.
pub fn sweep(options: &SweepOptions, progress: &(dyn Fn(u64, u64) + Sync)) -> SweepReport {
    let total = options.seeds.end.saturating_sub(options.seeds.start);
    sweep_until(options, &|done, _| {
        progress(done, total);
        true
    })
}

/// Runs seeds of `options.seeds` in order on `options.jobs` threads until the range ends or
/// `go_on(done, result)`, called after each seed from whichever thread ran it, returns false.
pub fn sweep_until(
    options: &SweepOptions,
    go_on: &(dyn Fn(u64, &SeedResult) -> bool + Sync),
) -> SweepReport {
    let next = AtomicU64::new(options.seeds.start);
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let total = options.seeds.end.saturating_sub(options.seeds.start);
    let results = Mutex::new(Vec::with_capacity(total.min(1 << 16) as usize));
    std::thread::scope(|scope| {
        for _ in 0..options.jobs.max(1) {
            scope.spawn(|| loop {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= options.seeds.end {
                    return;
                }
                let result = run_seed(options, seed);
                let done = done.fetch_add(1, Ordering::Relaxed) + 1;
                if !go_on(done, &result) {
                    stop.store(true, Ordering::Relaxed);
                }
                results
                    .lock()
                    .expect("no panics hold this lock")
                    .push(result);
            });
        }
    });
    let mut results = results.into_inner().expect("threads joined");
    results.sort_by_key(|r| r.seed);
    SweepReport { results }
}

fn run_seed(options: &SweepOptions, seed: u64) -> SeedResult {
    let run_options = options.run_options(seed);
    let report = run(&run_options, None);
    SeedResult {
        seed,
        nodes: run_options.nodes(),
        events: report.counters.events,
        sim_us: report.end_us,
        trace_hash: report.trace_hash,
        failure: report
            .failure
            .as_ref()
            .map(|f| format!("{} at {}", f.violation, crate::report::seconds(f.time_us))),
        replay: run_options.replay_command(),
        coverage: report.coverage,
    }
}
