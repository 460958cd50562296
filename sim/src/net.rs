//! The simulated network: per-message latency, loss, duplication, reordering, and
//! partitions kept as a matrix of cut directed links.

use crate::params::NetParams;
use crate::rng::SimRng;

/// A set of nodes, one bit per node index (clusters have at most 9 nodes).
pub type NodeSet = u16;

pub fn contains(set: NodeSet, node: usize) -> bool {
    set & (1 << node) != 0
}

/// What becomes of one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    Lost(&'static str),
    Deliver {
        delay_us: u64,
        duplicate_delay_us: Option<u64>,
    },
}

pub struct Network {
    nodes: usize,
    /// `cut[from]` has bit `to` set when nothing sent from `from` reaches `to`.
    cut: Vec<NodeSet>,
    /// Liveness phase: every link into or out of these nodes is up and lossless, whatever
    /// else holds. Links among the other nodes keep their faults.
    healed: NodeSet,
    pub params: NetParams,
}

impl Network {
    pub fn new(nodes: usize, params: NetParams) -> Network {
        Network {
            nodes,
            cut: vec![0; nodes],
            healed: 0,
            params,
        }
    }

    /// Decides a message's fate as it is sent: a partition or loss at send time drops it,
    /// otherwise it arrives after a random delay, maybe twice.
    pub fn route(&self, from: usize, to: usize, rng: &mut SimRng) -> Fate {
        let healed = contains(self.healed, from) || contains(self.healed, to);
        if !healed {
            if contains(self.cut[from], to) {
                return Fate::Lost("partitioned");
            }
            if rng.chance(self.params.loss) {
                return Fate::Lost("lost");
            }
        }
        let delay_us = self.delay(rng);
        let duplicate_delay_us =
            (!healed && rng.chance(self.params.duplicate)).then(|| self.delay(rng));
        Fate::Deliver {
            delay_us,
            duplicate_delay_us,
        }
    }

    /// One message's latency, with the reordering tail.
    pub fn delay(&self, rng: &mut SimRng) -> u64 {
        let params = &self.params;
        let mut delay_us = rng.between(params.latency_us_min, params.latency_us_max);
        if rng.chance(params.reorder) {
            delay_us += rng.between(0, params.reorder_delay_us_max);
        }
        delay_us
    }

    pub fn is_cut(&self, from: usize, to: usize) -> bool {
        contains(self.cut[from], to)
    }

    /// Whether a partition drops what `from` sends `to` now (the liveness phase's healed
    /// links never are).
    pub fn link_down(&self, from: usize, to: usize) -> bool {
        self.is_cut(from, to) && !contains(self.healed, from) && !contains(self.healed, to)
    }

    pub fn heal_all(&mut self) {
        self.cut.iter_mut().for_each(|links| *links = 0);
    }

    /// Replaces the partition with a symmetric cut between `side` and everyone else.
    pub fn split(&mut self, side: NodeSet) {
        self.heal_all();
        for from in 0..self.nodes {
            for to in 0..self.nodes {
                if contains(side, from) != contains(side, to) {
                    self.cut[from] |= 1 << to;
                }
            }
        }
    }

    /// Replaces the partition with one that cuts every link into (`inbound`) or out of `node`.
    pub fn one_way(&mut self, node: usize, inbound: bool) {
        self.heal_all();
        for other in (0..self.nodes).filter(|&other| other != node) {
            if inbound {
                self.cut[other] |= 1 << node;
            } else {
                self.cut[node] |= 1 << other;
            }
        }
    }

    /// Replaces the partition with a cut between `side` and the rest, except `bridge`, which
    /// talks to both.
    pub fn bridge(&mut self, side: NodeSet, bridge: usize) {
        self.split(side);
        for other in 0..self.nodes {
            self.cut[bridge] &= !(1 << other);
            self.cut[other] &= !(1 << bridge);
        }
    }

    /// Liveness phase: from now on, every link touching `set` is healthy. (Healing only the
    /// links within `set` is not enough: a leader outside it that reaches part of `set`
    /// keeps the rest from electing anyone, Raft's known partial-connectivity limit.)
    pub fn heal_among(&mut self, set: NodeSet) {
        self.healed = set;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::Params;
    use crate::rng::{Ratio, Stream};

    fn network() -> (Network, SimRng) {
        let net = Network::new(5, Params::calm(5).net);
        (net, SimRng::new(1, Stream::Network))
    }

    #[test]
    fn split_cuts_both_directions_across_sides_only() {
        let (mut net, _) = network();
        net.split(0b00011);
        assert!(net.is_cut(0, 2) && net.is_cut(2, 0));
        assert!(!net.is_cut(0, 1) && !net.is_cut(3, 4));
    }

    #[test]
    fn one_way_and_bridge_cut_what_they_say() {
        let (mut net, _) = network();
        net.one_way(2, true);
        assert!(net.is_cut(0, 2) && !net.is_cut(2, 0));
        net.bridge(0b00011, 4);
        assert!(net.is_cut(0, 2) && net.is_cut(3, 1));
        assert!(!net.is_cut(4, 0) && !net.is_cut(2, 4));
    }

    #[test]
    fn healed_links_ignore_cuts_and_loss() {
        let (mut net, mut rng) = network();
        net.params.loss = Ratio(1, 1);
        net.split(0b00001);
        assert_eq!(net.route(0, 1, &mut rng), Fate::Lost("partitioned"));
        assert_eq!(net.route(1, 2, &mut rng), Fate::Lost("lost"));
        net.heal_among(0b00111);
        assert!(matches!(net.route(0, 1, &mut rng), Fate::Deliver { .. }));
        assert!(matches!(net.route(3, 0, &mut rng), Fate::Deliver { .. }));
        assert_eq!(net.route(3, 4, &mut rng), Fate::Lost("lost"));
    }
}
