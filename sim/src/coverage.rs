//! What a run (or a sweep) exercised: how often each fault kind, role transition, message
//! kind and protocol path happened, so that a path the swarm never reaches shows as a gap.
//!
//! Counted from what the simulator already observes: every trace record passes through
//! [`Tally::observe`] (an array increment, no allocation), the fault counters, and the
//! cores' own [`Stats`]. Nothing here feeds the trace hash, so counting changes no run.

use crate::params::Params;
use crate::trace::{MessageKind, TraceRecord, What};
use replog_core::{Role, Stats};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The faults the swarm injects, by the names `Counters::faults` uses: one missing from
/// the counts is reported as never injected.
pub const FAULT_NAMES: &[&str] = &[
    "bridge",
    "crash",
    "crash_leader",
    "crash_majority",
    "crash_point",
    "flap",
    "isolate",
    "isolate_leader",
    "isolate_new_leader",
    "minority",
    "one_way",
    "pause",
    "split",
    "transfer",
];

/// Configuration changes the swarm draws and what the leader answered
/// (`engine/membership.rs`), counted with the faults and shown as category "member".
pub const MEMBER_NAMES: &[&str] = &[
    "member_accepted",
    "member_add_learner",
    "member_no_leader",
    "member_nothing_to_change",
    "member_promote",
    "member_racing",
    "member_refused_learner_behind",
    "member_refused_not_committed_in_term",
    "member_refused_pending",
    "member_remove",
    "member_remove_leader",
    "member_replace_crashed",
];

/// Faults only a scenario schedules: counted when they happen, never reported missing.
/// (The swarm draws loss, duplication and skew per seed instead; see the "seed" rows.)
pub const SCHEDULED_ONLY: &[&str] = &["duplicate", "heal", "loss", "restart", "skew"];

/// The trace-derived counters, one slot each: (category, name).
const SLOTS: &[(&str, &str)] = &[
    ("message", "PreVote"),
    ("message", "RequestVote"),
    ("message", "PreVoteResponse"),
    ("message", "RequestVoteResponse"),
    ("message", "AppendEntries"),
    ("message", "AppendEntriesResponse"),
    ("message", "InstallSnapshot"),
    ("message", "ReadIndex"),
    ("message", "ReadIndexResponse"),
    ("message", "ReadProbe"),
    ("message", "ReadProbeResponse"),
    ("message", "TimeoutNow"),
    ("network", "dropped: partitioned"),
    ("network", "dropped: lost"),
    ("network", "dead letter (to a crashed node)"),
    ("path", "PreVote refused"),
    ("path", "vote refused"),
    ("path", "heartbeat (empty AppendEntries)"),
    ("path", "append rejected (log conflict)"),
    ("path", "catch-up from storage"),
    ("path", "catch-up hit trimmed storage"),
    ("path", "retention point proposed"),
    ("path", "storage trimmed"),
    ("path", "paused node resumed with a backlog"),
    ("path", "liveness phase started"),
    ("disk", "crash lost unsynced writes"),
    ("disk", "crash kept unsynced writes"),
    ("disk", "torn write at crash"),
    ("disk", "restart from disk"),
    ("client", "acknowledged"),
    ("client", "failed"),
    ("client", "redirect"),
    ("client", "no leader"),
    ("client", "timed out (unknown)"),
    ("client", "proposal accepted"),
    ("client", "proposal refused: not leader"),
    ("client", "read answered"),
    ("client", "session append retried"),
    ("client", "session append given up"),
    ("client", "read asked of the core"),
];

const ROLES: [Role; 4] = [
    Role::Follower,
    Role::PreCandidate,
    Role::Candidate,
    Role::Leader,
];

/// Role changes a healthy cluster goes through; any other that happens is counted too.
const EXPECTED_TRANSITIONS: &[(Role, Role)] = &[
    (Role::Follower, Role::PreCandidate),
    (Role::PreCandidate, Role::Candidate),
    (Role::PreCandidate, Role::Follower),
    (Role::Candidate, Role::Leader),
    (Role::Candidate, Role::Follower),
    (Role::Leader, Role::Follower),
];

const TRANSITION_NAMES: [&str; 16] = [
    "follower -> follower",
    "follower -> pre_candidate",
    "follower -> candidate",
    "follower -> leader",
    "pre_candidate -> follower",
    "pre_candidate -> pre_candidate",
    "pre_candidate -> candidate",
    "pre_candidate -> leader",
    "candidate -> follower",
    "candidate -> pre_candidate",
    "candidate -> candidate",
    "candidate -> leader",
    "leader -> follower",
    "leader -> pre_candidate",
    "leader -> candidate",
    "leader -> leader",
];

