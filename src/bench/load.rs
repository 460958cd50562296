//! The closed-loop load generator: each client owns one connection and keeps exactly one
//! append outstanding, following `not_leader` redirects like any well-behaved client.
//!
//! All clients run on one thread that polls their connections (mio). The generator shares
//! the machine with the nodes it measures, so it must be cheap: a thread per client cost
//! about 16 us of CPU per append in context switches, as much as a follower node.

use super::latency::Latencies;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use replog_node::client::blocking::{host_of, ClientOptions};
use replog_node::client::protocol::{Consistency, Request, Response};
use replog_node::tls::{Stream, TlsStream};
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// What to run.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// Client addresses of any nodes of the cluster; clients start spread over them.
    pub targets: Vec<String>,
    pub clients: usize,
    /// Length of the measured window.
    pub duration: Duration,
    /// Load before the measured window; its operations are not counted.
    pub warmup: Duration,
    /// Size of each command in bytes.
    pub command_bytes: usize,
    /// This share of operations (in percent) are one-entry reads of the newest entry the
    /// client appended, at `consistency`; the rest are appends.
    pub read_percent: u64,
    pub consistency: Consistency,
    /// The token each new connection shows first, if any.
    pub client: ClientOptions,
}

/// Things that went wrong along the way (none of them stop the run).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Problems {
    pub redirects: u64,
    pub no_leader: u64,
    pub timeouts: u64,
    pub connection_errors: u64,
}

/// What one run measured.
pub struct LoadResult {
    pub latencies: Latencies,
    pub problems: Problems,
    /// Appends acknowledged in the measured window.
    pub committed: u64,
    /// Reads answered in the measured window, and their latencies.
    pub reads: u64,
    pub read_latencies: Latencies,
}

/// Appends acknowledged so far, for a progress line.
#[derive(Clone, Default)]
pub struct Progress(Arc<AtomicU64>);

impl Progress {
    pub fn committed(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// What the load generator tells its caller while it runs.
pub enum Event {
    /// About once a second: time since the start, appends acknowledged in the window so far.
    Progress { elapsed: Duration, committed: u64 },
    /// The measured window starts now (after the warmup).
    WindowStart,
    /// The measured window ends now.
    WindowEnd,
}

/// Runs the load, reporting [`Event`]s to `on_event` as it goes.
pub fn run(config: &LoadConfig, mut on_event: impl FnMut(Event)) -> LoadResult {
    assert!(
        !config.targets.is_empty() && config.clients > 0,
        "checked by the CLI"
    );
    let start = Instant::now();
    let window = (
        start + config.warmup,
        start + config.warmup + config.duration,
    );
    let progress = Progress::default();
    let generator = {
        let config = config.clone();
        let progress = progress.clone();
        thread::Builder::new()
            .name("bench-load".into())
            .spawn(move || Generator::new(&config, window, progress).run())
            .expect("spawn the load generator thread")
    };
    for (edge, event) in [(window.0, Event::WindowStart), (window.1, Event::WindowEnd)] {
        while Instant::now() < edge {
            thread::sleep(
                Duration::from_millis(1000).min(edge.saturating_duration_since(Instant::now())),
            );
            on_event(Event::Progress {
                elapsed: start.elapsed(),
                committed: progress.committed(),
            });
        }
        on_event(event);
    }
    let (latencies, read_latencies, problems) =
        generator.join().expect("the load generator panicked");
    LoadResult {
        committed: latencies.len() as u64,
        latencies,
        reads: read_latencies.len() as u64,
        read_latencies,
        problems,
    }
}

/// How long a client waits before retrying after a problem (no leader, connection lost).
const RETRY_PAUSE: Duration = Duration::from_millis(20);
/// An answer that takes longer than this counts as a lost connection.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

struct Client {
    id: usize,
    target: String,
    next_fallback: usize,
    stream: Option<Stream<TcpStream>>,
    /// When the outstanding request was sent.
    sent_at: Option<Instant>,
    /// Do nothing until then (after a problem).
    retry_at: Option<Instant>,
    sequence: u64,
    /// Whether the outstanding request is a read.
    reading: bool,
    /// The newest index this client appended at: what its reads ask for.
    last_index: u64,
    command: String,
    input: Vec<u8>,
    output: Vec<u8>,
    /// Connected, and nothing sent yet.
    fresh: bool,
}

/// Every client, on one thread.
struct Generator<'a> {
    config: &'a LoadConfig,
    window: (Instant, Instant),
    progress: Progress,
    poll: Poll,
    clients: Vec<Client>,
    latencies: Latencies,
    read_latencies: Latencies,
    problems: Problems,
    scratch: Vec<u8>,
}

impl<'a> Generator<'a> {
    fn new(config: &'a LoadConfig, window: (Instant, Instant), progress: Progress) -> Self {
        let clients = (0..config.clients)
            .map(|id| {
                let first = id % config.targets.len();
                Client {
                    id,
                    target: config.targets[first].clone(),
                    next_fallback: first,
                    stream: None,
                    sent_at: None,
                    retry_at: None,
                    sequence: 0,
                    reading: false,
                    last_index: 1,
                    command: String::new(),
                    input: Vec::new(),
                    output: Vec::new(),
                    fresh: false,
                }
            })
            .collect();
        Generator {
            config,
            window,
            progress,
            poll: Poll::new().expect("create a poll instance"),
            clients,
            latencies: Latencies::default(),
            read_latencies: Latencies::default(),
            problems: Problems::default(),
            scratch: vec![0; 64 * 1024],
        }
    }

