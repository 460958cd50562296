//! The client workload: each client runs one append at a time against the node it believes
//! leads, follows redirects, and gives up (outcome unknown) after a timeout, then moves on
//! with a fresh command to another node.

use super::script::Wake;
use super::{Event, Reply, Simulation};
use crate::checker::history::{OpId, Outcome};
use crate::report::Violation;
use crate::trace::What;
use replog_core::ProposalOutcome;

/// A client that hears "no leader known" waits this long before trying another node.
const NO_LEADER_BACKOFF_US: u64 = 10_000;

impl Simulation {
    pub(crate) fn on_client_wake(&mut self, client: usize) {
        if !self.workload_active {
            return;
        }
        let scripted = match self.scripted_wake(client) {
            Wake::Free => None,
            Wake::Invoke(node) => Some(node),
            Wake::Idle => return,
        };
        let op = self.checker.history.invoke(Some(client), self.now_us);
        let node = match self.clients[client].leader_guess {
            Some(node) => node,
            None => self.rng.clients.below(self.nodes.len() as u64) as usize,
        };
        // A scripted client still draws, so that a full script replays its run exactly.
        let node = scripted.unwrap_or(node);
        self.note_operation(client, node);
        self.send_request(op, node, 0);
        let timeout_us = self.params.workload.timeout_us;
        self.queue
            .push(self.now_us + timeout_us, Event::ClientTimeout { op });
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
        if let ProposalOutcome::NotLeader { leader } = self.propose(node, op)? {
            let leader = leader.map(|id| (id.0 - 1) as usize);
            self.reply_to_client(op, Reply::Redirect(leader))?;
        }
        Ok(())
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
            Reply::Failed => {
                self.checker
                    .history
                    .complete(op, Outcome::Failed, self.now_us)?;
                self.clients[client].leader_guess = None;
                self.schedule_next_op(client);
                ("failed", 0)
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

    pub(crate) fn on_client_timeout(&mut self, op: OpId) -> Result<(), Violation> {
        if !self.checker.history.is_pending(op) {
            return Ok(());
        }
        self.checker
            .history
            .complete(op, Outcome::Unknown, self.now_us)?;
        let client = self.checker.history.ops[op]
            .client
            .expect("client operation");
        self.clients[client].leader_guess = None;
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
