//! Where a client connection's answers meet: the reader hands out a [`ReplyTo`] per
//! request, the core thread (or the reader itself, for a bad line) fills it, and the
//! connection's writer takes whatever has arrived in one go.
//!
//! A mutex and two condition variables rather than a channel: a channel's blocking
//! receive spins and yields the CPU several times before it sleeps, and with a writer
//! thread per connection that spinning was the node's largest CPU cost under load
//! (profiled with 64 clients). A condition variable sleeps at once, and the core thread
//! wakes the writer only when it is actually asleep.

use super::protocol::Response;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Requests one connection may have unanswered at once.
pub const MAX_IN_FLIGHT: usize = 4096;

/// One answer, tagged with its request's place in the connection's order.
pub struct Reply {
    pub seq: u64,
    pub response: Response,
    /// Close the connection once this answer is written.
    pub close: bool,
}

#[derive(Default)]
struct State {
    /// Answers not yet taken by the writer, in arrival order.
    ready: Vec<Reply>,
    /// Unused `ReplyTo`s, plus one for the reader while it runs. The writer stops once
    /// this is zero and `ready` is empty: no answer can come any more.
    senders: usize,
    /// Requests handed out and not yet written back.
    /// Invariant: `<= MAX_IN_FLIGHT`.
    in_flight: usize,
    writer_asleep: bool,
    reader_asleep: bool,
    /// The writer has stopped (client gone, or connection closing): answers are dropped.
    writer_gone: bool,
    next_seq: u64,
}

/// Shared by one connection's reader, writer and outstanding `ReplyTo`s.
#[derive(Default)]
pub struct Mailbox {
    state: Mutex<State>,
    /// Wakes the writer: answers arrived, or the last sender left.
    answers: Condvar,
    /// Wakes the reader: the writer made room below `MAX_IN_FLIGHT`, or stopped.
    room: Condvar,
}

impl Mailbox {
    /// A mailbox whose reader is running (it counts as one sender until `reader_done`).
    pub fn new() -> Arc<Mailbox> {
        let mailbox = Arc::new(Mailbox::default());
        mailbox.lock().senders = 1;
        mailbox
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain counters behind: still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reader: claims the next place in the order, waiting while `MAX_IN_FLIGHT` answers
    /// are outstanding. `None` once the writer has stopped.
    pub fn reserve(self: &Arc<Mailbox>) -> Option<ReplyTo> {
        let mut state = self.lock();
        while state.in_flight >= MAX_IN_FLIGHT && !state.writer_gone {
            state.reader_asleep = true;
            state = self.room.wait(state).unwrap_or_else(|p| p.into_inner());
            state.reader_asleep = false;
        }
        if state.writer_gone {
            return None;
        }
        state.in_flight += 1;
        state.senders += 1;
        let seq = state.next_seq;
        state.next_seq += 1;
        Some(ReplyTo {
            mailbox: Some(self.clone()),
            seq,
        })
    }

    /// Reader: it will hand out no more `ReplyTo`s.
    pub fn reader_done(&self) {
        let mut state = self.lock();
        state.senders -= 1;
        self.wake_writer(&mut state);
    }

    /// Writer: waits for answers and moves them into `batch` (which must be empty).
    /// Returns false when none will ever come: every sender is gone.
    pub fn take(&self, batch: &mut Vec<Reply>) -> bool {
        let mut state = self.lock();
        loop {
            if !state.ready.is_empty() {
                std::mem::swap(&mut state.ready, batch);
                return true;
            }
            if state.senders == 0 {
                return false;
            }
            state.writer_asleep = true;
            state = self.answers.wait(state).unwrap_or_else(|p| p.into_inner());
            state.writer_asleep = false;
        }
    }

    /// Writer: `count` answers have been written back.
    pub fn written(&self, count: usize) {
        let mut state = self.lock();
        state.in_flight -= count;
        if state.reader_asleep {
            self.room.notify_one();
        }
    }

    /// Writer: it stops; later answers are dropped and a waiting reader is released.
    pub fn writer_done(&self) {
        let mut state = self.lock();
        state.writer_gone = true;
        state.ready = Vec::new();
        self.room.notify_one();
    }

    fn deliver(&self, reply: Reply) {
        let mut state = self.lock();
        if !state.writer_gone {
            state.ready.push(reply);
        }
        state.senders -= 1;
        self.wake_writer(&mut state);
    }

    fn wake_writer(&self, state: &mut State) {
        if state.writer_asleep {
            state.writer_asleep = false;
            self.answers.notify_one();
        }
    }
}

/// Where one request's answer goes. Dropping it unanswered is allowed (the node is
/// stopping); the writer then never writes that place in the order.
pub struct ReplyTo {
    /// `None` once used.
    mailbox: Option<Arc<Mailbox>>,
    seq: u64,
}

impl ReplyTo {
    /// Sends the answer. A client that has gone away is not an error.
    pub fn send(self, response: Response) {
        self.deliver(response, false);
    }

    /// Sends the answer, after which the writer closes the connection.
    pub fn send_and_close(self, response: Response) {
        self.deliver(response, true);
    }

    fn deliver(mut self, response: Response, close: bool) {
        let mailbox = self.mailbox.take().expect("a ReplyTo is used once");
        mailbox.deliver(Reply {
            seq: self.seq,
            response,
            close,
        });
    }
}

impl Drop for ReplyTo {
    fn drop(&mut self) {
        if let Some(mailbox) = self.mailbox.take() {
            let mut state = mailbox.lock();
            state.senders -= 1;
            mailbox.wake_writer(&mut state);
        }
    }
}

/// A reply slot and a way to look at what it received (for unit tests).
#[cfg(test)]
pub fn test_reply_to() -> (ReplyTo, TestReplies) {
    let mailbox = Mailbox::new();
    let reply = mailbox.reserve().expect("fresh mailbox");
    (reply, TestReplies(mailbox))
}

#[cfg(test)]
pub struct TestReplies(Arc<Mailbox>);

#[cfg(test)]
impl TestReplies {
    /// The oldest answer not yet looked at.
    pub fn try_recv(&self) -> Option<Reply> {
        let mut state = self.0.lock();
        (!state.ready.is_empty()).then(|| state.ready.remove(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writer_stops_only_when_every_sender_is_gone() {
        let mailbox = Mailbox::new();
        let first = mailbox.reserve().unwrap();
        let second = mailbox.reserve().unwrap();
        mailbox.reader_done();
        second.send(Response::Timeout);
        let mut batch = Vec::new();
        assert!(mailbox.take(&mut batch));
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].seq, 1);
        mailbox.written(1);
        drop(first); // Never answered: the node stopped.
        batch.clear();
        assert!(!mailbox.take(&mut batch));
    }

    #[test]
    fn the_reader_waits_for_room_and_is_released_when_the_writer_stops() {
        let mailbox = Mailbox::new();
        let replies: Vec<ReplyTo> = (0..MAX_IN_FLIGHT)
            .map(|_| mailbox.reserve().unwrap())
            .collect();
        let reader = {
            let mailbox = mailbox.clone();
            std::thread::spawn(move || mailbox.reserve().is_none())
        };
        mailbox.writer_done();
        assert!(
            reader.join().unwrap(),
            "a stopped writer releases the reader"
        );
        drop(replies);
    }
}
