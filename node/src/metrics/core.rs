//! What the core thread counts: its role and indexes, the messages it sends, receives and
//! ignores, how long appends wait to commit, its followers' progress, and the core's own
//! `Stats`.

use super::histogram::{Histogram, LocalHistogram, LATENCY_BOUNDS_MICROS};
use super::{counter, gauge, histogram, peer_counters, set_total, Metrics, PeerLabel, Shared};
use crate::transport::Peers;
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use replog_core::{Message, MessageBody, NodeId, RaftCore, Role, Stats};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

/// Message kinds as the `kind` label spells them.
const KINDS: [&str; 12] = [
    "request_vote",
    "request_vote_response",
    "pre_vote",
    "pre_vote_response",
    "append_entries",
    "append_entries_response",
    "install_snapshot",
    "read_index",
    "read_index_response",
    "read_probe",
    "read_probe_response",
    "timeout_now",
];

/// A message's place in [`KINDS`].
#[derive(Clone, Copy)]
pub struct MessageKind(usize);

impl MessageKind {
    pub fn of(message: &Message) -> MessageKind {
        MessageKind(match message.body {
            MessageBody::RequestVote {
                pre_vote: false, ..
            } => 0,
            MessageBody::RequestVoteResponse {
                pre_vote: false, ..
            } => 1,
            MessageBody::RequestVote { pre_vote: true, .. } => 2,
            MessageBody::RequestVoteResponse { pre_vote: true, .. } => 3,
            MessageBody::AppendEntries { .. } => 4,
            MessageBody::AppendEntriesResponse(_) => 5,
            MessageBody::InstallSnapshot { .. } => 6,
            MessageBody::ReadIndex { .. } => 7,
            MessageBody::ReadIndexResponse { .. } => 8,
            MessageBody::ReadProbe { .. } => 9,
            MessageBody::ReadProbeResponse { .. } => 10,
            MessageBody::TimeoutNow => 11,
        })
    }
}

/// Roles as the `role` label spells them, in the order of `role_index`.
const ROLES: [&str; 4] = ["follower", "pre_candidate", "candidate", "leader"];

fn role_index(role: Role) -> usize {
    match role {
        Role::Follower => 0,
        Role::PreCandidate => 1,
        Role::Candidate => 2,
        Role::Leader => 3,
    }
}

/// The core's `Stats` counters, `replog_core_<name>_total`, except `messages_ignored`,
/// which `replog_messages_ignored_total` splits by kind.
const STATS: [(&str, &str); 10] = [
    (
        "bad_persisted_ignored",
        "Persisted inputs for writes never issued or already durable",
    ),
    (
        "unsafe_truncations_refused",
        "AppendEntries refused for truncating committed or verified entries",
    ),
    (
        "bad_fetched_ignored",
        "Storage reads that answered no outstanding request",
    ),
    (
        "fetches_requested",
        "Batches read back from storage to catch a follower up",
    ),
    (
        "installs_sent",
        "Logs installed on followers behind this leader's retained log",
    ),
    (
        "installs_received",
        "Logs replaced here by a leader's install",
    ),
    ("pre_votes_started", "Pre-vote rounds started"),
    ("elections_started", "Elections started"),
    ("terms_led", "Terms in which this node became leader"),
    (
        "transfer_campaigns",
        "Campaigns started at once on a leader's TimeoutNow (leadership transfer)",
    ),
];

