//! The Rust client: a small blocking client for the protocol in README's "Client protocol",
//! used by the CLI, the tests and the benchmark.
//!
//! [`append`] is the call most programs want: it finds the leader among the addresses it is
//! given, follows `not_leader` redirects, and never resends a command whose fate is unknown,
//! so `Ok` means the command is committed exactly once. [`Connection`] is one connection to
//! one node, for `status` and `query` and for pipelining requests.
//!
//! ```no_run
//! use replog_node::client::blocking::{append, AppendError, Connection};
//! use replog_node::client::{Request, Response};
//! use std::time::Duration;
//!
//! let cluster = ["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"].map(String::from);
//! match append(&cluster, "set x=1", Duration::from_secs(5)) {
//!     Ok(appended) => println!("committed at index {} in term {}", appended.index, appended.term),
//!     // The connection broke, or the node answered `timeout`: retrying could append twice.
//!     Err(AppendError::Unknown { problem }) => eprintln!("maybe in the log: {problem}"),
//!     Err(error) => eprintln!("not appended: {error}"),
//! }
//!
//! let mut node = Connection::connect("127.0.0.1:7001", Duration::from_secs(2))?;
//! let state = node.state(true)?; // `query`: the node's view and its whole log
//! println!("node {} is {:?} in term {}", state.node, state.role, state.term);
//! for entry in state.entries.unwrap_or_default() {
//!     println!("{} {:?} committed={}", entry.index, entry.command, entry.committed);
//! }
//!
//! // Pipelining: send several requests, then read their answers in the same order.
//! for command in ["a", "b"] {
//!     node.send(&Request::Append { command: command.into() })?;
//! }
//! for _ in 0..2 {
//!     match node.recv()? {
//!         Response::Appended { index, .. } => println!("appended at {index}"),
//!         other => println!("{other:?}"), // e.g. not_leader: this node is not the leader
//!     }
//! }
//! # Ok::<(), std::io::Error>(())
//! ```

use super::lines::{read_line_limited, LineRead};
use super::protocol::{Consistency, NodeState, QueryRange, Request, Response, RoleName};
use crate::config::MAX_LINE_BYTES;
use crate::membership::MemberRequest;
use crate::tls::{Stream, TlsStream};
use replog_core::ClientId;
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crate::tls::host_of;

/// Longest answer line a client accepts (a `query` of a long log is big).
const MAX_ANSWER_BYTES: usize = 1 << 30;

/// How a client connects beyond the address: over TLS or not, and the token it shows.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// Sent in an `auth` line on every new connection (see `client::token`).
    pub token: Option<String>,
    /// Connect with TLS, trusting the nodes this configuration trusts (see `tls`).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// One connection to a node. Requests may be pipelined: `send` several, then `recv` their
/// answers in the same order.
pub struct Connection {
    addr: String,
    /// The socket under `reader`, for its timeouts.
    socket: TcpStream,
    /// Writes go to the stream under it, as TLS needs one owner for both directions.
    reader: BufReader<Stream<TcpStream>>,
    out: Vec<u8>,
    line: Vec<u8>,
}

impl Connection {
    /// Connects, giving up after `timeout`; answers must then arrive within `timeout` too.
    pub fn connect(addr: &str, timeout: Duration) -> io::Result<Connection> {
        Connection::connect_with(addr, timeout, &ClientOptions::default())
    }

    /// As [`Connection::connect`], then shows the token if `options` has one. A node that
    /// refuses it is a `PermissionDenied` error with the node's message.
    pub fn connect_with(
        addr: &str,
        timeout: Duration,
        options: &ClientOptions,
    ) -> io::Result<Connection> {
        let mut connection = Connection::connect_plain(addr, timeout)?;
        if let Some(config) = &options.tls {
            connection.start_tls(config.clone())?;
        }
        if let Some(token) = &options.token {
            connection.authenticate(token)?;
        }
        Ok(connection)
    }

    fn start_tls(&mut self, config: Arc<rustls::ClientConfig>) -> io::Result<()> {
        let Stream::Plain(socket) = self.reader.get_ref() else {
            return Ok(());
        };
        let socket = socket.try_clone()?;
        let host = host_of(&self.addr);
        let mut tls = TlsStream::client(socket, config, host)?;
        tls.handshake().map_err(|error| {
            io::Error::new(
                error.kind(),
                format!(
                    "{}: TLS handshake failed: {error} (does the node run with --tls-cert, \
                     and is its certificate signed by --tls-ca?)",
                    self.addr
                ),
            )
        })?;
        self.reader = BufReader::new(Stream::Tls(Box::new(tls)));
        Ok(())
    }

