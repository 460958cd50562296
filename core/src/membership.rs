//! Membership as data: who votes, who only listens, and how that changes through the log.
//!
//! ## Single-server changes, not joint consensus
//!
//! A configuration change is a log entry ([`Payload::Config`]) carrying the whole new
//! [`Membership`]. Each change adds a learner, promotes one learner to voter, or removes one
//! member ([`MembershipChange`]): at most one voter joins or leaves per change, so any
//! majority of the old voters and any majority of the new ones share a node (thesis §4.1),
//! and the two configurations can never elect two leaders in one term nor commit
//! conflicting entries. That is the whole safety argument, and it needs no intermediate
//! joint configuration: the quorum object (`quorum.rs`) can hold one (`JointConfig`) should
//! a change of several voters at once ever be wanted, but replacing a node here is three
//! small steps (add a learner, promote it once caught up, remove the old one), each of
//! which an operator can watch, and which never leaves an even cluster waiting on a
//! majority of two sets at once.
//!
//! The rules that make single-server changes safe, all enforced by the leader before it
//! appends a change (`ProposalOutcome::MembershipRefused` otherwise):
//! - **one change at a time**: no configuration entry may be uncommitted in the log, so
//!   configurations differ by at most one voter between any two that are in force at once;
//! - **a leader changes nothing before it has committed an entry of its own term** (the bug
//!   Ongaro posted to raft-dev in 2015: a new leader whose log holds an uncommitted change of
//!   a deposed leader could otherwise append a second change that, with the first, differs
//!   by two voters from the configuration a rival leader uses). The no-op every leader
//!   appends at once (thesis §6.4) gets it there within one round trip;
//! - a promoted learner must have caught up (its match index at least the leader's commit
//!   index), so that a new voter does not stall commitment while it copies the log;
//! - at least one voter always remains.
//!
//! **In force as soon as appended.** Every node uses the newest configuration in its log,
//! committed or not (thesis §4.1): a leader counts the new voters from the moment it appends
//! the change, a follower from the moment it accepts it, and a truncation that removes the
//! entry brings the previous one back. A leader that removes itself manages the cluster
//! until the removal commits, without counting itself, then steps down; a node that is not
//! a voter in its configuration never campaigns.
//!
//! **Durable across restarts, trims and catch-up.** The core writes a
//! [`MembershipCheckpoint`] with each applied configuration entry (`Write::memberships`);
//! storage keeps them in a [`MembershipHistory`] so that it can name the configuration at
//! any boundary it trims to (an install carries it to a follower) and hand back the newest
//! at a restart. The configuration before any entry is the bootstrap one, `Config::voters`.

use crate::types::{Entry, Index, NodeId, Payload};
use serde::{Deserialize, Serialize};
use std::fmt;

/// One member of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Member {
    pub id: NodeId,
    /// Voters count toward every quorum; learners receive the log and count for none.
    pub voter: bool,
    /// Opaque to the core: what the driver needs to reach the member (replog's node keeps
    /// its name and address here). Empty for the bootstrap members.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub meta: String,
}

/// A configuration: its members, sorted by id, each once, at least one a voter.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Vec<Member>", into = "Vec<Member>")]
pub struct Membership {
    members: Vec<Member>,
}

impl TryFrom<Vec<Member>> for Membership {
    type Error = String;
    fn try_from(members: Vec<Member>) -> Result<Membership, String> {
        Membership::new(members)
    }
}

impl From<Membership> for Vec<Member> {
    fn from(membership: Membership) -> Vec<Member> {
        membership.members
    }
}

impl Membership {
    /// Checks and sorts `members`.
    pub fn new(mut members: Vec<Member>) -> Result<Membership, String> {
        members.sort_by_key(|member| member.id);
        if members.windows(2).any(|pair| pair[0].id == pair[1].id) {
            return Err("a member appears twice".into());
        }
        if members.iter().any(|member| member.id == NodeId(0)) {
            return Err("node id 0 is reserved".into());
        }
        if !members.iter().any(|member| member.voter) {
            return Err("a configuration needs at least one voter".into());
        }
        Ok(Membership { members })
    }

