//! Injecting faults: the scenario's schedule and the swarm's random draws.

use super::{skewed, Event, Simulation};
use crate::fault::{Direction, Fault, Target};
use crate::net::NodeSet;
use crate::params::FaultKind;
use crate::report::Violation;
use crate::trace::What;
use replog_core::Role;

impl Simulation {
    pub(crate) fn apply_fault(&mut self, fault: &Fault) -> Result<(), Violation> {
        if self.liveness.is_some() {
            return Ok(()); // The liveness phase has begun: no more faults.
        }
        *self.counters.faults.entry(fault.name()).or_default() += 1;
        let mut hit: NodeSet = 0;
        match fault {
            Fault::Heal => self.heal_partition(),
            Fault::Split { group } => {
                let side = match group {
                    Some(ids) => ids.iter().fold(0, |set, &id| set | 1 << (id - 1)),
                    None => self.random_group(self.nodes.len() / 2),
                };
                hit = side;
                self.new_partition().split(side);
                self.note_split(side);
            }
            Fault::Isolate { target } => {
                let node = self.resolve(*target);
                hit = 1 << node;
                self.new_partition().split(hit);
                self.note_split(hit);
            }
            Fault::Minority => {
                let size = self
                    .rng
                    .faults
                    .between(1, (self.nodes.len() as u64 - 1) / 2);
                hit = self.random_group(size as usize);
                self.new_partition().split(hit);
                self.note_split(hit);
            }
            Fault::OneWay { target, direction } => {
                let node = self.resolve(*target);
                hit = 1 << node;
                let inbound = *direction == Direction::Inbound;
                self.new_partition().one_way(node, inbound);
                self.note_fault(Fault::OneWay {
                    target: Target::Node(node as u64 + 1),
                    direction: *direction,
                });
            }
            Fault::Bridge { target, side } => {
                let bridge = self.resolve(*target);
                hit = 1 << bridge;
                let side = match side {
                    Some(ids) => ids.iter().fold(0, |set, &id| set | 1 << (id - 1)),
                    None => self.random_bridge_side(bridge),
                };
                self.new_partition().bridge(side, bridge);
                self.note_bridge(side, bridge);
            }
            Fault::Flap { period_ms, flips } => {
                self.partition_generation += 1;
                let event = Event::FlapFlip {
                    generation: self.partition_generation,
                    flips_left: *flips,
                    period_us: period_ms * 1000,
                };
                self.queue.push(self.now_us, event);
            }
            Fault::Crash {
                target,
                restart_after_ms,
                restart_after_us,
            } => {
                let node = self.resolve(*target);
                hit = 1 << node;
                let restart_after_us = restart_after_ms.map(|ms| ms * 1000).or(*restart_after_us);
                self.crash(node, restart_after_us)?;
            }
            Fault::CrashMajority { restart_after_ms } => {
                hit = self.crash_majority(restart_after_ms.map(|ms| ms * 1000))?;
            }
            Fault::Restart { target } => {
                for node in 0..self.nodes.len() {
                    let chosen = match target {
                        None => true,
                        Some(Target::Node(id)) => node as u64 + 1 == *id,
                        Some(_) => self.nodes[node].core.is_none(),
                    };
                    if chosen && self.nodes[node].core.is_none() {
                        hit |= 1 << node;
                        self.note_restart(node);
                        self.restart(node)?;
                        if target.is_some() {
                            break;
                        }
                    }
                }
            }
            Fault::Pause {
                target,
                duration_ms,
            } => {
                let node = self.resolve(*target);
                hit = 1 << node;
                self.pause(node, duration_ms * 1000);
            }
            Fault::Loss { ratio } => {
                self.net.params.loss = *ratio;
                self.note_fault(fault.clone());
            }
            Fault::Duplicate { ratio } => {
                self.net.params.duplicate = *ratio;
                self.note_fault(fault.clone());
            }
            Fault::Transfer { to } => {
                hit = self.transfer_leadership(*to)?;
            }
            Fault::Skew { target, percent } => {
                let node = self.resolve(*target);
                hit = 1 << node;
                self.nodes[node].tick_us = skewed(self.params.tick_us, i64::from(*percent));
                self.note_fault(Fault::Skew {
                    target: Target::Node(node as u64 + 1),
                    percent: *percent,
                });
            }
            Fault::Membership { change, node } => hit = self.change_membership(*change, *node)?,
        }
        self.record(
            None,
            What::Fault {
                name: fault.name(),
                nodes: hit,
            },
        );
        Ok(())
    }

