//! `replog sim shrink`: a failing run reduced to a small scenario file that fails with the
//! same invariant (the algorithm is in `replog_sim::shrink`).
//!
//! Like the rest of the front end, it reads the wall clock only to say how long it took.

use crate::cli::sim::{run_options, RunArgs};
use clap::Args;
use replog_sim::shrink::shrink;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Args)]
pub struct ShrinkArgs {
    /// The failing run: its seed, and the --nodes, --duration and --scenario it ran with.
    #[command(flatten)]
    run: RunArgs,
    /// Where to write the shrunk scenario (JSON, as `sim run --scenario` reads it).
    #[arg(long)]
    out: PathBuf,
    /// Simulator runs to spend at most; the smallest failing run found by then is kept.
    #[arg(long, default_value_t = replog_sim::shrink::RUNS_MAX)]
    runs: usize,
}

pub fn run(args: ShrinkArgs) -> Result<ExitCode, String> {
    if args.run.trace.is_some() {
        return Err(
            "shrink writes no trace; replay the shrunk scenario for one: replog sim replay \
             --scenario FILE"
                .into(),
        );
    }
    if args.runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    let options = run_options(&args.run)?;
    let started = Instant::now();
    let shrunk = shrink(&options, args.runs)?;
    let wall = started.elapsed().as_secs_f64();
    let text = serde_json::to_string_pretty(&shrunk.scenario)
        .map_err(|error| format!("cannot write the scenario: {error}"))?;
    std::fs::write(&args.out, text + "\n")
        .map_err(|error| format!("cannot write {}: {error}", args.out.display()))?;
    println!(
        "seed {}: VIOLATION of {}; shrunk in {} runs, {wall:.1} s",
        options.seed, shrunk.invariant, shrunk.runs
    );
    println!("{} -> {}", shrunk.original, shrunk.shrunk);
    if let Some(report) = shrunk.report.failure_report() {
        let detail = report.lines().take(3).collect::<Vec<_>>().join("\n");
        println!("{detail}");
    }
    let path = args.out.display();
    println!("wrote {path}; replay: replog sim run --scenario {path}");
    Ok(ExitCode::SUCCESS)
}
