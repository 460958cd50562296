//! `replog`: the one command-line front end for the node, the client, the benchmark and the
//! simulator. Each subcommand lives in its own module under `src/cli/`.

mod bench;
mod cli;

use clap::{CommandFactory, Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "replog",
    version,
    about = "A replicated log on a sans-IO Raft core, built simulation-first"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node of a cluster.
    Start(cli::node::StartArgs),
    /// Append a command through a node (follows leader redirects); prints index and term.
    Append(cli::node::AppendArgs),
    /// List a node's log.
    Query(cli::node::QueryArgs),
    /// Print committed entries of a node's log, a page at a time.
    Read(cli::read::ReadArgs),
    /// Print committed entries as they commit, until Ctrl-C.
    Follow(cli::read::FollowArgs),
    /// Show a node's role, term, leader and indexes.
    Status(cli::node::StatusArgs),
    /// Drop the committed entries before an index from every node's storage (retention).
    Trim(cli::trim::TrimArgs),
    /// Hand the leadership to another node (follows leader redirects), e.g. before a restart.
    Transfer(cli::transfer::TransferArgs),
    /// List, add, promote or remove members of the cluster (through its leader).
    #[command(subcommand)]
    Member(cli::member::MemberCommand),
    /// Start a local cluster, append a few commands, and show what to try next.
    Demo(cli::node::DemoArgs),
    /// Closed-loop load generator: committed appends per second and latency percentiles.
    Bench(cli::bench::BenchArgs),
    /// The deterministic simulator: run, sweep or replay seeds.
    #[command(subcommand)]
    Sim(cli::sim::SimCommand),
    /// Check a recorded history (JSONL, docs/history.md) for linearizability; exit 1 if not.
    Check(cli::check::CheckArgs),
}

fn main() -> ExitCode {
    let args = match cli::start_config::expand(Cli::command(), std::env::args_os().collect()) {
        Ok(args) => args,
        Err(problem) => return cli::node::fail(&problem),
    };
    let cli = Cli::parse_from(args);
    if writes_only_output(&cli.command) {
        restore_default_sigpipe();
    }
    match cli.command {
        Command::Start(args) => cli::node::start(args),
        Command::Append(args) => cli::node::append(args),
        Command::Query(args) => cli::node::query(args),
        Command::Status(args) => cli::node::status(args),
        Command::Read(args) => cli::read::read(args),
        Command::Follow(args) => cli::read::follow(args),
        Command::Demo(args) => cli::node::demo(args),
        Command::Trim(args) => cli::trim::trim(args),
        Command::Transfer(args) => cli::transfer::transfer(args),
        Command::Member(command) => cli::member::run(command),
        Command::Bench(args) => cli::bench::run(args),
        Command::Sim(command) => cli::sim::run(command),
        Command::Check(args) => cli::check::run(args),
    }
}

/// Whether the command does nothing but compute and print, so that dying of SIGPIPE when
/// its reader goes away (`replog query | head -1`) is the right ending, as for any Unix
/// filter. Not `start`: a node must never die from a peer's or a client's closed socket,
/// nor from a closed stderr. Not `demo` or `bench`: they own node processes and a data
/// directory, which they must stop and clean up however their output ends; they ignore
/// failed writes instead.
fn writes_only_output(command: &Command) -> bool {
    match command {
        Command::Append(_)
        | Command::Query(_)
        | Command::Status(_)
        | Command::Trim(_)
        | Command::Transfer(_)
        | Command::Member(_)
        | Command::Read(_)
        | Command::Follow(_)
        | Command::Sim(_)
        | Command::Check(_) => true,
        Command::Start(_) | Command::Demo(_) | Command::Bench(_) => false,
    }
}

/// The Rust runtime ignores SIGPIPE, which turns a closed stdout into an `EPIPE` that
/// `println!` answers with a panic; the default action ends the process quietly instead.
fn restore_default_sigpipe() {
    // SAFETY: called at the start of main, before any other thread exists; SIG_DFL is a
    // valid disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
