//! `replog start|append|query|status|demo`: run a node, talk to one, or start a local
//! cluster to play with.

use crate::cli::client_args::ClientArgs;
use crate::cli::duration::parse_duration;
use clap::{Args, ValueEnum};
use replog_core::ClientId;
use replog_node::client::blocking::{self, ClientOptions, Connection};
use replog_node::client::token::ClientToken;
use replog_node::client::{
    ConfigurationView, Consistency, MemberView, NodeState, QueryRange, Request, Response,
};
use replog_node::config::{check_addr, Limits, Members, NodeConfig, Timing};
use replog_node::identity::{ClusterId, NodeName};
use replog_node::local_cluster::{fresh_temp_dir, LocalCluster};
use replog_node::logging::{LogFormat, LogSettings};
use replog_node::scheduling::Scheduling;
use replog_node::tls::TlsFiles;
use replog_node::transport::ClusterSecrets;
use std::io::{self, BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::Duration;

#[derive(Args)]
pub struct StartArgs {
    /// This node's name (required, here or in the --config file): 1 to 64 characters
    /// from A-Z, a-z, 0-9, '_', '.' and '-', e.g. node1. Its data lives in
    /// DATA_DIR/<name>/. A number is an old-style numeric id. Numeric ids follow the
    /// sorted address list (the lowest address is 1) unless every node is numbered
    /// (`-i 1 -p 2=ADDR,...`); they are fixed at the first start.
    #[arg(short = 'i', long = "id", value_name = "NAME", required_unless_present = "config", value_parser = parse_node_name)]
    id: Option<NodeName>,
    /// The address peers and clients reach this node at (one port serves both): what the
    /// membership holds and what clients are told when this node leads.
    #[arg(
        short = 'a',
        long = "addr",
        visible_alias = "address",
        default_value = "127.0.0.1:8080"
    )]
    addr: String,
    /// The socket address to bind, when it differs from `-a` (e.g. `--listen 0.0.0.0:7001
    /// -a 10.0.0.5:7001` binds every interface and advertises one). Default: `-a`.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// The other nodes: "ADDR,ADDR" or "NAME=ADDR,NAME=ADDR" (this node's own may be
    /// listed). A peer given by address alone is named by its hello. Recorded at the first
    /// start; later starts may leave it out.
    #[arg(short = 'p', long = "peers", default_value = "")]
    peers: String,
    /// Join the running cluster at these nodes ("ADDR,ADDR"; any one will do, the leader
    /// is found from it) instead of founding one with -p: at the first start the leader
    /// adds this node as a learner and it records the cluster's membership; it catches up
    /// and is promoted to voter once its log reaches the commit index. Later starts take
    /// the recorded membership and only check that these nodes are of its cluster.
    #[arg(long, value_name = "ADDRS")]
    join: Option<String>,
    /// With --join: stay a learner (receives the log, counts for no quorum) until `replog
    /// member promote`.
    #[arg(long, requires = "join")]
    learner: bool,
    /// Campaign at once instead of after an election timeout (leadership still takes a
    /// majority's votes).
    #[arg(short = 'l', long)]
    leader: bool,
    /// Data lives in DIR/<name>/.
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    /// Nodes only talk to peers that name the same cluster.
    #[arg(long, default_value = "replog")]
    cluster: String,
    /// The cluster's id, recorded at the first start (same rule as names); nodes only
    /// talk to peers of the same id. Default: derived from --cluster and the founding
    /// members, so that founding nodes agree without talking.
    #[arg(long, value_name = "ID", value_parser = parse_cluster_id)]
    cluster_id: Option<ClusterId>,
    /// Peers must prove they know the secret in FILE (HMAC challenge-response; the secret
    /// never crosses the network). Repeat to rotate: a node proves with the first file's
    /// secret and accepts any of them. Without it, peers are not authenticated.
    #[arg(long, value_name = "FILE")]
    cluster_secret_file: Vec<PathBuf>,
    /// Serve `--consistency lease` reads on the leader without a confirmation round while
    /// its lease holds (120 ms after each round a majority confirmed). Safe while no
    /// node's clock runs more than 20 % fast or slow; give it to every node or none.
    #[arg(long)]
    read_lease: bool,
    /// Clients must show the token in FILE (an `auth` line, or `"token"` on a request);
    /// a wrong or missing one is answered `unauthorized` and the connection closed.
    /// Without it, tokens are ignored.
    #[arg(long, value_name = "FILE")]
    client_token_file: Option<PathBuf>,
    /// Serve TLS with this certificate chain (PEM), and present it to peers (mutual TLS);
    /// needs --tls-key and --tls-ca. The port then refuses plaintext clients and peers.
    #[arg(long, value_name = "FILE", requires_all = ["tls_key", "tls_ca"])]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The CA (PEM) that signs the peers' certificates (checked both ways) and those of
    /// clients that present one.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_ca: Option<PathBuf>,
    /// Stop cleanly when standard input closes (for supervisors such as `replog demo`).
    #[arg(long, hide = true)]
    stop_on_stdin_eof: bool,
    /// Kernel scheduling of the core and storage threads. `normal`: the default policy.
    /// `batch` (SCHED_BATCH): a thread that wakes does not preempt the one running, so
    /// busy threads keep their batches whole: much faster when replog's own threads
    /// outnumber the CPUs (several nodes on one machine), much slower next to CPU-bound
    /// processes, whose time slices a woken thread then waits out.
    #[arg(long, value_enum, default_value_t = SchedulingArg::Normal)]
    scheduling: SchedulingArg,
    /// The log is a directory of segment files of at most about this many bytes each
    /// (at least 4096).
    #[arg(long, default_value_t = replog_node::storage::DEFAULT_SEGMENT_BYTES, value_parser = parse_segment_bytes)]
    segment_bytes: u64,
    /// Bytes of committed entries each node keeps in memory for followers that lag a
    /// little (default 4 MiB); older entries are read back from the segments, so memory
    /// stays flat however long the log grows. 0 keeps only what the core must.
    #[arg(long, default_value_t = replog_node::config::Limits::default().log_cache_bytes)]
    log_cache_bytes: usize,
    /// Retention: as leader, trim the log so that about this many newest entries remain
    /// (proposed once it holds a quarter more, at most once a second; nodes delete whole
    /// segments, so each keeps at least this many). Without it the log is kept whole
    /// unless `replog trim` is used.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    retain_entries: Option<u64>,
    /// Retention: as leader, trim the log so that its segments take about this many bytes
    /// (whole sealed segments go; the open one always stays, so the log may hold up to
    /// one `--segment-bytes` more). Either limit, or both, may be given.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    retain_bytes: Option<u64>,
    /// Serve Prometheus metrics at http://ADDR/metrics and a health check at /health
    /// (200 with a leader and healthy storage, 503 and the reason otherwise). Port 0
    /// picks a free port, named in the log.
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<String>,
    /// Log lines as plain text, or as one JSON object per line (`REPLOG_LOG` filters
    /// them either way).
    #[arg(long, value_enum, default_value_t = LogFormatArg::Text)]
    log_format: LogFormatArg,
    /// Take flags from this TOML file, one key per flag, spelled as the flag's long name
    /// (`data-dir = "data"`; examples/node.toml lists every key). Flags given here
    /// override the file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// `--log-format` as the command line spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
}

