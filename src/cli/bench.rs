//! `replog bench` (placeholder until the benchmark lands).
use clap::Args;
use std::process::ExitCode;

#[derive(Args)]
pub struct BenchArgs {}

pub fn run(_args: BenchArgs) -> ExitCode {
    eprintln!("error: the benchmark is not built yet");
    ExitCode::from(2)
}
