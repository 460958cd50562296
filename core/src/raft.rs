//! `RaftCore`: the state every role shares, the `step` dispatcher and the invariants.
//! Role-specific behaviour lives in `election.rs`, `follower.rs` and `leader.rs`; the state
//! only one role has in `role.rs`; every majority decision in `quorum.rs`.

use crate::config::{Config, ConfigError};
use crate::io::{Input, Output};
use crate::log::{Log, LogError};
use crate::membership::{Membership, MembershipCheckpoint, MembershipLog};
use crate::message::{Message, MessageBody};
use crate::planted::{self, Bug};
use crate::quorum::JointConfig;
use crate::reads::Reads;
use crate::role::RoleState;
use crate::sessions::{PendingSessions, Sessions, SessionsCheckpoint};
use crate::timeout::Timeout;
use crate::types::{Entry, EntryId, HardState, Index, NodeId, Payload, Role, Term};
use crate::writes::WriteTracker;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::fmt;

/// What the driver read back from durable storage at start.
///
/// The core needs only the log's tail: `entries` follow `prev` and run to the log's last
/// index. The tail must reach back to the commit index (`prev.index <= commit_index`): what
/// lies before it is committed, and the core never needs to compare it with anyone's. A
/// driver may pass more (the whole log is always valid); the core keeps what its cache
/// allows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    pub hard_state: HardState,
    /// The entry just before `entries` (`EntryId::ZERO` when they start at index 1).
    pub prev: EntryId,
    pub entries: Vec<Entry>,
    /// The commit index the driver last recorded; entries up to it count as applied.
    /// Zero is always safe with the whole log; with a tail it must be at least `prev.index`.
    pub commit_index: Index,
    /// The newest durable session table. The tail must reach back to its `through` when
    /// that is below `commit_index`: the core re-applies the committed entries after it.
    /// `None` when storage holds none, and an empty one, mean an empty table up to
    /// `commit_index` at least ([`SessionsCheckpoint::through_given`]): drivers record a
    /// commit index only after the writes of the step that produced it.
    pub sessions: Option<SessionsCheckpoint>,
    /// The newest configuration storage recorded (`MembershipHistory::newest`); `None`:
    /// the bootstrap one, `Config::voters`. The core takes the configuration entries in
    /// the tail after it as appended; storage records every applied one before the commit
    /// index that covers it, so none between it and the tail is missing.
    pub membership: Option<MembershipCheckpoint>,
}

/// Durable state that cannot belong to a Raft node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecoveryError {
    Config(ConfigError),
    Log(LogError),
    /// The log holds an entry from a term later than the stored current term.
    EntryFromFutureTerm {
        index: Index,
        term: Term,
        current_term: Term,
    },
    /// The stored commit index lies beyond the stored log.
    CommitBeyondLog {
        commit_index: Index,
        last_index: Index,
    },
    /// The tail handed over starts after the commit index: entries between them, which are
    /// not known to be committed, are missing.
    TailAfterCommit {
        prev_index: Index,
        commit_index: Index,
    },
    /// The recorded configuration comes from an entry after the commit index (storage
    /// records only applied ones).
    MembershipBeyondCommit {
        membership_index: Index,
        commit_index: Index,
    },
    /// The tail starts after the session checkpoint: the committed entries between them,
    /// which the table must still apply, are missing.
    TailAfterSessions {
        prev_index: Index,
        sessions_through: Index,
    },
}

