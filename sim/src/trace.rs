//! The event trace: a running hash of every event (the run's fingerprint), the last few
//! events kept for violation reports, and optionally every event written out readably.
//!
//! Records are small `Copy` values, formatted only when someone reads them, so tracing costs
//! a few nanoseconds per event when nobody is watching.

use crate::coverage::Tally;
use crate::report::seconds;
use replog_core::{Message, MessageBody, Role};
use std::collections::VecDeque;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::io::Write as _;

/// How many recent events a violation report shows.
pub const RECENT_EVENTS: usize = 50;

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct TraceRecord {
    pub time_us: u64,
    /// 1-based node id; 0 for events that belong to no node.
    pub node: u8,
    pub what: What,
}

/// The essentials of a message: kind, term and up to four numbers whose meaning depends on
/// the kind (see `Display`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct MessageSummary {
    pub from: u8,
    pub to: u8,
    pub kind: MessageKind,
    pub term: u64,
    pub numbers: [u64; 4],
}

/// A message's kind as a small code: hashing it costs one word, not the name's bytes.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum MessageKind {
    PreVote,
    RequestVote,
    PreVoteResponse,
    RequestVoteResponse,
    AppendEntries,
    AppendEntriesResponse,
    InstallSnapshot,
    ReadIndex,
    ReadIndexResponse,
    ReadProbe,
    ReadProbeResponse,
    TimeoutNow,
}

impl MessageKind {
    fn of(body: &MessageBody) -> MessageKind {
        match body {
            MessageBody::RequestVote { pre_vote: true, .. } => MessageKind::PreVote,
            MessageBody::RequestVote { .. } => MessageKind::RequestVote,
            MessageBody::RequestVoteResponse { pre_vote: true, .. } => MessageKind::PreVoteResponse,
            MessageBody::RequestVoteResponse { .. } => MessageKind::RequestVoteResponse,
            MessageBody::AppendEntries { .. } => MessageKind::AppendEntries,
            MessageBody::AppendEntriesResponse(_) => MessageKind::AppendEntriesResponse,
            MessageBody::InstallSnapshot { .. } => MessageKind::InstallSnapshot,
            MessageBody::ReadIndex { .. } => MessageKind::ReadIndex,
            MessageBody::ReadIndexResponse { .. } => MessageKind::ReadIndexResponse,
            MessageBody::ReadProbe { .. } => MessageKind::ReadProbe,
            MessageBody::ReadProbeResponse { .. } => MessageKind::ReadProbeResponse,
            MessageBody::TimeoutNow => MessageKind::TimeoutNow,
        }
    }
}

