//! The core's inputs and outputs: the whole surface a driver touches.

use crate::membership::{MembershipChange, MembershipCheckpoint, MembershipRefusal};
use crate::message::Message;
use crate::sessions::{ClientId, SessionsCheckpoint};
use crate::types::{
    Entry, EntryId, HardState, Index, NodeId, ReadId, ReadMode, Role, Term, WriteId,
};
use serde::{Deserialize, Serialize};
use std::num::NonZeroU64;

/// Everything that can happen to a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Input {
    /// One unit of logical time passed. The driver decides how long a tick is.
    Tick,
    /// A message arrived from a peer. It may be stale, duplicated or from any term.
    Receive(Message),
    /// Clients ask to append these commands, in this order, as one batch.
    Propose(Vec<String>),
    /// Propose a retention point: once committed and applied, every node may drop the
    /// entries before `before` from storage ([`crate::Payload::Trim`]). Answered like
    /// `Propose`, with one `Output::Proposal`.
    Trim { before: Index },
    /// Every write with an id up to and including `write_id` is durable.
    Persisted { write_id: WriteId },
    /// The answer to an [`Output::Fetch`]: entries read back from storage.
    Fetched(Fetched),
    /// The answer to an [`Output::Fetch`] whose `from` lies before the log's first
    /// retained index: the leader installs the log's boundary on the follower instead.
    FetchTrimmed(Trimmed),
    /// A client wants to read the log linearizably. Answered once, later, with
    /// `Output::ReadReady` or `Output::ReadFailed` naming `id` (see `reads.rs`).
    Read { id: ReadId, mode: ReadMode },
    /// A client asks to append `command` as its `seq`th, at most once: a retry of an
    /// applied or appended `(client, seq)` appends nothing (`sessions.rs`). Answered like
    /// `Propose`, with one `Output::Proposal`.
    ProposeOnce {
        client: ClientId,
        seq: NonZeroU64,
        command: String,
    },
    /// A client asks to change the configuration (`membership.rs`): appended as a
    /// `Payload::Config` entry if the leader's rules allow it. Answered like `Propose`,
    /// with one `Output::Proposal` (`MembershipRefused` when they do not).
    ChangeMembership(MembershipChange),
    /// Hand leadership to `to` (thesis §3.10). Answered in the same step by exactly one
    /// `Output::Transfer`; see `transfer.rs`.
    Transfer { to: NodeId },
}

/// Everything a node asks its driver to do. Plain data, drained from a caller-owned buffer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Output {
    /// Make this durable, after every write with a smaller id, then report `Persisted`.
    Persist(Write),
    /// Send this message. Always safe to send at once: anything that depended on durable
    /// state was held back until that state was persisted.
    Send(Message),
    /// These entries are committed and durable locally; apply them in order. Contiguous
    /// with the previous `Commit` output.
    Commit(Vec<Entry>),
    /// The answer to the `Propose` in the same step.
    Proposal(ProposalOutcome),
    /// Read committed entries back from storage for a follower the in-memory log no longer
    /// covers, and answer with [`Input::Fetched`]. Off the core's thread: it may take a disk
    /// read. Entries asked for are always committed and durable here.
    Fetch(FetchRequest),
    /// The role, term or known leader changed. For logs and metrics; nothing depends on it.
    RoleChanged {
        role: Role,
        term: Term,
        leader: Option<NodeId>,
    },
    /// These reads are confirmed and this node has applied `index`, at least the commit
    /// index at some moment after each arrived while a majority followed its leader: serve
    /// them from the applied state now (it holds every entry acknowledged before they
    /// began).
    ReadReady { reads: Vec<ReadId>, index: Index },
    /// These reads could not be confirmed (not the leader, leader unknown or changed, or
    /// no majority in time). Nothing was read: a retry is safe, at `leader` if known.
    ReadFailed {
        reads: Vec<ReadId>,
        leader: Option<NodeId>,
    },
    /// The configuration in force changed (a configuration entry was appended, or a
    /// truncation or install brought another back): connect to new members, drop removed
    /// ones. Emitted at the end of the step, like `RoleChanged`.
    MembershipChanged(MembershipCheckpoint),
    /// The answer to the `Transfer` in the same step.
    Transfer(TransferOutcome),
    /// The leader gave up the transfer to `to` after an election timeout without losing
    /// its leadership, and accepts proposals again. A transfer that succeeds shows as a
    /// `RoleChanged` naming `to` as leader instead.
    TransferAborted { to: NodeId },
}

/// What became of an `Input::Transfer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TransferOutcome {
    /// Under way: the leader brings `to` up to date, then tells it to campaign. Proposals
    /// are refused meanwhile (`ProposalOutcome::Transferring`).
    Started { to: NodeId },
    /// This node is not the leader; `leader` is the one it knows of, if any.
    NotLeader { leader: Option<NodeId> },
    /// `to` is not a voter of the configuration in force (unknown, removed or a learner).
    NotVoter { to: NodeId },
    /// `to` is this node, which leads already.
    TargetIsSelf,
    /// A transfer to `to` is under way already.
    AlreadyTransferring { to: NodeId },
}

