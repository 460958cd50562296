//! Sending to one peer: the core thread writes frames straight onto the peer's socket,
//! without blocking; a helper thread per peer dials, and writes only what the socket
//! would not take at once.
//!
//! Why the core writes itself: handing every batch to a sender thread cost a thread
//! wake-up per batch per peer (a futex wake, a context switch, and the thread's own sleep),
//! on the leader for each AppendEntries round and on a follower for each response. On a
//! loopback link the socket almost always has room, so the core's non-blocking write
//! completes and nobody else is woken. When it does not (a slow or stalled peer), the
//! rest of the bytes go to the backlog and the helper thread writes them, waiting for the
//! socket with a timeout; meanwhile the core appends to the backlog rather than writing,
//! so frames never interleave.
//!
//! The backlog is bounded and the core never waits on it: when a peer is slow or
//! unreachable, further batches are dropped, which Raft tolerates (heartbeats and
//! retransmissions repair the gap). While the peer is unreachable the helper redials with
//! exponential backoff and jitter, and drops what was queued meanwhile: those messages
//! would be stale by the time a connection exists. A connection counts once the peer has
//! completed the handshake (`handshake::dial`); an address that answers otherwise (not
//! replog, another cluster, another secret) backs off further than one that does not
//! answer, since only a person can fix it.
//!
//! A link whose packets vanish (a cut network) would otherwise look healthy for as long
//! as the socket's buffer takes the small messages Raft sends, and after the cut heals its
//! bytes would wait behind TCP's backed-off retransmission timer. So the listener
//! acknowledges frames (a byte back, see `wire::LINK_ACK`), and the core thread, at its
//! ticks, drops and redials a connection on which it has written and heard no
//! acknowledgement for [`SILENCE_TIMEOUT`]; `TCP_USER_TIMEOUT` and keepalive
//! (`socket::tune_peer_socket`) back that up.
//!
//! With TLS (`peer_tls`) the link is one rustls session, which writes and reads alike
//! change, so the core's writes and acknowledgement reads and the helper's writes take
//! the stream's own lock in turn (never across a wait). A write the session took may
//! leave records inside it when the socket is full; the core then hands the flush to
//! the helper, which waits for room as it does for a backlog.

use super::auth::ClusterSecrets;
use super::handshake;
use super::peer_tls;
use super::socket::tune_peer_socket;
use super::wire::{encode_frames, Hello, ACK_INTERVAL};
use crate::logging::RateLimit;
use crate::tls::Stream;
use mio::{Events, Interest, Poll, Token};
use replog_core::{Message, NodeId};
use rustls::ClientConfig;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

const BACKOFF_MIN: Duration = Duration::from_millis(20);
/// The backoff cap while the peer cannot be reached: kept short, so that a link comes
/// back soon after the network does.
const UNREACHABLE_BACKOFF_MAX: Duration = Duration::from_millis(250);
/// The backoff cap while the address answers but the handshake fails (not a replog node,
/// another cluster or secret): a person must fix that, so retries slow down further.
const HANDSHAKE_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Shorter than Linux's first SYN retransmission (1 s): a dial across a network that
/// drops packets gives up and starts afresh rather than wait on the kernel's timer.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// A connection written to and not acknowledged for this long is taken for dead: long
/// enough for a loaded peer (acknowledgements come from its core thread, at most every
/// `ACK_INTERVAL` plus a tick), short enough to beat the retransmission timer's backoff.
pub const SILENCE_TIMEOUT: Duration = Duration::from_secs(1);
/// A peer that accepts no bytes for this long (stopped, or its network is gone) is
/// dropped and redialed.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// A connection that lasted this long counts as healthy: the backoff resets.
const HEALTHY_AFTER: Duration = Duration::from_secs(1);
/// A backlog buffer that grew beyond this is let go once written.
const BACKLOG_KEEP_BYTES: usize = 4 << 20;

