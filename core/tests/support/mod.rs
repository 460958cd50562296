//! A tiny in-test cluster: real `RaftCore`s, a message pool the test delivers by hand,
//! and per-node "disks" that only change when the test says a write completed.
#![allow(dead_code)]

use replog_core::{
    take_batch, Config, Entry, EntryId, FetchRequest, Fetched, HardState, Index, Input,
    MembershipChange, MembershipHistory, Message, NodeId, Output, Payload, ProposalOutcome,
    RaftCore, ReadId, Recovered, Role, SessionsCheckpoint, Term, TransferOutcome, Write,
};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// What survives a crash: exactly what completed writes put there.
#[derive(Clone, Debug, Default)]
pub struct Disk {
    pub hard_state: HardState,
    pub entries: Vec<Entry>,
    /// The newest session checkpoint written.
    pub sessions: Option<SessionsCheckpoint>,
    /// The applied configurations.
    pub memberships: MembershipHistory,
}

impl Disk {
    pub fn apply(&mut self, write: &Write) {
        if let Some(hard_state) = write.hard_state {
            self.hard_state = hard_state;
        }
        if let Some(after) = write.truncate_after {
            self.entries.truncate(after.0 as usize);
        }
        self.entries.extend(write.entries.iter().cloned());
        if let Some(sessions) = &write.sessions {
            if self
                .sessions
                .as_ref()
                .is_none_or(|s| s.through < sessions.through)
            {
                self.sessions = Some(sessions.clone());
            }
        }
        for applied in &write.memberships {
            self.memberships.record(applied.clone());
        }
    }

    /// Reads entries back for a catch-up, as a driver's storage does.
    pub fn fetch(&self, request: &FetchRequest) -> Fetched {
        let prev_index = request.from.prev();
        let prev = match prev_index.0 {
            0 => EntryId::ZERO,
            k => self.entries[k as usize - 1].id(),
        };
        let start = prev_index.0 as usize;
        let batch = take_batch(
            &self.entries[start..],
            request.max_entries,
            request.max_bytes,
        );
        Fetched {
            peer: request.peer,
            prev,
            entries: batch.to_vec(),
        }
    }
}

pub struct TestNode {
    pub core: RaftCore,
    pub disk: Disk,
    /// Writes handed out and not yet completed, oldest first.
    pub pending: Vec<Write>,
    pub committed: Vec<Entry>,
    pub proposals: Vec<ProposalOutcome>,
    /// Answers to reads, in order: the index it may be served at, or the failure's leader.
    pub reads: Vec<(ReadId, Result<Index, Option<NodeId>>)>,
    /// Answers to transfers, in order, and `Err(to)` for each transfer given up.
    pub transfers: Vec<Result<TransferOutcome, NodeId>>,
    pub crashed: bool,
}

pub struct Cluster {
    pub nodes: BTreeMap<NodeId, TestNode>,
    /// Messages sent and not yet delivered, in send order.
    pub network: Vec<Message>,
    /// Ordered pairs (from, to) whose messages are dropped.
    pub cut: BTreeSet<(NodeId, NodeId)>,
    /// Complete every write as soon as it is issued.
    pub auto_persist: bool,
    pub transcript: Vec<String>,
}

pub fn config(id: u64, size: u64) -> Config {
    let mut config = Config::new(NodeId(id), (1..=size).map(NodeId).collect());
    config.rng_seed = 7;
    config
}

impl Cluster {
    pub fn new(size: u64) -> Cluster {
        Cluster::with_config(size, |_| {})
    }

    pub fn with_config(size: u64, tweak: impl Fn(&mut Config)) -> Cluster {
        let mut nodes = BTreeMap::new();
        for id in 1..=size {
            let mut config = config(id, size);
            tweak(&mut config);
            let core = RaftCore::new(config, Recovered::default()).expect("valid config");
            nodes.insert(
                NodeId(id),
                TestNode {
                    core,
                    disk: Disk::default(),
                    pending: Vec::new(),
                    committed: Vec::new(),
                    proposals: Vec::new(),
                    reads: Vec::new(),
                    transfers: Vec::new(),
                    crashed: false,
                },
            );
        }
        Cluster {
            nodes,
            network: Vec::new(),
            cut: BTreeSet::new(),
            auto_persist: true,
            transcript: Vec::new(),
        }
    }

