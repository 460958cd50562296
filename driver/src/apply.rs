//! The write applier: how one core [`Write`] reaches storage, part by part.
//!
//! A write is applied in the order the contract gives: hard state, then install, then
//! truncation, then entries, then the session checkpoint. [`apply`] walks those parts in
//! that order, checks every promise the core made about them (a broken one is a core bug,
//! reported as [`BrokenPromise`]), decides which session checkpoint storage keeps (the
//! newest), and hands each part to a [`WriteTarget`]: the node's batch stager over its
//! segment files, or the simulator's modelled disk. A torn write (the simulator's crash)
//! applies only the first `parts` of them, so [`part_count`] and [`apply`] must agree on
//! what a part is; both live here, and a new part (a membership checkpoint, say) is added
//! once, to [`Part`], and comes out everywhere.

use replog_core::{
    Entry, HardState, Index, Install, MembershipCheckpoint, MembershipHistory, SessionsCheckpoint,
    Write,
};
use std::fmt;

/// Apply every part of a write: the budget of an untorn write.
pub const ALL_PARTS: usize = usize::MAX;

/// Where the applier puts a write's parts. The checks are [`apply`]'s; a target only
/// stores (or stages) what it is handed, in the order handed.
pub trait WriteTarget<'w> {
    /// The hard state storage holds (or has staged in this batch).
    fn hard_state(&self) -> HardState;
    /// The commit index storage knows: no truncation or install may go below it.
    fn commit_index(&self) -> Index;
    /// The last entry storage holds (or has staged).
    fn last_index(&self) -> Index;
    /// The `through` of the newest session checkpoint kept (or staged), if any.
    fn sessions_through(&self) -> Option<Index>;

    fn set_hard_state(&mut self, hard_state: HardState);
    /// Replaces the whole log by an empty one after `install.last`, which becomes the
    /// commit index. The install's session table comes separately, to
    /// [`WriteTarget::keep_sessions`], if it is the newest.
    fn install(&mut self, install: &'w Install);
    /// Drops every entry above `after` (a no-op past the last one).
    fn truncate_after(&mut self, after: Index);
    /// Appends entries that continue the log.
    fn append(&mut self, entries: &'w [Entry]);
    /// Keeps `checkpoint` as the newest session table.
    fn keep_sessions(&mut self, checkpoint: &'w SessionsCheckpoint);
    /// The configuration history storage keeps (or stages in this batch), to record
    /// applied configurations in and to replace at an install.
    fn memberships(&mut self) -> &mut MembershipHistory;
}

/// A write that breaks what the core promises storage: a bug in the core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrokenPromise {
    TermWentBack { from: HardState, to: HardState },
    VoteChanged { from: HardState, to: HardState },
    InstallBelowCommit { last: Index, commit_index: Index },
    InstallBeforeFirstEntry,
    InstallOutrunsTerm,
    InstallSessionsOlderThanLog { through: Index, last: Index },
    TruncatesCommitted { after: Index, commit_index: Index },
    Gap { expected: Index, got: Index },
    EntriesOutrunTerm,
}

impl fmt::Display for BrokenPromise {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BrokenPromise::TermWentBack { from, to } => {
                write!(
                    f,
                    "durable term goes back from {} to {}",
                    from.term, to.term
                )
            }
            BrokenPromise::VoteChanged { from, to } => write!(
                f,
                "durable vote in {} changes from {:?} to {:?}",
                from.term, from.voted_for, to.voted_for
            ),
            BrokenPromise::InstallBelowCommit { last, commit_index } => write!(
                f,
                "installs a log after {last} below the commit index {commit_index}"
            ),
            BrokenPromise::InstallBeforeFirstEntry => write!(f, "installs before entry 1"),
            BrokenPromise::InstallOutrunsTerm => write!(f, "an install outruns the term"),
            BrokenPromise::InstallSessionsOlderThanLog { through, last } => write!(
                f,
                "installs a session table through {through}, older than its log after {last}"
            ),
            BrokenPromise::TruncatesCommitted {
                after,
                commit_index,
            } => write!(
                f,
                "a write truncates after {after}, below the durable commit index {commit_index}"
            ),
            BrokenPromise::Gap { expected, got } => {
                write!(
                    f,
                    "durable log would have a gap: entry {got} where {expected} goes"
                )
            }
            BrokenPromise::EntriesOutrunTerm => write!(f, "entries outrun the term"),
        }
    }
}

