//! Exactly-once appends: the replicated table of client sessions, and the leader's decision
//! on a proposal that carries a `(client, seq)`.
//!
//! Every node applies the same committed entries in the same order, so a table updated only
//! from applied entries, with a deterministic bound, is the same on every node at the same
//! applied index: it is part of the replicated state, like the log itself. It survives
//! restarts, trims and installs through [`SessionsCheckpoint`]s that storage keeps.
//!
//! ## At most once in the committed log
//!
//! The leader appends a `(client, seq)` only when neither its table (applied entries) nor
//! its log after the table (`PendingSessions`) holds it. Suppose two copies `A` (index `i`)
//! and `B` (index `j`) both committed, `B` appended later by the leader `L` of term `T`. At
//! that moment `L`'s log did not hold `A`, and `L`'s log only grows during `T`. `A` was
//! not committed then: a committed entry is in every later leader's log (Leader
//! Completeness), and `L` would have found it in its table or its pending entries (unless
//! the table had evicted the client: the bound is the one limit of the promise). So `L`'s
//! log holds something else at `i`, or ends before `i`. Once `B` commits, `L`'s log up to
//! `j` is the committed log there (Log Matching). If `i < j`, the committed entry at `i` is
//! `L`'s, not `A`. If `i >= j`, `A`'s term is below `T` and `A` would follow `B` (of term
//! `T`) in one log, but terms never decrease along a log. Either way `A` is not committed:
//! a contradiction. A retry on a new leader after the original was lost therefore appends
//! a copy that can commit only because the original never will.

use crate::types::{Entry, EntryId, Index, Payload};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroU64;
use std::sync::Arc;

/// The longest client id, in bytes.
pub const CLIENT_ID_BYTES_MAX: usize = 128;

/// A client's chosen identity: 1 to [`CLIENT_ID_BYTES_MAX`] bytes. Checked once where it
/// enters (from a client, a file or a peer); code inside trusts the type.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClientId(Arc<str>);

/// A client id that cannot be used, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientIdError {
    Empty,
    TooLong { bytes: usize },
}

impl fmt::Display for ClientIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientIdError::Empty => write!(f, "client id is empty"),
            ClientIdError::TooLong { bytes } => write!(
                f,
                "client id is {bytes} bytes long; the most is {CLIENT_ID_BYTES_MAX}"
            ),
        }
    }
}

impl std::error::Error for ClientIdError {}

