//! The receiving end of peer connections, read by the core thread itself.
//!
//! The client front end tells a peer's connection by its hello line; once the handshake
//! (`handshake::accept`) has accepted it, the connection goes to the core thread, which
//! adds it to its [`PeerInbox`]. The core thread sleeps in the inbox's poll, which watches
//! every peer connection and the core's event queue (through a waker): a peer's frame
//! wakes the core directly. A reader thread per connection, as before, cost one more thread wake-up per
//! frame: on the leader two per AppendEntries round (one per follower's answer), on a
//! follower one per AppendEntries.
//!
//! Every message must come from the peer that said hello and be addressed to us; others
//! are dropped with a warning. A malformed frame is dropped; an oversize one closes the
//! connection (the peer redials). Frames are acknowledged with a byte back, at most
//! every `ACK_INTERVAL` ([`PeerInbox::send_acks`], at the core's ticks), which is how the
//! sender tells a link that delivers from a dead one.
//!
//! Over TLS, a socket's readiness does not tell everything: rustls may already hold
//! records, or plaintext, read from the socket (during the handshake, or a read that
//! filled the caller's buffer), and an edge-triggered poll will not report them again.
//! So a TLS connection is read until `WouldBlock` every time, and once as soon as it
//! arrives; and the records an acknowledgement left inside the session are flushed at
//! the next ticks.

use super::auth::ClusterSecrets;
use super::wire::{decode_frame, Hello, ACK_INTERVAL, LINK_ACK};
use crate::logging::RateLimit;
use crate::queue::QueueSender;
use crate::runtime::CoreEvent;
use crate::tls::Stream;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use replog_core::{Message, NodeId};
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{info, warn};
/// The token of the waker that the core's event queue uses.
const WAKER: Token = Token(usize::MAX);
/// Bytes asked for per `read`.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// An input buffer that grew beyond this (a big catch-up frame) is let go once empty.
const INPUT_KEEP_BYTES: usize = 4 << 20;

/// What the front end needs to hand peer connections over.
#[derive(Clone)]
pub struct PeerContext {
    pub hello: Arc<Hello>,
    /// Checks each hello's claim, and learns peers' names.
    pub roster: Arc<crate::identity::Roster>,
    /// Empty when peers are not authenticated.
    pub secrets: Arc<ClusterSecrets>,
    /// The core thread's queue.
    pub core: QueueSender<CoreEvent>,
    /// The port speaks TLS: a peer must come over mutual TLS (`peer_tls`).
    pub tls_required: bool,
}

/// A peer connection whose hello was accepted, on its way to the core thread.
pub struct PeerConnection {
    pub peer: NodeId,
    pub stream: Stream<TcpStream>,
    /// Bytes already read after the hello line.
    pub rest: Vec<u8>,
    pub remote: String,
}

struct Inbound {
    peer: NodeId,
    stream: Stream<TcpStream>,
    remote: String,
    /// Bytes read and not yet taken as frames; starts at a frame's length prefix.
    input: Vec<u8>,
    misaddressed: RateLimit,
    /// Frames arrived since the last acknowledgement.
    ack_owed: bool,
    last_ack: Option<Instant>,
}

/// Every peer connection of this node, and the poll the core thread sleeps in.
pub struct PeerInbox {
    poll: Poll,
    events: Events,
    own_id: NodeId,
    max_frame_bytes: usize,
    /// Indexed by token.
    connections: Vec<Option<Inbound>>,
    scratch: Vec<u8>,
    /// Slots with events in the current poll, and whether the event reported the end of
    /// the peer's input; kept to reuse its allocation.
    ready: Vec<(usize, bool)>,
}

