//! Configuration changes as the core makes and follows them (the rules are argued in
//! `membership.rs`): the leader's checks before it appends a change, and what every node
//! does when the configuration in force moves (an append, a truncation, an install, an
//! apply).

use crate::io::{Output, ProposalOutcome};
use crate::membership::{MembershipChange, MembershipCheckpoint, MembershipRefusal};
use crate::progress::Progress;
use crate::quorum::JointConfig;
use crate::raft::RaftCore;
use crate::types::{Entry, Index, Payload, Role};

impl RaftCore {
    /// A client asks for a configuration change: append it if the rules allow.
    pub(crate) fn propose_membership(
        &mut self,
        change: MembershipChange,
        outputs: &mut Vec<Output>,
    ) {
        if self.role() != Role::Leader {
            let leader = self.leader;
            outputs.push(Output::Proposal(ProposalOutcome::NotLeader { leader }));
            return;
        }
        match self.check_change(&change) {
            Ok(()) => {
                let in_force = &self.membership.in_force().membership;
                let next = in_force.changed(&change).expect("checked");
                self.propose_payloads(vec![Payload::Config(next)], outputs);
            }
            Err(refusal) => {
                outputs.push(Output::Proposal(ProposalOutcome::MembershipRefused(
                    refusal,
                )));
            }
        }
    }

    fn check_change(&self, change: &MembershipChange) -> Result<(), MembershipRefusal> {
        if let Some(index) = self.membership.uncommitted(self.commit_index) {
            return Err(MembershipRefusal::Pending { index });
        }
        if self.log.term_at(self.commit_index) != Ok(self.term) {
            return Err(MembershipRefusal::NotYetCommittedInTerm);
        }
        let in_force = &self.membership.in_force().membership;
        in_force.changed(change)?;
        if let MembershipChange::Promote { id } = change {
            let match_index = self.match_index(*id).unwrap_or(Index::ZERO);
            if match_index < self.commit_index {
                return Err(MembershipRefusal::LearnerBehind {
                    id: *id,
                    match_index,
                    commit_index: self.commit_index,
                });
            }
        }
        Ok(())
    }

    /// `entries` joined the log (after any truncation the same step made).
    pub(crate) fn membership_appended(&mut self, entries: &[Entry]) {
        if self.membership.appended(entries) {
            self.follow_membership();
        }
    }

    /// The log lost every entry above `after`.
    pub(crate) fn membership_truncated(&mut self, after: Index) {
        if self.membership.truncated(after) {
            self.follow_membership();
        }
    }

    /// The log was replaced by an install whose configuration is `base`.
    pub(crate) fn membership_installed(&mut self, base: MembershipCheckpoint) {
        self.membership.installed(base);
        self.follow_membership();
    }

    /// Applied entries: each configuration entry among them becomes the applied one, and
    /// storage records it.
    pub(crate) fn apply_memberships(&mut self, entries: &[Entry]) {
        for entry in entries {
            if matches!(entry.payload, Payload::Config(_)) {
                if let Some(checkpoint) = self.membership.applied(entry.index) {
                    self.writes.stage_membership(checkpoint);
                }
            }
        }
    }

    /// A leader that is no longer a voter of the configuration in force steps down once
    /// that configuration is committed (thesis §4.2.2): until then it still manages the
    /// cluster, counting itself in no quorum. Checked at the end of every step, once the
    /// step's own leader work is done.
    pub(crate) fn step_down_if_removed(&mut self) {
        let in_force = self.membership.in_force();
        if self.role() == Role::Leader
            && !in_force.membership.is_voter(self.config.id)
            && in_force.index <= self.commit_index
        {
            self.become_follower(self.term, None);
        }
    }

    /// Brings `peers`, `quorum` and a leader's progress in line with the configuration in
    /// force.
    fn follow_membership(&mut self) {
        let in_force = &self.membership.in_force().membership;
        self.quorum = JointConfig::single(in_force.voters());
        self.peers = in_force.others(self.config.id);
        let next = self.log.last_index().next();
        let peers = &self.peers;
        if let Some(leader) = self.role.leader_mut() {
            leader.progress.retain(|id, _| peers.contains(id));
            for &peer in peers {
                leader
                    .progress
                    .entry(peer)
                    .or_insert_with(|| Progress::new(next));
            }
        }
    }

    /// Whether this node may campaign: only a voter of the configuration in force.
    pub(crate) fn may_campaign(&self) -> bool {
        self.quorum.is_voter(self.config.id)
    }
}
