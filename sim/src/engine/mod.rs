//! The discrete-event engine: one thread, one queue ordered by (time, sequence), one seed.
//!
//! Each popped event is handled by one of the submodules (nodes, faults, clients, liveness),
//! which step at most one core per event; the checker then looks at what that step changed.

mod clients;
mod faults;
mod liveness;
mod membership;
mod node;
mod script;

pub use script::Recording;

use crate::checker::history::OpId;
use crate::checker::Checker;
use crate::disk::Disk;
use crate::disk::FetchAnswer;
use crate::fault::Fault;
use crate::net::Network;
use crate::params::Params;
use crate::queue::EventQueue;
use crate::report::Violation;
use crate::rng::{SimRng, Stream};
use crate::trace::{Trace, TraceRecord, What};
use liveness::Liveness;
use replog_core::{Index, Message, NodeId, Output, RaftCore, Term, WriteId};
use replog_driver::settle::{Settlement, Settler};
use std::collections::BTreeMap;

/// Something that happens at an instant of simulated time.
pub(crate) enum Event {
    Tick {
        node: usize,
        generation: u32,
    },
    Deliver(Message),
    FsyncDone {
        node: usize,
        incarnation: u32,
    },
    /// Storage's answer to a core's `Fetch`, read when it was asked.
    Fetched {
        node: usize,
        incarnation: u32,
        fetched: FetchAnswer,
    },
    /// A durability notice that waited out a pause.
    Persisted {
        node: usize,
        incarnation: u32,
        write_id: WriteId,
    },
    ClientWake {
        client: usize,
    },
    ClientArrive {
        op: OpId,
        node: usize,
    },
    ClientReply {
        op: OpId,
        reply: Reply,
    },
    ClientTimeout {
        op: OpId,
        /// Which attempt this timeout is for: a retry starts a new one.
        attempt: u32,
    },
    Fault(Fault),
    SwarmFault,
    /// The swarm's next configuration change (`membership.rs`).
    Membership,
    /// The leader proposes a retention point, then the next one is scheduled.
    Trim,
    /// Cut a node off (if it still leads in this life), then heal after `isolate_us`.
    IsolateLeader {
        node: usize,
        incarnation: u32,
        isolate_us: u64,
    },
    /// A crash decided during a step (a crash point), carried out at its time.
    Crash {
        node: usize,
        incarnation: u32,
        restart_after_us: u64,
    },
    Restart {
        node: usize,
        incarnation: u32,
    },
    Resume {
        node: usize,
        generation: u32,
    },
    /// The ticks a paused node's clock counted while it was stopped, delivered before its
    /// backlog (with leases: a monotonic clock keeps running through a stop).
    MissedTicks {
        node: usize,
        generation: u32,
        count: u64,
    },
    PartitionEnd {
        generation: u64,
    },
    FlapFlip {
        generation: u64,
        flips_left: u32,
        period_us: u64,
    },
    HealMajority,
}

/// What a node tells a client.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Reply {
    Redirect(Option<usize>),
    Acknowledged {
        index: Index,
        term: Term,
    },
    Failed,
    /// A read's answer: the committed log up to `index`, whose entry has `term`.
    Read {
        index: Index,
        term: Term,
    },
    /// A session append below its client's highest sequence number.
    SeqBehind,
}

/// One simulated process and its disk.
pub(crate) struct Node {
    pub id: NodeId,
    /// `None` while crashed.
    pub core: Option<RaftCore>,
    /// Bumped by every crash, so that events meant for an earlier life are ignored.
    pub incarnation: u32,
    /// Bumped whenever the tick chain restarts, so that only one chain runs.
    pub tick_generation: u32,
    /// This node's tick period: the nominal one, skewed.
    pub tick_us: u64,
    /// `Some` while paused: the events that arrived meanwhile, in order.
    pub backlog: Option<Vec<Event>>,
    pub pause_generation: u32,
    /// When the current pause began.
    pub paused_at_us: u64,
    pub disk: Disk,
    /// Proposals this incarnation accepted and not yet settled, accepted at (virtual µs).
    pub proposals: Settler<OpId, u64>,
}

impl Node {
    pub fn is_running(&self) -> bool {
        self.core.is_some() && self.backlog.is_none()
    }
}