impl LogFormatArg {
    pub fn as_arg(self) -> &'static str {
        match self {
            LogFormatArg::Text => "text",
            LogFormatArg::Json => "json",
        }
    }
}

impl From<LogFormatArg> for LogFormat {
    fn from(arg: LogFormatArg) -> LogFormat {
        match arg {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        }
    }
}

fn parse_node_name(text: &str) -> Result<NodeName, String> {
    NodeName::parse(text).map_err(|error| error.0)
}

fn parse_cluster_id(text: &str) -> Result<ClusterId, String> {
    ClusterId::parse(text).map_err(|error| error.0)
}

fn parse_segment_bytes(text: &str) -> Result<u64, String> {
    let min = replog_node::storage::MIN_SEGMENT_BYTES;
    match text.parse::<u64>() {
        Ok(bytes) if bytes >= min => Ok(bytes),
        Ok(bytes) => Err(format!(
            "{bytes} is below the minimum segment size of {min} bytes"
        )),
        Err(error) => Err(format!("not a number of bytes: {error}")),
    }
}

/// `--scheduling` as the command line spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SchedulingArg {
    Batch,
    Normal,
}

impl SchedulingArg {
    pub fn as_arg(self) -> &'static str {
        match self {
            SchedulingArg::Batch => "batch",
            SchedulingArg::Normal => "normal",
        }
    }
}