/// A peer connection, non-blocking, plain or TLS, behind its own lock: a TLS session
/// cannot be written by one thread while another reads it. Nobody holds the lock across
/// a wait; the link's lock, when both are taken, comes first.
type SharedStream = Arc<Mutex<Stream<mio::net::TcpStream>>>;

fn lock_stream(stream: &SharedStream) -> MutexGuard<'_, Stream<mio::net::TcpStream>> {
    // A panic while holding the lock leaves a session that the next write or read
    // reports broken, if it is: the connection is then dropped and redialed.
    stream
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What the core thread and the helper thread share, behind one lock that neither holds
/// across a blocking call (the core's write under it never blocks).
struct Link {
    /// The connection, once dialed.
    stream: Option<SharedStream>,
    /// Bytes for the helper thread to write, in order. Without a connection it holds
    /// whole frames only; with one it may begin with the rest of a frame the core wrote
    /// in part, so it is cleared whenever the connection goes.
    backlog: Vec<u8>,
    /// Batches in `backlog`. Invariant: `<= queue_batches` of the `PeerSender`, plus one
    /// partly written batch.
    backlog_batches: usize,
    /// The helper is writing bytes it took from `backlog` (outside the lock): the core
    /// must append, not write, or frames would interleave.
    helper_writing: bool,
    /// The core's last write left TLS records inside the session (the socket was full):
    /// the helper sends them. Invariant: false without a connection.
    unflushed: bool,
    /// The core's write failed and it dropped the connection: why, for the helper to
    /// report and back off.
    lost: Option<io::Error>,
    core_alive: bool,
    helper_asleep: bool,
    /// Dial even with nothing to send, until a first connection is made: so that every
    /// peer hears this node's hello, and learns its name (`identity::Roster`), also one
    /// this node never needs to send to (a follower, to another follower).
    greet: bool,
}

impl Link {
    fn has_work(&self) -> bool {
        !self.backlog.is_empty()
            || self.unflushed
            || self.lost.is_some()
            || !self.core_alive
            || (self.greet && self.stream.is_none())
    }

    fn drop_connection(&mut self) {
        self.stream = None;
        self.unflushed = false;
        self.backlog.clear();
        self.backlog_batches = 0;
    }
}

struct Shared {
    link: Mutex<Link>,
    wake: Condvar,
    /// Connections made to the peer, for metrics.
    connects: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Link> {
        // A panic while holding the lock leaves buffers and flags: still consistent.
        self.link
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Wakes the helper if it sleeps; the caller holds the lock.
    fn wake_helper(&self, link: &mut Link) {
        if link.helper_asleep {
            link.helper_asleep = false;
            self.wake.notify_one();
        }
    }
}

/// The core thread's handle on one peer.
pub struct PeerSender {
    peer: NodeId,
    shared: Arc<Shared>,
    queue_batches: usize,
    /// Frames being encoded; kept to reuse its allocation.
    out: Vec<u8>,
    dropped_batches: u64,
    drop_warnings: RateLimit,
    /// When bytes were first written on the connection after its last acknowledgement.
    unacked_since: Option<Instant>,
    /// When the connection was last read for acknowledgements.
    last_check: Instant,
}

impl PeerSender {
    /// Starts the helper thread for `peer` at `addr`, which dials it (over TLS with
    /// `tls`). At most `queue_batches` batches wait for a slow or absent peer; later ones
    /// are dropped.
    pub fn spawn(
        peer: NodeId,
        addr: String,
        hello: Arc<Hello>,
        secrets: Arc<ClusterSecrets>,
        tls: Option<Arc<ClientConfig>>,
        queue_batches: usize,
    ) -> io::Result<PeerSender> {
        let shared = Arc::new(Shared {
            link: Mutex::new(Link {
                stream: None,
                backlog: Vec::new(),
                backlog_batches: 0,
                helper_writing: false,
                unflushed: false,
                lost: None,
                core_alive: true,
                helper_asleep: false,
                greet: true,
            }),
            wake: Condvar::new(),
            connects: AtomicU64::new(0),
        });
        let helper = Helper::new(peer, addr, hello, secrets, tls, shared.clone())?;
        std::thread::Builder::new()
            .name(format!("peer-sender-{}", peer.0))
            .spawn(move || helper.run())?;
        Ok(PeerSender {
            peer,
            shared,
            queue_batches,
            out: Vec::with_capacity(64 * 1024),
            dropped_batches: 0,
            drop_warnings: RateLimit::new(Duration::from_secs(5)),
            unacked_since: None,
            last_check: Instant::now(),
        })
    }