    fn run(mut self) -> (Latencies, Latencies, Problems) {
        let mut events = Events::with_capacity(4096);
        let mut next_sweep = Instant::now();
        while Instant::now() < self.window.1 {
            let now = Instant::now();
            if now >= next_sweep {
                for k in 0..self.clients.len() {
                    self.sweep(k, now);
                }
                next_sweep = now + RETRY_PAUSE / 2;
            }
            let timeout = next_sweep
                .min(self.window.1)
                .saturating_duration_since(Instant::now());
            if let Err(error) = self.poll.poll(&mut events, Some(timeout)) {
                assert_eq!(error.kind(), io::ErrorKind::Interrupted, "poll failed");
                continue;
            }
            for event in events.iter() {
                self.readable(event.token().0);
            }
        }
        (self.latencies, self.read_latencies, self.problems)
    }

    /// Starts client `k` if it is idle and may go, and gives up on an answer that is late.
    fn sweep(&mut self, k: usize, now: Instant) {
        let client = &mut self.clients[k];
        if client
            .sent_at
            .is_some_and(|sent| now - sent > ANSWER_TIMEOUT)
        {
            self.problems.connection_errors += 1;
            self.fall_back(k);
            return;
        }
        let client = &mut self.clients[k];
        if client.sent_at.is_none() && client.retry_at.is_none_or(|at| now >= at) {
            client.retry_at = None;
            self.send_next(k);
        }
    }

    /// Sends client `k`'s next command, connecting first if needed.
    fn send_next(&mut self, k: usize) {
        if Instant::now() >= self.window.1 {
            return;
        }
        if self.clients[k].stream.is_none() && !self.connect(k) {
            return;
        }
        let bytes = self.config.command_bytes;
        let client = &mut self.clients[k];
        client.output.clear();
        if let (true, Some(token)) = (client.fresh, &self.config.client.token) {
            // Its answer comes first and is skipped (see `readable`).
            replog_node::client::token::encode_auth(token, &mut client.output);
        }
        client.fresh = false;
        client.reading = is_read(client.id, client.sequence, self.config.read_percent);
        if client.reading {
            let request = Request::Read {
                from: client.last_index,
                limit: 1,
                consistency: self.config.consistency,
            };
            request.encode(&mut client.output);
        } else {
            fill_command(&mut client.command, client.id, client.sequence, bytes);
            let request = Request::Append {
                command: std::mem::take(&mut client.command),
            };
            request.encode(&mut client.output);
            let Request::Append { command } = request else {
                unreachable!()
            };
            client.command = command;
        }
        client.sequence += 1;
        client.sent_at = Some(Instant::now());
        let stream = client.stream.as_mut().expect("connected above");
        // One short line on a fresh or idle connection: the socket buffer always has room.
        match stream.write(&client.output) {
            Ok(written) if written == client.output.len() => {}
            _ => {
                self.problems.connection_errors += 1;
                self.fall_back(k);
            }
        }
    }

