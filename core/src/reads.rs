//! Linearizable reads without writing to the log: ReadIndex and leader leases (thesis §6.4,
//! §6.4.1).
//!
//! A read is answered `ReadReady { index }` once the node has applied `index`, where
//! `index` is at least the commit index some moment after the read arrived at which a
//! majority still followed this leader. Serving the applied state then returns every
//! entry whose append was acknowledged before the read began.
//!
//! - **Leader, ReadIndex.** Reads wait until the leader has committed an entry of its own
//!   term (only then is its commit index the cluster's). They are gathered into rounds: a
//!   round sends a `ReadProbe` to every follower, and is confirmed when a majority,
//!   counting the leader, echoed it in this term. At most one round is in flight; reads that
//!   arrive meanwhile share the next one. A probe a follower has not echoed is sent again at
//!   every heartbeat, so a lost message delays a round but never strands it.
//! - **Follower.** A read is forwarded to the leader (`ReadIndex`); the leader answers with
//!   its read index once a round confirms it (`ReadIndexResponse`), and the follower serves
//!   it once it has applied that far. A leader or term change fails reads forwarded under
//!   the old one: their answer may never come.
//! - **Lease** (`Config::read_lease`, with CheckQuorum). A follower that heard a probe
//!   refuses votes for the minimum election timeout, so for a while after a confirmed round
//!   no other leader can be elected. The leader serves lease reads at once, without a round,
//!   for [`Config::lease_ticks`] of its own ticks after sending the last confirmed round;
//!   outside the lease they take a round like any other, which renews it. Safe only while
//!   clocks run at rates within the bound `lease_ticks` documents; a restarted node holds
//!   its vote for the minimum election timeout too, since it may have echoed a probe it no
//!   longer remembers. A leader that sent `TimeoutNow` has asked for a vote within that
//!   time, so it serves no lease read for the rest of its term (`transfer.rs`).
//!
//! Every `Read` input is answered exactly once, by `ReadReady` or `ReadFailed`, unless the
//! core is dropped. Reads not confirmed within two maximum election timeouts fail.

use crate::io::Output;
use crate::message::{Message, MessageBody};
use crate::raft::RaftCore;
use crate::types::{Index, NodeId, ReadId, ReadMode, Role, Term};
use std::collections::BTreeMap;

/// Who waits for a leader's read index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    /// A read this node's driver asked for.
    Local(ReadId),
    /// A read a follower forwarded, answered with `ReadIndexResponse`.
    Peer(NodeId, ReadId),
}

#[derive(Clone, Copy, Debug)]
struct Waiter {
    origin: Origin,
    /// The tick count at which the read fails if still unconfirmed.
    deadline: u64,
}

/// Read state of one node. Roles use disjoint parts: `round`, `acked`, `in_round` and
/// `queued` are the leader's, `forwarded` the follower's; `ready` is anyone's.
#[derive(Debug, Default)]
pub(crate) struct Reads {
    /// Ticks seen since construction: the clock leases and deadlines are measured in.
    ticks: u64,
    /// Leader: the last round started in this term (0: none).
    round: u64,
    /// Leader: the tick count at which `round` was first sent.
    round_sent_at: u64,
    /// Leader: whether `round` awaits confirmation.
    round_in_flight: bool,
    /// Leader: the highest round each follower echoed in this term.
    acked: BTreeMap<NodeId, u64>,
    /// Leader: reads of the round in flight.
    in_round: Vec<Waiter>,
    /// Leader: reads for the next round.
    queued: Vec<Waiter>,
    /// Leader: lease reads may be served without a round while `ticks < lease_until`.
    lease_until: u64,
    /// Follower: reads sent to `leader` in `term`, with their deadlines.
    forwarded: BTreeMap<ReadId, u64>,
    /// The (term, leader) that `forwarded` was sent under.
    forwarded_to: Option<(Term, NodeId)>,
    /// Confirmed reads waiting for `applied_index` to reach their index.
    ready: Vec<(Index, ReadId)>,
}