pub(crate) struct Client {
    pub leader_guess: Option<usize>,
    /// The sequence number of this client's last append at most once.
    pub last_seq: u64,
    /// Attempts made at the current operation.
    pub attempt: u32,
}

pub(crate) struct Rngs {
    pub net: SimRng,
    pub disk: SimRng,
    pub faults: SimRng,
    pub clients: SimRng,
    pub membership: SimRng,
}

/// Counts for the summary.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    pub events: u64,
    pub messages_sent: u64,
    pub messages_dropped: u64,
    pub crashes: u64,
    pub faults: BTreeMap<&'static str, u64>,
    /// The counters of cores that crashed, summed (live cores hold their own).
    pub past_core_stats: replog_core::Stats,
}

pub struct Simulation {
    pub(crate) params: Params,
    pub(crate) core_seed: u64,
    pub(crate) duration_us: u64,
    pub(crate) now_us: u64,
    pub(crate) queue: EventQueue<Event>,
    pub(crate) nodes: Vec<Node>,
    pub(crate) net: Network,
    pub(crate) checker: Checker,
    pub(crate) clients: Vec<Client>,
    pub(crate) workload_active: bool,
    pub(crate) trace: Trace,
    pub(crate) rng: Rngs,
    /// Reused output buffer: no allocation per step.
    pub(crate) outputs: Vec<Output>,
    /// Reused buffer: the proposals one commit settled, before they are answered.
    pub(crate) settled: Vec<(OpId, Settlement)>,
    pub counters: Counters,
    pub(crate) partition_generation: u64,
    pub(crate) liveness: Option<Liveness>,
    /// A violation found while starting the liveness phase, reported after the event.
    pub(crate) liveness_failure: Option<Violation>,
    /// The node being stepped, to name it if a core assertion fires.
    pub current_node: Option<NodeId>,
    /// A run that handles more events than this, or holds more than `QUEUED_EVENTS_MAX`
    /// pending, fails as an event storm instead of hanging its sweep or exhausting memory.
    pub(crate) event_budget: u64,
    /// What `replog sim run --html` shows, when asked for (see `viewer::record`).
    pub(crate) recording: Option<Box<crate::viewer::record::Recording>>,
    /// Recording this run, or playing a recorded one back.
    pub(crate) replay: script::Replay,
}

/// Events one run may handle: about 300 times what a 60 s swarm seed handles on average
/// (about 60,000), so only a storm or a livelock that keeps the clock still reaches it.
pub const EVENT_BUDGET: u64 = 20_000_000;
/// Events one run may hold pending at once (a few hundred bytes each).
const QUEUED_EVENTS_MAX: usize = 2_000_000;

/// How a run ended.
pub enum Ending {
    /// The liveness phase converged.
    Converged,
    Violated(Violation),
}

impl Simulation {
    pub fn new(
        seed: u64,
        params: Params,
        duration_us: u64,
        schedule: &[(u64, Fault)],
        trace: Trace,
    ) -> Simulation {
        let mut skew_rng = SimRng::new(seed, Stream::Skew);
        let nodes = (0..params.node_count())
            .map(|index| {
                let skew = params.skew_percent_max as i64;
                let percent = skew_rng.between(0, 2 * skew as u64) as i64 - skew;
                Node {
                    id: NodeId(index as u64 + 1),
                    core: None,
                    incarnation: 0,
                    tick_generation: 0,
                    tick_us: skewed(params.tick_us, percent),
                    backlog: None,
                    pause_generation: 0,
                    paused_at_us: 0,
                    disk: Disk::new(NodeId(index as u64 + 1), params.disk.segment_bytes),
                    proposals: Settler::default(),
                }
            })
            .collect();
        let mut sim = Simulation {
            core_seed: SimRng::new(seed, Stream::Core).next_u64(),
            duration_us,
            now_us: 0,
            queue: EventQueue::new(),
            nodes,
            net: Network::new(params.node_count(), params.net.clone()),
            checker: Checker::with_spares(params.nodes, params.membership.spares),
            clients: (0..params.workload.clients)
                .map(|_| Client {
                    leader_guess: None,
                    last_seq: 0,
                    attempt: 0,
                })
                .collect(),
            workload_active: true,
            trace,
            rng: Rngs {
                net: SimRng::new(seed, Stream::Network),
                disk: SimRng::new(seed, Stream::Disk),
                faults: SimRng::new(seed, Stream::Faults),
                clients: SimRng::new(seed, Stream::Clients),
                membership: SimRng::new(seed, Stream::Membership),
            },
            outputs: Vec::with_capacity(64),
            settled: Vec::new(),
            counters: Counters::default(),
            partition_generation: 0,
            liveness: None,
            liveness_failure: None,
            current_node: None,
            event_budget: EVENT_BUDGET,
            recording: None,
            replay: Default::default(),
            params,
        };
        sim.schedule_start(schedule);
        sim
    }

