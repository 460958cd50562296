//! The client front end: one thread serves the node's port and every client connection,
//! with readiness polling (mio; epoll on Linux).
//!
//! Per wake-up it reads whatever each ready connection sent, parses every complete line,
//! hands all the requests to the core thread as one batch (one queue operation, which
//! the core turns into one proposal), and writes each connection's answers with one
//! `write`. A thread per connection, as before, cost two context switches per request and
//! two thread wake-ups per answer; with 64 clients that was about two thirds of the
//! leader's CPU time (perf, 64 clients: 43% in `client-writer`, 25% in the readers).
//!
//! The protocol's rules live here (see README.md, "Client protocol"):
//! - answers go out in request order: each request takes the next sequence number and a
//!   slot in `waiting`; the slot at the front is written as soon as it is filled;
//! - a malformed line is answered `bad_request` in its place, and the connection goes on;
//! - a line over the limit is answered `bad_request` after the answers before it, then
//!   the connection's output is shut down; its input is read and dropped for up to two
//!   seconds (or until the client closes), so closing does not reset the connection
//!   before the client has read the answer;
//! - at most [`MAX_IN_FLIGHT`] requests per connection are unanswered: beyond that the
//!   front end stops reading it and TCP slows the client down;
//! - when the node stops, the front end closes its port and answers new requests itself
//!   (`Response::Stopping`, not carried out); once the core thread has given its last
//!   answers, each connection gets the answers it waits for, its output is shut down, and
//!   it is closed when the client closes or after two seconds, as a refused one is;
//! - a `follow` turns the connection into a stream once the answers before it are out:
//!   the reader thread sends chunks of lines, one at a time, each when the connection's
//!   unsent output is below [`STREAM_REFILL_BYTES`] (see `reader`); every later request
//!   line gets one `bad_request` line in the stream, in place, and is not carried out, and
//!   the front end stops reading the connection while its unsent output exceeds
//!   [`STREAM_INPUT_PAUSE_BYTES`]. A stream that ends (`trimmed`, `read_failed`) closes
//!   the connection as a refused one is closed; so does the client's end of input;
//! - with `--client-token-file`, nothing is carried out for a connection until it has
//!   shown the token (`token::gate`); a wrong or missing one is answered `unauthorized`
//!   and the connection closed as a refused one is;
//! - with `--tls-cert`, a connection's first byte tells TLS from plaintext (`tls`); a
//!   plaintext one gets one `bad_request` and is closed, unless its first line is a
//!   `peer_hello`, which goes to the peer handshake to be refused there, as peers' are;
//!   a TLS handshake that fails (a certificate `--tls-ca` did not sign, an expired one)
//!   is logged with the address, rate-limited per address;
//! - a connection whose first line is a `peer_hello` is a peer: it is handed, with the
//!   bytes read after that line, to the peer handshake (`transport::handshake`), which
//!   passes it on to the core thread once accepted.

use super::answers::{Answer, AnswerSink, Phase, ReplyTo, StreamChunk, StreamId};
use super::protocol::{ParsedLine, Request, Response};
use super::token::{self, ClientToken, Gate};
use crate::logging::PerAddress;
use crate::metrics::requests::Op;
use crate::metrics::{Metrics, RequestCounts};
use crate::queue::QueueSender;
use crate::reader::{ReaderJob, ReaderJobs};
use crate::runtime::{Control, CoreEvent};
use crate::tls::{self, FirstByte, Stream, TlsStream};
use crate::transport::handshake;
use crate::transport::receiver::PeerContext;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};
use tracing::{debug, warn};

/// Requests one connection may have unanswered at once.
pub const MAX_IN_FLIGHT: usize = 4096;

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
/// Bytes asked for per `read`.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// How long a refused connection's input is read and dropped before it is closed; also
/// how long a stopping node waits for its clients to close.
const DRAIN_FOR: Duration = Duration::from_secs(2);
/// How often refused connections are checked for their deadline.
const DRAIN_CHECK: Duration = Duration::from_millis(200);
/// An output buffer that grew beyond this (a big `query`) is let go once written.
const OUTPUT_KEEP_BYTES: usize = 4 << 20;
/// A `follow` stream asks for its next chunk once less than this is left to send.
pub const STREAM_REFILL_BYTES: usize = 512 << 10;
/// A following connection's input is not read while more than this is left to send, so
/// that a client sending requests and reading nothing cannot grow its `bad_request`s.
pub const STREAM_INPUT_PAUSE_BYTES: usize = 1 << 20;

