//! Static configuration of one Raft node, validated once at construction.

use crate::types::NodeId;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Everything a node needs to know that does not change while it runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// This node.
    pub id: NodeId,
    /// The bootstrap configuration: the voters before any configuration entry, the same
    /// on every node of a cluster. Usually includes `id`; a node that joins later is not
    /// among them, and waits as a non-voter until a configuration entry adds it
    /// (`membership.rs`): the configuration in force is the newest in the log.
    pub voters: Vec<NodeId>,
    /// A follower waits a random number of ticks in `[min, max)` without hearing from a
    /// leader before it campaigns.
    pub election_timeout_ticks_min: u64,
    pub election_timeout_ticks_max: u64,
    /// A leader sends a heartbeat to every follower this often.
    pub heartbeat_interval_ticks: u64,
    /// The most entries one AppendEntries carries.
    pub max_append_entries: usize,
    /// The most payload bytes one AppendEntries carries (at least one entry is always sent).
    pub max_append_bytes: usize,
    /// AppendEntries that may be in flight, unacknowledged, to one follower once it matches.
    pub max_inflight_appends: usize,
    /// Bytes (`Entry::size_bytes()`) of committed, applied entries the log keeps in memory
    /// as a cache for followers that lag a little. Entries that are not yet committed,
    /// durable and applied are always kept, whatever their size; older ones are read back
    /// from storage ([`crate::Output::Fetch`]).
    pub log_cache_bytes: usize,
    /// Run the PreVote phase before an election (thesis §9.6).
    pub pre_vote: bool,
    /// A leader steps down when it has not heard from a majority in an election timeout, and
    /// followers that hear from a leader ignore vote requests (thesis §6.2, §9.6).
    pub check_quorum: bool,
    /// Serve `ReadMode::Lease` reads on the leader without a round while its lease holds
    /// ([`Config::lease_ticks`]), and refuse votes for the minimum election timeout after a
    /// start. Needs `check_quorum`; every voter should agree on it.
    #[serde(default)]
    pub read_lease: bool,
    /// Seeds the election-timeout jitter. The core has no other source of randomness.
    pub rng_seed: u64,
    /// The most clients the session table remembers (`sessions.rs`); beyond it, the one
    /// applied longest ago is forgotten, and its retries append again.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// A session checkpoint is written once this many entries (or as many as the table
    /// has rows, if more) were applied since the last, and at every applied trim: it
    /// bounds what a restart replays, and what storage keeps beyond the trim point.
    #[serde(default = "default_sessions_checkpoint_entries")]
    pub sessions_checkpoint_entries: u64,
}

fn default_max_sessions() -> usize {
    65_536
}

fn default_sessions_checkpoint_entries() -> u64 {
    4096
}

impl Config {
    /// A configuration with sensible defaults for a cluster of `voters`.
    pub fn new(id: NodeId, voters: Vec<NodeId>) -> Config {
        Config {
            id,
            voters,
            election_timeout_ticks_min: 10,
            election_timeout_ticks_max: 20,
            heartbeat_interval_ticks: 2,
            max_append_entries: 1024,
            max_append_bytes: 1 << 20,
            max_inflight_appends: 8,
            log_cache_bytes: 4 << 20,
            pre_vote: true,
            check_quorum: true,
            read_lease: false,
            rng_seed: 0,
            max_sessions: default_max_sessions(),
            sessions_checkpoint_entries: default_sessions_checkpoint_entries(),
        }
    }

    /// How many of its own ticks a leader serves lease reads after sending a round that a
    /// majority then confirmed: two thirds of one tick less than the minimum election
    /// timeout.
    ///
    /// Why that is safe: a follower that echoed the round restarted its election timer on
    /// hearing it, and refuses to vote or to campaign until it has counted
    /// `election_timeout_ticks_min` ticks, which takes at least `min - 1` of its tick
    /// periods (the first may come at once). The leader stops serving before its own tick
    /// count reaches `lease_ticks` past the send, at most `lease_ticks` of its periods
    /// later. So no new leader can exist while the lease holds as long as
    /// `lease_ticks * leader_period <= (min - 1) * follower_period` for every pair of
    /// nodes: with `lease_ticks = (min - 1) * 2/3`, any two nodes' tick periods must be
    /// within a factor of 1.5 of each other, i.e. no clock runs more than 20 % faster or
    /// slower than nominal. Message delay only adds margin.
    pub fn lease_ticks(&self) -> u64 {
        self.election_timeout_ticks_min.saturating_sub(1) * 2 / 3
    }

    /// Checks the configuration; the core refuses to start with a bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id == NodeId(0) {
            return Err(ConfigError("node id 0 is reserved".into()));
        }
        if self.voters.is_empty() {
            return Err(ConfigError(
                "the bootstrap configuration has no voter".into(),
            ));
        }
        let mut sorted = self.voters.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != self.voters.len() {
            return Err(ConfigError(format!(
                "duplicate voters in {:?}",
                self.voters
            )));
        }
        if sorted.contains(&NodeId(0)) {
            return Err(ConfigError("node id 0 is reserved".into()));
        }
        if self.heartbeat_interval_ticks == 0 {
            return Err(ConfigError(
                "heartbeat_interval_ticks must be at least 1".into(),
            ));
        }
        if self.election_timeout_ticks_min <= self.heartbeat_interval_ticks {
            return Err(ConfigError(format!(
                "election_timeout_ticks_min ({}) must exceed heartbeat_interval_ticks ({})",
                self.election_timeout_ticks_min, self.heartbeat_interval_ticks
            )));
        }
        if self.election_timeout_ticks_max <= self.election_timeout_ticks_min {
            return Err(ConfigError(format!(
                "election_timeout_ticks_max ({}) must exceed election_timeout_ticks_min ({})",
                self.election_timeout_ticks_max, self.election_timeout_ticks_min
            )));
        }
        if self.max_append_entries == 0 || self.max_append_bytes == 0 {
            return Err(ConfigError("append limits must be at least 1".into()));
        }
        if self.read_lease && !self.check_quorum {
            return Err(ConfigError(
                "read_lease needs check_quorum: without it followers do not refuse votes \
                 while they hear a leader, so no lease holds"
                    .into(),
            ));
        }
        if self.max_sessions == 0 || self.sessions_checkpoint_entries == 0 {
            return Err(ConfigError(
                "max_sessions and sessions_checkpoint_entries must be at least 1".into(),
            ));
        }
        if self.max_inflight_appends == 0 {
            return Err(ConfigError(
                "max_inflight_appends must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// A configuration the core cannot run with, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid raft config: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}
