//! The leader: proposals, replication with pipelining (thesis §10.2.1), commitment (§5.3,
//! §5.4.2), heartbeats and CheckQuorum (thesis §6.2).

use crate::io::{Output, ProposalOutcome};
use crate::message::{AppendResponse, Message, MessageBody};
use crate::planted::{self, Bug};
use crate::progress::ReplicationState;
use crate::raft::RaftCore;
use crate::role::{LeaderState, RoleState};
use crate::sessions::{decide, ClientId, Decision, PendingSessions};
use crate::types::{Entry, EntryId, Index, NodeId, Payload, Role};
use std::num::NonZeroU64;

impl RaftCore {
    pub(crate) fn become_leader(&mut self, outputs: &mut Vec<Output>) {
        assert_eq!(
            self.role(),
            Role::Candidate,
            "only a candidate becomes leader"
        );
        self.stats.terms_led += 1;
        let next = self.log.last_index().next();
        self.role = RoleState::Leader(LeaderState::new(&self.config, &self.peers, next));
        self.leader = Some(self.config.id);
        self.reset_leader_reads();
        // Its log holds every entry not yet applied, so it knows every session entry the
        // table lacks.
        self.pending_sessions = PendingSessions::from_log(self.log.held(), self.sessions.through());
        // A leader commits entries of earlier terms only through one of its own (§5.4.2), so
        // it appends a no-op at once (thesis §6.4).
        self.append_as_leader(vec![Payload::Noop]);
        self.replicate_to_all(outputs);
    }

    pub(crate) fn propose(&mut self, commands: Vec<String>, outputs: &mut Vec<Output>) {
        let payloads = commands
            .into_iter()
            .map(|command| Payload::Command(command.into()))
            .collect();
        self.propose_payloads(payloads, outputs);
    }

    /// A command to append at most once: the session table and the log decide
    /// (`sessions::decide`); only a new `(client, seq)` is appended.
    pub(crate) fn propose_once(
        &mut self,
        client: ClientId,
        seq: NonZeroU64,
        command: String,
        outputs: &mut Vec<Output>,
    ) {
        if self.role() != Role::Leader {
            let leader = self.leader;
            outputs.push(Output::Proposal(ProposalOutcome::NotLeader { leader }));
            return;
        }
        let outcome = match decide(&self.sessions, &self.pending_sessions, &client, seq) {
            Decision::Applied(at) => ProposalOutcome::AlreadyApplied {
                index: at.index,
                term: at.term,
            },
            Decision::InLog(at) => ProposalOutcome::Accepted {
                first_index: at.index,
                count: 1,
                term: at.term,
            },
            Decision::Behind { highest } => ProposalOutcome::SeqBehind { highest },
            Decision::Append => {
                let command = command.into();
                let payload = Payload::Session {
                    client,
                    seq,
                    command,
                };
                return self.propose_payloads(vec![payload], outputs);
            }
        };
        outputs.push(Output::Proposal(outcome));
    }

    pub(crate) fn propose_payloads(&mut self, payloads: Vec<Payload>, outputs: &mut Vec<Output>) {
        if self.role() != Role::Leader {
            let outcome = ProposalOutcome::NotLeader {
                leader: self.leader,
            };
            outputs.push(Output::Proposal(outcome));
            return;
        }
        if let Some(to) = self.transferring_to() {
            // Appending would move the target's goal on; clients retry at the new leader.
            outputs.push(Output::Proposal(ProposalOutcome::Transferring { to }));
            return;
        }
        let first_index = self.log.last_index().next();
        let count = payloads.len() as u64;
        self.append_as_leader(payloads);
        let outcome = ProposalOutcome::Accepted {
            first_index,
            count,
            term: self.term,
        };
        outputs.push(Output::Proposal(outcome));
        self.replicate_to_all(outputs);
    }

