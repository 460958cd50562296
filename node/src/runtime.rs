//! The core thread: the one thread that owns the [`RaftCore`].
//!
//! It waits on four channels at once (the tick timer, peer messages, client requests and
//! storage completions, plus a control channel for shutdown) and never blocks on I/O:
//! writes go to the storage thread, messages to per-peer sender threads, answers to the
//! clients' writer threads, all through queues.
//!
//! Each wake-up drains everything that is ready, then flushes once, which is where the
//! batching comes from:
//! - every `Persist` of the iteration goes to storage as one job (and storage merges the
//!   jobs queued during its last fsync: group commit);
//! - every client append that arrived becomes one `Propose`, one log write, one
//!   AppendEntries per follower;
//! - every message for a peer goes to its sender thread as one batch, one frame.

use crate::client::{ClientRequest, EntryView, NodeState, ReplyTo, Request, Response};
use crate::config::{Members, Timing};
use crate::pending::PendingAppends;
use crate::storage_thread::{StorageEvent, StorageJob};
use crate::transport::PeerSender;
use crate::{error, info};
use crossbeam_channel::{Receiver, Select, Sender, TryRecvError};
use replog_core::{
    Index, Input, Message, NodeId, Output, ProposalOutcome, RaftCore, Role, Term, Write,
};
use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

/// Requests to the core thread from outside the protocol.
pub enum Control {
    /// Stop cleanly; the text says why, for the log.
    Shutdown(String),
}

/// Why the core thread stopped.
pub enum Stopped {
    /// Asked to, through the control channel.
    Shutdown,
    /// Storage failed; the node must not go on.
    StorageFailed(String),
}

/// The channels the core thread waits on.
pub struct Inputs {
    pub ticks: Receiver<Instant>,
    pub peers: Receiver<Vec<Message>>,
    pub clients: Receiver<ClientRequest>,
    pub storage: Receiver<StorageEvent>,
    pub control: Receiver<Control>,
}

/// A `query` or `status` held back until the appends accepted before it are answered, so
/// that a client that pipelines an append and then a query sees its append committed.
struct DeferredRead {
    /// Answer once no append at or below this index is still waiting.
    barrier: Index,
    with_entries: bool,
    reply: ReplyTo,
}

/// The most client requests taken in one iteration, so that a flood of them cannot starve
/// ticks and peer messages.
const MAX_CLIENT_REQUESTS_PER_ITERATION: usize = 16 * 1024;
/// The same for batches of peer messages.
const MAX_PEER_BATCHES_PER_ITERATION: usize = 1024;

/// The core and everything it hands work to.
pub struct Runtime {
    core: RaftCore,
    members: Members,
    timing: Timing,
    campaign_at_start: bool,
    outputs: Vec<Output>,
    senders: BTreeMap<NodeId, PeerSender>,
    /// Messages produced this iteration, per peer, sent at its end.
    outbox: BTreeMap<NodeId, Vec<Message>>,
    /// Writes produced this iteration, sent to storage at its end.
    writes: Vec<Write>,
    storage_jobs: Sender<StorageJob>,
    /// The commit hint last sent to storage. Invariant: `<= core.applied_index()`.
    hint_sent: Index,
    pending: PendingAppends,
    /// Reads that arrived while appends were waiting, answered once those are answered.
    /// Invariant: barriers never decrease along the queue.
    deferred_reads: VecDeque<DeferredRead>,
    /// The outcome of the `Propose` just stepped.
    proposal: Option<ProposalOutcome>,
}

impl Runtime {
    pub fn new(
        core: RaftCore,
        members: Members,
        timing: Timing,
        campaign_at_start: bool,
        senders: BTreeMap<NodeId, PeerSender>,
        storage_jobs: Sender<StorageJob>,
    ) -> Runtime {
        let hint_sent = core.applied_index();
        Runtime {
            core,
            members,
            timing,
            campaign_at_start,
            outputs: Vec::new(),
            outbox: senders.keys().map(|&peer| (peer, Vec::new())).collect(),
            senders,
            writes: Vec::new(),
            storage_jobs,
            hint_sent,
            pending: PendingAppends::default(),
            deferred_reads: VecDeque::new(),
            proposal: None,
        }
    }

