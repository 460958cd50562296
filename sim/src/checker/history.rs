//! Client history and linearizability of appends, checked incrementally.
//!
//! An append's command is `op<N>`, unique per operation, so the committed log names the
//! operation behind every entry. As entries commit and replies arrive, this checks:
//! - no phantom: every committed command was invoked;
//! - at most once: no command is committed twice (also for unknown outcomes, and for
//!   appends with a session that their client retried however often);
//! - acknowledged means committed, at the acknowledged index; failed means never committed;
//! - real-time order: if A was acknowledged before B was invoked, index(A) < index(B).
//!
//! Reads return a prefix of the committed log, named by its last entry (index, term); the
//! checker (`Checker::read_returned`) verifies that it is the committed log's. A
//! linearizable or lease read must also be fresh:
//! - it holds every append acknowledged before the read was invoked;
//! - it holds at least what any such read returned that completed before it was invoked;
//! - no append invoked after it completed sits inside the prefix it returned.
//!
//! `local` reads are checked only for being a committed prefix.

use crate::report::Violation;
use replog_core::{Index, Term};
use std::num::NonZeroU64;

pub type OpId = usize;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Pending,
    Acknowledged {
        index: Index,
        term: Term,
    },
    /// Definitely not appended: another entry committed where this one was accepted.
    Failed,
    /// The client gave up waiting: the command may or may not be in the log.
    Unknown,
    /// A read returned the committed prefix ending at `index` (0: empty) in `term`.
    Read {
        index: Index,
        term: Term,
    },
}

/// What an operation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    Append,
    Read(Consistency),
}

/// How fresh a read must be (in scenario files: `"linearizable"`, `"lease"`, `"local"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    /// ReadIndex on the leader (or through it).
    Linearizable,
    /// The leader's lease, else ReadIndex.
    Lease,
    /// Whatever the contacted node applied.
    Local,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    pub kind: OpKind,
    /// `None` for the liveness probe, which the simulator proposes itself.
    pub client: Option<usize>,
    pub invoke_us: u64,
    pub complete_us: Option<u64>,
    pub outcome: Outcome,
    /// Where this operation's command sits in the committed log, once it does.
    pub committed_at: Option<Index>,
    /// The sequence number an append at most once carries (its client id names the
    /// client); `None` for a plain append.
    pub seq: Option<NonZeroU64>,
}

#[derive(Default)]
pub struct History {
    pub ops: Vec<Op>,
    /// Acknowledgements in completion order: (time, index, highest index so far).
    /// Invariant: times non-decreasing (events run in time order).
    acks: Vec<(u64, Index, Index)>,
    /// Fresh (linearizable or lease) reads in completion order: (time, index, highest
    /// index so far). Same invariant.
    reads: Vec<(u64, Index, Index)>,
    /// Every read in completion order, with the same shape: no append invoked after one
    /// may commit inside what it returned.
    any_reads: Vec<(u64, Index, Index)>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub invoked: u64,
    pub acknowledged: u64,
    pub failed: u64,
    pub unknown: u64,
    /// Reads invoked and answered (any consistency).
    pub reads: u64,
    pub reads_answered: u64,
}

impl History {
    pub fn invoke(&mut self, client: Option<usize>, now_us: u64) -> OpId {
        self.invoke_kind(client, OpKind::Append, now_us)
    }

    pub fn invoke_kind(&mut self, client: Option<usize>, kind: OpKind, now_us: u64) -> OpId {
        self.ops.push(Op {
            kind,
            client,
            invoke_us: now_us,
            complete_us: None,
            outcome: Outcome::Pending,
            committed_at: None,
            seq: None,
        });
        self.ops.len() - 1
    }

    /// An append that `client` retries with the same `seq` until it learns the outcome.
    pub fn invoke_once(&mut self, client: usize, seq: NonZeroU64, now_us: u64) -> OpId {
        let op = self.invoke(Some(client), now_us);
        self.ops[op].seq = Some(seq);
        op
    }

    pub fn command(op: OpId) -> String {
        format!("op{op}")
    }

    pub fn parse(command: &str) -> Option<OpId> {
        command.strip_prefix("op")?.parse().ok()
    }

    pub fn is_pending(&self, op: OpId) -> bool {
        self.ops[op].outcome == Outcome::Pending
    }

