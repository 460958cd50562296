//! Client history and linearizability of appends, checked incrementally.
//!
//! An append's command is `op<N>`, unique per operation, so the committed log names the
//! operation behind every entry. As entries commit and replies arrive, this checks:
//! - no phantom: every committed command was invoked;
//! - at most once: no command is committed twice (also for unknown outcomes, and for
//!   appends with a session that their client retried however often);
//! - acknowledged means committed, at the acknowledged index; failed means never committed;
//! - real-time order: if A was acknowledged before B was invoked, index(A) < index(B).

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
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
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
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub invoked: u64,
    pub acknowledged: u64,
    pub failed: u64,
    pub unknown: u64,
}

impl History {
    pub fn invoke(&mut self, client: Option<usize>, now_us: u64) -> OpId {
        self.ops.push(Op {
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
        self.ops[op].committed_at = Some(index);
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
            tally.invoked += 1;
            match op.outcome {
                Outcome::Acknowledged { .. } => tally.acknowledged += 1,
                Outcome::Failed => tally.failed += 1,
                Outcome::Unknown | Outcome::Pending => tally.unknown += 1,
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
