//! A countdown in logical ticks, after TigerBeetle's `Timeout` (`src/vsr.zig`): the core
//! owns no clock, so every timer (election, heartbeat, CheckQuorum) counts the driver's
//! `Tick` inputs through one of these instead of a bare counter bumped by hand.

/// Fires once `ticks` reaches `after_ticks`; `reset` starts the count again.
///
/// Invariant: `after_ticks >= 1` once started (a timeout of zero would fire before any tick).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Timeout {
    /// Ticks counted since the last (re)start.
    ticks: u64,
    after_ticks: u64,
}

impl Timeout {
    pub(crate) fn new(after_ticks: u64) -> Timeout {
        Timeout {
            ticks: 0,
            after_ticks,
        }
    }

    /// Counts one tick.
    pub(crate) fn tick(&mut self) {
        self.ticks += 1;
    }

    /// For a timer that repeats (heartbeat, CheckQuorum): counts one tick and, when that
    /// runs the timeout out, starts it over and says so.
    pub(crate) fn tick_periodic(&mut self) -> bool {
        self.tick();
        let fired = self.fired();
        if fired {
            self.reset();
        }
        fired
    }

    /// Whether the timeout has run out since the last (re)start.
    pub(crate) fn fired(&self) -> bool {
        self.ticks >= self.after_ticks
    }

    /// Starts counting again from zero, with the same length.
    pub(crate) fn reset(&mut self) {
        self.ticks = 0;
    }

    /// Starts counting again from zero with a new length (a freshly drawn election timeout).
    pub(crate) fn start(&mut self, after_ticks: u64) {
        assert!(after_ticks >= 1, "a timeout of zero ticks");
        self.ticks = 0;
        self.after_ticks = after_ticks;
    }

    pub(crate) fn elapsed_ticks(&self) -> u64 {
        self.ticks
    }

    pub(crate) fn after_ticks(&self) -> u64 {
        self.after_ticks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_after_the_given_ticks_and_reset_starts_over() {
        let mut timeout = Timeout::new(3);
        timeout.tick();
        timeout.tick();
        assert!(!timeout.fired());
        timeout.tick();
        assert!(timeout.fired());
        timeout.reset();
        assert!(!timeout.fired());
        assert_eq!(timeout.elapsed_ticks(), 0);
        timeout.start(1);
        timeout.tick();
        assert!(timeout.fired());
        assert_eq!(timeout.after_ticks(), 1);
    }

    #[test]
    fn a_periodic_timeout_fires_every_after_ticks() {
        let mut timeout = Timeout::new(2);
        let fired: Vec<bool> = (0..6).map(|_| timeout.tick_periodic()).collect();
        assert_eq!(fired, [false, true, false, true, false, true]);
    }
}