impl fmt::Display for RecoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecoveryError::Config(error) => write!(f, "{error}"),
            RecoveryError::Log(error) => write!(f, "{error}"),
            RecoveryError::EntryFromFutureTerm {
                index,
                term,
                current_term,
            } => write!(
                f,
                "entry {} has term {} but the stored current term is only {}",
                index.0, term.0, current_term.0
            ),
            RecoveryError::CommitBeyondLog {
                commit_index,
                last_index,
            } => write!(
                f,
                "stored commit index {} lies beyond the log's last index {}",
                commit_index.0, last_index.0
            ),
            RecoveryError::MembershipBeyondCommit {
                membership_index,
                commit_index,
            } => write!(
                f,
                "the recorded configuration is from entry {} but only {} is known committed",
                membership_index.0, commit_index.0
            ),
            RecoveryError::TailAfterCommit {
                prev_index,
                commit_index,
            } => write!(
                f,
                "the recovered log tail starts after index {} but only {} is known committed",
                prev_index.0, commit_index.0
            ),
            RecoveryError::TailAfterSessions {
                prev_index,
                sessions_through,
            } => write!(
                f,
                "the recovered log tail starts after index {} but the session checkpoint \
                 covers only up to {}",
                prev_index.0, sessions_through.0
            ),
        }
    }
}

impl std::error::Error for RecoveryError {}

/// Counters of what the core ignored or did, for metrics and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages dropped because they were stale, misaddressed or made no sense.
    pub messages_ignored: u64,
    /// `Persisted` inputs for writes never issued or already durable.
    pub bad_persisted_ignored: u64,
    /// AppendEntries that would have truncated committed entries, or entries already verified
    /// against the current term's leader (only a faulty peer asks either).
    pub unsafe_truncations_refused: u64,
    /// `Fetched` inputs that answered no outstanding request or did not fit it.
    pub bad_fetched_ignored: u64,
    /// `Fetch` outputs: batches read back from storage to catch a follower up.
    pub fetches_requested: u64,
    /// Logs installed on followers too far behind this leader's retained log.
    pub installs_sent: u64,
    /// Logs replaced here by a leader's install.
    pub installs_received: u64,
    pub pre_votes_started: u64,
    pub elections_started: u64,
    pub terms_led: u64,
    /// Leadership transfers this node started as leader, and gave up after a timeout.
    pub transfers_started: u64,
    pub transfers_aborted: u64,
    /// Campaigns started at once on a leader's `TimeoutNow` (leadership transfer).
    pub transfer_campaigns: u64,
    /// Leaders that stepped down because no majority answered within an election timeout.
    pub check_quorum_step_downs: u64,
    /// Rejected appends that moved a follower's next index back (log conflict backtracking).
    pub conflicts_backtracked: u64,
    /// Vote grants held back until the vote itself was durable.
    pub votes_held_for_fsync: u64,
    /// Times a leader had new entries for a follower but its pipeline window was full.
    pub append_windows_full: u64,
}

/// One Raft node's state machine. See the crate documentation for the contract.
pub struct RaftCore {
    pub(crate) config: Config,
    /// Every other member of the configuration in force (voters and learners), sorted.
    pub(crate) peers: Vec<NodeId>,
    pub(crate) rng: ChaCha8Rng,

    /// Invariant: never decreases; `>= log.last_term()`.
    pub(crate) term: Term,
    /// Invariant: `Some(id)` only for a voter; fixed once set within a term.
    pub(crate) voted_for: Option<NodeId>,
    /// The role, with the state only that role has (`role.rs`).
    pub(crate) role: RoleState,
    /// Invariant: `Some(id)` when `role == Leader`; the leader of `term` when known.
    pub(crate) leader: Option<NodeId>,
    /// A window onto the whole log (see `log.rs`).
    /// Invariant: `log.prev().index <= applied_index`: only entries that are committed,
    /// durable and applied leave memory.
    pub(crate) log: Log,
    /// Invariant: never decreases; `<= log.last_index()`.
    pub(crate) commit_index: Index,
    /// The last index handed out in a `Commit` output.
    /// Invariant: never decreases; `<= commit_index` and `<= writes.durable_index`.
    pub(crate) applied_index: Index,
    /// Follower: (term, index) such that entries up to `index` were verified to match the
    /// leader of `term` (by an accepted AppendEntries). Only meaningful while `term` is ours.
    /// Invariant: when `verified.0 == term`, `verified.1 <= log.last_index()`.
    pub(crate) verified: (Term, Index),
    pub(crate) writes: WriteTracker,