    /// Connections made to the peer so far, and batches dropped for a full queue.
    pub fn link_counts(&self) -> (u64, u64) {
        let connects = self.shared.connects.load(Ordering::Relaxed);
        (connects, self.dropped_batches)
    }

    /// Reads the peer's acknowledgements (at most every `ACK_INTERVAL`) and drops the
    /// connection when it has been silent too long after a write, or closed by the peer;
    /// the helper then redials. Never blocks.
    pub fn check_link(&mut self, now: Instant) {
        if now.saturating_duration_since(self.last_check) < ACK_INTERVAL {
            return;
        }
        self.last_check = now;
        let shared = self.shared.clone();
        let mut link = shared.lock();
        let Some(stream) = link.stream.clone() else {
            self.unacked_since = None; // Redialing already; the clock starts on a new one.
            return;
        };
        // The helper may be encrypting a long backlog under the stream's lock: the
        // acknowledgements wait for the next check rather than the core for the helper.
        let read = match stream.try_lock() {
            Ok(mut locked) => read_acks(&mut locked),
            Err(TryLockError::Poisoned(poisoned)) => read_acks(&mut poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => return,
        };
        let lost = match read {
            Ok(true) => {
                self.unacked_since = None;
                None
            }
            Ok(false) => self
                .unacked_since
                .filter(|since| now.saturating_duration_since(*since) >= SILENCE_TIMEOUT)
                .map(|_| {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "nothing acknowledged for {} s after a write",
                            SILENCE_TIMEOUT.as_secs()
                        ),
                    )
                }),
            Err(error) => Some(error),
        };
        if let Some(error) = lost {
            self.unacked_since = None;
            link.drop_connection();
            link.lost = Some(error);
            shared.wake_helper(&mut link);
        }
    }

    /// Sends a batch without waiting: writes it now if the socket takes it, else queues
    /// what is left for the helper thread; drops it when the backlog is full.
    pub fn send(&mut self, batch: &[Message]) {
        self.out.clear();
        encode_frames(batch, &mut self.out);
        let shared = self.shared.clone();
        let mut link = shared.lock();
        let direct = match &link.stream {
            Some(stream) if !link.helper_writing && link.backlog.is_empty() => Some(stream.clone()),
            _ => None,
        };
        if link.stream.is_some() && self.unacked_since.is_none() {
            self.unacked_since = Some(Instant::now());
        }
        let Some(stream) = direct else {
            self.queue(&mut link, 0);
            return;
        };
        let mut locked = lock_stream(&stream);
        let written = write_nonblocking(&mut locked, &self.out);
        let unflushed = locked.wants_write();
        drop(locked);
        match written {
            Ok(written) if written == self.out.len() => {
                if unflushed {
                    link.unflushed = true;
                    shared.wake_helper(&mut link);
                }
            }
            Ok(written) => self.queue(&mut link, written),
            Err(error) => {
                link.drop_connection();
                link.lost = Some(error);
                shared.wake_helper(&mut link);
            }
        }
        if self.out.capacity() > BACKLOG_KEEP_BYTES {
            self.out = Vec::with_capacity(64 * 1024);
        }
    }

