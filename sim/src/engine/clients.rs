//! The client workload: each client runs one append at a time against the node it believes
//! leads, follows redirects, and gives up (outcome unknown) after a timeout, then moves on
//! with a fresh command to another node.
//!
//! Some appends carry a `(client, seq)` (`WorkloadParams::session_appends`): those are
//! retried with the same command and sequence number after a timeout or a lost entry, up
//! to `SESSION_ATTEMPTS_MAX` times, which is safe only because the cluster appends each at
//! most once; the checker holds it to that.

use super::script::Wake;
use super::{Event, Reply, Simulation};
use crate::checker::history::{Consistency, OpId, OpKind, Outcome};
use crate::report::Violation;
use crate::trace::What;
use replog_core::{ClientId, Input, ProposalOutcome, ReadId, ReadMode};
use std::num::NonZeroU64;

/// A client that hears "no leader known" waits this long before trying another node.
const NO_LEADER_BACKOFF_US: u64 = 10_000;
/// How often a client tries an append with a session before it gives up on it.
const SESSION_ATTEMPTS_MAX: u32 = 4;

impl Simulation {
    pub(crate) fn on_client_wake(&mut self, client: usize) {
        if !self.workload_active {
            return;
        }
        let scripted = match self.scripted_wake(client) {
            Wake::Free => None,
            Wake::Invoke(node, kind) => Some((node, kind)),
            Wake::Idle => return,
        };
        // A scripted client still draws, so that a full script replays its run exactly.
        let drawn = self.draw_op_kind();
        let kind = scripted.map_or(drawn, |(_, kind)| kind);
        let with_session = kind == OpKind::Append
            && self
                .rng
                .clients
                .chance(self.params.workload.session_appends);
        let history = &mut self.checker.history;
        let op = if with_session {
            let state = &mut self.clients[client];
            state.last_seq += 1;
            let seq = NonZeroU64::new(state.last_seq).expect("counts up from 1");
            history.invoke_once(client, seq, self.now_us)
        } else {
            history.invoke_kind(Some(client), kind, self.now_us)
        };
        self.clients[client].attempt = 0;
        let node = self.attempt(op, client, scripted.map(|(node, _)| node));
        self.note_operation(client, node, kind);
    }

    /// Sends `op` to `to`, or else to the node `client` believes leads (any, if none), and
    /// starts its timer. Returns the node it went to.
    fn attempt(&mut self, op: OpId, client: usize, to: Option<usize>) -> usize {
        let node = match self.clients[client].leader_guess {
            Some(node) => node,
            None => self.rng.clients.below(self.nodes.len() as u64) as usize,
        };
        let node = to.unwrap_or(node);
        self.send_request(op, node, 0);
        let state = &mut self.clients[client];
        state.attempt += 1;
        let attempt = state.attempt;
        let timeout_us = self.params.workload.timeout_us;
        self.queue.push(
            self.now_us + timeout_us,
            Event::ClientTimeout { op, attempt },
        );
        node
    }

    /// Whether `op` carries a session and has attempts left: then it is tried again.
    fn may_retry(&self, op: OpId, client: usize) -> bool {
        self.checker.history.ops[op].seq.is_some()
            && self.clients[client].attempt < SESSION_ATTEMPTS_MAX
    }

    /// The client id a simulated client uses for its appends with a session.
    pub(crate) fn client_id(client: usize) -> ClientId {
        ClientId::new(format!("client{client}")).expect("short")
    }

    fn send_request(&mut self, op: OpId, node: usize, extra_delay_us: u64) {
        let delay_us = self.net.delay(&mut self.rng.clients) + extra_delay_us;
        self.queue
            .push(self.now_us + delay_us, Event::ClientArrive { op, node });
    }

    /// A request reaches a node. It is proposed even if its client has given up: the client
    /// cannot recall a request in flight, which is exactly why its outcome is unknown.
    pub(crate) fn on_client_arrive(&mut self, op: OpId, node: usize) -> Result<(), Violation> {
        let state = &mut self.nodes[node];
        if state.core.is_none() {
            return Ok(());
        }
        if let Some(backlog) = &mut state.backlog {
            backlog.push(Event::ClientArrive { op, node });
            return Ok(());
        }
        let mode = match self.checker.history.ops[op].kind {
            OpKind::Append => {
                // A transferring leader sends the client on to the node about to lead.
                let leader = match self.propose(node, op)? {
                    ProposalOutcome::NotLeader { leader } => leader,
                    ProposalOutcome::Transferring { to } => Some(to),
                    _ => return Ok(()),
                };
                let leader = leader.map(|id| (id.0 - 1) as usize);
                self.reply_to_client(op, Reply::Redirect(leader))?;
                return Ok(());
            }
            OpKind::Read(Consistency::Local) => {
                return self.serve_reads(node, &[ReadId(op as u64)])
            }
            OpKind::Read(Consistency::Linearizable) => ReadMode::Linearizable,
            OpKind::Read(Consistency::Lease) => ReadMode::Lease,
        };
        self.record(Some(node), What::ReadAsked { op: op as u64 });
        let id = ReadId(op as u64);
        self.step_core(node, Input::Read { id, mode })?;
        self.dispatch_outputs(node).map(|_| ())
    }