    fn authenticate(&mut self, token: &str) -> io::Result<()> {
        self.out.clear();
        super::token::encode_auth(token, &mut self.out);
        self.reader.get_mut().write_all(&self.out)?;
        match self.recv()? {
            Response::Authenticated => Ok(()),
            Response::Unauthorized { message } => Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{} refused the client token: {message}", self.addr),
            )),
            other => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} answered auth with {other:?}", self.addr),
            )),
        }
    }

    fn connect_plain(addr: &str, timeout: Duration) -> io::Result<Connection> {
        let mut last_error = None;
        for socket_addr in addr.to_socket_addrs()? {
            match TcpStream::connect_timeout(&socket_addr, timeout) {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    stream.set_read_timeout(Some(timeout))?;
                    stream.set_write_timeout(Some(timeout))?;
                    return Ok(Connection {
                        addr: addr.to_string(),
                        reader: BufReader::new(Stream::Plain(stream.try_clone()?)),
                        socket: stream,
                        out: Vec::new(),
                        line: Vec::new(),
                    });
                }
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{addr} resolves to nothing"),
            )
        }))
    }

    pub fn send(&mut self, request: &Request) -> io::Result<()> {
        self.out.clear();
        request.encode(&mut self.out);
        self.reader.get_mut().write_all(&self.out)
    }

    /// The next answer. A closed connection is `UnexpectedEof`.
    pub fn recv(&mut self) -> io::Result<Response> {
        self.recv_line()?;
        Response::parse(&self.line)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
    }

    /// The next answer line, unparsed (for `--json` output).
    pub fn recv_line(&mut self) -> io::Result<&[u8]> {
        match read_line_limited(&mut self.reader, &mut self.line, MAX_ANSWER_BYTES)? {
            LineRead::Line => Ok(&self.line),
            LineRead::Eof => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} closed the connection", self.addr),
            )),
            LineRead::TooLong => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "answer line too long",
            )),
        }
    }

    /// How long a `recv` waits for a line; `None`: for ever (a `follow` stream).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.socket.set_read_timeout(timeout)
    }

    /// Whether bytes of a next line are already here (so a caller that batches output
    /// knows it can read on before flushing).
    pub fn has_buffered(&self) -> bool {
        !self.reader.buffer().is_empty()
    }

    pub fn call(&mut self, request: &Request) -> io::Result<Response> {
        self.send(request)?;
        self.recv()
    }

    /// `status` or `query`, expecting a state answer: the node's own view (a `local`
    /// query), as a test or an operator inspecting each node wants it.
    pub fn state(&mut self, with_entries: bool) -> io::Result<NodeState> {
        let request = if with_entries {
            Request::Query {
                range: QueryRange::default(),
                consistency: Consistency::Local,
            }
        } else {
            Request::Status
        };
        match self.call(&request)? {
            Response::State(state) => Ok(state),
            other => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected answer {other:?}"),
            )),
        }
    }
}

/// A committed append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    pub index: u64,
    pub term: u64,
    /// The node that answered (the leader).
    pub leader: String,
}

/// Why an append did not (knowingly) commit.
#[derive(Debug)]
pub enum AppendError {
    /// No leader accepted it before the deadline; it was never accepted by anyone.
    NoLeader { last_problem: String },
    /// It was sent but its fate is unknown (answer `timeout`, or the connection broke
    /// after sending): it may or may not be in the log.
    Unknown { problem: String },
    /// The node refused the request itself.
    Rejected { message: String },
}

impl fmt::Display for AppendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppendError::NoLeader { last_problem } => {
                write!(f, "no leader accepted the append in time ({last_problem})")
            }
            AppendError::Unknown { problem } => write!(
                f,
                "the append's outcome is unknown ({problem}); it may or may not be in the log"
            ),
            AppendError::Rejected { message } => write!(f, "the node refused: {message}"),
        }
    }
}

impl std::error::Error for AppendError {}