    fn connect(&mut self, k: usize) -> bool {
        let client = &mut self.clients[k];
        let connected = std::net::ToSocketAddrs::to_socket_addrs(client.target.as_str())
            .ok()
            .and_then(|mut addrs| addrs.next())
            .and_then(|addr| std::net::TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).ok())
            .and_then(|stream| {
                stream.set_nodelay(true).ok()?;
                stream.set_nonblocking(true).ok()?;
                let stream = TcpStream::from_std(stream);
                match &self.config.client.tls {
                    None => Some(Stream::Plain(stream)),
                    // The handshake runs as the first request goes out and its answer in.
                    Some(config) => {
                        TlsStream::client(stream, config.clone(), host_of(&client.target))
                            .ok()
                            .map(|tls| Stream::Tls(Box::new(tls)))
                    }
                }
            });
        let Some(mut stream) = connected else {
            self.problems.connection_errors += 1;
            self.fall_back(k);
            return false;
        };
        if self
            .poll
            .registry()
            .register(stream.socket_mut(), Token(k), Interest::READABLE)
            .is_err()
        {
            self.problems.connection_errors += 1;
            self.fall_back(k);
            return false;
        }
        let client = &mut self.clients[k];
        client.input.clear();
        client.stream = Some(stream);
        client.fresh = true;
        true
    }