/// A request on its way to the core thread, with where its answer goes.
pub struct ClientRequest {
    pub request: Request,
    pub reply: ReplyTo,
}

/// What client connections need from the node.
#[derive(Clone)]
pub struct ClientContext {
    /// The core thread's queue.
    pub requests: QueueSender<CoreEvent>,
    /// The reader thread's queue, for `follow` streams.
    pub reader: ReaderJobs,
    pub max_line_bytes: usize,
    /// `--metrics-addr`: where the front end publishes its counts.
    pub metrics: Option<Metrics>,
    /// Clients must show this token (`--client-token-file`); `None`: tokens are ignored.
    pub token: Option<Arc<ClientToken>>,
    /// The port speaks TLS (`--tls-cert`); `None`: plaintext.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// An answer waiting for the answers before it.
struct Ready {
    response: Response,
    /// Shut the connection's output down once this is written.
    close: bool,
}

/// A `follow` on a connection.
#[derive(Default)]
struct Follow {
    /// Its place in the order was reached: the reader streams to the connection.
    started: bool,
    /// The reader was asked for a chunk and has not sent it yet.
    wanted: bool,
    /// The stream ended with an error line; the connection is closing.
    ended: bool,
}

struct Connection {
    stream: Stream<TcpStream>,
    /// Its first byte was seen: it speaks TLS, or plaintext.
    sniffed: bool,
    /// Plaintext on a TLS port: only a peer's hello is let through.
    plaintext_on_tls_port: bool,
    /// No line has been read yet: it may still turn out to be a peer.
    first_line: bool,
    /// Bytes read and not yet parsed; `input[..searched]` holds no newline.
    input: Vec<u8>,
    searched: usize,
    /// The sequence number of the next request.
    next_seq: u64,
    /// One slot per unanswered request, from sequence `next_seq - waiting.len()`.
    /// Invariant: `waiting.len() <= MAX_IN_FLIGHT`.
    waiting: VecDeque<Option<Ready>>,
    /// The op of each request in `waiting`, for metrics. Invariant: as long as `waiting`.
    ops: VecDeque<Op>,
    /// Parsing stopped at `MAX_IN_FLIGHT`; resume once answers are written.
    paused: bool,
    output: Vec<u8>,
    /// Bytes of `output` already written.
    output_sent: usize,
    /// The client closed its side.
    eof: bool,
    /// The poll reported the client's end of input. The readiness edge that said so may
    /// also have brought the last request, and no further edge will come: reads go on
    /// until `read` returns 0, past short reads.
    input_ended: bool,
    /// A line was too long: no more requests; input is dropped until this deadline.
    refused_until: Option<Instant>,
    /// The closing answer is in `output`: nothing more is written after it.
    closing: bool,
    /// Listed in `FrontEnd::dirty`.
    dirty: bool,
    /// Set by a `follow` request: every later request gets `bad_request`.
    follow: Option<Follow>,
    /// The first index of the stream, once the `follow` is parsed and until it starts.
    follow_from: Option<u64>,
    /// It showed the client token (see `token`).
    authenticated: bool,
}

impl Connection {
    fn new(stream: TcpStream) -> Connection {
        Connection {
            stream: Stream::Plain(stream),
            sniffed: false,
            plaintext_on_tls_port: false,
            first_line: true,
            input: Vec::new(),
            searched: 0,
            next_seq: 0,
            waiting: VecDeque::new(),
            ops: VecDeque::new(),
            paused: false,
            output: Vec::new(),
            output_sent: 0,
            eof: false,
            input_ended: false,
            refused_until: None,
            closing: false,
            dirty: false,
            follow: None,
            follow_from: None,
            authenticated: false,
        }
    }

    fn first_waiting_seq(&self) -> u64 {
        self.next_seq - self.waiting.len() as u64
    }

