//! The reader thread: serves `read`, `query`'s log and `follow` streams from the segments,
//! off the storage thread (a long read there would delay every group commit) and off the
//! core thread.
//!
//! It reads through its own read-only view of the log ([`LogReader`]) and only what the
//! core has published as applied ([`Progress`]): committed and durable here. So a stream
//! never shows an entry that could still change, on a leader or a follower, whatever
//! happens to leadership meanwhile; and it needs no lock shared with the writer.
//!
//! ## Streams and their buffers
//! A `follow` stream gets one chunk of lines (at most [`CHUNK_BYTES`] of stored lines)
//! at a time: the reader sends it to the front end, then waits for the connection to say it
//! has room again (`ReaderJob::Want`, sent when its unsent output is below a chunk). So a
//! stream holds at most about two chunks in the node's memory, however far behind its
//! client is or however slowly it reads; the rest stays on disk, and a stream's cursor is
//! one open file and an offset. A stream that caught up waits for the applied index to move.

pub mod jobs;

pub use jobs::{Progress, ReaderJob};

use crate::client::answers::{Answer, AnswerSink, StreamChunk, StreamId};
use crate::client::protocol::READ_MAX_BYTES;
use crate::client::{EntryView, LogEntry, NodeState, QueryRange, ReadPage, ReplyTo, Response};
use crate::queue::{QueueReceiver, QueueSender};
use crate::storage::{Cursor, LogReader, ReadError, ReadLimits};
use replog_core::Index;
use std::collections::BTreeMap;
use std::path::Path;
use std::thread::JoinHandle;
use tracing::warn;

/// Bytes of stored lines read for one chunk of a stream.
pub const CHUNK_BYTES: usize = 256 << 10;

/// Starts the reader thread on the node directory `node_dir`. It answers through `sink`
/// and exits once every sender of `jobs` is gone.
pub fn spawn(
    node_dir: &Path,
    progress: Progress,
    jobs: QueueReceiver<ReaderJob>,
    sink: AnswerSink,
) -> std::io::Result<JoinHandle<()>> {
    let mut reader = Reader {
        log: LogReader::new(node_dir),
        progress,
        streams: BTreeMap::new(),
        answers: Vec::new(),
        chunks: Vec::new(),
        sink,
    };
    std::thread::Builder::new()
        .name("reader".into())
        .spawn(move || reader.run(&jobs))
}

/// One `follow` stream.
struct Stream {
    cursor: Cursor,
    /// Its connection has room for a chunk.
    wants: bool,
}

struct Reader {
    log: LogReader,
    progress: Progress,
    streams: BTreeMap<StreamId, Stream>,
    answers: Vec<Answer>,
    chunks: Vec<StreamChunk>,
    sink: AnswerSink,
}

impl Reader {
    fn run(&mut self, jobs: &QueueReceiver<ReaderJob>) {
        let mut batch = Vec::new();
        loop {
            for job in batch.drain(..) {
                self.handle(job);
            }
            let more = self.serve_streams();
            self.sink.deliver(&mut self.answers);
            self.sink.deliver_chunks(&mut self.chunks);
            let result = if more {
                jobs.try_take(&mut batch)
            } else {
                jobs.take(&mut batch, None)
            };
            if result.is_err() {
                return;
            }
        }
    }

    fn handle(&mut self, job: ReaderJob) {
        match job {
            ReaderJob::Wake => {}
            ReaderJob::Read { from, limit, reply } => self.read(from, limit, reply),
            ReaderJob::Query {
                state,
                through,
                range,
                reply,
            } => self.query(*state, through, range, reply),
            ReaderJob::Follow { stream, from } => match self.log.cursor(from) {
                Ok(cursor) => {
                    let wants = true;
                    self.streams.insert(stream, Stream { cursor, wants });
                }
                Err(error) => self.end_stream(stream, Vec::new(), &error),
            },
            ReaderJob::Want(stream) => {
                if let Some(stream) = self.streams.get_mut(&stream) {
                    stream.wants = true;
                }
            }
            ReaderJob::Closed(stream) => {
                self.streams.remove(&stream);
            }
        }
    }

