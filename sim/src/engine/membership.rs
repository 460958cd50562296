//! Configuration changes in the simulator: the swarm's draws, a scenario's
//! `{"kind": "membership", ...}` faults, and the checks around them.
//!
//! Changes are proposed at the current leader, as an operator would. Ids are never reused
//! for an empty disk: a node added is a spare (ids after the cluster's, booted empty and
//! never a member before) or a removed node whose disk is intact (the simulator never wipes
//! a disk), so no node can vote twice in a term by forgetting its vote.
//!
//! Refusals are normal (a change pending, a learner behind, a leader that has not yet
//! committed in its term) and are counted; the next draw retries, and half of the draws
//! are follow-ups (promote a learner, or add one while the cluster has fewer voters than
//! it started with), so learners do get promoted and crashed nodes replaced.

use super::{Event, Simulation};
use crate::fault::{Fault, MemberChange};
use crate::net::NodeSet;
use crate::report::Violation;
use crate::rng::Ratio;
use replog_core::{
    Index, Input, Membership, MembershipChange, MembershipRefusal, NodeId, Payload,
    ProposalOutcome, Role,
};

impl Simulation {
    /// Schedules the first swarm change, when this seed draws them.
    pub(crate) fn schedule_membership(&mut self) {
        let params = &self.params.membership;
        if params.interval_us_max > 0 {
            let first_us = self
                .rng
                .membership
                .between(params.interval_us_min, params.interval_us_max);
            self.queue.push(first_us, Event::Membership);
        }
    }

    /// The swarm's next configuration change, then the one after it.
    pub(crate) fn on_swarm_membership(&mut self) -> Result<(), Violation> {
        if self.liveness.is_some() {
            return Ok(());
        }
        let rng = &mut self.rng.membership;
        let follow_up = rng.chance(Ratio(1, 2));
        let drawn = *rng.pick(&MemberChange::ALL);
        let params = &self.params.membership;
        let next_us = rng.between(params.interval_us_min, params.interval_us_max);
        let change = match (follow_up, self.leader_membership()) {
            (true, Some(membership)) if !membership.learners().is_empty() => MemberChange::Promote,
            (true, Some(membership)) if membership.voters().len() < self.params.nodes => {
                MemberChange::AddLearner
            }
            _ => drawn,
        };
        self.apply_fault(&Fault::Membership { change, node: None })?;
        self.queue.push(self.now_us + next_us, Event::Membership);
        Ok(())
    }

    /// The configuration in force on the current leader, if there is one.
    fn leader_membership(&self) -> Option<Membership> {
        let leader = self.current_leader()?;
        let core = self.nodes[leader].core.as_ref()?;
        Some(core.membership().membership.clone())
    }

    /// Fewest voters a change may leave: a majority of the cluster's size, rounded up
    /// (2 of 3, 3 of 5), so the liveness phase still has a cluster worth the name.
    fn voters_min(&self) -> usize {
        self.params.nodes.div_ceil(2)
    }

    /// Carries out a [`Fault::Membership`]: resolves whom it changes and proposes it at
    /// the leader. Returns the nodes it names.
    pub(crate) fn change_membership(
        &mut self,
        change: MemberChange,
        node: Option<u64>,
    ) -> Result<NodeSet, Violation> {
        let Some(leader) = self
            .current_leader()
            .filter(|&n| self.nodes[n].is_running())
        else {
            self.count_member("member_no_leader");
            return Ok(0);
        };
        let membership = self.nodes[leader]
            .core
            .as_ref()
            .expect("leads")
            .membership()
            .membership
            .clone();
        let Some(proposal) = self.resolve_change(change, node, leader, &membership) else {
            self.count_member("member_nothing_to_change");
            return Ok(0);
        };
        let id = change_target(&proposal);
        // Written down as the change it resolved to, so that a replay proposes the same.
        let resolved = match (&proposal, change) {
            (_, MemberChange::Racing) => MemberChange::Racing,
            (MembershipChange::AddLearner { .. }, _) => MemberChange::AddLearner,
            (MembershipChange::Promote { .. }, _) => MemberChange::Promote,
            (MembershipChange::Remove { .. }, _) => MemberChange::RemoveMember,
        };
        self.note_fault(Fault::Membership {
            change: resolved,
            node: Some(id.0),
        });
        let first = self.propose_change(leader, proposal)?;
        if change == MemberChange::Racing {
            self.race(leader, &membership, id, first)?;
        }
        Ok(1 << (id.0 - 1))
    }