    /// The voters of the configuration in force and every majority decision over them
    /// (`quorum.rs`). Invariant: the voters of `membership.in_force()`.
    pub(crate) quorum: JointConfig,
    /// The configuration in force and the configuration entries not yet applied
    /// (`membership.rs`). `peers` and `quorum` follow it.
    pub(crate) membership: MembershipLog,
    /// The configuration last reported with `MembershipChanged` (initially the recovered one).
    reported_membership: MembershipCheckpoint,
    /// Restarted on leader contact, a vote granted and a campaign, each time with a freshly
    /// drawn length. Invariant: `after_ticks()` within `[min, max)`.
    pub(crate) election_timeout: Timeout,

    /// Linearizable reads under way (`reads.rs`).
    pub(crate) reads: Reads,
    /// The replicated session table (`sessions.rs`).
    /// Invariant: `sessions.through() >= applied_index`.
    pub(crate) sessions: Sessions,
    /// The `through` of the last session checkpoint written (or recovered).
    pub(crate) sessions_checkpointed: Index,
    /// Leader only: session entries in the log that the table does not hold yet.
    /// Invariant: empty unless `role == Leader`.
    pub(crate) pending_sessions: PendingSessions,

    pub(crate) stats: Stats,
    /// The (role, term, leader) last reported with `RoleChanged`.
    reported: (Role, Term, Option<NodeId>),
}

