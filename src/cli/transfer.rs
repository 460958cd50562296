//! `replog transfer`: hand the cluster's leadership to a named node (thesis §3.10), e.g.
//! before stopping the leader for a restart.

use super::client_args::ClientArgs;
use super::duration::parse_duration;
use super::node::{checked_targets, fail, DEFAULT_TARGET};
use clap::Args;
use replog_node::client::blocking;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args)]
pub struct TransferArgs {
    /// Nodes of the cluster, comma-separated: the first is asked first, the others while
    /// no leader is known; not_leader redirects are followed to the leader.
    #[arg(
        short = 't',
        long = "target",
        value_delimiter = ',',
        default_value = DEFAULT_TARGET
    )]
    target: Vec<String>,
    /// The node to lead next: its name (`-i`) or its numeric id.
    #[arg(long)]
    to: String,
    /// Give up when no leader has carried the transfer out within this long (e.g. 10s,
    /// 500ms; a bare number is seconds).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    client: ClientArgs,
}

pub fn transfer(args: TransferArgs) -> ExitCode {
    let targets = match checked_targets(&args.target) {
        Ok(targets) => targets,
        Err(problem) => return fail(&problem),
    };
    let options = match args.client.options() {
        Ok(options) => options,
        Err(problem) => return fail(&problem),
    };
    match blocking::transfer_with(&targets, &args.to, args.timeout, &options) {
        Ok(done) => {
            println!(
                "{} leads in term {} (transferred by the leader at {})",
                done.leader, done.term, done.via
            );
            ExitCode::SUCCESS
        }
        Err(problem) => fail(&format!("transfer to {}: {problem}", args.to)),
    }
}