/// The request line `append` would send for `command`, or why the node would refuse it
/// for its length (checked before sending, so a too-big command fails here, not after a
/// round trip and a closed connection).
pub fn append_request(command: &str) -> Result<Request, String> {
    let request = Request::Append {
        command: command.to_string(),
    };
    check_line_length(&request, command)?;
    Ok(request)
}

/// Refuses `request` (which carries `command`) if its line exceeds the protocol's limit.
fn check_line_length(request: &Request, command: &str) -> Result<(), String> {
    let mut line = Vec::new();
    request.encode(&mut line);
    let line_bytes = line.len() - 1; // Without its newline.
    if line_bytes > MAX_LINE_BYTES {
        return Err(format!(
            "the command ({} bytes) makes a {line_bytes}-byte request line; the protocol's \
             limit is {MAX_LINE_BYTES} bytes",
            command.len()
        ));
    }
    Ok(())
}

/// Appends `command` through `targets`, following `not_leader` redirects and trying the
/// other targets while no leader is known, until `timeout` has passed. When every one of
/// `targets` in a row refuses the connection (or is no address at all), it gives up at
/// once with `NoLeader`: nobody is there to wait for.
///
/// It never resends a command whose fate is unknown, so a success is exactly one append.
pub fn append(
    targets: &[String],
    command: &str,
    timeout: Duration,
) -> Result<Appended, AppendError> {
    append_with(targets, command, timeout, &ClientOptions::default())
}

/// [`append`], connecting with `options`.
pub fn append_with(
    targets: &[String],
    command: &str,
    timeout: Duration,
    options: &ClientOptions,
) -> Result<Appended, AppendError> {
    let request = append_request(command).map_err(|message| AppendError::Rejected { message })?;
    submit(targets, &request, timeout, options)
}

/// Appends `command` at most once, as the `seq`th of `client`: like [`append`], but an
/// outcome left unknown (a timeout, a lost connection) is retried with the same
/// `(client, seq)` until `timeout` has passed, which is safe because the cluster appends
/// a `(client, seq)` once and answers a retry with the original index and term.
pub fn append_once(
    targets: &[String],
    command: &str,
    client: &ClientId,
    seq: NonZeroU64,
    timeout: Duration,
) -> Result<Appended, AppendError> {
    let options = ClientOptions::default();
    append_once_with(targets, command, (client, seq), timeout, &options)
}

/// [`append_once`], connecting with `options`.
pub fn append_once_with(
    targets: &[String],
    command: &str,
    (client, seq): (&ClientId, NonZeroU64),
    timeout: Duration,
    options: &ClientOptions,
) -> Result<Appended, AppendError> {
    let request = Request::AppendOnce {
        command: command.to_string(),
        client: client.clone(),
        seq,
    };
    // The line that goes out, client id and seq included, is the one to measure.
    check_line_length(&request, command).map_err(|message| AppendError::Rejected { message })?;
    let deadline = Instant::now() + timeout;
    // Once an attempt may have been appended, a later one that reaches no leader does not
    // make it certainly absent: the outcome stays unknown.
    let mut sent: Option<String> = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match submit(targets, &request, left, options) {
            Err(AppendError::Unknown { problem }) if Instant::now() + RETRY_PAUSE < deadline => {
                sent = Some(problem);
                std::thread::sleep(RETRY_PAUSE);
            }
            Err(AppendError::NoLeader { last_problem }) => {
                return Err(match sent {
                    Some(problem) => AppendError::Unknown {
                        problem: format!("{problem}; then {last_problem}"),
                    },
                    None => AppendError::NoLeader { last_problem },
                })
            }
            outcome => return outcome,
        }
    }
}

/// A fresh client id for [`append_once`]: 128 random bits from the operating system, as
/// 32 hex digits, so that two clients never share one by chance.
pub fn random_client_id() -> io::Result<ClientId> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|error| io::Error::other(error.to_string()))?;
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    ClientId::new(hex).map_err(|error| io::Error::other(error.to_string()))
}

/// Proposes a retention point through `targets` as [`append`] proposes a command: the
/// entries before `before` are dropped from every node's storage once it is committed.
pub fn trim(targets: &[String], before: u64, timeout: Duration) -> Result<Appended, AppendError> {
    trim_with(targets, before, timeout, &ClientOptions::default())
}

