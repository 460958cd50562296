//! The simulator's only source of randomness: ChaCha streams derived from the one seed, and
//! probabilities as exact integer ratios, so a seed replays bit for bit on any machine.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A probability `numerator / denominator`, kept as integers so no float rounding can make
/// two machines disagree. Written `[3, 10]` in scenario files.
///
/// Invariant: the denominator is at least 1 (checked by [`Ratio::validate`] where ratios
/// enter from files).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ratio(pub u32, pub u32);

impl Ratio {
    pub const NEVER: Ratio = Ratio(0, 1);

    pub fn percent(percent: u32) -> Ratio {
        Ratio(percent, 100)
    }

    pub fn validate(self) -> Result<(), String> {
        if self.1 == 0 {
            return Err(format!(
                "ratio {}/{} has a zero denominator",
                self.0, self.1
            ));
        }
        Ok(())
    }
}

impl fmt::Display for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.0, self.1)
    }
}

/// Independent streams of one seed. Each concern draws from its own, so that changing how
/// often clients think, say, leaves the network's draws for the same seed alone.
#[derive(Clone, Copy, Debug)]
pub enum Stream {
    Swarm = 1,
    Network = 2,
    Disk = 3,
    Faults = 4,
    Clients = 5,
    Core = 6,
    Skew = 7,
    Membership = 8,
}

pub struct SimRng(ChaCha8Rng);

impl SimRng {
    pub fn new(seed: u64, stream: Stream) -> SimRng {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(stream as u64);
        SimRng(rng)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `0..n`. The modulo bias is irrelevant here: only repeatability matters.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0)");
        self.0.next_u64() % n
    }

    /// Uniform in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        assert!(low <= high, "between({low}, {high})");
        low + self.below(high - low + 1)
    }

    pub fn chance(&mut self, ratio: Ratio) -> bool {
        if ratio.0 == 0 {
            return false;
        }
        if ratio.0 >= ratio.1 {
            return true;
        }
        self.below(u64::from(ratio.1)) < u64::from(ratio.0)
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }

    /// An index into `weights`, chosen with probability proportional to its weight.
    /// Returns `None` when every weight is zero.
    pub fn weighted(&mut self, weights: &[u32]) -> Option<usize> {
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        if total == 0 {
            return None;
        }
        let mut point = self.below(total);
        for (index, &weight) in weights.iter().enumerate() {
            if point < u64::from(weight) {
                return Some(index);
            }
            point -= u64::from(weight);
        }
        unreachable!("point below the total weight")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_and_stream_repeat_and_streams_differ() {
        let mut a = SimRng::new(7, Stream::Network);
        let mut b = SimRng::new(7, Stream::Network);
        let mut c = SimRng::new(7, Stream::Disk);
        let draws_a: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let draws_b: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        let draws_c: Vec<u64> = (0..8).map(|_| c.next_u64()).collect();
        assert_eq!(draws_a, draws_b);
        assert_ne!(draws_a, draws_c);
    }

    #[test]
    fn chance_respects_the_edges() {
        let mut rng = SimRng::new(1, Stream::Swarm);
        assert!((0..100).all(|_| !rng.chance(Ratio::NEVER)));
        assert!((0..100).all(|_| rng.chance(Ratio(1, 1))));
        let hits = (0..10_000).filter(|_| rng.chance(Ratio(1, 4))).count();
        assert!((2_000..3_000).contains(&hits), "{hits}");
    }

    #[test]
    fn weighted_never_picks_a_zero_weight() {
        let mut rng = SimRng::new(3, Stream::Faults);
        assert_eq!(rng.weighted(&[0, 0]), None);
        assert!((0..1000).all(|_| rng
            .weighted(&[0, 5, 0, 1])
            .is_some_and(|i| i == 1 || i == 3)));
    }
}