fn role_slot(role: Role) -> usize {
    ROLES
        .iter()
        .position(|&r| r == role)
        .expect("every role is listed")
}

/// The per-run counter, fed every trace record. Fixed arrays: a few nanoseconds per event.
#[derive(Clone, Debug)]
pub struct Tally {
    slots: [u64; SLOTS.len()],
    transitions: [u64; 16],
    /// Each node's role as last recorded (index = 1-based node id).
    roles: [Role; 17],
}

impl Default for Tally {
    fn default() -> Tally {
        Tally {
            slots: [0; SLOTS.len()],
            transitions: [0; 16],
            roles: [Role::Follower; 17],
        }
    }
}

/// The slot of `name`, found at compile time (so a misspelt name does not build).
const fn slot(name: &str) -> usize {
    let mut k = 0;
    while k < SLOTS.len() {
        if same(SLOTS[k].1.as_bytes(), name.as_bytes()) {
            return k;
        }
        k += 1;
    }
    panic!("not a coverage slot")
}

const fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut k = 0;
    while k < a.len() {
        if a[k] != b[k] {
            return false;
        }
        k += 1;
    }
    true
}

macro_rules! bump {
    ($tally:expr, $name:literal) => {
        $tally.slots[const { slot($name) }] += 1
    };
}

impl Tally {
    pub fn observe(&mut self, record: &TraceRecord) {
        match record.what {
            What::Deliver(message) => {
                // The first slots are the message kinds, in `MessageKind`'s order.
                self.slots[message.kind as usize] += 1;
                let [a, b, c, _] = message.numbers;
                match message.kind {
                    MessageKind::PreVoteResponse if a == 0 => bump!(self, "PreVote refused"),
                    MessageKind::RequestVoteResponse if a == 0 => bump!(self, "vote refused"),
                    MessageKind::AppendEntries if c == 0 => {
                        bump!(self, "heartbeat (empty AppendEntries)")
                    }
                    MessageKind::AppendEntriesResponse if b == 1 => {
                        bump!(self, "append rejected (log conflict)")
                    }
                    _ => {}
                }
            }
            What::Dropped(_, "partitioned") => bump!(self, "dropped: partitioned"),
            What::Dropped(..) => bump!(self, "dropped: lost"),
            What::DeadLetter(_) => bump!(self, "dead letter (to a crashed node)"),
            What::Fetched { count: 0, .. } => bump!(self, "catch-up hit trimmed storage"),
            What::Fetched { .. } => bump!(self, "catch-up from storage"),
            What::TrimProposed { .. } => bump!(self, "retention point proposed"),
            What::Trimmed { .. } => bump!(self, "storage trimmed"),
            What::Resume { backlog } if backlog > 0 => {
                bump!(self, "paused node resumed with a backlog")
            }
            What::HealMajority { .. } => bump!(self, "liveness phase started"),
            What::Crash {
                survived,
                lost,
                torn,
            } => {
                if lost > 0 {
                    bump!(self, "crash lost unsynced writes");
                }
                if survived > 0 {
                    bump!(self, "crash kept unsynced writes");
                }
                if torn {
                    bump!(self, "torn write at crash");
                }
                self.roles[usize::from(record.node)] = Role::Follower;
            }
            What::Restart { .. } => bump!(self, "restart from disk"),
            What::Reply { reply, .. } => match reply {
                "acknowledged" => bump!(self, "acknowledged"),
                "failed" => bump!(self, "failed"),
                "redirect" => bump!(self, "redirect"),
                "read" => bump!(self, "read answered"),
                "failed, retrying" => bump!(self, "session append retried"),
                "failed, giving up" => bump!(self, "session append given up"),
                _ => bump!(self, "no leader"),
            },
            What::ClientTimeout { .. } => bump!(self, "timed out (unknown)"),
            What::ReadAsked { .. } => bump!(self, "read asked of the core"),
            What::Propose { accepted_at: 0, .. } => bump!(self, "proposal refused: not leader"),
            What::Propose { .. } => bump!(self, "proposal accepted"),
            What::Role { role, .. } => {
                let last = &mut self.roles[usize::from(record.node)];
                if *last != role {
                    self.transitions[role_slot(*last) * 4 + role_slot(role)] += 1;
                    *last = role;
                }
            }
            _ => {}
        }
    }
}