impl MessageSummary {
    pub fn of(message: &Message) -> MessageSummary {
        let numbers = match &message.body {
            MessageBody::RequestVote {
                last_log_index,
                last_log_term,
                transfer,
                ..
            } => [last_log_index.0, last_log_term.0, u64::from(*transfer), 0],
            MessageBody::RequestVoteResponse { granted, .. } => [u64::from(*granted), 0, 0, 0],
            MessageBody::AppendEntries {
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
            } => [
                prev_log_index.0,
                prev_log_term.0,
                entries.len() as u64,
                leader_commit.0,
            ],
            MessageBody::AppendEntriesResponse(response) => {
                [response.index.0, u64::from(response.reject.is_some()), 0, 0]
            }
            MessageBody::InstallSnapshot { last, data, .. } => {
                [last.index.0, last.term.0, data.len() as u64, 0]
            }
            MessageBody::ReadIndex { id } => [id.0, 0, 0, 0],
            MessageBody::ReadIndexResponse { id, index } => [
                id.0,
                index.map_or(0, |index| index.0),
                u64::from(index.is_some()),
                0,
            ],
            MessageBody::ReadProbe { round } | MessageBody::ReadProbeResponse { round } => {
                [*round, 0, 0, 0]
            }
            MessageBody::TimeoutNow => [0; 4],
        };
        MessageSummary {
            from: message.from.0 as u8,
            to: message.to.0 as u8,
            kind: MessageKind::of(&message.body),
            term: message.term.0,
            numbers,
        }
    }
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum What {
    /// A tick that made the node do something.
    Tick,
    Deliver(MessageSummary),
    /// Dropped at send time: partitioned or lost.
    Dropped(MessageSummary, &'static str),
    /// Delivered to a crashed node.
    DeadLetter(MessageSummary),
    Persisted {
        write_id: u64,
    },
    Crash {
        survived: u32,
        lost: u32,
        torn: bool,
    },
    Restart {
        term: u64,
        last_index: u64,
        commit_index: u64,
        /// The segment files the log was recovered from.
        segments: u32,
    },
    Pause,
    Resume {
        backlog: u32,
    },
    Fault {
        name: &'static str,
        nodes: u16,
    },
    Propose {
        op: u64,
        accepted_at: u64,
    },
    Reply {
        op: u64,
        reply: &'static str,
        index: u64,
    },
    ClientTimeout {
        op: u64,
    },
    Role {
        role: Role,
        term: u64,
        leader: u64,
    },
    HealMajority {
        majority: u16,
    },
    /// Storage answered a fetch: entries `from..from + count` for catching `peer` up.
    Fetched {
        peer: u8,
        from: u64,
        count: u32,
    },
    /// The leader proposed a retention point.
    TrimProposed {
        before: u64,
    },
    /// A committed retention point dropped this node's durable entries up to `boundary`.
    Trimmed {
        boundary: u64,
    },
    /// A client's read reached the core (linearizable or lease).
    ReadAsked {
        op: u64,
    },
}

impl fmt::Display for TraceRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>14} ", seconds(self.time_us))?;
        if self.node > 0 {
            write!(f, "n{} ", self.node)?;
        } else {
            write!(f, "-- ")?;
        }
        match &self.what {
            What::Tick => write!(f, "tick"),
            What::Deliver(message) => write!(f, "recv {message}"),
            What::Dropped(message, why) => write!(f, "drop {message} ({why})"),
            What::DeadLetter(message) => write!(f, "dead-letter {message}"),
            What::Persisted { write_id } => write!(f, "fsync done: persisted w{write_id}"),
            What::TrimProposed { before } => write!(f, "propose trim before i{before}"),
            What::Trimmed { boundary } => write!(f, "trimmed storage through i{boundary}"),
            What::ReadAsked { op } => write!(f, "read op{op} asked of the core"),
            What::Fetched { peer, from, count } => write!(
                f,
                "read from storage for n{peer}: {count} entries from i{from}"
            ),
            What::Crash {
                survived,
                lost,
                torn,
            } => write!(
                f,
                "CRASH: {survived} unsynced records survived{}, {lost} lost",
                if *torn { " (last torn)" } else { "" }
            ),
            What::Restart {
                term,
                last_index,
                commit_index,
                segments,
            } => write!(
                f,
                "RESTART from disk: term t{term}, last index i{last_index}, commit \
                 i{commit_index}, {segments} segments"
            ),
            What::Pause => write!(f, "PAUSE"),
            What::Resume { backlog } => write!(f, "RESUME with {backlog} queued events"),
            What::Fault { name, nodes } => write!(f, "FAULT {name} {}", node_list(*nodes)),
            What::Propose { op, accepted_at } => match accepted_at {
                0 => write!(f, "propose op{op}: not leader"),
                index => write!(f, "propose op{op}: accepted at i{index}"),
            },
            What::Reply { op, reply, index } => write!(f, "client op{op} <- {reply} i{index}"),
            What::ClientTimeout { op } => write!(f, "client op{op} timed out (unknown)"),
            What::Role { role, term, leader } => {
                write!(f, "role {role} in t{term}, leader n{leader}")
            }
            What::HealMajority { majority } => {
                write!(f, "LIVENESS PHASE: heal majority {}", node_list(*majority))
            }
        }
    }
}

