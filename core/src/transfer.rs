//! Leadership transfer (thesis §3.10; etcd-io/raft's `campaignTransfer`).
//!
//! - **The leader** (`Input::Transfer { to }`) checks the target is another voter of the
//!   configuration in force, and starts a transfer, kept in its `LeaderState`: it stops
//!   appending (proposals get `ProposalOutcome::Transferring`, so clients retry at the new
//!   leader), replicates to the target as usual until the target's match index reaches its
//!   own last index, and then sends it `TimeoutNow`. It sends it again at every heartbeat
//!   while the target still matches (a lost one would otherwise strand the transfer; the
//!   target ignores any after its campaign, which left the leader's term). After an election
//!   timeout (the maximum) without losing its leadership, it gives up
//!   (`Output::TransferAborted`) and accepts proposals again.
//! - **The target**, on `TimeoutNow` from the leader it follows in its current term,
//!   campaigns at once, skipping PreVote: the leader vouched that its log is up to date.
//!   Its RequestVote carries `transfer: true`.
//! - **Voters** grant such a request even while they hear a leader (CheckQuorum's rule,
//!   `RaftCore::in_leader_lease`), since that leader asked for the election. Every other
//!   rule of a vote still holds (one vote per term, the up-to-date check), so Election
//!   Safety does not depend on the flag.
//!
//! **Leases.** A lease read relies on no voter voting within the minimum election timeout
//! of hearing the leader; a transfer vote breaks exactly that. So from the moment a leader
//! sends `TimeoutNow` it serves no lease read for the rest of its term
//! (`LeaderState::lease_forfeited`): lease reads take a ReadIndex round instead. Not only
//! until the transfer ends: a `TimeoutNow` delayed in the network may start the target's
//! campaign after the leader gave up, and the leader cannot know it will not.

use crate::io::{Output, TransferOutcome};
use crate::message::{Message, MessageBody};
use crate::raft::RaftCore;
use crate::role::RoleState;
use crate::timeout::Timeout;
use crate::types::{NodeId, Role};

/// A leader's transfer under way.
#[derive(Debug)]
pub(crate) struct Transfer {
    /// The node that is to lead next. Invariant: a peer, not this node.
    pub(crate) to: NodeId,
    /// Until the leader gives up.
    give_up: Timeout,
}

impl RaftCore {
    /// `Input::Transfer`: answered by exactly one `Output::Transfer`.
    pub(crate) fn transfer(&mut self, to: NodeId, outputs: &mut Vec<Output>) {
        let outcome = self.start_transfer(to);
        outputs.push(Output::Transfer(outcome));
        if let TransferOutcome::Started { .. } = outcome {
            // The target may be behind: replicate to it now rather than at the heartbeat.
            self.replicate_to(to, outputs);
            self.send_timeout_now_if_caught_up(outputs);
        }
    }

    fn start_transfer(&mut self, to: NodeId) -> TransferOutcome {
        let me = self.config.id;
        let give_up_ticks = self.config.election_timeout_ticks_max;
        let leader = self.leader;
        let RoleState::Leader(state) = &mut self.role else {
            return TransferOutcome::NotLeader { leader };
        };
        if to == me {
            return TransferOutcome::TargetIsSelf;
        }
        if !self.quorum.is_voter(to) || !state.progress.contains_key(&to) {
            return TransferOutcome::NotVoter { to };
        }
        if let Some(transfer) = &state.transfer {
            return TransferOutcome::AlreadyTransferring { to: transfer.to };
        }
        state.transfer = Some(Transfer {
            to,
            give_up: Timeout::new(give_up_ticks),
        });
        self.stats.transfers_started += 1;
        TransferOutcome::Started { to }
    }

    /// The target of the transfer under way, if this node leads and is transferring.
    pub(crate) fn transferring_to(&self) -> Option<NodeId> {
        self.role.leader()?.transfer.as_ref().map(|t| t.to)
    }

    /// Sends `TimeoutNow` to the target once its log matches the leader's to the end.
    /// Called when the transfer starts, on each acknowledgement, and at every heartbeat.
    pub(crate) fn send_timeout_now_if_caught_up(&mut self, outputs: &mut Vec<Output>) {
        let Some(to) = self.transferring_to() else {
            return;
        };
        let caught_up = self
            .role
            .peer(to)
            .is_some_and(|progress| progress.match_index == self.log.last_index());
        if !caught_up {
            return;
        }
        let leader = self.role.leader_mut().expect("transferring, so leading");
        leader.lease_forfeited = true;
        outputs.push(Output::Send(self.message(to, MessageBody::TimeoutNow)));
    }

    /// A leader's tick: give up a transfer that has run for an election timeout.
    pub(crate) fn tick_transfer(&mut self, outputs: &mut Vec<Output>) {
        let Some(leader) = self.role.leader_mut() else {
            return;
        };
        let Some(transfer) = &mut leader.transfer else {
            return;
        };
        transfer.give_up.tick();
        if transfer.give_up.fired() {
            let to = transfer.to;
            leader.transfer = None;
            self.stats.transfers_aborted += 1;
            outputs.push(Output::TransferAborted { to });
        }
    }

    /// `TimeoutNow`: campaign at once if it comes from the leader this node follows, in its
    /// term, and this node may vote. The term rule has already run.
    pub(crate) fn handle_timeout_now(&mut self, message: Message, outputs: &mut Vec<Output>) {
        let from_our_leader = message.term == self.term
            && self.role() == Role::Follower
            && self.leader == Some(message.from);
        if !from_our_leader || !self.quorum.is_voter(self.config.id) {
            self.stats.messages_ignored += 1;
            return;
        }
        self.stats.transfer_campaigns += 1;
        self.campaign(true, outputs);
    }

    /// Leader only: the transfer under way targets a peer.
    pub(crate) fn check_transfer_invariants(&self) {
        if let Some(to) = self.transferring_to() {
            assert_ne!(to, self.config.id, "transferring to itself");
            assert!(self.peers.contains(&to), "transferring to a non-peer");
        }
    }
}
