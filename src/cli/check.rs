//! `replog check FILE`: the simulator's linearizability checker on a history recorded
//! elsewhere (format: docs/history.md).

use clap::Args;
use replog_sim::checker::recorded::Recorded;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct CheckArgs {
    /// A JSONL history: invoke/complete lines of appends and reads, and each node's final
    /// committed log (format in docs/history.md).
    file: PathBuf,
}

/// Exit 0 when linearizable, 1 on a violation, 2 when the file cannot be read or parsed.
pub fn run(args: CheckArgs) -> ExitCode {
    let text = match std::fs::read_to_string(&args.file) {
        Ok(text) => text,
        Err(error) => {
            eprintln!("error: cannot read {}: {error}", args.file.display());
            return ExitCode::from(2);
        }
    };
    let recorded = match Recorded::parse(&text) {
        Ok(recorded) => recorded,
        Err(error) => {
            eprintln!("error: {}: {error}", args.file.display());
            return ExitCode::from(2);
        }
    };
    match recorded.check() {
        Ok(checked) => {
            println!(
                "history: {} operations ({} appends: {} ok, {} failed, {} unknown; {} {}), {} \
                 logs, {} entries committed",
                checked.appends + checked.reads,
                checked.appends,
                checked.acknowledged,
                checked.failed,
                checked.unknown,
                checked.reads,
                if checked.reads == 1 { "read" } else { "reads" },
                checked.logs,
                checked.committed
            );
            println!("result: linearizable");
            ExitCode::SUCCESS
        }
        Err(violation) => {
            println!("VIOLATION: {}", violation.invariant);
            println!("  detail: {}", violation.detail);
            ExitCode::from(1)
        }
    }
}
