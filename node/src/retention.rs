//! Automatic retention: the leader proposes a trim point that keeps the newest `N` applied
//! entries (`--retain-entries N`) once the log holds a quarter more than that, or the point
//! its storage names to stay within a size (`--retain-bytes`), at most once a second. The
//! point goes through the log (`Payload::Trim`), so every node trims at the same place;
//! each drops whole segments only, so it keeps at least `N` entries.

use replog_core::Index;
use std::time::{Duration, Instant};

/// The least time between two automatic trim proposals.
const PROPOSE_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct Retention {
    /// Entries to keep, if limited.
    keep: Option<u64>,
    /// The newest point storage named to stay within `--retain-bytes`.
    bytes_point: Option<Index>,
    /// The newest trim point committed (or proposed by us); entries before it are going.
    trimmed_before: Index,
    last_proposed: Option<Instant>,
}

impl Retention {
    pub fn new(keep: Option<u64>) -> Retention {
        assert!(
            keep != Some(0),
            "retaining no entries would trim what followers still fetch"
        );
        Retention {
            keep,
            bytes_point: None,
            trimmed_before: Index(1),
            last_proposed: None,
        }
    }

    /// Storage's trim point for `--retain-bytes`.
    pub fn bytes_point(&mut self, before: Index) {
        self.bytes_point = Some(before);
    }

    /// A committed trim point, from any leader.
    pub fn committed(&mut self, before: Index) {
        self.trimmed_before = self.trimmed_before.max(before);
    }

    /// The trim point to propose now, if any, for a leader that applied up to `applied`.
    pub fn point(&mut self, applied: Index, now: Instant) -> Option<Index> {
        let by_entries = self.keep.and_then(|keep| {
            let held = self.trimmed_before.count_to(applied.next());
            (held > keep + keep / 4).then(|| Index(applied.next().0 - keep))
        });
        let by_bytes = self
            .bytes_point
            .filter(|&point| point > self.trimmed_before);
        let before = by_entries.max(by_bytes)?.min(applied.next());
        if before <= self.trimmed_before {
            return None;
        }
        if self
            .last_proposed
            .is_some_and(|at| now.duration_since(at) < PROPOSE_EVERY)
        {
            return None;
        }
        self.last_proposed = Some(now);
        self.trimmed_before = before;
        Some(before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storages_size_point_is_proposed_but_never_past_what_is_applied() {
        let mut retention = Retention::new(None);
        let now = Instant::now();
        assert_eq!(retention.point(Index(500), now), None, "no limit, no trim");
        retention.bytes_point(Index(300));
        assert_eq!(retention.point(Index(250), now), Some(Index(251)));
        let later = now + PROPOSE_EVERY;
        assert_eq!(retention.point(Index(500), later), Some(Index(300)));
        assert_eq!(retention.point(Index(600), later + PROPOSE_EVERY), None);
    }

    #[test]
    fn proposes_once_a_quarter_more_than_kept_is_held_and_keeps_exactly_n() {
        let mut retention = Retention::new(Some(100));
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
        let mut retention = Retention::new(Some(10));
        retention.committed(Index(50));
        assert_eq!(retention.point(Index(55), Instant::now()), None);
        assert_eq!(retention.point(Index(62), Instant::now()), Some(Index(53)));
    }
}
