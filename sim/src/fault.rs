//! The faults a scenario schedules (and the swarm draws): typed, parsed with serde.

use crate::rng::Ratio;
use serde::{Deserialize, Serialize};

/// Which node a fault hits, resolved when the fault fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// The live leader with the highest term, or a random live node when there is none.
    Leader,
    /// A random live node that is not the leader.
    Follower,
    /// Any node.
    Random,
    /// Node `id` (1-based, as in the cluster).
    Node(u64),
}

/// The direction a one-way partition cuts, seen from its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The target hears nothing; what it sends still arrives.
    Inbound,
    /// Nothing the target sends arrives; it still hears everyone.
    Outbound,
}

/// One fault. In a scenario file: `{"kind": "isolate", "target": "leader"}`.
///
/// A new partition replaces the current one; `heal` ends it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// End every partition.
    Heal,
    /// Symmetric split: `group` (random half when absent) against the rest.
    Split {
        #[serde(default)]
        group: Option<Vec<u64>>,
    },
    /// Cut one node off from every other.
    Isolate { target: Target },
    /// Cut a random minority off from the majority.
    Minority,
    /// Asymmetric: cut one direction of every link of `target`.
    OneWay {
        target: Target,
        direction: Direction,
    },
    /// Two halves that cannot talk, and `target` that talks to both. `side` names one half
    /// (the other nodes but the target are the other); a random split when absent.
    Bridge {
        target: Target,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        side: Option<Vec<u64>>,
    },
    /// A random split that forms and heals every `period_ms`, `flips` times.
    Flap { period_ms: u64, flips: u32 },
    /// Kill the process: unsynced writes may be lost or torn. Restart after `restart_after_ms`
    /// or when a `restart` fault (or the liveness phase) says so.
    Crash {
        target: Target,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        restart_after_ms: Option<u64>,
        /// The same to the microsecond (a recording's crash points); not with the other.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        restart_after_us: Option<u64>,
    },
    /// Crash a majority at once, leader first.
    CrashMajority {
        #[serde(default)]
        restart_after_ms: Option<u64>,
    },
    /// Restart `target`, or every crashed node when absent.
    Restart {
        #[serde(default)]
        target: Option<Target>,
    },
    /// Stop the process; it resumes after `duration_ms` with the backlog that piled up.
    Pause { target: Target, duration_ms: u64 },
    /// Lose this share of every message from now on.
    Loss { ratio: Ratio },
    /// Deliver this share of messages twice from now on.
    Duplicate { ratio: Ratio },
    /// Make `target`'s clock run `percent` % slower (positive) or faster (negative).
    Skew { target: Target, percent: i32 },
    /// Ask the current leader to hand its leadership to `to` (thesis §3.10): `leader`
    /// names the leader itself (refused), any other target a random other node, lagging,
    /// partitioned or crashed ones included. Nothing happens while no node leads.
    Transfer { to: Target },
    /// A configuration change proposed at the current leader (`engine/membership.rs`):
    /// `{"kind": "membership", "change": "remove_leader"}`, or with `"node": 4` to name
    /// whom an `add_learner`, `promote` or `remove_member` changes.
    Membership {
        change: MemberChange,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<u64>,
    },
}

/// Which configuration change a [`Fault::Membership`] proposes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberChange {
    /// Add a node that is not a member (a spare, or a removed node with its disk) as a
    /// learner.
    AddLearner,
    /// Promote a learner to voter.
    Promote,
    /// Remove a member (a random voter or learner).
    RemoveMember,
    /// Remove the leader itself.
    RemoveLeader,
    /// Remove a crashed voter, and later add a spare in its place (then promote it).
    ReplaceCrashed,
    /// Two changes proposed back to back: the second must be refused as pending.
    Racing,
}

impl MemberChange {
    pub const ALL: [MemberChange; 6] = [
        MemberChange::AddLearner,
        MemberChange::Promote,
        MemberChange::RemoveMember,
        MemberChange::RemoveLeader,
        MemberChange::ReplaceCrashed,
        MemberChange::Racing,
    ];

    pub fn name(self) -> &'static str {
        match self {
            MemberChange::AddLearner => "member_add_learner",
            MemberChange::Promote => "member_promote",
            MemberChange::RemoveMember => "member_remove",
            MemberChange::RemoveLeader => "member_remove_leader",
            MemberChange::ReplaceCrashed => "member_replace_crashed",
            MemberChange::Racing => "member_racing",
        }
    }
}

