//! What the core thread and the client front end ask of the reader thread.

use crate::client::answers::StreamId;
use crate::client::{NodeState, QueryRange, ReplyTo};
use replog_core::Index;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Work for the reader thread.
pub enum ReaderJob {
    /// The applied index moved on while the reader waited for it (see [`Progress`]).
    Wake,
    /// A `read`, once the appends accepted before it on this node are answered.
    Read {
        from: Index,
        limit: usize,
        reply: ReplyTo,
    },
    /// A `query` answer lacking the entries the core no longer holds: `state.entries` is
    /// the core's window, from `through + 1`; the log before it is read from storage.
    Query {
        state: Box<NodeState>,
        through: Index,
        range: QueryRange,
        reply: ReplyTo,
    },
    /// A connection turned into a `follow` stream from `from`; it wants its first lines.
    Follow { stream: StreamId, from: Index },
    /// The stream's connection took the last chunk and has room for the next.
    Want(StreamId),
    /// The stream's connection is gone.
    Closed(StreamId),
}

/// The core's applied and commit indexes as the core thread publishes them, once per loop
/// iteration: entries up to `applied` are committed and durable here, so the reader may
/// read them. The reader is woken (a [`ReaderJob::Wake`]) only when it asked to be,
/// so a node nobody follows pays two atomic stores per iteration and no wake-up.
#[derive(Clone, Default)]
pub struct Progress(Arc<Shared>);

#[derive(Default)]
struct Shared {
    /// Invariant: never decreases; `applied <= commit` once both are read after a publish.
    applied: AtomicU64,
    commit: AtomicU64,
    /// The reader has a stream waiting for `applied` to move.
    waiting: AtomicBool,
    /// Storage's first index, published by the storage thread after each change (0
    /// until its first publication).
    first_index: AtomicU64,
}

impl Progress {
    /// Core thread: publishes; true if the reader asked to be woken (the caller sends the
    /// wake-up). The commit index goes first, so no reader sees `applied > commit`.
    pub fn publish(&self, applied: Index, commit: Index) -> bool {
        self.0.commit.store(commit.0, Ordering::SeqCst);
        let before = self.0.applied.swap(applied.0, Ordering::SeqCst);
        before != applied.0 && self.0.waiting.swap(false, Ordering::SeqCst)
    }

    pub fn applied(&self) -> Index {
        Index(self.0.applied.load(Ordering::SeqCst))
    }

    pub fn commit(&self) -> Index {
        Index(self.0.commit.load(Ordering::SeqCst))
    }

    /// Storage thread: the log now starts at `first_index` (at start, after trims and
    /// installs).
    pub fn publish_first_index(&self, first_index: Index) {
        self.0.first_index.store(first_index.0, Ordering::SeqCst);
    }

    /// Storage's first index as last published; `None` before the first publication.
    pub fn first_index(&self) -> Option<Index> {
        match self.0.first_index.load(Ordering::SeqCst) {
            0 => None,
            index => Some(Index(index)),
        }
    }

    /// Reader: asks to be woken when `applied` moves past `seen`. False if it already has:
    /// then the reader reads on instead of sleeping. (Both sides use sequentially
    /// consistent operations, so either the core sees the request or the reader sees the
    /// new index.)
    pub fn wake_when_past(&self, seen: Index) -> bool {
        self.0.waiting.store(true, Ordering::SeqCst);
        if self.applied() > seen {
            self.0.waiting.store(false, Ordering::SeqCst);
            return false;
        }
        true
    }
}