impl ClientId {
    pub fn new(id: impl Into<Arc<str>>) -> Result<ClientId, ClientIdError> {
        let id = id.into();
        match id.len() {
            0 => Err(ClientIdError::Empty),
            bytes if bytes > CLIENT_ID_BYTES_MAX => Err(ClientIdError::TooLong { bytes }),
            _ => Ok(ClientId(id)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ClientId {
    type Error = ClientIdError;
    fn try_from(id: String) -> Result<ClientId, ClientIdError> {
        ClientId::new(id)
    }
}

impl From<ClientId> for String {
    fn from(id: ClientId) -> String {
        id.0.to_string()
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One client's row: the highest sequence number applied and the entry that carried it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SessionRecord {
    pub client: ClientId,
    pub seq: NonZeroU64,
    pub at: EntryId,
}

/// The table as of the applied index `through`, for storage and installs. `records` are
/// oldest first (the eviction order), so that a table rebuilt from it evicts alike.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SessionsCheckpoint {
    pub through: Index,
    pub records: Vec<SessionRecord>,
}

impl SessionsCheckpoint {
    /// Up to where this is the table, given the commit index storage recorded with it.
    /// The core writes a checkpoint in the step that applies the first session entry
    /// into an empty table, and drivers record a commit index only after that step's
    /// writes: so when the newest checkpoint is empty (or, `None`, there is none), the
    /// table has stayed empty up to the recorded commit index, and needs no replay.
    pub fn through_given(checkpoint: Option<&SessionsCheckpoint>, commit_index: Index) -> Index {
        match checkpoint {
            Some(checkpoint) if !checkpoint.records.is_empty() => checkpoint.through,
            Some(checkpoint) => checkpoint.through.max(commit_index),
            None => commit_index,
        }
    }

    /// What storage sends with its log's `boundary` in an install ([`crate::Trimmed`]):
    /// its newest checkpoint, which covers the boundary since trims wait for it; an
    /// empty table (or none) is empty up to the commit index, so as of the boundary too.
    pub fn for_install(checkpoint: Option<&SessionsCheckpoint>, boundary: Index) -> Self {
        let mut sessions = checkpoint.cloned().unwrap_or_default();
        if sessions.records.is_empty() {
            sessions.through = sessions.through.max(boundary);
        }
        sessions
    }
}

/// The replicated table: per client, the highest sequence applied and its entry.
///
/// Bounded: applying a new client's entry to a full table evicts the client whose highest
/// sequence was applied longest ago (the lowest `at.index`), the same on every node. An
/// evicted client's retries are new appends again.
#[derive(Clone, Debug)]
pub(crate) struct Sessions {
    /// Invariant: every entry up to `through` has been applied; never decreases.
    through: Index,
    max: usize,
    /// Invariant: `by_client.len() <= max`, and `by_age` holds exactly one key per client,
    /// its `at.index`.
    by_client: BTreeMap<ClientId, (NonZeroU64, EntryId)>,
    by_age: BTreeMap<Index, ClientId>,
}

impl Sessions {
    /// The table a checkpoint describes. A checkpoint from a larger table (another
    /// configuration) keeps its newest `max` rows.
    pub fn from_checkpoint(checkpoint: SessionsCheckpoint, max: usize) -> Sessions {
        let mut sessions = Sessions {
            through: checkpoint.through,
            max,
            by_client: BTreeMap::new(),
            by_age: BTreeMap::new(),
        };
        for record in checkpoint.records {
            sessions.record(record.client, record.seq, record.at);
        }
        sessions
    }

    pub fn checkpoint(&self) -> SessionsCheckpoint {
        let records = self
            .by_age
            .values()
            .map(|client| {
                let (seq, at) = self.by_client[client];
                SessionRecord {
                    client: client.clone(),
                    seq,
                    at,
                }
            })
            .collect();
        SessionsCheckpoint {
            through: self.through,
            records,
        }
    }

    pub fn through(&self) -> Index {
        self.through
    }

    pub fn len(&self) -> usize {
        self.by_client.len()
    }

    pub fn get(&self, client: &ClientId) -> Option<(NonZeroU64, EntryId)> {
        self.by_client.get(client).copied()
    }

    /// Applies one committed entry. Entries at or below `through` are already in the table
    /// (re-applied after a restart or an install), so they change nothing.
    pub fn apply(&mut self, entry: &Entry) {
        if entry.index <= self.through {
            return;
        }
        self.through = entry.index;
        if let Payload::Session { client, seq, .. } = &entry.payload {
            let newer = self.get(client).is_none_or(|(highest, _)| *seq > highest);
            if newer {
                self.record(client.clone(), *seq, entry.id());
            }
        }
    }

    /// Replaces the table with a newer one (an install); an older one changes nothing.
    pub fn replace_if_newer(&mut self, checkpoint: SessionsCheckpoint) {
        if checkpoint.through > self.through {
            *self = Sessions::from_checkpoint(checkpoint, self.max);
        }
    }

    fn record(&mut self, client: ClientId, seq: NonZeroU64, at: EntryId) {
        if let Some((_, old)) = self.by_client.insert(client.clone(), (seq, at)) {
            self.by_age.remove(&old.index);
        }
        self.by_age.insert(at.index, client);
        while self.by_client.len() > self.max {
            let (_, oldest) = self.by_age.pop_first().expect("a row per client");
            self.by_client.remove(&oldest);
        }
    }

    pub fn check_invariants(&self) {
        assert!(
            self.by_client.len() <= self.max,
            "session table over its bound"
        );
        assert_eq!(
            self.by_client.len(),
            self.by_age.len(),
            "session age index out of step"
        );
        for (index, client) in &self.by_age {
            assert_eq!(self.by_client[client].1.index, *index, "session age wrong");
        }
    }
}

/// Leader only: session entries in its log after its table's `through`, which the table
/// does not know yet. Built from the in-memory log when it becomes leader (the window
/// holds every unapplied entry) and kept as it appends; a leader never truncates its log,
/// so every row stays true until its entry is applied.
#[derive(Clone, Debug, Default)]
pub(crate) struct PendingSessions {
    by_client: BTreeMap<ClientId, BTreeMap<NonZeroU64, EntryId>>,
    /// Invariant: one key per row of `by_client`, its entry's index.
    by_index: BTreeMap<Index, (ClientId, NonZeroU64)>,
}

impl PendingSessions {
    /// The session entries of `entries` after `through`.
    pub fn from_log(entries: &[Entry], through: Index) -> PendingSessions {
        let mut pending = PendingSessions::default();
        for entry in entries.iter().filter(|entry| entry.index > through) {
            pending.appended(entry);
        }
        pending
    }

    pub fn appended(&mut self, entry: &Entry) {
        if let Payload::Session { client, seq, .. } = &entry.payload {
            let rows = self.by_client.entry(client.clone()).or_default();
            // A log holds a (client, seq) twice only if the table evicted the client in
            // between (the argument in the module doc, with Log Matching); the first copy
            // is the one the table will take, so it answers.
            if rows.contains_key(seq) {
                return;
            }
            rows.insert(*seq, entry.id());
            self.by_index.insert(entry.index, (client.clone(), *seq));
        }
    }

    /// Entries up to `through` are applied now: the table answers for them.
    pub fn applied(&mut self, through: Index) {
        while let Some(entry) = self.by_index.first_entry() {
            if *entry.key() > through {
                return;
            }
            let (client, seq) = entry.remove();
            if let Some(rows) = self.by_client.get_mut(&client) {
                rows.remove(&seq);
                if rows.is_empty() {
                    self.by_client.remove(&client);
                }
            }
        }
    }

    pub fn clear(&mut self) {
        *self = PendingSessions::default();
    }

    pub fn is_empty(&self) -> bool {
        self.by_index.is_empty()
    }
}

/// What the leader does with a proposal of `(client, seq)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Applied already, by this entry: answer with it, append nothing.
    Applied(EntryId),
    /// In the log and not applied yet (a retry racing the original): wait for that entry.
    InLog(EntryId),
    /// Older than the highest sequence known for the client: refuse.
    Behind { highest: NonZeroU64 },
    /// New: append it.
    Append,
}

pub(crate) fn decide(
    table: &Sessions,
    pending: &PendingSessions,
    client: &ClientId,
    seq: NonZeroU64,
) -> Decision {
    let rows = pending.by_client.get(client);
    if let Some(&at) = rows.and_then(|rows| rows.get(&seq)) {
        return Decision::InLog(at);
    }
    let applied = table.get(client);
    if let Some((highest, at)) = applied {
        if highest == seq {
            return Decision::Applied(at);
        }
    }
    let in_log = rows.and_then(|rows| rows.last_key_value()).map(|(s, _)| *s);
    let highest = applied.map(|(s, _)| s).max(in_log);
    match highest {
        Some(highest) if seq < highest => Decision::Behind { highest },
        _ => Decision::Append,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Term;

    fn seq(n: u64) -> NonZeroU64 {
        NonZeroU64::new(n).expect("nonzero")
    }

    fn client(name: &str) -> ClientId {
        ClientId::new(name).expect("valid")
    }

    fn session(index: u64, name: &str, n: u64) -> Entry {
        Entry {
            index: Index(index),
            term: Term(1),
            payload: Payload::Session {
                client: client(name),
                seq: seq(n),
                command: "c".into(),
            },
        }
    }

    #[test]
    fn client_ids_must_be_1_to_128_bytes() {
        assert_eq!(ClientId::new(""), Err(ClientIdError::Empty));
        assert!(ClientId::new("x".repeat(128)).is_ok());
        assert_eq!(
            ClientId::new("x".repeat(129)),
            Err(ClientIdError::TooLong { bytes: 129 })
        );
        let parsed: Result<ClientId, _> = serde_json::from_str(&format!("\"{}\"", "y".repeat(200)));
        assert!(parsed.is_err(), "deserializing checks the bound too");
    }

    #[test]
    fn the_table_keeps_the_highest_seq_and_evicts_the_least_recently_applied() {
        let mut table = Sessions::from_checkpoint(SessionsCheckpoint::default(), 2);
        table.apply(&session(1, "a", 1));
        table.apply(&session(2, "b", 1));
        table.apply(&session(3, "a", 2));
        table.apply(&session(4, "c", 1)); // Evicts b, applied longest ago.
        assert_eq!(table.get(&client("b")), None);
        assert_eq!(table.get(&client("a")).map(|r| r.0), Some(seq(2)));
        table.apply(&session(5, "a", 1)); // Lower seq: the table keeps 2.
        assert_eq!(table.get(&client("a")).map(|r| r.1.index), Some(Index(3)));
        table.apply(&session(3, "z", 9)); // At or below `through`: already applied.
        assert_eq!(table.get(&client("z")), None);
        table.check_invariants();
        let rebuilt = Sessions::from_checkpoint(table.checkpoint(), 2);
        assert_eq!(rebuilt.checkpoint(), table.checkpoint());
    }

    #[test]
    fn the_leader_decides_from_the_table_and_its_unapplied_log() {
        let mut table = Sessions::from_checkpoint(SessionsCheckpoint::default(), 10);
        table.apply(&session(1, "a", 3));
        let log = [session(2, "a", 4), session(3, "b", 1)];
        let mut pending = PendingSessions::from_log(&log, table.through());
        let at = |i| EntryId {
            index: Index(i),
            term: Term(1),
        };
        assert_eq!(
            decide(&table, &pending, &client("a"), seq(3)),
            Decision::Applied(at(1))
        );
        assert_eq!(
            decide(&table, &pending, &client("a"), seq(4)),
            Decision::InLog(at(2))
        );
        assert_eq!(
            decide(&table, &pending, &client("a"), seq(2)),
            Decision::Behind { highest: seq(4) }
        );
        assert_eq!(
            decide(&table, &pending, &client("a"), seq(5)),
            Decision::Append
        );
        assert_eq!(
            decide(&table, &pending, &client("new"), seq(7)),
            Decision::Append
        );
        table.apply(&log[0]);
        pending.applied(Index(2));
        assert_eq!(
            decide(&table, &pending, &client("a"), seq(4)),
            Decision::Applied(at(2))
        );
        assert_eq!(
            decide(&table, &pending, &client("b"), seq(1)),
            Decision::InLog(at(3))
        );
    }
}