/// [`trim`], connecting with `options`.
pub fn trim_with(
    targets: &[String],
    before: u64,
    timeout: Duration,
    options: &ClientOptions,
) -> Result<Appended, AppendError> {
    submit(targets, &Request::Trim { before }, timeout, options)
}

/// Proposes a membership change through `targets` as [`append`] proposes a command:
/// answered once the configuration entry is committed, or with the leader's refusal.
pub fn member_with(
    targets: &[String],
    request: MemberRequest,
    timeout: Duration,
    options: &ClientOptions,
) -> Result<Appended, AppendError> {
    submit(targets, &Request::Member(request), timeout, options)
}

/// The leader's `status`, found through `targets`: each node asked names the leader it
/// knows, and the others are tried while none is known, until `timeout` has passed.
/// Returns the leader's address with its answer.
pub fn leader_state(
    targets: &[String],
    timeout: Duration,
    options: &ClientOptions,
) -> Result<(String, NodeState), String> {
    assert!(!targets.is_empty(), "a request needs a target");
    let deadline = Instant::now() + timeout;
    let (mut target, mut fallback) = (targets[0].clone(), 0);
    let mut last_problem = String::from("no attempt made");
    while Instant::now() < deadline {
        let io_timeout = deadline
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_millis(100), Duration::from_secs(2));
        let answer = Connection::connect_with(&target, io_timeout, options)
            .and_then(|mut connection| connection.state(false));
        match answer {
            Ok(state) if state.role == RoleName::Leader => return Ok((target, state)),
            Ok(state) => match state.leader {
                Some(leader) if leader != target => {
                    last_problem = format!("{target} is not the leader; it names {leader}");
                    target = leader;
                    continue;
                }
                _ => last_problem = format!("{target} knows no leader yet"),
            },
            Err(error) if error.kind() == io::ErrorKind::PermissionDenied => {
                return Err(format!("{target} refused: {error}"))
            }
            Err(error) => last_problem = format!("{target}: {error}"),
        }
        fallback = (fallback + 1) % targets.len();
        target = targets[fallback].clone();
        std::thread::sleep(RETRY_PAUSE);
    }
    Err(format!("no leader found in time ({last_problem})"))
}

/// Sends a request that the leader answers once it is committed (an append or a trim),
/// following redirects as [`append`] describes.
fn submit(
    targets: &[String],
    request: &Request,
    timeout: Duration,
    options: &ClientOptions,
) -> Result<Appended, AppendError> {
    assert!(!targets.is_empty(), "a request needs a target");
    let deadline = Instant::now() + timeout;
    let mut target = targets[0].clone();
    let mut fallback = 0;
    let mut last_problem = String::from("no attempt made");
    let mut redirected = false;
    // The given targets that refused since any node last answered, with why.
    let mut refused: BTreeMap<String, String> = BTreeMap::new();
    while Instant::now() < deadline {
        match attempt(&target, request, deadline, options) {
            Attempt::Done(result) => return result,
            Attempt::Redirected { leader, problem } => {
                // Two nodes naming each other (an election settling): do not spin.
                if redirected {
                    std::thread::sleep(RETRY_PAUSE);
                }
                refused.clear();
                redirected = true;
                last_problem = problem;
                target = leader;
            }
            Attempt::Retry {
                elsewhere,
                problem,
                nobody_there,
            } => {
                redirected = false;
                // Straight on to the next given target after a refusal; a pause otherwise,
                // so that an election can finish (and a redirect to a dead leader does not
                // spin).
                let pause = !(nobody_there && targets.contains(&target));
                if !nobody_there {
                    refused.clear();
                } else if targets.contains(&target) {
                    refused.insert(target.clone(), problem.clone());
                    if targets.iter().all(|target| refused.contains_key(target)) {
                        let problems: Vec<String> = refused.into_values().collect();
                        return Err(AppendError::NoLeader {
                            last_problem: format!("no node is reachable: {}", problems.join("; ")),
                        });
                    }
                }
                last_problem = problem;
                if elsewhere {
                    fallback = (fallback + 1) % targets.len();
                    target = targets[fallback].clone();
                }
                if pause {
                    std::thread::sleep(RETRY_PAUSE);
                }
            }
        }
    }
    Err(AppendError::NoLeader { last_problem })
}

