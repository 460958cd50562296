//! `replog member list|add|promote|remove`: look at and change the cluster's membership,
//! one member at a time, through its leader (redirects are followed).

use super::client_args::ClientArgs;
use super::duration::parse_duration;
use super::node::{checked_targets, fail, DEFAULT_TARGET};
use clap::{Args, Subcommand};
use replog_node::client::blocking::{self, AppendError, ClientOptions};
use replog_node::client::{MemberView, NodeState};
use replog_node::identity::NodeName;
use replog_node::membership::MemberRequest;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Subcommand)]
pub enum MemberCommand {
    /// The configuration in force on the leader: voters and learners, each with its
    /// address and, on the leader, how far its log matches.
    List(ListArgs),
    /// Add a node (a learner first; promoted to voter once its log has caught up, unless
    /// --learner). Start it with `replog start -i NAME -a ADDR --join LEADER`, or it joins
    /// by itself with that command alone.
    Add(AddArgs),
    /// Make a learner a voter (refused while its log is behind the commit index).
    Promote(NamedArgs),
    /// Remove a member; a leader that removes itself steps down once that is committed.
    Remove(NamedArgs),
}

#[derive(Args)]
pub struct Target {
    /// Nodes of the cluster, comma-separated: the leader is found from any of them.
    #[arg(
        short = 't',
        long = "target",
        value_delimiter = ',',
        default_value = DEFAULT_TARGET
    )]
    target: Vec<String>,
    /// Give up after this long (e.g. 30s, 500ms; a bare number is seconds).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    target: Target,
    /// Print the leader's status line as is.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct AddArgs {
    /// The new member's name (as its `-i`).
    #[arg(value_parser = parse_name)]
    name: NodeName,
    /// The address it is reached at (as its `-a`).
    addr: String,
    /// Leave it a learner.
    #[arg(long)]
    learner: bool,
    #[command(flatten)]
    target: Target,
}

#[derive(Args)]
pub struct NamedArgs {
    /// The member's name, or its numeric id.
    name: String,
    #[command(flatten)]
    target: Target,
}

fn parse_name(text: &str) -> Result<NodeName, String> {
    NodeName::parse(text).map_err(|error| error.0)
}

pub fn run(command: MemberCommand) -> ExitCode {
    let outcome = match command {
        MemberCommand::List(args) => list(args),
        MemberCommand::Add(args) => add(args),
        MemberCommand::Promote(args) => change(
            &args,
            MemberRequest::Promote {
                name: args.name.clone(),
            },
        ),
        MemberCommand::Remove(args) => change(
            &args,
            MemberRequest::Remove {
                name: args.name.clone(),
            },
        ),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(problem) => fail(&problem),
    }
}

fn connect(target: &Target) -> Result<(Vec<String>, ClientOptions), String> {
    Ok((checked_targets(&target.target)?, target.client.options()?))
}

fn list(args: ListArgs) -> Result<(), String> {
    let (targets, options) = connect(&args.target)?;
    let (leader, state) = blocking::leader_state(&targets, args.target.timeout, &options)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&state).expect("a state serializes")
        );
        return Ok(());
    }
    for line in list_lines(&leader, &state) {
        println!("{line}");
    }
    Ok(())
}

/// `member list`'s lines: a heading, then a member a line.
fn list_lines(leader: &str, state: &NodeState) -> Vec<String> {
    let configuration = state.configuration.as_ref();
    let index = configuration.map_or(0, |config| config.index);
    let mut lines = vec![format!(
        "configuration at index {index}{} on the leader at {leader} (term {}, commit index {}, \
         last index {})",
        if index == 0 { " (bootstrap)" } else { "" },
        state.term,
        state.commit_index,
        state.last_index
    )];
    let role_of = |member: &MemberView| match configuration {
        Some(config) if config.learners.contains(&member.id) => "learner",
        _ => "voter",
    };
    for member in state.members.iter().flatten() {
        let name = member.name.as_deref().unwrap_or("?");
        let progress = match member.match_index {
            Some(matched) => format!(
                "match {matched}, lag {}",
                state.last_index.saturating_sub(matched)
            ),
            None if member.id == state.node => "leader".to_string(),
            None => "match unknown".to_string(),
        };
        lines.push(format!(
            "{name:<12} id {:<3} {:<7} {:<21} {progress}",
            member.id,
            role_of(member),
            member.addr
        ));
    }
    lines
}

fn add(args: AddArgs) -> Result<(), String> {
    let (targets, options) = connect(&args.target)?;
    let deadline = Instant::now() + args.target.timeout;
    let request = MemberRequest::Add {
        name: args.name.clone(),
        addr: args.addr.clone(),
    };
    let added = blocking::member_with(&targets, request, args.target.timeout, &options)
        .map_err(|problem| format!("member add {}: {problem}", args.name))?;
    println!(
        "added {} at {} as a learner (index {}, term {})",
        args.name, args.addr, added.index, added.term
    );
    if args.learner {
        return Ok(());
    }
    // Promoted once its log has caught up: the leader refuses until then.
    let mut last_refusal = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let request = MemberRequest::Promote {
            name: args.name.to_string(),
        };
        match blocking::member_with(
            &targets,
            request,
            left.max(Duration::from_millis(100)),
            &options,
        ) {
            Ok(promoted) => {
                println!(
                    "promoted {} to voter (index {}, term {})",
                    args.name, promoted.index, promoted.term
                );
                return Ok(());
            }
            Err(AppendError::Rejected { message }) if Instant::now() < deadline => {
                last_refusal = message;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(problem) => {
                let why = match problem {
                    AppendError::Rejected { message } => message,
                    other if last_refusal.is_empty() => other.to_string(),
                    other => format!("{last_refusal}; then {other}"),
                };
                return Err(format!(
                    "{} is a learner, not promoted within {:?}: {why}. Start it with `replog \
                     start -i {} -a {} --join {}` (it asks to be promoted once caught up), or \
                     `replog member promote {}` later",
                    args.name,
                    args.target.timeout,
                    args.name,
                    args.addr,
                    targets.join(","),
                    args.name
                ));
            }
        }
    }
}

fn change(args: &NamedArgs, request: MemberRequest) -> Result<(), String> {
    let (targets, options) = connect(&args.target)?;
    let verb = match request {
        MemberRequest::Promote { .. } => "promoted",
        _ => "removed",
    };
    let done = blocking::member_with(&targets, request, args.target.timeout, &options)
        .map_err(|problem| format!("{}: {problem}", args.name))?;
    println!(
        "{verb} {} (index {}, term {})",
        args.name, done.index, done.term
    );
    Ok(())
}