impl Reads {
    /// Reads waiting for anything, for tests and invariants.
    pub(crate) fn outstanding(&self) -> usize {
        self.in_round.len() + self.queued.len() + self.forwarded.len() + self.ready.len()
    }

    /// Invariants: a leader's parts are empty off the leader, and so on.
    pub(crate) fn check_invariants(&self, role: Role) {
        if role != Role::Leader {
            assert!(
                self.in_round.is_empty() && self.queued.is_empty() && !self.round_in_flight,
                "a non-leader holds leader reads"
            );
            assert_eq!(self.lease_until, 0, "a non-leader holds a lease");
        } else {
            assert!(self.forwarded.is_empty(), "a leader holds forwarded reads");
            assert!(
                self.round_in_flight || self.in_round.is_empty(),
                "reads wait on a round not in flight"
            );
        }
    }
}

impl RaftCore {
    /// `Input::Read`.
    pub(crate) fn read(&mut self, id: ReadId, mode: ReadMode, outputs: &mut Vec<Output>) {
        let deadline = self.read_deadline();
        match self.role() {
            Role::Leader => {
                if mode == ReadMode::Lease && self.lease_holds() {
                    self.reads.ready.push((self.commit_index, id));
                    return;
                }
                let origin = Origin::Local(id);
                self.reads.queued.push(Waiter { origin, deadline });
            }
            Role::Follower | Role::PreCandidate | Role::Candidate => {
                let Some(leader) = self.leader else {
                    outputs.push(Output::ReadFailed {
                        reads: vec![id],
                        leader: None,
                    });
                    return;
                };
                self.reads.forwarded_to = Some((self.term, leader));
                self.reads.forwarded.insert(id, deadline);
                let body = MessageBody::ReadIndex { id };
                outputs.push(Output::Send(self.message(leader, body)));
            }
        }
    }

    /// The tick count at which a read that arrives now fails if still unconfirmed.
    fn read_deadline(&self) -> u64 {
        self.reads.ticks + 2 * self.config.election_timeout_ticks_max
    }

    /// The leader has committed an entry of its own term, so its commit index is at least
    /// every earlier leader's (thesis §6.4, step 1).
    fn committed_in_term(&self) -> bool {
        self.log.term_at(self.commit_index) == Ok(self.term)
    }

    fn lease_holds(&self) -> bool {
        self.config.read_lease
            && self.config.check_quorum
            && self.committed_in_term()
            && self.reads.ticks < self.reads.lease_until
            && self
                .role
                .leader()
                .is_some_and(|leader| !leader.lease_forfeited)
    }

    /// A follower asks this node, as leader, for a read index.
    pub(crate) fn handle_read_index(&mut self, message: Message, outputs: &mut Vec<Output>) {
        let MessageBody::ReadIndex { id } = message.body else {
            unreachable!("dispatched by body");
        };
        if self.role() != Role::Leader || message.term != self.term {
            let body = MessageBody::ReadIndexResponse { id, index: None };
            outputs.push(Output::Send(self.message(message.from, body)));
            return;
        }
        let deadline = self.read_deadline();
        let origin = Origin::Peer(message.from, id);
        self.reads.queued.push(Waiter { origin, deadline });
    }

    /// The leader's answer to a read this follower forwarded.
    pub(crate) fn handle_read_index_response(
        &mut self,
        message: Message,
        outputs: &mut Vec<Output>,
    ) {
        let MessageBody::ReadIndexResponse { id, index } = message.body else {
            unreachable!("dispatched by body");
        };
        let sent_to = self.reads.forwarded_to;
        if sent_to != Some((message.term, message.from))
            || self.reads.forwarded.remove(&id).is_none()
        {
            self.stats.messages_ignored += 1;
            return;
        }
        match index {
            Some(index) => self.reads.ready.push((index, id)),
            None => outputs.push(Output::ReadFailed {
                reads: vec![id],
                leader: None,
            }),
        }
    }

