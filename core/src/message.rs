//! Messages between Raft peers. Plain data: drivers serialize them however they like.

use crate::membership::MembershipCheckpoint;
use crate::sessions::SessionsCheckpoint;
use crate::types::{Entry, EntryId, Index, NodeId, ReadId, Term};
use serde::{Deserialize, Serialize};

/// A message from one peer to another.
///
/// `term` is the sender's term, except for PreVote: a pre-vote request carries the term the
/// sender *would* campaign in, and a granted pre-vote response echoes that term back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub from: NodeId,
    pub to: NodeId,
    pub term: Term,
    pub body: MessageBody,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageBody {
    /// RequestVote (§5.2), or the PreVote probe when `pre_vote` is set. `transfer` marks
    /// the campaign of a leadership transfer's target (thesis §3.10): voters grant it even
    /// while they hear a leader (the leader asked for it), see `transfer.rs`.
    RequestVote {
        pre_vote: bool,
        last_log_index: Index,
        last_log_term: Term,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        transfer: bool,
    },
    RequestVoteResponse {
        pre_vote: bool,
        granted: bool,
    },
    /// AppendEntries (§5.3). An empty `entries` is a heartbeat, checked like any other.
    AppendEntries {
        prev_log_index: Index,
        prev_log_term: Term,
        entries: Vec<Entry>,
        leader_commit: Index,
    },
    AppendEntriesResponse(AppendResponse),
    /// The leader no longer holds what this follower lacks: its log now starts after
    /// `last` (thesis §5.4.1, InstallSnapshot). The follower replaces its log with an empty
    /// one after `last`, keeping `data` (empty for replog's log service; an embedder's state
    /// snapshot), and answers like an AppendEntries that matched at `last`.
    InstallSnapshot {
        last: EntryId,
        data: Vec<u8>,
        /// The leader's session table, as of `sessions.through >= last.index`.
        #[serde(default)]
        sessions: SessionsCheckpoint,
        /// The configuration in force at `last` (`None`: the bootstrap one).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        membership: Option<MembershipCheckpoint>,
    },
    /// A follower asks its leader for a read index for its driver's read `id`.
    ReadIndex {
        id: ReadId,
    },
    /// The leader's read index for `id` once a round confirmed it, or `None`: not the
    /// leader (of this term), or no majority in time.
    ReadIndexResponse {
        id: ReadId,
        index: Option<Index>,
    },
    /// A leader checks that a majority still follows it (a read round).
    ReadProbe {
        round: u64,
    },
    /// The echo of a probe, in the follower's term.
    ReadProbeResponse {
        round: u64,
    },
    /// A leader transferring its leadership tells the target, whose log matches its own,
    /// to campaign at once (thesis §3.10).
    TimeoutNow,
}

/// A follower's answer to AppendEntries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendResponse {
    /// On success: the last index this request proved to match the leader's log.
    /// On rejection: the `prev_log_index` that failed the consistency check, so the leader
    /// can tell a stale rejection from a fresh one.
    pub index: Index,
    /// `None` on success. On rejection, where the leader should look next.
    pub reject: Option<ConflictHint>,
}

/// Fast backtracking hint carried by a rejection (thesis §5.3, "accelerated log backtracking").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictHint {
    /// The term of the follower's entry at the rejected index, if it has one.
    pub conflict_term: Option<Term>,
    /// With `conflict_term`: the follower's first index of that term.
    /// Without it: the follower's last index + 1.
    pub first_index: Index,
}

impl MessageBody {
    /// A short name, for logs and traces.
    pub fn kind(&self) -> &'static str {
        match self {
            MessageBody::RequestVote { pre_vote: true, .. } => "PreVote",
            MessageBody::RequestVote { .. } => "RequestVote",
            MessageBody::RequestVoteResponse { pre_vote: true, .. } => "PreVoteResponse",
            MessageBody::RequestVoteResponse { .. } => "RequestVoteResponse",
            MessageBody::AppendEntries { .. } => "AppendEntries",
            MessageBody::AppendEntriesResponse(_) => "AppendEntriesResponse",
            MessageBody::InstallSnapshot { .. } => "InstallSnapshot",
            MessageBody::ReadIndex { .. } => "ReadIndex",
            MessageBody::ReadIndexResponse { .. } => "ReadIndexResponse",
            MessageBody::ReadProbe { .. } => "ReadProbe",
            MessageBody::ReadProbeResponse { .. } => "ReadProbeResponse",
            MessageBody::TimeoutNow => "TimeoutNow",
        }
    }
}