    /// Hands `out[written..]` to the helper thread. A batch the core began writing is
    /// always queued (its rest must follow); a new one only while the backlog has room.
    fn queue(&mut self, link: &mut Link, written: usize) {
        if written == 0 && link.backlog_batches >= self.queue_batches {
            self.dropped_batches += 1;
            if let Some(suppressed) = self.drop_warnings.allow() {
                warn!(
                    "queue to peer {} is full: dropping messages ({} batches so far, {} \
                     warnings suppressed)",
                    self.peer, self.dropped_batches, suppressed
                );
            }
            return;
        }
        link.backlog.extend_from_slice(&self.out[written..]);
        link.backlog_batches += 1;
        self.shared.wake_helper(link);
    }
}

impl Drop for PeerSender {
    fn drop(&mut self) {
        let mut link = self.shared.lock();
        link.core_alive = false;
        self.shared.wake_helper(&mut link);
    }
}

/// Writes as much of `bytes` as the socket takes now. `Err` when the connection broke.
/// Over TLS, bytes taken may wait inside the session as records (`wants_write`).
fn write_nonblocking(stream: &mut Stream<mio::net::TcpStream>, bytes: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while written < bytes.len() {
        match stream.write(&bytes[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(count) => written += count,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(written)
}

/// Sends the TLS records the session holds, as far as the socket takes them now.
fn flush_nonblocking(stream: &mut Stream<mio::net::TcpStream>) -> io::Result<()> {
    match stream.flush() {
        Err(error) if error.kind() != io::ErrorKind::WouldBlock => Err(error),
        _ => Ok(()),
    }
}

/// Reads what the peer wrote back without blocking: `true` if an acknowledgement came.
/// The peer's end of input, or an error, means the connection is gone. (Over TLS the
/// session's own records, a session ticket, are no acknowledgement: they read as none.)
fn read_acks(stream: &mut Stream<mio::net::TcpStream>) -> io::Result<bool> {
    let mut acks = [0u8; 64];
    let mut acked = false;
    loop {
        match stream.read(&mut acks) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "the peer closed the connection",
                ))
            }
            Ok(_) => acked = true,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(acked),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
}

/// The helper thread: dials, says hello, and writes the backlog.
struct Helper {
    peer: NodeId,
    addr: String,
    hello: Arc<Hello>,
    secrets: Arc<ClusterSecrets>,
    /// Dial over TLS with this (`--tls-cert`).
    tls: Option<Arc<ClientConfig>>,
    shared: Arc<Shared>,
    /// Waits for the socket to take more bytes.
    poll: Poll,
    events: Events,
    /// When the current connection was made.
    connected_at: Option<Instant>,
    /// The kind of the last problem logged at warn level, while the link has not been
    /// healthy since: further problems of that kind go to the debug level, so a dead or
    /// misconfigured peer does not flood the log, but a new kind of problem is reported.
    troubled: Option<Trouble>,
    backoff: Duration,
    /// Spreads the redials of many nodes that lost the same peer at once.
    jitter: Jitter,
    /// Bytes taken from the backlog, being written.
    writing: Vec<u8>,
}

/// Kinds of link problems, for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trouble {
    Unreachable,
    Handshake,
    Lost,
}

/// Why a dial failed.
enum DialError {
    /// No connection (refused, timed out, no route, bad name).
    Unreachable(io::Error),
    /// Connected, but the other end did not complete the handshake.
    Handshake(handshake::DialFailure),
}

/// What the helper does next.
enum Job {
    Exit,
    /// The core lost the connection: report and back off.
    Lost(io::Error),
    Dial,
    /// Write these bytes (swapped out of the backlog, perhaps none) on this connection,
    /// and the TLS records the session holds.
    Write(SharedStream),
}

