//! Automatic retention (`--retain-entries N`): the leader proposes a trim point that keeps
//! the newest `N` applied entries, once the log holds a quarter more than that, and at
//! most once a second. The point goes through the log (`Payload::Trim`), so every node
//! trims at the same place; each drops whole segments only, so it keeps at least `N`.

use replog_core::Index;
use std::time::{Duration, Instant};

/// The least time between two automatic trim proposals.
const PROPOSE_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct Retention {
    /// Entries to keep.
    keep: u64,
    /// The newest trim point committed (or proposed by us); entries before it are going.
    trimmed_before: Index,
    last_proposed: Option<Instant>,
}

impl Retention {
    pub fn new(keep: u64) -> Retention {
        assert!(
            keep > 0,
            "retaining no entries would trim what followers still fetch"
        );
        Retention {
            keep,
            trimmed_before: Index(1),
            last_proposed: None,
        }
    }

    /// A committed trim point, from any leader.
    pub fn committed(&mut self, before: Index) {
        self.trimmed_before = self.trimmed_before.max(before);
    }

    /// The trim point to propose now, if any, for a leader that applied up to `applied`.
    pub fn point(&mut self, applied: Index, now: Instant) -> Option<Index> {
        let held = self.trimmed_before.count_to(applied.next());
        if held <= self.keep + self.keep / 4 {
            return None;
        }
        if self
            .last_proposed
            .is_some_and(|at| now.duration_since(at) < PROPOSE_EVERY)
        {
            return None;
        }
        let before = Index(applied.next().0 - self.keep);
        self.last_proposed = Some(now);
        self.trimmed_before = before;
        Some(before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proposes_once_a_quarter_more_than_kept_is_held_and_keeps_exactly_n() {
        let mut retention = Retention::new(100);
        let now = Instant::now();
        assert_eq!(
            retention.point(Index(125), now),
            None,
            "125 held, within slack"
        );
        assert_eq!(retention.point(Index(126), now), Some(Index(27)));
        // Entries 27..=126 remain: 100.
        assert_eq!(
            retention.point(Index(400), now),
            None,
            "at most once a second"
        );
        let later = now + PROPOSE_EVERY;
        assert_eq!(retention.point(Index(400), later), Some(Index(301)));
    }

    #[test]
    fn a_trim_committed_by_another_leader_counts() {
        let mut retention = Retention::new(10);
        retention.committed(Index(50));
        assert_eq!(retention.point(Index(55), Instant::now()), None);
        assert_eq!(retention.point(Index(62), Instant::now()), Some(Index(53)));
    }
}
