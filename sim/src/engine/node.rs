//! Driving one node: stepping its core, carrying out its outputs (disk, network, commits),
//! and the process faults (crash, restart, pause, resume).

use super::{Event, Reply, Simulation};
use crate::checker::history::{History, OpId, Outcome};
use crate::checker::NodeState;
use crate::disk::{Disk, FetchAnswer};
use crate::net::Fate;
use crate::report::Violation;
use crate::rng::Ratio;
use crate::trace::{MessageSummary, What};
use replog_core::{
    Entry, FetchRequest, Index, Input, Message, Output, Payload, ProposalOutcome, RaftCore, Role,
    WriteId,
};
use replog_driver::settle::Settlement;

impl Simulation {
    pub(crate) fn on_tick(&mut self, node: usize, generation: u32) -> Result<(), Violation> {
        let state = &self.nodes[node];
        if state.tick_generation != generation || !state.is_running() {
            return Ok(()); // A stale chain, or a crashed or paused process: no timer fires.
        }
        self.queue.push(
            self.now_us + state.tick_us,
            Event::Tick { node, generation },
        );
        self.step_core(node, Input::Tick)?;
        if self.outputs.is_empty() {
            self.trace.quiet(self.now_us, node as u8 + 1);
        } else {
            self.record(Some(node), What::Tick);
        }
        self.dispatch_outputs(node).map(|_| ())
    }

    pub(crate) fn on_missed_ticks(
        &mut self,
        node: usize,
        generation: u32,
        count: u64,
    ) -> Result<(), Violation> {
        for _ in 0..count {
            let state = &self.nodes[node];
            if state.tick_generation != generation || !state.is_running() {
                return Ok(());
            }
            self.step_core(node, Input::Tick)?;
            self.record(Some(node), What::Tick);
            self.dispatch_outputs(node)?;
        }
        Ok(())
    }

    pub(crate) fn on_deliver(&mut self, message: Message) -> Result<(), Violation> {
        let node = (message.to.0 - 1) as usize;
        let summary = MessageSummary::of(&message);
        let state = &mut self.nodes[node];
        if state.core.is_none() {
            self.record(Some(node), What::DeadLetter(summary));
            return Ok(());
        }
        if let Some(backlog) = &mut state.backlog {
            backlog.push(Event::Deliver(message));
            return Ok(());
        }
        self.record(Some(node), What::Deliver(summary));
        self.step_core(node, Input::Receive(message))?;
        self.dispatch_outputs(node).map(|_| ())
    }

    pub(crate) fn on_fsync_done(&mut self, node: usize, incarnation: u32) -> Result<(), Violation> {
        let state = &mut self.nodes[node];
        if state.incarnation != incarnation {
            return Ok(()); // The crash already decided what this fsync saved.
        }
        let durable = state.disk.fsync_done()?;
        if let Some(boundary) = state.disk.retry_trim() {
            let what = What::Trimmed {
                boundary: boundary.index.0,
            };
            self.record(Some(node), what);
        }
        self.start_fsync(node);
        match durable {
            Some(write_id) => self.on_persisted(node, incarnation, write_id),
            None => Ok(()),
        }
    }

    /// Starts an fsync of `node`'s unsynced writes unless one is running, and schedules
    /// its completion (one latency draw per fsync started).
    fn start_fsync(&mut self, node: usize) {
        let state = &mut self.nodes[node];
        if state.disk.start_fsync() {
            let latency_us = Disk::fsync_latency_us(&self.params.disk, &mut self.rng.disk);
            let incarnation = state.incarnation;
            self.queue.push(
                self.now_us + latency_us,
                Event::FsyncDone { node, incarnation },
            );
        }
    }

    /// Reads what a `Fetch` asks for from the durable log now, and hands it to the core
    /// after a read latency (in this life of the process only).
    fn start_fetch(&mut self, node: usize, request: &FetchRequest) -> Result<(), Violation> {
        let state = &self.nodes[node];
        let fetched = state.disk.fetch(request)?;
        let latency_us = Disk::read_latency_us(&self.params.disk, &mut self.rng.disk);
        let incarnation = state.incarnation;
        self.queue.push(
            self.now_us + latency_us,
            Event::Fetched {
                node,
                incarnation,
                fetched,
            },
        );
        Ok(())
    }

