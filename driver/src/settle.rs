//! Proposal settlement: which answer a client that proposed a command gets.
//!
//! A proposal is settled [`Settlement::Committed`] only when a `Commit` output carries its
//! index *with the term it was accepted in*. The same index committed with another term means
//! a later leader overwrote it: [`Settlement::Overwritten`] (the command is not in the log, so
//! the client may resend). Anything else the driver cannot prove either way is
//! [`Settlement::Unknown`]: the append was truncated from this node's log (another node may
//! still hold it and commit it), its deadline passed, or the node stopped.
//!
//! Generic over the waiter `W` (the node's reply address, the simulator's operation id) and
//! the time `T` (the node's `Instant`, the simulator's virtual microseconds), so the node and
//! the simulator settle with this one copy.

use replog_core::{Entry, Index, Term};
use std::collections::VecDeque;

/// What a waiting client is told about its proposal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settlement {
    /// Committed at `index` in the term it was accepted in.
    Committed { index: Index, term: Term },
    /// Its index committed with another term: the command is not in the log.
    Overwritten,
    /// Its fate cannot be known here (truncated locally, timed out, node stopping).
    Unknown,
}

/// One waiting client.
struct Waiting<W, T> {
    index: Index,
    /// The term the proposal was accepted in.
    term: Term,
    waiter: W,
    accepted_at: T,
    deadline: T,
}

/// The proposals accepted by this node as leader and not yet settled.
///
/// Every method reports settlements through `settle(waiter, settlement, accepted_at)`, in
/// index order; each waiter is settled exactly once (or handed back by [`Settler::drain`]).
///
/// Waiters stay until the commit of their index decides by term, even when this node's log
/// was truncated under them: another node may still hold the entry and commit it, and the
/// commit's term says which entry won. Only a new proposal accepted at the very same index
/// displaces the waiter there (settled [`Settlement::Unknown`]): one waiter per index.
///
/// Invariant: `waiting` is in strictly increasing index order.
pub struct Settler<W, T> {
    waiting: VecDeque<Waiting<W, T>>,
}

impl<W, T> Default for Settler<W, T> {
    fn default() -> Self {
        Settler {
            waiting: VecDeque::new(),
        }
    }
}

impl<W, T: Copy + Ord> Settler<W, T> {
    /// Records a proposal accepted at `first_index..` in `term`, one waiter per command.
    ///
    /// Accepted at an index that already has a waiter (a re-accepted session retry, or a new
    /// leader term appending where our old, truncated entry was), the old waiter is settled
    /// [`Settlement::Unknown`], never `Overwritten` (which tells the client it is safe to
    /// resend): the old entry may still be committed from another node's log.
    pub fn accepted(
        &mut self,
        first_index: Index,
        term: Term,
        waiters: Vec<W>,
        accepted_at: T,
        deadline: T,
        mut settle: impl FnMut(W, Settlement, T),
    ) {
        let mut index = first_index;
        for waiter in waiters {
            let new = Waiting {
                index,
                term,
                waiter,
                accepted_at,
                deadline,
            };
            index = index.next();
            if self
                .waiting
                .back()
                .is_none_or(|last| last.index < new.index)
            {
                self.waiting.push_back(new);
                continue;
            }
            match self.waiting.binary_search_by_key(&new.index, |w| w.index) {
                Ok(at) => {
                    let old = std::mem::replace(&mut self.waiting[at], new);
                    settle(old.waiter, Settlement::Unknown, old.accepted_at);
                }
                Err(at) => self.waiting.insert(at, new),
            }
        }
    }

    /// Settles the waiters for `entries`, which were just committed, in order.
    pub fn committed(&mut self, entries: &[Entry], mut settle: impl FnMut(W, Settlement, T)) {
        for entry in entries {
            while let Some(front) = self.waiting.front() {
                if front.index > entry.index {
                    break; // Not ours (a no-op, or another leader's entry).
                }
                let front = self.waiting.pop_front().expect("checked non-empty");
                let settlement = if front.index < entry.index {
                    // Commits are contiguous, so this cannot happen; if it did, the fate of
                    // this append is unknown and that is all we may say.
                    Settlement::Unknown
                } else if entry.term == front.term {
                    Settlement::Committed {
                        index: entry.index,
                        term: entry.term,
                    }
                } else {
                    Settlement::Overwritten
                };
                settle(front.waiter, settlement, front.accepted_at);
            }
        }
    }