impl Fault {
    /// A short name, for summaries and traces.
    pub fn name(&self) -> &'static str {
        match self {
            Fault::Heal => "heal",
            Fault::Split { .. } => "split",
            Fault::Isolate {
                target: Target::Leader,
            } => "isolate_leader",
            Fault::Isolate { .. } => "isolate",
            Fault::Minority => "minority",
            Fault::OneWay { .. } => "one_way",
            Fault::Bridge { .. } => "bridge",
            Fault::Flap { .. } => "flap",
            Fault::Crash {
                target: Target::Leader,
                ..
            } => "crash_leader",
            Fault::Crash { .. } => "crash",
            Fault::CrashMajority { .. } => "crash_majority",
            Fault::Restart { .. } => "restart",
            Fault::Pause { .. } => "pause",
            Fault::Loss { .. } => "loss",
            Fault::Duplicate { .. } => "duplicate",
            Fault::Skew { .. } => "skew",
            Fault::Transfer { .. } => "transfer",
            Fault::Membership { change, .. } => change.name(),
        }
    }

    /// Checks what serde cannot: ratios, node ids, sizes.
    pub fn validate(&self, nodes: usize) -> Result<(), String> {
        let check_target = |target: &Target| match target {
            Target::Node(id) if *id == 0 || *id > nodes as u64 => {
                Err(format!("node {id} is not in a {nodes}-node cluster"))
            }
            _ => Ok(()),
        };
        match self {
            Fault::Split { group: Some(group) } => {
                if group.is_empty() || group.len() >= nodes {
                    return Err("a split group must hold some but not all nodes".into());
                }
                group
                    .iter()
                    .try_for_each(|&id| check_target(&Target::Node(id)))
            }
            Fault::Crash {
                restart_after_ms: Some(_),
                restart_after_us: Some(_),
                ..
            } => Err("give restart_after_ms or restart_after_us, not both".into()),
            Fault::Isolate { target }
            | Fault::OneWay { target, .. }
            | Fault::Bridge { target, side: None }
            | Fault::Crash { target, .. }
            | Fault::Pause { target, .. }
            | Fault::Transfer { to: target }
            | Fault::Restart {
                target: Some(target),
            } => check_target(target),
            Fault::Skew { target, percent } => {
                if !(-90..=400).contains(percent) {
                    return Err(format!("skew {percent} % is outside -90..=400"));
                }
                check_target(target)
            }
            Fault::Bridge {
                target,
                side: Some(side),
            } => {
                check_target(target)?;
                if side.is_empty() || side.contains(&bridge_id(target)) {
                    return Err("a bridge's side must hold some nodes, not the bridge".into());
                }
                side.iter()
                    .try_for_each(|&id| check_target(&Target::Node(id)))
            }
            Fault::Loss { ratio } | Fault::Duplicate { ratio } => ratio.validate(),
            Fault::Membership { node: Some(id), .. } => check_target(&Target::Node(*id)),
            Fault::Flap { period_ms: 0, .. } => Err("flap period must be positive".into()),
            _ => Ok(()),
        }
    }
}

/// The node a bridge names, or 0 (no node) when it is resolved only when it fires.
fn bridge_id(target: &Target) -> u64 {
    match target {
        Target::Node(id) => *id,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_read_from_json() {
        let fault: Fault = serde_json::from_str(r#"{"kind":"isolate","target":"leader"}"#).unwrap();
        assert_eq!(fault.name(), "isolate_leader");
        let fault: Fault =
            serde_json::from_str(r#"{"kind":"crash","target":{"node":2},"restart_after_ms":50}"#)
                .unwrap();
        assert_eq!(
            fault,
            Fault::Crash {
                target: Target::Node(2),
                restart_after_ms: Some(50),
                restart_after_us: None,
            }
        );
        let fault: Fault = serde_json::from_str(r#"{"kind":"loss","ratio":[3,10]}"#).unwrap();
        assert_eq!(fault.validate(5), Ok(()));
        assert!(
            serde_json::from_str::<Fault>(r#"{"kind":"isolate","target":"leader","x":1}"#).is_err()
        );
        assert!(serde_json::from_str::<Fault>(r#"{"kind":"explode"}"#).is_err());
    }

    #[test]
    fn validation_rejects_unknown_nodes_and_zero_denominators() {
        let crash = Fault::Crash {
            target: Target::Node(4),
            restart_after_ms: None,
            restart_after_us: None,
        };
        assert!(crash.validate(3).is_err());
        let twice = Fault::Crash {
            target: Target::Node(1),
            restart_after_ms: Some(1),
            restart_after_us: Some(1000),
        };
        assert!(twice.validate(3).is_err());
        assert!(Fault::Loss { ratio: Ratio(1, 0) }.validate(3).is_err());
    }
}