    /// Storage's answer to a fetch reaches the core, unless it is paused (then it waits).
    pub(crate) fn on_fetched(
        &mut self,
        node: usize,
        incarnation: u32,
        fetched: FetchAnswer,
    ) -> Result<(), Violation> {
        let state = &mut self.nodes[node];
        if state.incarnation != incarnation || state.core.is_none() {
            return Ok(());
        }
        if let Some(backlog) = &mut state.backlog {
            backlog.push(Event::Fetched {
                node,
                incarnation,
                fetched,
            });
            return Ok(());
        }
        let (what, input) = match fetched {
            FetchAnswer::Fetched(fetched) => (
                What::Fetched {
                    peer: fetched.peer.0 as u8,
                    from: fetched.prev.index.next().0,
                    count: fetched.entries.len() as u32,
                },
                Input::Fetched(fetched),
            ),
            FetchAnswer::Trimmed(trimmed) => (
                What::Fetched {
                    peer: trimmed.peer.0 as u8,
                    from: trimmed.from.0,
                    count: 0,
                },
                Input::FetchTrimmed(trimmed),
            ),
        };
        self.record(Some(node), what);
        self.step_core(node, input)?;
        self.dispatch_outputs(node).map(|_| ())
    }

    /// Tells the core its writes up to `write_id` are durable, unless it is paused.
    pub(crate) fn on_persisted(
        &mut self,
        node: usize,
        incarnation: u32,
        write_id: WriteId,
    ) -> Result<(), Violation> {
        let state = &mut self.nodes[node];
        if state.incarnation != incarnation || state.core.is_none() {
            return Ok(());
        }
        if let Some(backlog) = &mut state.backlog {
            backlog.push(Event::Persisted {
                node,
                incarnation,
                write_id,
            });
            return Ok(());
        }
        self.record(
            Some(node),
            What::Persisted {
                write_id: write_id.0,
            },
        );
        self.step_core(node, Input::Persisted { write_id })?;
        self.dispatch_outputs(node).map(|_| ())
    }

    /// Steps a live core, asserts its own invariants, then runs the checker on the step.
    /// The outputs stay in `self.outputs` for [`Simulation::dispatch_outputs`].
    pub(crate) fn step_core(&mut self, node: usize, input: Input) -> Result<(), Violation> {
        self.outputs.clear();
        let state = &mut self.nodes[node];
        self.current_node = Some(state.id);
        let core = state.core.as_mut().expect("stepping a live node");
        let commit_before = core.commit_index();
        core.step(input, &mut self.outputs);
        core.check_invariants();
        let view = NodeState::of(core, &state.disk);
        self.checker.after_step(node, &view, &self.outputs)?;
        self.check_leader_commit(node, commit_before)
    }

    /// Carries out the outputs of the last step, in order. Returns its proposal outcome.
    pub(crate) fn dispatch_outputs(
        &mut self,
        node: usize,
    ) -> Result<Option<ProposalOutcome>, Violation> {
        let mut outputs = std::mem::take(&mut self.outputs);
        let mut proposal = None;
        let mut result = Ok(());
        let sent = outputs
            .iter()
            .any(|output| matches!(output, Output::Send(_)));
        // A commit index recorded before the step's session checkpoint could survive a
        // crash that loses it, and storage without one means no session entry up to the
        // commit index: record it after the write, as the node's storage thread does.
        let checkpoint = outputs
            .iter()
            .any(|output| matches!(output, Output::Persist(write) if write.sessions.is_some() || !write.memberships.is_empty()));
        let mut deferred_commit = None;
        for output in outputs.drain(..) {
            match output {
                Output::Persist(write) => {
                    self.nodes[node].disk.write(write);
                    self.start_fsync(node);
                }
                Output::Send(message) => self.send(node, message),
                Output::Fetch(request) => {
                    if result.is_ok() {
                        result = self.start_fetch(node, &request);
                    }
                }
                Output::Commit(entries) => {
                    if checkpoint {
                        deferred_commit = entries.last().map(|entry| entry.index);
                    } else if let Some(last) = entries.last() {
                        self.nodes[node].disk.note_commit(last.index);
                    }
                    if result.is_ok() {
                        result = self.on_commit(node, &entries);
                    }
                }
                Output::Proposal(outcome) => {
                    if proposal.replace(outcome).is_some() && result.is_ok() {
                        result = Err(Violation::new(
                            "Proposal Contract",
                            &[self.nodes[node].id],
                            "two proposal outcomes in one step",
                        ));
                    }
                }
                Output::ReadReady { reads, .. } => {
                    if result.is_ok() {
                        result = self.serve_reads(node, &reads);
                    }
                }
                // Counted by the core's `Stats`; nobody waits on a transfer here.
                Output::Transfer(_) | Output::TransferAborted { .. } => {}
                Output::ReadFailed { reads, leader } => {
                    let leader = leader.map(|id| (id.0 - 1) as usize);
                    for id in reads {
                        if result.is_ok() {
                            result = self.reply_to_client(id.0 as usize, Reply::Redirect(leader));
                        }
                    }
                }
                // The simulated network reaches every node by id, members or not.
                Output::MembershipChanged(_) => {}
                Output::RoleChanged { role, term, leader } => {
                    if role == Role::Leader {
                        self.maybe_strike_new_leader(node);
                    }
                    let leader = leader.map_or(0, |id| id.0);
                    self.record(
                        Some(node),
                        What::Role {
                            role,
                            term: term.0,
                            leader,
                        },
                    );
                }
            }
        }
        if let Some(index) = deferred_commit {
            self.nodes[node].disk.note_commit(index);
        }
        self.outputs = outputs;
        if sent {
            self.maybe_crash_unsynced(node);
        }
        result.map(|()| proposal)
    }

