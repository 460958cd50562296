//! Every majority decision the core makes: vote tallies, the commit index, CheckQuorum and
//! the read quorum. Call sites ask a [`JointConfig`] and never count voters themselves, so
//! that joint consensus (thesis §4.3), where each decision needs a majority of the incoming
//! voters *and* of the outgoing ones, changes this module only.

use crate::types::{Index, NodeId};

/// The state of an election tally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteResult {
    /// A majority granted.
    Won,
    /// A majority refused: the campaign cannot win.
    Lost,
    /// Neither yet.
    Pending,
}

/// One set of voters, decided by simple majority.
///
/// Invariant: `voters` is sorted, without duplicates, and not empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Configuration {
    voters: Vec<NodeId>,
}

impl Configuration {
    /// Panics on an empty set: a configuration without voters can decide nothing (config
    /// validation refuses it before it gets here).
    pub fn new(mut voters: Vec<NodeId>) -> Configuration {
        voters.sort();
        voters.dedup();
        assert!(!voters.is_empty(), "quorum of no voters");
        Configuration { voters }
    }

    pub fn voters(&self) -> &[NodeId] {
        &self.voters
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.voters.binary_search(&id).is_ok()
    }

    /// The number of voters that make a majority.
    pub fn majority(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// Tallies `vote` (`Some(granted)` for each voter that answered). Lost only once a
    /// majority refused, the rule the core has always used.
    pub fn vote_result(&self, vote: impl Fn(NodeId) -> Option<bool>) -> VoteResult {
        let (mut granted, mut refused) = (0, 0);
        for &id in &self.voters {
            match vote(id) {
                Some(true) => granted += 1,
                Some(false) => refused += 1,
                None => {}
            }
        }
        if granted >= self.majority() {
            VoteResult::Won
        } else if refused >= self.majority() {
            VoteResult::Lost
        } else {
            VoteResult::Pending
        }
    }

    /// Whether a majority satisfies `active` (CheckQuorum, a confirmed read round).
    pub fn has_quorum(&self, active: impl Fn(NodeId) -> bool) -> bool {
        self.voters.iter().filter(|&&id| active(id)).count() >= self.majority()
    }

    /// The highest index that a majority holds, given each voter's `acked` index.
    pub fn committed_index(&self, acked: impl Fn(NodeId) -> Index) -> Index {
        let mut indexes: Vec<Index> = self.voters.iter().map(|&id| acked(id)).collect();
        indexes.sort_unstable_by(|a, b| b.cmp(a));
        indexes[self.majority() - 1]
    }
}

/// The configuration in force: `incoming` alone, or during a membership change `incoming`
/// and `outgoing` together, each decision needing a majority of both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JointConfig {
    pub incoming: Configuration,
    pub outgoing: Option<Configuration>,
}

impl JointConfig {
    /// A plain (non-joint) configuration.
    pub fn single(voters: Vec<NodeId>) -> JointConfig {
        JointConfig {
            incoming: Configuration::new(voters),
            outgoing: None,
        }
    }

    pub fn is_voter(&self, id: NodeId) -> bool {
        self.incoming.contains(id) || self.outgoing.as_ref().is_some_and(|o| o.contains(id))
    }

    /// Every voter of either half, sorted, once each.
    pub fn voters(&self) -> Vec<NodeId> {
        let mut all = self.incoming.voters().to_vec();
        if let Some(outgoing) = &self.outgoing {
            all.extend_from_slice(outgoing.voters());
            all.sort();
            all.dedup();
        }
        all
    }

