//! The core thread: the one thread that owns the [`RaftCore`].
//!
//! It sleeps in one poll until a peer's bytes arrive, its queue gets an event (client
//! requests, storage completions, new peer connections and a shutdown request all arrive
//! there) or the next tick is due, and never blocks on I/O: it reads peer connections
//! without blocking (see `transport::receiver`),
//! writes go to the storage thread, answers to the client front end, both through
//! queues; messages go straight onto the peers' sockets, without blocking (see
//! `transport::sender`).
//!
//! Each wake-up drains everything that is ready, then flushes once, which is where the
//! batching comes from:
//! - every `Persist` of the iteration goes to storage as one job (and storage merges the
//!   jobs queued during its last fsync: group commit);
//! - every client append that arrived becomes one `Propose`, one log write, one
//!   AppendEntries per follower;
//! - every message for a peer goes out as one batch, one frame, one `write`;
//! - every answer goes to the client front end in one batch, with one wake-up.

use crate::client::answers::Phase;
use crate::client::protocol::READ_MAX_BYTES;
use crate::client::{
    Answer, AnswerSink, ClientRequest, ClusterView, ConfigurationView, Consistency, EntryView,
    FounderView, LogEntry, MemberView, NodeState, QueryRange, ReadPage, ReplyTo, Request, Response,
};
use crate::config::{Members, Timing};
use crate::identity::Roster;
use crate::membership::{self, MemberRequest};
use crate::metrics::core::MessageKind;
use crate::metrics::CoreMetrics;
use crate::pending::PendingAppends;
use crate::queue::{PolledReceiver, QueueSender};
use crate::reader::{Progress, ReaderJob, ReaderJobs};
use crate::retention::Retention;
use crate::storage_thread::{StorageEvent, StorageJob};
use crate::transfer::{self, Transfers};
use crate::transport::receiver::PeerConnection;
use crate::transport::{PeerInbox, Peers};
use replog_core::{
    FetchRequest, Index, Input, MembershipCheckpoint, Message, NodeId, Output, Payload,
    ProposalOutcome, RaftCore, ReadId, ReadMode, Role, Term, TransferOutcome, Write,
};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, error, info};

/// Requests to the core thread from outside the protocol.
pub enum Control {
    /// Stop cleanly; the text says why, for the log.
    Shutdown(String),
    /// The client front end, once told the node is stopping, sends no more requests.
    ClientsStopped,
}

/// How long a stopping core thread waits for the front end's last requests.
const CLIENTS_STOP_WAIT: Duration = Duration::from_secs(1);

/// Why the core thread stopped.
pub enum Stopped {
    /// Asked to, through the control channel.
    Shutdown,
    /// Storage failed; the node must not go on.
    StorageFailed(String),
}

/// Everything the core thread hears about, through its one queue.
pub enum CoreEvent {
    /// A peer connection whose hello checked out, for the core thread to read.
    PeerConnected(PeerConnection),
    /// Client requests, in the order they arrived on each connection.
    Clients(Vec<ClientRequest>),
    Storage(StorageEvent),
    Control(Control),
}

/// Why the core thread's loop must end.
enum Stop {
    Shutdown(String),
    StorageFailed(String),
}

/// What the core thread waits on besides the tick timer: its queue and peer connections.
pub struct Inputs {
    /// Its sender wakes `inbox`'s poll.
    pub events: PolledReceiver<CoreEvent>,
    pub inbox: PeerInbox,
}

/// The requests that read the node's state or log.
#[derive(Clone, Copy)]
enum ReadKind {
    Status,
    Query(QueryRange),
    Read { from: Index, limit: usize },
}

/// A read held back until the appends accepted before it are answered, so that a client
/// that pipelines an append and then a query (or `read`) sees its append committed.
struct DeferredRead {
    /// Answer once no append at or below this index is still waiting.
    barrier: Index,
    kind: ReadKind,
    consistency: Consistency,
    reply: ReplyTo,
}

/// The threads the core thread hands work to.
pub struct Workers {
    pub storage_jobs: QueueSender<StorageJob>,
    pub reader_jobs: ReaderJobs,
    /// Where the core thread publishes its applied index for the reader thread.
    pub progress: Progress,
}