    /// Runs until told to stop or until storage fails.
    pub fn run(mut self, inputs: Inputs) -> Stopped {
        if self.campaign_at_start {
            self.campaign_now();
        }
        let mut select = Select::new();
        select.recv(&inputs.control);
        select.recv(&inputs.storage);
        select.recv(&inputs.peers);
        select.recv(&inputs.clients);
        select.recv(&inputs.ticks);
        loop {
            select.ready();
            if let Ok(Control::Shutdown(reason)) = inputs.control.try_recv() {
                info!("shutting down: {reason}");
                self.pending.abandon(&Response::Timeout);
                return Stopped::Shutdown;
            }
            if let Some(problem) = self.take_storage_events(&inputs.storage) {
                error!("storage failed, stopping the node: {problem}");
                return Stopped::StorageFailed(problem);
            }
            for batch in inputs.peers.try_iter().take(MAX_PEER_BATCHES_PER_ITERATION) {
                for message in batch {
                    self.step(Input::Receive(message));
                }
            }
            let requests = inputs
                .clients
                .try_iter()
                .take(MAX_CLIENT_REQUESTS_PER_ITERATION);
            self.handle_clients(requests);
            if inputs.ticks.try_recv().is_ok() {
                self.step(Input::Tick);
                self.pending.expire(Instant::now());
            }
            self.answer_deferred_reads();
            self.flush();
        }
    }

    /// `--leader`: let a whole election timeout pass at once, so this node campaigns now
    /// rather than after a random wait. Leadership still needs a majority's votes.
    fn campaign_now(&mut self) {
        info!("--leader given: campaigning at once");
        for _ in 0..self.core.config().election_timeout_ticks_max {
            self.step(Input::Tick);
            if self.core.role() != Role::Follower {
                break;
            }
        }
        self.flush();
    }