    /// Reads client `k`'s answer, if it is complete, and acts on it.
    fn readable(&mut self, k: usize) {
        loop {
            let Some(stream) = self.clients[k].stream.as_mut() else {
                return;
            };
            // A short TLS read does not mean the socket is empty: read to `WouldBlock`.
            let tls = stream.is_tls();
            match stream.read(&mut self.scratch) {
                Ok(0) => {
                    self.problems.connection_errors += 1;
                    self.fall_back(k);
                    return;
                }
                Ok(count) => {
                    self.clients[k]
                        .input
                        .extend_from_slice(&self.scratch[..count]);
                    if count < self.scratch.len() && !tls {
                        break; // The socket is empty; more data raises a new edge.
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.problems.connection_errors += 1;
                    self.fall_back(k);
                    return;
                }
            }
        }
        let client = &mut self.clients[k];
        let mut answer = None;
        while let Some(end) = client.input.iter().position(|&byte| byte == b'\n') {
            let line = parse_answer(&client.input[..end]);
            client.input.drain(..=end);
            if !matches!(line, Ok(Response::Authenticated)) {
                answer = Some(line);
                break;
            }
        }
        let Some(answer) = answer else {
            return;
        };
        let done_at = Instant::now();
        let sent_at = client.sent_at.take();
        self.answered(k, answer, sent_at, done_at);
    }

    fn answered(
        &mut self,
        k: usize,
        answer: Result<Response, String>,
        sent_at: Option<Instant>,
        done_at: Instant,
    ) {
        let in_window = done_at >= self.window.0 && done_at <= self.window.1;
        match answer {
            Ok(Response::Appended { index, .. }) => {
                self.clients[k].last_index = index;
                if let Some(sent_at) = sent_at {
                    if in_window {
                        self.latencies.record(done_at - sent_at);
                        self.progress.0.fetch_add(1, Ordering::Relaxed);
                    }
                }
                self.send_next(k);
            }
            Ok(Response::Read(_)) if self.clients[k].reading => {
                if let Some(sent_at) = sent_at.filter(|_| in_window) {
                    self.read_latencies.record(done_at - sent_at);
                }
                self.send_next(k);
            }
            Ok(Response::NotLeader {
                leader: Some(leader),
            }) if leader != self.clients[k].target => {
                self.problems.redirects += 1;
                let client = &mut self.clients[k];
                client.target = leader;
                client.stream = None;
                self.send_next(k);
            }
            Ok(Response::NotLeader { .. }) => {
                self.problems.no_leader += 1;
                self.fall_back(k);
            }
            Ok(Response::Timeout) => {
                self.problems.timeouts += 1;
                self.send_next(k);
            }
            Ok(_) | Err(_) => {
                self.problems.connection_errors += 1;
                self.fall_back(k);
            }
        }
    }

    /// Drops client `k`'s connection and moves it to the next configured target after a
    /// short pause.
    fn fall_back(&mut self, k: usize) {
        let targets = &self.config.targets;
        let client = &mut self.clients[k];
        client.stream = None;
        client.sent_at = None;
        client.next_fallback = (client.next_fallback + 1) % targets.len();
        client.target = targets[client.next_fallback].clone();
        client.retry_at = Some(Instant::now() + RETRY_PAUSE);
    }
}

/// Whether operation `sequence` of `client` is a read: a fixed scramble of the two, so
/// that reads are spread evenly and every run draws the same ones.
fn is_read(client: usize, sequence: u64, read_percent: u64) -> bool {
    if read_percent == 0 {
        return false;
    }
    let mixed = (sequence ^ (client as u64).rotate_left(32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> 40) % 100 < read_percent
}

/// Parses an answer line, with a fast path for the common success answer (the generator
/// shares the CPU with the nodes it measures).
fn parse_answer(line: &[u8]) -> Result<Response, String> {
    let fast = (|| {
        let rest = line.strip_prefix(b"{\"ok\":true,\"index\":")?;
        let comma = rest.iter().position(|&byte| byte == b',')?;
        let index = std::str::from_utf8(&rest[..comma]).ok()?.parse().ok()?;
        let rest = rest[comma..].strip_prefix(b",\"term\":")?;
        let term = std::str::from_utf8(rest.strip_suffix(b"}")?)
            .ok()?
            .parse()
            .ok()?;
        Some(Response::Appended { index, term })
    })();
    match fast {
        Some(answer) => Ok(answer),
        None => Response::parse(line),
    }
}

/// Writes a unique command of exactly `bytes` bytes (or the unique prefix, if longer).
fn fill_command(command: &mut String, client: usize, sequence: u64, bytes: usize) {
    use std::fmt::Write as _;
    command.clear();
    let _ = write!(command, "bench-{client}-{sequence}-");
    while command.len() < bytes {
        command.push('x');
    }
}

#[cfg(test)]
mod tests {
    use super::{fill_command, is_read, parse_answer};

    #[test]
    fn reads_take_their_share_of_operations() {
        for percent in [0, 10, 50, 90, 100] {
            let reads = (0..10_000).filter(|&n| is_read(3, n, percent)).count();
            let expected = percent as usize * 100;
            assert!(
                reads.abs_diff(expected) <= 300,
                "{percent} %: {reads} of 10000"
            );
        }
    }
    use replog_node::client::protocol::Response;

    #[test]
    fn answers_parse_on_the_fast_path_and_off_it() {
        for response in [
            Response::Appended { index: 12, term: 3 },
            Response::NotLeader { leader: None },
            Response::Timeout,
        ] {
            let mut line = Vec::new();
            response.encode(&mut line);
            line.pop();
            assert_eq!(parse_answer(&line), Ok(response));
        }
        assert!(parse_answer(b"{\"ok\":true,\"index\":x,\"term\":1}").is_err());
    }

    #[test]
    fn commands_are_unique_and_sized() {
        let mut a = String::new();
        let mut b = String::new();
        fill_command(&mut a, 1, 2, 64);
        fill_command(&mut b, 12, 2, 64);
        assert_eq!((a.len(), b.len()), (64, 64));
        assert_ne!(a, b);
        fill_command(&mut a, 1, 23, 4);
        assert_eq!(a, "bench-1-23-");
    }
}