impl Helper {
    fn new(
        peer: NodeId,
        addr: String,
        hello: Arc<Hello>,
        secrets: Arc<ClusterSecrets>,
        tls: Option<Arc<ClientConfig>>,
        shared: Arc<Shared>,
    ) -> io::Result<Helper> {
        Ok(Helper {
            peer,
            addr,
            hello,
            secrets,
            tls,
            shared,
            poll: Poll::new()?,
            events: Events::with_capacity(4),
            connected_at: None,
            troubled: None,
            backoff: BACKOFF_MIN,
            jitter: Jitter::new(),
            writing: Vec::new(),
        })
    }

    /// Runs until the core thread drops its handle.
    fn run(mut self) {
        loop {
            match self.next_job() {
                Job::Exit => return,
                Job::Lost(error) => self.connection_lost(error),
                Job::Dial => self.dial(),
                Job::Write(stream) => {
                    if let Err(error) = self.write_all(&stream) {
                        let mut link = self.shared.lock();
                        link.drop_connection();
                        link.helper_writing = false;
                        drop(link);
                        self.connection_lost(error);
                    }
                    if self.writing.capacity() > BACKLOG_KEEP_BYTES {
                        self.writing = Vec::new();
                    }
                }
            }
        }
    }

    /// Sleeps until there is something to do, and takes it.
    fn next_job(&mut self) -> Job {
        let shared = self.shared.clone();
        let mut link = shared.lock();
        link.helper_writing = false;
        while !link.has_work() {
            link.helper_asleep = true;
            link = shared
                .wake
                .wait(link)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            link.helper_asleep = false;
        }
        if !link.core_alive {
            return Job::Exit;
        }
        if let Some(error) = link.lost.take() {
            return Job::Lost(error);
        }
        let Some(stream) = link.stream.clone() else {
            return Job::Dial;
        };
        self.writing.clear();
        std::mem::swap(&mut self.writing, &mut link.backlog);
        link.backlog_batches = 0;
        link.unflushed = false;
        link.helper_writing = true;
        Job::Write(stream)
    }

    /// Logs the loss, resets the backoff if the connection had been healthy, backs off.
    fn connection_lost(&mut self, error: io::Error) {
        if self
            .connected_at
            .take()
            .is_some_and(|since| since.elapsed() >= HEALTHY_AFTER)
        {
            self.troubled = None;
            self.backoff = BACKOFF_MIN;
        }
        self.report(
            Trouble::Lost,
            format!(
                "lost connection to peer {} at {}: {error}; redialing",
                self.peer, self.addr
            ),
        );
        self.back_off(UNREACHABLE_BACKOFF_MAX);
    }