    fn schedule_start(&mut self, schedule: &[(u64, Fault)]) {
        for node in 0..self.nodes.len() {
            self.boot(node);
        }
        for client in 0..self.clients.len() {
            let think_us = self
                .rng
                .clients
                .between(0, self.params.workload.think_us_max);
            self.queue.push(think_us, Event::ClientWake { client });
        }
        for (at_us, fault) in schedule
            .iter()
            .filter(|(at_us, _)| *at_us < self.duration_us)
        {
            self.queue.push(*at_us, Event::Fault(fault.clone()));
        }
        let faults = &self.params.faults;
        if faults.interval_us_max > 0 {
            let first_us = self
                .rng
                .faults
                .between(faults.interval_us_min, faults.interval_us_max);
            self.queue.push(first_us, Event::SwarmFault);
        }
        self.schedule_membership();
        let trim_us = self.params.workload.trim_interval_us;
        if trim_us > 0 {
            self.queue.push(trim_us, Event::Trim);
        }
        self.queue.push(self.duration_us, Event::HealMajority);
    }

    /// Starts node `node` from an empty disk.
    fn boot(&mut self, node: usize) {
        let id = self.nodes[node].id;
        let config = self.params.core_config(id, self.core_seed, 0);
        let core = RaftCore::new(config, Default::default()).expect("a fresh node always starts");
        self.nodes[node].core = Some(core);
        let offset_us = self.rng.net.below(self.nodes[node].tick_us);
        self.queue.push(
            offset_us,
            Event::Tick {
                node,
                generation: 0,
            },
        );
    }

    /// Runs until the liveness phase converges or an invariant breaks.
    pub fn run(&mut self) -> Ending {
        loop {
            match self.play_due_fault() {
                Ok(true) => continue,
                Ok(false) => {}
                Err(violation) => return Ending::Violated(violation),
            }
            let scheduled = self.queue.pop().expect("ticks keep the queue non-empty");
            self.now_us = scheduled.time_us;
            self.count_for_replay(&scheduled.event);
            self.counters.events += 1;
            if let Some(storm) = self.event_storm() {
                return Ending::Violated(storm);
            }
            let handled = self.handle(scheduled.event);
            self.viewer_after_event();
            if let Err(violation) = handled {
                return Ending::Violated(violation);
            }
            if self.liveness.is_some() {
                match self.check_liveness() {
                    Ok(true) => return Ending::Converged,
                    Ok(false) => {}
                    Err(violation) => return Ending::Violated(violation),
                }
            }
        }
    }

    /// Overrides [`EVENT_BUDGET`] (tests).
    pub fn set_event_budget(&mut self, events: u64) {
        self.event_budget = events;
    }

    /// A run that outgrew its event budget or its queue: a message storm or a livelock
    /// that would otherwise run, and grow, without end.
    fn event_storm(&self) -> Option<Violation> {
        let events = self.counters.events;
        let queued = self.queue.len();
        if events <= self.event_budget && queued <= QUEUED_EVENTS_MAX {
            return None;
        }
        Some(Violation::new(
            "Liveness",
            &[],
            format!(
                "event storm: {events} events handled and {queued} pending by simulated time \
                 {:.6}s (budget {} events, {QUEUED_EVENTS_MAX} pending)",
                self.now_us as f64 / 1e6,
                self.event_budget
            ),
        ))
    }

