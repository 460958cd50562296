//! Writing a run down, and playing a written-down run back: what shrinking works on.
//!
//! Recording notes every fault's effect when it happens, already resolved (which node,
//! which side of a split), so a crash point, a partition's end or a flap's flip is a fault
//! like any other; and every client operation (when, which client, which node). Playing
//! back fires each fault at its microsecond and at its place among the events due then
//! (after as many of them as the original run had handled first), and lets each client
//! run only its scripted operations. A played-back run draws no random faults: the
//! recording holds what they did.
//!
//! Events that only make faults happen (a swarm draw, a partition's end, a crash point, a
//! delayed restart, a flap's flip) exist in the original run and not in its replay, so
//! they are not counted when placing a fault among the events of its microsecond.

use super::{Event, Simulation};
use crate::checker::history::OpKind;
use crate::fault::{Fault, Target};
use crate::net::NodeSet;
use crate::report::Violation;
use crate::scenario::{Operation, TimedFault};
use std::collections::VecDeque;

/// A run written down as data.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recording {
    /// Each fault as it took effect, with `at_us` and `after_events`.
    pub faults: Vec<TimedFault>,
    pub operations: Vec<Operation>,
    /// The nodes healed for the liveness phase (1-based), when the run got there.
    pub heal_majority: Option<Vec<u64>>,
}

#[derive(Default)]
pub(crate) struct Replay {
    recording: Option<Recording>,
    /// Faults still to play: (time, events of that microsecond before it, fault).
    faults: VecDeque<(u64, u32, Fault)>,
    /// Events that are not fault machinery handled so far at `counted_at_us`.
    counted: u32,
    counted_at_us: u64,
    /// Each client's remaining operations, in time order.
    script: Option<Vec<VecDeque<Operation>>>,
    majority: Option<Vec<usize>>,
}

/// What a waking client does.
pub(crate) enum Wake {
    /// Not scripted: it picks its node as usual.
    Free,
    /// Its next scripted operation is due: send it (an append or a read) to this node.
    Invoke(usize, OpKind),
    /// Nothing to do now (it was woken again for its next operation, or has none left).
    Idle,
}

impl Simulation {
    pub fn start_recording(&mut self) {
        self.replay.recording = Some(Recording::default());
    }

    pub fn take_recording(&mut self) -> Option<Recording> {
        self.replay.recording.take()
    }

    /// Plays `faults` back (those before the end of the fault phase), runs the clients
    /// on `operations` only when given, and heals `heal_majority` (1-based) when given.
    pub fn play(
        &mut self,
        faults: &[TimedFault],
        operations: Option<&[Operation]>,
        heal_majority: Option<&[u64]>,
    ) {
        let mut faults: Vec<(u64, u32, Fault)> = faults
            .iter()
            .filter(|timed| timed.time_us() < self.duration_us)
            .map(|timed| {
                let after = timed.after_events.unwrap_or(0);
                (timed.time_us(), after, timed.fault.clone())
            })
            .collect();
        // Stable: faults at the same place fire in the order given.
        faults.sort_by_key(|(at_us, after, _)| (*at_us, *after));
        self.replay.faults = faults.into();
        if let Some(operations) = operations {
            let mut script = vec![VecDeque::new(); self.clients.len()];
            let mut sorted = operations.to_vec();
            sorted.sort_by_key(|operation| operation.at_us);
            for operation in sorted {
                script[operation.client].push_back(operation);
            }
            self.replay.script = Some(script);
        }
        self.replay.majority =
            heal_majority.map(|ids| ids.iter().map(|&id| id as usize - 1).collect());
    }

    /// Fires the next fault to play back if its place has come: nothing else is due
    /// before its microsecond, and as many of that microsecond's events as it follows have
    /// run. Returns whether one fired.
    pub(crate) fn play_due_fault(&mut self) -> Result<bool, Violation> {
        let Some(&(at_us, after, _)) = self.replay.faults.front() else {
            return Ok(false);
        };
        let next_us = self.queue.next_time_us().unwrap_or(u64::MAX);
        let handled = if self.replay.counted_at_us == at_us {
            self.replay.counted
        } else {
            0
        };
        if at_us > next_us || (at_us == next_us && handled < after) {
            return Ok(false);
        }
        let (_, _, fault) = self.replay.faults.pop_front().expect("peeked");
        self.now_us = self.now_us.max(at_us);
        self.apply_fault(&fault)?;
        Ok(true)
    }

