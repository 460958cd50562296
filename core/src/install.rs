//! Catching up a follower that lags behind the leader's retained log: the leader sends the
//! log's boundary (`InstallSnapshot`), the follower replaces its log with an empty one that
//! starts after it, and ordinary replication goes on from there (thesis §5.4.1).
//!
//! For replog's log service the boundary is the trim point and the install carries no data:
//! the entries before it are gone everywhere, by agreement (a committed `Payload::Trim`).
//! An application that embeds the core answers the fetch with its state snapshot instead,
//! and applies the `Write::install` it gets back on the follower.
//!
//! Durability: the follower's answer goes through `send_after_persist`, so the leader hears
//! "matched at the boundary" only once the install write is durable. Everything up to the
//! boundary is committed (storage trims only applied entries), so replacing a follower's
//! uncommitted tail there loses nothing acknowledged.

use crate::io::{Install, Output, Trimmed};
use crate::log::Log;
use crate::membership::{Membership, MembershipCheckpoint};
use crate::message::{AppendResponse, ConflictHint, Message, MessageBody};
use crate::raft::RaftCore;
use crate::sessions::SessionsCheckpoint;
use crate::types::{EntryId, Index, Role, Term};

impl RaftCore {
    /// Storage answered a fetch with "trimmed": install its boundary on the follower.
    pub(crate) fn handle_fetch_trimmed(&mut self, trimmed: Trimmed, outputs: &mut Vec<Output>) {
        let Some(progress) = self.role.peer_mut(trimmed.peer) else {
            self.stats.bad_fetched_ignored += 1;
            return;
        };
        let boundary = trimmed.boundary;
        let sound = boundary.index >= trimmed.from
            && boundary.index > Index::ZERO
            && boundary.term > Term(0)
            && boundary.term <= self.term
            && boundary.index <= self.commit_index
            && trimmed.sessions.through >= boundary.index
            && trimmed.sessions.through <= self.commit_index
            && trimmed
                .membership
                .as_ref()
                .is_none_or(|m| m.index <= boundary.index);
        if progress.fetching != Some(trimmed.from) {
            self.stats.bad_fetched_ignored += 1;
            return;
        }
        // The answer to the outstanding request, sound or not: a new one may be asked.
        progress.fetching = None;
        if !sound {
            // Drop it; the next heartbeat asks again. Not only a driver bug: a leader that
            // restarted may not yet know as committed what its storage's session
            // checkpoint covers, until it commits an entry of its term; keeping the
            // request outstanding would stall this follower's catch-up for good (found by
            // the simulator: seeds 5339, 7547 and 8362 of 10,000).
            self.stats.bad_fetched_ignored += 1;
            return;
        }
        if trimmed.from != progress.next_index || boundary.index < progress.match_index {
            self.replicate_to(trimmed.peer, outputs);
            return;
        }
        progress.installing(boundary.index);
        self.stats.installs_sent += 1;
        let body = MessageBody::InstallSnapshot {
            last: boundary,
            data: trimmed.data,
            sessions: trimmed.sessions,
            membership: trimmed.membership,
        };
        outputs.push(Output::Send(self.message(trimmed.peer, body)));
    }

    /// A leader's install. The term rule has already run, so `message.term <= self.term`.
    pub(crate) fn handle_install(&mut self, message: Message, outputs: &mut Vec<Output>) {
        let MessageBody::InstallSnapshot {
            last,
            data,
            sessions,
            membership,
        } = message.body
        else {
            unreachable!("dispatched by body");
        };
        if message.term < self.term {
            // A deposed leader: tell it our term so it steps down.
            let hint = ConflictHint {
                conflict_term: None,
                first_index: self.log.last_index().next(),
            };
            self.reply_to_install(message.from, last.index, Some(hint), outputs);
            return;
        }
        let well_formed = last.index > Index::ZERO
            && last.term > Term(0)
            && last.term <= message.term
            && sessions.through >= last.index
            && membership.as_ref().is_none_or(|m| m.index <= last.index);
        if self.role() == Role::Leader || !well_formed {
            self.stats.messages_ignored += 1;
            return;
        }
        self.become_follower(self.term, Some(message.from));
        self.reset_election_timer();
        if last.index > self.commit_index {
            if self.log.matches(last.index, last.term) {
                // The log already holds the boundary: by Log Matching it equals the leader's
                // up to there, and the leader's is committed there.
                self.commit_index = last.index;
            } else if last.index <= self.verified_in_term() {
                // Contradicts entries this leader already had us verify: a faulty peer.
                self.stats.unsafe_truncations_refused += 1;
                return;
            } else {
                self.install(last, data, sessions, membership);
            }
            if last.index > self.verified_in_term() {
                self.verified = (self.term, last.index);
            }
        }
        self.reply_to_install(message.from, last.index, None, outputs);
    }

    /// Replaces the whole log with an empty one after `last`, which is committed, and the
    /// session table with the leader's (as of `sessions.through >= last.index`: entries
    /// after `last` that it covers change nothing when they are applied here later).
    fn install(
        &mut self,
        last: EntryId,
        data: Vec<u8>,
        sessions: SessionsCheckpoint,
        membership: Option<MembershipCheckpoint>,
    ) {
        self.log = Log::from_tail(last, Vec::new()).expect("a checked boundary");
        self.commit_index = last.index;
        self.applied_index = last.index;
        self.sessions.replace_if_newer(sessions);
        self.sessions_checkpointed = self.sessions.through();
        let sessions = self.sessions.checkpoint();
        let base = membership.clone().unwrap_or_else(|| MembershipCheckpoint {
            index: Index::ZERO,
            membership: Membership::bootstrap(&self.config.voters),
        });
        self.membership_installed(base);
        self.writes.stage_install(Install {
            last,
            data,
            sessions,
            membership,
        });
        self.stats.installs_received += 1;
    }

    fn reply_to_install(
        &mut self,
        to: crate::types::NodeId,
        index: Index,
        reject: Option<ConflictHint>,
        outputs: &mut Vec<Output>,
    ) {
        let reply = AppendResponse { index, reject };
        let reply = self.message(to, MessageBody::AppendEntriesResponse(reply));
        self.send_after_persist(reply, outputs);
    }
}