    /// Adds a fresh, empty node `id` that knows only the cluster's bootstrap voters
    /// (`1..=bootstrap`): what a joining node starts from.
    pub fn add_node(&mut self, id: u64, bootstrap: u64) {
        let core = RaftCore::new(config(id, bootstrap), Recovered::default()).expect("valid");
        let node = TestNode {
            core,
            disk: Disk::default(),
            pending: Vec::new(),
            committed: Vec::new(),
            proposals: Vec::new(),
            reads: Vec::new(),
            transfers: Vec::new(),
            crashed: false,
        };
        assert!(
            self.nodes.insert(NodeId(id), node).is_none(),
            "n{id} exists"
        );
    }

    /// Asks `id` for a configuration change and returns its answer.
    pub fn change(&mut self, id: u64, change: MembershipChange) -> ProposalOutcome {
        self.step(id, Input::ChangeMembership(change));
        self.node(id)
            .proposals
            .last()
            .cloned()
            .expect("one outcome per proposal")
    }

    pub fn node(&self, id: u64) -> &TestNode {
        &self.nodes[&NodeId(id)]
    }

    pub fn core(&self, id: u64) -> &RaftCore {
        &self.node(id).core
    }

    /// Steps node `id` with `input` and routes its outputs.
    pub fn step(&mut self, id: u64, input: Input) -> Vec<Output> {
        let node = self.nodes.get_mut(&NodeId(id)).expect("known node");
        if node.crashed {
            return Vec::new();
        }
        let mut outputs = Vec::new();
        node.core.step(input, &mut outputs);
        node.core.check_invariants();
        let mut fetched = Vec::new();
        for output in &outputs {
            match output {
                Output::Fetch(request) => fetched.push(node.disk.fetch(request)),
                Output::Persist(write) => node.pending.push(write.clone()),
                Output::Send(message) => self.network.push(message.clone()),
                Output::Commit(entries) => {
                    if let Some(last) = node.committed.last() {
                        assert_eq!(
                            entries[0].index,
                            last.index.next(),
                            "commits not contiguous"
                        );
                    }
                    node.committed.extend(entries.iter().cloned());
                }
                Output::Proposal(outcome) => node.proposals.push(outcome.clone()),
                Output::ReadReady { reads, index } => {
                    assert!(
                        node.core.applied_index() >= *index,
                        "read released before its index was applied"
                    );
                    node.reads.extend(reads.iter().map(|&id| (id, Ok(*index))));
                }
                Output::ReadFailed { reads, leader } => {
                    node.reads
                        .extend(reads.iter().map(|&id| (id, Err(*leader))));
                }
                Output::MembershipChanged(in_force) => self.transcript.push(format!(
                    "n{id}: configuration of entry {}: {}",
                    in_force.index.0, in_force.membership
                )),
                Output::Transfer(outcome) => node.transfers.push(Ok(*outcome)),
                Output::TransferAborted { to } => node.transfers.push(Err(*to)),
                Output::RoleChanged { role, term, leader } => self.transcript.push(format!(
                    "n{id}: {role} in term {} (leader {})",
                    term.0,
                    leader.map_or("none".to_string(), |l| l.to_string())
                )),
            }
        }
        if self.auto_persist {
            self.persist(id);
        }
        for answer in fetched {
            self.step(id, Input::Fetched(answer));
        }
        outputs
    }

    /// Completes every pending write of node `id` and reports it durable.
    pub fn persist(&mut self, id: u64) {
        let node = self.nodes.get_mut(&NodeId(id)).expect("known node");
        if node.pending.is_empty() || node.crashed {
            return;
        }
        let writes = std::mem::take(&mut node.pending);
        for write in &writes {
            node.disk.apply(write);
        }
        let last = writes.last().expect("non-empty").id;
        self.step(id, Input::Persisted { write_id: last });
    }

    pub fn tick(&mut self, id: u64, ticks: u64) {
        for _ in 0..ticks {
            self.step(id, Input::Tick);
        }
    }