/// The pieces of a write, in the order they are applied; a torn write stops between two.
enum Part<'w> {
    HardState(HardState),
    Install(&'w Install),
    Truncate(Index),
    /// Each entry is a part of its own (a tear may fall between two).
    Entries(&'w [Entry]),
    Sessions(&'w SessionsCheckpoint),
    /// The configurations applied in the step, recorded together.
    Memberships(&'w [MembershipCheckpoint]),
}

fn parts(write: &Write) -> [Option<Part<'_>>; 6] {
    [
        write.hard_state.map(Part::HardState),
        write.install.as_ref().map(Part::Install),
        write.truncate_after.map(Part::Truncate),
        (!write.entries.is_empty()).then_some(Part::Entries(&write.entries)),
        write.sessions.as_ref().map(Part::Sessions),
        (!write.memberships.is_empty()).then_some(Part::Memberships(&write.memberships)),
    ]
}

/// How many pieces a torn write can stop between.
pub fn part_count(write: &Write) -> usize {
    parts(write)
        .iter()
        .flatten()
        .map(|part| match part {
            Part::Entries(entries) => entries.len(),
            _ => 1,
        })
        .sum()
}

/// Applies the first `budget` parts of `write` to `target` ([`ALL_PARTS`]: the whole
/// write), checking each against what the target holds. On a broken promise nothing more
/// of the write is applied.
pub fn apply<'w, T: WriteTarget<'w>>(
    target: &mut T,
    write: &'w Write,
    mut budget: usize,
) -> Result<(), BrokenPromise> {
    for part in parts(write).into_iter().flatten() {
        if budget == 0 {
            return Ok(());
        }
        match part {
            Part::HardState(hard_state) => {
                check_hard_state(target.hard_state(), hard_state)?;
                target.set_hard_state(hard_state);
            }
            Part::Install(install) => {
                check_install(target, install)?;
                target.install(install);
                offer_sessions(target, &install.sessions);
                target.memberships().installed(install.membership.clone());
            }
            Part::Truncate(after) => {
                let commit_index = target.commit_index();
                if after < commit_index {
                    return Err(BrokenPromise::TruncatesCommitted {
                        after,
                        commit_index,
                    });
                }
                target.truncate_after(after);
            }
            Part::Entries(entries) => {
                let kept = &entries[..entries.len().min(budget)];
                check_entries(target, kept)?;
                target.append(kept);
                budget -= kept.len();
                continue;
            }
            Part::Sessions(checkpoint) => offer_sessions(target, checkpoint),
            Part::Memberships(applied) => {
                let history = target.memberships();
                for checkpoint in applied {
                    history.record(checkpoint.clone());
                }
            }
        }
        budget -= 1;
    }
    Ok(())
}

/// Durable term never decreases, and a durable vote never changes within a term: the two
/// facts that keep a restarted node from voting twice (§5.2, thesis §3.8).
fn check_hard_state(old: HardState, new: HardState) -> Result<(), BrokenPromise> {
    if new.term < old.term {
        return Err(BrokenPromise::TermWentBack { from: old, to: new });
    }
    if new.term == old.term && old.voted_for.is_some() && new.voted_for != old.voted_for {
        return Err(BrokenPromise::VoteChanged { from: old, to: new });
    }
    Ok(())
}

fn check_install<'w, T: WriteTarget<'w>>(
    target: &T,
    install: &Install,
) -> Result<(), BrokenPromise> {
    let last = install.last;
    let commit_index = target.commit_index();
    if last.index < commit_index {
        return Err(BrokenPromise::InstallBelowCommit {
            last: last.index,
            commit_index,
        });
    }
    if last.index == Index::ZERO {
        return Err(BrokenPromise::InstallBeforeFirstEntry);
    }
    if last.term > target.hard_state().term {
        return Err(BrokenPromise::InstallOutrunsTerm);
    }
    if install.sessions.through < last.index {
        return Err(BrokenPromise::InstallSessionsOlderThanLog {
            through: install.sessions.through,
            last: last.index,
        });
    }
    Ok(())
}

/// Entries continue the log, and none outruns the term (hard state reaches the disk
/// before the lines of its batch).
fn check_entries<'w, T: WriteTarget<'w>>(
    target: &T,
    entries: &[Entry],
) -> Result<(), BrokenPromise> {
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        return Ok(());
    };
    let expected = target.last_index().next();
    if first.index != expected {
        return Err(BrokenPromise::Gap {
            expected,
            got: first.index,
        });
    }
    if last.term > target.hard_state().term {
        return Err(BrokenPromise::EntriesOutrunTerm);
    }
    Ok(())
}

/// Storage keeps the newest checkpoint: one written before an install in the same batch
/// may be older than the install's.
fn offer_sessions<'w, T: WriteTarget<'w>>(target: &mut T, offered: &'w SessionsCheckpoint) {
    if target
        .sessions_through()
        .is_none_or(|through| offered.through > through)
    {
        target.keep_sessions(offered);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use replog_core::{EntryId, NodeId, Payload, Term, WriteId};

    /// A log in memory, the simplest target.
    #[derive(Default)]
    struct Memory {
        hard_state: HardState,
        commit_index: Index,
        boundary: Index,
        entries: Vec<Entry>,
        sessions: Option<SessionsCheckpoint>,
        memberships: MembershipHistory,
    }

    impl<'w> WriteTarget<'w> for Memory {
        fn hard_state(&self) -> HardState {
            self.hard_state
        }
        fn commit_index(&self) -> Index {
            self.commit_index
        }
        fn last_index(&self) -> Index {
            self.boundary.plus(self.entries.len() as u64)
        }
        fn sessions_through(&self) -> Option<Index> {
            self.sessions.as_ref().map(|checkpoint| checkpoint.through)
        }
        fn set_hard_state(&mut self, hard_state: HardState) {
            self.hard_state = hard_state;
        }
        fn install(&mut self, install: &Install) {
            self.boundary = install.last.index;
            self.commit_index = install.last.index;
            self.entries.clear();
        }
        fn truncate_after(&mut self, after: Index) {
            let keep = self.boundary.count_to(after) as usize;
            self.entries.truncate(keep);
        }
        fn append(&mut self, entries: &[Entry]) {
            self.entries.extend_from_slice(entries);
        }
        fn keep_sessions(&mut self, checkpoint: &SessionsCheckpoint) {
            self.sessions = Some(checkpoint.clone());
        }
        fn memberships(&mut self) -> &mut MembershipHistory {
            &mut self.memberships
        }
    }

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index: Index(index),
            term: Term(term),
            payload: Payload::Noop,
        }
    }

    fn term(term: u64, vote: Option<u64>) -> HardState {
        HardState {
            term: Term(term),
            voted_for: vote.map(NodeId),
        }
    }

    fn checkpoint(through: u64) -> SessionsCheckpoint {
        SessionsCheckpoint {
            through: Index(through),
            ..SessionsCheckpoint::default()
        }
    }

    #[test]
    fn parts_apply_in_order_hard_state_install_truncation_entries_sessions() {
        let mut memory = Memory::default();
        let first = Write {
            id: WriteId(1),
            hard_state: Some(term(1, None)),
            entries: vec![entry(1, 1), entry(2, 1), entry(3, 1)],
            ..Write::default()
        };
        apply(&mut memory, &first, ALL_PARTS).unwrap();
        let second = Write {
            id: WriteId(2),
            hard_state: Some(term(2, Some(1))),
            truncate_after: Some(Index(1)),
            entries: vec![entry(2, 2)],
            sessions: Some(checkpoint(2)),
            ..Write::default()
        };
        assert_eq!(part_count(&second), 4);
        apply(&mut memory, &second, ALL_PARTS).unwrap();
        assert_eq!(memory.entries, vec![entry(1, 1), entry(2, 2)]);
        assert_eq!(memory.sessions_through(), Some(Index(2)));
    }

    #[test]
    fn a_torn_write_applies_a_prefix_of_its_parts() {
        let write = Write {
            id: WriteId(1),
            hard_state: Some(term(1, None)),
            entries: vec![entry(1, 1), entry(2, 1)],
            sessions: Some(checkpoint(2)),
            ..Write::default()
        };
        for budget in 0..part_count(&write) {
            let mut memory = Memory::default();
            apply(&mut memory, &write, budget).unwrap();
            assert_eq!(memory.entries.len(), budget.saturating_sub(1));
            assert!(memory.sessions.is_none(), "the checkpoint is the last part");
        }
    }

    #[test]
    fn the_older_of_two_checkpoints_is_not_kept() {
        let mut memory = Memory {
            hard_state: term(3, None),
            ..Memory::default()
        };
        let write = Write {
            id: WriteId(1),
            install: Some(Install {
                membership: None,
                last: EntryId {
                    index: Index(10),
                    term: Term(2),
                },
                data: Vec::new(),
                sessions: checkpoint(12),
            }),
            sessions: Some(checkpoint(11)),
            ..Write::default()
        };
        apply(&mut memory, &write, ALL_PARTS).unwrap();
        assert_eq!(memory.sessions_through(), Some(Index(12)));
        assert_eq!(memory.last_index(), Index(10));
    }

    #[test]
    fn broken_promises_are_reported() {
        let mut memory = Memory {
            hard_state: term(3, Some(2)),
            commit_index: Index(2),
            entries: vec![entry(1, 1), entry(2, 1), entry(3, 3)],
            ..Memory::default()
        };
        let cases = [
            (
                Write {
                    hard_state: Some(term(2, None)),
                    ..Write::default()
                },
                "durable term goes back",
            ),
            (
                Write {
                    hard_state: Some(term(3, Some(1))),
                    ..Write::default()
                },
                "durable vote in",
            ),
            (
                Write {
                    truncate_after: Some(Index(1)),
                    ..Write::default()
                },
                "truncates after",
            ),
            (
                Write {
                    entries: vec![entry(5, 3)],
                    ..Write::default()
                },
                "gap",
            ),
            (
                Write {
                    entries: vec![entry(4, 4)],
                    ..Write::default()
                },
                "outrun the term",
            ),
        ];
        for (write, says) in cases {
            let broken = apply(&mut memory, &write, ALL_PARTS).unwrap_err();
            assert!(broken.to_string().contains(says), "{broken} for {says}");
        }
        assert_eq!(memory.last_index(), Index(3), "nothing broken was applied");
    }
}
