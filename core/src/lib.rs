//! # replog-core: a sans-IO Raft state machine
//!
//! The core is Raft and nothing else. It owns no socket, file, thread, clock or source of
//! entropy; the simulator and the real node drive exactly this code through one method.
//!
//! ## The contract
//!
//! **Construction.** [`RaftCore::new`] takes a [`Config`] and the [`Recovered`] state the
//! driver read back from durable storage: hard state (term, vote), the commit index it last
//! saw, and the log's tail: its last entries and the id (index, term) of the entry just
//! before them. The tail must reach back at least to the commit index, and to the newest
//! session checkpoint's `through` if that is lower (the core re-applies the entries after
//! it to its session table); the whole log is always a valid tail (then a commit index of
//! zero is safe too). A fresh node passes `Recovered::default()`. `Recovered::membership`
//! is the newest configuration storage recorded (`None`: the bootstrap one,
//! [`Config::voters`], which every node of a cluster shares).
//!
//! **Membership is data** (`membership.rs`, where single-server changes are argued). The
//! configuration in force is the newest [`Payload::Config`] entry in the node's log,
//! committed or not, and otherwise the bootstrap one; voters count toward every quorum,
//! learners receive the log and count for none. A node not a voter of its configuration
//! never campaigns; a leader that removed itself steps down once the removal commits. The
//! core accepts messages from any node (a leader may be newer than the configuration a
//! lagging node knows): who may connect at all is the driver's to check.
//!
//! **The log lives in storage; the core holds a window.** The core keeps in memory every
//! entry that is not yet committed, durable and applied, plus [`Config::log_cache_bytes`] of
//! older ones ([`Log`] is that window; asking it for an index it does not hold is a
//! [`NotHeld`] error). Storage must keep every entry it made durable and the core did not
//! truncate: a leader reads back what a lagging follower needs through `Fetch`.
//!
//! **Inputs.** Call [`RaftCore::step`] with one [`Input`] at a time:
//! - [`Input::Tick`]: one unit of logical time. Timeouts are counted in ticks.
//! - [`Input::Receive`]: a message from a peer. It may be stale, duplicated, reordered or
//!   from any term: the core ignores (and counts) what it cannot use, and never panics on it.
//! - [`Input::Propose`]: a batch of client commands.
//! - [`Input::ProposeOnce`]: one client command tagged `(client, seq)`, appended at most
//!   once: a retry is answered from the replicated session table or the log
//!   (`ProposalOutcome::AlreadyApplied`, or `Accepted` at the original entry).
//! - [`Input::Persisted`]: every write up to this id is durable.
//! - [`Input::Trim`]: propose a retention point, a [`Payload::Trim`] entry; once it is
//!   applied, every node may drop the entries before it from storage.
//! - [`Input::Fetched`]: the entries an `Output::Fetch` asked for, read from storage.
//! - [`Input::FetchTrimmed`]: storage no longer holds them; it names the log's boundary
//!   (the entry before its first retained one) and opaque data (empty for a log service,
//!   an embedder's state snapshot). The leader then installs the boundary on the follower
//!   (`InstallSnapshot`), which answers with a [`Write`] whose `install` replaces its log.
//! - [`Input::ChangeMembership`]: add a learner, promote one, or remove a member. The
//!   leader appends it only if no other change is uncommitted, it has committed an entry
//!   of its own term, and (to promote) the learner has caught up; otherwise
//!   `ProposalOutcome::MembershipRefused` names why.
//! - [`Input::Read`]: a client wants to read linearizably ([`ReadMode::Linearizable`]:
//!   ReadIndex, a round of probes; [`ReadMode::Lease`]: the leader's lease when
//!   [`Config::read_lease`] is on). Every read is answered exactly once, later, by
//!   `ReadReady` or `ReadFailed`. A read of what a node happens to hold needs no input.
//! - [`Input::Transfer`]: hand this leader's leadership to another voter (thesis §3.10,
//!   `transfer.rs`). Answered in the same step by exactly one `Output::Transfer`. While a
//!   transfer runs, the leader appends nothing ([`ProposalOutcome::Transferring`]); it
//!   brings the target up to date, sends it a `TimeoutNow` message, and the target
//!   campaigns at once with a RequestVote flagged `transfer`, which voters grant although
//!   they hear the leader. Success shows as a `RoleChanged` naming the target as leader;
//!   after an election timeout without it the leader gives up (`TransferAborted`).
//!
//! **Outputs.** `step` appends [`Output`]s to a buffer the caller owns and drains:
//! - [`Output::Persist`]: a [`Write`] (hard state, install, truncation point, entries, and
//!   sometimes a session checkpoint, which storage keeps if newer than its own) tagged with a
//!   [`WriteId`]. The driver makes writes durable *in id order* and reports the highest
//!   durable id with `Input::Persisted`. Ids increase by one from 1 on every construction.
//! - [`Output::Send`]: a message. It is always safe to send immediately, in any order.
//! - [`Output::Commit`]: newly committed entries, in order, each durable locally.
//! - [`Output::Proposal`]: exactly one per `Propose`, `ProposeOnce` or `Trim`, in the same
//!   step.
//! - [`Output::Fetch`]: read back committed entries `from` on (within a count and a byte
//!   limit, [`take_batch`]) and the id of the entry before `from`, off the core's thread, and
//!   answer with `Input::Fetched`. The entries asked for are always committed and durable
//!   here. An answer that comes late or after a role change is ignored; a lost one (the
//!   driver restarted) is asked for again by the next heartbeat.
//! - [`Output::ReadReady`]: these reads are confirmed and the node has applied their
//!   index (at least the commit index at a moment after they arrived at which a majority
//!   still followed the leader): serve them from the applied state now.
//! - [`Output::ReadFailed`]: not confirmed (no leader, leader changed, no majority within
//!   two maximum election timeouts); nothing was read, a retry is safe.
//! - [`Output::Transfer`]: exactly one per `Transfer`, in the same step: started, or
//!   refused ([`TransferOutcome`]: not the leader, the target is not a voter, is this
//!   node, or a transfer is under way already).
//! - [`Output::TransferAborted`]: the leader gave a transfer up after an election timeout
//!   and accepts proposals again.
//! - [`Output::RoleChanged`]: for logging, and for a driver waiting on a transfer.
//! - [`Output::MembershipChanged`]: the configuration in force changed (appended,
//!   truncated away, installed): connect to new members, drop removed ones.
//!
//! Outputs of one step are in a meaningful order: perform `Persist` writes in order; `Send`
//! and `Commit` may be acted on at once.
//!
//! **Call order.** After each `step`, drivers that want the checks call
//! [`RaftCore::check_invariants`], which asserts every invariant written on the fields. A
//! failed check is a bug in the core, never the result of bad input.
//!
//! ## The durability rule
//!
//! Raft's safety rests on a node never forgetting what it told others (thesis §3.8). The core
//! enforces this itself rather than trusting drivers:
//! - a vote grant, and any AppendEntries response, is emitted only after the hard state and
//!   entries it depends on are persisted: it is held until `Persisted` covers every write
//!   issued before it;
//! - a candidate counts its own vote only once that vote is persisted;
//! - a leader replicates to followers while its own write is in flight (thesis §10.2.1), but
//!   counts its own entries toward commit only once they are persisted;
//! - `Commit` never carries an entry that is not durable locally;
//! - entries fetched from storage to catch a follower up travel in an ordinary
//!   AppendEntries, so the follower holds its acknowledgement back like any other;
//! - a follower answers an install only once the write that installs it is durable. What
//!   lies before a boundary is committed (storage trims only applied entries), so an
//!   install never drops anything a majority needs.
//!
//! **Storage's side of retention.** When a committed `Payload::Trim { before }` comes out
//! in `Commit`, the driver may drop entries before `before` from storage, never past what
//! it has applied, nor past `through + 1` of the newest durable session checkpoint
//! (`Write::sessions`, which the core writes at every applied trim: the restart after a
//! trim replays the table from it); afterwards a `Fetch` below the first kept entry is
//! answered with `Input::FetchTrimmed`, carrying that checkpoint.
//!
//! **Storage's side of membership.** Every applied configuration entry comes out in
//! `Write::memberships`; storage records them in a [`MembershipHistory`] (durable, like
//! the session checkpoint, before the commit index that covers them is recorded), hands
//! the newest back in `Recovered`, answers `FetchTrimmed` with the one at its boundary
//! (`MembershipHistory::at`), and replaces the history with an install's.
//!
//! **Leases and time.** With [`Config::read_lease`], a leader's lease is counted in its own
//! ticks, so the driver must deliver ticks at their real rate: after a stall (a stopped
//! process, a long pause) the ticks it missed come before any other input, and every
//! node's tick period must stay within the drift bound of [`Config::lease_ticks`].
//!
//! A driver that crashes loses whatever was not yet reported `Persisted`; it must rebuild the
//! core from what its storage actually holds.

mod catch_up;
mod changes;
mod config;
mod election;
mod follower;
mod install;
mod io;
mod leader;
mod log;
mod membership;
mod message;
mod planted;
mod progress;
mod quorum;
mod raft;
mod reads;
mod role;
mod sessions;
mod timeout;
mod transfer;
mod types;
mod writes;

pub use config::{Config, ConfigError};
pub use io::{
    FetchRequest, Fetched, Input, Install, Output, ProposalOutcome, TransferOutcome, Trimmed, Write,
};
pub use log::{take_batch, Log, LogError, NotHeld};
pub use membership::{
    Member, Membership, MembershipChange, MembershipCheckpoint, MembershipHistory,
    MembershipRefusal,
};
pub use message::{AppendResponse, ConflictHint, Message, MessageBody};
#[cfg(feature = "planted-bugs")]
pub use planted::{plant, Bug};
pub use raft::{RaftCore, Recovered, RecoveryError, Stats};
pub use sessions::{
    ClientId, ClientIdError, SessionRecord, SessionsCheckpoint, CLIENT_ID_BYTES_MAX,
};
pub use types::{
    Entry, EntryId, HardState, Index, NodeId, Payload, ReadId, ReadMode, Role, Term, WriteId,
};