/// A leadership transfer that completed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transferred {
    /// The new leader's name, and its term.
    pub leader: String,
    pub term: u64,
    /// The address of the (old) leader that carried the transfer out.
    pub via: String,
}

/// Asks the leader, found through `targets` as [`append`] finds it (not_leader redirects
/// are followed), to hand its leadership to `to` (a member's name or id), and waits until
/// `to` leads. An error is the node's refusal or failure as it put it, or why no leader
/// could be asked in time.
pub fn transfer_with(
    targets: &[String],
    to: &str,
    timeout: Duration,
    options: &ClientOptions,
) -> Result<Transferred, String> {
    assert!(!targets.is_empty(), "a request needs a target");
    let deadline = Instant::now() + timeout;
    let request = Request::Transfer { to: to.to_string() };
    let (mut target, mut fallback, mut redirected) = (targets[0].clone(), 0, false);
    let mut last_problem = String::from("no attempt made");
    while Instant::now() < deadline {
        let next = |fallback: &mut usize| {
            *fallback = (*fallback + 1) % targets.len();
            targets[*fallback].clone()
        };
        let io_timeout = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(100));
        let answer =
            Connection::connect_with(&target, io_timeout.min(Duration::from_secs(2)), options)
                .and_then(|mut connection| {
                    let _ = connection.socket.set_read_timeout(Some(io_timeout));
                    connection.call(&request)
                });
        match answer {
            Ok(Response::Transferred { leader, term }) => {
                return Ok(Transferred {
                    leader,
                    term,
                    via: target,
                })
            }
            Ok(Response::NotLeader {
                leader: Some(leader),
            }) if leader != target => {
                if redirected {
                    std::thread::sleep(RETRY_PAUSE); // Two nodes naming each other.
                }
                redirected = true;
                last_problem = format!("{target} is not the leader; redirected to {leader}");
                target = leader;
                continue;
            }
            Ok(Response::NotLeader { .. } | Response::Stopping { .. }) => {
                last_problem = format!("{target} knows no leader yet");
                target = next(&mut fallback);
            }
            Ok(
                Response::BadRequest { message }
                | Response::Unauthorized { message }
                | Response::TransferFailed { message },
            ) => return Err(format!("{target} refused: {message}")),
            Ok(other) => return Err(format!("{target} answered {other:?}")),
            Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => {
                last_problem = format!("{target}: {error}");
                target = next(&mut fallback);
            }
            Err(error) => return Err(format!("{target}: {error}; the transfer may have happened")),
        }
        redirected = false;
        std::thread::sleep(RETRY_PAUSE);
    }
    Err(format!(
        "no leader took the transfer in time ({last_problem})"
    ))
}

/// Pause before retrying while no leader is known, so an election can finish.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// What one try at one node came to.
enum Attempt {
    Done(Result<Appended, AppendError>),
    /// The node named another as leader.
    Redirected {
        leader: String,
        problem: String,
    },
    /// The command was certainly not appended; try again, at another target if
    /// `elsewhere`.
    Retry {
        elsewhere: bool,
        problem: String,
        /// The connection was refused, or the target is not an address: no node is
        /// there, as opposed to one that answered or is slow.
        nobody_there: bool,
    },
}

