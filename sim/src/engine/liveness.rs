//! The liveness phase. Safety alone is met by a cluster that does nothing, so after the
//! fault phase the simulator heals a majority (restarts it, resumes it, and gives it a
//! perfect network on every link it touches) and requires, within bounds counted in election timeouts:
//! a leader, the commit of a fresh command through it, and then identical logs across the
//! healed majority. The minority stays as the faults left it.
//!
//! With configuration changes the majority is one of the final configuration's voters:
//! those of the newest committed configuration and of any newer one still uncommitted in
//! some node's log (single-server changes differ by one voter, so a majority of their
//! union is a majority of each). Removed nodes and unused spares are left alone.

use super::Simulation;
use crate::checker::NodeState;
use crate::net::NodeSet;
use crate::report::Violation;
use crate::trace::What;
use replog_core::{Index, NodeId, ProposalOutcome, Role, Term};

/// Bounds, in election timeouts of the slowest healed clock.
const LEADER_AND_COMMIT_TIMEOUTS: u64 = 10;
const CONVERGE_TIMEOUTS: u64 = 10;

pub(crate) struct Liveness {
    members: Vec<usize>,
    heal_us: u64,
    election_timeout_us: u64,
    deadline_us: u64,
    /// The leadership (node, term) the current probe was proposed to.
    probed: Option<(usize, Term)>,
    leader_us: Option<u64>,
    committed_us: Option<u64>,
    converged_us: Option<u64>,
}

impl Liveness {
    /// The probe committed: the healed majority now has `CONVERGE_TIMEOUTS` election
    /// timeouts, plus one worst-case round trip per batch it must still receive, to converge.
    /// (A seed with one entry per AppendEntries needs a round trip per missing entry.)
    pub fn probe_committed(&mut self, now_us: u64, catch_up_us: u64) {
        if self.committed_us.is_none() {
            self.committed_us = Some(now_us);
            self.deadline_us = now_us + CONVERGE_TIMEOUTS * self.election_timeout_us + catch_up_us;
        }
    }

    pub fn leader_after_us(&self) -> Option<u64> {
        self.leader_us.map(|t| t - self.heal_us)
    }

    pub fn committed_after_us(&self) -> Option<u64> {
        self.committed_us.map(|t| t - self.heal_us)
    }

    pub fn converged_after_us(&self) -> Option<u64> {
        self.converged_us.map(|t| t - self.heal_us)
    }
}

impl Simulation {
    pub(crate) fn start_liveness(&mut self) {
        self.workload_active = false;
        self.partition_generation += 1; // Stops flapping and pending partition ends.
        let mut members = self.scripted_majority().unwrap_or_else(|| {
            // A majority of the voters of the final configuration (`final_voters`).
            let mut members = self.final_voters();
            let majority = members.len() / 2 + 1;
            self.rng.faults.shuffle(&mut members);
            members.truncate(majority);
            members
        });
        members.sort_unstable();
        self.note_majority(&members);
        let set: NodeSet = members.iter().fold(0, |set, &n| set | 1 << n);
        self.net.heal_among(set);
        self.record(None, What::HealMajority { majority: set });
        let slowest_tick_us = members
            .iter()
            .map(|&n| self.nodes[n].tick_us)
            .max()
            .unwrap_or(1);
        let election_timeout_us = self.params.core.election_timeout_ticks_max * slowest_tick_us;
        self.liveness = Some(Liveness {
            deadline_us: self.now_us + LEADER_AND_COMMIT_TIMEOUTS * election_timeout_us,
            members: members.clone(),
            heal_us: self.now_us,
            election_timeout_us,
            probed: None,
            leader_us: None,
            committed_us: None,
            converged_us: None,
        });
        for node in members {
            self.resume(node);
            // A restart cannot fail here unless recovery is broken, which the next event's
            // check would not see: report it through the liveness check instead.
            if let Err(violation) = self.restart(node) {
                self.liveness_failure = Some(violation);
            }
        }
    }

    /// Runs after every event of the liveness phase. `Ok(true)` once it has converged.
    pub(crate) fn check_liveness(&mut self) -> Result<bool, Violation> {
        if let Some(violation) = self.liveness_failure.take() {
            return Err(violation);
        }
        // Borrowed out for the checks (and put back), not cloned: this runs on every event.
        let liveness = self.liveness.as_mut().expect("in the liveness phase");
        let members = std::mem::take(&mut liveness.members);
        let result = self.check_liveness_of(&members);
        self.liveness.as_mut().expect("still in it").members = members;
        result
    }

    fn check_liveness_of(&mut self, members: &[usize]) -> Result<bool, Violation> {
        let liveness = self.liveness.as_ref().expect("in the liveness phase");
        if self.now_us > liveness.deadline_us {
            return Err(self.liveness_violation(members));
        }
        if liveness.committed_us.is_none() {
            self.probe_leader()?;
            return Ok(false);
        }
        // The probe committed, and with it any configuration change before it: the healed
        // nodes the newest committed configuration still holds must converge; one it
        // removed is left alone, as the leader no longer replicates to it.
        let (_, final_config) = self.checker.newest_committed_config();
        let in_final: Vec<usize> = members
            .iter()
            .copied()
            .filter(|&n| final_config.get(self.nodes[n].id).is_some())
            .collect();
        if in_final.is_empty() {
            return Ok(false);
        }
        self.check_converged(&in_final)
    }

