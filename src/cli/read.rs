//! `replog read` and `replog follow`: committed entries of one node's log, a page at a
//! time or as they commit.

use crate::cli::client_args::ClientArgs;
use crate::cli::node::{
    checked_targets, entry_line, fail, ConsistencyArg, CONNECT_TIMEOUT, DEFAULT_TARGET,
};
use clap::Args;
use replog_node::client::blocking::{ClientOptions, Connection};
use replog_node::client::{LogEntry, Request, Response};
use std::io::{self, BufWriter, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct ReadArgs {
    /// Nodes to ask, comma-separated: the first that answers reads its own log.
    #[arg(short = 't', long = "target", value_delimiter = ',', default_value = DEFAULT_TARGET)]
    target: Vec<String>,
    /// The first index to read.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    from: u64,
    /// At most this many entries (the node also stops at 1 MiB of entries).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    limit: u64,
    /// linearizable: confirmed with the leader, holds every append acknowledged before it;
    /// lease: the leader's lease instead of a round (nodes started with --read-lease);
    /// local: whatever the node has, at once (may be stale).
    #[arg(long, value_enum, default_value_t = ConsistencyArg::Linearizable)]
    consistency: ConsistencyArg,
    /// Print the node's answer line as is.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
pub struct FollowArgs {
    /// Nodes to follow, comma-separated: the first that answers streams its own committed
    /// log; if it goes away, the next one takes over from the next entry.
    #[arg(short = 't', long = "target", value_delimiter = ',', default_value = DEFAULT_TARGET)]
    target: Vec<String>,
    /// The first index to print (default: the next entry to commit on the first node).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    from: Option<u64>,
    /// Stop after this many entries (default: never, until Ctrl-C).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Print each entry as the node sent it, one JSON object per line.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

/// How long `follow` keeps trying the targets after losing its node.
const RECONNECT_FOR: Duration = Duration::from_secs(10);
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);

pub fn read(args: ReadArgs) -> ExitCode {
    let targets = match checked_targets(&args.target) {
        Ok(targets) => targets,
        Err(problem) => return fail(&problem),
    };
    let limit = usize::try_from(args.limit).unwrap_or(usize::MAX);
    let request = Request::Read {
        from: args.from,
        limit,
        consistency: args.consistency.into(),
    };
    let options = match args.client.options() {
        Ok(options) => options,
        Err(problem) => return fail(&problem),
    };
    let mut problems = Vec::new();
    for target in &targets {
        let answer = Connection::connect_with(target, CONNECT_TIMEOUT, &options)
            .and_then(|mut connection| {
                connection.send(&request)?;
                connection.recv_line().map(<[u8]>::to_vec)
            })
            .map_err(|error| format!("{target}: {error}"));
        match answer {
            Ok(line) => return print_page(target, &line, args.json),
            Err(problem) => problems.push(problem),
        }
    }
    fail(&problems.join("; "))
}

fn print_page(target: &str, line: &[u8], json: bool) -> ExitCode {
    if json {
        println!("{}", String::from_utf8_lossy(line));
        return ExitCode::SUCCESS;
    }
    match Response::parse(line) {
        Ok(Response::Read(page)) => {
            let mut out = String::new();
            for (position, entry) in page.entries.iter().enumerate() {
                out += &text_line(position + 1, entry);
                out.push('\n');
            }
            out += &format!(
                "next {}, first index {}, commit index {}\n",
                page.next, page.first_index, page.commit_index
            );
            print!("{out}");
            ExitCode::SUCCESS
        }
        Ok(answer) => fail(&refusal(target, &answer)),
        Err(error) => fail(&format!("{target}: {error}")),
    }
}

fn text_line(position: usize, entry: &LogEntry) -> String {
    entry_line(
        position,
        (entry.index, entry.term),
        true,
        entry.command.as_deref(),
        entry.config.as_ref(),
    )
}

/// What an error answer means, for the user.
fn refusal(target: &str, answer: &Response) -> String {
    match answer {
        Response::Trimmed { first_index } => {
            format!("{target}: those entries were trimmed; the log starts at index {first_index}")
        }
        Response::BadRequest { message } => format!("{target} refused the request: {message}"),
        Response::ReadFailed { message } => format!("{target} cannot read its log: {message}"),
        Response::Unauthorized { message } => {
            format!("{target} refused the client token: {message}")
        }
        other => format!("{target} answered {other:?}"),
    }
}

pub fn follow(args: FollowArgs) -> ExitCode {
    let targets = match checked_targets(&args.target) {
        Ok(targets) => targets,
        Err(problem) => return fail(&problem),
    };
    let options = match args.client.options() {
        Ok(options) => options,
        Err(problem) => return fail(&problem),
    };
    let mut follower = Follower {
        options,
        next: args.from,
        printed: 0,
        count: args.count,
        json: args.json,
        out: BufWriter::with_capacity(1 << 16, io::stdout().lock()),
    };
    let mut k = 0;
    let mut lost_at: Option<Instant> = None;
    let mut problem;
    loop {
        let target = &targets[k % targets.len()];
        match follower.stream_from(target) {
            Ok(Ended::Done) => return ExitCode::SUCCESS,
            Ok(Ended::Refused(message)) => return fail(&message),
            Ok(Ended::Lost(why)) => {
                lost_at = None;
                problem = why;
            }
            Err(why) => problem = why,
        }
        let since = *lost_at.get_or_insert_with(Instant::now);
        if since.elapsed() >= RECONNECT_FOR {
            return fail(&format!("no node to follow: {problem}"));
        }
        k += 1;
        std::thread::sleep(RECONNECT_PAUSE);
    }
}

/// How one stream from one node ended.
enum Ended {
    /// `--count` entries printed, or stdout closed.
    Done,
    /// The node answered with an error: retrying elsewhere would not help.
    Refused(String),
    /// The connection broke: another node may carry on.
    Lost(String),
}

struct Follower<W: Write> {
    options: ClientOptions,
    /// The next index to print; `None` until a node said where the log is.
    next: Option<u64>,
    printed: u64,
    count: Option<u64>,
    json: bool,
    out: W,
}

impl<W: Write> Follower<W> {
    /// Follows `target` from `next`; `Err` if it could not even start.
    fn stream_from(&mut self, target: &str) -> Result<Ended, String> {
        let mut connection = match Connection::connect_with(target, CONNECT_TIMEOUT, &self.options)
        {
            Ok(connection) => connection,
            // Every node would refuse the same credentials.
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::PermissionDenied | io::ErrorKind::InvalidData
                ) =>
            {
                return Ok(Ended::Refused(error.to_string()))
            }
            Err(error) => return Err(format!("cannot reach {target}: {error}")),
        };
        let from = match self.next {
            Some(from) => from,
            None => {
                let state = connection
                    .state(false)
                    .map_err(|error| format!("{target}: {error}"))?;
                state.commit_index + 1
            }
        };
        self.next = Some(from);
        connection
            .send(&Request::Follow { from })
            .map_err(|error| format!("{target}: {error}"))?;
        connection
            .set_read_timeout(None)
            .map_err(|error| format!("{target}: {error}"))?;
        loop {
            if self.count.is_some_and(|count| self.printed >= count) {
                let _ = self.out.flush();
                return Ok(Ended::Done);
            }
            if !connection.has_buffered() && self.out.flush().is_err() {
                return Ok(Ended::Done);
            }
            let line = match connection.recv_line() {
                Ok(line) => line,
                Err(error) => {
                    let _ = self.out.flush();
                    return Ok(Ended::Lost(format!("{target}: {error}")));
                }
            };
            let entry = match LogEntry::parse(line) {
                Ok(entry) => entry,
                Err(_) => return Ok(self.not_an_entry(target, line)),
            };
            if Some(entry.index) != self.next {
                let message = format!(
                    "{target} sent entry {} where {} was next",
                    entry.index,
                    self.next.unwrap_or(0)
                );
                return Ok(Ended::Refused(message));
            }
            if self.print(line, &entry).is_err() {
                return Ok(Ended::Done); // Standard output closed: end quietly.
            }
            self.next = Some(entry.index + 1);
        }
    }

    fn print(&mut self, line: &[u8], entry: &LogEntry) -> io::Result<()> {
        self.printed += 1;
        if self.json {
            self.out.write_all(line)?;
            self.out.write_all(b"\n")
        } else {
            let position = self.printed as usize;
            writeln!(self.out, "{}", text_line(position, entry))
        }
    }

    fn not_an_entry(&mut self, target: &str, line: &[u8]) -> Ended {
        let _ = self.out.flush();
        match Response::parse(line) {
            // A node that stops refuses like this; another one may carry on.
            Ok(Response::NotLeader { leader: None }) => {
                Ended::Lost(format!("{target} is stopping"))
            }
            Ok(answer) => Ended::Refused(refusal(target, &answer)),
            Err(error) => Ended::Refused(format!("{target}: {error}")),
        }
    }
}
