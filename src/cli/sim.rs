//! `replog sim run|sweep|replay|shrink`: the deterministic simulator's front end.
//!
//! The simulator itself never reads a clock; this front end does, only to report how fast
//! the runs went (events per wall-second, simulated-to-real time ratio).

use crate::cli::sweep_watch::Watch;
use clap::{Args, Subcommand};
use replog_sim::{run as run_seed, sweep_until, RunOptions, RunReport, Scenario, SweepOptions};
use std::io::{IsTerminal, Write};
use std::ops::Range;
use std::path::PathBuf;
use std::process::ExitCode;
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
    /// Write a self-contained HTML page of the run to this file (lanes per node, messages,
    /// client operations, faults, the violation); open it in any browser, offline.
    #[arg(long)]
    html: Option<PathBuf>,
}

#[derive(Args)]
pub struct SweepArgs {
    /// Seeds to run, `A..B` (B excluded), e.g. `0..500`; `A..` runs on until
    /// --until-failure or --time-budget stops it.
    #[arg(long, value_parser = parse_seeds)]
    seeds: Range<u64>,
    /// Stop taking new seeds once one fails (seeds already running finish).
    #[arg(long)]
    until_failure: bool,
    /// Stop taking new seeds after this much wall-clock time, e.g. 10m, 90s.
    #[arg(long, value_parser = crate::cli::duration::parse_duration)]
    time_budget: Option<Duration>,
    /// Show the progress line on stderr even when it is not a terminal.
    #[arg(long)]
    progress: bool,
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
    let report = match &args.html {
        None => run_seed(&options, sink),
        Some(path) => {
            let (report, recording) = replog_sim::run_recorded(&options, sink);
            std::fs::write(path, replog_sim::viewer::page(&report, &recording))
                .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
            report
        }
    };
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
    let open = args.seeds.end == u64::MAX;
    if open && !args.until_failure && args.time_budget.is_none() {
        return Err(format!(
            "the seed range {}.. has no end; give --until-failure or --time-budget",
            args.seeds.start
        ));
    }
    let total = (!open).then(|| args.seeds.end - args.seeds.start);
    let show_progress = args.progress || std::io::stderr().is_terminal();
    let watch = Watch::new(total, args.time_budget, args.until_failure, show_progress);
    let started = Instant::now();
    let report = sweep_until(&options, &|done, result| watch.seed_done(done, result));
    let wall = started.elapsed().as_secs_f64().max(1e-9);
    watch.finish();
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
    print!("{}", report.coverage().table());
    let seeds = report.results.len();
    if let Some(reason) = watch.stopped() {
        let end = args.seeds.start + seeds as u64;
        println!("stopped after seeds {}..{end}: {reason}", args.seeds.start);
    }
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

/// `A..B`, B excluded; `A..` is open-ended (`A..u64::MAX`).
fn parse_seeds(text: &str) -> Result<Range<u64>, String> {
    let (start, end) = text
        .split_once("..")
        .ok_or_else(|| format!("{text:?} is not a seed range like 0..500"))?;
    let parse = |s: &str| {
        s.trim()
            .parse::<u64>()
            .map_err(|_| format!("{s:?} is not a seed"))
    };
    let end = if end.trim().is_empty() {
        u64::MAX
    } else {
        parse(end)?
    };
    Ok(parse(start)?..end)
}