    /// Writes `self.writing` on `stream`, and then the TLS records the session holds,
    /// waiting for room at most `WRITE_TIMEOUT` at a time.
    fn write_all(&mut self, stream: &SharedStream) -> io::Result<()> {
        let mut written = 0;
        loop {
            let mut locked = lock_stream(stream);
            written += write_nonblocking(&mut locked, &self.writing[written..])?;
            if written == self.writing.len() {
                flush_nonblocking(&mut locked)?;
                if !locked.wants_write() {
                    return Ok(());
                }
            }
            // Not across the wait: the core reads acknowledgements meanwhile.
            drop(locked);
            self.poll.poll(&mut self.events, Some(WRITE_TIMEOUT))?;
            if self.events.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the peer accepted no bytes for 2 s",
                ));
            }
        }
    }

    /// Connects and installs the connection (the backlog queued meanwhile goes out
    /// next), or reports why not and backs off.
    fn dial(&mut self) {
        match self.connect() {
            Ok(stream) => {
                if self.troubled.is_some() {
                    debug!("connected to peer {} at {}", self.peer, self.addr);
                } else {
                    info!("connected to peer {} at {}", self.peer, self.addr);
                }
                self.connected_at = Some(Instant::now());
                self.shared.connects.fetch_add(1, Ordering::Relaxed);
                let mut link = self.shared.lock();
                link.stream = Some(Arc::new(Mutex::new(stream)));
                link.greet = false;
            }
            Err(DialError::Unreachable(error)) => {
                self.report(
                    Trouble::Unreachable,
                    format!(
                        "cannot reach peer {} at {}: {error}; retrying with backoff",
                        self.peer, self.addr
                    ),
                );
                self.back_off(UNREACHABLE_BACKOFF_MAX);
            }
            Err(DialError::Handshake(failure)) => {
                self.report(
                    Trouble::Handshake,
                    format!(
                        "peer {} at {} {}; retrying with backoff",
                        self.peer, self.addr, failure.problem
                    ),
                );
                // A peer that says nothing (stopped, overloaded) is retried like one that
                // cannot be reached; one that answers wrongly waits for a person.
                self.back_off(if failure.answered {
                    HANDSHAKE_BACKOFF_MAX
                } else {
                    UNREACHABLE_BACKOFF_MAX
                });
            }
        }
    }

    /// Dials, starts TLS if the node has it, and completes the handshake (blocking, with
    /// timeouts), then makes the socket non-blocking and watches it for room to write.
    fn connect(&self) -> Result<Stream<mio::net::TcpStream>, DialError> {
        let mut last_error = io::Error::new(io::ErrorKind::NotFound, "address resolves to nothing");
        let addrs = self
            .addr
            .to_socket_addrs()
            .map_err(DialError::Unreachable)?;
        for socket_addr in addrs {
            let stream = match TcpStream::connect_timeout(&socket_addr, CONNECT_TIMEOUT) {
                Ok(stream) => stream,
                Err(error) => {
                    last_error = error;
                    continue;
                }
            };
            let setup = |stream: &TcpStream| {
                stream.set_nodelay(true)?;
                tune_peer_socket(stream)
            };
            setup(&stream).map_err(DialError::Unreachable)?;
            let mut stream = peer_tls::dial(stream, self.tls.as_ref(), &self.addr)
                .map_err(DialError::Handshake)?;
            handshake::dial(&mut stream, &self.hello, &self.secrets, self.peer)
                .map_err(DialError::Handshake)?;
            let installed = (|| {
                stream.socket().set_nonblocking(true)?;
                let mut stream = stream.map_socket(mio::net::TcpStream::from_std);
                self.poll
                    .registry()
                    .register(stream.socket_mut(), Token(0), Interest::WRITABLE)?;
                Ok(stream)
            })();
            return installed.map_err(DialError::Unreachable);
        }
        Err(DialError::Unreachable(last_error))
    }

    /// Logs a link problem: at warn level if it is the first of its kind since the link
    /// was last healthy, else at debug level.
    fn report(&mut self, trouble: Trouble, problem: String) {
        if self.troubled == Some(trouble) {
            debug!("{problem}");
        } else {
            warn!("{problem}");
            self.troubled = Some(trouble);
        }
    }

    /// Sleeps the current backoff (with jitter), drops what was queued meanwhile, then
    /// doubles the backoff up to `max`. A link that keeps breaking right after connecting
    /// thus slows down like one that cannot connect at all.
    fn back_off(&mut self, max: Duration) {
        self.backoff = self.backoff.min(max);
        std::thread::sleep(self.jitter.spread(self.backoff));
        let mut link = self.shared.lock();
        if link.stream.is_none() {
            link.drop_connection();
        }
        drop(link);
        self.backoff = (self.backoff * 2).min(max);
    }
}

/// A small pseudo-random source for backoff jitter (xorshift), seeded from the operating
/// system: the jitter only has to differ between nodes, not be unpredictable.
struct Jitter(u64);

impl Jitter {
    fn new() -> Jitter {
        let mut seed = [0u8; 8];
        let _ = getrandom::fill(&mut seed);
        Jitter(u64::from_le_bytes(seed) | 1)
    }

    /// `base` times a factor drawn from 3/4 to 5/4.
    fn spread(&mut self, base: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let quarter = base / 4;
        let offset_nanos = self.0 % (2 * quarter.as_nanos() as u64).max(1);
        base - quarter + Duration::from_nanos(offset_nanos)
    }
}
