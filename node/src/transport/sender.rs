//! One sender thread per peer: it dials the peer, says hello, and writes frames of the
//! messages the core thread queues for it.
//!
//! The queue is bounded and the core thread never waits on it: when a peer is slow or
//! unreachable its queue fills and further messages are dropped, which Raft tolerates
//! (heartbeats and retransmissions repair the gap). While the peer is unreachable the
//! thread redials with exponential backoff and drops what is queued meanwhile: those
//! messages would be stale by the time a connection exists.

use super::wire::{encode_frames, Hello};
use crate::logging::RateLimit;
use crate::queue::{queue, QueueReceiver, QueueSender, SendError};
use crate::{debug, info, warn};
use replog_core::{Message, NodeId};
use std::io::{self, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BACKOFF_MIN: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_millis(500);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// A peer that accepts no bytes for this long (stopped, or its network is gone) is
/// dropped and redialed.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// The core thread's handle on one peer's sender thread.
pub struct PeerSender {
    peer: NodeId,
    queue: QueueSender<Vec<Message>>,
    queue_batches: usize,
    dropped_batches: u64,
    drop_warnings: RateLimit,
}

impl PeerSender {
    /// Starts the sender thread for `peer` at `addr`.
    pub fn spawn(
        peer: NodeId,
        addr: String,
        hello: Arc<Hello>,
        queue_batches: usize,
    ) -> io::Result<PeerSender> {
        let (queue, queued) = queue();
        std::thread::Builder::new()
            .name(format!("peer-sender-{}", peer.0))
            .spawn(move || SenderThread::new(peer, addr, &hello).run(queued))?;
        Ok(PeerSender {
            peer,
            queue,
            queue_batches,
            dropped_batches: 0,
            drop_warnings: RateLimit::new(Duration::from_secs(5)),
        })
    }

    /// Queues a batch without waiting; drops it when the peer's queue is full.
    pub fn send(&mut self, batch: Vec<Message>) {
        match self.queue.send_bounded(batch, self.queue_batches) {
            Ok(()) => {}
            Err(SendError::Full(_)) => {
                self.dropped_batches += 1;
                if let Some(suppressed) = self.drop_warnings.allow() {
                    warn!(
                        "queue to peer {} is full: dropping messages ({} batches so far, {} \
                         warnings suppressed)",
                        self.peer, self.dropped_batches, suppressed
                    );
                }
            }
            Err(SendError::Disconnected(_)) => {
                panic!("the sender thread for peer {} has died", self.peer)
            }
        }
    }
}

struct SenderThread {
    peer: NodeId,
    addr: String,
    hello_line: Vec<u8>,
    connection: Option<Connection>,
    /// A problem has been logged and the link has not been healthy since: further
    /// problems go to the debug level, so a dead or refusing peer does not flood the log.
    troubled: bool,
    backoff: Duration,
    out: Vec<u8>,
}

struct Connection {
    stream: TcpStream,
    since: Instant,
}

/// A connection that lasted this long counts as healthy: the backoff resets.
const HEALTHY_AFTER: Duration = Duration::from_secs(1);

impl SenderThread {
    fn new(peer: NodeId, addr: String, hello: &Hello) -> SenderThread {
        SenderThread {
            peer,
            addr,
            hello_line: hello.encode_line(),
            connection: None,
            troubled: false,
            backoff: BACKOFF_MIN,
            out: Vec::with_capacity(64 * 1024),
        }
    }

    /// Runs until the core thread drops its handle.
    fn run(mut self, queued: QueueReceiver<Vec<Message>>) {
        let mut batches = Vec::new();
        while queued.take(&mut batches, None).is_ok() {
            if self.connection.is_none() && !self.dial() {
                batches.clear();
                if !self.back_off(&queued) {
                    return;
                }
                continue;
            }
            self.out.clear();
            for batch in batches.drain(..) {
                encode_frames(&batch, &mut self.out);
            }
            if !self.write_out() && !self.back_off(&queued) {
                return;
            }
            if self.out.capacity() > (4 << 20) {
                self.out = Vec::with_capacity(64 * 1024);
            }
        }
    }

    fn dial(&mut self) -> bool {
        match self.connect() {
            Ok(stream) => {
                if self.troubled {
                    debug!("connected to peer {} at {}", self.peer, self.addr);
                } else {
                    info!("connected to peer {} at {}", self.peer, self.addr);
                }
                self.connection = Some(Connection {
                    stream,
                    since: Instant::now(),
                });
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

    fn connect(&self) -> io::Result<TcpStream> {
        let mut last_error = io::Error::new(io::ErrorKind::NotFound, "address resolves to nothing");
        for socket_addr in self.addr.to_socket_addrs()? {
            match TcpStream::connect_timeout(&socket_addr, CONNECT_TIMEOUT) {
                Ok(mut stream) => {
                    stream.set_nodelay(true)?;
                    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
                    stream.write_all(&self.hello_line)?;
                    return Ok(stream);
                }
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }

    /// Writes the encoded frames. False when the connection broke; it is then dropped.
    fn write_out(&mut self) -> bool {
        let Some(connection) = self.connection.as_mut() else {
            return true;
        };
        match connection.stream.write_all(&self.out) {
            Ok(()) => {
                if connection.since.elapsed() >= HEALTHY_AFTER {
                    self.troubled = false;
                    self.backoff = BACKOFF_MIN;
                }
                true
            }
            Err(error) => {
                self.connection = None;
                self.report(format!(
                    "lost connection to peer {} at {}: {error}; redialing",
                    self.peer, self.addr
                ));
                false
            }
        }
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

    /// Sleeps the current backoff (dropping what is queued), then doubles it. A link that
    /// keeps breaking right after connecting (a peer refusing our hello, say) thus slows
    /// down like one that cannot connect at all. False if the core has gone.
    fn back_off(&mut self, queued: &QueueReceiver<Vec<Message>>) -> bool {
        let alive = sleep_dropping(queued, self.backoff);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        alive
    }
}

/// Waits `duration`, dropping whatever is queued meanwhile. False if the core has gone.
fn sleep_dropping(queued: &QueueReceiver<Vec<Message>>, duration: Duration) -> bool {
    let deadline = Instant::now() + duration;
    let mut dropped = Vec::new();
    while Instant::now() < deadline {
        if queued.take(&mut dropped, Some(deadline)).is_err() {
            return false;
        }
        dropped.clear();
    }
    true
}