impl From<SchedulingArg> for Scheduling {
    fn from(arg: SchedulingArg) -> Scheduling {
        match arg {
            SchedulingArg::Batch => Scheduling::Batch,
            SchedulingArg::Normal => Scheduling::Normal,
        }
    }
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["command", "file"])))]
pub struct AppendArgs {
    /// Nodes of the cluster, comma-separated: the first is asked first, the others while
    /// no leader is known; not_leader redirects are followed.
    #[arg(
        short = 't',
        long = "target",
        value_delimiter = ',',
        default_value = DEFAULT_TARGET
    )]
    target: Vec<String>,
    /// The command to append; `-` reads it from standard input (exactly, newlines
    /// included).
    #[arg(short = 'c', long = "command")]
    command: Option<String>,
    /// Read the command from this file (exactly, newlines included).
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
    /// Print the node's answer line as is.
    #[arg(long)]
    json: bool,
    /// Give up when no leader has accepted the command within this long (e.g. 10s, 500ms;
    /// a bare number is seconds). Until then a timeout or a lost connection is retried
    /// with the same client id and seq, which the cluster appends at most once.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    client: ClientArgs,
    /// The client id the append carries (1 to 128 bytes); by default a fresh random one
    /// (128 bits, hex) per invocation.
    #[arg(long, value_name = "ID")]
    client_id: Option<String>,
    /// The append's sequence number for its client id: with a fixed --client-id, give
    /// each new command a higher one.
    #[arg(long, default_value = "1", value_name = "N")]
    seq: std::num::NonZeroU64,
}

#[derive(Args)]
pub struct QueryArgs {
    /// Nodes to ask, comma-separated: the first that answers lists its own log.
    #[arg(
        short = 't',
        long = "target",
        value_delimiter = ',',
        default_value = DEFAULT_TARGET
    )]
    target: Vec<String>,
    /// List from this index on (default: the log's first).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    from: Option<u64>,
    /// List at most this many entries (default: all).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    limit: Option<u64>,
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

/// `--consistency` of `query` and `read`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ConsistencyArg {
    Linearizable,
    Lease,
    Local,
}

impl From<ConsistencyArg> for Consistency {
    fn from(arg: ConsistencyArg) -> Consistency {
        match arg {
            ConsistencyArg::Linearizable => Consistency::Linearizable,
            ConsistencyArg::Lease => Consistency::Lease,
            ConsistencyArg::Local => Consistency::Local,
        }
    }
}

#[derive(Args)]
pub struct StatusArgs {
    /// Nodes to ask, comma-separated: the first that answers shows its own view.
    #[arg(
        short = 't',
        long = "target",
        value_delimiter = ',',
        default_value = DEFAULT_TARGET
    )]
    target: Vec<String>,
    /// Print the node's answer line as is.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

/// Where `append`, `query` and `status` look without `-t`: `start`'s default `-a`.
pub(crate) const DEFAULT_TARGET: &str = "127.0.0.1:8080";