    fn append_as_leader(&mut self, payloads: Vec<Payload>) {
        let first = self.log.last_index().next();
        let entries: Vec<Entry> = payloads
            .into_iter()
            .enumerate()
            .map(|(offset, payload)| Entry {
                index: first.plus(offset as u64),
                term: self.term,
                payload,
            })
            .collect();
        for entry in &entries {
            self.pending_sessions.appended(entry);
        }
        self.log.append(&entries);
        self.writes.stage_entries(&entries);
        self.membership_appended(&entries);
    }

    pub(crate) fn tick_leader(&mut self, outputs: &mut Vec<Output>) {
        let leader = self.role.leader_mut().expect("ticked as leader");
        let heartbeat_due = leader.heartbeat.tick_periodic();
        let check_quorum_due = leader.check_quorum.tick_periodic();
        if check_quorum_due {
            if self.config.check_quorum && !self.quorum_recently_active() {
                // Partitioned from a majority: stop accepting proposals that cannot commit
                // and let the majority side elect a leader undisturbed.
                self.stats.check_quorum_step_downs += 1;
                self.become_follower(self.term, None);
                return;
            }
            for progress in self.role.progress_mut().values_mut() {
                progress.recently_active = false;
            }
        }
        self.tick_transfer(outputs);
        if heartbeat_due {
            self.broadcast_heartbeat(outputs);
            self.send_read_probes(outputs);
            self.send_timeout_now_if_caught_up(outputs);
        }
    }

    fn quorum_recently_active(&self) -> bool {
        let me = self.config.id;
        self.quorum
            .has_quorum(|id| id == me || self.role.peer(id).is_some_and(|p| p.recently_active))
    }

    /// A heartbeat is an AppendEntries checked like any other, so it also detects lost
    /// appends: a follower missing them rejects it and the leader probes back.
    fn broadcast_heartbeat(&mut self, outputs: &mut Vec<Output>) {
        // By index (here and below): `self` is borrowed mutably inside, and cloning the list
        // would allocate on every heartbeat and proposal.
        for k in 0..self.peers.len() {
            let peer = self.peers[k];
            let progress = self.role.peer_mut(peer).expect("leader tracks every peer");
            match progress.state {
                ReplicationState::Probe => {
                    progress.probe_sent = false;
                    if !self.send_append(peer, outputs) {
                        self.send_heartbeat(peer, outputs);
                    }
                }
                ReplicationState::Replicate => {
                    self.send_heartbeat(peer, outputs);
                    self.replicate_to(peer, outputs);
                }
            }
        }
    }

    /// An empty AppendEntries at `peer`'s next index, or, when the entry before it has left
    /// memory (a catch-up from storage is under way), at the in-memory log's edge: the
    /// furthest back this leader can vouch for without storage. Either keeps the follower's
    /// election timer quiet and its commit index moving.
    fn send_heartbeat(&mut self, peer: NodeId, outputs: &mut Vec<Output>) {
        let next_prev = self.role.progress()[&peer].next_index.prev();
        let prev = match self.log.term_at(next_prev) {
            Ok(term) => EntryId {
                index: next_prev,
                term,
            },
            Err(_) => self.log.prev(),
        };
        outputs.push(Output::Send(self.append_message(peer, prev, Vec::new())));
    }

    fn replicate_to_all(&mut self, outputs: &mut Vec<Output>) {
        for k in 0..self.peers.len() {
            let peer = self.peers[k];
            self.replicate_to(peer, outputs);
        }
    }

    /// Sends as many AppendEntries to `peer` as its state and window allow.
    pub(crate) fn replicate_to(&mut self, peer: NodeId, outputs: &mut Vec<Output>) {
        loop {
            let progress = &self.role.progress()[&peer];
            let has_new = progress.next_index <= self.log.last_index();
            let window = self.config.max_inflight_appends;
            if !progress.can_send(window)
                || (!has_new && progress.state == ReplicationState::Replicate)
            {
                let full = has_new && progress.state == ReplicationState::Replicate;
                self.stats.append_windows_full += u64::from(full);
                return;
            }
            if !self.send_append(peer, outputs) {
                return; // Waiting for storage.
            }
            if self.role.progress()[&peer].state == ReplicationState::Probe {
                return;
            }
        }
    }