impl RaftCore {
    /// Builds a node from its configuration and the state its storage holds.
    pub fn new(config: Config, recovered: Recovered) -> Result<RaftCore, RecoveryError> {
        config.validate().map_err(RecoveryError::Config)?;
        let mut recovered = recovered;
        let log = Log::from_tail(recovered.prev, std::mem::take(&mut recovered.entries))
            .map_err(RecoveryError::Log)?;
        // An applied configuration is committed. Storage records it with the write of the
        // step that applied it and the commit index lazily after that write (as it must
        // for a session checkpoint), so a crash can keep the configuration and lose the
        // commit index: the configuration's entry is then known committed all the same.
        // (Recording the commit index first would be worse: a crash keeping it without the
        // configuration would hide a committed configuration below the recovered tail.)
        if let Some(base) = &recovered.membership {
            if base.index > recovered.commit_index && base.index <= log.last_index() {
                recovered.commit_index = base.index;
            }
        }
        let hard_state = recovered.hard_state;
        if log.last_term() > hard_state.term {
            return Err(RecoveryError::EntryFromFutureTerm {
                index: log.last_index(),
                term: log.last_term(),
                current_term: hard_state.term,
            });
        }
        if recovered.commit_index > log.last_index() {
            return Err(RecoveryError::CommitBeyondLog {
                commit_index: recovered.commit_index,
                last_index: log.last_index(),
            });
        }
        if recovered.prev.index > recovered.commit_index {
            return Err(RecoveryError::TailAfterCommit {
                prev_index: recovered.prev.index,
                commit_index: recovered.commit_index,
            });
        }
        let sessions_through =
            SessionsCheckpoint::through_given(recovered.sessions.as_ref(), recovered.commit_index);
        let checkpoint = SessionsCheckpoint {
            through: sessions_through,
            records: recovered.sessions.map(|s| s.records).unwrap_or_default(),
        };
        if sessions_through < recovered.commit_index && recovered.prev.index > sessions_through {
            return Err(RecoveryError::TailAfterSessions {
                prev_index: recovered.prev.index,
                sessions_through,
            });
        }
        let mut sessions = Sessions::from_checkpoint(checkpoint, config.max_sessions);
        for index in sessions_through.next().0..=recovered.commit_index.0 {
            let entry = log
                .entry(Index(index))
                .expect("checked: the tail reaches back");
            sessions.apply(entry);
        }
        let base = recovered
            .membership
            .unwrap_or_else(|| MembershipCheckpoint {
                index: Index::ZERO,
                membership: Membership::bootstrap(&config.voters),
            });
        if base.index > recovered.commit_index {
            return Err(RecoveryError::MembershipBeyondCommit {
                membership_index: base.index,
                commit_index: recovered.commit_index,
            });
        }
        let mut membership = MembershipLog::new(base);
        membership.appended(log.held());
        let reported_membership = membership.in_force().clone();
        let in_force = &membership.in_force().membership;
        let quorum = JointConfig::single(in_force.voters());
        let peers = in_force.others(config.id);
        // Mix the node id into the seed so nodes sharing a seed still draw different timeouts.
        let rng = ChaCha8Rng::seed_from_u64(
            config.rng_seed ^ config.id.0.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        let mut core = RaftCore {
            peers,
            rng,
            term: hard_state.term,
            voted_for: hard_state.voted_for,
            role: RoleState::Follower,
            leader: None,
            commit_index: recovered.commit_index,
            applied_index: recovered.commit_index,
            verified: (Term(0), Index::ZERO),
            writes: WriteTracker::new(log.last_index(), hard_state),
            log,
            quorum,
            membership,
            election_timeout: Timeout::new(config.election_timeout_ticks_min),
            reads: Reads::default(),
            sessions,
            sessions_checkpointed: sessions_through,
            pending_sessions: PendingSessions::default(),
            stats: Stats::default(),
            reported: (Role::Follower, hard_state.term, None),
            reported_membership,
            config,
        };
        core.reset_election_timer();
        core.forget_applied();
        Ok(core)
    }

    /// Feeds one input to the node and appends what it asks for to `outputs`.
    pub fn step(&mut self, input: Input, outputs: &mut Vec<Output>) {
        match input {
            Input::Tick => self.tick(outputs),
            Input::Receive(message) => self.receive(message, outputs),
            Input::Propose(commands) => self.propose(commands, outputs),
            Input::Trim { before } => {
                self.propose_payloads(vec![Payload::Trim { before }], outputs)
            }
            Input::ProposeOnce {
                client,
                seq,
                command,
            } => self.propose_once(client, seq, command, outputs),
            Input::Persisted { write_id } => self.persisted(write_id, outputs),
            Input::Fetched(fetched) => self.handle_fetched(fetched, outputs),
            Input::FetchTrimmed(trimmed) => self.handle_fetch_trimmed(trimmed, outputs),
            Input::Read { id, mode } => self.read(id, mode, outputs),
            Input::ChangeMembership(change) => self.propose_membership(change, outputs),
            Input::Transfer { to } => self.transfer(to, outputs),
        }
        self.end_step(outputs);
    }

    fn tick(&mut self, outputs: &mut Vec<Output>) {
        self.tick_reads(outputs);
        match self.role() {
            Role::Leader => self.tick_leader(outputs),
            Role::Follower | Role::PreCandidate | Role::Candidate => self.tick_election(outputs),
        }
    }

    fn receive(&mut self, message: Message, outputs: &mut Vec<Output>) {
        // Any node may write to us: a leader added after our configuration, a member we
        // have not yet heard about. What each message may do is checked where it is handled.
        let valid_sender = message.from != self.config.id && message.from != NodeId(0);
        if message.to != self.config.id || !valid_sender {
            self.stats.messages_ignored += 1;
            return;
        }
        if !self.observe_term(&message) {
            self.stats.messages_ignored += 1;
            return;
        }
        match message.body {
            MessageBody::RequestVote { .. } => self.handle_vote_request(message, outputs),
            MessageBody::RequestVoteResponse { .. } => self.handle_vote_response(message, outputs),
            MessageBody::AppendEntries { .. } => self.handle_append_entries(message, outputs),
            MessageBody::AppendEntriesResponse(_) => self.handle_append_response(message, outputs),
            MessageBody::InstallSnapshot { .. } => self.handle_install(message, outputs),
            MessageBody::ReadIndex { .. } => self.handle_read_index(message, outputs),
            MessageBody::ReadIndexResponse { .. } => {
                self.handle_read_index_response(message, outputs)
            }
            MessageBody::ReadProbe { .. } => self.handle_read_probe(message, outputs),
            MessageBody::ReadProbeResponse { .. } => self.handle_read_probe_response(message),
            MessageBody::TimeoutNow => self.handle_timeout_now(message, outputs),
        }
    }

    /// Applies the "any higher term" rule (§5.1) before a message is handled, with the
    /// PreVote and lease exceptions (thesis §9.6). Returns false if the message is to be
    /// dropped unanswered.
    fn observe_term(&mut self, message: &Message) -> bool {
        if message.term <= self.term {
            return true;
        }
        match &message.body {
            // A pre-vote request names a term its sender has not entered; it changes nothing.
            MessageBody::RequestVote { pre_vote: true, .. } => true,
            // A granted pre-vote echoes our own proposed term.
            MessageBody::RequestVoteResponse {
                pre_vote: true,
                granted: true,
            } => true,
            MessageBody::RequestVote {
                pre_vote: false,
                transfer: false,
                ..
            } if self.in_leader_lease() => {
                // We hear from a live leader: this candidate cannot win without disrupting
                // it, so neither its term nor its request touches us. A transfer's target
                // campaigns because that leader asked it to (`transfer.rs`).
                false
            }
            MessageBody::AppendEntries { .. }
            | MessageBody::InstallSnapshot { .. }
            | MessageBody::ReadProbe { .. } => {
                self.become_follower(message.term, Some(message.from));
                true
            }
            _ => {
                self.become_follower(message.term, None);
                true
            }
        }
    }

    /// Whether this node has heard from a live leader within the minimum election timeout,
    /// so that it refuses to help depose it (CheckQuorum's lease).
    pub(crate) fn in_leader_lease(&self) -> bool {
        if !self.config.check_quorum {
            return false;
        }
        match self.role() {
            Role::Leader => true,
            _ => {
                self.leader.is_some()
                    && self.election_timeout.elapsed_ticks()
                        < self.config.election_timeout_ticks_min
                    || self.in_start_lease()
            }
        }
    }

    fn persisted(&mut self, write_id: crate::types::WriteId, outputs: &mut Vec<Output>) {
        let Some(released) = self.writes.persisted(write_id) else {
            self.stats.bad_persisted_ignored += 1;
            return;
        };
        // A response from a term we have since left vouches for a log that may have changed
        // (a later write may have truncated what it acknowledged); drop it, as a network might.
        let current = self.term;
        let fresh = released.messages.into_iter().filter(|m| m.term >= current);
        outputs.extend(fresh.map(Output::Send));
        match self.role() {
            Role::Candidate => self.count_own_vote_if_durable(outputs),
            Role::Leader => self.maybe_advance_commit(outputs),
            Role::Follower | Role::PreCandidate => {}
        }
    }

    /// Moves to follower in `term` (which may be the current one) with `leader` if known.
    ///
    /// The election timer keeps running: Figure 2 restarts it only on hearing the current
    /// leader or granting a vote, and those callers restart it themselves. Adopting a newer
    /// term is neither; restarting the timer there let a stale candidate with a fast clock
    /// hold off every election when PreVote is off (found by the simulator, see
    /// core/tests/regressions.rs). Only a deposed leader, whose timer was not running,
    /// starts a fresh one.
    pub(crate) fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        assert!(term >= self.term, "term would decrease");
        if term > self.term {
            self.term = term;
            self.voted_for = None;
            self.stage_hard_state();
        }
        let was_leader = self.role() == Role::Leader;
        self.role = RoleState::Follower;
        self.leader = leader;
        self.pending_sessions.clear();
        if was_leader {
            self.reset_election_timer();
        }
    }