    /// Moves the answers at the front of the order into `output`. Returns the first index
    /// of a `follow` stream whose place in the order this reached: the stream starts.
    fn encode_ready(&mut self, counts: &mut RequestCounts) -> Option<u64> {
        let mut starts = None;
        while !self.closing && matches!(self.waiting.front(), Some(Some(_))) {
            let ready = self
                .waiting
                .pop_front()
                .flatten()
                .expect("checked: the front slot is filled");
            let op = self.ops.pop_front().expect("one op per waiting request");
            counts.answered(op, &ready.response);
            match (&ready.response, self.follow.as_mut()) {
                (Response::Encoded(line), Some(follow)) if line.is_empty() && !follow.started => {
                    follow.started = true;
                    follow.wanted = true;
                    starts = self.follow_from.take();
                }
                _ => ready.response.encode(&mut self.output),
            }
            self.closing = ready.close;
        }
        starts
    }

    fn unsent_bytes(&self) -> usize {
        self.output.len() - self.output_sent
    }

    /// Parsing must stop: too many requests unanswered, or a stream's output backed up.
    fn must_pause(&self) -> bool {
        self.waiting.len() >= MAX_IN_FLIGHT
            || (self.follow.is_some() && self.unsent_bytes() > STREAM_INPUT_PAUSE_BYTES)
    }

    /// Writes pending output. `Err` when the client is gone.
    fn write_output(&mut self) -> io::Result<()> {
        while self.output_sent < self.output.len() {
            match self.stream.write(&self.output[self.output_sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => self.output_sent += written,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        match self.stream.flush() {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(error) => return Err(error),
        }
        self.output.clear();
        self.output_sent = 0;
        if self.output.capacity() > OUTPUT_KEEP_BYTES {
            self.output = Vec::new();
        }
        if self.closing {
            let _ = self.stream.shutdown_write();
        }
        Ok(())
    }

    fn output_flushed(&self) -> bool {
        self.output_sent == self.output.len() && !self.stream.wants_write()
    }

    /// Nothing more will be read or written: the connection can be closed.
    fn finished(&self, now: Instant) -> bool {
        if !self.output_flushed() {
            return false;
        }
        match self.refused_until {
            Some(deadline) => self.closing && (self.eof || now >= deadline),
            None => self.eof && self.waiting.is_empty(),
        }
    }
}

/// A slot in the connection table.
struct Slot {
    /// Bumped whenever the slot's connection goes, so late answers for it are dropped.
    generation: u32,
    connection: Option<Connection>,
}

/// What to do with one line.
enum LineOutcome {
    /// Carry on with the next line.
    Next,
    /// Stop parsing: the connection paused, refused, or became a peer.
    Stop,
}

pub struct FrontEnd {
    poll: Poll,
    /// Closed once the node is stopping.
    listener: Option<TcpListener>,
    /// The node's stop as this front end has acted on it.
    phase: Phase,
    /// Once the core thread is done: when the connections still open are let go.
    stop_deadline: Option<Instant>,
    sink: AnswerSink,
    client: ClientContext,
    peer: PeerContext,
    slots: Vec<Slot>,
    free: Vec<usize>,
    /// Connections with new answers or room to write, handled at the end of a wake-up.
    dirty: Vec<usize>,
    /// Connections that refused a too-long line and are still open.
    refused: usize,
    /// Requests read this wake-up, sent to the core thread as one batch.
    requests: Vec<ClientRequest>,
    /// Stream starts, wants and ends of this wake-up, sent to the reader thread.
    reader_jobs: Vec<ReaderJob>,
    answers: Vec<Answer>,
    chunks: Vec<StreamChunk>,
    scratch: Vec<u8>,
    /// Connections and answers, for metrics.
    counts: RequestCounts,
}

impl FrontEnd {
    pub fn new(
        listener: std::net::TcpListener,
        client: ClientContext,
        peer: PeerContext,
    ) -> io::Result<FrontEnd> {
        listener.set_nonblocking(true)?;
        let mut listener = TcpListener::from_std(listener);
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let counts =
            (client.metrics.as_ref()).map_or_else(RequestCounts::default, Metrics::requests);
        Ok(FrontEnd {
            poll,
            listener: Some(listener),
            phase: Phase::Running,
            stop_deadline: None,
            sink: AnswerSink::new(waker),
            client,
            peer,
            slots: Vec::new(),
            free: Vec::new(),
            dirty: Vec::new(),
            refused: 0,
            requests: Vec::new(),
            reader_jobs: Vec::new(),
            answers: Vec::new(),
            chunks: Vec::new(),
            scratch: vec![0; READ_CHUNK_BYTES],
            counts,
        })
    }

    /// Where the core thread sends answers.
    pub fn sink(&self) -> AnswerSink {
        self.sink.clone()
    }

    /// Serves until the node has stopped and its clients have their answers, or the process
    /// ends.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout =
                (self.refused > 0 || self.phase == Phase::CoreDone).then_some(DRAIN_CHECK);
            if let Err(error) = self.poll.poll(&mut events, timeout) {
                if error.kind() != io::ErrorKind::Interrupted {
                    warn!("client poll failed: {error}");
                    std::thread::sleep(Duration::from_millis(50));
                }
                continue;
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    Token(slot) => {
                        if event.is_read_closed() {
                            self.input_ended(slot);
                        }
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.read(slot);
                        }
                        if event.is_writable() {
                            self.mark_dirty(slot);
                        }
                    }
                }
            }
            self.send_requests();
            // Read before the answers are taken: all of the core's answers precede its
            // `CoreDone`.
            let phase = self.sink.phase();
            if phase >= Phase::Stopping && self.phase == Phase::Running {
                self.stop_accepting();
            }
            self.take_answers();
            self.take_chunks();
            if phase == Phase::CoreDone && self.phase != Phase::CoreDone {
                self.core_done();
            }
            self.write_dirty();
            if self.refused > 0 || self.phase == Phase::CoreDone {
                self.close_expired();
            }
            self.send_reader_jobs();
            self.counts.publish(self.slots.len() - self.free.len());
            if self.stopped() {
                return;
            }
        }
    }