    /// Proposes a fresh command to each new leader. The leader may sit outside the healed
    /// majority (a minority node the faults left connected): it still serves the majority.
    fn probe_leader(&mut self) -> Result<(), Violation> {
        let leader = (0..self.nodes.len())
            .filter(|&n| self.nodes[n].is_running())
            .filter_map(|n| {
                let core = self.nodes[n].core.as_ref()?;
                (core.role() == Role::Leader).then_some((core.term(), n))
            })
            .max()
            .map(|(_, n)| n);
        let Some(node) = leader else {
            return Ok(());
        };
        let core = self.nodes[node].core.as_ref().expect("running");
        if core.transfer_target().is_some() {
            // It appends nothing until the transfer ends one way or the other.
            return Ok(());
        }
        let term = core.term();
        let liveness = self.liveness.as_mut().expect("in the liveness phase");
        if liveness.probed == Some((node, term)) {
            return Ok(());
        }
        liveness.probed = Some((node, term));
        liveness.leader_us.get_or_insert(self.now_us);
        let op = self.checker.history.invoke(None, self.now_us);
        match self.propose(node, op)? {
            ProposalOutcome::Accepted { .. } => Ok(()),
            ProposalOutcome::NotLeader { .. }
            | ProposalOutcome::Transferring { .. }
            | ProposalOutcome::AlreadyApplied { .. }
            | ProposalOutcome::SeqBehind { .. }
            | ProposalOutcome::MembershipRefused(_) => Err(Violation::new(
                "Proposal Contract",
                &[self.nodes[node].id],
                "a leader refused a proposal",
            )),
        }
    }

    /// The worst-case time to ship the healed majority's backlog from the longest log.
    pub(crate) fn catch_up_us(&self) -> u64 {
        let Some(liveness) = &self.liveness else {
            return 0;
        };
        let last = |n: usize| {
            self.nodes[n]
                .core
                .as_ref()
                .map_or(0, |c| c.log().last_index().0)
        };
        let longest = (0..self.nodes.len()).map(last).max().unwrap_or(0);
        let shortest = liveness.members.iter().map(|&n| last(n)).min().unwrap_or(0);
        // Entries here are about 24 bytes; 32 keeps the estimate of a batch on the low side.
        let core = &self.params.core;
        let batch = core
            .max_append_entries
            .min(core.max_append_bytes / 32)
            .max(1) as u64;
        let batches = (longest - shortest).div_ceil(batch);
        let round_trip_us = 2 * self.params.net.latency_us_max + self.params.disk.fsync_us_max;
        batches * round_trip_us
    }

    /// Identical logs, fully committed, on every healed node.
    fn check_converged(&mut self, members: &[usize]) -> Result<bool, Violation> {
        let mut cores = Vec::with_capacity(members.len());
        for &n in members {
            match &self.nodes[n].core {
                Some(core) if self.nodes[n].backlog.is_none() => cores.push(core),
                _ => return Ok(false),
            }
        }
        let first = cores[0];
        let key = |core: &replog_core::RaftCore| {
            (
                core.log().last_index(),
                core.log().last_term(),
                core.commit_index(),
            )
        };
        let same = cores
            .iter()
            .all(|core| key(core) == key(first) && core.commit_index() == core.log().last_index());
        if !same {
            return Ok(false);
        }
        // The logs, each joined from its disk and its core's window, from the first index
        // every one of them still holds (trims may have dropped different prefixes).
        let view = |n: usize| {
            let core = self.nodes[n].core.as_ref().expect("checked running");
            NodeState::of(core, &self.nodes[n].disk)
        };
        let from = members.iter().map(|&n| view(n).first_index()).max();
        let from = from.unwrap_or(Index(1));
        let whole = |n: usize| {
            let view = view(n);
            view.entries(from, view.last_index())
        };
        let first_log = whole(members[0]);
        if let Some(&other) = members[1..].iter().find(|&&n| whole(n) != first_log) {
            return Err(Violation::new(
                "Log Matching",
                &[first.id(), self.nodes[other].id],
                "the healed majority agrees on last index and term but not on the entries",
            ));
        }
        let liveness = self.liveness.as_mut().expect("in the liveness phase");
        liveness.converged_us = Some(self.now_us);
        Ok(true)
    }

    fn liveness_violation(&self, members: &[usize]) -> Violation {
        let liveness = self.liveness.as_ref().expect("in the liveness phase");
        let ids: Vec<NodeId> = members.iter().map(|&n| self.nodes[n].id).collect();
        let what = match (liveness.leader_us, liveness.committed_us) {
            (None, _) => format!("no leader among the healed majority within {LEADER_AND_COMMIT_TIMEOUTS} election timeouts"),
            (Some(_), None) => format!("a leader, but no fresh command committed within {LEADER_AND_COMMIT_TIMEOUTS} election timeouts"),
            (Some(_), Some(_)) => {
                let states: Vec<String> = members
                    .iter()
                    .map(|&n| match &self.nodes[n].core {
                        Some(core) => format!(
                            "{}: {} {} last {} commit {}",
                            core.id(),
                            core.role(),
                            core.term(),
                            core.log().last_index(),
                            core.commit_index()
                        ),
                        None => format!("{}: down", self.nodes[n].id),
                    })
                    .collect();
                format!(
                    "logs of the healed majority not identical within {CONVERGE_TIMEOUTS} election timeouts after the probe committed ({})",
                    states.join("; ")
                )
            }
        };
        Violation::new("Liveness", &ids, what)
    }
}