fn stats_values(stats: &Stats) -> [u64; 10] {
    [
        stats.bad_persisted_ignored,
        stats.unsafe_truncations_refused,
        stats.bad_fetched_ignored,
        stats.fetches_requested,
        stats.installs_sent,
        stats.installs_received,
        stats.pre_votes_started,
        stats.elections_started,
        stats.terms_led,
        stats.transfer_campaigns,
    ]
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabel {
    role: String,
}

/// The metrics the core thread publishes.
pub(super) struct CoreShared {
    /// One per role, in `ROLES` order: 1 for the current role, 0 for the others.
    roles: Vec<Gauge>,
    pub(super) term: Gauge,
    pub(super) leader: Gauge,
    leader_changes: Counter,
    commit_index: Gauge,
    applied_index: Gauge,
    last_index: Gauge,
    durable_index: Gauge,
    followers: Arc<Followers>,
    sent: Vec<Counter>,
    received: Vec<Counter>,
    ignored: Vec<Counter>,
    stats: Vec<Counter>,
    append_latency: Arc<Histogram>,
    peers: Vec<NodeId>,
    peer_reconnects: Vec<Counter>,
    peer_dropped_batches: Vec<Counter>,
}

impl CoreShared {
    pub(super) fn register(registry: &mut Registry, peers: &[NodeId]) -> CoreShared {
        let roles = Family::<RoleLabel, Gauge>::default();
        registry.register("role", "1 for the role this node has now", roles.clone());
        let followers = Arc::new(Followers::new(peers));
        registry.register(
            "follower_match_index",
            "On the leader: the highest index known to match each follower's log",
            Shared(Arc::new(FollowerView {
                followers: followers.clone(),
                lag: false,
            })),
        );
        registry.register(
            "follower_lag_entries",
            "On the leader: how many entries each follower's log is behind the leader's",
            Shared(Arc::new(FollowerView {
                followers: followers.clone(),
                lag: true,
            })),
        );
        let by_kind = |registry: &mut Registry, name: &str, help: &str| {
            let family = Family::<KindLabel, Counter>::default();
            registry.register(name, help, family.clone());
            KINDS
                .iter()
                .map(|kind| {
                    family
                        .get_or_create(&KindLabel {
                            kind: kind.to_string(),
                        })
                        .clone()
                })
                .collect::<Vec<_>>()
        };
        CoreShared {
            roles: ROLES
                .iter()
                .map(|role| {
                    roles
                        .get_or_create(&RoleLabel {
                            role: role.to_string(),
                        })
                        .clone()
                })
                .collect(),
            term: gauge(registry, "term", "The current Raft term"),
            leader: gauge(
                registry,
                "leader_id",
                "The id of the leader this node knows, 0 if none",
            ),
            leader_changes: counter(
                registry,
                "leader_changes",
                "Times this node learned of a new leader",
            ),
            commit_index: gauge(
                registry,
                "commit_index",
                "The highest index known committed",
            ),
            applied_index: gauge(
                registry,
                "applied_index",
                "The highest committed index handed to clients and storage",
            ),
            last_index: gauge(
                registry,
                "log_last_index",
                "The last index of this node's log (in memory, maybe not yet durable)",
            ),
            durable_index: gauge(
                registry,
                "durable_index",
                "The last index of this node's log that is durable",
            ),
            followers,
            sent: by_kind(registry, "messages_sent", "Raft messages sent, by kind"),
            received: by_kind(
                registry,
                "messages_received",
                "Raft messages received, by kind",
            ),
            ignored: by_kind(
                registry,
                "messages_ignored",
                "Raft messages received and ignored (stale, misaddressed or senseless), by kind",
            ),
            stats: STATS
                .iter()
                .map(|(name, help)| counter(registry, &format!("core_{name}"), help))
                .collect(),
            append_latency: histogram(
                registry,
                "append_latency",
                "From an append's acceptance by the leader to its commit",
                Some(Unit::Seconds),
                Histogram::new(LATENCY_BOUNDS_MICROS, 1e6),
            ),
            peers: peers.to_vec(),
            peer_reconnects: peer_counters(
                registry,
                "peer_reconnects",
                "Connections made to each peer after the first",
                peers,
            ),
            peer_dropped_batches: peer_counters(
                registry,
                "peer_dropped_batches",
                "Message batches dropped because a peer's queue was full",
                peers,
            ),
        }
    }
}

impl CoreShared {
    /// The role published last, as the `role` label spells it.
    pub(super) fn role_name(&self) -> &'static str {
        let current = self.roles.iter().position(|gauge| gauge.get() == 1);
        ROLES[current.unwrap_or(0)]
    }
}

/// Each follower's progress, as the leader last published it.
#[derive(Debug)]
struct Followers {
    leading: AtomicBool,
    peers: Vec<u64>,
    match_index: Vec<AtomicI64>,
    lag: Vec<AtomicI64>,
}

impl Followers {
    fn new(peers: &[NodeId]) -> Followers {
        Followers {
            leading: AtomicBool::new(false),
            peers: peers.iter().map(|peer| peer.0).collect(),
            match_index: peers.iter().map(|_| AtomicI64::new(0)).collect(),
            lag: peers.iter().map(|_| AtomicI64::new(0)).collect(),
        }
    }
}

/// One of the two follower metrics: present only while this node leads, since only a
/// leader knows its followers' logs.
#[derive(Debug)]
struct FollowerView {
    followers: Arc<Followers>,
    lag: bool,
}