#[derive(Args)]
pub struct DemoArgs {
    /// How many nodes to start.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// The nodes' log format, as `replog start --log-format`.
    #[arg(long, value_enum, default_value_t = LogFormatArg::Text)]
    log_format: LogFormatArg,
}

pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub fn start(args: StartArgs) -> ExitCode {
    // Everything from outside is checked before the node creates its data directory.
    let log = match LogSettings::from_env(args.log_format.into()) {
        Ok(log) => log,
        Err(problem) => return fail(&problem),
    };
    let Some(name) = args.id else {
        return fail("--id is missing: give it, or `id` in the --config file");
    };
    let peers: Vec<String> = args.peers.split(',').map(str::to_string).collect();
    let members = match Members::resolve(&name, &args.addr, &peers) {
        Ok(members) => members,
        Err(error) => return fail(&format!("bad cluster configuration: {error}")),
    };
    let listen = args.listen.unwrap_or_else(|| args.addr.clone());
    if let Err(error) = check_addr(&listen) {
        return fail(&format!("--listen: {error}"));
    }
    let secrets = match ClusterSecrets::load(&args.cluster_secret_file) {
        Ok(secrets) => secrets,
        Err(error) => return fail(&error.to_string()),
    };
    let client_token = match args.client_token_file.as_deref().map(ClientToken::load) {
        None => None,
        Some(Ok(token)) => Some(token),
        Some(Err(error)) => return fail(&error.to_string()),
    };
    let tls = match (args.tls_cert, args.tls_key, args.tls_ca) {
        (Some(cert), Some(key), Some(ca)) => {
            match replog_node::tls::node_config(&TlsFiles { cert, key, ca }) {
                Ok(config) => Some(config),
                Err(error) => return fail(&error.to_string()),
            }
        }
        _ => None, // clap requires all three or none.
    };
    let config = NodeConfig {
        members,
        listen,
        cluster: args.cluster,
        cluster_id: args.cluster_id,
        secrets,
        client_token,
        tls,
        data_dir: args.data_dir,
        campaign_at_start: args.leader,
        stop_on_stdin_eof: args.stop_on_stdin_eof,
        scheduling: args.scheduling.into(),
        timing: Timing {
            read_lease: args.read_lease,
            ..Timing::default()
        },
        limits: Limits {
            segment_bytes: args.segment_bytes,
            log_cache_bytes: args.log_cache_bytes,
            retain_entries: args.retain_entries,
            retain_bytes: args.retain_bytes,
            ..Limits::default()
        },
        metrics_addr: args.metrics_addr,
        join: join_of(args.join, args.learner),
        log,
    };
    match replog_node::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&error.to_string()),
    }
}

/// `--join` and `--learner`, addresses checked by the node as it joins.
fn join_of(targets: Option<String>, learner: bool) -> Option<replog_node::joining::Join> {
    let targets: Vec<String> = (targets.unwrap_or_default().split(','))
        .map(|target| target.trim().to_string())
        .filter(|target| !target.is_empty())
        .collect();
    (!targets.is_empty()).then_some(replog_node::joining::Join { targets, learner })
}

