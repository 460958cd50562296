//! The peer handshake at both ends: the lines are described in `wire`, the proofs in
//! `auth`.
//!
//! The dialer ([`dial`]) runs on its peer's sender thread and may block, up to
//! [`HELLO_TIMEOUT`] in all: whatever does not answer like a replog node within that
//! (an HTTP server, a stranger, a stalled process) is a failed connection, reported with
//! the first bytes it sent. The listener ([`accept`]) is called by the client front end,
//! which must never block: without a cluster secret it answers at once; with one, the
//! challenge and the wait for the dialer's proof run on a short-lived thread of their own
//! (at most [`MAX_PENDING_HANDSHAKES`] at once). Every refusal is answered with a
//! `bad_request` line saying why and logged with the remote address, rate-limited per
//! address, since a misconfigured peer redials every backoff period.
//!
//! On a node with TLS both ends speak through the link's TLS session (`peer_tls`), and
//! a hello that did not come over mutual TLS is refused before it is read.

use super::auth::{self, ClusterSecrets, Role};
use super::peer_tls;
use super::receiver::{PeerConnection, PeerContext};
use super::socket::tune_peer_socket;
use super::wire::{HandshakeLine, Hello};
use crate::client::Response;
use crate::logging::PerAddress;
use crate::runtime::CoreEvent;
use crate::tls::Stream;
use replog_core::NodeId;
use std::io::{self, Read, Write};
use std::net::{IpAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::LazyLock;
use std::time::{Duration, Instant};
use tracing::{debug, warn};

/// How long the whole handshake may take, at either end.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(2);
/// Handshakes with a cluster secret waiting for the dialer's proof; more are refused.
const MAX_PENDING_HANDSHAKES: usize = 32;
const MAX_LINE_BYTES: usize = 64 * 1024;
/// Bytes of an unexpected answer shown in the log.
const SHOWN_BYTES: usize = 96;
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

static PENDING: AtomicUsize = AtomicUsize::new(0);

/// Why a dialled address did not complete the handshake.
pub struct DialFailure {
    /// Worded to follow "peer N at ADDR".
    pub problem: String,
    /// It sent something: a refusal, or bytes that are not replog's peer protocol. A
    /// person must fix that; silence or a closed connection may pass by itself.
    pub answered: bool,
}

/// Says hello on a fresh connection to `peer` and completes the handshake.
pub fn dial(
    stream: &mut Stream<TcpStream>,
    hello: &Hello,
    secrets: &ClusterSecrets,
    peer: NodeId,
) -> Result<(), DialFailure> {
    let mut reader = LineReader::new(Vec::new());
    dial_with(stream, hello, secrets, peer, &mut reader).map_err(|problem| DialFailure {
        problem,
        answered: reader.seen_bytes > 0,
    })
}

fn dial_with(
    stream: &mut Stream<TcpStream>,
    hello: &Hello,
    secrets: &ClusterSecrets,
    peer: NodeId,
    reader: &mut LineReader,
) -> Result<(), String> {
    let mut hello = hello.clone();
    if secrets.is_enabled() {
        hello.nonce =
            Some(auth::new_nonce().map_err(|error| format!("cannot draw a nonce: {error}"))?);
    }
    let line = hello.encode_line();
    let hello_line = &line[..line.len() - 1];
    let fail = |problem: String| format!("did not complete the peer handshake: it {problem}");
    let send_failed = |error: io::Error| format!("could not be sent the handshake: {error}");
    stream
        .socket()
        .set_write_timeout(Some(HELLO_TIMEOUT))
        .map_err(send_failed)?;
    stream.write_all(&line).map_err(send_failed)?;
    let reply = reader.line(stream).map_err(fail)?;
    let (nonce, proof) = match reader.parse_reply(&reply)? {
        HandshakeLine::PeerAccepted { .. } if secrets.is_enabled() => {
            return Err(
                "accepted us without proving the cluster secret (does it run without \
                 --cluster-secret-file?); not sending to it"
                    .into(),
            )
        }
        HandshakeLine::PeerAccepted { from } => return check_answered_as(from, peer),
        HandshakeLine::PeerChallenge { .. } if !secrets.is_enabled() => {
            return Err("asks for proof of a cluster secret; start this node with \
                 --cluster-secret-file"
                .into())
        }
        HandshakeLine::PeerChallenge { nonce, proof } => (nonce, proof),
        HandshakeLine::PeerProof { .. } => {
            return Err(fail(format!(
                "sent {} out of turn",
                shown(&reply, reply.len())
            )))
        }
    };
    let nonce = auth::parse_nonce(&nonce).ok_or_else(|| fail("sent a malformed nonce".into()))?;
    if !secrets.verify(&proof, Role::Listener, hello_line, &nonce, peer) {
        // Said, so that the listener can log why no proof comes.
        let mut refusal = Vec::new();
        Response::BadRequest {
            message: "your proof of the cluster secret is wrong".into(),
        }
        .encode(&mut refusal);
        let _ = stream.write_all(&refusal);
        return Err(
            "proved another cluster secret than ours; check --cluster-secret-file on \
             both nodes"
                .into(),
        );
    }
    let proof = secrets.prove(Role::Dialer, hello_line, &nonce, peer);
    let answer = HandshakeLine::PeerProof { proof }.encode_line();
    stream.write_all(&answer).map_err(send_failed)?;
    let reply = reader.line(stream).map_err(fail)?;
    match reader.parse_reply(&reply)? {
        HandshakeLine::PeerAccepted { from } => check_answered_as(from, peer),
        _ => Err(fail(format!(
            "sent {} instead of accepting",
            shown(&reply, reply.len())
        ))),
    }
}

fn check_answered_as(from: u64, peer: NodeId) -> Result<(), String> {
    if from == peer.0 {
        Ok(())
    } else {
        Err(format!("answered as node {from}; check -p on both nodes"))
    }
}

/// The listener's side, given the hello line the front end read and the bytes after it.
/// Never blocks; the connection goes to the core thread once it is accepted.
pub fn accept(
    stream: Stream<mio::net::TcpStream>,
    hello_line: &[u8],
    rest: &[u8],
    context: &PeerContext,
) {
    let stream = stream.map_socket(TcpStream::from);
    let remote = Remote::of(stream.socket());
    if let Err(problem) = peer_tls::check_accepted(&stream, context.tls_required) {
        return refuse(stream, &remote, &problem);
    }
    let checked = Hello::parse(hello_line).and_then(|hello| {
        context
            .roster
            .check(hello.claim())
            .map(|peer| (hello, peer))
    });
    let (hello, peer) = match checked {
        Ok(checked) => checked,
        Err(problem) => return refuse(stream, &remote, &problem),
    };
    if !context.secrets.is_enabled() {
        return admit(stream, (&hello, peer), rest.to_vec(), remote, context);
    }
    let Some(nonce) = hello.nonce.as_deref() else {
        let problem = "no proof of the cluster secret: this node requires one (start the \
                       peer with --cluster-secret-file)";
        return refuse(stream, &remote, problem);
    };
    if auth::parse_nonce(nonce).is_none() {
        return refuse(stream, &remote, "malformed nonce in the peer hello");
    }
    if PENDING.fetch_add(1, Ordering::SeqCst) >= MAX_PENDING_HANDSHAKES {
        PENDING.fetch_sub(1, Ordering::SeqCst);
        return refuse(stream, &remote, "too many peer handshakes in progress");
    }
    let hello_line = hello_line.to_vec();
    let rest = rest.to_vec();
    let context = context.clone();
    let spawned = std::thread::Builder::new()
        .name("peer-handshake".into())
        .spawn(move || {
            let mut stream = stream;
            match challenge(&mut stream, &hello_line, rest, &context) {
                Ok(rest) => admit(stream, (&hello, peer), rest, remote, &context),
                Err(problem) => refuse(stream, &remote, &problem),
            }
            PENDING.fetch_sub(1, Ordering::SeqCst);
        });
    if let Err(error) = spawned {
        PENDING.fetch_sub(1, Ordering::SeqCst);
        warn!("cannot start a peer handshake thread: {error}");
    }
}

/// Sends our nonce and proof, and checks the dialer's proof; returns the bytes read after
/// its proof line.
fn challenge(
    stream: &mut Stream<TcpStream>,
    hello_line: &[u8],
    rest: Vec<u8>,
    context: &PeerContext,
) -> Result<Vec<u8>, String> {
    let io_failed = |error: io::Error| format!("handshake failed: {error}");
    let socket = stream.socket();
    socket.set_nonblocking(false).map_err(io_failed)?;
    socket
        .set_write_timeout(Some(HELLO_TIMEOUT))
        .map_err(io_failed)?;
    let own = NodeId(context.hello.from);
    let nonce_hex = auth::new_nonce().map_err(io_failed)?;
    let nonce = auth::parse_nonce(&nonce_hex).expect("a nonce we drew");
    let proof = context
        .secrets
        .prove(Role::Listener, hello_line, &nonce, own);
    let line = HandshakeLine::PeerChallenge {
        nonce: nonce_hex,
        proof,
    }
    .encode_line();
    stream.write_all(&line).map_err(io_failed)?;
    let mut reader = LineReader::new(rest);
    let line = reader
        .line(stream)
        .map_err(|problem| format!("no proof of the cluster secret: it {problem}"))?;
    let Ok(HandshakeLine::PeerProof { proof }) = serde_json::from_slice(&line) else {
        if let Ok(Response::BadRequest { .. }) = Response::parse(&line) {
            return Err("another cluster secret: it found our proof wrong; check \
                        --cluster-secret-file on both nodes"
                .into());
        }
        return Err(format!(
            "sent {} instead of its proof of the cluster secret",
            shown(&line, line.len())
        ));
    };
    if !context
        .secrets
        .verify(&proof, Role::Dialer, hello_line, &nonce, own)
    {
        return Err(
            "wrong proof of the cluster secret (it has another secret; check \
                    --cluster-secret-file on both nodes)"
                .into(),
        );
    }
    Ok(reader.buffer)
}

/// Admits the hello's claim (learning the peer's name, now that it is authenticated),
/// says `peer_accepted` and hands the connection to the core thread.
fn admit(
    mut stream: Stream<TcpStream>,
    (hello, peer): (&Hello, NodeId),
    rest: Vec<u8>,
    remote: Remote,
    context: &PeerContext,
) {
    // Checked again: another connection may have taken the name since the first look.
    if let Err(problem) = context.roster.admit(hello.claim()) {
        return refuse(stream, &remote, &problem);
    }
    let line = HandshakeLine::PeerAccepted {
        from: context.hello.from,
    }
    .encode_line();
    // A fresh socket's buffer always has room for one line, blocking or not. (TLS
    // records it did not take would go out at the core's next tick, `send_acks`.)
    if let Err(error) = stream.write_all(&line) {
        debug!("peer {peer} from {}: cannot accept: {error}", remote.text);
        return;
    }
    if let Err(error) = tune_peer_socket(stream.socket()) {
        debug!(
            "peer {peer} from {}: cannot set socket options: {error}",
            remote.text
        );
    }
    if let Err(error) = stream.socket().set_nonblocking(true) {
        warn!("peer {peer} from {}: {error}", remote.text);
        return;
    }
    let connection = PeerConnection {
        peer,
        stream: stream.map_socket(mio::net::TcpStream::from_std),
        rest,
        remote: remote.text,
    };
    // Fails only when the core thread has stopped: the node is going down.
    let _ = context.core.send(CoreEvent::PeerConnected(connection));
}

/// Answers a refused hello with a `bad_request` line and logs why.
fn refuse(mut stream: Stream<TcpStream>, remote: &Remote, problem: &str) {
    log_refusal(remote, problem);
    let mut answer = Vec::new();
    Response::BadRequest {
        message: problem.to_string(),
    }
    .encode(&mut answer);
    // A fresh socket's buffer takes one line; if not, the peer learns nothing.
    let _ = stream.write(&answer);
    let _ = stream.flush();
}

/// Where a connection comes from: for the log, and to rate-limit refusals per address.
struct Remote {
    ip: Option<IpAddr>,
    text: String,
}

impl Remote {
    fn of(stream: &TcpStream) -> Remote {
        match stream.peer_addr() {
            Ok(addr) => Remote {
                ip: Some(addr.ip()),
                text: addr.to_string(),
            },
            Err(_) => Remote {
                ip: None,
                text: "an unknown address".into(),
            },
        }
    }
}

fn log_refusal(remote: &Remote, problem: &str) {
    static LIMITS: LazyLock<PerAddress> = LazyLock::new(|| PerAddress::new(REFUSAL_LOG_INTERVAL));
    match LIMITS.allow(remote.ip) {
        Some(0) => warn!("refused peer connection from {}: {problem}", remote.text),
        Some(suppressed) => warn!(
            "refused peer connection from {}: {problem} ({suppressed} more refusals from that \
             address since the last report)",
            remote.text
        ),
        None => {}
    }
}

/// Reads handshake lines from a blocking socket, all before one deadline.
struct LineReader {
    /// Bytes read and not yet taken as a line.
    buffer: Vec<u8>,
    /// Everything read, for the log when it is not what we expected (the first bytes).
    seen: Vec<u8>,
    seen_bytes: usize,
    deadline: Instant,
}

impl LineReader {
    fn new(buffer: Vec<u8>) -> LineReader {
        LineReader {
            seen: buffer.iter().copied().take(SHOWN_BYTES).collect(),
            seen_bytes: buffer.len(),
            buffer,
            deadline: Instant::now() + HELLO_TIMEOUT,
        }
    }

    /// The next line, without its newline; the error is worded to follow "it".
    fn line(&mut self, stream: &mut Stream<TcpStream>) -> Result<Vec<u8>, String> {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = self.buffer.iter().position(|&byte| byte == b'\n') {
                let line = self.buffer[..end].to_vec();
                self.buffer.drain(..=end);
                return Ok(line);
            }
            if self.buffer.len() > MAX_LINE_BYTES {
                return Err(format!("sent {} without an end of line", self.shown()));
            }
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.silence());
            }
            stream
                .socket()
                .set_read_timeout(Some(left))
                .map_err(|error| error.to_string())?;
            match stream.read(&mut chunk) {
                Ok(0) if self.seen_bytes == 0 => {
                    return Err("closed the connection without answering".into())
                }
                Ok(0) => return Err(format!("sent {} and closed the connection", self.shown())),
                Ok(count) => {
                    let room = SHOWN_BYTES.saturating_sub(self.seen.len());
                    self.seen.extend_from_slice(&chunk[..count.min(room)]);
                    self.seen_bytes += count;
                    self.buffer.extend_from_slice(&chunk[..count]);
                }
                Err(error)
                    if matches!(
                        error.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(self.silence())
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if self.seen_bytes == 0 => {
                    return Err(format!("failed before answering: {error}"))
                }
                Err(error) => return Err(format!("sent {}, then failed: {error}", self.shown())),
            }
        }
    }

    /// A reply line as a handshake line; anything else is an error that says what came.
    fn parse_reply(&self, line: &[u8]) -> Result<HandshakeLine, String> {
        if let Ok(parsed) = serde_json::from_slice::<HandshakeLine>(line) {
            return Ok(parsed);
        }
        match Response::parse(line) {
            Ok(Response::BadRequest { message }) => Err(format!("refused our hello: {message}")),
            _ => Err(format!(
                "did not complete the peer handshake: it sent {}, which is not replog's peer \
                 protocol",
                self.shown()
            )),
        }
    }

    fn silence(&self) -> String {
        let within = HELLO_TIMEOUT.as_secs();
        if self.seen_bytes == 0 {
            format!("sent nothing within {within} s")
        } else {
            format!("sent {} and nothing more within {within} s", self.shown())
        }
    }

    fn shown(&self) -> String {
        shown(&self.seen, self.seen_bytes)
    }
}

/// The first bytes of `total` received, escaped and quoted.
fn shown(first: &[u8], total: usize) -> String {
    let first = &first[..first.len().min(SHOWN_BYTES)];
    let mut text = format!("\"{}\"", first.escape_ascii());
    if total > first.len() {
        text += &format!(" ({total} bytes in all)");
    }
    text
}
