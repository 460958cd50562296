//! Tracks writes between `Output::Persist` and `Input::Persisted`, and the messages that
//! must wait for them (the durability rule, thesis §3.8).

use crate::io::{Install, Write};
use crate::membership::MembershipCheckpoint;
use crate::message::Message;
use crate::sessions::SessionsCheckpoint;
use crate::types::{Entry, HardState, Index, WriteId};
use std::collections::VecDeque;

/// A write handed to the driver and not yet reported durable.
#[derive(Debug)]
struct InFlightWrite {
    id: WriteId,
    /// The log's last index once this write is applied to storage.
    log_last_index: Index,
    truncate_after: Option<Index>,
    hard_state: Option<HardState>,
    /// Messages to send once this write is durable.
    held: Vec<Message>,
}

#[derive(Debug)]
pub(crate) struct WriteTracker {
    /// The id the next write will carry.
    /// Invariant: greater than every id in `in_flight`.
    next_id: WriteId,
    /// Invariant: ids strictly increasing, oldest first.
    in_flight: VecDeque<InFlightWrite>,
    /// The write being built during the current step; flushed at its end.
    staged: Write,
    staged_held: Vec<Message>,
    /// Log entries `1..=durable_index` of the in-memory log are on durable storage as they
    /// are in memory (those before the window as storage holds them: committed).
    /// Invariant: `durable_index <= log.last_index()`.
    pub durable_index: Index,
    /// The hard state storage holds.
    pub durable_hard_state: HardState,
    /// The boundary of the newest install issued: the in-memory log starts after it, so no
    /// entry up to it is ever held or owed to storage. `durable_index` never drops below it.
    install_floor: Index,
}

/// What a `Persisted` input released.
pub(crate) struct Released {
    pub messages: Vec<Message>,
}

impl WriteTracker {
    pub fn new(durable_index: Index, durable_hard_state: HardState) -> WriteTracker {
        WriteTracker {
            next_id: WriteId(1),
            in_flight: VecDeque::new(),
            staged: Write::default(),
            staged_held: Vec::new(),
            durable_index,
            durable_hard_state,
            install_floor: Index::ZERO,
        }
    }

    pub fn stage_hard_state(&mut self, hard_state: HardState) {
        self.staged.hard_state = Some(hard_state);
    }

    /// Storage must drop every entry above `index`.
    pub fn stage_truncate(&mut self, index: Index) {
        self.staged.entries.retain(|entry| entry.index <= index);
        if self.staged.entries.is_empty() {
            let point = self.staged.truncate_after.map_or(index, |t| t.min(index));
            self.staged.truncate_after = Some(point);
        }
        self.durable_index = self.durable_index.min(index);
    }

    /// Storage must replace the whole log with an empty one after `install.last`. Counts
    /// as a truncation there for what is durable: nothing of the old log above it is.
    pub fn stage_install(&mut self, install: Install) {
        let at = install.last.index;
        self.staged.entries.clear();
        self.staged.truncate_after = None;
        self.staged.install = Some(install);
        // The in-memory log now starts after `at`: it holds nothing up to there that storage
        // could lack. A crash before this write is durable brings the old log back, and
        // nothing was acknowledged on the strength of the new one (replies wait for it).
        self.install_floor = at;
        self.durable_index = at;
    }

    /// Storage keeps this session table (if newer than the one it holds).
    pub fn stage_sessions(&mut self, checkpoint: SessionsCheckpoint) {
        self.staged.sessions = Some(checkpoint);
    }

    /// Storage records this applied configuration in its history.
    pub fn stage_membership(&mut self, checkpoint: MembershipCheckpoint) {
        self.staged.memberships.push(checkpoint);
    }

    pub fn stage_entries(&mut self, entries: &[Entry]) {
        self.staged.entries.extend_from_slice(entries);
    }

    /// Whether `message` can go now, or must wait until everything written so far is durable.
    pub fn must_hold(&self) -> bool {
        !self.staged.is_empty() || !self.in_flight.is_empty()
    }

    /// Holds `message` until every write issued so far (including this step's) is durable.
    pub fn hold(&mut self, message: Message) {
        debug_assert!(self.must_hold());
        self.staged_held.push(message);
    }

    /// Ends the step: hands the staged write (if any) to the driver.
    /// `log_last_index` is the in-memory log's last index after the step.
    pub fn flush(&mut self, log_last_index: Index) -> Option<Write> {
        let held = std::mem::take(&mut self.staged_held);
        if self.staged.is_empty() {
            if !held.is_empty() {
                let last = self
                    .in_flight
                    .back_mut()
                    .expect("messages held with no write to wait for");
                last.held.extend(held);
            }
            return None;
        }
        let mut write = std::mem::take(&mut self.staged);
        write.id = self.next_id;
        self.next_id = WriteId(self.next_id.0 + 1);
        self.in_flight.push_back(InFlightWrite {
            id: write.id,
            log_last_index,
            truncate_after: cut_point(&write),
            hard_state: write.hard_state,
            held,
        });
        Some(write)
    }

    /// Storage reports every write up to `id` durable. Returns `None` for an id that was
    /// never issued or is already durable (bad input from the driver; ignored).
    pub fn persisted(&mut self, id: WriteId) -> Option<Released> {
        if id >= self.next_id || self.in_flight.front().is_none_or(|w| w.id > id) {
            return None;
        }
        let mut messages = Vec::new();
        let mut log_last_index = self.durable_index;
        while self.in_flight.front().is_some_and(|w| w.id <= id) {
            let write = self.in_flight.pop_front().expect("checked non-empty");
            if let Some(hard_state) = write.hard_state {
                self.durable_hard_state = hard_state;
            }
            log_last_index = write.log_last_index;
            messages.extend(write.held);
        }
        // Storage now holds the log as it was after write `id`; later writes may still
        // truncate part of it away.
        let later_truncations = self
            .in_flight
            .iter()
            .filter_map(|w| w.truncate_after)
            .chain(cut_point(&self.staged));
        self.durable_index = later_truncations
            .fold(log_last_index, Index::min)
            .max(self.install_floor);
        Some(Released { messages })
    }

    pub fn check_invariants(&self, log_last_index: Index) {
        assert!(
            self.durable_index <= log_last_index,
            "durable index {} beyond log end {}",
            self.durable_index,
            log_last_index
        );
        let mut previous = WriteId(0);
        for write in &self.in_flight {
            assert!(write.id > previous, "write ids out of order");
            previous = write.id;
        }
        assert!(previous < self.next_id, "write id reused");
        assert!(
            self.staged.is_empty() && self.staged_held.is_empty(),
            "staged write not flushed"
        );
    }
}

/// Where `write` cuts the log it finds in storage: its truncation point, or for an install
/// the entry the new log starts after.
fn cut_point(write: &Write) -> Option<Index> {
    match &write.install {
        Some(install) => Some(install.last.index),
        None => write.truncate_after,
    }
}