/// Entries the core needs from storage to catch `peer` up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchRequest {
    pub peer: NodeId,
    /// The first entry wanted; the answer also names the entry before it (`from - 1`).
    pub from: Index,
    /// At most this many entries ...
    pub max_entries: usize,
    /// ... stopping before their `Entry::size_bytes()` exceed this, but at least one
    /// (`replog_core::take_batch` applies both limits the way the core does).
    pub max_bytes: usize,
}

/// Storage's answer to a [`FetchRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fetched {
    pub peer: NodeId,
    /// The entry before the first one returned: index `from - 1` and its term.
    pub prev: EntryId,
    /// Contiguous entries from `from`, within the request's limits.
    pub entries: Vec<Entry>,
}

/// Storage no longer holds the entries a [`FetchRequest`] asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trimmed {
    pub peer: NodeId,
    /// The request's `from`.
    pub from: Index,
    /// The entry just before the log's first retained one.
    pub boundary: EntryId,
    /// What the follower keeps in place of the entries up to `boundary`: empty for
    /// replog's log service, an embedder's state snapshot otherwise.
    pub data: Vec<u8>,
    /// The newest durable session table; storage never trims past it, so its `through`
    /// is at least `boundary.index`. Storage that holds none answers with an empty table
    /// as of `boundary` (no session entry was applied up to its commit index).
    pub sessions: SessionsCheckpoint,
    /// The configuration in force at `boundary` (`MembershipHistory::at`); `None`: the
    /// bootstrap one.
    #[serde(default)]
    pub membership: Option<MembershipCheckpoint>,
}

/// One durable write: apply `hard_state`, then `install`, then truncate, then append.
///
/// Invariant: `truncate_after`, when present, is below `entries[0].index` or `entries` is
/// empty, and `entries` are contiguous. With `install`, `entries` (if any) follow
/// `install.last` and `truncate_after` is absent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Write {
    pub id: WriteId,
    /// The new hard state, when it changed.
    pub hard_state: Option<HardState>,
    /// Replace the whole log with an empty one that starts after `install.last` (a
    /// follower too far behind the leader's retained log), keeping `install.data`.
    #[serde(default)]
    pub install: Option<Install>,
    /// Discard every entry with an index above this one before appending.
    pub truncate_after: Option<Index>,
    /// Entries to append after the (possibly truncated) log.
    pub entries: Vec<Entry>,
    /// Keep this session table in place of the one stored, after the entries: every entry
    /// up to its `through` is durable already. A restart hands it back in
    /// [`crate::Recovered`], with the log's tail from its `through` (or the commit index,
    /// if lower), so storage must keep those entries: it never trims past `through + 1`.
    #[serde(default)]
    pub sessions: Option<SessionsCheckpoint>,
    /// Configuration entries applied in this step, oldest first: storage records each in
    /// its [`crate::MembershipHistory`], after the entries. A restart hands the newest back
    /// in [`crate::Recovered`]; a trim or an install asks the history for the one at a
    /// boundary.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub memberships: Vec<MembershipCheckpoint>,
}

impl Write {
    pub fn is_empty(&self) -> bool {
        self.hard_state.is_none()
            && self.install.is_none()
            && self.sessions.is_none()
            && self.memberships.is_empty()
            && self.truncate_after.is_none()
            && self.entries.is_empty()
    }
}

/// A log that now starts after `last`: everything up to it is committed, and what it held
/// is `data`. For replog's own log service `data` is empty (the log's history before
/// `last` is simply gone, as a trim makes it); an application that embeds the core puts
/// its state snapshot there.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Install {
    pub last: EntryId,
    pub data: Vec<u8>,
    /// The session table that goes with the new log (`through >= last.index`); storage
    /// keeps it as its newest checkpoint.
    #[serde(default)]
    pub sessions: SessionsCheckpoint,
    /// The configuration in force at `last` (`None`: the bootstrap one): storage's
    /// membership history becomes just this.
    #[serde(default)]
    pub membership: Option<MembershipCheckpoint>,
}

/// What became of a proposal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProposalOutcome {
    /// Appended at `first_index..first_index + count` in `term`. It is committed when a
    /// `Commit` output carries those indexes *with this term*; the same index with another
    /// term means the proposal was lost to a new leader.
    Accepted {
        first_index: Index,
        count: u64,
        term: Term,
    },
    /// This node is not the leader; `leader` is the one it knows of, if any.
    NotLeader { leader: Option<NodeId> },
    /// A `ProposeOnce` whose `(client, seq)` is committed and applied already, at `index`
    /// in `term`: nothing was appended.
    AlreadyApplied { index: Index, term: Term },
    /// A `ProposeOnce` whose `seq` is below the highest the client has used (`highest`):
    /// nothing was appended.
    SeqBehind { highest: NonZeroU64 },
    /// A `ChangeMembership` the leader refused, and why: nothing was appended.
    MembershipRefused(MembershipRefusal),
    /// The leader is handing its leadership to `to` and appends nothing meanwhile: retry
    /// shortly, at the new leader.
    Transferring { to: NodeId },
}