    /// The node is stopping: no new connections, and no more requests to the core thread.
    fn stop_accepting(&mut self) {
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.phase = Phase::Stopping;
        // After every request sent so far, so the core thread knows when it has them all.
        let _ = self
            .client
            .requests
            .send(CoreEvent::Control(Control::ClientsStopped));
    }

    /// The core thread has given its last answers. A request still unanswered had reached
    /// it, so its outcome is unknown; every connection is closed once it has its answers.
    fn core_done(&mut self) {
        self.phase = Phase::CoreDone;
        self.stop_deadline = Some(Instant::now() + DRAIN_FOR);
        for slot in 0..self.slots.len() {
            let Some(connection) = self.slots[slot].connection.as_mut() else {
                continue;
            };
            for place in connection
                .waiting
                .iter_mut()
                .filter(|place| place.is_none())
            {
                *place = Some(Ready {
                    response: Response::Stopping { accepted: true },
                    close: false,
                });
            }
            self.mark_dirty(slot);
        }
    }

    /// The node has stopped and every connection is closed, or the time for that is up.
    fn stopped(&self) -> bool {
        self.stop_deadline.is_some_and(|deadline| {
            self.slots.len() == self.free.len() || Instant::now() >= deadline
        })
    }

    fn accept(&mut self) {
        let Some(listener) = self.listener.as_ref() else {
            return;
        };
        loop {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let slot = self.free.pop().unwrap_or_else(|| {
                        self.slots.push(Slot {
                            generation: 0,
                            connection: None,
                        });
                        self.slots.len() - 1
                    });
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    if let Err(error) =
                        self.poll
                            .registry()
                            .register(&mut stream, Token(slot), interest)
                    {
                        warn!("cannot watch a new connection: {error}");
                        self.free.push(slot);
                        continue;
                    }
                    self.slots[slot].connection = Some(Connection::new(stream));
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    // Out of file descriptors, most likely; the next connection retries.
                    warn!("accept failed: {error}");
                    return;
                }
            }
        }
    }

    /// Reads what the connection in `slot` has sent, until the socket is empty, the
    /// connection pauses, or it ends.
    fn read(&mut self, slot: usize) {
        loop {
            let Some(connection) = self.slots[slot].connection.as_mut() else {
                return;
            };
            if connection.eof || connection.paused {
                break;
            }
            if !connection.sniffed {
                if !self.sniff(slot) {
                    return;
                }
                continue;
            }
            match connection.stream.read(&mut self.scratch) {
                Ok(0) => {
                    connection.eof = true;
                    if connection.refused_until.is_none() && !connection.input.is_empty() {
                        // The final bytes before the end count as a line.
                        connection.input.push(b'\n');
                        self.parse(slot);
                    }
                    break;
                }
                Ok(count) => {
                    // A short read emptied the socket; new data raises a new readiness
                    // edge, and so does an end of input that was not reported yet.
                    // Stopping there saves the `read` that would only say `WouldBlock`:
                    // one system call per request at one request per wake-up.
                    let drained = count < self.scratch.len()
                        && !connection.input_ended
                        && !connection.stream.is_tls();
                    if connection.refused_until.is_none() {
                        connection.input.extend_from_slice(&self.scratch[..count]);
                        self.parse(slot);
                    } // Otherwise dropped: the connection is closing.
                    if drained {
                        break;
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if connection.stream.is_handshaking() => {
                    let remote = connection.stream.socket().peer_addr().ok();
                    log_tls_refusal(remote, &format!("its TLS handshake failed: {error}"));
                    self.remove(slot);
                    return;
                }
                Err(error) => {
                    debug!("client connection read failed: {error}");
                    self.remove(slot);
                    return;
                }
            }
        }
        self.settle(slot);
    }

    /// Handles every complete line in the connection's input.
    fn parse(&mut self, slot: usize) {
        let generation = self.slots[slot].generation;
        let Some(connection) = self.slots[slot].connection.as_mut() else {
            return;
        };
        if connection.refused_until.is_some() {
            return;
        }
        let input = std::mem::take(&mut connection.input);
        let mut searched = connection.searched;
        let mut start = 0;
        let mut stopped = false;
        while let Some(offset) = input[start + searched..]
            .iter()
            .position(|&byte| byte == b'\n')
        {
            let end = start + searched + offset;
            searched = 0;
            let line = &input[start..end];
            start = end + 1;
            if let LineOutcome::Stop = self.line(slot, generation, line, &input[start..]) {
                stopped = true;
                break;
            }
        }
        let max_line_bytes = self.client.max_line_bytes;
        let Some(connection) = self.slots[slot].connection.as_mut() else {
            return; // Handed over to the core thread as a peer.
        };
        if connection.refused_until.is_some() {
            return; // Its input is dropped from now on.
        }
        let partial = input.len() - start;
        if !stopped && partial > max_line_bytes {
            refuse(connection, max_line_bytes);
            self.refused += 1;
            self.mark_dirty(slot);
            return;
        }
        connection.searched = if stopped { 0 } else { partial };
        connection.input = input;
        connection.input.drain(..start);
    }

    /// Handles one line (without its newline); `rest` is what was read after it.
    fn line(&mut self, slot: usize, generation: u32, line: &[u8], rest: &[u8]) -> LineOutcome {
        let max_line_bytes = self.client.max_line_bytes;
        let connection = self.slots[slot].connection.as_mut().expect("parsing it");
        let first_line = std::mem::replace(&mut connection.first_line, false);
        if line.len() > max_line_bytes {
            refuse(connection, max_line_bytes);
            self.refused += 1;
            self.mark_dirty(slot);
            return LineOutcome::Stop;
        }
        let (parsed, token) = Request::parse_with_token(line);
        let op = Op::of(&parsed);
        if first_line && !matches!(parsed, ParsedLine::PeerHello) {
            self.counts.connection_opened();
        }
        if connection.plaintext_on_tls_port
            && !(first_line && matches!(parsed, ParsedLine::PeerHello))
        {
            let message = tls::PLAINTEXT_REFUSED.to_string();
            close_with(connection, Response::BadRequest { message });
            self.refused += 1;
            self.mark_dirty(slot);
            return LineOutcome::Stop;
        }
        let required = self.client.token.as_deref();
        let gate = token::gate(
            required,
            &mut connection.authenticated,
            &parsed,
            token.as_deref(),
        );
        if let Gate::Refuse(message) = gate {
            debug!("client connection refused: {message}");
            close_with(connection, Response::Unauthorized { message });
            self.refused += 1;
            self.mark_dirty(slot);
            return LineOutcome::Stop;
        }
        let answer_now = match parsed {
            ParsedLine::Blank => return LineOutcome::Next,
            ParsedLine::Auth => Some(Response::Authenticated),
            ParsedLine::Request(_) if self.phase != Phase::Running => {
                Some(Response::Stopping { accepted: false })
            }
            ParsedLine::Request(_) if connection.follow.is_some() => Some(Response::BadRequest {
                message: "this connection follows the log: requests after follow are not \
                          carried out"
                    .into(),
            }),
            ParsedLine::Request(Request::Follow { from }) => {
                connection.follow = Some(Follow::default());
                connection.follow_from = Some(from);
                // The stream's place in the order: it starts once the answers before it
                // are out (see `encode_ready`).
                Some(Response::Encoded(Vec::new()))
            }
            ParsedLine::Request(request) => {
                let seq = connection.next_seq;
                connection.next_seq += 1;
                connection.waiting.push_back(None);
                connection.ops.push_back(op);
                let reply = ReplyTo {
                    connection: slot,
                    generation,
                    seq,
                };
                self.requests.push(ClientRequest { request, reply });
                None
            }
            ParsedLine::PeerHello if first_line => {
                self.hand_to_core(slot, line, rest);
                return LineOutcome::Stop;
            }
            ParsedLine::PeerHello => Some(Response::BadRequest {
                message: "peer_hello is only valid as a connection's first line".into(),
            }),
            ParsedLine::Bad(message) => Some(Response::BadRequest { message }),
        };
        let connection = self.slots[slot].connection.as_mut().expect("parsing it");
        if let Some(response) = answer_now {
            connection.next_seq += 1;
            connection.waiting.push_back(Some(Ready {
                response,
                close: false,
            }));
            connection.ops.push_back(op);
            self.mark_dirty(slot);
        }
        let connection = self.slots[slot].connection.as_mut().expect("parsing it");
        if connection.must_pause() {
            connection.paused = true;
            return LineOutcome::Stop;
        }
        LineOutcome::Next
    }

    /// Looks at the first byte of the connection in `slot`: a TLS handshake is served
    /// with TLS on a TLS port and closed on a plaintext one; plaintext on a TLS port gets
    /// its refusal after its first line. False when there is nothing to read yet, or the
    /// connection is gone.
    fn sniff(&mut self, slot: usize) -> bool {
        let Some(mut connection) = self.slots[slot].connection.take() else {
            return false;
        };
        let remote = connection.stream.socket().peer_addr().ok();
        let first = tls::first_byte(connection.stream.socket());
        let config = self.client.tls.clone();
        connection.sniffed = !matches!(first, Ok(FirstByte::NotYet));
        connection.stream = match (first, config, connection.stream) {
            (Ok(FirstByte::Tls), Some(config), Stream::Plain(socket)) => {
                match TlsStream::server(socket, config) {
                    Ok(tls) => Stream::Tls(Box::new(tls)),
                    Err(error) => {
                        log_tls_refusal(remote, &format!("cannot start TLS: {error}"));
                        return self.drop_taken(slot);
                    }
                }
            }
            (Ok(FirstByte::Tls), None, _) => {
                let problem = "it speaks TLS to a plaintext port (this node runs without \
                               --tls-cert)";
                log_tls_refusal(remote, problem);
                return self.drop_taken(slot);
            }
            (Ok(FirstByte::Plain), Some(_), stream) => {
                debug!("plaintext connection from {remote:?} to a TLS port");
                connection.plaintext_on_tls_port = true;
                stream
            }
            (Err(error), _, _) => {
                debug!("client connection read failed: {error}");
                return self.drop_taken(slot);
            }
            (_, _, stream) => stream,
        };
        let sniffed = connection.sniffed;
        self.slots[slot].connection = Some(connection);
        sniffed
    }

    /// Lets go of a connection taken out of `slot` for a moment.
    fn drop_taken(&mut self, slot: usize) -> bool {
        let entry = &mut self.slots[slot];
        entry.generation = entry.generation.wrapping_add(1);
        self.free.push(slot);
        false
    }

    /// Hands a peer's connection, with the bytes read after its hello, to the peer
    /// handshake, which never blocks this thread.
    fn hand_to_core(&mut self, slot: usize, hello: &[u8], rest: &[u8]) {
        let Some(mut connection) = self.take_connection(slot) else {
            return;
        };
        let _ = self
            .poll
            .registry()
            .deregister(connection.stream.socket_mut());
        // The handshake decides whether this transport may carry a peer (`peer_tls`).
        handshake::accept(connection.stream, hello, rest, &self.peer);
    }

    fn send_requests(&mut self) {
        if self.requests.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.requests);
        // Fails only when the core thread has stopped: the node is going down.
        let _ = self.client.requests.send(CoreEvent::Clients(batch));
    }

    fn send_reader_jobs(&mut self) {
        for job in self.reader_jobs.drain(..) {
            // Fails only when the reader thread has stopped: the node is going down.
            let _ = self.client.reader.send(job);
        }
    }

    /// Appends the reader's stream chunks to their connections' output.
    fn take_chunks(&mut self) {
        self.sink.take_chunks(&mut self.chunks);
        let mut chunks = std::mem::take(&mut self.chunks);
        for StreamChunk { stream, lines, end } in chunks.drain(..) {
            let Some(entry) = self.slots.get_mut(stream.connection) else {
                continue;
            };
            if entry.generation != stream.generation {
                continue; // That connection is gone.
            }
            let Some(connection) = entry.connection.as_mut() else {
                continue;
            };
            let Some(follow) = connection.follow.as_mut().filter(|f| f.started) else {
                continue;
            };
            if connection.closing {
                continue;
            }
            follow.wanted = false;
            connection.output.extend_from_slice(&lines);
            if end {
                follow.ended = true;
                connection.closing = true;
                connection.refused_until = Some(Instant::now() + DRAIN_FOR);
                connection.input = Vec::new();
                connection.searched = 0;
                connection.paused = false;
                self.refused += 1;
            }
            self.mark_dirty(stream.connection);
        }
        self.chunks = chunks;
    }

    /// Files the core thread's answers under their connections.
    fn take_answers(&mut self) {
        self.sink.take(&mut self.answers);
        let mut answers = std::mem::take(&mut self.answers);
        for Answer { to, response } in answers.drain(..) {
            let Some(entry) = self.slots.get_mut(to.connection) else {
                continue;
            };
            if entry.generation != to.generation {
                continue; // That connection is gone.
            }
            let Some(connection) = entry.connection.as_mut() else {
                continue;
            };
            let Some(offset) = to.seq.checked_sub(connection.first_waiting_seq()) else {
                continue;
            };
            if let Some(place @ None) = connection.waiting.get_mut(offset as usize) {
                *place = Some(Ready {
                    response,
                    close: false,
                });
                self.mark_dirty(to.connection);
            }
        }
        self.answers = answers;
    }

    fn input_ended(&mut self, slot: usize) {
        if let Some(connection) = self.slots[slot].connection.as_mut() {
            connection.input_ended = true;
        }
    }

    fn mark_dirty(&mut self, slot: usize) {
        if let Some(connection) = self.slots[slot].connection.as_mut() {
            if !connection.dirty {
                connection.dirty = true;
                self.dirty.push(slot);
            }
        }
    }

    /// Encodes and writes the answers that are next in each dirty connection's order.
    fn write_dirty(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        for &slot in &dirty {
            let Some(connection) = self.slots[slot].connection.as_mut() else {
                continue;
            };
            connection.dirty = false;
            let stream = StreamId {
                connection: slot,
                generation: self.slots[slot].generation,
            };
            let connection = self.slots[slot].connection.as_mut().expect("just seen");
            if let Some(from) = connection.encode_ready(&mut self.counts) {
                let from = replog_core::Index(from);
                self.reader_jobs.push(ReaderJob::Follow { stream, from });
            }
            if let Err(error) = connection.write_output() {
                debug!("client connection write failed: {error}");
                self.remove(slot);
                continue;
            }
            let refill =
                connection.unsent_bytes() < STREAM_REFILL_BYTES && self.phase != Phase::CoreDone;
            if let Some(follow) = connection.follow.as_mut() {
                if follow.started && !follow.wanted && !follow.ended && refill {
                    follow.wanted = true;
                    self.reader_jobs.push(ReaderJob::Want(stream));
                }
            }
            if connection.paused && !connection.must_pause() {
                connection.paused = false;
                self.parse(slot);
                self.read(slot);
            } else {
                self.settle(slot);
            }
        }
        let mut dirty = dirty;
        dirty.clear();
        if self.dirty.is_empty() {
            self.dirty = dirty; // Keep the allocation.
        }
    }

    /// Closes refused connections whose time is up.
    fn close_expired(&mut self) {
        for slot in 0..self.slots.len() {
            if self.slots[slot].connection.is_some() {
                self.settle(slot);
            }
        }
    }

    /// Closes the connection in `slot` if it is done; once the node has stopped, starts
    /// closing it when it has its last answer.
    fn settle(&mut self, slot: usize) {
        if let (Some(deadline), Some(connection)) =
            (self.stop_deadline, self.slots[slot].connection.as_mut())
        {
            let answered = connection.waiting.is_empty() && connection.output_flushed();
            if answered && connection.refused_until.is_none() {
                // The client reads its answers, then sees the end; its close ends it here.
                let _ = connection.stream.shutdown_write();
                connection.closing = true;
                connection.refused_until = Some(deadline);
                connection.input = Vec::new();
                self.refused += 1;
            }
        }
        let done = self.slots[slot]
            .connection
            .as_ref()
            .is_some_and(|connection| connection.finished(Instant::now()));
        if done {
            self.remove(slot);
        }
    }

    fn remove(&mut self, slot: usize) {
        drop(self.take_connection(slot));
    }

    fn take_connection(&mut self, slot: usize) -> Option<Connection> {
        let entry = &mut self.slots[slot];
        let connection = entry.connection.take()?;
        if connection
            .follow
            .as_ref()
            .is_some_and(|f| f.started && !f.ended)
        {
            self.reader_jobs.push(ReaderJob::Closed(StreamId {
                connection: slot,
                generation: entry.generation,
            }));
        }
        entry.generation = entry.generation.wrapping_add(1);
        self.free.push(slot);
        if connection.refused_until.is_some() {
            self.refused -= 1;
        }
        Some(connection)
    }
}