    /// Won when both halves won, lost when either lost.
    pub fn vote_result(&self, vote: impl Fn(NodeId) -> Option<bool>) -> VoteResult {
        let incoming = self.incoming.vote_result(&vote);
        let Some(outgoing) = &self.outgoing else {
            return incoming;
        };
        match (incoming, outgoing.vote_result(&vote)) {
            (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
            (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
            _ => VoteResult::Pending,
        }
    }

    pub fn has_quorum(&self, active: impl Fn(NodeId) -> bool) -> bool {
        self.incoming.has_quorum(&active)
            && self
                .outgoing
                .as_ref()
                .is_none_or(|outgoing| outgoing.has_quorum(&active))
    }

    /// The highest index both halves' majorities hold.
    pub fn committed_index(&self, acked: impl Fn(NodeId) -> Index) -> Index {
        let incoming = self.incoming.committed_index(&acked);
        match &self.outgoing {
            None => incoming,
            Some(outgoing) => incoming.min(outgoing.committed_index(&acked)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn ids(raw: &[u64]) -> Vec<NodeId> {
        raw.iter().map(|&id| NodeId(id)).collect()
    }

    #[test]
    fn majority_of_odd_and_even_clusters() {
        let sizes = [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3)];
        for (voters, majority) in sizes {
            let config = Configuration::new(ids(&(1..=voters).collect::<Vec<_>>()));
            assert_eq!(config.majority(), majority);
        }
    }

    #[test]
    fn committed_index_is_the_majority_th_highest() {
        let config = Configuration::new(ids(&[1, 2, 3, 4, 5]));
        let acked = [5, 1, 3, 9, 2];
        assert_eq!(
            config.committed_index(|id| Index(acked[id.0 as usize - 1])),
            Index(3)
        );
    }

    #[test]
    fn a_single_voter_decides_alone() {
        let config = JointConfig::single(ids(&[7]));
        assert_eq!(config.vote_result(|_| Some(true)), VoteResult::Won);
        assert_eq!(config.vote_result(|_| Some(false)), VoteResult::Lost);
        assert_eq!(config.vote_result(|_| None), VoteResult::Pending);
        assert!(config.has_quorum(|id| id == NodeId(7)));
        assert_eq!(config.committed_index(|_| Index(4)), Index(4));
    }

    #[test]
    fn a_lost_election_needs_a_majority_of_refusals() {
        // Four voters: two refusals leave no way to win but are not a majority; the tally
        // stays pending, as the core has always counted it.
        let config = Configuration::new(ids(&[1, 2, 3, 4]));
        let votes = BTreeMap::from([(NodeId(1), true), (NodeId(2), false), (NodeId(3), false)]);
        assert_eq!(
            config.vote_result(|id| votes.get(&id).copied()),
            VoteResult::Pending
        );
    }

    fn config_strategy() -> impl Strategy<Value = Configuration> {
        proptest::collection::btree_set(1u64..8, 1..6)
            .prop_map(|set| Configuration::new(set.into_iter().map(NodeId).collect()))
    }

    proptest! {
        #[test]
        fn joint_decisions_are_the_and_of_the_halves(
            incoming in config_strategy(),
            outgoing in config_strategy(),
            votes in proptest::collection::vec(proptest::option::of(any::<bool>()), 8),
            acked in proptest::collection::vec(0u64..20, 8),
        ) {
            let joint = JointConfig { incoming: incoming.clone(), outgoing: Some(outgoing.clone()) };
            let vote = |id: NodeId| votes[id.0 as usize];
            let active = |id: NodeId| vote(id) == Some(true);
            let index = |id: NodeId| Index(acked[id.0 as usize]);
            prop_assert_eq!(
                joint.has_quorum(active),
                incoming.has_quorum(active) && outgoing.has_quorum(active)
            );
            let (a, b) = (incoming.vote_result(vote), outgoing.vote_result(vote));
            let won = a == VoteResult::Won && b == VoteResult::Won;
            let lost = a == VoteResult::Lost || b == VoteResult::Lost;
            prop_assert_eq!(joint.vote_result(vote) == VoteResult::Won, won);
            prop_assert_eq!(joint.vote_result(vote) == VoteResult::Lost, lost);
            prop_assert_eq!(
                joint.committed_index(index),
                incoming.committed_index(index).min(outgoing.committed_index(index))
            );
        }

        #[test]
        fn commit_index_is_the_highest_a_majority_holds(
            config in config_strategy(),
            acked in proptest::collection::vec(0u64..20, 8),
        ) {
            let index = |id: NodeId| Index(acked[id.0 as usize]);
            let committed = config.committed_index(index);
            let holding = |at: Index| config.voters().iter().filter(|&&id| index(id) >= at).count();
            prop_assert!(holding(committed) >= config.majority());
            prop_assert!(holding(committed.next()) < config.majority());
        }
    }
}
