//! Catch-up serving: the answer to the core's `Output::Fetch`, from what storage holds.
//!
//! A leader whose follower lags behind its in-memory window asks storage for committed,
//! durable entries from `from` on. Storage answers with the entries and the id of the
//! entry before them ([`Answer::Fetched`], for `Input::Fetched`), within the request's
//! count and byte limits; or, when a trim or an install took `from`, with the log's
//! boundary, the newest session checkpoint as of it and the configuration in force there ([`Answer::Trimmed`], for
//! `Input::FetchTrimmed`), which the leader then installs on the follower. The follower's
//! side of an install is a `Write` like any other ([`crate::apply`]).
//!
//! The node reads its segment files, the simulator its modelled disk: both are a
//! [`CatchUpSource`], and [`serve`] decides.

use replog_core::{
    take_batch, Entry, EntryId, FetchRequest, Fetched, Index, MembershipHistory,
    SessionsCheckpoint, Trimmed,
};

/// What a log in storage offers catch-up.
pub trait CatchUpSource {
    type Error;
    /// The entry just before the first one held (`EntryId::ZERO` for a log from 1).
    fn boundary(&self) -> EntryId;
    /// The last durable entry.
    fn last_index(&self) -> Index;
    /// The newest durable session checkpoint, if any.
    fn sessions(&self) -> Option<&SessionsCheckpoint>;
    /// The applied configurations storage keeps.
    fn memberships(&self) -> &MembershipHistory;
    /// The held entries `from..=to` (`boundary < from <= to <= last_index`), in order.
    fn read(&self, from: Index, to: Index) -> Result<Vec<Entry>, Self::Error>;
}

/// Storage's answer to a `Fetch`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Fetched(Fetched),
    Trimmed(Trimmed),
}

/// A fetch storage cannot answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServeError<E> {
    /// The core asked for entries beyond the end of the log (`from > last_index + 1`):
    /// it broke its contract (it asks only for committed, durable entries). From
    /// `last_index + 1` the answer is no entries, which the simulator's contract check
    /// refuses before asking.
    OutsideLog { from: Index, last_index: Index },
    /// Reading the entries failed.
    Read(E),
}