    /// The change a [`MemberChange`] means now, or `None` when there is nothing it could do
    /// (no learner to promote, the voters at their minimum, ...).
    fn resolve_change(
        &mut self,
        change: MemberChange,
        node: Option<u64>,
        leader: usize,
        membership: &Membership,
    ) -> Option<MembershipChange> {
        let named = node.map(NodeId);
        let voters = membership.voters();
        let may_remove_voter = voters.len() > self.voters_min();
        let outsiders: Vec<NodeId> = self
            .nodes
            .iter()
            .map(|n| n.id)
            .filter(|&id| membership.get(id).is_none())
            .collect();
        let add = |sim: &mut Simulation| {
            let id = named.or_else(|| sim.pick_id(&outsiders))?;
            Some(MembershipChange::AddLearner {
                id,
                meta: format!("sim-node-{}", id.0),
            })
        };
        match change {
            MemberChange::AddLearner | MemberChange::Racing => add(self),
            MemberChange::Promote => {
                let id = named.or_else(|| self.pick_id(&membership.learners()))?;
                Some(MembershipChange::Promote { id })
            }
            MemberChange::RemoveMember => {
                let removable: Vec<NodeId> = membership
                    .members()
                    .iter()
                    .filter(|m| !m.voter || may_remove_voter)
                    .map(|m| m.id)
                    .collect();
                let id = named.or_else(|| self.pick_id(&removable))?;
                Some(MembershipChange::Remove { id })
            }
            MemberChange::RemoveLeader => {
                let id = self.nodes[leader].id;
                (may_remove_voter || named.is_some()).then_some(MembershipChange::Remove { id })
            }
            MemberChange::ReplaceCrashed => {
                let crashed: Vec<NodeId> = voters
                    .iter()
                    .copied()
                    .filter(|id| self.nodes[(id.0 - 1) as usize].core.is_none())
                    .collect();
                let id = named.or_else(|| self.pick_id(&crashed))?;
                if may_remove_voter || named.is_some() {
                    Some(MembershipChange::Remove { id })
                } else {
                    // Too few voters to remove one first: add its replacement first.
                    add(self)
                }
            }
        }
    }

    fn pick_id(&mut self, ids: &[NodeId]) -> Option<NodeId> {
        (!ids.is_empty()).then(|| *self.rng.membership.pick(ids))
    }

    /// Proposes `change` at `leader`; counts and returns the outcome.
    fn propose_change(
        &mut self,
        leader: usize,
        change: MembershipChange,
    ) -> Result<ProposalOutcome, Violation> {
        self.step_core(leader, Input::ChangeMembership(change))?;
        let outcome = self.dispatch_outputs(leader)?.ok_or_else(|| {
            Violation::new(
                "Proposal Contract",
                &[self.nodes[leader].id],
                "a configuration change got no outcome in its step",
            )
        })?;
        self.count_member(match &outcome {
            ProposalOutcome::Accepted { .. } => "member_accepted",
            ProposalOutcome::MembershipRefused(MembershipRefusal::Pending { .. }) => {
                "member_refused_pending"
            }
            ProposalOutcome::MembershipRefused(MembershipRefusal::LearnerBehind { .. }) => {
                "member_refused_learner_behind"
            }
            ProposalOutcome::MembershipRefused(MembershipRefusal::NotYetCommittedInTerm) => {
                "member_refused_not_committed_in_term"
            }
            ProposalOutcome::MembershipRefused(_) => "member_refused_other",
            ProposalOutcome::NotLeader { .. } => "member_not_leader",
            ProposalOutcome::Transferring { .. } => "member_refused_transferring",
            ProposalOutcome::AlreadyApplied { .. } | ProposalOutcome::SeqBehind { .. } => {
                return Err(Violation::new(
                    "Proposal Contract",
                    &[self.nodes[leader].id],
                    "a configuration change was answered as a session append",
                ))
            }
        });
        Ok(outcome)
    }

