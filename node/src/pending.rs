//! Appends accepted by this node as leader and not yet answered.
//!
//! A proposal is answered success only when a `Commit` carries its index *with the term it
//! was accepted in*. The same index committed with another term means a later leader
//! overwrote it: the client hears `not_leader` (the command was not appended), never a
//! false success. An append that neither commits nor is overwritten in time is answered
//! `timeout` (outcome unknown).

use crate::client::{Answer, ReplyTo, Response};
use crate::metrics::LocalHistogram;
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
    accepted_at: Instant,
    deadline: Instant,
}

impl Batch {
    fn last_index(&self) -> Index {
        self.next_index.plus(self.waiters.len() as u64).prev()
    }

    fn answer_rest(self, response: &Response, answers: &mut Vec<Answer>) {
        for waiter in self.waiters {
            waiter.answer(response.clone(), answers);
        }
    }
}

/// Successful appends accepted at the same moment, counted together into a histogram.
struct LatencyRun<'a> {
    histogram: Option<&'a mut LocalHistogram>,
    now: Instant,
    accepted_at: Option<Instant>,
    count: u64,
}

impl<'a> LatencyRun<'a> {
    fn new(histogram: Option<&'a mut LocalHistogram>) -> LatencyRun<'a> {
        LatencyRun {
            histogram,
            now: Instant::now(),
            accepted_at: None,
            count: 0,
        }
    }

    fn add(&mut self, accepted_at: Instant) {
        if self.accepted_at != Some(accepted_at) {
            self.finish();
            self.accepted_at = Some(accepted_at);
        }
        self.count += 1;
    }

    fn finish(&mut self) {
        if let (Some(histogram), Some(accepted_at)) =
            (self.histogram.as_deref_mut(), self.accepted_at)
        {
            let waited = self.now.saturating_duration_since(accepted_at);
            let micros = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
            histogram.observe_n(micros, self.count);
        }
        self.count = 0;
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
    /// Older batches at or above `first_index` were truncated from our log before we led
    /// again. That does not prove them lost: another node may still hold them, win a later
    /// election and commit them. Their fate is unknown, so they are answered `timeout`,
    /// never `not_leader` (which tells the client it is safe to resend).
    pub fn accepted(
        &mut self,
        first_index: Index,
        term: Term,
        waiters: Vec<ReplyTo>,
        deadline: Instant,
        answers: &mut Vec<Answer>,
    ) {
        while self
            .batches
            .back()
            .is_some_and(|batch| batch.last_index() >= first_index)
        {
            let batch = self.batches.pop_back().expect("checked non-empty");
            batch.answer_rest(&Response::Timeout, answers);
        }
        if waiters.is_empty() {
            return;
        }
        self.batches.push_back(Batch {
            next_index: first_index,
            term,
            waiters: waiters.into_iter(),
            accepted_at: Instant::now(),
            deadline,
        });
    }

    /// Answers the waiters for `entries`, which were just committed (in order), and
    /// records in `latency` how long the successful ones waited since acceptance.
    pub fn committed(
        &mut self,
        entries: &[Entry],
        overwritten: impl Fn() -> Response,
        answers: &mut Vec<Answer>,
        latency: Option<&mut LocalHistogram>,
    ) {
        // The appends of one batch waited alike: one observation per batch, not per entry.
        let mut run = LatencyRun::new(latency);
        for entry in entries {
            while let Some(batch) = self.batches.front_mut() {
                if batch.next_index > entry.index {
                    break; // Not ours (a no-op, or another leader's entry).
                }
                if batch.next_index < entry.index {
                    // Commits are contiguous, so this cannot happen; if it did, the fate of
                    // these appends is unknown and that is all we may say.
                    let batch = self.batches.pop_front().expect("checked non-empty");
                    batch.answer_rest(&Response::Timeout, answers);
                    continue;
                }
                let waiter = batch.waiters.next().expect("batches are never empty");
                let response = if entry.term == batch.term {
                    run.add(batch.accepted_at);
                    Response::Appended {
                        index: entry.index.0,
                        term: entry.term.0,
                    }
                } else {
                    overwritten()
                };
                waiter.answer(response, answers);
                batch.next_index = batch.next_index.next();
                if batch.waiters.len() == 0 {
                    self.batches.pop_front();
                }
                break;
            }
        }
        run.finish();
    }

    /// Answers `timeout` to every batch whose deadline has passed.
    pub fn expire(&mut self, now: Instant, answers: &mut Vec<Answer>) {
        while self
            .batches
            .front()
            .is_some_and(|batch| batch.deadline <= now)
        {
            let batch = self.batches.pop_front().expect("checked non-empty");
            batch.answer_rest(&Response::Timeout, answers);
        }
    }

    /// Answers every waiter (the node is stopping).
    pub fn abandon(&mut self, response: &Response, answers: &mut Vec<Answer>) {
        for batch in self.batches.drain(..) {
            batch.answer_rest(response, answers);
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

    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use replog_core::Payload;
    use std::time::Duration;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index: Index(index),
            term: Term(term),
            payload: Payload::Command(format!("c{index}").into()),
        }
    }

    fn overwritten() -> Response {
        Response::NotLeader {
            leader: Some("127.0.0.1:1".into()),
        }
    }

    fn waiter(seq: u64) -> ReplyTo {
        ReplyTo {
            connection: 0,
            generation: 0,
            seq,
        }
    }

    /// The answers given, as (seq, response).
    fn given(answers: &mut Vec<Answer>) -> Vec<(u64, Response)> {
        answers
            .drain(..)
            .map(|answer| (answer.to.seq, answer.response))
            .collect()
    }

    #[test]
    fn an_append_succeeds_only_when_committed_with_its_own_term() {
        let mut pending = PendingAppends::default();
        let mut answers = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        let waiters = vec![waiter(0), waiter(1)];
        pending.accepted(Index(5), Term(2), waiters, deadline, &mut answers);
        assert_eq!(pending.first_waiting(), Some(Index(5)));
        assert_eq!(pending.last_waiting(), Some(Index(6)));
        // Index 4 is not ours; 5 commits with our term; 6 with a later leader's.
        let commits = [entry(4, 2), entry(5, 2), entry(6, 3)];
        let mut latency = LocalHistogram::new(crate::metrics::LATENCY_BOUNDS_MICROS);
        pending.committed(&commits, overwritten, &mut answers, Some(&mut latency));
        assert_eq!(
            given(&mut answers),
            [
                (0, Response::Appended { index: 5, term: 2 }),
                (1, overwritten())
            ]
        );
        assert!(pending.is_empty());
        // Only the append that succeeded has a commit latency.
        assert_eq!(latency.count(), 1);
    }

    #[test]
    fn a_new_proposal_at_a_waiting_index_leaves_the_old_ones_fate_unknown() {
        let mut pending = PendingAppends::default();
        let mut answers = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        let old = vec![waiter(0)];
        pending.accepted(Index(7), Term(2), old, deadline, &mut answers);
        let new = vec![waiter(1)];
        pending.accepted(Index(7), Term(4), new, deadline, &mut answers);
        // Truncated here, but another node may still hold it and commit it later.
        assert_eq!(given(&mut answers), [(0, Response::Timeout)]);
        pending.committed(&[entry(7, 4)], overwritten, &mut answers, None);
        assert_eq!(
            given(&mut answers),
            [(1, Response::Appended { index: 7, term: 4 })]
        );
    }

    #[test]
    fn appends_past_their_deadline_are_answered_timeout() {
        let mut pending = PendingAppends::default();
        let mut answers = Vec::new();
        let now = Instant::now();
        pending.accepted(Index(1), Term(1), vec![waiter(0)], now, &mut answers);
        pending.expire(now - Duration::from_millis(1), &mut answers);
        assert!(answers.is_empty());
        pending.expire(now, &mut answers);
        assert_eq!(given(&mut answers), [(0, Response::Timeout)]);
        assert!(pending.is_empty());
    }
}