    /// `command` was observed committed at `index` (the first time that index committed).
    pub fn committed(&mut self, command: &str, index: Index) -> Result<(), Violation> {
        let Some(op) = History::parse(command).filter(|&op| op < self.ops.len()) else {
            return Err(violation(format!(
                "committed command {command:?} at {index} was never invoked (phantom)"
            )));
        };
        let record = &self.ops[op];
        if record.kind != OpKind::Append {
            return Err(violation(format!(
                "committed command {command:?} at {index} names a read (phantom)"
            )));
        }
        if let Some(earlier) = record.committed_at {
            return Err(violation(format!(
                "op{op} committed twice, at {earlier} and at {index}"
            )));
        }
        if record.outcome == Outcome::Failed {
            return Err(violation(format!(
                "op{op} was reported failed but committed at {index}"
            )));
        }
        let before = self
            .acks
            .partition_point(|&(time_us, _, _)| time_us < record.invoke_us);
        if let Some(&(_, _, highest)) = before.checked_sub(1).map(|k| &self.acks[k]) {
            if highest >= index {
                return Err(violation(format!(
                    "op{op} was invoked after an append at {highest} was acknowledged, yet \
                     committed before it, at {index}"
                )));
            }
        }
        let before = self
            .any_reads
            .partition_point(|&(time_us, _, _)| time_us < record.invoke_us);
        if let Some(&(_, _, highest)) = before.checked_sub(1).map(|k| &self.any_reads[k]) {
            if highest >= index {
                return Err(violation(format!(
                    "op{op} was invoked after a read returned the log up to {highest}, yet \
                     committed inside it, at {index}"
                )));
            }
        }
        self.ops[op].committed_at = Some(index);
        Ok(())
    }

    /// Read `op` returned the committed prefix up to `index` (its caller checked that it is
    /// committed). Checks its freshness against appends and earlier reads.
    pub fn read_returned(
        &mut self,
        op: OpId,
        index: Index,
        term: Term,
        now_us: u64,
    ) -> Result<(), Violation> {
        let record = &self.ops[op];
        if record.outcome != Outcome::Pending {
            return Ok(());
        }
        let OpKind::Read(consistency) = record.kind else {
            panic!("op{op} is not a read");
        };
        let invoked = record.invoke_us;
        if consistency != Consistency::Local {
            let highest_before = |list: &Vec<(u64, Index, Index)>| {
                let before = list.partition_point(|&(time_us, _, _)| time_us < invoked);
                before.checked_sub(1).map(|k| list[k].2)
            };
            if let Some(acked) = highest_before(&self.acks).filter(|&acked| acked > index) {
                return Err(violation(format!(
                    "stale read: op{op} ({consistency:?}) returned the log up to {index}, \
                     but an append at {acked} was acknowledged before it was invoked"
                )));
            }
            if let Some(read) = highest_before(&self.reads).filter(|&read| read > index) {
                return Err(violation(format!(
                    "stale read: op{op} ({consistency:?}) returned the log up to {index}, \
                     but a read that completed before it was invoked returned up to {read}"
                )));
            }
            let highest = self.reads.last().map_or(index, |&(_, _, h)| h.max(index));
            self.reads.push((now_us, index, highest));
        }
        let highest = self
            .any_reads
            .last()
            .map_or(index, |&(_, _, h)| h.max(index));
        self.any_reads.push((now_us, index, highest));
        let record = &mut self.ops[op];
        record.outcome = Outcome::Read { index, term };
        record.complete_us = Some(now_us);
        Ok(())
    }

    /// The client learned `outcome`. Late replies to finished operations are ignored.
    pub fn complete(&mut self, op: OpId, outcome: Outcome, now_us: u64) -> Result<(), Violation> {
        let record = &mut self.ops[op];
        if record.outcome != Outcome::Pending {
            return Ok(());
        }
        match outcome {
            Outcome::Acknowledged { index, .. } if record.committed_at != Some(index) => {
                return Err(violation(format!(
                    "op{op} acknowledged at {index} but the committed log holds it at {:?}",
                    record.committed_at
                )));
            }
            Outcome::Acknowledged { index, .. } => {
                let highest = self.acks.last().map_or(index, |&(_, _, h)| h.max(index));
                self.acks.push((now_us, index, highest));
            }
            Outcome::Failed if record.committed_at.is_some() => {
                return Err(violation(format!(
                    "op{op} reported failed but committed at {:?}",
                    record.committed_at
                )));
            }
            _ => {}
        }
        record.outcome = outcome;
        record.complete_us = Some(now_us);
        Ok(())
    }

    pub fn tally(&self) -> Tally {
        let mut tally = Tally::default();
        for op in self.ops.iter().filter(|op| op.client.is_some()) {
            if let OpKind::Read(_) = op.kind {
                tally.reads += 1;
                if let Outcome::Read { .. } = op.outcome {
                    tally.reads_answered += 1;
                }
                continue;
            }
            tally.invoked += 1;
            match op.outcome {
                Outcome::Acknowledged { .. } => tally.acknowledged += 1,
                Outcome::Failed => tally.failed += 1,
                Outcome::Unknown | Outcome::Pending | Outcome::Read { .. } => tally.unknown += 1,
            }
        }
        tally
    }
}

