//! A leader's view of one follower's log (thesis §10.2.1 pipelining, etcd's `Progress`).

use crate::log::Log;
use crate::message::ConflictHint;
use crate::types::Index;
use std::collections::VecDeque;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReplicationState {
    /// Where the follower's log diverges is unknown: one AppendEntries at a time.
    Probe,
    /// The follower matched: stream AppendEntries optimistically, up to the window.
    Replicate,
}

#[derive(Clone, Debug)]
pub(crate) struct Progress {
    /// The highest index known to match the leader's log.
    /// Invariant: `match_index < next_index`, and it never decreases within a term.
    pub match_index: Index,
    /// The next index to send.
    /// Invariant: `next_index <= leader's last index + 1`.
    pub next_index: Index,
    pub state: ReplicationState,
    /// In `Probe`: a probe is outstanding; send nothing more until it is answered or the
    /// next heartbeat.
    pub probe_sent: bool,
    /// In `Replicate`: the last index of each unacknowledged AppendEntries, oldest first.
    /// Invariant: strictly increasing, every element `< next_index`, empty in `Probe`.
    pub inflight: VecDeque<Index>,
    /// Heard from this follower in the current CheckQuorum period.
    pub recently_active: bool,
    /// Entries from this index were asked of storage (`Output::Fetch`) and not yet
    /// delivered. At most one request per follower is outstanding; an answer that no longer
    /// starts at `next_index` is dropped and asked again.
    pub fetching: Option<Index>,
}

impl Progress {
    pub fn new(next_index: Index) -> Progress {
        Progress {
            match_index: Index::ZERO,
            next_index,
            state: ReplicationState::Probe,
            probe_sent: false,
            inflight: VecDeque::new(),
            recently_active: false,
            fetching: None,
        }
    }

    /// Records that an AppendEntries ending at `last_index` is on its way.
    pub fn sent(&mut self, last_index: Index) {
        match self.state {
            ReplicationState::Probe => self.probe_sent = true,
            ReplicationState::Replicate => {
                if last_index >= self.next_index {
                    self.next_index = last_index.next();
                    self.inflight.push_back(last_index);
                }
            }
        }
    }

    /// Whether another AppendEntries with entries may go out now.
    pub fn can_send(&self, window: usize) -> bool {
        match self.state {
            ReplicationState::Probe => !self.probe_sent,
            ReplicationState::Replicate => self.inflight.len() < window,
        }
    }

    /// The follower proved it matches up to `index`. Returns whether `match_index` advanced.
    pub fn acknowledged(&mut self, index: Index) -> bool {
        let advanced = index > self.match_index;
        if advanced {
            self.match_index = index;
        }
        if self.next_index <= self.match_index {
            self.next_index = self.match_index.next();
        }
        while self.inflight.front().is_some_and(|&last| last <= index) {
            self.inflight.pop_front();
        }
        if self.state == ReplicationState::Probe {
            self.state = ReplicationState::Replicate;
            self.probe_sent = false;
            self.inflight.clear();
            self.next_index = self.match_index.next();
        }
        advanced
    }

    /// The follower rejected an AppendEntries whose `prev_log_index` was `rejected`.
    /// Returns whether the rejection was fresh (and so `next_index` moved back).
    pub fn rejected(&mut self, rejected: Index, hint: ConflictHint, log: &Log) -> bool {
        if rejected < self.match_index {
            return false; // Stale: we already know it matches beyond this.
        }
        if self.state == ReplicationState::Probe && rejected.next() != self.next_index {
            return false; // Stale: an answer to an older probe.
        }
        let mut next = match hint.conflict_term {
            Some(term) => match log.last_index_of_term(term) {
                Some(last_of_term) => last_of_term.next(),
                None => hint.first_index,
            },
            None => hint.first_index,
        };
        next = next.min(rejected).max(self.match_index.next());
        self.next_index = next;
        self.become_probe();
        true
    }

    /// An install of the log's boundary `at` is on its way: probe from just after it, and
    /// send nothing more until the follower answers (or the next heartbeat).
    pub fn installing(&mut self, at: Index) {
        assert!(
            at >= self.match_index,
            "installing below what the follower holds"
        );
        self.next_index = at.next();
        self.state = ReplicationState::Probe;
        self.probe_sent = true;
        self.inflight.clear();
    }

    pub fn become_probe(&mut self) {
        self.state = ReplicationState::Probe;
        self.probe_sent = false;
        self.inflight.clear();
        if self.next_index <= self.match_index {
            self.next_index = self.match_index.next();
        }
    }

    /// Asserts the invariants on the fields.
    pub fn check_invariants(&self, last_index: Index, window: usize) {
        assert!(
            self.match_index < self.next_index,
            "progress: match >= next"
        );
        assert!(
            self.next_index <= last_index.next(),
            "progress: next beyond log"
        );
        assert!(self.inflight.len() <= window, "progress: window overflow");
        if self.state == ReplicationState::Probe {
            assert!(self.inflight.is_empty(), "progress: inflight while probing");
        }
        let mut previous = Index::ZERO;
        for &last in &self.inflight {
            assert!(
                last > previous && last < self.next_index,
                "progress: inflight order"
            );
            previous = last;
        }
    }
}