    /// Sends one AppendEntries from `peer`'s next index (possibly empty, when probing), or,
    /// when the entry before it has left memory, asks storage for the entries instead
    /// (`catch_up.rs`). Returns whether a message went out.
    fn send_append(&mut self, peer: NodeId, outputs: &mut Vec<Output>) -> bool {
        let next = self.role.progress()[&peer].next_index;
        let prev = next.prev();
        let Ok(prev_term) = self.log.term_at(prev) else {
            self.request_fetch(peer, outputs);
            return false;
        };
        let prev = EntryId {
            index: prev,
            term: prev_term,
        };
        let entries = self
            .log
            .batch_from(
                next,
                self.config.max_append_entries,
                self.config.max_append_bytes,
            )
            .expect("the entry before next is held, so next is too");
        self.send_entries(peer, prev, entries, outputs);
        true
    }

    /// Sends `entries`, which follow `prev`, and records them as on their way.
    pub(crate) fn send_entries(
        &mut self,
        peer: NodeId,
        prev: EntryId,
        entries: Vec<Entry>,
        outputs: &mut Vec<Output>,
    ) {
        let last = entries.last().map_or(prev.index, |entry| entry.index);
        outputs.push(Output::Send(self.append_message(peer, prev, entries)));
        self.role
            .peer_mut(peer)
            .expect("leader tracks every peer")
            .sent(last);
    }

    fn append_message(&self, peer: NodeId, prev: EntryId, entries: Vec<Entry>) -> Message {
        self.message(
            peer,
            MessageBody::AppendEntries {
                prev_log_index: prev.index,
                prev_log_term: prev.term,
                entries,
                leader_commit: self.commit_index,
            },
        )
    }

    pub(crate) fn handle_append_response(&mut self, message: Message, outputs: &mut Vec<Output>) {
        let MessageBody::AppendEntriesResponse(AppendResponse { index, reject }) = message.body
        else {
            unreachable!("dispatched by body");
        };
        if self.role() != Role::Leader || message.term != self.term {
            // Answers from older terms, or to a leadership we no longer hold.
            self.stats.messages_ignored += 1;
            return;
        }
        if index > self.log.last_index() {
            self.stats.messages_ignored += 1; // Claims entries we never sent.
            return;
        }
        let peer = message.from;
        let Some(progress) = self.role.peer_mut(peer) else {
            self.stats.messages_ignored += 1; // Not a member of the configuration in force.
            return;
        };
        progress.recently_active = true;
        match reject {
            None => {
                if progress.acknowledged(index) {
                    self.maybe_advance_commit(outputs);
                    if self.transferring_to() == Some(peer) {
                        self.send_timeout_now_if_caught_up(outputs);
                    }
                }
            }
            Some(hint) => {
                if !progress.rejected(index, hint, &self.log) {
                    self.stats.messages_ignored += 1;
                    return;
                }
                self.stats.conflicts_backtracked += 1;
            }
        }
        self.replicate_to(peer, outputs);
    }

    /// Commits the highest index a majority holds durably, if it is from this term (§5.4.2:
    /// counting replicas never commits an entry of an earlier term directly).
    pub(crate) fn maybe_advance_commit(&mut self, outputs: &mut Vec<Output>) {
        // The leader counts its own entries only once they are durable.
        let own = if planted::active(Bug::LeaderCountsUnpersisted) {
            self.log.last_index()
        } else {
            self.writes.durable_index
        };
        let me = self.config.id;
        let candidate = self.quorum.committed_index(|id| {
            if id == me {
                own
            } else {
                self.role.peer(id).map_or(Index::ZERO, |p| p.match_index)
            }
        });
        if candidate > self.commit_index && self.log.term_at(candidate) == Ok(self.term) {
            self.commit_index = candidate;
            self.apply_committed(outputs);
        }
    }
}
