//! A node's core keeps only a window of the log in memory; what a lagging follower needs
//! beyond it is read back from the segments (`Output::Fetch`), and `query` lists the whole
//! log from storage. Real processes on loopback, with no cache at all so that every
//! committed entry leaves memory.

#[path = "node_support/mod.rs"]
mod support;

use std::time::Duration;
use support::TestCluster;

const ALL: [usize; 3] = [0, 1, 2];
const TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn a_follower_that_missed_entries_no_longer_in_memory_is_caught_up_from_storage() {
    let mut cluster = TestCluster::start_with("catch-up", 3, &["--log-cache-bytes", "0"]);
    let (leader, _) = cluster.stable_leader(&ALL, TIMEOUT);
    let behind = (leader + 1) % 3;
    cluster.cluster.kill(behind);
    const COMMANDS: usize = 300;
    let expected: Vec<(u64, u64, String)> = (0..COMMANDS)
        .map(|n| {
            let command = format!("missed-{n}");
            let appended = cluster.append(&command);
            (appended.index, appended.term, command)
        })
        .collect();
    // The leader lists its whole log though its core holds almost none of it.
    let state = cluster.query(leader).expect("the leader answers");
    let entries = state.entries.expect("query lists entries");
    assert_eq!(
        entries.len() as u64,
        state.last_index,
        "query lists every entry"
    );
    for (position, entry) in entries.iter().enumerate() {
        assert_eq!(entry.index, position as u64 + 1, "entries in order, no gap");
    }

    cluster.cluster.restart(behind).expect("restart");
    cluster.wait_committed_on(behind, &expected);
    let caught_up = cluster
        .query(behind)
        .expect("answers")
        .entries
        .expect("entries");
    let leader_entries = cluster
        .query(leader)
        .expect("answers")
        .entries
        .expect("entries");
    assert_eq!(
        caught_up[..entries.len()],
        leader_entries[..entries.len()],
        "the follower holds the leader's log"
    );
}