    fn handle(&mut self, event: Event) -> Result<(), Violation> {
        match event {
            Event::Tick { node, generation } => self.on_tick(node, generation),
            Event::Deliver(message) => self.on_deliver(message),
            Event::FsyncDone { node, incarnation } => self.on_fsync_done(node, incarnation),
            Event::Fetched {
                node,
                incarnation,
                fetched,
            } => self.on_fetched(node, incarnation, fetched),
            Event::Persisted {
                node,
                incarnation,
                write_id,
            } => self.on_persisted(node, incarnation, write_id),
            Event::ClientWake { client } => {
                self.on_client_wake(client);
                Ok(())
            }
            Event::ClientArrive { op, node } => self.on_client_arrive(op, node),
            Event::ClientReply { op, reply } => self.on_client_reply(op, reply),
            Event::ClientTimeout { op, attempt } => self.on_client_timeout(op, attempt),
            Event::Fault(fault) => self.apply_fault(&fault),
            Event::SwarmFault => self.on_swarm_fault(),
            Event::Membership => self.on_swarm_membership(),
            Event::Trim => self.on_trim(),
            Event::Crash {
                node,
                incarnation,
                restart_after_us,
            } => {
                if self.nodes[node].incarnation == incarnation && self.liveness.is_none() {
                    *self.counters.faults.entry("crash_point").or_default() += 1;
                    self.crash(node, Some(restart_after_us))?;
                }
                Ok(())
            }
            Event::IsolateLeader {
                node,
                incarnation,
                isolate_us,
            } => {
                self.isolate_new_leader(node, incarnation, isolate_us);
                Ok(())
            }
            Event::Restart { node, incarnation } => {
                if self.nodes[node].incarnation == incarnation {
                    self.restart(node)?;
                }
                Ok(())
            }
            Event::Resume { node, generation } => {
                if self.nodes[node].pause_generation == generation {
                    self.resume(node);
                }
                Ok(())
            }
            Event::MissedTicks {
                node,
                generation,
                count,
            } => self.on_missed_ticks(node, generation, count),
            Event::PartitionEnd { generation } => {
                if generation == self.partition_generation {
                    self.heal_partition();
                }
                Ok(())
            }
            Event::FlapFlip {
                generation,
                flips_left,
                period_us,
            } => {
                self.on_flap(generation, flips_left, period_us);
                Ok(())
            }
            Event::HealMajority => {
                self.start_liveness();
                Ok(())
            }
        }
    }

    pub(crate) fn record(&mut self, node: Option<usize>, what: What) {
        let record = TraceRecord {
            time_us: self.now_us,
            node: node.map_or(0, |index| index as u8 + 1),
            what,
        };
        self.trace.record(record);
        self.viewer_record(record);
    }

    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    pub fn trace_mut(&mut self) -> &mut Trace {
        &mut self.trace
    }

    pub fn checker(&self) -> &Checker {
        &self.checker
    }

    /// Every core's counters, summed over all nodes and all their lives.
    pub fn core_stats(&self) -> replog_core::Stats {
        let mut total = self.counters.past_core_stats.clone();
        for core in self.nodes.iter().filter_map(|node| node.core.as_ref()) {
            crate::coverage::add_stats(&mut total, core.stats());
        }
        total
    }

    pub fn now_us(&self) -> u64 {
        self.now_us
    }

    pub fn liveness_times(&self) -> Option<(Option<u64>, Option<u64>, Option<u64>)> {
        self.liveness.as_ref().map(|l| {
            (
                l.leader_after_us(),
                l.committed_after_us(),
                l.converged_after_us(),
            )
        })
    }
}

/// `tick_us` made `percent` % longer (positive) or shorter (negative); never zero.
pub(crate) fn skewed(tick_us: u64, percent: i64) -> u64 {
    ((tick_us as i64 * (100 + percent)) / 100).max(1) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_past_its_event_budget_fails_as_an_event_storm_with_its_count() {
        let mut sim = Simulation::new(7, Params::calm(3), 10_000_000, &[], Trace::new(None));
        sim.set_event_budget(1_000);
        let Ending::Violated(violation) = sim.run() else {
            panic!("a 10 s run handles more than 1,000 events");
        };
        assert_eq!(violation.invariant, "Liveness");
        assert!(
            violation.detail.contains("event storm: 1001 events"),
            "{}",
            violation.detail
        );
    }

    #[test]
    fn the_default_budget_leaves_an_ordinary_run_alone() {
        let mut sim = Simulation::new(7, Params::calm(3), 5_000_000, &[], Trace::new(None));
        assert!(matches!(sim.run(), Ending::Converged));
        assert!(sim.counters.events < EVENT_BUDGET / 100);
    }
}