    /// How long a node crashed at a crash point stays down: often only milliseconds, so that
    /// it is back while the election or replication round it took part in is still running,
    /// with messages sent before the crash still in flight.
    fn crash_point_downtime_us(&mut self) -> u64 {
        let faults = &self.params.faults;
        if self.rng.faults.chance(Ratio(1, 2)) {
            self.rng.faults.between(1_000, 30_000)
        } else {
            self.rng
                .faults
                .between(faults.down_us_min, faults.down_us_max)
        }
    }

    /// Maybe strike `node`, which just became leader, a little later: crash it, or cut it
    /// off so that it keeps appending client commands nobody else will see until
    /// CheckQuorum deposes it. Either leaves a divergent, partly replicated tail behind.
    fn maybe_strike_new_leader(&mut self, node: usize) {
        let faults = &self.params.faults;
        if !self.rng.faults.chance(faults.crash_new_leader) {
            return;
        }
        let after_us = self.rng.faults.between(0, faults.new_leader_crash_us_max);
        let incarnation = self.nodes[node].incarnation;
        let event = if self.rng.faults.chance(Ratio(1, 2)) {
            let isolate_us = self.rng.faults.between(20_000, 2_000_000);
            Event::IsolateLeader {
                node,
                incarnation,
                isolate_us,
            }
        } else {
            let restart_after_us = self.crash_point_downtime_us();
            Event::Crash {
                node,
                incarnation,
                restart_after_us,
            }
        };
        self.queue.push(self.now_us + after_us, event);
    }

    /// Maybe crash `node` right after it sent something while writes were still unsynced.
    fn maybe_crash_unsynced(&mut self, node: usize) {
        let state = &self.nodes[node];
        let crash_unsynced = self.params.faults.crash_unsynced;
        if state.disk.unsynced_writes() == 0 || !self.rng.faults.chance(crash_unsynced) {
            return;
        }
        let incarnation = state.incarnation;
        let restart_after_us = self.crash_point_downtime_us();
        self.queue.push(
            self.now_us,
            Event::Crash {
                node,
                incarnation,
                restart_after_us,
            },
        );
    }

    fn send(&mut self, from: usize, message: Message) {
        self.counters.messages_sent += 1;
        let to = (message.to.0 - 1) as usize;
        match self.net.route(from, to, &mut self.rng.net) {
            Fate::Lost(why) => {
                self.counters.messages_dropped += 1;
                self.record(Some(from), What::Dropped(MessageSummary::of(&message), why));
            }
            Fate::Deliver {
                delay_us,
                duplicate_delay_us,
            } => {
                if let Some(duplicate_us) = duplicate_delay_us {
                    self.viewer_sent(&message, self.now_us + duplicate_us);
                    self.queue
                        .push(self.now_us + duplicate_us, Event::Deliver(message.clone()));
                }
                self.viewer_sent(&message, self.now_us + delay_us);
                self.queue
                    .push(self.now_us + delay_us, Event::Deliver(message));
            }
        }
    }

    /// The leader (if a node leads and runs) proposes a retention point a little below
    /// what it applied; then the next is scheduled.
    pub(crate) fn on_trim(&mut self) -> Result<(), Violation> {
        let workload = &self.params.workload;
        let next_us = self.now_us + workload.trim_interval_us;
        let keep = self.rng.clients.between(0, workload.trim_keep_max);
        self.queue.push(next_us, Event::Trim);
        let leader = (0..self.nodes.len()).find(|&n| {
            self.nodes[n].is_running()
                && self.nodes[n]
                    .core
                    .as_ref()
                    .is_some_and(|core| core.role() == Role::Leader)
        });
        let Some(node) = leader else {
            return Ok(());
        };
        let applied = self.nodes[node]
            .core
            .as_ref()
            .expect("running")
            .applied_index();
        if applied.0 <= keep {
            return Ok(());
        }
        let before = Index(applied.0 - keep);
        self.record(Some(node), What::TrimProposed { before: before.0 });
        self.step_core(node, Input::Trim { before })?;
        self.dispatch_outputs(node).map(|_| ())
    }