impl PeerInbox {
    /// Returns the inbox and the waker for the core's event queue.
    pub fn new(own_id: NodeId, max_frame_bytes: usize) -> io::Result<(PeerInbox, Waker)> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let inbox = PeerInbox {
            poll,
            events: Events::with_capacity(64),
            own_id,
            max_frame_bytes,
            connections: Vec::new(),
            scratch: vec![0; READ_CHUNK_BYTES],
            ready: Vec::new(),
        };
        Ok((inbox, waker))
    }

    /// Starts reading a connection; the messages in what was already read go to `out`.
    pub fn add(&mut self, connection: PeerConnection, out: &mut Vec<Message>) {
        let PeerConnection {
            peer,
            mut stream,
            rest,
            remote,
        } = connection;
        let slot = match self.connections.iter().position(Option::is_none) {
            Some(slot) => slot,
            None => {
                self.connections.push(None);
                self.connections.len() - 1
            }
        };
        let registered =
            self.poll
                .registry()
                .register(stream.socket_mut(), Token(slot), Interest::READABLE);
        if let Err(error) = registered {
            warn!("cannot watch the connection of peer {peer}: {error}");
            return;
        }
        info!("peer {peer} connected from {remote}");
        self.connections[slot] = Some(Inbound {
            peer,
            stream,
            remote,
            input: rest,
            misaddressed: RateLimit::new(Duration::from_secs(5)),
            ack_owed: false,
            last_ack: None,
        });
        // The bytes in hand are taken now, and so is what the TLS session holds, which no
        // readiness event would report.
        if self.take_frames(slot, out) {
            self.read(slot, false, out);
        }
    }

    /// Waits up to `timeout` (`None`: no limit) for a peer's bytes or the waker, and
    /// appends every complete message read to `out`.
    pub fn poll(&mut self, timeout: Option<Duration>, out: &mut Vec<Message>) {
        if let Err(error) = self.poll.poll(&mut self.events, timeout) {
            if error.kind() != io::ErrorKind::Interrupted {
                warn!("peer poll failed: {error}");
            }
            return;
        }
        let mut ready = std::mem::take(&mut self.ready);
        ready.clear();
        ready.extend(
            self.events
                .iter()
                .filter(|event| event.token() != WAKER)
                .map(|event| (event.token().0, event.is_read_closed())),
        );
        for &(slot, input_ended) in &ready {
            self.read(slot, input_ended, out);
        }
        self.ready = ready;
    }

    /// Reads the connection in `slot` until the socket is empty (readiness is
    /// edge-triggered), taking every complete frame. With `input_ended` (the event that
    /// woke us reported the end of the peer's input, and no later one will), reads on
    /// until the end, so that the connection is closed.
    fn read(&mut self, slot: usize, input_ended: bool, out: &mut Vec<Message>) {
        loop {
            let Some(Some(inbound)) = self.connections.get_mut(slot) else {
                return;
            };
            match inbound.stream.read(&mut self.scratch) {
                Ok(0) => return self.close(slot, "closed"),
                Ok(count) => {
                    let tls = inbound.stream.is_tls();
                    inbound.ack_owed = true;
                    inbound.input.extend_from_slice(&self.scratch[..count]);
                    if !self.take_frames(slot, out) {
                        return;
                    }
                    if count < self.scratch.len() && !input_ended && !tls {
                        return; // A short read emptied the socket.
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return self.close(slot, &error.to_string()),
            }
        }
    }

    /// Decodes every complete frame in the connection's input. False if it was closed.
    fn take_frames(&mut self, slot: usize, out: &mut Vec<Message>) -> bool {
        let own_id = self.own_id;
        let max_frame_bytes = self.max_frame_bytes;
        let Some(Some(inbound)) = self.connections.get_mut(slot) else {
            return false;
        };
        let mut start = 0;
        let mut oversize = None;
        while let Some(prefix) = inbound.input.get(start..start + 4) {
            let length = u32::from_be_bytes(prefix.try_into().expect("4 bytes")) as usize;
            if length > max_frame_bytes {
                oversize = Some(length);
                break;
            }
            let Some(payload) = inbound.input.get(start + 4..start + 4 + length) else {
                break;
            };
            match decode_frame(payload) {
                Ok(messages) => inbound.deliver(messages, own_id, out),
                Err(error) => warn!(
                    "dropped a malformed frame from peer {}: {error}",
                    inbound.peer
                ),
            }
            start += 4 + length;
        }
        if let Some(length) = oversize {
            warn!(
                "peer {} sent a {length}-byte frame (limit {max_frame_bytes}); closing",
                inbound.peer
            );
            self.close(slot, "oversize frame");
            return false;
        }
        inbound.input.drain(..start);
        if inbound.input.is_empty() && inbound.input.capacity() > INPUT_KEEP_BYTES {
            inbound.input = Vec::new();
        }
        true
    }

    /// Acknowledges the connections that received frames, each at most every
    /// `ACK_INTERVAL`. A byte the socket will not take now is skipped: the sender then
    /// holds bytes we have not read, and our reading will be acknowledged later.
    pub fn send_acks(&mut self, now: Instant) {
        for inbound in self.connections.iter_mut().flatten() {
            if inbound.stream.wants_write() {
                // An earlier acknowledgement's record, or TLS's own (a key update).
                let _ = inbound.stream.flush();
            }
            let due = inbound
                .last_ack
                .is_none_or(|last| now.saturating_duration_since(last) >= ACK_INTERVAL);
            if inbound.ack_owed && due {
                inbound.ack_owed = false;
                inbound.last_ack = Some(now);
                // A failure shows in the next read, which closes the connection.
                let _ = inbound.stream.write(&[LINK_ACK]);
            }
        }
    }

    fn close(&mut self, slot: usize, reason: &str) {
        if let Some(mut inbound) = self.connections[slot].take() {
            let _ = self.poll.registry().deregister(inbound.stream.socket_mut());
            info!(
                "peer {} disconnected ({reason}; it connected from {})",
                inbound.peer, inbound.remote
            );
        }
    }
}

impl Inbound {
    /// Appends the messages that really come from this peer and are addressed to us.
    fn deliver(&mut self, messages: Vec<Message>, own_id: NodeId, out: &mut Vec<Message>) {
        let before = out.len();
        let total = messages.len();
        out.extend(
            messages
                .into_iter()
                .filter(|message| message.from == self.peer && message.to == own_id),
        );
        let refused = total - (out.len() - before);
        if refused > 0 {
            if let Some(suppressed) = self.misaddressed.allow() {
                warn!(
                    "dropped {refused} messages from peer {} that were not from it to us \
                     ({suppressed} warnings suppressed)",
                    self.peer
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::TlsStream;
    use crate::transport::wire::encode_frames;
    use replog_core::{Index, MessageBody, Term};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use rustls::{ClientConfig, RootCertStore, ServerConfig};

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    /// Both ends of a TLS session over loopback, handshake done, blocking.
    fn tls_pair() -> (Stream<std::net::TcpStream>, Stream<std::net::TcpStream>) {
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let cert = CertificateDer::from(certified.cert.der().to_vec());
        let key = PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der());
        let server_config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], PrivateKeyDer::Pkcs8(key))
            .unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(cert).unwrap();
        let client_config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = std::thread::spawn(move || {
            let socket = std::net::TcpStream::connect(addr).unwrap();
            let mut tls = TlsStream::client(socket, Arc::new(client_config), "127.0.0.1").unwrap();
            tls.handshake().unwrap();
            Stream::Tls(Box::new(tls))
        });
        let (socket, _) = listener.accept().unwrap();
        let mut server = TlsStream::server(socket, Arc::new(server_config)).unwrap();
        server.handshake().unwrap();
        (client.join().unwrap(), Stream::Tls(Box::new(server)))
    }

    fn heartbeat(from: u64, to: u64, term: u64) -> Message {
        Message {
            from: NodeId(from),
            to: NodeId(to),
            term: Term(term),
            body: MessageBody::AppendEntries {
                prev_log_index: Index(0),
                prev_log_term: Term(0),
                entries: Vec::new(),
                leader_commit: Index(0),
            },
        }
    }

    /// The rule the edge-triggered poll depends on: plaintext that rustls decrypted before
    /// the connection reached the inbox (the socket itself being empty) is delivered when
    /// it arrives, since no readiness event will ever report it.
    #[test]
    fn frames_held_inside_the_tls_session_are_delivered_when_the_connection_arrives() {
        let (mut dialer, mut listener) = tls_pair();
        let sent: Vec<Message> = (1..=3).map(|term| heartbeat(2, 1, term)).collect();
        let mut frames = Vec::new();
        encode_frames(&sent, &mut frames);
        assert!(
            frames.len() < 16 << 10,
            "one TLS record: decrypted all at once"
        );
        dialer.write_all(&frames).unwrap();
        dialer.flush().unwrap();
        // Reading a few bytes takes the whole record off the socket; rustls keeps the rest.
        let mut first = [0u8; 6];
        listener.read_exact(&mut first).unwrap();
        listener.socket().set_nonblocking(true).unwrap();
        let connection = PeerConnection {
            peer: NodeId(2),
            stream: listener.map_socket(TcpStream::from_std),
            rest: first.to_vec(),
            remote: "test".into(),
        };
        let (mut inbox, _waker) = PeerInbox::new(NodeId(1), 1 << 20).unwrap();
        let mut delivered = Vec::new();
        inbox.add(connection, &mut delivered);
        assert_eq!(delivered, sent);
    }
}