    /// An append, or (in `read_percent` of operations) a read of a drawn consistency. Draws
    /// nothing when the workload has no reads, so such runs stay as they were.
    fn draw_op_kind(&mut self) -> OpKind {
        let workload = &self.params.workload;
        if workload.read_percent == 0 || self.rng.clients.below(100) >= workload.read_percent {
            return OpKind::Append;
        }
        let lease = self.params.core.read_lease;
        let consistency = match self.rng.clients.below(if lease { 3 } else { 2 }) {
            0 => Consistency::Linearizable,
            1 => Consistency::Local,
            _ => Consistency::Lease,
        };
        OpKind::Read(consistency)
    }

    pub(crate) fn on_client_reply(&mut self, op: OpId, reply: Reply) -> Result<(), Violation> {
        if !self.checker.history.is_pending(op) {
            return Ok(()); // Too late: the client already gave up.
        }
        let client = self.checker.history.ops[op]
            .client
            .expect("client operation");
        let (name, index) = match reply {
            Reply::Redirect(Some(leader)) => {
                self.clients[client].leader_guess = Some(leader);
                self.send_request(op, leader, 0);
                ("redirect", 0)
            }
            Reply::Redirect(None) => {
                self.clients[client].leader_guess = None;
                let node = self.rng.clients.below(self.nodes.len() as u64) as usize;
                self.send_request(op, node, NO_LEADER_BACKOFF_US);
                ("no leader", 0)
            }
            Reply::Acknowledged { index, term } => {
                self.checker.history.complete(
                    op,
                    Outcome::Acknowledged { index, term },
                    self.now_us,
                )?;
                self.schedule_next_op(client);
                ("acknowledged", index.0)
            }
            Reply::Failed if self.may_retry(op, client) => {
                // The entry was lost to a new leader; the same seq is safe to send again.
                self.clients[client].leader_guess = None;
                self.attempt(op, client, None);
                ("failed, retrying", 0)
            }
            Reply::Failed if self.checker.history.ops[op].seq.is_some() => {
                // An earlier attempt may still be in a log: not a definite failure.
                self.checker
                    .history
                    .complete(op, Outcome::Unknown, self.now_us)?;
                self.clients[client].leader_guess = None;
                self.schedule_next_op(client);
                ("failed, giving up", 0)
            }
            Reply::Failed => {
                self.checker
                    .history
                    .complete(op, Outcome::Failed, self.now_us)?;
                self.clients[client].leader_guess = None;
                self.schedule_next_op(client);
                ("failed", 0)
            }
            Reply::Read { index, term } => {
                self.checker.read_returned(op, index, term, self.now_us)?;
                self.schedule_next_op(client);
                ("read", index.0)
            }
            Reply::SeqBehind => {
                // A client's pending append always carries its highest seq.
                return Err(Violation::new(
                    "Exactly Once",
                    &[],
                    format!("op{op} of client{client} was answered seq_behind"),
                ));
            }
        };
        self.record(
            None,
            What::Reply {
                op: op as u64,
                reply: name,
                index,
            },
        );
        Ok(())
    }

    pub(crate) fn on_client_timeout(&mut self, op: OpId, attempt: u32) -> Result<(), Violation> {
        if !self.checker.history.is_pending(op) {
            return Ok(());
        }
        let client = self.checker.history.ops[op]
            .client
            .expect("client operation");
        if self.clients[client].attempt != attempt {
            return Ok(()); // An earlier attempt's timer; a retry is under way.
        }
        self.clients[client].leader_guess = None;
        if self.may_retry(op, client) {
            self.attempt(op, client, None);
            self.record(None, What::ClientTimeout { op: op as u64 });
            return Ok(());
        }
        self.checker
            .history
            .complete(op, Outcome::Unknown, self.now_us)?;
        self.schedule_next_op(client);
        self.record(None, What::ClientTimeout { op: op as u64 });
        Ok(())
    }

    fn schedule_next_op(&mut self, client: usize) {
        let think_us = self
            .rng
            .clients
            .between(0, self.params.workload.think_us_max);
        self.queue
            .push(self.now_us + think_us, Event::ClientWake { client });
    }
}