impl fmt::Display for MessageSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (from, to, term) = (self.from, self.to, self.term);
        write!(f, "{:?} n{from}->n{to} t{term}", self.kind)?;
        let [a, b, c, d] = self.numbers;
        match self.kind {
            MessageKind::PreVote | MessageKind::RequestVote => {
                write!(f, " last=i{a}/t{b}")?;
                match c {
                    1 => write!(f, " transfer"),
                    _ => Ok(()),
                }
            }
            MessageKind::PreVoteResponse | MessageKind::RequestVoteResponse => {
                write!(f, " {}", if a == 1 { "granted" } else { "refused" })
            }
            MessageKind::AppendEntries => write!(f, " prev=i{a}/t{b} entries={c} commit=i{d}"),
            MessageKind::AppendEntriesResponse => {
                write!(f, " {} i{a}", if b == 1 { "reject" } else { "ok" })
            }
            MessageKind::InstallSnapshot => write!(f, " after=i{a}/t{b} data={c}B"),
            MessageKind::ReadIndex => write!(f, " r{a}"),
            MessageKind::ReadIndexResponse => match c {
                1 => write!(f, " r{a} at i{b}"),
                _ => write!(f, " r{a} refused"),
            },
            MessageKind::ReadProbe | MessageKind::ReadProbeResponse => write!(f, " round {a}"),
            MessageKind::TimeoutNow => Ok(()),
        }
    }
}

fn node_list(nodes: u16) -> String {
    let ids: Vec<String> = (0..16)
        .filter(|bit| nodes & (1 << bit) != 0)
        .map(|bit| format!("n{}", bit + 1))
        .collect();
    format!("[{}]", ids.join(","))
}

/// FNV-1a over 64-bit words: fast, and stable across Rust versions and machines (unlike
/// `DefaultHasher`, whose algorithm is unspecified).
struct TraceHasher(u64);

impl Hasher for TraceHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }
    fn write_u64(&mut self, word: u64) {
        self.0 = (self.0 ^ word).wrapping_mul(0x0000_0100_0000_01B3);
    }
    fn write_u8(&mut self, byte: u8) {
        self.write_u64(u64::from(byte));
    }
    fn write_usize(&mut self, word: usize) {
        self.write_u64(word as u64);
    }
    fn write_isize(&mut self, word: isize) {
        self.write_u64(word as u64);
    }
}

pub struct Trace {
    hasher: TraceHasher,
    /// What the run exercised, for coverage; not part of the hash.
    pub tally: Tally,
    recent: VecDeque<TraceRecord>,
    /// Every noteworthy event, readable, for `replog sim replay` and `--trace FILE`.
    sink: Option<Box<dyn std::io::Write>>,
}

impl Trace {
    pub fn new(sink: Option<Box<dyn std::io::Write>>) -> Trace {
        Trace {
            hasher: TraceHasher(0xCBF2_9CE4_8422_2325),
            tally: Tally::default(),
            recent: VecDeque::with_capacity(RECENT_EVENTS + 1),
            sink,
        }
    }

    /// Hashes a noteworthy event, keeps it among the recent ones, and writes it out.
    pub fn record(&mut self, record: TraceRecord) {
        record.hash(&mut self.hasher);
        self.tally.observe(&record);
        if self.recent.len() == RECENT_EVENTS {
            self.recent.pop_front();
        }
        self.recent.push_back(record);
        if let Some(sink) = &mut self.sink {
            // A trace that cannot be written is not worth failing the run over.
            let _ = writeln!(sink, "{record}");
        }
    }

    /// Hashes an event too routine to show (a tick that did nothing).
    pub fn quiet(&mut self, time_us: u64, node: u8) {
        self.hasher.write_u64(time_us);
        self.hasher.write_u8(node);
    }

    pub fn hash(&self) -> u64 {
        self.hasher.finish()
    }

    pub fn recent(&self) -> Vec<TraceRecord> {
        self.recent.iter().copied().collect()
    }

    pub fn note(&mut self, line: &str) {
        if let Some(sink) = &mut self.sink {
            let _ = writeln!(sink, "{line}");
        }
    }

    pub fn flush(&mut self) {
        if let Some(sink) = &mut self.sink {
            let _ = sink.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_depends_on_every_event_and_recent_keeps_the_last_fifty() {
        let mut a = Trace::new(None);
        let mut b = Trace::new(None);
        for time_us in 0..100 {
            let record = TraceRecord {
                time_us,
                node: 1,
                what: What::Pause,
            };
            a.record(record);
            b.record(record);
        }
        assert_eq!(a.hash(), b.hash());
        assert_eq!(a.recent().len(), RECENT_EVENTS);
        assert_eq!(a.recent()[0].time_us, 50);
        b.quiet(100, 1);
        assert_ne!(a.hash(), b.hash());
    }
}
