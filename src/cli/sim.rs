//! `replog sim run|sweep|replay` (placeholder until the simulator lands).
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum SimCommand {
    /// Run one seed.
    Run,
}

pub fn run(_command: SimCommand) -> ExitCode {
    eprintln!("error: the simulator is not built yet");
    ExitCode::from(2)
}