fn violation(detail: String) -> Violation {
    Violation::new("Linearizability", &[], detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acked(index: u64) -> Outcome {
        Outcome::Acknowledged {
            index: Index(index),
            term: Term(1),
        }
    }

    #[test]
    fn a_valid_history_passes() {
        let mut history = History::default();
        let a = history.invoke(Some(0), 0);
        let b = history.invoke(Some(1), 5);
        history.committed("op1", Index(2)).unwrap();
        history.committed("op0", Index(3)).unwrap();
        // Concurrent operations may commit in either order.
        history.complete(a, acked(3), 10).unwrap();
        history.complete(b, acked(2), 11).unwrap();
        let c = history.invoke(Some(0), 20);
        history.complete(c, Outcome::Unknown, 30).unwrap();
        history.committed("op2", Index(4)).unwrap();
        assert_eq!(history.tally().acknowledged, 2);
    }

    #[test]
    fn phantom_and_duplicate_commands_are_reported() {
        let mut history = History::default();
        history.invoke(Some(0), 0);
        assert!(history.committed("op7", Index(1)).is_err());
        assert!(history.committed("hello", Index(1)).is_err());
        history.committed("op0", Index(1)).unwrap();
        let error = history.committed("op0", Index(2)).unwrap_err();
        assert_eq!(error.invariant, "Linearizability");
    }

    #[test]
    fn an_unknown_outcome_committed_twice_is_reported() {
        let mut history = History::default();
        let op = history.invoke(Some(0), 0);
        history.complete(op, Outcome::Unknown, 5).unwrap();
        history.committed("op0", Index(1)).unwrap();
        assert!(history.committed("op0", Index(3)).is_err());
    }

    #[test]
    fn an_acknowledgement_at_the_wrong_index_is_reported() {
        let mut history = History::default();
        let op = history.invoke(Some(0), 0);
        history.committed("op0", Index(4)).unwrap();
        assert!(history.complete(op, acked(5), 9).is_err());
        let never = history.invoke(Some(0), 0);
        assert!(history.complete(never, acked(6), 9).is_err());
    }

    #[test]
    fn a_failed_operation_that_commits_is_reported() {
        let mut history = History::default();
        let op = history.invoke(Some(0), 0);
        history.complete(op, Outcome::Failed, 5).unwrap();
        assert!(history.committed("op0", Index(1)).is_err());
    }

    fn read(consistency: Consistency) -> OpKind {
        OpKind::Read(consistency)
    }

    #[test]
    fn a_linearizable_read_must_hold_every_append_acknowledged_before_it() {
        let mut history = History::default();
        let a = history.invoke(Some(0), 0);
        history.committed("op0", Index(3)).unwrap();
        history.complete(a, acked(3), 10).unwrap();
        // Concurrent with the acknowledgement: either answer is fine.
        let early = history.invoke_kind(Some(1), read(Consistency::Linearizable), 9);
        history.read_returned(early, Index(2), Term(1), 12).unwrap();
        let late = history.invoke_kind(Some(1), read(Consistency::Lease), 11);
        let error = history
            .read_returned(late, Index(2), Term(1), 15)
            .unwrap_err();
        assert!(error.detail.contains("stale read"), "{error}");
        // A local read may lag.
        let local = history.invoke_kind(Some(2), read(Consistency::Local), 11);
        history.read_returned(local, Index(1), Term(1), 15).unwrap();
    }

    #[test]
    fn reads_are_ordered_in_real_time_with_reads_and_later_appends() {
        let mut history = History::default();
        let first = history.invoke_kind(Some(0), read(Consistency::Linearizable), 0);
        history.read_returned(first, Index(5), Term(2), 10).unwrap();
        let second = history.invoke_kind(Some(1), read(Consistency::Linearizable), 11);
        let error = history
            .read_returned(second, Index(4), Term(2), 12)
            .unwrap_err();
        assert!(error.detail.contains("a read that completed"), "{error}");
        // An append invoked after a read returned 5 cannot sit at or below 5.
        history.invoke(Some(2), 20);
        let op = History::command(2);
        let error = history.committed(&op, Index(5)).unwrap_err();
        assert!(error.detail.contains("after a read"), "{error}");
        history.committed(&op, Index(6)).unwrap();
    }

    #[test]
    fn real_time_order_violations_are_reported() {
        let mut history = History::default();
        let a = history.invoke(Some(0), 0);
        history.committed("op0", Index(5)).unwrap();
        history.complete(a, acked(5), 10).unwrap();
        history.invoke(Some(1), 11);
        // B was invoked after A's acknowledgement but sits below it.
        let error = history.committed("op1", Index(3)).unwrap_err();
        assert!(error.detail.contains("invoked after"), "{error}");
    }
}
