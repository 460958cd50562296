//! How answers get from the core thread back to the client front end.
//!
//! A request carries a [`ReplyTo`]: plain data naming its connection and its place in that
//! connection's order. The core thread collects the [`Answer`]s of one loop iteration in a
//! vector and hands them over with [`AnswerSink::deliver`]: one lock and at most one
//! wake-up of the front end per iteration, however many clients it answers. The reader
//! thread uses the same way for `read` and `query` answers, and for the chunks of `follow`
//! streams ([`StreamChunk`]).

use super::protocol::Response;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

/// Where one request's answer goes. Answering is optional only when the node is stopping;
/// otherwise the connection waits for it forever (answers are written in request order).
#[derive(Debug, PartialEq, Eq)]
pub struct ReplyTo {
    /// The connection's slot in the front end.
    pub connection: usize,
    /// Tells a connection from a later one that reused its slot.
    pub generation: u32,
    /// The request's place in its connection's order, from 0.
    pub seq: u64,
}

impl ReplyTo {
    /// Queues `response` for this request in `answers`.
    pub fn answer(self, response: Response, answers: &mut Vec<Answer>) {
        answers.push(Answer { to: self, response });
    }
}

/// A `follow` stream: the connection that follows the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId {
    /// The connection's slot in the front end.
    pub connection: usize,
    /// Tells a connection from a later one that reused its slot.
    pub generation: u32,
}

/// Lines of a `follow` stream, whole lines with their newlines.
#[derive(Debug)]
pub struct StreamChunk {
    pub stream: StreamId,
    pub lines: Vec<u8>,
    /// The stream ends with these lines (an error line: `trimmed` or `read_failed`).
    pub end: bool,
}

/// A response on its way to a client connection.
#[derive(Debug)]
pub struct Answer {
    pub to: ReplyTo,
    pub response: Response,
}

/// How far the node's stop has got, as the front end needs to know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Running,
    /// The node is stopping: the front end stops accepting, sends the core thread no more
    /// requests (it answers new ones itself) and says so with `Control::ClientsStopped`.
    Stopping,
    /// The core thread has delivered its last answer.
    CoreDone,
}

struct Shared {
    queue: Mutex<Vec<Answer>>,
    chunks: Mutex<Vec<StreamChunk>>,
    /// A [`Phase`]; it only moves forward.
    phase: AtomicU8,
    waker: mio::Waker,
}

/// The core thread's end of the way back to the front end.
#[derive(Clone)]
pub struct AnswerSink {
    shared: Arc<Shared>,
}

impl AnswerSink {
    pub fn new(waker: mio::Waker) -> AnswerSink {
        AnswerSink {
            shared: Arc::new(Shared {
                queue: Mutex::new(Vec::new()),
                chunks: Mutex::new(Vec::new()),
                phase: AtomicU8::new(Phase::Running as u8),
                waker,
            }),
        }
    }

    /// Hands every answer in `answers` to the front end (leaving `answers` empty) and wakes
    /// it, unless earlier answers are still waiting: their wake-up covers these too.
    pub fn deliver(&self, answers: &mut Vec<Answer>) {
        if answers.is_empty() {
            return;
        }
        if hand_over(&self.shared.queue, answers) {
            // Fails only if the front end's poll is gone, i.e. the node is stopping.
            let _ = self.shared.waker.wake();
        }
    }

    /// Reader thread: hands `chunks` to the front end (leaving it empty) as `deliver` does.
    pub fn deliver_chunks(&self, chunks: &mut Vec<StreamChunk>) {
        if chunks.is_empty() {
            return;
        }
        if hand_over(&self.shared.chunks, chunks) {
            // Fails only if the front end's poll is gone, i.e. the node is stopping.
            let _ = self.shared.waker.wake();
        }
    }

    /// Front end: moves every delivered stream chunk into `batch` (which should be empty).
    pub fn take_chunks(&self, batch: &mut Vec<StreamChunk>) {
        std::mem::swap(&mut *lock(&self.shared.chunks), batch);
    }

    /// Core thread: moves the stop on to `phase` and wakes the front end to act on it.
    pub fn advance(&self, phase: Phase) {
        self.shared.phase.fetch_max(phase as u8, Ordering::AcqRel);
        // Fails only if the front end's poll is gone: nobody is left to tell.
        let _ = self.shared.waker.wake();
    }

    pub fn phase(&self) -> Phase {
        match self.shared.phase.load(Ordering::Acquire) {
            0 => Phase::Running,
            1 => Phase::Stopping,
            _ => Phase::CoreDone,
        }
    }

    /// Front end: moves every delivered answer into `batch` (which should be empty).
    pub fn take(&self, batch: &mut Vec<Answer>) {
        std::mem::swap(&mut *lock(&self.shared.queue), batch);
    }
}

/// Moves `items` onto `queue`; true if the queue was empty, i.e. the front end needs a
/// wake-up (otherwise the one for the earlier items covers these).
fn hand_over<T>(queue: &Mutex<Vec<T>>, items: &mut Vec<T>) -> bool {
    let mut queue = lock(queue);
    let was_empty = queue.is_empty();
    if was_empty {
        std::mem::swap(&mut *queue, items);
    } else {
        queue.append(items);
    }
    was_empty
}

fn lock<T>(queue: &Mutex<Vec<T>>) -> std::sync::MutexGuard<'_, Vec<T>> {
    // A panic while holding the lock leaves a vector: still usable.
    queue
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
