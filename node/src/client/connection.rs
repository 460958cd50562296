//! The server side of one client connection: a reader thread that parses request lines and
//! hands them to the core thread, and a writer thread that sends the answers back in
//! request order.
//!
//! Answers can be ready out of order (a `status` is answered at once, an `append` only
//! once it commits), so each request carries a sequence number and the writer holds early
//! answers until the ones before them are written. The reader never runs more than
//! [`MAX_IN_FLIGHT`] requests ahead of the writer, so a client that pipelines without
//! reading is slowed by TCP rather than growing the node's memory.

use super::lines::{read_line_limited, LineRead};
use super::protocol::{ParsedLine, Request, Response};
use crate::debug;
use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use std::collections::BTreeMap;
use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// Requests one connection may have unanswered at once.
pub const MAX_IN_FLIGHT: usize = 4096;

/// A request on its way to the core thread, with where its answer goes.
pub struct ClientRequest {
    pub request: Request,
    pub reply: ReplyTo,
}

/// Where one request's answer goes: its connection's writer, under its sequence number.
pub struct ReplyTo {
    replies: Sender<Reply>,
    seq: u64,
}

impl ReplyTo {
    /// Sends the answer. A client that has gone away is not an error.
    pub fn send(self, response: Response) {
        let _ = self.replies.send(Reply {
            seq: self.seq,
            response,
            close: false,
        });
    }
}

pub(crate) struct Reply {
    pub(crate) seq: u64,
    pub(crate) response: Response,
    /// Close the connection once this answer is written.
    close: bool,
}

/// A reply slot whose answers arrive on the returned channel (for unit tests).
#[cfg(test)]
pub(crate) fn test_reply_to(seq: u64) -> (ReplyTo, Receiver<Reply>) {
    let (replies, received) = unbounded();
    (ReplyTo { replies, seq }, received)
}

/// What a client connection needs from the node.
#[derive(Clone)]
pub struct ClientContext {
    pub requests: Sender<ClientRequest>,
    pub max_line_bytes: usize,
}

/// Serves a client connection whose first line has already been read into `first`.
/// Returns when the client disconnects or breaks the protocol beyond repair.
pub fn serve(
    stream: TcpStream,
    mut reader: BufReader<TcpStream>,
    first: (LineRead, Vec<u8>),
    context: ClientContext,
) {
    let Ok(writer_stream) = stream.try_clone() else {
        return;
    };
    let (replies, replies_rx) = unbounded();
    let (tokens, tokens_rx) = bounded(MAX_IN_FLIGHT);
    let writer = std::thread::Builder::new()
        .name("client-writer".into())
        .spawn(move || write_replies(writer_stream, replies_rx, tokens_rx));
    if writer.is_err() {
        return;
    }
    let mut connection = Connection {
        replies,
        tokens,
        context,
        next_seq: 0,
    };
    let (mut read, mut line) = first;
    loop {
        match read {
            LineRead::Eof => return,
            LineRead::TooLong => {
                connection.refuse_too_long();
                drain_input(&mut reader);
                return;
            }
            LineRead::Line => {
                if !connection.handle_line(&line) {
                    return;
                }
            }
        }
        read = match read_line_limited(&mut reader, &mut line, connection.context.max_line_bytes) {
            Ok(read) => read,
            Err(error) => {
                debug!("client connection read failed: {error}");
                return;
            }
        };
    }
}

struct Connection {
    replies: Sender<Reply>,
    /// One token per unanswered request; full when the client is [`MAX_IN_FLIGHT`] ahead.
    tokens: Sender<()>,
    context: ClientContext,
    next_seq: u64,
}

impl Connection {
    /// Handles one line. Returns false when the connection should end.
    fn handle_line(&mut self, line: &[u8]) -> bool {
        let request = match Request::parse(line) {
            ParsedLine::Blank => return true,
            ParsedLine::Request(request) => request,
            ParsedLine::Bad(message) => return self.answer_now(Response::BadRequest { message }),
            ParsedLine::PeerHello => {
                let message = "peer_hello is only valid as a connection's first line".into();
                return self.answer_now(Response::BadRequest { message });
            }
        };
        let Some(reply) = self.next_reply_to() else {
            return false;
        };
        // Blocks only while the core thread's queue is full: backpressure, not I/O.
        self.context
            .requests
            .send(ClientRequest { request, reply })
            .is_ok()
    }

    /// Claims the next sequence number, waiting while too many answers are outstanding.
    /// `None` when the writer has gone (the client disconnected).
    fn next_reply_to(&mut self) -> Option<ReplyTo> {
        self.tokens.send(()).ok()?;
        let seq = self.next_seq;
        self.next_seq += 1;
        Some(ReplyTo {
            replies: self.replies.clone(),
            seq,
        })
    }

    fn answer_now(&mut self, response: Response) -> bool {
        match self.next_reply_to() {
            Some(reply) => {
                reply.send(response);
                true
            }
            None => false,
        }
    }

    fn refuse_too_long(&mut self) {
        let message = format!(
            "request line longer than {} bytes; closing the connection",
            self.context.max_line_bytes
        );
        if self.tokens.send(()).is_ok() {
            let _ = self.replies.send(Reply {
                seq: self.next_seq,
                response: Response::BadRequest { message },
                close: true,
            });
        }
    }
}

/// Reads and discards what the client still sends, for a bounded time, so that closing
/// the socket does not reset the connection before the client has read our last answer.
fn drain_input(reader: &mut BufReader<TcpStream>) {
    let deadline = Instant::now() + Duration::from_secs(2);
    let _ = reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(200)));
    let mut sink = [0u8; 64 * 1024];
    while Instant::now() < deadline {
        match reader.read(&mut sink) {
            Ok(0) => return,
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

/// The writer thread: answers in sequence order, one `write` per burst of ready answers.
fn write_replies(mut stream: TcpStream, replies: Receiver<Reply>, tokens: Receiver<()>) {
    let mut next_seq = 0;
    let mut early: BTreeMap<u64, Reply> = BTreeMap::new();
    let mut out = Vec::with_capacity(64 * 1024);
    while let Ok(reply) = replies.recv() {
        early.insert(reply.seq, reply);
        early.extend(replies.try_iter().map(|reply| (reply.seq, reply)));
        let mut close = false;
        while let Some(reply) = early.remove(&next_seq) {
            reply.response.encode(&mut out);
            next_seq += 1;
            let _ = tokens.try_recv();
            if reply.close {
                close = true;
                break;
            }
        }
        if !out.is_empty() {
            if stream.write_all(&out).is_err() {
                return;
            }
            out.clear();
            if out.capacity() > (4 << 20) {
                out = Vec::with_capacity(64 * 1024); // Let a big query's buffer go.
            }
        }
        if close {
            let _ = stream.shutdown(Shutdown::Write);
            return;
        }
    }
}