/// The core and everything it hands work to.
pub struct Runtime {
    core: RaftCore,
    timing: Timing,
    campaign_at_start: bool,
    outputs: Vec<Output>,
    /// A sender per peer: the configuration in force's members, and whoever else the
    /// core answers (`transport::peers`).
    peers: Peers,
    /// Messages produced this iteration, per peer, sent at its end. Entries stay once
    /// made (a handful of peers), to keep their allocations.
    outbox: BTreeMap<NodeId, Vec<Message>>,
    /// Writes produced this iteration, sent to storage at its end.
    writes: Vec<Write>,
    /// Catch-up reads the core asked for this iteration, sent to storage at its end.
    fetches: Vec<FetchRequest>,
    /// The highest retention point committed this iteration, for storage.
    trim_before: Option<Index>,
    /// `--retain-entries`/`--retain-bytes`: when this node, as leader, proposes trim points.
    retention: Option<Retention>,
    storage_jobs: QueueSender<StorageJob>,
    /// `read`s and `query`s go to the reader thread, which reads the log from storage.
    reader_jobs: ReaderJobs,
    /// Where the applied index is published for the reader thread.
    progress: Progress,
    /// The (applied, commit) indexes last published to the reader thread.
    published: (Index, Index),
    /// The commit hint last sent to storage. Invariant: `<= core.applied_index()`.
    hint_sent: Index,
    pending: PendingAppends,
    /// Retries of appends at most once that wait for their original entry, which sits
    /// anywhere in the log, not after the newest proposal (`pending`'s order).
    retries: PendingAppends,
    /// Reads that arrived while appends were waiting, answered once those are answered.
    /// Invariant: barriers never decrease along the queue.
    deferred_reads: VecDeque<DeferredRead>,
    /// Linearizable and lease reads the core is confirming (`Input::Read`), answered from
    /// storage once it says `ReadReady`.
    confirming: BTreeMap<ReadId, (ReadKind, ReplyTo)>,
    /// The id the next such read gets.
    next_read_id: u64,
    /// The outcome of the `Propose` just stepped.
    proposal: Option<ProposalOutcome>,
    /// The outcome of the `Transfer` just stepped.
    transfer: Option<TransferOutcome>,
    /// Clients waiting for a leadership transfer to settle.
    transfers: Transfers,
    /// Answers produced this iteration, handed to the client front end at its end.
    answers: Vec<Answer>,
    answer_sink: AnswerSink,
    /// Counted here, published once per tick (`--metrics-addr`).
    metrics: CoreMetrics,
    /// The address book: who may connect as whom (the handshake's), and every member's
    /// name and address as hellos and configuration entries teach them.
    roster: Arc<Roster>,
}

impl Runtime {
    pub fn new(
        core: RaftCore,
        roster: Arc<Roster>,
        timing: Timing,
        campaign_at_start: bool,
        peers: Peers,
        workers: Workers,
        answer_sink: AnswerSink,
    ) -> Runtime {
        let Workers {
            storage_jobs,
            reader_jobs,
            progress,
        } = workers;
        let hint_sent = core.applied_index();
        Runtime {
            core,
            timing,
            campaign_at_start,
            outputs: Vec::new(),
            outbox: BTreeMap::new(),
            peers,
            writes: Vec::new(),
            fetches: Vec::new(),
            trim_before: None,
            retention: None,
            storage_jobs,
            reader_jobs,
            progress,
            published: (Index::ZERO, Index::ZERO),
            hint_sent,
            pending: PendingAppends::default(),
            retries: PendingAppends::default(),
            deferred_reads: VecDeque::new(),
            confirming: BTreeMap::new(),
            next_read_id: 1,
            proposal: None,
            transfer: None,
            transfers: Transfers::default(),
            answers: Vec::new(),
            answer_sink,
            metrics: CoreMetrics::default(),
            roster,
        }
    }

    /// Publishes the core thread's metrics there.
    pub fn with_metrics(mut self, metrics: CoreMetrics) -> Runtime {
        self.metrics = metrics;
        self
    }

    /// With a limit, proposes trim points as leader: so that about `keep_entries` entries
    /// remain, or at the points storage names for `--retain-bytes` (`by_bytes`).
    pub fn with_retention(mut self, keep_entries: Option<u64>, by_bytes: bool) -> Runtime {
        if keep_entries.is_some() || by_bytes {
            self.retention = Some(Retention::new(keep_entries));
        }
        self
    }

