//! `replog sim run|sweep|replay|shrink`: the deterministic simulator's front end.
//!
//! The simulator itself never reads a clock; this front end does, only to report how fast
//! the runs went (events per wall-second, simulated-to-real time ratio).

use clap::{Args, Subcommand};
use replog_sim::{run as run_seed, sweep, RunOptions, RunReport, Scenario, SweepOptions};
use std::io::{IsTerminal, Write};
use std::ops::Range;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Subcommand)]
pub enum SimCommand {
    /// Run one seed and print its summary; exit 1 on a violation.
    Run(RunArgs),
    /// Run many seeds across threads; print failing seeds and throughput; exit 1 on any failure.
    Sweep(SweepArgs),
    /// Run one seed with its full, readable trace.
    Replay(RunArgs),
    /// Reduce a failing run to a small scenario that fails with the same invariant.
    Shrink(crate::cli::shrink::ShrinkArgs),
}

#[derive(Args)]
pub struct RunArgs {
    /// The seed: the whole run (fault mix, latencies, fsync times, clients) follows from it
    /// [default: the scenario's own "seed", which a shrunk scenario has].
    #[arg(long)]
    seed: Option<u64>,
    /// Cluster size, 3 to 9 [default: 5, or the scenario's own "nodes"; giving another size
    /// than the scenario's is an error].
    #[arg(long)]
    nodes: Option<usize>,
    /// Length of the fault phase, e.g. 60s, 1500ms, 2m; the liveness phase follows it
    /// [default: 60s, or the scenario's own "duration_ms"; giving another is an error].
    #[arg(long, value_parser = parse_duration_us)]
    duration: Option<u64>,
    /// A scenario file (scenarios/*.json, format in docs/scenarios.md) instead of the seed's
    /// random fault mix.
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Write the full readable trace to this file.
    #[arg(long)]
    pub(crate) trace: Option<PathBuf>,
}

#[derive(Args)]
pub struct SweepArgs {
    /// Seeds to run, `A..B` (B excluded), e.g. `0..500`.
    #[arg(long, value_parser = parse_seeds)]
    seeds: Range<u64>,
    /// Threads; each runs whole seeds.
    #[arg(long, default_value_t = default_jobs())]
    jobs: usize,
    /// Cluster sizes, comma-separated; seed s uses the (s mod count)-th [default: 5, or the
    /// scenario's own "nodes"; giving another size than the scenario's is an error].
    #[arg(long, value_delimiter = ',')]
    nodes: Option<Vec<usize>>,
    /// Length of each seed's fault phase, e.g. 60s, 1500ms, 2m; the liveness phase follows
    /// it [default: 60s, or the scenario's own "duration_ms"; giving another is an error].
    #[arg(long, value_parser = parse_duration_us)]
    duration: Option<u64>,
    /// A scenario file (scenarios/*.json, format in docs/scenarios.md) that every seed runs
    /// instead of its random fault mix; the seeds still vary latencies, fsyncs and clients.
    #[arg(long)]
    scenario: Option<PathBuf>,
}

