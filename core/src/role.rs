//! What a node knows only in one role. A leader's replication progress and timers, and a
//! campaign's votes, exist only inside the variant for that role, so no other role can read
//! or forget to clear them (the flat struct of etcd-io/raft is the counter-example).

use crate::config::Config;
use crate::progress::Progress;
use crate::timeout::Timeout;
use crate::transfer::Transfer;
use crate::types::{Index, NodeId, Role};
use std::collections::BTreeMap;

/// The answers a campaign has received. Own vote included once it counts.
pub(crate) type Votes = BTreeMap<NodeId, bool>;

/// The role and the state that belongs to it.
#[derive(Debug)]
pub(crate) enum RoleState {
    Follower,
    PreCandidate { votes: Votes },
    Candidate { votes: Votes },
    Leader(LeaderState),
}

/// A leader's own state.
#[derive(Debug)]
pub(crate) struct LeaderState {
    /// Replication progress of each peer.
    /// Invariant: holds exactly the peers.
    pub(crate) progress: BTreeMap<NodeId, Progress>,
    /// Until the next heartbeat broadcast.
    pub(crate) heartbeat: Timeout,
    /// Until the next CheckQuorum.
    pub(crate) check_quorum: Timeout,
    /// The leadership transfer under way, if any (`transfer.rs`).
    /// Invariant: its target is one of the peers.
    pub(crate) transfer: Option<Transfer>,
    /// Set once this leader sent `TimeoutNow` in its term: voters may then grant a vote
    /// while they hear it, so it serves no lease read for the rest of its term.
    pub(crate) lease_forfeited: bool,
}

impl LeaderState {
    /// A new leader whose log ends just before `next`: every peer is probed from there.
    pub(crate) fn new(config: &Config, peers: &[NodeId], next: Index) -> LeaderState {
        LeaderState {
            progress: peers
                .iter()
                .map(|&peer| (peer, Progress::new(next)))
                .collect(),
            heartbeat: Timeout::new(config.heartbeat_interval_ticks),
            check_quorum: Timeout::new(config.election_timeout_ticks_min),
            transfer: None,
            lease_forfeited: false,
        }
    }
}

impl RoleState {
    pub(crate) fn role(&self) -> Role {
        match self {
            RoleState::Follower => Role::Follower,
            RoleState::PreCandidate { .. } => Role::PreCandidate,
            RoleState::Candidate { .. } => Role::Candidate,
            RoleState::Leader(_) => Role::Leader,
        }
    }

    /// The votes of the campaign under way, if any.
    pub(crate) fn votes(&self) -> Option<&Votes> {
        match self {
            RoleState::PreCandidate { votes } | RoleState::Candidate { votes } => Some(votes),
            RoleState::Follower | RoleState::Leader(_) => None,
        }
    }

    pub(crate) fn votes_mut(&mut self) -> Option<&mut Votes> {
        match self {
            RoleState::PreCandidate { votes } | RoleState::Candidate { votes } => Some(votes),
            RoleState::Follower | RoleState::Leader(_) => None,
        }
    }

    pub(crate) fn leader(&self) -> Option<&LeaderState> {
        match self {
            RoleState::Leader(leader) => Some(leader),
            _ => None,
        }
    }

    pub(crate) fn leader_mut(&mut self) -> Option<&mut LeaderState> {
        match self {
            RoleState::Leader(leader) => Some(leader),
            _ => None,
        }
    }

    /// Leader only (callers checked the role): every peer's progress.
    pub(crate) fn progress(&self) -> &BTreeMap<NodeId, Progress> {
        &self
            .leader()
            .expect("only a leader tracks progress")
            .progress
    }

    pub(crate) fn progress_mut(&mut self) -> &mut BTreeMap<NodeId, Progress> {
        &mut self
            .leader_mut()
            .expect("only a leader tracks progress")
            .progress
    }

    /// `peer`'s progress, when this node leads and `peer` is one of its peers.
    pub(crate) fn peer(&self, peer: NodeId) -> Option<&Progress> {
        self.leader()?.progress.get(&peer)
    }

    pub(crate) fn peer_mut(&mut self, peer: NodeId) -> Option<&mut Progress> {
        self.leader_mut()?.progress.get_mut(&peer)
    }
}