    /// Runs until told to stop or until storage fails.
    pub fn run(mut self, mut inputs: Inputs) -> Stopped {
        let in_force = self.core.membership().clone();
        self.follow_membership(&in_force);
        if self.campaign_at_start {
            self.campaign_now();
        }
        let mut events = Vec::new();
        let mut requests = Vec::new();
        let mut messages = Vec::new();
        let tick = self.timing.tick;
        let mut next_tick = Instant::now() + tick;
        loop {
            self.wait(&mut inputs, next_tick, &mut events, &mut messages);
            if self.core.config().read_lease {
                // A lease is measured in ticks: after a stall (a stop signal, a slow
                // disk, the scheduler) the ticks it missed come first, before any request
                // that waited meanwhile, so that an expired lease is seen as expired.
                let now = Instant::now();
                while now >= next_tick + tick {
                    self.step(Input::Tick);
                    next_tick += tick;
                }
            }
            let stop =
                self.handle_events(&mut events, &mut messages, &mut requests, &mut inputs.inbox);
            match stop {
                Some(Stop::Shutdown(reason)) => {
                    info!("shutting down: {reason}");
                    self.stop(&mut inputs, std::mem::take(&mut requests));
                    return Stopped::Shutdown;
                }
                Some(Stop::StorageFailed(problem)) => return Stopped::StorageFailed(problem),
                None => {}
            }
            let now = Instant::now();
            if now >= next_tick {
                self.step(Input::Tick);
                self.retain(now);
                self.pending.expire(now, &mut self.answers);
                self.retries.expire(now, &mut self.answers);
                if self.transfers.any() {
                    // The book is copied out of its lock only when a transfer waits.
                    let members = self.roster.members();
                    (self.transfers).expire(now, &members, &mut self.answers);
                }
                self.watch_links(&mut inputs.inbox, now);
                self.metrics.publish(&self.core, &self.peers);
                // After a stall, carry on from now rather than catching up with a burst.
                next_tick = (next_tick + tick).max(now);
            }
            self.answer_deferred_reads();
            self.flush();
        }
    }

    /// Keeps the peer links honest: acknowledges the frames received, and lets each
    /// sender drop a connection that has stopped acknowledging ours (see
    /// `transport::sender`). Non-blocking, like everything on this thread.
    fn watch_links(&mut self, inbox: &mut PeerInbox, now: Instant) {
        inbox.send_acks(now);
        for sender in self.peers.iter_mut() {
            sender.check_link(now);
        }
    }

    /// Takes what is ready: queued events, and messages from peers. Sleeps in the poll
    /// (until a peer's bytes, a queued event or `next_tick`) only when nothing is queued;
    /// otherwise just looks at the peer connections.
    fn wait(
        &mut self,
        inputs: &mut Inputs,
        next_tick: Instant,
        events: &mut Vec<CoreEvent>,
        messages: &mut Vec<Message>,
    ) {
        inputs.events.try_take(events);
        let timeout = if events.is_empty() && inputs.events.ready_to_sleep() {
            next_tick.saturating_duration_since(Instant::now())
        } else {
            Duration::ZERO
        };
        inputs.inbox.poll(Some(timeout), messages);
        inputs.events.try_take(events);
    }