    /// A second change right after the first, in the same instant: while the first is
    /// uncommitted the leader must refuse it, naming the first's index.
    fn race(
        &mut self,
        leader: usize,
        membership: &Membership,
        first_id: NodeId,
        first: ProposalOutcome,
    ) -> Result<(), Violation> {
        // Remove a learner if there is one (other than the first's), else promote nothing
        // in particular: any second change must meet the same refusal.
        let second = match membership.learners().into_iter().find(|&id| id != first_id) {
            Some(id) => MembershipChange::Remove { id },
            None => MembershipChange::Promote { id: first_id },
        };
        let still_leads = self.nodes[leader]
            .core
            .as_ref()
            .is_some_and(|core| core.role() == Role::Leader);
        let outcome = self.propose_change(leader, second)?;
        let ProposalOutcome::Accepted { first_index, .. } = first else {
            return Ok(());
        };
        let expected =
            ProposalOutcome::MembershipRefused(MembershipRefusal::Pending { index: first_index });
        if still_leads && outcome != expected {
            return Err(Violation::new(
                "Membership",
                &[self.nodes[leader].id],
                format!(
                    "a second change right after the one at {first_index} was answered \
                     {outcome:?}, not refused as pending"
                ),
            ));
        }
        Ok(())
    }

    fn count_member(&mut self, name: &'static str) {
        *self.counters.faults.entry(name).or_default() += 1;
    }

    /// After a step of `node`: if it leads and its commit index moved past `before`, a
    /// majority of the voters of its configuration in force must hold the entry.
    pub(crate) fn check_leader_commit(
        &mut self,
        node: usize,
        before: Index,
    ) -> Result<(), Violation> {
        let core = self.nodes[node].core.as_ref().expect("just stepped");
        let commit = core.commit_index();
        if core.role() != Role::Leader || commit <= before {
            return Ok(());
        }
        let Ok(term) = core.log().term_at(commit) else {
            return Ok(()); // Below the window: an install's boundary, checked as such.
        };
        let voters = core.membership().membership.voters();
        let id = core.id();
        let disks = self.nodes.iter().map(|n| (n.id, n.disk.durable()));
        self.checker
            .leader_committed(id, commit, term, voters, disks)
    }
}

/// The node a change names.
fn change_target(change: &MembershipChange) -> NodeId {
    match change {
        MembershipChange::AddLearner { id, .. }
        | MembershipChange::Promote { id }
        | MembershipChange::Remove { id } => *id,
    }
}

impl Simulation {
    /// The nodes (0-based) that vote in the final configuration: the newest committed
    /// one's voters, and those of any newer configuration in force on some node (running,
    /// or on its disk when crashed), which may yet commit.
    pub(crate) fn final_voters(&self) -> Vec<usize> {
        let (committed_at, committed) = self.checker.newest_committed_config();
        let mut voters: Vec<NodeId> = committed.voters();
        for node in &self.nodes {
            let (index, membership) = match &node.core {
                Some(core) => {
                    let in_force = core.membership();
                    (in_force.index, in_force.membership.clone())
                }
                None => match newest_durable_config(node.disk.durable()) {
                    Some(found) => found,
                    None => continue,
                },
            };
            if index > committed_at {
                voters.extend(membership.voters());
            }
        }
        voters.sort_unstable();
        voters.dedup();
        voters.iter().map(|id| (id.0 - 1) as usize).collect()
    }
}

/// The newest configuration on a disk: its newest configuration entry, else the newest
/// applied one it recorded.
fn newest_durable_config(durable: &crate::disk::Durable) -> Option<(Index, Membership)> {
    let in_log = durable
        .entries
        .iter()
        .rev()
        .find_map(|entry| match &entry.payload {
            Payload::Config(membership) => Some((entry.index, membership.clone())),
            _ => None,
        });
    in_log.or_else(|| {
        let newest = durable.memberships.newest()?;
        Some((newest.index, newest.membership.clone()))
    })
}