    /// The configuration a cluster starts with: these voters, nothing else.
    pub fn bootstrap(voters: &[NodeId]) -> Membership {
        let members = voters
            .iter()
            .map(|&id| Member {
                id,
                voter: true,
                meta: String::new(),
            })
            .collect();
        Membership::new(members).expect("validated bootstrap voters")
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    pub fn get(&self, id: NodeId) -> Option<&Member> {
        self.members
            .binary_search_by_key(&id, |member| member.id)
            .ok()
            .map(|at| &self.members[at])
    }

    pub fn is_voter(&self, id: NodeId) -> bool {
        self.get(id).is_some_and(|member| member.voter)
    }

    pub fn voters(&self) -> Vec<NodeId> {
        self.members
            .iter()
            .filter(|member| member.voter)
            .map(|member| member.id)
            .collect()
    }

    pub fn learners(&self) -> Vec<NodeId> {
        self.members
            .iter()
            .filter(|member| !member.voter)
            .map(|member| member.id)
            .collect()
    }

    /// Every member but `me`: whom a leader replicates to.
    pub fn others(&self, me: NodeId) -> Vec<NodeId> {
        self.members
            .iter()
            .map(|member| member.id)
            .filter(|&id| id != me)
            .collect()
    }

    /// The configuration after `change`, or why it cannot be made to this one.
    pub fn changed(&self, change: &MembershipChange) -> Result<Membership, MembershipRefusal> {
        let mut members = self.members.clone();
        match change {
            MembershipChange::AddLearner { id, meta } => {
                if *id == NodeId(0) {
                    return Err(MembershipRefusal::ReservedId);
                }
                if self.get(*id).is_some() {
                    return Err(MembershipRefusal::AlreadyMember { id: *id });
                }
                members.push(Member {
                    id: *id,
                    voter: false,
                    meta: meta.clone(),
                });
            }
            MembershipChange::Promote { id } => match self.get(*id) {
                None => return Err(MembershipRefusal::NotMember { id: *id }),
                Some(member) if member.voter => {
                    return Err(MembershipRefusal::AlreadyVoter { id: *id })
                }
                Some(_) => {
                    for member in &mut members {
                        member.voter |= member.id == *id;
                    }
                }
            },
            MembershipChange::Remove { id } => {
                if self.get(*id).is_none() {
                    return Err(MembershipRefusal::NotMember { id: *id });
                }
                members.retain(|member| member.id != *id);
                if !members.iter().any(|member| member.voter) {
                    return Err(MembershipRefusal::LastVoter { id: *id });
                }
            }
        }
        Ok(Membership::new(members).expect("a single change keeps a valid configuration"))
    }

    /// Approximate encoded size, for the byte limits on AppendEntries.
    pub fn size_bytes(&self) -> usize {
        self.members.iter().map(|m| 9 + m.meta.len()).sum()
    }
}

impl fmt::Display for Membership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |voter: bool| {
            self.members
                .iter()
                .filter(|m| m.voter == voter)
                .map(|m| m.id.0.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        write!(f, "voters [{}] learners [{}]", list(true), list(false))
    }
}

/// One change a client may ask for ([`crate::Input::ChangeMembership`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MembershipChange {
    /// A new member that receives the log but votes in nothing.
    AddLearner { id: NodeId, meta: String },
    /// A caught-up learner becomes a voter.
    Promote { id: NodeId },
    /// A member (voter or learner, the leader itself included) leaves.
    Remove { id: NodeId },
}

/// Why the leader refused a [`MembershipChange`]. Nothing was appended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MembershipRefusal {
    /// A configuration entry at `index` is not committed yet: one change at a time.
    Pending {
        index: Index,
    },
    /// This leader has not yet committed an entry of its own term (it will shortly).
    NotYetCommittedInTerm,
    AlreadyMember {
        id: NodeId,
    },
    NotMember {
        id: NodeId,
    },
    AlreadyVoter {
        id: NodeId,
    },
    /// Removing `id` would leave no voter.
    LastVoter {
        id: NodeId,
    },
    /// The learner has not caught up: its match index is below the commit index.
    LearnerBehind {
        id: NodeId,
        match_index: Index,
        commit_index: Index,
    },
    /// Node id 0 is reserved.
    ReservedId,
}

impl fmt::Display for MembershipRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MembershipRefusal::Pending { index } => write!(
                f,
                "the configuration change at index {} is not committed yet (one change at a time)",
                index.0
            ),
            MembershipRefusal::NotYetCommittedInTerm => {
                f.write_str("the leader has not yet committed an entry of its term; retry shortly")
            }
            MembershipRefusal::AlreadyMember { id } => {
                write!(f, "node {} is a member already", id.0)
            }
            MembershipRefusal::NotMember { id } => write!(f, "node {} is not a member", id.0),
            MembershipRefusal::AlreadyVoter { id } => write!(f, "node {} is a voter already", id.0),
            MembershipRefusal::LastVoter { id } => {
                write!(f, "removing node {} would leave no voter", id.0)
            }
            MembershipRefusal::LearnerBehind {
                id,
                match_index,
                commit_index,
            } => write!(
                f,
                "learner {} has not caught up (it holds up to index {}, the commit index is {})",
                id.0, match_index.0, commit_index.0
            ),
            MembershipRefusal::ReservedId => f.write_str("node id 0 is reserved"),
        }
    }
}