    /// Applies retention points (the caller records the commit on disk, lazily) and answers the
    /// clients whose proposals it settles.
    fn on_commit(&mut self, node: usize, entries: &[Entry]) -> Result<(), Violation> {
        let Some(last) = entries.last() else {
            return Ok(());
        };
        self.viewer_committed(node, last.index);
        for entry in entries {
            if let Payload::Trim { before } = entry.payload {
                if let Some(boundary) = self.nodes[node].disk.trim(before) {
                    let what = What::Trimmed {
                        boundary: boundary.index.0,
                    };
                    self.record(Some(node), what);
                }
            }
        }
        // Settled first, answered after: answering may end the run with a violation.
        let mut settled = std::mem::take(&mut self.settled);
        self.nodes[node]
            .proposals
            .committed(entries, |op, settlement, _| settled.push((op, settlement)));
        let mut result = Ok(());
        for (op, settlement) in settled.drain(..) {
            let reply = match settlement {
                Settlement::Committed { index, term } => Reply::Acknowledged { index, term },
                Settlement::Overwritten => Reply::Failed,
                // Nobody answers: the client's own timeout leaves the outcome unknown.
                Settlement::Unknown => continue,
            };
            if result.is_ok() {
                result = self.reply_to_client(op, reply);
            }
        }
        self.settled = settled;
        result
    }

    /// Answers reads from what `node` applied: the committed log up to its applied index.
    pub(crate) fn serve_reads(
        &mut self,
        node: usize,
        reads: &[replog_core::ReadId],
    ) -> Result<(), Violation> {
        let core = self.nodes[node]
            .core
            .as_ref()
            .expect("serving from a live node");
        let index = core.applied_index();
        let term = core
            .log()
            .term_at(index)
            .expect("the applied index is within the window");
        for read in reads {
            self.reply_to_client(read.0 as usize, Reply::Read { index, term })?;
        }
        Ok(())
    }

    /// Sends a node's answer back to the client, or settles the liveness probe at once.
    pub(crate) fn reply_to_client(&mut self, op: OpId, reply: Reply) -> Result<(), Violation> {
        if self.checker.history.ops[op].client.is_some() {
            let delay_us = self.net.delay(&mut self.rng.clients);
            self.queue
                .push(self.now_us + delay_us, Event::ClientReply { op, reply });
            return Ok(());
        }
        let outcome = match reply {
            Reply::Acknowledged { index, term } => Outcome::Acknowledged { index, term },
            Reply::Failed => Outcome::Failed,
            Reply::Redirect(_) | Reply::Read { .. } | Reply::SeqBehind => Outcome::Unknown,
        };
        self.checker.history.complete(op, outcome, self.now_us)?;
        if let Outcome::Acknowledged { .. } = outcome {
            let catch_up_us = self.catch_up_us();
            if let Some(liveness) = &mut self.liveness {
                liveness.probe_committed(self.now_us, catch_up_us);
            }
        }
        Ok(())
    }

    /// Proposes `op`'s command on a running node; returns the node's answer.
    pub(crate) fn propose(&mut self, node: usize, op: OpId) -> Result<ProposalOutcome, Violation> {
        let record = &self.checker.history.ops[op];
        let command = History::command(op);
        let input = match (record.client, record.seq) {
            (Some(client), Some(seq)) => Input::ProposeOnce {
                client: Simulation::client_id(client),
                seq,
                command,
            },
            _ => Input::Propose(vec![command]),
        };
        self.step_core(node, input)?;
        let outcome = self.dispatch_outputs(node)?.ok_or_else(|| {
            Violation::new(
                "Proposal Contract",
                &[self.nodes[node].id],
                "a proposal got no outcome in its step",
            )
        })?;
        let accepted_at = match outcome {
            ProposalOutcome::Accepted {
                first_index, term, ..
            } => {
                // A replaced older proposal is not answered (its client times out), as
                // for any settlement the simulated client cannot be told.
                let now_us = self.now_us;
                let proposals = &mut self.nodes[node].proposals;
                proposals.accepted(first_index, term, vec![op], now_us, u64::MAX, |_, _, _| {});
                first_index.0
            }
            ProposalOutcome::AlreadyApplied { index, term } => {
                self.reply_to_client(op, Reply::Acknowledged { index, term })?;
                index.0
            }
            ProposalOutcome::SeqBehind { .. } => {
                self.reply_to_client(op, Reply::SeqBehind)?;
                0
            }
            ProposalOutcome::NotLeader { .. }
            | ProposalOutcome::MembershipRefused(_)
            | ProposalOutcome::Transferring { .. } => 0,
        };
        self.record(
            Some(node),
            What::Propose {
                op: op as u64,
                accepted_at,
            },
        );
        Ok(outcome)
    }

