//! Watching a sweep from the command line: a progress line on stderr, and when to stop
//! (`--until-failure`, `--time-budget`). Wall-clock time is read here only, never in the
//! simulator, so stopping early changes how many seeds run, not what any seed does.

use replog_sim::SeedResult;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often the progress line is redrawn at most.
const REDRAW_EVERY: Duration = Duration::from_millis(200);

pub struct Watch {
    started: Instant,
    /// Seeds in the range, `None` when it is open-ended.
    total: Option<u64>,
    budget: Option<Duration>,
    until_failure: bool,
    show_progress: bool,
    failures: AtomicU64,
    last_drawn: Mutex<Option<Instant>>,
    stopped: Mutex<Option<String>>,
}

impl Watch {
    pub fn new(
        total: Option<u64>,
        budget: Option<Duration>,
        until_failure: bool,
        show_progress: bool,
    ) -> Watch {
        Watch {
            started: Instant::now(),
            total,
            budget,
            until_failure,
            show_progress,
            failures: AtomicU64::new(0),
            last_drawn: Mutex::new(None),
            stopped: Mutex::new(None),
        }
    }

    /// Called after each seed; returns whether to start more.
    pub fn seed_done(&self, done: u64, result: &SeedResult) -> bool {
        if result.failure.is_some() {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        let elapsed = self.started.elapsed();
        let reason = if self.until_failure && result.failure.is_some() {
            Some(format!("seed {} failed", result.seed))
        } else {
            self.budget
                .filter(|&budget| elapsed >= budget)
                .map(|budget| format!("time budget of {} used up", human(budget)))
        };
        self.draw(done, elapsed, reason.is_some());
        match reason {
            None => true,
            Some(reason) => {
                let mut stopped = self.stopped.lock().expect("watch lock");
                stopped.get_or_insert(reason);
                false
            }
        }
    }

    /// Why the sweep stopped before the end of its range, if it did.
    pub fn stopped(&self) -> Option<String> {
        self.stopped.lock().expect("watch lock").clone()
    }

    /// Ends the progress line, so that what follows starts on a fresh one.
    pub fn finish(&self) {
        if self.show_progress {
            eprintln!();
        }
    }

    fn draw(&self, done: u64, elapsed: Duration, last: bool) {
        if !self.show_progress {
            return;
        }
        let mut drawn = self.last_drawn.lock().expect("watch lock");
        let due = drawn.is_none_or(|at| at.elapsed() >= REDRAW_EVERY);
        if !(due || last || Some(done) == self.total) {
            return;
        }
        *drawn = Some(Instant::now());
        eprint!("\r{}   ", self.line(done, elapsed));
    }

    /// `120/1000 seeds · 95.3 seeds/s · 0 failed · 9s left`.
    pub fn line(&self, done: u64, elapsed: Duration) -> String {
        let rate = done as f64 / elapsed.as_secs_f64().max(1e-9);
        let of_total = self
            .total
            .map_or(String::new(), |total| format!("/{total}"));
        let by_seeds = self
            .total
            .map(|total| Duration::from_secs_f64(total.saturating_sub(done) as f64 / rate));
        let by_budget = self.budget.map(|budget| budget.saturating_sub(elapsed));
        let left = match (by_seeds, by_budget) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut line = format!(
            "{done}{of_total} seeds · {rate:.1} seeds/s · {} failed",
            self.failures.load(Ordering::Relaxed)
        );
        if let Some(left) = left {
            line.push_str(&format!(" · {} left", human(left)));
        }
        line
    }
}

/// `1h02m`, `3m05s`, `42s`.
fn human(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m{:02}s", seconds / 60, seconds % 60),
        _ => format!("{}h{:02}m", seconds / 3600, seconds % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(seed: u64, failed: bool) -> SeedResult {
        SeedResult {
            seed,
            nodes: 3,
            events: 1,
            sim_us: 1,
            trace_hash: 0,
            failure: failed.then(|| "Election Safety at 1s".to_string()),
            replay: String::new(),
            coverage: Default::default(),
        }
    }

    #[test]
    fn until_failure_stops_at_the_first_failed_seed_and_names_it() {
        let watch = Watch::new(Some(10), None, true, false);
        assert!(watch.seed_done(1, &result(0, false)));
        assert!(!watch.seed_done(2, &result(1, true)));
        assert_eq!(watch.stopped().as_deref(), Some("seed 1 failed"));
    }

    #[test]
    fn a_spent_time_budget_stops_the_sweep() {
        let watch = Watch::new(None, Some(Duration::ZERO), false, false);
        assert!(!watch.seed_done(1, &result(0, false)));
        assert_eq!(
            watch.stopped().as_deref(),
            Some("time budget of 0s used up")
        );
    }

    #[test]
    fn the_progress_line_shows_done_total_rate_failures_and_time_left() {
        let watch = Watch::new(Some(100), None, false, false);
        watch.seed_done(1, &result(0, true));
        let line = watch.line(20, Duration::from_secs(2));
        assert_eq!(line, "20/100 seeds · 10.0 seeds/s · 1 failed · 8s left");
        assert_eq!(human(Duration::from_secs(185)), "3m05s");
    }
}