    pub(crate) fn stage_hard_state(&mut self) {
        self.writes.stage_hard_state(self.hard_state());
    }

    pub(crate) fn reset_election_timer(&mut self) {
        let min = self.config.election_timeout_ticks_min;
        let spread = self.config.election_timeout_ticks_max - min;
        self.election_timeout
            .start(min + self.rng.next_u64() % spread);
    }

    /// Sends `message` now, or holds it until every write issued so far is durable. Vote
    /// grants and append responses go through here (thesis §3.8).
    pub(crate) fn send_after_persist(&mut self, message: Message, outputs: &mut Vec<Output>) {
        if self.writes.must_hold() && !planted::active(Bug::AckBeforeFsync) {
            self.writes.hold(message);
        } else {
            outputs.push(Output::Send(message));
        }
    }

    pub(crate) fn message(&self, to: NodeId, body: MessageBody) -> Message {
        Message {
            from: self.config.id,
            to,
            term: self.term,
            body,
        }
    }

    /// Emits `Commit` for entries that are both committed and durable here.
    pub(crate) fn apply_committed(&mut self, outputs: &mut Vec<Output>) {
        let target = self.commit_index.min(self.writes.durable_index);
        if target > self.applied_index {
            let entries = self
                .log
                .slice(self.applied_index.next(), target)
                .expect("unapplied entries stay in memory")
                .to_vec();
            self.applied_index = target;
            self.apply_memberships(&entries);
            self.apply_sessions(&entries);
            outputs.push(Output::Commit(entries));
        }
    }

