//! Accepting AppendEntries (§5.3): the consistency check, conflict truncation, and the
//! follower's commit rule.

use crate::io::Output;
use crate::message::{AppendResponse, ConflictHint, Message, MessageBody};
use crate::planted::{self, Bug};
use crate::raft::RaftCore;
use crate::types::{Entry, Index, Role, Term};

impl RaftCore {
    /// Handles AppendEntries. The term rule has already run, so `message.term <= self.term`.
    pub(crate) fn handle_append_entries(&mut self, message: Message, outputs: &mut Vec<Output>) {
        let MessageBody::AppendEntries {
            prev_log_index,
            prev_log_term,
            entries,
            leader_commit,
        } = message.body
        else {
            unreachable!("dispatched by body");
        };
        if message.term < self.term && !planted::active(Bug::StaleTermAppend) {
            // A deposed leader: tell it our term so it steps down.
            let reply = AppendResponse {
                index: prev_log_index,
                reject: Some(self.hint_at(prev_log_index)),
            };
            let reply = self.message(message.from, MessageBody::AppendEntriesResponse(reply));
            self.send_after_persist(reply, outputs);
            return;
        }
        if self.role() == Role::Leader {
            // Two leaders in one term: impossible unless a peer is faulty. Ignore it.
            self.stats.messages_ignored += 1;
            return;
        }
        if !entries_are_well_formed(prev_log_index, prev_log_term, message.term, &entries) {
            self.stats.messages_ignored += 1;
            return;
        }
        // A (pre)candidate of this term learns that someone else won it; a follower hears
        // its leader, which restarts the election timer (Figure 2).
        self.become_follower(self.term, Some(message.from));
        self.reset_election_timer();

        let (prev_log_index, prev_log_term, entries) =
            self.skip_forgotten(prev_log_index, prev_log_term, entries);
        let reply = if self.log.matches(prev_log_index, prev_log_term) {
            let Some(last_verified) = self.accept_entries(prev_log_index, &entries) else {
                self.stats.unsafe_truncations_refused += 1;
                return;
            };
            if last_verified > self.verified_in_term() {
                self.verified = (self.term, last_verified);
            }
            // The follower's commit rule: never beyond what this request proved matches.
            let commit = if planted::active(Bug::CommitNotCapped) {
                leader_commit.min(self.log.last_index())
            } else {
                leader_commit.min(last_verified)
            };
            if commit > self.commit_index {
                self.commit_index = commit;
            }
            AppendResponse {
                index: last_verified,
                reject: None,
            }
        } else {
            if planted::active(Bug::CommitOnRejectedAppend) {
                let commit = leader_commit.min(self.log.last_index());
                self.commit_index = self.commit_index.max(commit);
            }
            AppendResponse {
                index: prev_log_index,
                reject: Some(self.hint_at(prev_log_index)),
            }
        };
        let reply = self.message(message.from, MessageBody::AppendEntriesResponse(reply));
        self.send_after_persist(reply, outputs);
    }

    /// Moves an AppendEntries that starts before the in-memory window up to the window's
    /// start. Everything before the window is committed here, so the leader of this term
    /// holds it too (Leader Completeness) and it matches: such entries are skipped rather
    /// than compared, and the check happens at the window's edge instead.
    fn skip_forgotten(
        &self,
        prev_log_index: Index,
        prev_log_term: Term,
        entries: Vec<Entry>,
    ) -> (Index, Term, Vec<Entry>) {
        let window = self.log.prev();
        if prev_log_index >= window.index {
            return (prev_log_index, prev_log_term, entries);
        }
        debug_assert!(
            window.index <= self.commit_index,
            "forgot uncommitted entries"
        );
        let skip = prev_log_index.count_to(window.index) as usize;
        if skip >= entries.len() {
            // Nothing new: check at the window's edge, which the leader holds too.
            return (window.index, window.term, Vec::new());
        }
        let mut entries = entries;
        let rest = entries.split_off(skip);
        let at_window = entries.last().expect("skip >= 1 entries").term;
        (window.index, at_window, rest)
    }

    /// Appends the entries after `prev`, truncating only at a real conflict. Returns the last
    /// index verified against the leader, or `None` if accepting would truncate a committed
    /// entry or one already verified in this term (only a faulty leader asks either).
    fn accept_entries(&mut self, prev: Index, entries: &[Entry]) -> Option<Index> {
        let last_verified = prev.plus(entries.len() as u64);
        let Some(first_new) = self.log.first_conflict(entries) else {
            // Everything is already here: a duplicate or stale request truncates nothing.
            if planted::active(Bug::TruncateWithoutConflict)
                && last_verified >= self.log.prev().index
            {
                self.log.truncate_after(last_verified);
                self.writes.stage_truncate(last_verified);
                self.membership_truncated(last_verified);
            }
            return Some(last_verified);
        };
        let new_entries = &entries[first_new..];
        let conflict_at = new_entries[0].index;
        if conflict_at <= self.log.last_index() {
            // Committed entries are never truncated (§5.4). Nor is anything this node already
            // verified against this term's leader: a leader's log only grows during its term,
            // so a request contradicting it is from a faulty peer, and acknowledgements of
            // those entries may still be on their way to be counted.
            if conflict_at <= self.commit_index || conflict_at <= self.verified_in_term() {
                return None;
            }
            self.log.truncate_after(conflict_at.prev());
            self.writes.stage_truncate(conflict_at.prev());
            self.membership_truncated(conflict_at.prev());
        }
        self.log.append(new_entries);
        self.writes.stage_entries(new_entries);
        self.membership_appended(new_entries);
        Some(last_verified)
    }

    /// The highest index verified against the current term's leader (0 if none yet).
    pub(crate) fn verified_in_term(&self) -> Index {
        match self.verified {
            (term, index) if term == self.term => index,
            _ => Index::ZERO,
        }
    }

    /// Where the leader should look next after a failed check at `index`.
    fn hint_at(&self, index: Index) -> ConflictHint {
        match self.log.term_at(index) {
            Ok(term) if index <= self.log.last_index() => ConflictHint {
                conflict_term: Some(term),
                first_index: self.log.first_index_of_term_at(index),
            },
            _ => ConflictHint {
                conflict_term: None,
                first_index: self.log.last_index().next(),
            },
        }
    }
}

/// Validates entries from the network once: contiguous after `prev`, terms non-decreasing
/// from `prev_term` and no later than the sender's term.
fn entries_are_well_formed(
    prev: Index,
    prev_term: Term,
    leader_term: Term,
    entries: &[Entry],
) -> bool {
    let mut expected = prev.next();
    let mut previous_term = prev_term;
    for entry in entries {
        if entry.index != expected || entry.term < previous_term || entry.term > leader_term {
            return false;
        }
        if entry.term == Term(0) {
            return false;
        }
        expected = expected.next();
        previous_term = entry.term;
    }
    true
}
