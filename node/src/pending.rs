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
use replog_driver::settle::{Settlement, Settler};
use std::time::Instant;

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

/// The node's side of settlement: the shared [`Settler`] (which decides), answers in the
/// client protocol's words, and commit latencies.
#[derive(Default)]
pub struct PendingAppends {
    settler: Settler<ReplyTo, Instant>,
}

/// A settlement in the client protocol: an unknown fate is `timeout`.
fn response(settlement: Settlement, overwritten: &impl Fn() -> Response) -> Response {
    match settlement {
        Settlement::Committed { index, term } => Response::Appended {
            index: index.0,
            term: term.0,
        },
        Settlement::Overwritten => overwritten(),
        Settlement::Unknown => Response::Timeout,
    }
}

fn unknown_is_timeout(answers: &mut Vec<Answer>) -> impl FnMut(ReplyTo, Settlement, Instant) + '_ {
    move |waiter, settlement, _| {
        debug_assert_eq!(settlement, Settlement::Unknown);
        waiter.answer(Response::Timeout, answers);
    }
}

impl PendingAppends {
    /// Records a proposal accepted at `first_index..` in `term`, one waiter per command.
    /// An older waiter at one of those indexes is answered `timeout`; the others keep
    /// waiting for their own commit (see [`Settler::accepted`]).
    pub fn accepted(
        &mut self,
        first_index: Index,
        term: Term,
        waiters: Vec<ReplyTo>,
        deadline: Instant,
        answers: &mut Vec<Answer>,
    ) {
        let now = Instant::now();
        let settle = unknown_is_timeout(answers);
        self.settler
            .accepted(first_index, term, waiters, now, deadline, settle);
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
        self.settler
            .committed(entries, |waiter, settlement, accepted_at| {
                if let Settlement::Committed { .. } = settlement {
                    run.add(accepted_at);
                }
                waiter.answer(response(settlement, &overwritten), answers);
            });
        run.finish();
    }

    /// Answers `timeout` to every batch whose deadline has passed.
    pub fn expire(&mut self, now: Instant, answers: &mut Vec<Answer>) {
        self.settler.expire(now, unknown_is_timeout(answers));
    }

    /// Answers every waiter (the node is stopping).
    pub fn abandon(&mut self, response: &Response, answers: &mut Vec<Answer>) {
        for waiter in self.settler.drain() {
            waiter.answer(response.clone(), answers);
        }
    }

    /// The lowest index still waiting, if any.
    pub fn first_waiting(&self) -> Option<Index> {
        self.settler.first_waiting()
    }

    /// The highest index waiting, if any.
    pub fn last_waiting(&self) -> Option<Index> {
        self.settler.last_waiting()
    }

    pub fn is_empty(&self) -> bool {
        self.settler.is_empty()
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