/// Answers `request` from `source`.
pub fn serve<S: CatchUpSource>(
    source: &S,
    request: &FetchRequest,
) -> Result<Answer, ServeError<S::Error>> {
    let boundary = source.boundary();
    let last_index = source.last_index();
    if request.from == Index::ZERO || request.from > last_index.next() {
        return Err(ServeError::OutsideLog {
            from: request.from,
            last_index,
        });
    }
    if request.from <= boundary.index {
        return Ok(Answer::Trimmed(Trimmed {
            peer: request.peer,
            from: request.from,
            boundary,
            data: Vec::new(),
            sessions: SessionsCheckpoint::for_install(source.sessions(), boundary.index),
            membership: source.memberships().at(boundary.index).cloned(),
        }));
    }
    let prev_index = request.from.prev();
    let to = last_index.min(prev_index.plus(request.max_entries as u64));
    // The entry before `from` comes in the same read, unless it is the boundary.
    let (prev, mut entries) = if prev_index == boundary.index {
        let read = if request.from <= to {
            source.read(request.from, to).map_err(ServeError::Read)?
        } else {
            Vec::new()
        };
        (boundary, read)
    } else {
        let mut read = source.read(prev_index, to).map_err(ServeError::Read)?;
        let prev = read.remove(0).id();
        (prev, read)
    };
    let kept = take_batch(&entries, request.max_entries, request.max_bytes).len();
    entries.truncate(kept);
    Ok(Answer::Fetched(Fetched {
        peer: request.peer,
        prev,
        entries,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use replog_core::{Membership, MembershipCheckpoint, NodeId, Payload, Term};

    struct Memory {
        boundary: EntryId,
        entries: Vec<Entry>,
        memberships: MembershipHistory,
    }

    impl CatchUpSource for Memory {
        type Error = ();
        fn boundary(&self) -> EntryId {
            self.boundary
        }
        fn last_index(&self) -> Index {
            self.boundary.index.plus(self.entries.len() as u64)
        }
        fn sessions(&self) -> Option<&SessionsCheckpoint> {
            None
        }
        fn memberships(&self) -> &MembershipHistory {
            &self.memberships
        }
        fn read(&self, from: Index, to: Index) -> Result<Vec<Entry>, ()> {
            let start = self.boundary.index.count_to(from.prev()) as usize;
            let end = self.boundary.index.count_to(to) as usize;
            Ok(self.entries[start..end].to_vec())
        }
    }

    /// A log trimmed through entry 10 (term 1), holding 11..=20 in term 2.
    fn log() -> Memory {
        Memory {
            boundary: EntryId {
                index: Index(10),
                term: Term(1),
            },
            entries: (11..=20)
                .map(|index| Entry {
                    index: Index(index),
                    term: Term(2),
                    payload: Payload::Noop,
                })
                .collect(),
            memberships: MembershipHistory::default(),
        }
    }

    fn request(from: u64, max_entries: usize) -> FetchRequest {
        FetchRequest {
            peer: NodeId(2),
            from: Index(from),
            max_entries,
            max_bytes: usize::MAX,
        }
    }

    #[test]
    fn entries_come_with_the_id_before_them_within_the_count_limit() {
        let Ok(Answer::Fetched(fetched)) = serve(&log(), &request(13, 4)) else {
            panic!("entries expected");
        };
        assert_eq!(fetched.prev.index, Index(12));
        let indexes: Vec<u64> = fetched.entries.iter().map(|entry| entry.index.0).collect();
        assert_eq!(indexes, vec![13, 14, 15, 16]);
    }

    #[test]
    fn the_first_held_entry_comes_with_the_boundary() {
        let Ok(Answer::Fetched(fetched)) = serve(&log(), &request(11, 100)) else {
            panic!("entries expected");
        };
        assert_eq!(fetched.prev, log().boundary);
        assert_eq!(fetched.entries.len(), 10);
    }

    #[test]
    fn a_fetch_below_the_boundary_is_answered_with_it() {
        let Ok(Answer::Trimmed(trimmed)) = serve(&log(), &request(10, 100)) else {
            panic!("trimmed expected");
        };
        assert_eq!(trimmed.boundary, log().boundary);
        assert_eq!(
            trimmed.sessions.through,
            Index(10),
            "an empty table as of it"
        );
        assert_eq!(
            trimmed.membership, None,
            "no change: the bootstrap configuration"
        );
    }

    #[test]
    fn a_trimmed_answer_names_the_configuration_at_the_boundary() {
        let mut source = log();
        let configuration = |index: u64, voters: &[u64]| MembershipCheckpoint {
            index: Index(index),
            membership: Membership::bootstrap(
                &voters.iter().map(|&v| NodeId(v)).collect::<Vec<_>>(),
            ),
        };
        source.memberships.record(configuration(4, &[1, 2]));
        source.memberships.record(configuration(15, &[1, 2, 3]));
        let Ok(Answer::Trimmed(trimmed)) = serve(&source, &request(3, 100)) else {
            panic!("trimmed expected");
        };
        assert_eq!(trimmed.membership, Some(configuration(4, &[1, 2])));
    }

    #[test]
    fn a_fetch_beyond_the_log_breaks_the_contract() {
        let Ok(Answer::Fetched(fetched)) = serve(&log(), &request(21, 1)) else {
            panic!("no entries expected");
        };
        assert!(fetched.entries.is_empty());
        assert_eq!(fetched.prev.index, Index(20));
        assert_eq!(
            serve(&log(), &request(22, 1)),
            Err(ServeError::OutsideLog {
                from: Index(22),
                last_index: Index(20)
            })
        );
    }
}