    /// Feeds storage completions to the core. Returns the failure, if storage failed.
    fn take_storage_events(&mut self, events: &Receiver<StorageEvent>) -> Option<String> {
        let mut persisted = None;
        loop {
            match events.try_recv() {
                Ok(StorageEvent::Persisted(id)) => persisted = Some(id),
                Ok(StorageEvent::Failed(problem)) => return Some(problem),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    return Some("the storage thread stopped unexpectedly".into())
                }
            }
        }
        if let Some(write_id) = persisted {
            self.step(Input::Persisted { write_id });
        }
        None
    }

    /// Turns every append among `requests` into one proposal, then answers reads, so that
    /// a read sees the state after the appends that came with it.
    fn handle_clients(&mut self, requests: impl Iterator<Item = ClientRequest>) {
        let mut commands = Vec::new();
        let mut waiters = Vec::new();
        let mut reads: Vec<(bool, ReplyTo)> = Vec::new();
        for ClientRequest { request, reply } in requests {
            match request {
                Request::Append { command } => {
                    commands.push(command);
                    waiters.push(reply);
                }
                Request::Query => reads.push((true, reply)),
                Request::Status => reads.push((false, reply)),
            }
        }
        if !commands.is_empty() {
            self.propose(commands, waiters);
        }
        for (with_entries, reply) in reads {
            match self.pending.last_waiting() {
                Some(barrier) => self.deferred_reads.push_back(DeferredRead {
                    barrier,
                    with_entries,
                    reply,
                }),
                None => reply.send(Response::State(self.state(with_entries))),
            }
        }
    }

    /// Answers the deferred reads whose appends have all been answered.
    fn answer_deferred_reads(&mut self) {
        while let Some(read) = self.deferred_reads.front() {
            if self
                .pending
                .first_waiting()
                .is_some_and(|first| first <= read.barrier)
            {
                return;
            }
            let read = self.deferred_reads.pop_front().expect("checked non-empty");
            read.reply
                .send(Response::State(self.state(read.with_entries)));
        }
    }

    fn propose(&mut self, commands: Vec<String>, waiters: Vec<ReplyTo>) {
        self.step(Input::Propose(commands));
        let outcome = self
            .proposal
            .take()
            .expect("the core answers every proposal in the same step");
        match outcome {
            ProposalOutcome::Accepted {
                first_index,
                count,
                term,
            } => {
                assert_eq!(count, waiters.len() as u64, "one index per command");
                let deadline = Instant::now() + self.timing.append_timeout;
                let overwritten = self.not_leader();
                self.pending
                    .accepted(first_index, term, waiters, deadline, &overwritten);
            }
            ProposalOutcome::NotLeader { leader } => {
                let leader = leader.and_then(|id| self.members.addr_of(id).map(str::to_string));
                let answer = Response::NotLeader { leader };
                for waiter in waiters {
                    waiter.send(answer.clone());
                }
            }
        }
    }

    fn step(&mut self, input: Input) {
        let mut outputs = std::mem::take(&mut self.outputs);
        self.core.step(input, &mut outputs);
        self.core.check_invariants();
        for output in outputs.drain(..) {
            self.handle_output(output);
        }
        self.outputs = outputs;
    }

    fn handle_output(&mut self, output: Output) {
        match output {
            Output::Persist(write) => self.writes.push(write),
            Output::Send(message) => match self.outbox.get_mut(&message.to) {
                Some(batch) => batch.push(message),
                None => unreachable!("the core sends only to voters, got {message:?}"),
            },
            Output::Commit(entries) => {
                if !self.pending.is_empty() {
                    let overwritten = self.not_leader();
                    self.pending.committed(&entries, &overwritten);
                }
            }
            Output::Proposal(outcome) => {
                let previous = self.proposal.replace(outcome);
                assert!(previous.is_none(), "two proposal outcomes in one step");
            }
            Output::RoleChanged { role, term, leader } => self.log_role(role, term, leader),
        }
    }

    /// Sends this iteration's writes to storage and messages to peers.
    fn flush(&mut self) {
        let hint = self.core.applied_index();
        if !self.writes.is_empty() || hint > self.hint_sent {
            let job = StorageJob {
                writes: std::mem::take(&mut self.writes),
                commit_hint: hint,
            };
            // If the storage thread has stopped, its failure is already queued for us.
            let _ = self.storage_jobs.send(job);
            self.hint_sent = hint;
        }
        for (peer, batch) in &mut self.outbox {
            if !batch.is_empty() {
                let sender = self.senders.get_mut(peer).expect("a sender per peer");
                sender.send(std::mem::take(batch));
            }
        }
    }

    fn leader_addr(&self) -> Option<String> {
        let leader = self.core.leader()?;
        self.members.addr_of(leader).map(str::to_string)
    }

    /// The answer for an append this node cannot (or can no longer) commit.
    fn not_leader(&self) -> Response {
        Response::NotLeader {
            leader: self.leader_addr(),
        }
    }

    fn state(&self, with_entries: bool) -> NodeState {
        let commit_index = self.core.commit_index();
        let log = self.core.log();
        let entries = with_entries.then(|| {
            log.entries()
                .iter()
                .map(|entry| EntryView {
                    index: entry.index.0,
                    term: entry.term.0,
                    command: match &entry.payload {
                        replog_core::Payload::Command(command) => Some(command.clone()),
                        replog_core::Payload::Noop => None,
                    },
                    committed: entry.index <= commit_index,
                })
                .collect()
        });
        NodeState {
            node: self.core.id().0,
            role: self.core.role().into(),
            term: self.core.term().0,
            leader: self.leader_addr(),
            commit_index: commit_index.0,
            last_index: log.last_index().0,
            entries,
        }
    }

    fn log_role(&self, role: Role, term: Term, leader: Option<NodeId>) {
        match (role, leader) {
            (Role::Leader, _) => info!(
                "became leader in term {} (log ends at {}, commit index {})",
                term.0,
                self.core.log().last_index().0,
                self.core.commit_index().0
            ),
            (Role::Follower, Some(leader)) => info!(
                "following leader {} at {} in term {}",
                leader,
                self.members.addr_of(leader).unwrap_or("?"),
                term.0
            ),
            (Role::Follower, None) => info!("follower in term {}, no leader known", term.0),
            (Role::PreCandidate, _) => info!(
                "no leader heard: asking for pre-votes for term {}",
                term.0 + 1
            ),
            (Role::Candidate, _) => info!("election: campaigning in term {}", term.0),
        }
    }
}