    /// Settles [`Settlement::Unknown`] the waiters from the lowest index on whose deadline is
    /// at or before `now`. Deadlines follow acceptance order, so this is all of them unless a
    /// displaced waiter's successor made an earlier index wait longer.
    pub fn expire(&mut self, now: T, mut settle: impl FnMut(W, Settlement, T)) {
        while self.waiting.front().is_some_and(|w| w.deadline <= now) {
            let front = self.waiting.pop_front().expect("checked non-empty");
            settle(front.waiter, Settlement::Unknown, front.accepted_at);
        }
    }

    /// Hands back every waiter, unsettled, in index order (the node is stopping or crashed).
    pub fn drain(&mut self) -> impl Iterator<Item = W> + '_ {
        self.waiting.drain(..).map(|w| w.waiter)
    }

    /// Forgets every waiter unanswered (a simulated crash: nobody is left to answer).
    pub fn clear(&mut self) {
        self.waiting.clear();
    }

    /// The lowest index still waiting, if any.
    pub fn first_waiting(&self) -> Option<Index> {
        self.waiting.front().map(|w| w.index)
    }

    /// The highest index waiting, if any.
    pub fn last_waiting(&self) -> Option<Index> {
        self.waiting.back().map(|w| w.index)
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use replog_core::Payload;
    use std::collections::BTreeMap;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index: Index(index),
            term: Term(term),
            payload: Payload::Command(format!("c{index}").into()),
        }
    }

    /// Settlements as (waiter, settlement), for asserting.
    type Log = Vec<(u32, Settlement)>;

    fn into(log: &mut Log) -> impl FnMut(u32, Settlement, u64) + '_ {
        |waiter, settlement, _| log.push((waiter, settlement))
    }

    #[test]
    fn a_proposal_commits_only_with_the_term_it_was_accepted_in() {
        let mut settler = Settler::default();
        let mut log = Log::new();
        settler.accepted(Index(5), Term(2), vec![0, 1], 0, 100, into(&mut log));
        settler.committed(&[entry(4, 2), entry(5, 2), entry(6, 3)], into(&mut log));
        let committed = Settlement::Committed {
            index: Index(5),
            term: Term(2),
        };
        assert_eq!(log, [(0, committed), (1, Settlement::Overwritten)]);
        assert!(settler.is_empty());
    }

    #[test]
    fn a_retry_re_accepted_at_an_older_index_keeps_the_later_waiters() {
        // A session retry is accepted at its original entry, below later proposals: those
        // still wait for their own commit rather than being told their fate is unknown.
        let mut settler = Settler::default();
        let mut log = Log::new();
        settler.accepted(Index(3), Term(1), vec![0], 0, 100, into(&mut log));
        settler.accepted(Index(4), Term(1), vec![1], 0, 100, into(&mut log));
        settler.accepted(Index(3), Term(1), vec![2], 1, 100, into(&mut log));
        assert_eq!(log, [(0, Settlement::Unknown)]);
        log.clear();
        settler.committed(&[entry(3, 1), entry(4, 1)], into(&mut log));
        let at = |index| Settlement::Committed {
            index: Index(index),
            term: Term(1),
        };
        assert_eq!(log, [(2, at(3)), (1, at(4))]);
    }

    #[test]
    fn a_truncated_proposal_still_commits_if_another_node_kept_it() {
        let mut settler = Settler::default();
        let mut log = Log::new();
        settler.accepted(Index(7), Term(2), vec![0, 1], 0, 100, into(&mut log));
        // Led again in term 4, our new entry takes index 7; index 8 is not ours any more.
        settler.accepted(Index(7), Term(4), vec![2], 1, 100, into(&mut log));
        assert_eq!(log, [(0, Settlement::Unknown)]);
        log.clear();
        // Another leader kept our term-2 entries: 7 and 8 commit with term 2.
        settler.committed(&[entry(7, 2), entry(8, 2)], into(&mut log));
        let committed = Settlement::Committed {
            index: Index(8),
            term: Term(2),
        };
        assert_eq!(log, [(2, Settlement::Overwritten), (1, committed)]);
    }

    #[test]
    fn proposals_past_their_deadline_are_settled_unknown() {
        let mut settler = Settler::default();
        let mut log = Log::new();
        settler.accepted(Index(1), Term(1), vec![0], 0, 10, into(&mut log));
        settler.accepted(Index(2), Term(1), vec![1], 5, 15, into(&mut log));
        settler.expire(9, into(&mut log));
        assert!(log.is_empty());
        settler.expire(10, into(&mut log));
        assert_eq!(log, [(0, Settlement::Unknown)]);
        assert_eq!(settler.first_waiting(), Some(Index(2)));
        assert_eq!(settler.drain().collect::<Vec<_>>(), [1]);
        assert!(settler.is_empty());
    }

    #[derive(Clone, Debug)]
    enum Step {
        /// A proposal of `count` commands at `first_index` in `term`.
        Accept {
            first_index: u64,
            term: u64,
            count: u8,
        },
        /// The log commits up to `up_to`, with these terms per index (the rest default).
        Commit {
            up_to: u64,
        },
        /// The node's log at `index` now holds `term` (a later leader overwrote it).
        Overwrite {
            index: u64,
            term: u64,
        },
        Expire {
            now: u64,
        },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (1..20u64, 1..5u64, 1..4u8).prop_map(|(first_index, term, count)| Step::Accept {
                first_index,
                term,
                count
            }),
            (1..25u64).prop_map(|up_to| Step::Commit { up_to }),
            (1..25u64, 1..5u64).prop_map(|(index, term)| Step::Overwrite { index, term }),
            (0..40u64).prop_map(|now| Step::Expire { now }),
        ]
    }

    proptest! {
        /// Against a model: every waiter is settled at most once; `Committed` only when its
        /// index committed with the term it was accepted in; `Overwritten` only when its
        /// index committed with another term.
        #[test]
        fn settlement_never_claims_more_than_the_commit_shows(
            steps in proptest::collection::vec(step(), 0..40)
        ) {
            let mut settler: Settler<u32, u64> = Settler::default();
            // The terms of the cluster's log, as it will be committed.
            let mut log_terms: BTreeMap<u64, u64> = BTreeMap::new();
            let mut accepted: Vec<(u64, u64)> = Vec::new(); // waiter -> (index, term)
            let mut settled: BTreeMap<u32, Settlement> = BTreeMap::new();
            let mut committed_up_to = 0u64;
            let mut now = 0u64;
            let mut check = |waiter: u32, settlement: Settlement, _at: u64,
                             log_terms: &BTreeMap<u64, u64>, accepted: &[(u64, u64)]| {
                assert!(settled.insert(waiter, settlement).is_none(), "settled twice");
                let (index, term) = accepted[waiter as usize];
                let committed_term = log_terms.get(&index).copied().unwrap_or(1);
                match settlement {
                    Settlement::Committed { index: i, term: t } => {
                        assert_eq!((i.0, t.0), (index, term));
                        assert_eq!(committed_term, term);
                    }
                    Settlement::Overwritten => assert_ne!(committed_term, term),
                    Settlement::Unknown => {}
                }
            };
            for step in steps {
                match step {
                    Step::Accept { first_index, term, count } => {
                        let first_index = first_index.max(committed_up_to + 1);
                        let waiters: Vec<u32> = (0..count)
                            .map(|i| {
                                accepted.push((first_index + u64::from(i), term));
                                (accepted.len() - 1) as u32
                            })
                            .collect();
                        let snapshot = accepted.clone();
                        let terms = log_terms.clone();
                        settler.accepted(Index(first_index), Term(term), waiters, now, now + 10,
                            |w, s, at| check(w, s, at, &terms, &snapshot));
                    }
                    Step::Overwrite { index, term } => {
                        if index > committed_up_to {
                            log_terms.insert(index, term);
                        }
                    }
                    Step::Commit { up_to } => {
                        if up_to <= committed_up_to {
                            continue;
                        }
                        let entries: Vec<Entry> = (committed_up_to + 1..=up_to)
                            .map(|i| entry(i, log_terms.get(&i).copied().unwrap_or(1)))
                            .collect();
                        committed_up_to = up_to;
                        let snapshot = accepted.clone();
                        let terms = log_terms.clone();
                        settler.committed(&entries, |w, s, at| check(w, s, at, &terms, &snapshot));
                        // Every waiter at a committed index has been settled.
                        if let Some(first) = settler.first_waiting() {
                            prop_assert!(first.0 > committed_up_to);
                        }
                    }
                    Step::Expire { now: at } => {
                        now = now.max(at);
                        let snapshot = accepted.clone();
                        let terms = log_terms.clone();
                        settler.expire(now, |w, s, t| check(w, s, t, &terms, &snapshot));
                    }
                }
            }
            let left: Vec<u32> = settler.drain().collect();
            for waiter in left {
                prop_assert!(!settled.contains_key(&waiter), "drained a settled waiter");
            }
        }
    }
}