fn attempt(target: &str, request: &Request, deadline: Instant, options: &ClientOptions) -> Attempt {
    let io_timeout = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(100));
    let connect_timeout = io_timeout.min(Duration::from_secs(2));
    let mut connection = match Connection::connect_with(target, connect_timeout, options) {
        Ok(connection) => connection,
        // Never sent: another node would refuse the same credentials.
        Err(error)
            if matches!(
                error.kind(),
                io::ErrorKind::PermissionDenied | io::ErrorKind::InvalidData
            ) =>
        {
            let message = error.to_string();
            return Attempt::Done(Err(AppendError::Rejected { message }));
        }
        Err(error) => {
            return Attempt::Retry {
                elsewhere: true,
                problem: format!("{target}: {error}"),
                nobody_there: matches!(
                    error.kind(),
                    io::ErrorKind::ConnectionRefused | io::ErrorKind::InvalidInput
                ),
            }
        }
    };
    let _ = connection.socket.set_read_timeout(Some(io_timeout));
    let unknown = |problem: String| Attempt::Done(Err(AppendError::Unknown { problem }));
    if let Err(error) = connection.send(request) {
        // A failed write may still have delivered the line.
        return unknown(format!("{target}: {error}"));
    }
    match connection.recv() {
        Ok(Response::Appended { index, term }) => Attempt::Done(Ok(Appended {
            index,
            term,
            leader: target.to_string(),
        })),
        Ok(Response::NotLeader {
            leader: Some(leader),
        }) if leader != target => Attempt::Redirected {
            problem: format!("{target} is not the leader; redirected to {leader}"),
            leader,
        },
        Ok(Response::NotLeader { leader: Some(_) }) => Attempt::Retry {
            elsewhere: false,
            problem: format!("{target} lost leadership before committing"),
            nobody_there: false,
        },
        Ok(Response::NotLeader { leader: None }) => Attempt::Retry {
            elsewhere: true,
            problem: format!("{target} knows no leader yet"),
            nobody_there: false,
        },
        Ok(Response::Timeout) => unknown(format!("{target} answered timeout")),
        // Parsing yields these as `timeout` and `not_leader`; handled alike.
        Ok(Response::Stopping { accepted: true }) => unknown(format!("{target} is stopping")),
        Ok(Response::Stopping { accepted: false }) => Attempt::Retry {
            elsewhere: true,
            problem: format!("{target} is stopping"),
            nobody_there: false,
        },
        Ok(Response::BadRequest { message } | Response::Unauthorized { message }) => {
            Attempt::Done(Err(AppendError::Rejected { message }))
        }
        Ok(Response::SeqBehind { highest }) => Attempt::Done(Err(AppendError::Rejected {
            message: format!("seq_behind: this client has used seq {highest} already"),
        })),
        Ok(
            response @ (Response::State(_)
            | Response::Read(_)
            | Response::Trimmed { .. }
            | Response::ReadFailed { .. }
            | Response::Authenticated
            | Response::Transferred { .. }
            | Response::TransferFailed { .. }
            | Response::Encoded(_)),
        ) => unknown(format!("{target} answered {response:?}")),
        Err(error) => unknown(format!("{target}: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;

    /// An at-most-once append is measured as the line that goes out: its client id and
    /// seq make it longer than a plain append of the same command.
    #[test]
    fn an_append_once_is_refused_when_its_own_line_is_too_long() {
        let frame = br#"{"op":"append","command":""}"#.len();
        let command = "x".repeat(MAX_LINE_BYTES - frame);
        assert!(
            append_request(&command).is_ok(),
            "the plain append fits exactly"
        );
        let client = ClientId::new("c").unwrap();
        let seq = NonZeroU64::new(1).unwrap();
        // Nothing listens there: a refusal must come before any connection is tried.
        let targets = ["127.0.0.1:1".to_string()];
        let options = ClientOptions::default();
        let outcome = append_once_with(
            &targets,
            &command,
            (&client, seq),
            Duration::from_millis(1),
            &options,
        );
        assert!(
            matches!(outcome, Err(AppendError::Rejected { .. })),
            "{outcome:?}"
        );
    }

    /// A retry that finds nobody after an attempt whose fate is unknown leaves the append
    /// unknown (it may have been appended by the first attempt), not `NoLeader`, which
    /// says it never was.
    #[test]
    fn an_append_once_stays_unknown_when_its_retry_reaches_no_one() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = listener.local_addr().unwrap().to_string();
        // Reads the request, then goes away: the listener before the connection, so the
        // retry that follows the lost answer is refused.
        let node = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut line = String::new();
            std::io::BufReader::new(&stream)
                .read_line(&mut line)
                .unwrap();
            drop(listener);
            drop(stream);
            line
        });
        let client = ClientId::new("c").unwrap();
        let seq = NonZeroU64::new(1).unwrap();
        let outcome = append_once(
            std::slice::from_ref(&target),
            "x",
            &client,
            seq,
            Duration::from_secs(5),
        );
        assert!(
            node.join().unwrap().contains("\"x\""),
            "the request was sent"
        );
        match outcome {
            Err(AppendError::Unknown { problem }) => {
                assert!(problem.contains("no node is reachable"), "{problem}")
            }
            other => panic!("expected Unknown, got {other:?}"),
        }
    }
}