/// What one run or a whole sweep exercised, by (category, name). Every known kind is
/// present, with 0 when it never happened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Coverage {
    pub counts: BTreeMap<(&'static str, &'static str), u64>,
}

impl Coverage {
    /// One run's coverage: its trace tally, its injected faults, and its cores' counters
    /// (summed over every life of every node).
    pub fn of_run(
        tally: &Tally,
        faults: &BTreeMap<&'static str, u64>,
        stats: &Stats,
        params: &Params,
    ) -> Coverage {
        let mut counts = BTreeMap::new();
        for (name, drawn) in seed_knobs(params) {
            counts.insert(("seed", name), u64::from(drawn));
        }
        for (&(category, name), &count) in SLOTS.iter().zip(&tally.slots) {
            counts.insert((category, name), count);
        }
        for &name in FAULT_NAMES {
            counts.insert(("fault", name), 0);
        }
        for &name in MEMBER_NAMES {
            counts.insert(("member", name), 0);
        }
        for (&name, &count) in faults {
            let category = if name.starts_with("member_") {
                "member"
            } else {
                "fault"
            };
            *counts.entry((category, name)).or_default() += count;
        }
        for &(from, to) in EXPECTED_TRANSITIONS {
            counts.insert(
                (
                    "role",
                    TRANSITION_NAMES[role_slot(from) * 4 + role_slot(to)],
                ),
                0,
            );
        }
        for (slot, &count) in tally.transitions.iter().enumerate() {
            if count > 0 {
                *counts.entry(("role", TRANSITION_NAMES[slot])).or_default() += count;
            }
        }
        for (name, count) in core_paths(stats) {
            counts.insert(("core", name), count);
        }
        Coverage { counts }
    }

    pub fn add(&mut self, other: &Coverage) {
        for (&key, &count) in &other.counts {
            *self.counts.entry(key).or_default() += count;
        }
    }

    pub fn never(&self) -> impl Iterator<Item = (&'static str, &'static str)> + '_ {
        self.counts
            .iter()
            .filter(|(_, &count)| count == 0)
            .map(|(&key, _)| key)
    }

    /// The table `replog sim sweep` prints: sorted by category and name, so equal sweeps
    /// print equal tables; then the kinds that never happened.
    pub fn table(&self) -> String {
        let mut out = String::from("coverage:\n");
        let width = self.counts.keys().map(|(_, n)| n.len()).max().unwrap_or(0);
        for (&(category, name), &count) in self.counts.iter().filter(|(_, &c)| c > 0) {
            let _ = writeln!(out, "  {category:<8} {name:<width$} {count:>12}");
        }
        let never: Vec<String> = self.never().map(|(c, n)| format!("{c} {n}")).collect();
        if never.is_empty() {
            out.push_str("never happened: nothing\n");
        } else {
            let _ = writeln!(out, "never happened: {}", never.join(", "));
        }
        out
    }
}