/// A configuration and the index of the entry that carried it (0: the bootstrap one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipCheckpoint {
    pub index: Index,
    pub membership: Membership,
}

/// What storage keeps of the configurations: every applied configuration entry from the
/// newest at or before the log's boundary on (a handful). One implementation for every
/// driver, so that the node and the simulator agree on what a restart or a trim sees.
///
/// Invariant: indexes strictly increase.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipHistory {
    checkpoints: Vec<MembershipCheckpoint>,
}

impl MembershipHistory {
    /// Keeps `checkpoint` (from `Write::memberships`), unless storage holds it already.
    pub fn record(&mut self, checkpoint: MembershipCheckpoint) {
        if self
            .newest()
            .is_none_or(|newest| checkpoint.index > newest.index)
        {
            self.checkpoints.push(checkpoint);
        }
    }

    /// The newest configuration: what a restart hands back in `Recovered::membership`.
    pub fn newest(&self) -> Option<&MembershipCheckpoint> {
        self.checkpoints.last()
    }

    /// The configuration in force at `index` (which storage holds or trimmed to), as far as
    /// applied entries go: what an install at a boundary carries. `None`: the bootstrap one.
    pub fn at(&self, index: Index) -> Option<&MembershipCheckpoint> {
        self.checkpoints.iter().rev().find(|c| c.index <= index)
    }

    /// Storage dropped the entries before `before`: forget what no boundary needs.
    pub fn trimmed(&mut self, before: Index) {
        let boundary = before.prev();
        if let Some(keep_from) = self.checkpoints.iter().rposition(|c| c.index <= boundary) {
            self.checkpoints.drain(..keep_from);
        }
    }

    /// The log was replaced by an install: its configuration is the only one left.
    pub fn installed(&mut self, checkpoint: Option<MembershipCheckpoint>) {
        self.checkpoints = checkpoint.into_iter().collect();
    }

    pub fn checkpoints(&self) -> &[MembershipCheckpoint] {
        &self.checkpoints
    }
}

/// The core's view: the newest applied configuration, and the configuration entries in
/// the log after it (not yet applied, maybe not committed).
///
/// Invariant: `base.index <=` the applied index; `pending` indexes strictly increase, above
/// `base.index`, and each is an entry in the log.
#[derive(Clone, Debug)]
pub(crate) struct MembershipLog {
    base: MembershipCheckpoint,
    pending: Vec<MembershipCheckpoint>,
}

impl MembershipLog {
    pub(crate) fn new(base: MembershipCheckpoint) -> MembershipLog {
        MembershipLog {
            base,
            pending: Vec::new(),
        }
    }

    /// The configuration in force: the newest in the log.
    pub(crate) fn in_force(&self) -> &MembershipCheckpoint {
        self.pending.last().unwrap_or(&self.base)
    }

    /// The newest configuration entry, if it lies above `commit`: a change in flight.
    pub(crate) fn uncommitted(&self, commit: Index) -> Option<Index> {
        Some(self.in_force().index).filter(|&index| index > commit)
    }

    /// Entries joined the log (after any truncation). Returns whether the configuration in
    /// force changed.
    pub(crate) fn appended(&mut self, entries: &[Entry]) -> bool {
        let mut changed = false;
        for entry in entries {
            if let Payload::Config(membership) = &entry.payload {
                if entry.index > self.in_force().index {
                    self.pending.push(MembershipCheckpoint {
                        index: entry.index,
                        membership: membership.clone(),
                    });
                    changed = true;
                }
            }
        }
        changed
    }

    /// The log lost every entry above `after` (never an applied one). Returns whether the
    /// configuration in force changed.
    pub(crate) fn truncated(&mut self, after: Index) -> bool {
        assert!(
            after >= self.base.index,
            "truncation below the applied configuration"
        );
        let before = self.pending.len();
        self.pending.retain(|c| c.index <= after);
        self.pending.len() != before
    }

    /// The entry at `index` (a configuration entry) was applied: it becomes the base.
    /// Returns its checkpoint, for storage.
    pub(crate) fn applied(&mut self, index: Index) -> Option<MembershipCheckpoint> {
        let at = self.pending.iter().position(|c| c.index == index)?;
        let rest = self.pending.split_off(at + 1);
        self.base = self.pending.pop().expect("found above");
        self.pending = rest;
        Some(self.base.clone())
    }

    /// The log was replaced by an install whose configuration is `base`.
    pub(crate) fn installed(&mut self, base: MembershipCheckpoint) {
        self.base = base;
        self.pending.clear();
    }