    /// Applies committed entries to the session table, and writes a checkpoint of it when
    /// the first client appears (storage without one means an empty table), at a trim
    /// (storage trims only up to a durable checkpoint) and once enough entries were
    /// applied since the last one (a restart replays from it). The interval grows with the
    /// table, so that writing it costs a bounded amount per applied entry. An empty table
    /// needs none: a log service that never sees a session writes nothing new.
    fn apply_sessions(&mut self, entries: &[Entry]) {
        let was_empty = self.sessions.len() == 0;
        let mut trimmed = false;
        for entry in entries {
            self.sessions.apply(entry);
            trimmed |= matches!(entry.payload, Payload::Trim { .. });
        }
        self.pending_sessions.applied(self.applied_index);
        if self.sessions.len() == 0 {
            return;
        }
        let interval = (self.config.sessions_checkpoint_entries).max(self.sessions.len() as u64);
        let since = self.sessions_checkpointed.count_to(self.sessions.through());
        if was_empty || trimmed || since >= interval {
            self.sessions_checkpointed = self.sessions.through();
            self.writes.stage_sessions(self.sessions.checkpoint());
        }
    }

    /// Lets applied entries beyond the cache leave memory. Storage holds them (applied
    /// implies durable here), and they are committed, so no consistency check needs them.
    /// Runs once the cache overflows by a quarter, so that the copy down of the remaining
    /// window costs little per entry.
    fn forget_applied(&mut self) {
        let cache = self.config.log_cache_bytes;
        if self.log.held_bytes() <= cache.saturating_add(cache / 4) {
            return;
        }
        if let Some(point) = self.log.forget_point(self.applied_index, cache) {
            self.log.forget_through(point);
        }
    }

    fn end_step(&mut self, outputs: &mut Vec<Output>) {
        self.step_down_if_removed();
        self.apply_committed(outputs);
        self.end_step_reads(outputs);
        self.forget_applied();
        if let Some(write) = self.writes.flush(self.log.last_index()) {
            outputs.push(Output::Persist(write));
        }
        let in_force = self.membership.in_force();
        if *in_force != self.reported_membership {
            self.reported_membership = in_force.clone();
            outputs.push(Output::MembershipChanged(in_force.clone()));
        }
        let now = (self.role(), self.term, self.leader);
        if now != self.reported {
            self.reported = now;
            outputs.push(Output::RoleChanged {
                role: self.role(),
                term: self.term,
                leader: self.leader,
            });
        }
    }

