//! Catching a follower up from storage: the leader's half of `Output::Fetch` and
//! `Input::Fetched`.
//!
//! The in-memory log keeps only a window (`log.rs`). A follower whose next index lies
//! before it needs entries that only storage holds. The leader asks its driver for them
//! (one bounded batch at a time, at most one request per follower outstanding), and sends
//! what comes back as an ordinary AppendEntries: the follower checks, persists and
//! acknowledges it exactly like any other, so the durability rule needs nothing new.
//! Everything fetched is committed, so it is the same in every leader's log (Leader
//! Completeness): a late answer is never wrong, only possibly no longer needed.

use crate::io::{FetchRequest, Fetched, Output};
use crate::raft::RaftCore;
use crate::types::{Entry, EntryId, NodeId, Role};

impl RaftCore {
    /// Asks storage for the entries from `peer`'s next index, unless a request is out.
    pub(crate) fn request_fetch(&mut self, peer: NodeId, outputs: &mut Vec<Output>) {
        let progress = self.role.peer_mut(peer).expect("leader tracks every peer");
        if progress.fetching.is_some() {
            return;
        }
        let from = progress.next_index;
        debug_assert!(from <= self.log.prev().index, "fetching what memory holds");
        progress.fetching = Some(from);
        self.stats.fetches_requested += 1;
        outputs.push(Output::Fetch(FetchRequest {
            peer,
            from,
            max_entries: self.config.max_append_entries,
            max_bytes: self.config.max_append_bytes,
        }));
    }

    /// Storage answered a fetch: send the entries on, then keep the pipeline going.
    pub(crate) fn handle_fetched(&mut self, fetched: Fetched, outputs: &mut Vec<Output>) {
        let from = fetched.prev.index.next();
        let peer = fetched.peer;
        let Some(progress) = self.role.peer_mut(peer) else {
            self.stats.bad_fetched_ignored += 1; // Not leader any more, or no such peer.
            return;
        };
        if progress.fetching != Some(from) {
            self.stats.bad_fetched_ignored += 1;
            return;
        }
        progress.fetching = None;
        if !self.fetched_is_sound(&fetched) {
            // A driver bug: drop it; the next heartbeat asks again.
            self.stats.bad_fetched_ignored += 1;
            return;
        }
        let progress = &self.role.progress()[&peer];
        let window = self.config.max_inflight_appends;
        if from == progress.next_index && progress.can_send(window) {
            self.send_entries(peer, fetched.prev, fetched.entries, outputs);
        }
        self.replicate_to(peer, outputs);
    }

    /// Whether a fetched batch is what was asked for: contiguous from `prev`, terms that
    /// never decrease and none from the future, within the request's limits, and the same
    /// as the in-memory log where the two overlap.
    fn fetched_is_sound(&self, fetched: &Fetched) -> bool {
        debug_assert_eq!(self.role(), Role::Leader);
        let max = self.config.max_append_entries;
        if fetched.entries.is_empty() || fetched.entries.len() > max {
            return false;
        }
        let mut previous = fetched.prev;
        for entry in &fetched.entries {
            let follows = entry.index == previous.index.next() && entry.term >= previous.term;
            if !follows || entry.term > self.term || entry.term.0 == 0 {
                return false;
            }
            previous = entry.id();
        }
        let agrees = |id: EntryId| self.log.term_at(id.index).map_or(true, |t| t == id.term);
        agrees(fetched.prev) && agrees(last_id(&fetched.entries))
    }
}

fn last_id(entries: &[Entry]) -> EntryId {
    entries.last().map_or(EntryId::ZERO, Entry::id)
}