    /// Counts `event` toward the place of faults in its microsecond (see the module doc).
    pub(crate) fn count_for_replay(&mut self, event: &Event) {
        let fault_machinery = matches!(
            event,
            Event::Fault(_)
                | Event::SwarmFault
                | Event::Membership
                | Event::IsolateLeader { .. }
                | Event::Crash { .. }
                | Event::Restart { .. }
                | Event::PartitionEnd { .. }
                | Event::FlapFlip { .. }
        );
        if fault_machinery {
            return;
        }
        let replay = &mut self.replay;
        if replay.counted_at_us != self.now_us {
            replay.counted_at_us = self.now_us;
            replay.counted = 0;
        }
        replay.counted += 1;
    }

    pub(crate) fn scripted_wake(&mut self, client: usize) -> Wake {
        let Some(script) = &mut self.replay.script else {
            return Wake::Free;
        };
        let Some(next) = script[client].front().copied() else {
            return Wake::Idle;
        };
        if next.at_us > self.now_us {
            self.queue.push(next.at_us, Event::ClientWake { client });
            return Wake::Idle;
        }
        script[client].pop_front();
        let kind = next.read.map_or(OpKind::Append, OpKind::Read);
        Wake::Invoke(next.node as usize - 1, kind)
    }

    pub(crate) fn note_operation(&mut self, client: usize, node: usize, kind: OpKind) {
        let at_us = self.now_us;
        if let Some(recording) = &mut self.replay.recording {
            recording.operations.push(Operation {
                at_us,
                client,
                node: node as u64 + 1,
                read: match kind {
                    OpKind::Append => None,
                    OpKind::Read(consistency) => Some(consistency),
                },
            });
        }
    }

    /// The liveness phase's majority, when the script fixes it.
    pub(crate) fn scripted_majority(&self) -> Option<Vec<usize>> {
        self.replay.majority.clone()
    }

    pub(crate) fn note_majority(&mut self, members: &[usize]) {
        if let Some(recording) = &mut self.replay.recording {
            recording.heal_majority = Some(members.iter().map(|&n| n as u64 + 1).collect());
        }
    }

    /// Notes a fault that took effect now. The liveness phase's own healing and restarts
    /// are not faults.
    pub(crate) fn note_fault(&mut self, fault: Fault) {
        let at_us = self.now_us;
        if self.liveness.is_some() {
            return;
        }
        let after = if self.replay.counted_at_us == at_us {
            self.replay.counted
        } else {
            0
        };
        if let Some(recording) = &mut self.replay.recording {
            recording.faults.push(TimedFault {
                at_ms: None,
                at_us: Some(at_us),
                after_events: Some(after),
                fault,
            });
        }
    }

    pub(crate) fn note_split(&mut self, side: NodeSet) {
        let fault = if side.count_ones() == 1 {
            Fault::Isolate {
                target: node_target(side.trailing_zeros() as usize),
            }
        } else {
            Fault::Split {
                group: Some(ids(side)),
            }
        };
        self.note_fault(fault);
    }

    pub(crate) fn note_bridge(&mut self, side: NodeSet, bridge: usize) {
        self.note_fault(Fault::Bridge {
            target: node_target(bridge),
            side: Some(ids(side)),
        });
    }

    /// A crash and, when it comes back on its own, its downtime: the restart is queued
    /// when the crash happens, in the replay as in the original.
    pub(crate) fn note_crash(&mut self, node: usize, restart_after_us: Option<u64>) {
        self.note_fault(Fault::Crash {
            target: node_target(node),
            restart_after_ms: None,
            restart_after_us,
        });
    }

    pub(crate) fn note_restart(&mut self, node: usize) {
        self.note_fault(Fault::Restart {
            target: Some(node_target(node)),
        });
    }

    pub(crate) fn note_pause(&mut self, node: usize, duration_us: u64) {
        self.note_fault(Fault::Pause {
            target: node_target(node),
            duration_ms: duration_us.div_ceil(1000),
        });
    }
}

fn node_target(node: usize) -> Target {
    Target::Node(node as u64 + 1)
}

/// The 1-based ids of a set of nodes.
fn ids(set: NodeSet) -> Vec<u64> {
    (0..NodeSet::BITS as u64)
        .filter(|&n| set & (1 << n) != 0)
        .map(|n| n + 1)
        .collect()
}