    /// Asserts every invariant written on the fields. Cheap: drivers call it after each step.
    pub fn check_invariants(&self) {
        assert!(
            self.log.last_term() <= self.term,
            "log holds a term from the future"
        );
        assert!(
            self.commit_index <= self.log.last_index(),
            "commit beyond log end"
        );
        assert!(
            self.applied_index <= self.commit_index,
            "applied beyond commit"
        );
        assert!(
            self.applied_index <= self.writes.durable_index,
            "applied an undurable entry"
        );
        assert!(
            self.log.prev().index <= self.applied_index,
            "an unapplied entry left memory"
        );
        assert!(
            self.sessions.through() >= self.applied_index,
            "session table behind the applied index"
        );
        self.sessions.check_invariants();
        assert!(
            self.writes.durable_hard_state.term <= self.term,
            "durable term ahead"
        );
        if self.verified.0 == self.term {
            assert!(
                self.verified.1 <= self.log.last_index(),
                "verified beyond log end"
            );
        }
        self.writes.check_invariants(self.log.last_index());
        let spread = self.config.election_timeout_ticks_min..self.config.election_timeout_ticks_max;
        assert!(
            spread.contains(&self.election_timeout.after_ticks()),
            "election timeout out of range"
        );
        self.membership
            .check_invariants(self.applied_index, self.log.last_index());
        let in_force = &self.membership.in_force().membership;
        assert_eq!(
            self.quorum.voters(),
            in_force.voters(),
            "quorum off the configuration in force"
        );
        assert_eq!(
            self.peers,
            in_force.others(self.config.id),
            "peers off the configuration in force"
        );
        self.check_role_invariants();
        self.reads.check_invariants(self.role());
    }

    /// The invariants that depend on the role.
    fn check_role_invariants(&self) {
        if self.role() != Role::Leader {
            assert!(
                self.pending_sessions.is_empty(),
                "non-leader tracks sessions"
            );
        }
        match self.role() {
            Role::Leader => {
                assert_eq!(
                    self.leader,
                    Some(self.config.id),
                    "leader does not know itself"
                );
                assert_eq!(
                    self.voted_for,
                    Some(self.config.id),
                    "leader did not vote for itself"
                );
                let progress = self.role.progress();
                assert!(
                    progress.keys().eq(self.peers.iter()),
                    "progress for wrong peers"
                );
                for progress in progress.values() {
                    progress
                        .check_invariants(self.log.last_index(), self.config.max_inflight_appends);
                }
                self.check_transfer_invariants();
            }
            Role::Candidate => {
                assert_eq!(
                    self.voted_for,
                    Some(self.config.id),
                    "candidate did not vote for itself"
                );
            }
            Role::Follower | Role::PreCandidate => {
                assert_ne!(
                    self.leader,
                    Some(self.config.id),
                    "non-leader names itself leader"
                );
            }
        }
    }

    // Read-only getters.

    pub fn id(&self) -> NodeId {
        self.config.id
    }
    pub fn config(&self) -> &Config {
        &self.config
    }
    pub fn role(&self) -> Role {
        self.role.role()
    }
    pub fn term(&self) -> Term {
        self.term
    }
    pub fn voted_for(&self) -> Option<NodeId> {
        self.voted_for
    }
    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            voted_for: self.voted_for,
        }
    }
    /// The leader of the current term, if known.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }
    pub fn commit_index(&self) -> Index {
        self.commit_index
    }
    /// The last index handed out in a `Commit` output.
    pub fn applied_index(&self) -> Index {
        self.applied_index
    }
    /// Entries up to here are durable as they are in memory.
    pub fn durable_index(&self) -> Index {
        self.writes.durable_index
    }
    pub fn log(&self) -> &Log {
        &self.log
    }
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
    /// Leader only: the node a leadership transfer under way hands over to.
    pub fn transfer_target(&self) -> Option<NodeId> {
        self.transferring_to()
    }
    /// Leader only: the highest index known to match `peer`'s log.
    pub fn match_index(&self, peer: NodeId) -> Option<Index> {
        self.role.peer(peer).map(|progress| progress.match_index)
    }
    /// The configuration in force (the newest in the log) and the entry that carried it.
    pub fn membership(&self) -> &MembershipCheckpoint {
        self.membership.in_force()
    }
    /// The session table as of the applied index (at least).
    pub fn sessions(&self) -> SessionsCheckpoint {
        self.sessions.checkpoint()
    }
}
