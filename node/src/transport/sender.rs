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
//! exponential backoff and drops what was queued meanwhile: those messages would be stale
//! by the time a connection exists.

use super::wire::{encode_frames, Hello};
use crate::logging::RateLimit;
use crate::{debug, info, warn};
use mio::{Events, Interest, Poll, Token};
use replog_core::{Message, NodeId};
use std::io::{self, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

const BACKOFF_MIN: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_millis(500);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// A peer that accepts no bytes for this long (stopped, or its network is gone) is
/// dropped and redialed.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// A connection that lasted this long counts as healthy: the backoff resets.
const HEALTHY_AFTER: Duration = Duration::from_secs(1);
/// A backlog buffer that grew beyond this is let go once written.
const BACKLOG_KEEP_BYTES: usize = 4 << 20;

/// What the core thread and the helper thread share, behind one lock that neither holds
/// across a blocking call (the core's write under it never blocks).
struct Link {
    /// The connection, non-blocking, once dialed.
    stream: Option<Arc<mio::net::TcpStream>>,
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
    /// The core's write failed and it dropped the connection: why, for the helper to
    /// report and back off.
    lost: Option<io::Error>,
    core_alive: bool,
    helper_asleep: bool,
}

impl Link {
    fn has_work(&self) -> bool {
        !self.backlog.is_empty() || self.lost.is_some() || !self.core_alive
    }

    fn drop_connection(&mut self) {
        self.stream = None;
        self.backlog.clear();
        self.backlog_batches = 0;
    }
}

struct Shared {
    link: Mutex<Link>,
    wake: Condvar,
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
}

impl PeerSender {
    /// Starts the helper thread for `peer` at `addr`, which dials it. At most
    /// `queue_batches` batches wait for a slow or absent peer; later ones are dropped.
    pub fn spawn(
        peer: NodeId,
        addr: String,
        hello: Arc<Hello>,
        queue_batches: usize,
    ) -> io::Result<PeerSender> {
        let shared = Arc::new(Shared {
            link: Mutex::new(Link {
                stream: None,
                backlog: Vec::new(),
                backlog_batches: 0,
                helper_writing: false,
                lost: None,
                core_alive: true,
                helper_asleep: false,
            }),
            wake: Condvar::new(),
        });
        let helper = Helper::new(peer, addr, &hello, shared.clone())?;
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
        })
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
        let Some(stream) = direct else {
            self.queue(&mut link, 0);
            return;
        };
        match write_nonblocking(&stream, &self.out) {
            Ok(written) if written == self.out.len() => {}
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
fn write_nonblocking(mut stream: &mio::net::TcpStream, bytes: &[u8]) -> io::Result<usize> {
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

/// The helper thread: dials, says hello, and writes the backlog.
struct Helper {
    peer: NodeId,
    addr: String,
    hello_line: Vec<u8>,
    shared: Arc<Shared>,
    /// Waits for the socket to take more bytes.
    poll: Poll,
    events: Events,
    /// When the current connection was made.
    connected_at: Option<Instant>,
    /// A problem has been logged and the link has not been healthy since: further
    /// problems go to the debug level, so a dead or refusing peer does not flood the log.
    troubled: bool,
    backoff: Duration,
    /// Bytes taken from the backlog, being written.
    writing: Vec<u8>,
}

/// What the helper does next.
enum Job {
    Exit,
    /// The core lost the connection: report and back off.
    Lost(io::Error),
    Dial,
    /// Write these bytes (swapped out of the backlog) on this connection.
    Write(Arc<mio::net::TcpStream>),
}

impl Helper {
    fn new(peer: NodeId, addr: String, hello: &Hello, shared: Arc<Shared>) -> io::Result<Helper> {
        Ok(Helper {
            peer,
            addr,
            hello_line: hello.encode_line(),
            shared,
            poll: Poll::new()?,
            events: Events::with_capacity(4),
            connected_at: None,
            troubled: false,
            backoff: BACKOFF_MIN,
            writing: Vec::new(),
        })
    }

    /// Runs until the core thread drops its handle.
    fn run(mut self) {
        loop {
            match self.next_job() {
                Job::Exit => return,
                Job::Lost(error) => self.connection_lost(error),
                Job::Dial => {
                    if !self.dial() {
                        self.back_off();
                    }
                }
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
            self.troubled = false;
            self.backoff = BACKOFF_MIN;
        }
        self.report(format!(
            "lost connection to peer {} at {}: {error}; redialing",
            self.peer, self.addr
        ));
        self.back_off();
    }

    /// Writes `self.writing` on `stream`, waiting for room at most `WRITE_TIMEOUT` at a
    /// time.
    fn write_all(&mut self, stream: &mio::net::TcpStream) -> io::Result<()> {
        let mut written = 0;
        while written < self.writing.len() {
            written += write_nonblocking(stream, &self.writing[written..])?;
            if written < self.writing.len() {
                self.poll.poll(&mut self.events, Some(WRITE_TIMEOUT))?;
                if self.events.is_empty() {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the peer accepted no bytes for 2 s",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Connects and installs the connection; the backlog queued meanwhile goes out next.
    fn dial(&mut self) -> bool {
        match self.connect() {
            Ok(stream) => {
                if self.troubled {
                    debug!("connected to peer {} at {}", self.peer, self.addr);
                } else {
                    info!("connected to peer {} at {}", self.peer, self.addr);
                }
                self.connected_at = Some(Instant::now());
                let mut link = self.shared.lock();
                link.stream = Some(Arc::new(stream));
                true
            }
            Err(error) => {
                self.report(format!(
                    "cannot reach peer {} at {}: {error}; retrying with backoff",
                    self.peer, self.addr
                ));
                false
            }
        }
    }

    /// Dials, says hello (blocking, with a timeout), then makes the socket non-blocking
    /// and watches it for room to write.
    fn connect(&self) -> io::Result<mio::net::TcpStream> {
        let mut last_error = io::Error::new(io::ErrorKind::NotFound, "address resolves to nothing");
        for socket_addr in self.addr.to_socket_addrs()? {
            match TcpStream::connect_timeout(&socket_addr, CONNECT_TIMEOUT) {
                Ok(mut stream) => {
                    stream.set_nodelay(true)?;
                    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
                    stream.write_all(&self.hello_line)?;
                    stream.set_nonblocking(true)?;
                    let mut stream = mio::net::TcpStream::from_std(stream);
                    self.poll
                        .registry()
                        .register(&mut stream, Token(0), Interest::WRITABLE)?;
                    return Ok(stream);
                }
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }

    /// Logs a link problem: the first one at warn level, repeats at debug level.
    fn report(&mut self, problem: String) {
        if self.troubled {
            debug!("{problem}");
        } else {
            warn!("{problem}");
            self.troubled = true;
        }
    }

    /// Sleeps the current backoff, drops what was queued meanwhile, then doubles the
    /// backoff. A link that keeps breaking right after connecting (a peer refusing our
    /// hello, say) thus slows down like one that cannot connect at all.
    fn back_off(&mut self) {
        std::thread::sleep(self.backoff);
        let mut link = self.shared.lock();
        if link.stream.is_none() {
            link.drop_connection();
        }
        drop(link);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }
}
