//! Classic Raft bugs, planted for the simulator's self-test (feature `planted-bugs`).
//!
//! Each [`Bug`] is one small, realistic mistake at the place in the core where it would
//! really be made. The simulator's score test switches one on at a time and checks that a
//! sweep catches it; if a change to the swarm stops catching one, the simulator got weaker.
//!
//! Without the feature, [`active`] is a constant `false` and every planted branch compiles
//! away, so no build of `replog` can carry them. With it, the bug is chosen per thread
//! (one simulation runs on one thread), never by anything a node reads from outside.

/// The catalogue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bug {
    /// A voter forgets whom it voted for: it grants a second candidate in the same term.
    VoteTwice,
    /// A voter compares only log lengths, not last terms, when deciding who is up to date.
    UpToDateIgnoresTerm,
    /// AppendEntries from a deposed leader (older term) is accepted instead of refused.
    StaleTermAppend,
    /// Acknowledgements (append responses, votes) go out before the write they vouch for
    /// is durable.
    AckBeforeFsync,
    /// The follower takes the leader's commit index as is, not capped by what the request
    /// proved it holds.
    CommitNotCapped,
    /// The leader counts its own entries toward a majority before they are durable.
    LeaderCountsUnpersisted,
    /// The follower takes the leader's commit index even from a request whose consistency
    /// check failed, committing entries that may not be the leader's.
    CommitOnRejectedAppend,
    /// The follower truncates after `prev_log_index` on every AppendEntries, even when the
    /// entries already match, so a stale request erases acknowledged entries.
    TruncateWithoutConflict,
}

impl Bug {
    #[cfg_attr(not(feature = "planted-bugs"), allow(dead_code))]
    pub const ALL: [Bug; 8] = [
        Bug::VoteTwice,
        Bug::UpToDateIgnoresTerm,
        Bug::StaleTermAppend,
        Bug::AckBeforeFsync,
        Bug::CommitNotCapped,
        Bug::LeaderCountsUnpersisted,
        Bug::CommitOnRejectedAppend,
        Bug::TruncateWithoutConflict,
    ];
}

#[cfg(feature = "planted-bugs")]
thread_local! {
    static PLANTED: std::cell::Cell<Option<Bug>> = const { std::cell::Cell::new(None) };
}

/// Plants `bug` (or none) for the cores stepped on this thread from now on.
#[cfg(feature = "planted-bugs")]
pub fn plant(bug: Option<Bug>) {
    PLANTED.with(|planted| planted.set(bug));
}

/// Whether `bug` is planted on this thread.
#[cfg(feature = "planted-bugs")]
pub(crate) fn active(bug: Bug) -> bool {
    PLANTED.with(|planted| planted.get() == Some(bug))
}

#[cfg(not(feature = "planted-bugs"))]
#[inline(always)]
pub(crate) const fn active(_bug: Bug) -> bool {
    false
}