pub fn append(args: AppendArgs) -> ExitCode {
    let targets = match checked_targets(&args.target) {
        Ok(targets) => targets,
        Err(problem) => return fail(&problem),
    };
    let command = match read_command(&args) {
        Ok(command) => command,
        Err(problem) => return fail(&problem),
    };
    if let Err(problem) = blocking::append_request(&command) {
        return fail(&problem);
    }
    let options = match args.client.options() {
        Ok(options) => options,
        Err(problem) => return fail(&problem),
    };
    let client = match &args.client_id {
        Some(id) => ClientId::new(id.as_str()).map_err(|error| format!("--client-id: {error}")),
        None => blocking::random_client_id().map_err(|error| format!("no client id: {error}")),
    };
    let client = match client {
        Ok(client) => client,
        Err(problem) => return fail(&problem),
    };
    let session = (&client, args.seq);
    match blocking::append_once_with(&targets, &command, session, args.timeout, &options) {
        Ok(appended) => {
            let text = if args.json {
                let mut line = Vec::new();
                Response::Appended {
                    index: appended.index,
                    term: appended.term,
                }
                .encode(&mut line);
                String::from_utf8_lossy(&line).into_owned()
            } else {
                format!(
                    "committed at index {} in term {} (leader {})\n",
                    appended.index, appended.term, appended.leader
                )
            };
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => fail(&error.to_string()),
    }
}

/// `-t`'s addresses, blanks dropped, each checked to be HOST:PORT.
pub(crate) fn checked_targets(targets: &[String]) -> Result<Vec<String>, String> {
    let targets: Vec<String> = targets
        .iter()
        .map(|target| target.trim().to_string())
        .filter(|target| !target.is_empty())
        .collect();
    if targets.is_empty() {
        return Err("-t needs at least one address".into());
    }
    for target in &targets {
        check_addr(target).map_err(|error| format!("-t: {error}"))?;
    }
    Ok(targets)
}

/// The command from `-c`, `-c -` (standard input) or `--file`. A command is a JSON string
/// on the wire, so it must be UTF-8.
fn read_command(args: &AppendArgs) -> Result<String, String> {
    let (bytes, source) = match (&args.command, &args.file) {
        (Some(command), _) if command != "-" => return Ok(command.clone()),
        (Some(_), _) => {
            let mut bytes = Vec::new();
            io::stdin()
                .read_to_end(&mut bytes)
                .map_err(|error| format!("cannot read the command from standard input: {error}"))?;
            (bytes, "standard input".to_string())
        }
        (None, Some(path)) => {
            let bytes = std::fs::read(path)
                .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
            (bytes, path.display().to_string())
        }
        (None, None) => unreachable!("clap requires -c or --file"),
    };
    String::from_utf8(bytes).map_err(|error| {
        format!(
            "the command in {source} is not UTF-8 (byte {}); commands are JSON strings",
            error.utf8_error().valid_up_to()
        )
    })
}

pub fn query(args: QueryArgs) -> ExitCode {
    let range = QueryRange {
        from: args.from,
        limit: args
            .limit
            .map(|limit| usize::try_from(limit).unwrap_or(usize::MAX)),
    };
    let request = Request::Query {
        range,
        consistency: args.consistency.into(),
    };
    show_state(&args.target, &args.client, request, args.json)
}

pub fn status(args: StatusArgs) -> ExitCode {
    show_state(&args.target, &args.client, Request::Status, args.json)
}

/// Asks the first of `targets` that answers; prints its answer.
fn show_state(targets: &[String], client: &ClientArgs, request: Request, json: bool) -> ExitCode {
    let targets = match checked_targets(targets) {
        Ok(targets) => targets,
        Err(problem) => return fail(&problem),
    };
    let options = match client.options() {
        Ok(options) => options,
        Err(problem) => return fail(&problem),
    };
    // A linearizable answer needs a leader: while the node asked knows none (an election
    // under way), it answers `not_leader`; ask again, as `append` waits for a leader.
    let deadline = std::time::Instant::now() + LEADER_WAIT;
    loop {
        let mut problems = Vec::new();
        let mut unconfirmed = None;
        for target in &targets {
            match ask(target, &request, &options) {
                Ok(line) if matches!(Response::parse(&line), Ok(Response::NotLeader { .. })) => {
                    unconfirmed = Some((target, line));
                }
                Ok(line) => return print_answer(target, &line, json),
                Err(problem) => problems.push(problem),
            }
        }
        match unconfirmed {
            Some((target, line)) if std::time::Instant::now() >= deadline => {
                return print_answer(target, &line, json)
            }
            Some(_) => std::thread::sleep(Duration::from_millis(50)),
            None => return fail(&problems.join("; ")),
        }
    }
}

/// How long `query` and `status` wait for a node that knows no leader to confirm a read.
const LEADER_WAIT: Duration = Duration::from_secs(10);

/// One request to `target`; its answer line, or what went wrong.
fn ask(target: &str, request: &Request, options: &ClientOptions) -> Result<Vec<u8>, String> {
    let mut connection =
        Connection::connect_with(target, CONNECT_TIMEOUT, options).map_err(|error| match error
            .kind()
        {
            io::ErrorKind::PermissionDenied | io::ErrorKind::InvalidData => error.to_string(),
            _ => format!("cannot reach {target}: {error}"),
        })?;
    connection
        .send(request)
        .map_err(|error| format!("{target}: {error}"))?;
    let line = connection
        .recv_line()
        .map_err(|error| format!("{target}: {error}"))?;
    Ok(line.to_vec())
}

fn print_answer(target: &str, line: &[u8], json: bool) -> ExitCode {
    if json {
        println!("{}", String::from_utf8_lossy(line));
        return ExitCode::SUCCESS;
    }
    match Response::parse(line) {
        Ok(Response::State(state)) => {
            print_state(&state);
            ExitCode::SUCCESS
        }
        Ok(Response::Trimmed { first_index }) => fail(&format!(
            "{target}: those entries were trimmed; the log starts at index {first_index}"
        )),
        Ok(Response::BadRequest { message }) => {
            fail(&format!("{target} refused the request: {message}"))
        }
        Ok(Response::Unauthorized { message }) => fail(&format!(
            "{target} refused the request: {message} (give the token with --token-file or {})",
            crate::cli::client_args::TOKEN_ENV
        )),
        Ok(other) => fail(&format!("{target} answered {other:?}")),
        Err(error) => fail(&format!("{target}: {error}")),
    }
}

/// The status line, then the members (`status`) or the seed's listing format for each
/// entry (`query`).
fn print_state(state: &NodeState) {
    let who = match state.name.as_deref() {
        Some(name) if name != state.node.to_string() => format!("{name} (id {})", state.node),
        _ => state.node.to_string(),
    };
    println!(
        "node {who}: {}, term {}, leader {}, commit index {}, last index {}",
        state.role,
        state.term,
        state.leader.as_deref().unwrap_or("unknown"),
        state.commit_index,
        state.last_index
    );
    if let (None, Some(members)) = (&state.entries, &state.members) {
        println!("members: {}", members_line(members));
    }
    if let (None, Some(configuration)) = (&state.entries, &state.configuration) {
        println!("configuration: {}", configuration_line(configuration));
    }
    for (position, entry) in state.entries.iter().flatten().enumerate() {
        let line = entry_line(
            position + 1,
            (entry.index, entry.term),
            entry.committed,
            entry.command.as_deref(),
            entry.config.as_ref(),
        );
        println!("{line}");
    }
}

/// `1=node1@127.0.0.1:8080, 2=?@127.0.0.1:8081`: `?` for a name not heard yet; on a
/// leader each follower's match index follows, `2=node2@127.0.0.1:8081 (match 41)`.
fn members_line(members: &[MemberView]) -> String {
    let shown: Vec<String> = members
        .iter()
        .map(|member| {
            let name = member.name.as_deref().unwrap_or("?");
            match member.match_index {
                Some(index) => format!("{}={name}@{} (match {index})", member.id, member.addr),
                None => format!("{}={name}@{}", member.id, member.addr),
            }
        })
        .collect();
    shown.join(", ")
}

/// `voters 1,2,3; learners 4 (entry 12)`, or `(bootstrap)` before any change.
fn configuration_line(configuration: &ConfigurationView) -> String {
    let list = |ids: &[u64]| match ids {
        [] => "none".to_string(),
        ids => ids.iter().map(u64::to_string).collect::<Vec<_>>().join(","),
    };
    let origin = match configuration.index {
        0 => "bootstrap".to_string(),
        index => format!("entry {index}"),
    };
    format!(
        "voters {}; learners {} ({origin})",
        list(&configuration.voters),
        list(&configuration.learners)
    )
}

/// One entry in the seed's listing format: `3. ID:3 Term:1 Committed:true Command:set x=1`;
/// a configuration change shows the configuration after it in place of a command.
pub(crate) fn entry_line(
    position: usize,
    (index, term): (u64, u64),
    committed: bool,
    command: Option<&str>,
    config: Option<&replog_core::Membership>,
) -> String {
    let shown = match (command, config) {
        (Some(command), _) => escape_controls(command),
        (None, Some(config)) => format!("(configuration: {config})"),
        (None, None) => "(leader no-op)".into(),
    };
    format!("{position}. ID:{index} Term:{term} Committed:{committed} Command:{shown}")
}

/// `text` with backslashes and control characters (NUL, newlines, escape sequences, ...)
/// written as Rust-style escapes, so that a command can neither break the one-entry-per-
/// line listing nor drive the terminal, and every listing reads back unambiguously.
fn escape_controls(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '\\' || c.is_control() {
            escaped.extend(c.escape_default());
        } else {
            escaped.push(c);
        }
    }
    escaped
}