    pub(crate) fn check_invariants(&self, applied: Index, last: Index) {
        assert!(
            self.base.index <= applied,
            "unapplied configuration as base"
        );
        let mut previous = self.base.index;
        for c in &self.pending {
            assert!(
                c.index > previous && c.index <= last,
                "configuration entries out of order"
            );
            previous = c.index;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Term;
    use proptest::prelude::*;

    fn voters(ids: &[u64]) -> Membership {
        Membership::bootstrap(&ids.iter().map(|&id| NodeId(id)).collect::<Vec<_>>())
    }

    fn config_entry(index: u64, membership: Membership) -> Entry {
        Entry {
            index: Index(index),
            term: Term(1),
            payload: Payload::Config(membership),
        }
    }

    #[test]
    fn changes_are_checked_against_the_configuration() {
        let three = voters(&[1, 2, 3]);
        let add = MembershipChange::AddLearner {
            id: NodeId(4),
            meta: "node4@127.0.0.1:7004".into(),
        };
        let four = three.changed(&add).unwrap();
        assert_eq!(four.learners(), vec![NodeId(4)]);
        assert_eq!(four.voters(), vec![NodeId(1), NodeId(2), NodeId(3)]);
        assert_eq!(
            four.changed(&add),
            Err(MembershipRefusal::AlreadyMember { id: NodeId(4) })
        );
        let promoted = four
            .changed(&MembershipChange::Promote { id: NodeId(4) })
            .unwrap();
        assert!(promoted.is_voter(NodeId(4)));
        assert_eq!(
            promoted.changed(&MembershipChange::Promote { id: NodeId(4) }),
            Err(MembershipRefusal::AlreadyVoter { id: NodeId(4) })
        );
        assert_eq!(
            three.changed(&MembershipChange::Promote { id: NodeId(9) }),
            Err(MembershipRefusal::NotMember { id: NodeId(9) })
        );
        let one = voters(&[1]);
        assert_eq!(
            one.changed(&MembershipChange::Remove { id: NodeId(1) }),
            Err(MembershipRefusal::LastVoter { id: NodeId(1) })
        );
        assert_eq!(
            three.changed(&MembershipChange::AddLearner {
                id: NodeId(0),
                meta: String::new()
            }),
            Err(MembershipRefusal::ReservedId)
        );
    }

    #[test]
    fn a_membership_serializes_as_its_list_and_refuses_a_bad_one() {
        let json = serde_json::to_string(&voters(&[2, 1])).unwrap();
        assert_eq!(json, r#"[{"id":1,"voter":true},{"id":2,"voter":true}]"#);
        let bad = r#"[{"id":1,"voter":false}]"#;
        let error = serde_json::from_str::<Membership>(bad).unwrap_err();
        assert!(error.to_string().contains("at least one voter"), "{error}");
    }

    #[test]
    fn a_truncation_brings_the_previous_configuration_back() {
        let mut log = MembershipLog::new(MembershipCheckpoint {
            index: Index(0),
            membership: voters(&[1, 2, 3]),
        });
        assert!(log.appended(&[config_entry(5, voters(&[1, 2]))]));
        assert!(log.appended(&[config_entry(7, voters(&[1]))]));
        assert_eq!(log.uncommitted(Index(6)), Some(Index(7)));
        assert!(log.truncated(Index(6)));
        assert_eq!(log.in_force().membership, voters(&[1, 2]));
        assert_eq!(log.applied(Index(5)).unwrap().index, Index(5));
        assert!(!log.truncated(Index(5)));
        assert_eq!(log.in_force().index, Index(5));
        assert_eq!(log.uncommitted(Index(5)), None);
    }

    proptest! {
        /// Whatever a history recorded and trimmed, it names for every boundary it can
        /// still be asked about the newest configuration at or before it.
        #[test]
        fn history_answers_every_boundary_after_a_trim(
            indexes in proptest::collection::btree_set(1u64..200, 0..12),
            trim_before in 1u64..220,
            asked in 0u64..220,
        ) {
            let mut history = MembershipHistory::default();
            let all: Vec<u64> = indexes.into_iter().collect();
            for (k, &index) in all.iter().enumerate() {
                history.record(MembershipCheckpoint {
                    index: Index(index),
                    membership: voters(&[k as u64 + 1]),
                });
            }
            history.trimmed(Index(trim_before));
            let boundary = trim_before - 1;
            prop_assume!(asked >= boundary);
            let expected = all.iter().rposition(|&i| i <= asked);
            let got = history.at(Index(asked)).map(|c| c.index.0);
            prop_assert_eq!(got, expected.map(|k| all[k]));
            prop_assert_eq!(history.newest().map(|c| c.index.0), all.last().copied());
        }
    }
}
