//! `replog trim`: propose a retention point, so that every node drops the committed
//! entries before it from its storage.

use super::client_args::ClientArgs;
use super::duration::parse_duration;
use super::node::{checked_targets, fail, DEFAULT_TARGET};
use clap::Args;
use replog_node::client::blocking;
use replog_node::client::Response;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args)]
pub struct TrimArgs {
    /// Nodes of the cluster, comma-separated: the first is asked first, the others while
    /// no leader is known; not_leader redirects are followed.
    #[arg(
        short = 't',
        long = "target",
        value_delimiter = ',',
        default_value = DEFAULT_TARGET
    )]
    target: Vec<String>,
    /// Drop the committed entries before this index. Nodes delete whole segments only, so
    /// a node may keep some entries before it; it never drops an uncommitted entry.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    before: u64,
    /// Print the node's answer line as is.
    #[arg(long)]
    json: bool,
    /// Give up when no leader has accepted the trim within this long (e.g. 10s, 500ms; a
    /// bare number is seconds).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    client: ClientArgs,
}

pub fn trim(args: TrimArgs) -> ExitCode {
    let targets = match checked_targets(&args.target) {
        Ok(targets) => targets,
        Err(problem) => return fail(&problem),
    };
    let options = match args.client.options() {
        Ok(options) => options,
        Err(problem) => return fail(&problem),
    };
    match blocking::trim_with(&targets, args.before, args.timeout, &options) {
        Ok(done) if args.json => {
            let mut line = Vec::new();
            Response::Appended {
                index: done.index,
                term: done.term,
            }
            .encode(&mut line);
            print!("{}", String::from_utf8_lossy(&line));
            ExitCode::SUCCESS
        }
        Ok(done) => {
            println!(
                "trim before {} committed at index {} in term {} (leader {}); each node drops the whole segments before it",
                args.before, done.index, done.term, done.leader
            );
            ExitCode::SUCCESS
        }
        Err(error) => fail(&error.to_string()),
    }
}