    /// A leader's probe: answer it, as a sign that this node still follows it. Hearing
    /// the leader restarts the election timer, which is what a lease relies on.
    pub(crate) fn handle_read_probe(&mut self, message: Message, outputs: &mut Vec<Output>) {
        let MessageBody::ReadProbe { round } = message.body else {
            unreachable!("dispatched by body");
        };
        if message.term == self.term {
            if self.role() == Role::Leader {
                self.stats.messages_ignored += 1; // Two leaders in a term: a faulty peer.
                return;
            }
            self.become_follower(self.term, Some(message.from));
            self.reset_election_timer();
        }
        // A stale leader gets our newer term in the answer and steps down. The echo
        // vouches for nothing on disk, only that this node has not moved past the
        // leader's term by now, so it goes at once rather than after our writes (which
        // would make every read wait for a follower's fsync). Forgetting the term in a
        // crash cannot undo that: the read's moment has passed, and with leases a
        // restarted node holds its vote for the minimum election timeout.
        let reply = self.message(message.from, MessageBody::ReadProbeResponse { round });
        outputs.push(Output::Send(reply));
    }

    pub(crate) fn handle_read_probe_response(&mut self, message: Message) {
        let MessageBody::ReadProbeResponse { round } = message.body else {
            unreachable!("dispatched by body");
        };
        if self.role() != Role::Leader || message.term != self.term || round > self.reads.round {
            self.stats.messages_ignored += 1;
            return;
        }
        if let Some(progress) = self.role.peer_mut(message.from) {
            progress.recently_active = true;
        }
        let acked = self.reads.acked.entry(message.from).or_insert(0);
        *acked = (*acked).max(round);
    }

    /// Leader, once per step: confirm the round in flight if a majority echoed it, then
    /// start the next one if reads wait for it.
    fn advance_read_rounds(&mut self, outputs: &mut Vec<Output>) {
        if self.reads.round_in_flight {
            let round = self.reads.round;
            let me = self.config.id;
            let echoed = |id| id == me || self.reads.acked.get(&id).is_some_and(|&r| r >= round);
            if self.quorum.has_quorum(echoed) {
                self.confirm_round(outputs);
            }
        }
        if !self.reads.round_in_flight && !self.reads.queued.is_empty() && self.committed_in_term()
        {
            self.reads.round += 1;
            self.reads.round_sent_at = self.reads.ticks;
            self.reads.round_in_flight = true;
            self.reads.in_round = std::mem::take(&mut self.reads.queued);
            self.send_read_probes(outputs);
            // A cluster of one confirms at once.
            self.advance_read_rounds(outputs);
        }
    }

    /// Sends the round in flight to every follower that has not echoed it.
    pub(crate) fn send_read_probes(&mut self, outputs: &mut Vec<Output>) {
        if !self.reads.round_in_flight {
            return;
        }
        let round = self.reads.round;
        for k in 0..self.peers.len() {
            let peer = self.peers[k];
            if self.reads.acked.get(&peer).copied().unwrap_or(0) < round {
                let probe = self.message(peer, MessageBody::ReadProbe { round });
                outputs.push(Output::Send(probe));
            }
        }
    }

    fn confirm_round(&mut self, outputs: &mut Vec<Output>) {
        self.reads.round_in_flight = false;
        let index = self.commit_index;
        self.reads.lease_until = self.reads.round_sent_at + self.config.lease_ticks();
        for waiter in std::mem::take(&mut self.reads.in_round) {
            match waiter.origin {
                Origin::Local(id) => self.reads.ready.push((index, id)),
                Origin::Peer(peer, id) => {
                    let body = MessageBody::ReadIndexResponse {
                        id,
                        index: Some(index),
                    };
                    outputs.push(Output::Send(self.message(peer, body)));
                }
            }
        }
    }