/// Logs a connection closed for its TLS, at most once per interval per address: a
/// misconfigured peer retries every few seconds.
fn log_tls_refusal(remote: Option<std::net::SocketAddr>, problem: &str) {
    static LIMITS: LazyLock<PerAddress> =
        LazyLock::new(|| PerAddress::new(Duration::from_secs(10)));
    let shown = remote.map_or("an unknown address".to_string(), |addr| addr.to_string());
    match LIMITS.allow(remote.map(|addr| addr.ip())) {
        Some(0) => warn!("closed a connection from {shown}: {problem}"),
        Some(suppressed) => warn!(
            "closed a connection from {shown}: {problem} ({suppressed} more from that \
             address since the last report)"
        ),
        None => {}
    }
}

/// Answers a too-long line and starts closing the connection.
fn refuse(connection: &mut Connection, max_line_bytes: usize) {
    let message =
        format!("request line longer than {max_line_bytes} bytes; closing the connection");
    close_with(connection, Response::BadRequest { message });
}

/// Answers `response` after the answers before it and starts closing the connection.
fn close_with(connection: &mut Connection, response: Response) {
    connection.next_seq += 1;
    connection.waiting.push_back(Some(Ready {
        response,
        close: true,
    }));
    connection.ops.push_back(Op::INVALID);
    connection.refused_until = Some(Instant::now() + DRAIN_FOR);
    connection.input = Vec::new();
    connection.searched = 0;
    connection.paused = false;
}
