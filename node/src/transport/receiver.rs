//! The receiving end of a peer connection, after its hello: reads frames, checks every
//! message really comes from the peer that said hello and is addressed to us, and hands
//! the batch to the core thread without waiting (a full queue drops it).

use super::wire::{decode_frame, read_frame, FrameError, Hello};
use crate::logging::RateLimit;
use crate::queue::{QueueSender, SendError};
use crate::runtime::CoreEvent;
use crate::{info, warn};
use replog_core::{Message, NodeId};
use std::io::{BufReader, Cursor, Read, Write};
use std::net::TcpStream;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Events waiting for the core thread beyond which peer messages are dropped (Raft
/// retransmits), so a core that falls behind is not buried under a backlog.
const INBOUND_MAX: usize = 4096;

/// What a peer connection needs from the node.
#[derive(Clone)]
pub struct PeerContext {
    pub hello: std::sync::Arc<Hello>,
    /// The core thread's queue.
    pub inbound: QueueSender<CoreEvent>,
    pub max_frame_bytes: usize,
}

/// Serves a connection whose first line was a peer hello; `rest` holds the bytes already
/// read after that line. Returns when the connection closes.
pub fn serve(mut stream: TcpStream, rest: Vec<u8>, hello_line: &[u8], context: PeerContext) {
    let remote = stream.peer_addr().map_or_else(
        |_| "an unknown address".to_string(),
        |addr| addr.to_string(),
    );
    let peer = match Hello::parse(hello_line).and_then(|hello| hello.check(&context.hello)) {
        Ok(peer) => peer,
        Err(problem) => {
            // A misconfigured peer redials every backoff period: log it now and then.
            static REFUSALS: OnceLock<Mutex<RateLimit>> = OnceLock::new();
            let refusals =
                REFUSALS.get_or_init(|| Mutex::new(RateLimit::new(REFUSAL_LOG_INTERVAL)));
            let allowed = refusals.lock().map_or(Some(0), |mut limit| limit.allow());
            match allowed {
                Some(0) => warn!("refused peer connection from {remote}: {problem}"),
                Some(suppressed) => warn!(
                    "refused peer connection from {remote}: {problem} ({suppressed} more \
                     refusals since the last report)"
                ),
                None => {}
            }
            let answer =
                serde_json::json!({"ok": false, "error": "bad_request", "message": problem});
            let _ = stream.write_all(format!("{answer}\n").as_bytes());
            return;
        }
    };
    info!("peer {peer} connected from {remote}");
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::with_capacity(64 * 1024, Cursor::new(rest).chain(read_half));
    let mut receiver = Receiver {
        peer,
        own_id: NodeId(context.hello.from),
        context,
        dropped: RateLimit::new(Duration::from_secs(5)),
        misaddressed: RateLimit::new(Duration::from_secs(5)),
    };
    let reason = receiver.run(&mut reader);
    info!("peer {peer} disconnected ({reason})");
}

struct Receiver {
    peer: NodeId,
    own_id: NodeId,
    context: PeerContext,
    dropped: RateLimit,
    misaddressed: RateLimit,
}

impl Receiver {
    /// Reads frames until the connection ends; returns why it ended.
    fn run(&mut self, reader: &mut impl Read) -> String {
        let mut payload = Vec::new();
        loop {
            match read_frame(reader, &mut payload, self.context.max_frame_bytes) {
                Ok(true) => {}
                Ok(false) => return "closed".into(),
                Err(FrameError::Io(error)) => return error.to_string(),
                Err(FrameError::TooLarge { length, max }) => {
                    warn!(
                        "peer {} sent a {length}-byte frame (limit {max}); closing",
                        self.peer
                    );
                    return "oversize frame".into();
                }
            }
            match decode_frame(&payload) {
                Ok(messages) => self.deliver(messages),
                Err(error) => warn!("dropped a malformed frame from peer {}: {error}", self.peer),
            }
            if payload.capacity() > (4 << 20) {
                payload = Vec::new();
            }
        }
    }

    fn deliver(&mut self, mut messages: Vec<Message>) {
        let before = messages.len();
        messages.retain(|message| message.from == self.peer && message.to == self.own_id);
        if messages.len() != before {
            if let Some(suppressed) = self.misaddressed.allow() {
                warn!(
                    "dropped {} messages from peer {} that were not from it to us \
                     ({suppressed} warnings suppressed)",
                    before - messages.len(),
                    self.peer
                );
            }
        }
        if messages.is_empty() {
            return;
        }
        let batch = CoreEvent::Peers(messages);
        if let Err(SendError::Full(_)) = self.context.inbound.send_bounded(batch, INBOUND_MAX) {
            if let Some(suppressed) = self.dropped.allow() {
                warn!(
                    "core queue full: dropped messages from peer {} ({suppressed} warnings \
                     suppressed)",
                    self.peer
                );
            }
        }
    }
}