pub fn demo(args: DemoArgs) -> ExitCode {
    if args.nodes == 0 {
        return fail("--nodes must be at least 1");
    }
    match run_demo(args.nodes, args.log_format) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&error),
    }
}

fn run_demo(nodes: usize, log_format: LogFormatArg) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|error| format!("cannot find replog: {error}"))?;
    // Before any node exists, so that no Ctrl-C can end this process and orphan one.
    let (stop_sender, stop) = stop_on_signals()?;
    let dir = fresh_temp_dir("demo").map_err(|error| format!("cannot make a data dir: {error}"))?;
    // The directory is kept: the logs and log.jsonl files are worth a look afterwards.
    say(&format!(
        "Starting {nodes} nodes; their data and logs go to {} (kept after the demo) ...",
        dir.display()
    ));
    let log_args = ["--log-format", log_format.as_arg()];
    let mut cluster = LocalCluster::start_with(&exe, nodes, &dir, &log_args)
        .map_err(|error| format!("cannot start the cluster: {error}"))?;
    let leader = cluster.wait_for_leader(Duration::from_secs(15))?;
    say(&format!("Leader elected: {leader}\n"));
    let commands = ["set greeting=hello", "set answer=42", "del greeting"];
    for command in commands {
        if let Ok(reason) = stop.try_recv() {
            return stop_demo(&mut cluster, &dir, &reason);
        }
        match blocking::append(&cluster.addrs(), command, Duration::from_secs(10)) {
            Ok(appended) => say(&format!(
                "  appended {command:?} at index {} in term {}",
                appended.index, appended.term
            )),
            Err(error) => return Err(format!("appending {command:?} failed: {error}")),
        }
    }
    // Leadership may have moved while the commands were appended (a loaded machine misses
    // heartbeats): the hint names the leader as it is now, with its term.
    let leader = cluster.wait_for_leader_term(Duration::from_secs(15))?;
    print_demo_help(&cluster, &exe.display().to_string(), &leader);
    // Only now: with input at its end already (`< /dev/null`), the demo still shows its
    // cluster before it stops.
    stop_at_end_of_input(stop_sender)?;
    // Every sender lives as long as this process, so this only returns a request.
    let reason = stop
        .recv()
        .unwrap_or_else(|_| "the stop watchers ended".into());
    stop_demo(&mut cluster, &dir, &reason)
}