    /// Kills a process: its unsynced writes may be lost or torn, its queued events vanish.
    pub(crate) fn crash(
        &mut self,
        node: usize,
        restart_after_us: Option<u64>,
    ) -> Result<(), Violation> {
        if self.nodes[node].core.is_none() {
            return Ok(());
        }
        self.note_crash(node, restart_after_us);
        let state = &mut self.nodes[node];
        let core = state.core.take().expect("checked above");
        crate::coverage::add_stats(&mut self.counters.past_core_stats, core.stats());
        state.incarnation += 1;
        state.backlog = None;
        state.proposals.clear();
        let loss = state.disk.crash(&self.params.disk, &mut self.rng.disk)?;
        let incarnation = state.incarnation;
        self.counters.crashes += 1;
        self.record(
            Some(node),
            What::Crash {
                survived: loss.survived,
                lost: loss.lost,
                torn: loss.torn,
            },
        );
        self.checker
            .check_durability(self.nodes.iter().map(|n| (n.id, n.disk.durable())))?;
        if let Some(after_us) = restart_after_us {
            self.queue
                .push(self.now_us + after_us, Event::Restart { node, incarnation });
        }
        Ok(())
    }

    /// Rebuilds a crashed node from its disk, as the real node does from its files.
    pub(crate) fn restart(&mut self, node: usize) -> Result<(), Violation> {
        if self.nodes[node].core.is_some() {
            return Ok(());
        }
        let state = &mut self.nodes[node];
        let config = self
            .params
            .core_config(state.id, self.core_seed, state.incarnation);
        self.current_node = Some(state.id);
        let core = RaftCore::new(config, state.disk.recovered()).map_err(|error| {
            Violation::new(
                "Recovery",
                &[state.id],
                format!("cannot start from disk: {error}"),
            )
        })?;
        core.check_invariants();
        let view = NodeState::of(&core, &state.disk);
        self.checker
            .after_restart(node, &view, state.disk.durable())?;
        let in_force = core.membership();
        self.checker
            .restarted_membership(&view, in_force.index, &in_force.membership)?;
        let what = What::Restart {
            term: core.term().0,
            last_index: core.log().last_index().0,
            commit_index: core.commit_index().0,
            segments: state.disk.durable().segment_count() as u32,
        };
        state.core = Some(core);
        state.tick_generation += 1;
        let generation = state.tick_generation;
        self.queue.push(
            self.now_us + state.tick_us,
            Event::Tick { node, generation },
        );
        self.record(Some(node), what);
        Ok(())
    }

    pub(crate) fn pause(&mut self, node: usize, duration_us: u64) {
        if !self.nodes[node].is_running() {
            return;
        }
        self.note_pause(node, duration_us);
        let state = &mut self.nodes[node];
        state.backlog = Some(Vec::new());
        state.paused_at_us = self.now_us;
        state.pause_generation += 1;
        let generation = state.pause_generation;
        self.queue.push(
            self.now_us + duration_us,
            Event::Resume { node, generation },
        );
        self.record(Some(node), What::Pause);
    }

    /// Ends a pause: the backlog runs now, in arrival order, and the clock ticks again.
    pub(crate) fn resume(&mut self, node: usize) {
        let state = &mut self.nodes[node];
        let Some(backlog) = state.backlog.take() else {
            return;
        };
        let count = backlog.len() as u32;
        if self.params.core.read_lease {
            let missed = (self.now_us - state.paused_at_us) / state.tick_us;
            let generation = state.tick_generation;
            self.queue.push(
                self.now_us,
                Event::MissedTicks {
                    node,
                    generation,
                    count: missed,
                },
            );
        }
        for event in backlog {
            self.queue.push(self.now_us, event);
        }
        state.tick_generation += 1;
        let generation = state.tick_generation;
        self.queue
            .push(self.now_us, Event::Tick { node, generation });
        self.record(Some(node), What::Resume { backlog: count });
    }
}