    /// The swarm's next random fault, drawn by this seed's weights.
    pub(crate) fn on_swarm_fault(&mut self) -> Result<(), Violation> {
        if self.liveness.is_some() {
            return Ok(());
        }
        let params = self.params.faults.clone();
        let Some(kind) = self.rng.faults.weighted(&params.weights) else {
            return Ok(());
        };
        let rng = &mut self.rng.faults;
        let restart_after_ms = Some(rng.between(params.down_us_min, params.down_us_max) / 1000);
        let random_side = *rng.pick(&[Target::Random, Target::Leader]);
        let fault = match FaultKind::ALL[kind] {
            FaultKind::Split => Fault::Split { group: None },
            FaultKind::Isolate => Fault::Isolate {
                target: Target::Random,
            },
            FaultKind::IsolateLeader => Fault::Isolate {
                target: Target::Leader,
            },
            FaultKind::Minority => Fault::Minority,
            FaultKind::OneWay => Fault::OneWay {
                target: random_side,
                direction: *rng.pick(&[Direction::Inbound, Direction::Outbound]),
            },
            FaultKind::Bridge => Fault::Bridge {
                target: Target::Random,
                side: None,
            },
            FaultKind::Flap => Fault::Flap {
                period_ms: rng.between(20, 500),
                flips: rng.between(2, 12) as u32,
            },
            FaultKind::CrashRandom => Fault::Crash {
                target: Target::Random,
                restart_after_ms,
                restart_after_us: None,
            },
            FaultKind::CrashLeader => Fault::Crash {
                target: Target::Leader,
                restart_after_ms,
                restart_after_us: None,
            },
            FaultKind::CrashMajority => Fault::CrashMajority { restart_after_ms },
            FaultKind::Pause => Fault::Pause {
                target: random_side,
                duration_ms: rng.between(1_000, params.pause_us_max) / 1000,
            },
            FaultKind::Transfer => Fault::Transfer { to: Target::Random },
        };
        let partition_us = rng.between(params.partition_us_max / 10, params.partition_us_max);
        let next_us = rng.between(params.interval_us_min, params.interval_us_max);
        let is_partition = matches!(
            fault,
            Fault::Split { .. }
                | Fault::Isolate { .. }
                | Fault::Minority
                | Fault::OneWay { .. }
                | Fault::Bridge { .. }
        );
        self.apply_fault(&fault)?;
        if is_partition {
            let generation = self.partition_generation;
            self.queue.push(
                self.now_us + partition_us,
                Event::PartitionEnd { generation },
            );
        }
        self.queue.push(self.now_us + next_us, Event::SwarmFault);
        Ok(())
    }

    /// The new-leader strike: isolate `node` if it is still up in the same life and still
    /// leads, and heal that partition after `isolate_us` unless another replaced it.
    pub(crate) fn isolate_new_leader(&mut self, node: usize, incarnation: u32, isolate_us: u64) {
        let state = &self.nodes[node];
        let leads = state
            .core
            .as_ref()
            .is_some_and(|core| core.role() == Role::Leader);
        if state.incarnation != incarnation || !leads || self.liveness.is_some() {
            return;
        }
        *self
            .counters
            .faults
            .entry("isolate_new_leader")
            .or_default() += 1;
        self.new_partition().split(1 << node);
        self.note_split(1 << node);
        let generation = self.partition_generation;
        self.queue
            .push(self.now_us + isolate_us, Event::PartitionEnd { generation });
        self.record(
            None,
            What::Fault {
                name: "isolate_new_leader",
                nodes: 1 << node,
            },
        );
    }

    pub(crate) fn on_flap(&mut self, generation: u64, flips_left: u32, period_us: u64) {
        if generation != self.partition_generation || self.liveness.is_some() {
            return;
        }
        if flips_left.is_multiple_of(2) {
            self.net.heal_all();
            self.note_fault(Fault::Heal);
        } else {
            let side = self.random_group(self.nodes.len() / 2);
            self.net.split(side);
            self.note_split(side);
        }
        if flips_left > 0 {
            let event = Event::FlapFlip {
                generation,
                flips_left: flips_left - 1,
                period_us,
            };
            self.queue.push(self.now_us + period_us, event);
        }
    }

    pub(crate) fn heal_partition(&mut self) {
        self.partition_generation += 1;
        self.net.heal_all();
        self.note_fault(Fault::Heal);
    }

    /// Starts a new partition, cancelling the end or flapping of the previous one.
    fn new_partition(&mut self) -> &mut crate::net::Network {
        self.partition_generation += 1;
        &mut self.net
    }