    /// Counts a tick and fails reads whose deadline passed.
    pub(crate) fn tick_reads(&mut self, outputs: &mut Vec<Output>) {
        self.reads.ticks += 1;
        let now = self.reads.ticks;
        let leader = self.leader;
        let mut failed = Vec::new();
        self.reads.forwarded.retain(|&id, &mut deadline| {
            let keep = deadline > now;
            if !keep {
                failed.push(id);
            }
            keep
        });
        let mut expired = Vec::new();
        for list in [&mut self.reads.queued, &mut self.reads.in_round] {
            list.retain(|waiter| {
                let keep = waiter.deadline > now;
                if !keep {
                    expired.push(waiter.origin);
                }
                keep
            });
        }
        if self.reads.round_in_flight && self.reads.in_round.is_empty() {
            // Nobody waits on it any more; a late confirmation would still renew the lease,
            // which is harmless, but the round no longer holds the queue back.
            self.reads.round_in_flight = false;
        }
        self.fail_waiters(expired, &mut failed, outputs);
        if !failed.is_empty() {
            outputs.push(Output::ReadFailed {
                reads: failed,
                leader,
            });
        }
    }

    fn fail_waiters(
        &mut self,
        waiters: Vec<Origin>,
        failed: &mut Vec<ReadId>,
        outputs: &mut Vec<Output>,
    ) {
        for origin in waiters {
            match origin {
                Origin::Local(id) => failed.push(id),
                Origin::Peer(peer, id) => {
                    let body = MessageBody::ReadIndexResponse { id, index: None };
                    outputs.push(Output::Send(self.message(peer, body)));
                }
            }
        }
    }

    /// End of every step: drop what a role or leader change invalidated, run the leader's
    /// rounds, and release confirmed reads the applied state has reached.
    pub(crate) fn end_step_reads(&mut self, outputs: &mut Vec<Output>) {
        let mut failed = Vec::new();
        if self.role() != Role::Leader
            && (self.reads.round_in_flight
                || !self.reads.queued.is_empty()
                || self.reads.lease_until != 0)
        {
            // Deposed: what it had not confirmed it can no longer vouch for.
            let waiters: Vec<Origin> = (self.reads.in_round.drain(..))
                .chain(self.reads.queued.drain(..))
                .map(|waiter| waiter.origin)
                .collect();
            self.fail_waiters(waiters, &mut failed, outputs);
            self.reads.round_in_flight = false;
            self.reads.lease_until = 0;
        }
        if self.role() == Role::Leader {
            if !self.reads.forwarded.is_empty() {
                failed.extend(std::mem::take(&mut self.reads.forwarded).into_keys());
            }
            self.advance_read_rounds(outputs);
        } else if !self.reads.forwarded.is_empty()
            && self.reads.forwarded_to != self.leader.map(|leader| (self.term, leader))
        {
            failed.extend(std::mem::take(&mut self.reads.forwarded).into_keys());
        }
        if !failed.is_empty() {
            outputs.push(Output::ReadFailed {
                reads: failed,
                leader: self.leader,
            });
        }
        self.release_ready_reads(outputs);
    }

    /// A new term of leadership starts with no rounds, echoes or lease.
    pub(crate) fn reset_leader_reads(&mut self) {
        self.reads.round_in_flight = false;
        self.reads.acked.clear();
        self.reads.lease_until = 0;
    }

    fn release_ready_reads(&mut self, outputs: &mut Vec<Output>) {
        if self.reads.ready.is_empty() {
            return;
        }
        let applied = self.applied_index;
        let mut released: BTreeMap<Index, Vec<ReadId>> = BTreeMap::new();
        self.reads.ready.retain(|&(index, id)| {
            let keep = index > applied;
            if !keep {
                released.entry(index).or_default().push(id);
            }
            keep
        });
        for (index, reads) in released {
            outputs.push(Output::ReadReady { reads, index });
        }
    }

    /// A restarted node may have echoed probes it no longer remembers, so with leases on
    /// it refuses votes for the minimum election timeout after it starts.
    pub(crate) fn in_start_lease(&self) -> bool {
        self.config.read_lease
            && self.config.check_quorum
            && self.reads.ticks < self.config.election_timeout_ticks_min
    }

    /// Reads waiting for anything (for tests).
    pub fn reads_outstanding(&self) -> usize {
        self.reads.outstanding()
    }
}