/// Stops every node still running and waits for it; says where the data stays.
fn stop_demo(cluster: &mut LocalCluster, dir: &Path, reason: &str) -> Result<(), String> {
    say(&format!("\n{reason}: stopping the nodes ..."));
    for k in 0..cluster.len() {
        if cluster.pid(k).is_some() && !cluster.is_running(k) {
            // Killed from outside (the `kill -9` the help suggests): reap it, not an error.
            say(&format!("  node {} had already exited", k + 1));
            cluster.kill(k);
        }
    }
    cluster
        .stop_all()
        .map_err(|error| format!("stopping the nodes: {error}"))?;
    say(&format!("Stopped. Data kept in {}", dir.display()));
    Ok(())
}

/// A channel that receives one line per reason to stop the demo: SIGINT (Ctrl-C), SIGTERM
/// or SIGHUP, and whatever else is given the sender. Handling the signals, rather than
/// dying of them, lets the demo stop its nodes and wait for them before it exits.
fn stop_on_signals() -> Result<(Sender<String>, Receiver<String>), String> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let (sender, requests) = channel();
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|error| format!("cannot handle Ctrl-C: {error}"))?;
    let on_signal = sender.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                let name = match signal {
                    SIGINT => "Ctrl-C (SIGINT)",
                    SIGTERM => "SIGTERM",
                    _ => "SIGHUP",
                };
                let _ = on_signal.send(name.to_string());
            }
        })
        .map_err(|error| format!("cannot start a thread: {error}"))?;
    Ok((sender, requests))
}