impl EncodeMetric for FollowerView {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let followers = &self.followers;
        let values = if self.lag {
            &followers.lag
        } else {
            &followers.match_index
        };
        for (&peer, value) in followers.peers.iter().zip(values) {
            encoder
                .encode_family(&PeerLabel { peer })?
                .encode_gauge(&value.load(Ordering::Relaxed))?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }

    fn is_empty(&self) -> bool {
        !self.followers.leading.load(Ordering::Relaxed)
    }
}

/// The core thread's counts, in plain fields, published once per tick.
#[derive(Default)]
pub struct CoreMetrics {
    /// Where to publish; none without `--metrics-addr`.
    target: Option<Metrics>,
    sent: [u64; KINDS.len()],
    received: [u64; KINDS.len()],
    ignored: [u64; KINDS.len()],
    /// `Stats::messages_ignored` when last looked at.
    ignored_seen: u64,
    leader_changes: u64,
    last_leader: Option<NodeId>,
    append_latency: Option<LocalHistogram>,
}

impl CoreMetrics {
    pub(super) fn publishing(target: Metrics) -> CoreMetrics {
        CoreMetrics {
            target: Some(target),
            append_latency: Some(LocalHistogram::new(LATENCY_BOUNDS_MICROS)),
            ..CoreMetrics::default()
        }
    }

    pub fn sent(&mut self, message: &Message) {
        self.sent[MessageKind::of(message).0] += 1;
    }

    /// A message of `kind` was just stepped; `stats` tells whether the core ignored it.
    pub fn received(&mut self, kind: MessageKind, stats: &Stats) {
        self.received[kind.0] += 1;
        let ignored = stats.messages_ignored - self.ignored_seen;
        self.ignored[kind.0] += ignored;
        self.ignored_seen = stats.messages_ignored;
    }

    pub fn role_changed(&mut self, leader: Option<NodeId>) {
        if leader.is_some() && leader != self.last_leader {
            self.leader_changes += 1;
            self.last_leader = leader;
        }
    }

    /// Where appends' commit latencies go (microseconds); none when not published.
    pub fn append_latency(&mut self) -> Option<&mut LocalHistogram> {
        self.append_latency.as_mut()
    }

    /// Publishes everything, if anyone is listening.
    pub fn publish(&self, core: &RaftCore, peers: &Peers) {
        let Some(target) = &self.target else {
            return;
        };
        let shared = &target.inner.core;
        let role = role_index(core.role());
        for (index, gauge) in shared.roles.iter().enumerate() {
            gauge.set(i64::from(index == role));
        }
        let as_gauge = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        shared.term.set(as_gauge(core.term().0));
        shared
            .leader
            .set(as_gauge(core.leader().map_or(0, |leader| leader.0)));
        set_total(&shared.leader_changes, self.leader_changes);
        shared.commit_index.set(as_gauge(core.commit_index().0));
        shared.applied_index.set(as_gauge(core.applied_index().0));
        let last_index = core.log().last_index();
        shared.last_index.set(as_gauge(last_index.0));
        shared.durable_index.set(as_gauge(core.durable_index().0));
        let followers = &shared.followers;
        for (position, &peer) in shared.peers.iter().enumerate() {
            if let Some(matched) = core.match_index(peer) {
                followers.match_index[position].store(as_gauge(matched.0), Ordering::Relaxed);
                let lag = last_index.0.saturating_sub(matched.0);
                followers.lag[position].store(as_gauge(lag), Ordering::Relaxed);
            }
            if let Some(sender) = peers.get(peer) {
                let (connects, dropped) = sender.link_counts();
                set_total(
                    &shared.peer_reconnects[position],
                    connects.saturating_sub(1),
                );
                set_total(&shared.peer_dropped_batches[position], dropped);
            }
        }
        followers
            .leading
            .store(core.role() == Role::Leader, Ordering::Relaxed);
        for (counters, counts) in [
            (&shared.sent, &self.sent),
            (&shared.received, &self.received),
            (&shared.ignored, &self.ignored),
        ] {
            for (counter, &count) in counters.iter().zip(counts) {
                set_total(counter, count);
            }
        }
        for (counter, value) in shared.stats.iter().zip(stats_values(core.stats())) {
            set_total(counter, value);
        }
        if let Some(latency) = &self.append_latency {
            shared.append_latency.publish(latency);
        }
        target.inner.health.core_published();
    }
}
