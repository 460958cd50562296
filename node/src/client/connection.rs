//! The server side of one client connection: a reader thread that parses request lines and
//! hands them to the core thread, and a writer thread that sends the answers back in
//! request order.
//!
//! Answers can be ready out of order (a `status` is answered at once, an `append` only
//! once it commits), so each request carries a sequence number and the writer holds early
//! answers until the ones before them are written. The reader never runs more than
//! [`MAX_IN_FLIGHT`] requests ahead of the writer, so a client that pipelines without
//! reading is slowed by TCP rather than growing the node's memory. Answers travel through
//! the connection's [`Mailbox`].

use super::lines::{read_line_limited, LineRead};
use super::mailbox::{Mailbox, Reply, ReplyTo};
use super::protocol::{ParsedLine, Request, Response};
use crate::debug;
use crossbeam_channel::Sender;
use std::collections::BTreeMap;
use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use super::mailbox::MAX_IN_FLIGHT;

/// A request on its way to the core thread, with where its answer goes.
pub struct ClientRequest {
    pub request: Request,
    pub reply: ReplyTo,
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
    reader: BufReader<TcpStream>,
    first: (LineRead, Vec<u8>),
    context: ClientContext,
) {
    let Ok(writer_stream) = stream.try_clone() else {
        return;
    };
    let mailbox = Mailbox::new();
    let writer_mailbox = mailbox.clone();
    let writer = std::thread::Builder::new()
        .name("client-writer".into())
        .spawn(move || write_replies(writer_stream, &writer_mailbox));
    if writer.is_err() {
        mailbox.reader_done();
        return;
    }
    let mut connection = Connection { mailbox, context };
    connection.read_lines(reader, first);
    connection.mailbox.reader_done();
}

struct Connection {
    mailbox: Arc<Mailbox>,
    context: ClientContext,
}

impl Connection {
    /// Handles lines until the client disconnects or breaks the protocol beyond repair.
    fn read_lines(&mut self, mut reader: BufReader<TcpStream>, first: (LineRead, Vec<u8>)) {
        let (mut read, mut line) = first;
        loop {
            match read {
                LineRead::Eof => return,
                LineRead::TooLong => {
                    self.refuse_too_long();
                    drain_input(&mut reader);
                    return;
                }
                LineRead::Line => {
                    if !self.handle_line(&line) {
                        return;
                    }
                }
            }
            let max_line_bytes = self.context.max_line_bytes;
            read = match read_line_limited(&mut reader, &mut line, max_line_bytes) {
                Ok(read) => read,
                Err(error) => {
                    debug!("client connection read failed: {error}");
                    return;
                }
            };
        }
    }

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
        let Some(reply) = self.mailbox.reserve() else {
            return false;
        };
        // Blocks only while the core thread's queue is full: backpressure, not I/O.
        self.context
            .requests
            .send(ClientRequest { request, reply })
            .is_ok()
    }

    fn answer_now(&mut self, response: Response) -> bool {
        match self.mailbox.reserve() {
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
        if let Some(reply) = self.mailbox.reserve() {
            reply.send_and_close(Response::BadRequest { message });
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
fn write_replies(mut stream: TcpStream, mailbox: &Mailbox) {
    let mut next_seq = 0;
    let mut early: BTreeMap<u64, Reply> = BTreeMap::new();
    let mut batch = Vec::new();
    let mut out = Vec::with_capacity(64 * 1024);
    while mailbox.take(&mut batch) {
        early.extend(batch.drain(..).map(|reply| (reply.seq, reply)));
        let mut close = false;
        let mut written = 0;
        while let Some(reply) = early.remove(&next_seq) {
            reply.response.encode(&mut out);
            next_seq += 1;
            written += 1;
            if reply.close {
                close = true;
                break;
            }
        }
        if !out.is_empty() {
            if stream.write_all(&out).is_err() {
                break;
            }
            out.clear();
            if out.capacity() > (4 << 20) {
                out = Vec::with_capacity(64 * 1024); // Let a big query's buffer go.
            }
        }
        mailbox.written(written);
        if close {
            let _ = stream.shutdown(Shutdown::Write);
            break;
        }
    }
    mailbox.writer_done();
}
