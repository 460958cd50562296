//! Appends accepted by this node as leader and not yet answered.
//!
//! A proposal is answered success only when a `Commit` carries its index *with the term it
//! was accepted in*. The same index committed with another term means a later leader
//! overwrote it: the client hears `not_leader` (the command was not appended), never a
//! false success. An append that neither commits nor is overwritten in time is answered
//! `timeout` (outcome unknown).

use crate::client::{ReplyTo, Response};
use replog_core::{Entry, Index, Term};
use std::collections::VecDeque;
use std::time::Instant;

/// One accepted proposal: consecutive indexes, one waiting client each.
struct Batch {
    /// The index of the next waiter.
    next_index: Index,
    term: Term,
    /// Invariant: one waiter per index from `next_index` on.
    waiters: std::vec::IntoIter<ReplyTo>,
    deadline: Instant,
}

impl Batch {
    fn last_index(&self) -> Index {
        self.next_index.plus(self.waiters.len() as u64).prev()
    }

    fn answer_rest(self, response: &Response) {
        for waiter in self.waiters {
            waiter.send(response.clone());
        }
    }
}

/// Invariant: batches are in increasing index order and in increasing deadline order (both
/// follow the order proposals were accepted in), and none is empty.
#[derive(Default)]
pub struct PendingAppends {
    batches: VecDeque<Batch>,
}

impl PendingAppends {
    /// Records a proposal accepted at `first_index..` in `term`, one waiter per command.
    ///
    /// Older batches at or above `first_index` can no longer commit: our log was truncated
    /// below them before we led again, so they are answered as overwritten.
    pub fn accepted(
        &mut self,
        first_index: Index,
        term: Term,
        waiters: Vec<ReplyTo>,
        deadline: Instant,
        overwritten: &Response,
    ) {
        while self
            .batches
            .back()
            .is_some_and(|batch| batch.last_index() >= first_index)
        {
            let batch = self.batches.pop_back().expect("checked non-empty");
            batch.answer_rest(overwritten);
        }
        if waiters.is_empty() {
            return;
        }
        self.batches.push_back(Batch {
            next_index: first_index,
            term,
            waiters: waiters.into_iter(),
            deadline,
        });
    }

    /// Answers the waiters for `entries`, which were just committed (in order).
    pub fn committed(&mut self, entries: &[Entry], overwritten: &Response) {
        for entry in entries {
            while let Some(batch) = self.batches.front_mut() {
                if batch.next_index > entry.index {
                    break; // Not ours (a no-op, or another leader's entry).
                }
                if batch.next_index < entry.index {
                    // Commits are contiguous, so this cannot happen; if it did, the fate of
                    // these appends is unknown and that is all we may say.
                    let batch = self.batches.pop_front().expect("checked non-empty");
                    batch.answer_rest(&Response::Timeout);
                    continue;
                }
                let waiter = batch.waiters.next().expect("batches are never empty");
                if entry.term == batch.term {
                    waiter.send(Response::Appended {
                        index: entry.index.0,
                        term: entry.term.0,
                    });
                } else {
                    waiter.send(overwritten.clone());
                }
                batch.next_index = batch.next_index.next();
                if batch.waiters.len() == 0 {
                    self.batches.pop_front();
                }
                break;
            }
        }
    }

    /// Answers `timeout` to every batch whose deadline has passed.
    pub fn expire(&mut self, now: Instant) {
        while self
            .batches
            .front()
            .is_some_and(|batch| batch.deadline <= now)
        {
            let batch = self.batches.pop_front().expect("checked non-empty");
            batch.answer_rest(&Response::Timeout);
        }
    }

    /// Answers every waiter (the node is stopping).
    pub fn abandon(&mut self, response: &Response) {
        for batch in self.batches.drain(..) {
            batch.answer_rest(response);
        }
    }

    /// The lowest index still waiting, if any.
    pub fn first_waiting(&self) -> Option<Index> {
        self.batches.front().map(|batch| batch.next_index)
    }

    /// The highest index waiting, if any.
    pub fn last_waiting(&self) -> Option<Index> {
        self.batches.back().map(Batch::last_index)
    }

    pub fn len(&self) -> usize {
        self.batches.iter().map(|batch| batch.waiters.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::mailbox::test_reply_to;
    use replog_core::Payload;
    use std::time::Duration;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index: Index(index),
            term: Term(term),
            payload: Payload::Command(format!("c{index}")),
        }
    }

    fn overwritten() -> Response {
        Response::NotLeader {
            leader: Some("127.0.0.1:1".into()),
        }
    }

    #[test]
    fn an_append_succeeds_only_when_committed_with_its_own_term() {
        let mut pending = PendingAppends::default();
        let (first, first_answer) = test_reply_to();
        let (second, second_answer) = test_reply_to();
        let deadline = Instant::now() + Duration::from_secs(60);
        pending.accepted(
            Index(5),
            Term(2),
            vec![first, second],
            deadline,
            &overwritten(),
        );
        assert_eq!(pending.first_waiting(), Some(Index(5)));
        assert_eq!(pending.last_waiting(), Some(Index(6)));
        // Index 4 is not ours; 5 commits with our term; 6 with a later leader's.
        pending.committed(&[entry(4, 2), entry(5, 2), entry(6, 3)], &overwritten());
        let answer = first_answer.try_recv().unwrap();
        assert_eq!(answer.response, Response::Appended { index: 5, term: 2 });
        assert_eq!(second_answer.try_recv().unwrap().response, overwritten());
        assert!(pending.is_empty());
    }

    #[test]
    fn a_new_proposal_at_a_waiting_index_answers_the_old_one_as_overwritten() {
        let mut pending = PendingAppends::default();
        let (old, old_answer) = test_reply_to();
        let (new, new_answer) = test_reply_to();
        let deadline = Instant::now() + Duration::from_secs(60);
        pending.accepted(Index(7), Term(2), vec![old], deadline, &overwritten());
        pending.accepted(Index(7), Term(4), vec![new], deadline, &overwritten());
        assert_eq!(old_answer.try_recv().unwrap().response, overwritten());
        pending.committed(&[entry(7, 4)], &overwritten());
        assert_eq!(
            new_answer.try_recv().unwrap().response,
            Response::Appended { index: 7, term: 4 }
        );
    }

    #[test]
    fn appends_past_their_deadline_are_answered_timeout() {
        let mut pending = PendingAppends::default();
        let (waiter, answer) = test_reply_to();
        let now = Instant::now();
        pending.accepted(Index(1), Term(1), vec![waiter], now, &overwritten());
        pending.expire(now - Duration::from_millis(1));
        assert!(answer.try_recv().is_none());
        pending.expire(now);
        assert_eq!(answer.try_recv().unwrap().response, Response::Timeout);
        assert!(pending.is_empty());
    }
}
