//! The checks configuration changes add: commits are made by a quorum of the configuration
//! in force, and no committed configuration is lost across a restart.
//!
//! Single-server changes (`replog_core::membership`) keep one configuration in force per
//! node, the newest in its log; a leader must count a majority of *its* voters for a
//! commit, so the checker looks at the voters' disks the moment a leader's commit index
//! moves, and remembers that voter set: Durability after a crash counts among it.

use super::{Checker, NodeState};
use crate::disk::Durable;
use crate::report::Violation;
use replog_core::{Index, Membership, NodeId, Payload, Term};

impl Checker {
    /// The newest committed configuration and its index (the bootstrap one at 0).
    pub fn newest_committed_config(&self) -> (Index, &Membership) {
        let (index, membership) = self.committed_configs.last().expect("bootstrap");
        (*index, membership)
    }

    /// The leader `leader`, with `voters` in force, moved its commit index to `commit`
    /// (entry of term `term`): a majority of `voters` must hold that entry durably (or a
    /// committed prefix through it, after an install).
    pub fn leader_committed<'a>(
        &mut self,
        leader: NodeId,
        commit: Index,
        term: Term,
        voters: Vec<NodeId>,
        disks: impl Iterator<Item = (NodeId, &'a Durable)>,
    ) -> Result<(), Violation> {
        let holds = |durable: &Durable| {
            durable.boundary.index > commit
                || durable.id_at(commit).is_some_and(|id| id.term == term)
        };
        let holders: Vec<NodeId> = disks
            .filter(|(id, durable)| voters.contains(id) && holds(durable))
            .map(|(id, _)| id)
            .collect();
        let majority = voters.len() / 2 + 1;
        if holders.len() < majority {
            return Err(Violation::new(
                "Membership",
                &[leader],
                format!(
                    "{leader} committed {commit}/{term} held durably by only {holders:?} of its \
                     voters {voters:?} (a majority is {majority})"
                ),
            ));
        }
        // Durability follows the newest committed entry: a stale leader of an older term
        // that commits a lower index later, with another configuration, does not move it.
        if self
            .commit_quorum
            .as_ref()
            .is_none_or(|(newest, _)| commit > *newest)
        {
            self.commit_quorum = Some((commit, voters));
        }
        Ok(())
    }

    /// A node restarted with configuration `in_force` (from `index`): it must be the newest
    /// configuration entry of its log, or, when its log holds none, the newest committed
    /// one before its log begins (the bootstrap configuration before any).
    pub fn restarted_membership(
        &self,
        core: &NodeState,
        index: Index,
        in_force: &Membership,
    ) -> Result<(), Violation> {
        let first = core.first_index();
        let newest_in_log = (first.0..=core.last_index().0).rev().find_map(|k| {
            match core.entry(Index(k)).map(|entry| &entry.payload) {
                Some(Payload::Config(membership)) => Some((Index(k), membership)),
                _ => None,
            }
        });
        let expected = newest_in_log.or_else(|| {
            self.committed_configs
                .iter()
                .rev()
                .find(|(at, _)| *at < first)
                .map(|(at, membership)| (*at, membership))
        });
        let Some((at, membership)) = expected else {
            return Ok(());
        };
        if at == index && membership == in_force {
            return Ok(());
        }
        Err(Violation::new(
            "Membership",
            &[core.id],
            format!(
                "restarted with configuration {in_force} of index {index}, but the newest \
                 configuration it holds is {membership} of index {at}"
            ),
        ))
    }
}
