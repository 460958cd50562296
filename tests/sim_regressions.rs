//! Swarm seeds that once failed, run again. A seed stands for its run only while the
//! swarm draws what it drew then (a change to the draws changes every seed's run, and the
//! comment then says so); each entry names the bug it caught.

use replog_sim::{run, RunOptions};

/// (seed, nodes, the bug).
const SEEDS: [(u64, usize, &str); 3] = [
    // A restarted leader ignored a trimmed-fetch answer whose session checkpoint it did
    // not yet know as committed, and kept the request outstanding: the follower was never
    // installed (Liveness, "logs of the healed majority not identical").
    (5339, 5, "stalled install after a leader restart"),
    (7547, 5, "stalled install after a leader restart"),
    (8362, 3, "stalled install after a leader restart"),
];

#[test]
fn seeds_that_once_failed_pass() {
    for (seed, nodes, bug) in SEEDS {
        let report = run(&RunOptions::swarm(seed, nodes, 60_000_000), None);
        assert!(
            report.passed(),
            "seed {seed} ({bug}): {}",
            report.failure_report().unwrap_or_default()
        );
    }
}