    /// `{"ok":true,"entries":[...],"next":K,"first_index":F,"commit_index":C}`.
    fn read(&mut self, from: Index, limit: usize, reply: ReplyTo) {
        let commit = self.progress.commit();
        let applied = self.progress.applied();
        let limits = ReadLimits {
            max_entries: limit,
            max_bytes: READ_MAX_BYTES,
        };
        let mut line = ReadPage::HEAD.to_vec();
        let result = self.log.cursor(from).and_then(|mut cursor| {
            self.log.read(&mut cursor, applied, limits, |entry| {
                if line.last() == Some(&b'}') {
                    line.push(b',');
                }
                LogEntry::encode_stored(entry, &mut line);
            })?;
            Ok(cursor.next())
        });
        let response = match result {
            Ok(next) => {
                // The storage thread publishes the first index after every change; the
                // cursor above already read metadata.json to check `from` against it.
                let first = match self.progress.first_index() {
                    Some(first) => first,
                    None => match self.log.first_index() {
                        Ok(first) => first,
                        Err(error) => {
                            return reply.answer(failed(&error.into()), &mut self.answers)
                        }
                    },
                };
                ReadPage::finish(&mut line, next.0, first.0, commit.0);
                Response::Encoded(line)
            }
            Err(error) => failed(&error),
        };
        reply.answer(response, &mut self.answers);
    }

    /// Completes a `query` answer: the stored entries before the core's window, then the
    /// window, within `range`.
    fn query(&mut self, mut state: NodeState, through: Index, range: QueryRange, reply: ReplyTo) {
        let window = state.entries.take().unwrap_or_default();
        let commit = Index(state.commit_index);
        let limit = range.limit.unwrap_or(usize::MAX);
        let stored = self
            .log
            .first_index()
            .map_err(ReadError::from)
            .and_then(|first| {
                let from = range.from.map_or(first, Index);
                let stored = self.log.read_entries(from, through, limit)?;
                Ok((from, stored))
            });
        let response = match stored {
            Ok((from, stored)) => {
                let mut entries: Vec<EntryView> =
                    stored.iter().map(|e| EntryView::of(e, commit)).collect();
                let room = limit - entries.len();
                let held = window.into_iter().filter(|entry| entry.index >= from.0);
                entries.extend(held.take(room));
                state.entries = Some(entries);
                Response::State(state)
            }
            Err(error) => failed(&error),
        };
        reply.answer(response, &mut self.answers);
    }

    /// Reads a chunk for every stream that has room and entries to read. True if some
    /// stream still has both (a chunk was cut short by its size): serve again soon.
    fn serve_streams(&mut self) -> bool {
        let applied = self.progress.applied();
        let limits = ReadLimits {
            max_entries: usize::MAX,
            max_bytes: CHUNK_BYTES,
        };
        let mut ended = Vec::new();
        let mut waiting = false;
        for (&id, stream) in &mut self.streams {
            if !stream.wants {
                continue;
            }
            if stream.cursor.next() > applied {
                waiting = true;
                continue;
            }
            let mut lines = Vec::with_capacity(CHUNK_BYTES);
            let result = self.log.read(&mut stream.cursor, applied, limits, |entry| {
                LogEntry::encode_stored(entry, &mut lines);
                lines.push(b'\n');
            });
            match result {
                Ok(_) => {
                    stream.wants = false;
                    let end = false;
                    self.chunks.push(StreamChunk {
                        stream: id,
                        lines,
                        end,
                    });
                }
                Err(error) => ended.push((id, lines, error)),
            }
        }
        for (id, lines, error) in ended {
            self.streams.remove(&id);
            self.end_stream(id, lines, &error);
        }
        // Sleep only once the core knows to wake us; if it moved meanwhile, read on.
        waiting && !self.progress.wake_when_past(applied)
    }

    /// Ends a stream with the lines read so far, then the error line.
    fn end_stream(&mut self, stream: StreamId, mut lines: Vec<u8>, error: &ReadError) {
        failed(error).encode(&mut lines);
        self.chunks.push(StreamChunk {
            stream,
            lines,
            end: true,
        });
    }
}

/// The answer for a read that failed: `trimmed`, or `read_failed` (also logged: a damaged
/// segment is for the operator to see).
fn failed(error: &ReadError) -> Response {
    match error {
        ReadError::Trimmed { first_index } => Response::Trimmed {
            first_index: first_index.0,
        },
        ReadError::Storage(error) => {
            warn!("reading the log for a client failed: {error}");
            Response::ReadFailed {
                message: error.to_string(),
            }
        }
    }
}

/// The reader thread's job queue, for the core thread and the front end.
pub type ReaderJobs = QueueSender<ReaderJob>;