    /// Half of the nodes other than `bridge`, at random.
    fn random_bridge_side(&mut self, bridge: usize) -> NodeSet {
        let mut others: Vec<usize> = (0..self.nodes.len()).filter(|&n| n != bridge).collect();
        self.rng.faults.shuffle(&mut others);
        others[..others.len() / 2]
            .iter()
            .fold(0, |set, &n| set | 1 << n)
    }

    /// `size` distinct random nodes.
    fn random_group(&mut self, size: usize) -> NodeSet {
        let mut nodes: Vec<usize> = (0..self.nodes.len()).collect();
        self.rng.faults.shuffle(&mut nodes);
        nodes[..size.max(1)].iter().fold(0, |set, &n| set | 1 << n)
    }

    /// The live leader with the highest term, if any.
    pub(crate) fn current_leader(&self) -> Option<usize> {
        (0..self.nodes.len())
            .filter_map(|n| {
                let core = self.nodes[n].core.as_ref()?;
                (core.role() == Role::Leader).then_some((core.term(), n))
            })
            .max()
            .map(|(_, n)| n)
    }

    fn resolve(&mut self, target: Target) -> usize {
        let live: Vec<usize> = (0..self.nodes.len())
            .filter(|&n| self.nodes[n].core.is_some())
            .collect();
        let leader = self.current_leader();
        match target {
            Target::Node(id) => (id - 1) as usize,
            Target::Leader if leader.is_some() => leader.expect("checked"),
            Target::Follower => {
                let followers: Vec<usize> = live
                    .iter()
                    .copied()
                    .filter(|&n| Some(n) != leader)
                    .collect();
                self.pick_or_any(&followers)
            }
            Target::Leader | Target::Random => self.pick_or_any(&live),
        }
    }

    fn pick_or_any(&mut self, candidates: &[usize]) -> usize {
        if candidates.is_empty() {
            self.rng.faults.below(self.nodes.len() as u64) as usize
        } else {
            *self.rng.faults.pick(candidates)
        }
    }

    /// Asks the current leader, if one runs, to hand its leadership to `to` (a random
    /// other node unless `to` names one): the core must answer in the same step, exactly
    /// once. Returns the nodes involved.
    fn transfer_leadership(&mut self, to: Target) -> Result<NodeSet, Violation> {
        let Some(leader) = self
            .current_leader()
            .filter(|&n| self.nodes[n].is_running())
        else {
            return Ok(0);
        };
        let to = match to {
            Target::Node(id) => (id - 1) as usize,
            Target::Leader => leader,
            Target::Follower | Target::Random => {
                let others: Vec<usize> = (0..self.nodes.len()).filter(|&n| n != leader).collect();
                self.pick_or_any(&others)
            }
        };
        // Written down resolved, as every fault is, so that a recording replays it.
        self.note_fault(Fault::Transfer {
            to: Target::Node(to as u64 + 1),
        });
        let input = replog_core::Input::Transfer {
            to: self.nodes[to].id,
        };
        self.step_core(leader, input)?;
        let answers = self.outputs.iter();
        let answers = answers.filter(|o| matches!(o, replog_core::Output::Transfer(_)));
        if answers.count() != 1 {
            return Err(Violation::new(
                "Transfer Contract",
                &[self.nodes[leader].id],
                "a transfer was not answered exactly once in its step",
            ));
        }
        self.dispatch_outputs(leader)?;
        Ok(1 << leader | 1 << to)
    }

    /// Crashes the leader (if any) and then random live nodes until a majority is down.
    fn crash_majority(&mut self, restart_after_us: Option<u64>) -> Result<NodeSet, Violation> {
        let majority = self.nodes.len() / 2 + 1;
        let mut hit: NodeSet = 0;
        if let Some(leader) = self.current_leader() {
            hit |= 1 << leader;
            self.crash(leader, restart_after_us)?;
        }
        let mut others: Vec<usize> = (0..self.nodes.len())
            .filter(|&n| hit & (1 << n) == 0)
            .collect();
        self.rng.faults.shuffle(&mut others);
        for node in others
            .into_iter()
            .take(majority - hit.count_ones() as usize)
        {
            hit |= 1 << node;
            // Stagger restarts a little so that they do not all come back in lockstep.
            let jitter_us = self.rng.faults.between(0, 5_000);
            self.crash(node, restart_after_us.map(|us| us + jitter_us))?;
        }
        Ok(hit)
    }
}