/// Sends a stop request once standard input ends (Ctrl-D).
fn stop_at_end_of_input(sender: Sender<String>) -> Result<(), String> {
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            for line in io::stdin().lock().lines() {
                if line.is_err() {
                    break;
                }
            }
            let _ = sender.send("End of input".to_string());
        })
        .map(drop)
        .map_err(|error| format!("cannot start a thread: {error}"))
}

/// One line to stdout. SIGPIPE is ignored here (see main.rs) and a reader that went away
/// must not stop the demo from stopping its nodes, so a failed write is dropped.
fn say(line: &str) {
    let _ = writeln!(io::stdout().lock(), "{line}");
}

fn print_demo_help(cluster: &LocalCluster, exe: &str, (leader, term): &(String, u64)) {
    let mut text = String::from("\nThe cluster is running:\n");
    for k in 0..cluster.len() {
        let pid = cluster
            .pid(k)
            .map_or("?".to_string(), |pid| pid.to_string());
        text += &format!(
            "  node {}  {}  pid {pid}  (log: {})\n",
            k + 1,
            cluster.addr(k),
            cluster.log_path(k).display()
        );
    }
    // Every node listed, so that each command still works once the leader is gone.
    let all = cluster.addrs().join(",");
    text += "\nTry, in another terminal:\n";
    text += &format!("  {exe} append -t {all} -c 'set x=1'\n");
    text += &format!("  {exe} query -t {all}\n");
    text += &format!("  {exe} status -t {all} --json\n");
    text += &format!("  {exe} follow -t {all} --from 1   # every committed entry, then live\n");
    let leader_k = (0..cluster.len()).find(|&k| cluster.addr(k) == leader.as_str());
    // nc talks to one node: a follower, which outlives the leader's kill.
    let follower = (0..cluster.len())
        .find(|&k| Some(k) != leader_k)
        .or(leader_k)
        .map_or(leader.as_str(), |k| cluster.addr(k));
    if let Some((host, port)) = follower.rsplit_once(':') {
        text += &format!("  printf '{{\"op\":\"status\"}}\\n' | nc -q1 {host} {port}\n");
    }
    if let Some(k) = leader_k {
        let pid = cluster
            .pid(k)
            .map_or("?".to_string(), |pid| pid.to_string());
        text += &format!(
            "  kill -9 {pid}   # the leader (term {term}), node {}; then `status` shows another \
             take over\n",
            k + 1
        );
    }
    text += "\nPress Ctrl-C (or Ctrl-D) to stop the cluster.";
    say(&text);
}

pub(crate) fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}