/// What the seed drew for the whole run, each counted once per seed that drew it.
fn seed_knobs(params: &Params) -> [(&'static str, bool); 7] {
    let net = &params.net;
    [
        ("message loss", net.loss.0 > 0),
        ("message duplication", net.duplicate.0 > 0),
        ("clock skew", params.skew_percent_max > 0),
        ("PreVote off", !params.core.pre_vote),
        ("CheckQuorum off", !params.core.check_quorum),
        (
            "pipeline window of 1",
            params.core.max_inflight_appends == 1,
        ),
        (
            "configuration changes",
            params.membership.interval_us_max > 0,
        ),
    ]
}

/// The protocol paths only the core sees, from its counters.
fn core_paths(stats: &Stats) -> [(&'static str, u64); 11] {
    [
        ("leadership transfer started", stats.transfers_started),
        ("leadership transfer given up", stats.transfers_aborted),
        ("campaign on TimeoutNow", stats.transfer_campaigns),
        ("CheckQuorum step-down", stats.check_quorum_step_downs),
        ("conflict backtracking", stats.conflicts_backtracked),
        ("vote held for fsync", stats.votes_held_for_fsync),
        ("pipelined window full", stats.append_windows_full),
        ("fetch from storage requested", stats.fetches_requested),
        ("log installed on a follower", stats.installs_sent),
        (
            "unsafe truncation refused",
            stats.unsafe_truncations_refused,
        ),
        ("message ignored (stale)", stats.messages_ignored),
    ]
}

/// Adds `stats` into `total`: a node's counters are summed over its lives.
pub fn add_stats(total: &mut Stats, stats: &Stats) {
    total.messages_ignored += stats.messages_ignored;
    total.bad_persisted_ignored += stats.bad_persisted_ignored;
    total.unsafe_truncations_refused += stats.unsafe_truncations_refused;
    total.bad_fetched_ignored += stats.bad_fetched_ignored;
    total.fetches_requested += stats.fetches_requested;
    total.installs_sent += stats.installs_sent;
    total.installs_received += stats.installs_received;
    total.pre_votes_started += stats.pre_votes_started;
    total.elections_started += stats.elections_started;
    total.terms_led += stats.terms_led;
    total.check_quorum_step_downs += stats.check_quorum_step_downs;
    total.conflicts_backtracked += stats.conflicts_backtracked;
    total.votes_held_for_fsync += stats.votes_held_for_fsync;
    total.append_windows_full += stats.append_windows_full;
    total.transfers_started += stats.transfers_started;
    total.transfers_aborted += stats.transfers_aborted;
    total.transfer_campaigns += stats.transfer_campaigns;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::{Direction, Fault, Target};
    use crate::rng::Ratio;

    #[test]
    fn every_fault_the_simulator_injects_is_listed() {
        let node = Target::Node(1);
        let faults = [
            Fault::Heal,
            Fault::Split { group: None },
            Fault::Isolate {
                target: Target::Leader,
            },
            Fault::Isolate { target: node },
            Fault::Minority,
            Fault::OneWay {
                target: node,
                direction: Direction::Inbound,
            },
            Fault::Bridge {
                target: node,
                side: None,
            },
            Fault::Flap {
                period_ms: 10,
                flips: 2,
            },
            Fault::Crash {
                target: Target::Leader,
                restart_after_ms: None,
                restart_after_us: None,
            },
            Fault::Crash {
                target: node,
                restart_after_ms: None,
                restart_after_us: None,
            },
            Fault::CrashMajority {
                restart_after_ms: None,
            },
            Fault::Restart { target: None },
            Fault::Pause {
                target: node,
                duration_ms: 5,
            },
            Fault::Loss { ratio: Ratio(1, 2) },
            Fault::Duplicate { ratio: Ratio(1, 2) },
            Fault::Skew {
                target: node,
                percent: 5,
            },
            Fault::Transfer { to: node },
        ];
        for fault in faults {
            let name = fault.name();
            assert!(
                FAULT_NAMES.contains(&name) || SCHEDULED_ONLY.contains(&name),
                "{name}"
            );
        }
    }

    /// `observe` indexes the slots by `MessageKind`: each kind's slot must carry its name.
    #[test]
    fn every_message_kind_has_its_own_slot() {
        use crate::trace::MessageKind::*;
        for kind in [
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
        ] {
            assert_eq!(
                SLOTS[kind as usize],
                ("message", format!("{kind:?}").as_str())
            );
        }
    }

    #[test]
    fn a_role_change_is_counted_once_and_a_crash_resets_the_role() {
        let mut tally = Tally::default();
        let role = |role| TraceRecord {
            time_us: 0,
            node: 2,
            what: What::Role {
                role,
                term: 1,
                leader: 0,
            },
        };
        tally.observe(&role(Role::PreCandidate));
        tally.observe(&role(Role::PreCandidate));
        tally.observe(&role(Role::Candidate));
        tally.observe(&role(Role::Leader));
        tally.observe(&TraceRecord {
            time_us: 1,
            node: 2,
            what: What::Crash {
                survived: 0,
                lost: 1,
                torn: false,
            },
        });
        tally.observe(&role(Role::PreCandidate));
        let coverage = Coverage::of_run(
            &tally,
            &BTreeMap::new(),
            &Stats::default(),
            &Params::calm(3),
        );
        let count = |category, name| coverage.counts[&(category, name)];
        assert_eq!(count("role", "follower -> pre_candidate"), 2);
        assert_eq!(count("role", "candidate -> leader"), 1);
        assert_eq!(count("role", "leader -> follower"), 0);
        assert_eq!(count("disk", "crash lost unsynced writes"), 1);
        let never: Vec<_> = coverage.never().collect();
        assert!(never.contains(&("role", "leader -> follower")));
        assert!(never.contains(&("fault", "split")));
        assert!(coverage
            .table()
            .contains("never happened: client acknowledged"));
    }
}