pub fn run(command: SimCommand) -> ExitCode {
    let result = match command {
        SimCommand::Run(args) => run_one(args, false),
        SimCommand::Replay(args) => run_one(args, true),
        SimCommand::Sweep(args) => run_sweep(args),
        SimCommand::Shrink(args) => crate::cli::shrink::run(args),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

/// The run `args` name, checked.
pub(crate) fn run_options(args: &RunArgs) -> Result<RunOptions, String> {
    let scenario = load_scenario(args.scenario.as_ref())?;
    let (nodes, duration_us) = resolve(args.nodes.map(|n| vec![n]), args.duration, &scenario);
    let seed = args
        .seed
        .or_else(|| scenario.as_ref()?.1.seed)
        .ok_or("--seed is required: the scenario names no seed of its own")?;
    let options = RunOptions {
        seed,
        nodes: nodes[0],
        duration_us,
        scenario,
    };
    options.validate()?;
    Ok(options)
}

fn run_one(args: RunArgs, replay: bool) -> Result<ExitCode, String> {
    let options = run_options(&args)?;
    let sink: Option<Box<dyn Write>> = match (&args.trace, replay) {
        (Some(path), _) => {
            let file = std::fs::File::create(path)
                .map_err(|error| format!("cannot create {}: {error}", path.display()))?;
            Some(Box::new(std::io::BufWriter::new(file)))
        }
        (None, true) => Some(Box::new(std::io::BufWriter::new(std::io::stdout()))),
        (None, false) => None,
    };
    let started = Instant::now();
    let report = run_seed(&options, sink);
    let wall = started.elapsed();
    print!("{}", report.summary());
    println!("{}", throughput(&report, wall));
    match report.failure_report() {
        None => Ok(ExitCode::SUCCESS),
        Some(text) => {
            print!("{text}");
            Ok(ExitCode::from(1))
        }
    }
}

fn throughput(report: &RunReport, wall: Duration) -> String {
    let seconds = wall.as_secs_f64().max(1e-9);
    format!(
        "wall: {:.3}s · {:.0} events/s · {:.0}x real time",
        seconds,
        report.counters.events as f64 / seconds,
        report.end_us as f64 / 1e6 / seconds
    )
}

fn run_sweep(args: SweepArgs) -> Result<ExitCode, String> {
    if args.seeds.is_empty() {
        return Err("the seed range is empty".into());
    }
    let scenario = load_scenario(args.scenario.as_ref())?;
    let (nodes, duration_us) = resolve(args.nodes, args.duration, &scenario);
    let options = SweepOptions {
        seeds: args.seeds.clone(),
        jobs: args.jobs.max(1),
        nodes,
        duration_us,
        scenario,
    };
    options.validate()?;
    let started = Instant::now();
    let show_progress = std::io::stderr().is_terminal();
    let last_shown = Mutex::new(Instant::now());
    let progress = |done: u64, total: u64| {
        if !show_progress {
            return;
        }
        let mut last = last_shown.lock().expect("progress lock");
        if last.elapsed() >= Duration::from_millis(200) || done == total {
            *last = Instant::now();
            let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-9);
            eprint!("\r{done}/{total} seeds · {rate:.1} seeds/s   ");
        }
    };
    let report = sweep(&options, &progress);
    let wall = started.elapsed().as_secs_f64().max(1e-9);
    if show_progress {
        eprintln!();
    }
    let failures: Vec<_> = report.failures().collect();
    for failure in &failures {
        println!(
            "FAIL seed {} ({} nodes): {}\n  replay: {}",
            failure.seed,
            failure.nodes,
            failure.failure.as_deref().unwrap_or(""),
            failure.replay
        );
    }
    let seeds = report.results.len();
    println!(
        "seeds: {seeds} · nodes {:?} · duration {} · jobs {} · failures: {}",
        options.nodes,
        replog_sim::report::seconds(options.duration_us),
        options.jobs,
        failures.len()
    );
    println!(
        "wall: {wall:.2}s · {:.1} seeds/s · {:.0} events/s · {:.0}x real time (all threads)",
        seeds as f64 / wall,
        report.events() as f64 / wall,
        report.sim_us() as f64 / 1e6 / wall
    );
    println!("sweep hash: {:016x}", report.combined_hash());
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn load_scenario(path: Option<&PathBuf>) -> Result<Option<(String, Scenario)>, String> {
    let Some(path) = path else {
        return Ok(None);
    };
    let scenario = Scenario::load(path)?;
    Ok(Some((path.display().to_string(), scenario)))
}

/// The cluster sizes and fault phase to run: the command line's, else the scenario's own,
/// else the defaults. When the command line and the scenario disagree, the command line's
/// values are kept so that `validate` refuses the run and names both.
fn resolve(
    nodes: Option<Vec<usize>>,
    duration_us: Option<u64>,
    scenario: &Option<(String, Scenario)>,
) -> (Vec<usize>, u64) {
    let scenario = scenario.as_ref().map(|(_, scenario)| scenario);
    let nodes = nodes
        .or_else(|| Some(vec![scenario?.nodes?]))
        .unwrap_or_else(|| vec![DEFAULT_NODES]);
    let duration_us = duration_us
        .or_else(|| Some(scenario?.duration_ms? * 1000))
        .unwrap_or(DEFAULT_DURATION_US);
    (nodes, duration_us)
}

const DEFAULT_NODES: usize = 5;
const DEFAULT_DURATION_US: u64 = 60_000_000;

fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A positive duration (see `cli::duration`), in microseconds of simulated time.
fn parse_duration_us(text: &str) -> Result<u64, String> {
    let duration = crate::cli::duration::parse_duration(text)?;
    if duration.is_zero() {
        return Err("the duration must be positive".into());
    }
    u64::try_from(duration.as_micros()).map_err(|_| format!("{text:?} is too long"))
}

/// `A..B`, B excluded.
fn parse_seeds(text: &str) -> Result<Range<u64>, String> {
    let (start, end) = text
        .split_once("..")
        .ok_or_else(|| format!("{text:?} is not a seed range like 0..500"))?;
    let parse = |s: &str| {
        s.trim()
            .parse::<u64>()
            .map_err(|_| format!("{s:?} is not a seed"))
    };
    Ok(parse(start)?..parse(end)?)
}