    /// Ticks `id` until it starts a campaign (or becomes leader in a one-node cluster).
    pub fn campaign(&mut self, id: u64) {
        for _ in 0..1000 {
            let role = self.core(id).role();
            if role != Role::Follower && role != Role::Leader {
                return;
            }
            if role == Role::Leader {
                return;
            }
            self.step(id, Input::Tick);
        }
        panic!("n{id} never campaigned");
    }

    /// Makes `id` leader: it campaigns and every message is delivered.
    pub fn elect(&mut self, id: u64) {
        self.campaign(id);
        self.deliver_all();
        assert_eq!(self.core(id).role(), Role::Leader, "n{id} failed to win");
    }

    /// Delivers one message, unless its link is cut or its target crashed.
    pub fn deliver(&mut self, message: Message) {
        if self.cut.contains(&(message.from, message.to)) {
            return;
        }
        self.step(message.to.0, Input::Receive(message));
    }

    /// Delivers messages until none are left (new ones included).
    pub fn deliver_all(&mut self) {
        for _ in 0..100_000 {
            if self.network.is_empty() {
                return;
            }
            let batch = std::mem::take(&mut self.network);
            for message in batch {
                self.deliver(message);
            }
        }
        panic!("messages never quiesced");
    }

    pub fn drop_all(&mut self) {
        self.network.clear();
    }

    pub fn propose(&mut self, id: u64, commands: &[&str]) -> ProposalOutcome {
        let commands = commands.iter().map(|c| c.to_string()).collect();
        self.step(id, Input::Propose(commands));
        self.node(id)
            .proposals
            .last()
            .cloned()
            .expect("one outcome per proposal")
    }

    /// Cuts both directions between `id` and every other node.
    pub fn isolate(&mut self, id: u64) {
        let others: Vec<NodeId> = self
            .nodes
            .keys()
            .copied()
            .filter(|&n| n != NodeId(id))
            .collect();
        for other in others {
            self.cut.insert((NodeId(id), other));
            self.cut.insert((other, NodeId(id)));
        }
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Loses everything not durable and rebuilds the node from its disk.
    pub fn crash_and_restart(&mut self, id: u64) {
        let node = self.nodes.get_mut(&NodeId(id)).expect("known node");
        let config = node.core.config().clone();
        // The driver's record of what it applied: committed entries are durable and never
        // truncated, so recovery refuses this if the core ever broke that promise.
        let recovered = Recovered {
            membership: node.disk.memberships.newest().cloned(),
            hard_state: node.disk.hard_state,
            prev: EntryId::ZERO,
            entries: node.disk.entries.clone(),
            commit_index: Index(node.committed.len() as u64),
            // Only sound while the checkpoint written with the first session entry is
            // durable whenever that entry counts as committed here: tests that crash with
            // writes pending use no sessions.
            sessions: node.disk.sessions.clone(),
        };
        node.pending.clear();
        node.core = RaftCore::new(config, recovered).expect("recovers from its own disk");
        node.core.check_invariants();
    }

    pub fn leaders(&self) -> Vec<(u64, Term)> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.core.role() == Role::Leader)
            .map(|(id, n)| (id.0, n.core.term()))
            .collect()
    }

    /// A readable picture of the cluster, for snapshots.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for (id, node) in &self.nodes {
            let core = &node.core;
            let log: Vec<String> = core
                .log()
                .held()
                .iter()
                .map(|e| match &e.payload {
                    Payload::Noop => format!("{}:noop", e.term.0),
                    Payload::Command(c) => format!("{}:{}", e.term.0, c),
                    Payload::Trim { before } => format!("{}:trim<{}", e.term.0, before.0),
                    Payload::Session {
                        client,
                        seq,
                        command,
                    } => format!("{}:{}#{}:{}", e.term.0, client, seq, command),
                    Payload::Config(membership) => format!("{}:config({membership})", e.term.0),
                })
                .collect();
            let _ = writeln!(
                out,
                "{id}: {role} term={term} vote={vote} leader={leader} commit={commit} log=[{log}]",
                role = core.role(),
                term = core.term().0,
                vote = core.voted_for().map_or("-".into(), |v| v.to_string()),
                leader = core.leader().map_or("-".into(), |l| l.to_string()),
                commit = core.commit_index().0,
                log = log.join(" "),
            );
        }
        out
    }
}