    /// Feeds one wake-up's input to the core: peer messages, storage completions, then
    /// every client request as one proposal. Returns why the node must stop, if it must.
    fn handle_events(
        &mut self,
        events: &mut Vec<CoreEvent>,
        messages: &mut Vec<Message>,
        requests: &mut Vec<ClientRequest>,
        inbox: &mut PeerInbox,
    ) -> Option<Stop> {
        let mut persisted = None;
        let mut drained = events.drain(..);
        while let Some(event) = drained.next() {
            match event {
                CoreEvent::Control(Control::Shutdown(reason)) => {
                    // The requests of this wake-up, and later ones, are answered by `stop`.
                    for event in drained {
                        if let CoreEvent::Clients(batch) = event {
                            requests.extend(batch);
                        }
                    }
                    return Some(Stop::Shutdown(reason));
                }
                // Sent only after a stop began, which `stop` handles.
                CoreEvent::Control(Control::ClientsStopped) => {}
                CoreEvent::Storage(StorageEvent::Failed(problem)) => {
                    error!("storage failed, stopping the node: {problem}");
                    return Some(Stop::StorageFailed(problem));
                }
                CoreEvent::Storage(StorageEvent::Persisted(id)) => persisted = Some(id),
                CoreEvent::Storage(StorageEvent::Fetched(fetched)) => {
                    self.step(Input::Fetched(fetched));
                }
                CoreEvent::Storage(StorageEvent::FetchTrimmed(trimmed)) => {
                    self.step(Input::FetchTrimmed(trimmed));
                }
                CoreEvent::Storage(StorageEvent::RetainPoint(before)) => {
                    if let Some(retention) = &mut self.retention {
                        retention.bytes_point(before);
                    }
                }
                CoreEvent::PeerConnected(connection) => inbox.add(connection, messages),
                CoreEvent::Clients(batch) => requests.extend(batch),
            }
        }
        for message in messages.drain(..) {
            let kind = MessageKind::of(&message);
            self.step(Input::Receive(message));
            self.metrics.received(kind, self.core.stats());
        }
        if let Some(write_id) = persisted {
            self.step(Input::Persisted { write_id });
        }
        if !requests.is_empty() {
            self.handle_clients(requests.drain(..));
        }
        None
    }

    /// Stops cleanly: tells the front end, which then sends no more requests and says so;
    /// answers every request it still gets without carrying it out; answers the appends
    /// waiting to commit as of unknown outcome, and the reads held back for them. Whatever
    /// it answers reaches the front end before its `CoreDone`.
    fn stop(&mut self, inputs: &mut Inputs, requests: Vec<ClientRequest>) {
        self.answer_sink.advance(Phase::Stopping);
        self.refuse(requests);
        let deadline = Instant::now() + CLIENTS_STOP_WAIT;
        let mut events = Vec::new();
        let mut messages = Vec::new();
        let mut clients_stopped = false;
        while !clients_stopped && Instant::now() < deadline {
            // Peer messages are dropped: nothing more is persisted or sent.
            self.wait(inputs, deadline, &mut events, &mut messages);
            messages.clear();
            for event in events.drain(..) {
                match event {
                    CoreEvent::Clients(batch) => self.refuse(batch),
                    CoreEvent::Control(Control::ClientsStopped) => clients_stopped = true,
                    // A storage failure is reported by the storage thread's own result.
                    _ => {}
                }
            }
        }
        for pending in [&mut self.pending, &mut self.retries] {
            pending.abandon(&Response::Stopping { accepted: true }, &mut self.answers);
        }
        self.transfers.abandon(&mut self.answers);
        self.answer_deferred_reads();
        // Reads the core was still confirming: nothing was read, so a retry is safe.
        for (_, (_, reply)) in std::mem::take(&mut self.confirming) {
            reply.answer(Response::Stopping { accepted: false }, &mut self.answers);
        }
        self.answer_sink.deliver(&mut self.answers);
        self.answer_sink.advance(Phase::CoreDone);
    }

