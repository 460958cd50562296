//! Newtypes for the numbers Raft must never mix up, and the log entry itself.

use crate::membership::Membership;
use crate::sessions::ClientId;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::num::NonZeroU64;
use std::sync::Arc;

macro_rules! number_newtype {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

number_newtype!(
    /// A Raft term. Term 0 is the term before any election; no entry carries it.
    Term,
    "t"
);
number_newtype!(
    /// A position in the log. Index 0 means "before the first entry"; the first entry is 1.
    Index,
    "i"
);
number_newtype!(
    /// A node's identity in the cluster. Any value but 0 is valid.
    NodeId,
    "n"
);
number_newtype!(
    /// Names a read the driver asked for (`Input::Read`); the core answers with it. Chosen
    /// by the driver, unique among its outstanding reads.
    ReadId,
    "r"
);
number_newtype!(
    /// Tags a `Persist` output; the driver reports durability by this id, in increasing order.
    WriteId,
    "w"
);

impl Term {
    pub fn next(self) -> Term {
        Term(self.0 + 1)
    }
}

impl Index {
    pub const ZERO: Index = Index(0);

    pub fn next(self) -> Index {
        Index(self.0 + 1)
    }

    /// The index before this one; `Index(0).prev()` stays 0.
    pub fn prev(self) -> Index {
        Index(self.0.saturating_sub(1))
    }

    pub fn plus(self, n: u64) -> Index {
        Index(self.0 + n)
    }

    /// How many indexes lie in `self..to` (0 when `to <= self`).
    pub fn count_to(self, to: Index) -> u64 {
        to.0.saturating_sub(self.0)
    }
}

/// Names one entry: its index and term. `EntryId::ZERO` is the position before the first
/// entry of a log that starts at index 1.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct EntryId {
    pub index: Index,
    pub term: Term,
}

impl EntryId {
    pub const ZERO: EntryId = EntryId {
        index: Index(0),
        term: Term(0),
    };
}

/// What an entry carries.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Payload {
    /// Appended by every new leader so that it can commit entries of its term (§5.4.2, thesis §6.4).
    Noop,
    /// An opaque client command. Shared, not copied: the log, the write to storage, every
    /// follower's AppendEntries and the committed output all point at one buffer, so
    /// handing an entry on is a reference-count increment, not an allocation and a copy.
    Command(Arc<str>),
    /// Retention: once this entry is applied, every node may drop the entries before
    /// `before` from its storage (whole segments, never past what it has applied). Going
    /// through the log makes every node agree on the point.
    Trim { before: Index },
    /// A client command appended at most once: the `seq`th of `client` (`sessions.rs`).
    /// Last of the variants, so that earlier ones keep their encodings and trace hashes.
    Session {
        client: ClientId,
        seq: NonZeroU64,
        command: Arc<str>,
    },
    /// A configuration change (`membership.rs`): the whole configuration after it, in force
    /// on every node from the moment the node appends it. Last of the variants, like
    /// `Session`, so that earlier ones keep their encodings.
    Config(Membership),
}

impl Payload {
    /// Approximate encoded size, used for the byte limit on AppendEntries.
    pub fn size_bytes(&self) -> usize {
        match self {
            Payload::Noop => 1,
            Payload::Trim { .. } => 8,
            Payload::Command(command) => command.len(),
            Payload::Session {
                client, command, ..
            } => client.as_str().len() + 8 + command.len(),
            Payload::Config(membership) => membership.size_bytes(),
        }
    }
}

/// One entry of the replicated log.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entry {
    pub index: Index,
    pub term: Term,
    pub payload: Payload,
}

impl Entry {
    pub fn id(&self) -> EntryId {
        EntryId {
            index: self.index,
            term: self.term,
        }
    }

    /// Approximate encoded size (payload plus fixed header), used for batching limits.
    pub fn size_bytes(&self) -> usize {
        16 + self.payload.size_bytes()
    }
}

/// The state Raft must keep durable before answering anyone (Figure 2, "persistent state").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardState {
    pub term: Term,
    pub voted_for: Option<NodeId>,
}

/// How a read is confirmed (see `reads.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadMode {
    /// ReadIndex: a round of probes confirms the leader still leads.
    Linearizable,
    /// Served by the leader without a round while its lease holds (`Config::read_lease`);
    /// otherwise like `Linearizable`. Rests on bounded clock drift.
    Lease,
}

/// A node's role. `PreCandidate` is the PreVote phase (thesis §9.6): it asks whether it
/// could win before it disturbs anyone by raising its term.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Role::Follower => "follower",
            Role::PreCandidate => "pre_candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        };
        f.write_str(name)
    }
}