    /// Answers requests that came too late to be carried out: the node is stopping.
    fn refuse(&mut self, requests: Vec<ClientRequest>) {
        for ClientRequest { reply, .. } in requests {
            reply.answer(Response::Stopping { accepted: false }, &mut self.answers);
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

    /// Turns every append among `requests` into one proposal, then answers reads, so that
    /// a read sees the state after the appends that came with it.
    fn handle_clients(&mut self, requests: impl Iterator<Item = ClientRequest>) {
        let mut commands = Vec::new();
        let mut waiters = Vec::new();
        let mut reads: Vec<(ReadKind, Consistency, ReplyTo)> = Vec::new();
        let mut trims = Vec::new();
        let mut once = Vec::new();
        for ClientRequest { request, reply } in requests {
            match request {
                Request::AppendOnce {
                    command,
                    client,
                    seq,
                } => once.push((
                    Input::ProposeOnce {
                        client,
                        seq,
                        command,
                    },
                    reply,
                )),
                Request::Append { command } => {
                    commands.push(command);
                    waiters.push(reply);
                }
                Request::Query { range, consistency } => {
                    reads.push((ReadKind::Query(range), consistency, reply))
                }
                // `status` is always the node's own view.
                Request::Status => reads.push((ReadKind::Status, Consistency::Local, reply)),
                Request::Read {
                    from,
                    limit,
                    consistency,
                } => {
                    let from = Index(from);
                    reads.push((ReadKind::Read { from, limit }, consistency, reply));
                }
                Request::Follow { .. } => unreachable!("the front end serves follow itself"),
                Request::Trim { before } => trims.push((Index(before), reply)),
                Request::Transfer { to } => self.start_transfer(&to, reply),
                Request::Member(request) => self.change_membership(&request, reply),
            }
        }
        if !commands.is_empty() {
            self.propose(Input::Propose(commands), waiters);
        }
        for (input, reply) in once {
            self.propose(input, vec![reply]);
        }
        for (before, reply) in trims {
            self.propose_trim(before, reply);
        }
        for (kind, consistency, reply) in reads {
            match self.pending.last_waiting() {
                Some(barrier) => self.deferred_reads.push_back(DeferredRead {
                    barrier,
                    kind,
                    consistency,
                    reply,
                }),
                None => self.start_read(kind, consistency, reply),
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
            self.start_read(read.kind, read.consistency, read.reply);
        }
    }

    /// As leader with `--retain-entries`, proposes a trim point when the log has grown past
    /// what is retained (nobody waits for its answer).
    fn retain(&mut self, now: Instant) {
        if self.core.role() != Role::Leader {
            return;
        }
        let applied = self.core.applied_index();
        let Some(before) = self.retention.as_mut().and_then(|r| r.point(applied, now)) else {
            return;
        };
        self.step(Input::Trim { before });
        let outcome = self.proposal.take();
        debug_assert!(outcome.is_some(), "the core answers every proposal");
    }

    /// A client's trim point: only committed entries may go, so one beyond the commit
    /// index is refused here, naming it; otherwise it is proposed like an append.
    fn propose_trim(&mut self, before: Index, reply: ReplyTo) {
        let commit_index = self.core.commit_index();
        if before > commit_index.next() && self.core.role() == Role::Leader {
            let message = format!(
                "cannot trim before {}: only committed entries can be trimmed, and the commit index is {}",
                before.0, commit_index.0
            );
            reply.answer(Response::BadRequest { message }, &mut self.answers);
            return;
        }
        self.propose(Input::Trim { before }, vec![reply]);
    }

    /// A client's transfer: refused here if `to` names no member or this node does not
    /// lead; otherwise the core's answer decides (`transfer.rs`).
    fn start_transfer(&mut self, to: &str, reply: ReplyTo) {
        let members = self.known_members();
        let to = match transfer::resolve(to, &members) {
            Ok(to) => to,
            Err(message) => {
                return reply.answer(Response::BadRequest { message }, &mut self.answers)
            }
        };
        if self.core.role() != Role::Leader {
            return reply.answer(self.not_leader(), &mut self.answers);
        }
        self.step(Input::Transfer { to });
        let outcome = (self.transfer.take()).expect("the core answers a transfer in its step");
        let wait = self.timing.tick * 3 * self.core.config().election_timeout_ticks_max as u32;
        let now = Instant::now();
        if let Some((reply, refusal)) = self.transfers.started(outcome, reply, &members, now, wait)
        {
            reply.answer(refusal, &mut self.answers);
        }
    }

    /// A client's `member` request: the names and addresses are this node's to check
    /// (`membership`), everything else the core's (its refusal is the answer).
    fn change_membership(&mut self, request: &MemberRequest, reply: ReplyTo) {
        if self.core.role() != Role::Leader {
            // A follower's view of the members may be behind the leader's.
            return reply.answer(self.not_leader(), &mut self.answers);
        }
        let members = self.roster.members();
        match membership::change_for(request, &self.core.membership().membership, &members) {
            Ok(change) => self.propose(Input::ChangeMembership(change), vec![reply]),
            Err(message) => reply.answer(Response::BadRequest { message }, &mut self.answers),
        }
    }

    fn propose(&mut self, input: Input, waiters: Vec<ReplyTo>) {
        let last_index = self.core.log().last_index();
        self.step(input);
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
                // At or below the log's end before the step: a retry of an append at most
                // once whose original entry is still uncommitted.
                let pending = match first_index <= last_index {
                    true => &mut self.retries,
                    false => &mut self.pending,
                };
                pending.accepted(first_index, term, waiters, deadline, &mut self.answers);
            }
            ProposalOutcome::AlreadyApplied { index, term } => {
                let answer = Response::Appended {
                    index: index.0,
                    term: term.0,
                };
                for waiter in waiters {
                    waiter.answer(answer.clone(), &mut self.answers);
                }
            }
            ProposalOutcome::SeqBehind { highest } => {
                let answer = Response::SeqBehind {
                    highest: highest.get(),
                };
                for waiter in waiters {
                    waiter.answer(answer.clone(), &mut self.answers);
                }
            }
            ProposalOutcome::MembershipRefused(refusal) => {
                let answer = Response::BadRequest {
                    message: refusal.to_string(),
                };
                for waiter in waiters {
                    waiter.answer(answer.clone(), &mut self.answers);
                }
            }
            ProposalOutcome::NotLeader { .. } => {
                // The outcome names the leader the core knows, as `not_leader()` does.
                let answer = self.not_leader();
                for waiter in waiters {
                    waiter.answer(answer.clone(), &mut self.answers);
                }
            }
            ProposalOutcome::Transferring { to } => {
                // Nothing was appended: send the client on to the node about to lead (it
                // names this one back until it wins, and the client pauses between).
                let leader = self.roster.addr_of(to);
                let answer = Response::NotLeader { leader };
                for waiter in waiters {
                    waiter.answer(answer.clone(), &mut self.answers);
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
            Output::Send(message) => {
                self.metrics.sent(&message);
                self.outbox.entry(message.to).or_default().push(message);
            }
            Output::Commit(entries) => {
                for entry in &entries {
                    if let Payload::Trim { before } = entry.payload {
                        self.trim_before = self.trim_before.max(Some(before));
                        if let Some(retention) = &mut self.retention {
                            retention.committed(before);
                        }
                    }
                }
                for pending in [&mut self.pending, &mut self.retries] {
                    if !pending.is_empty() {
                        // Built only for the rare append overwritten by another leader's entry.
                        let overwritten = || not_leader(&self.core, &self.roster);
                        let latency = self.metrics.append_latency();
                        pending.committed(&entries, overwritten, &mut self.answers, latency);
                    }
                }
            }
            Output::Proposal(outcome) => {
                let previous = self.proposal.replace(outcome);
                assert!(previous.is_none(), "two proposal outcomes in one step");
            }
            Output::RoleChanged { role, term, leader } => {
                self.metrics.role_changed(leader);
                self.log_role(role, term, leader);
                if self.transfers.any() {
                    let members = self.known_members();
                    (self.transfers).leader_changed(leader, term, &members, &mut self.answers);
                }
            }
            Output::Fetch(request) => self.fetches.push(request),
            Output::MembershipChanged(in_force) => {
                info!(
                    index = in_force.index.0,
                    configuration = %in_force.membership,
                    "configuration changed"
                );
                self.follow_membership(&in_force);
            }
            Output::Transfer(outcome) => {
                let previous = self.transfer.replace(outcome);
                assert!(previous.is_none(), "two transfer outcomes in one step");
            }
            Output::TransferAborted { to } => {
                info!(
                    "leadership transfer given up after an election timeout to={}",
                    to.0
                );
                let members = self.known_members();
                (self.transfers).aborted(to, &members, &mut self.answers);
            }
            Output::ReadReady { reads, .. } => {
                // The core released them once it applied their index: what storage
                // serves now holds it.
                for id in reads {
                    if let Some((kind, reply)) = self.confirming.remove(&id) {
                        self.answer_read(kind, reply);
                    }
                }
            }
            Output::ReadFailed { reads, leader } => {
                // Not confirmed in time, or the leader changed under it: `timeout`, which
                // for a read means a retry is safe. With no leader known, `not_leader`.
                let answer = match leader {
                    Some(_) => Response::Timeout,
                    None => self.not_leader(),
                };
                for id in reads {
                    if let Some((_, reply)) = self.confirming.remove(&id) {
                        reply.answer(answer.clone(), &mut self.answers);
                    }
                }
            }
        }
    }

    /// Serves a `read`, `query` or `status` as its consistency asks: `local` at once,
    /// otherwise once the core has confirmed it (`Input::Read`).
    fn start_read(&mut self, kind: ReadKind, consistency: Consistency, reply: ReplyTo) {
        let mode = match consistency {
            Consistency::Local => return self.answer_read(kind, reply),
            Consistency::Linearizable => ReadMode::Linearizable,
            Consistency::Lease => ReadMode::Lease,
        };
        let id = ReadId(self.next_read_id);
        self.next_read_id += 1;
        self.confirming.insert(id, (kind, reply));
        self.step(Input::Read { id, mode });
    }

    /// Sends this iteration's writes to storage, messages to peers and answers to clients.
    fn flush(&mut self) {
        let hint = self.core.applied_index();
        self.publish_progress();
        let reads_waiting = !self.fetches.is_empty() || self.trim_before.is_some();
        if !self.writes.is_empty() || hint > self.hint_sent || reads_waiting {
            let job = StorageJob {
                writes: std::mem::take(&mut self.writes),
                commit_hint: hint,
                fetches: std::mem::take(&mut self.fetches),
                trim_before: self.trim_before.take(),
            };
            // If the storage thread has stopped, its failure is already queued for us.
            let _ = self.storage_jobs.send(job);
            self.hint_sent = hint;
        }
        for (&peer, batch) in &mut self.outbox {
            if batch.is_empty() {
                continue;
            }
            match self.peers.sender(peer, || self.roster.addr_of(peer)) {
                Some(sender) => sender.send(batch),
                // A node that is no member and never said where it is (a vote request from
                // a removed node that connected before its removal): nothing to answer at.
                None => debug!(peer = peer.0, "no address known: messages dropped"),
            }
            batch.clear();
        }
        self.answer_sink.deliver(&mut self.answers);
    }

    /// The members with every name the handshakes have learned so far.
    fn known_members(&self) -> Members {
        self.roster.members()
    }

    /// A configuration is in force (at the start, appended, recovered, installed, or back
    /// after a truncation): the book learns its members, and the senders follow it.
    fn follow_membership(&mut self, in_force: &MembershipCheckpoint) {
        self.roster.learn(in_force);
        let members = self.roster.members();
        self.peers
            .follow(&membership::peers_of(&in_force.membership, &members));
    }

    fn leader_addr(&self) -> Option<String> {
        leader_addr(&self.core, &self.roster)
    }

    /// The answer for an append this node cannot (or can no longer) commit.
    fn not_leader(&self) -> Response {
        not_leader(&self.core, &self.roster)
    }

    /// Answers `status` at once. A `query` also lists the log: the entries the core holds
    /// are taken now, and the reader thread puts the stored ones before them (read from
    /// the segments) and answers. A `read` is the reader's alone: committed entries, from
    /// storage.
    fn answer_read(&mut self, kind: ReadKind, reply: ReplyTo) {
        let job = match kind {
            ReadKind::Status => {
                let state = self.state(false);
                reply.answer(Response::State(state), &mut self.answers);
                return;
            }
            ReadKind::Query(range) => ReaderJob::Query {
                state: Box::new(self.state(true)),
                through: self.core.log().prev().index,
                range,
                reply,
            },
            ReadKind::Read { from, limit } => match self.read_from_window(from, limit) {
                Some(line) => {
                    reply.answer(Response::Encoded(line), &mut self.answers);
                    return;
                }
                None => ReaderJob::Read { from, limit, reply },
            },
        };
        // What a `read` may see is what the core applied by now: publish before it goes.
        self.publish_progress();
        // Fails only if the reader thread is gone, i.e. the node is stopping.
        let _ = self.reader_jobs.send(job);
    }

    /// Publishes the applied and commit indexes for the reader thread, waking it if a
    /// stream waits for them. Two locked instructions per publication: only when an index
    /// moved.
    fn publish_progress(&mut self) {
        let indexes = (self.core.applied_index(), self.core.commit_index());
        if indexes != self.published && self.progress.publish(indexes.0, indexes.1) {
            // Fails only if the reader thread is gone, i.e. the node is stopping.
            let _ = self.reader_jobs.send(ReaderJob::Wake);
        }
        self.published = indexes;
    }

    /// A `read` answered from the core's window when it holds `from` (the common case:
    /// a reader at the tail), so that it costs no file access and no thread hop. The same
    /// answer the reader thread gives from storage; `None` sends it there.
    fn read_from_window(&self, from: Index, limit: usize) -> Option<Vec<u8>> {
        let first_index = self.progress.first_index()?;
        let log = self.core.log();
        if from < first_index || from <= log.prev().index {
            return None;
        }
        let applied = self.core.applied_index();
        let mut line = ReadPage::HEAD.to_vec();
        let mut next = from;
        let mut bytes = 0;
        while next <= applied && next.0 - from.0 < limit as u64 {
            let entry = log.entry(next).ok()?;
            let start = line.len();
            if next > from {
                line.push(b',');
            }
            LogEntry::encode_entry(entry, &mut line);
            bytes += line.len() - start;
            if next > from && bytes > READ_MAX_BYTES {
                line.truncate(start);
                break;
            }
            next = next.next();
        }
        let commit = self.core.commit_index();
        ReadPage::finish(&mut line, next.0, first_index.0, commit.0);
        Some(line)
    }

    /// The node's state; with `with_entries`, the entries its core holds in memory.
    fn state(&self, with_entries: bool) -> NodeState {
        let commit_index = self.core.commit_index();
        let log = self.core.log();
        let entries = with_entries.then(|| {
            log.held()
                .iter()
                .map(|entry| EntryView::of(entry, commit_index))
                .collect()
        });
        let members = self.roster.members();
        let in_force = self.core.membership();
        NodeState {
            node: self.core.id().0,
            name: members.name_of(members.own_id).map(ToString::to_string),
            members: Some(
                (in_force.membership.members().iter())
                    .map(|member| MemberView {
                        id: member.id.0,
                        name: members.name_of(member.id).map(ToString::to_string),
                        addr: members.addr_of(member.id).unwrap_or("?").to_string(),
                        match_index: self.core.match_index(member.id).map(|index| index.0),
                    })
                    .collect(),
            ),
            role: self.core.role().into(),
            term: self.core.term().0,
            leader: self.leader_addr(),
            commit_index: commit_index.0,
            last_index: log.last_index().0,
            entries,
            configuration: Some(ConfigurationView {
                index: self.core.membership().index.0,
                voters: ids(self.core.membership().membership.voters()),
                learners: ids(self.core.membership().membership.learners()),
            }),
            cluster: Some(Box::new(ClusterView {
                name: self.roster.cluster().to_string(),
                id: self.roster.cluster_id().to_string(),
                founders: (members.founders.iter())
                    .map(|(&id, addr)| FounderView {
                        id: id.0,
                        addr: addr.clone(),
                    })
                    .collect(),
            })),
        }
    }

    fn log_role(&self, role: Role, term: Term, leader: Option<NodeId>) {
        match (role, leader) {
            (Role::Leader, _) => info!(
                term = term.0,
                last_index = self.core.log().last_index().0,
                commit_index = self.core.commit_index().0,
                "became leader"
            ),
            (Role::Follower, Some(leader)) => info!(
                term = term.0,
                leader = leader.0,
                leader_addr = %self.roster.addr_of(leader).unwrap_or_else(|| "?".into()),
                "following leader"
            ),
            (Role::Follower, None) => info!(term = term.0, "follower, no leader known"),
            (Role::PreCandidate, _) => {
                info!(term = term.0 + 1, "no leader heard: asking for pre-votes")
            }
            (Role::Candidate, _) => info!(term = term.0, "election: campaigning"),
        }
    }
}

/// The address of the leader `core` knows, as clients should dial it.
fn leader_addr(core: &RaftCore, roster: &Roster) -> Option<String> {
    roster.addr_of(core.leader()?)
}

/// The answer for an append this node cannot (or can no longer) commit. Takes fields, not
/// the runtime, so that it can be built lazily while the pending appends are borrowed.
fn not_leader(core: &RaftCore, roster: &Roster) -> Response {
    Response::NotLeader {
        leader: leader_addr(core, roster),
    }
}

fn ids(ids: Vec<NodeId>) -> Vec<u64> {
    ids.into_iter().map(|id| id.0).collect()
}
