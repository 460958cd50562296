//! Retention on real processes: `trim` drops whole segments before a committed point on
//! every node, a follower left behind a trim is caught up by an install of the log's
//! boundary plus the retained entries, a trim beyond the commit index is refused naming
//! it, and `--retain-entries` trims by itself.

#[path = "node_support/mod.rs"]
mod support;

use replog_node::client::blocking::{self, AppendError};
use std::path::Path;
use std::time::Duration;
use support::TestCluster;

const ALL: [usize; 3] = [0, 1, 2];
const TIMEOUT: Duration = Duration::from_secs(20);
/// Small segments, so that a few hundred entries make many of them, and no cache, so that
/// catch-ups read the segments.
const ARGS: [&str; 4] = ["--segment-bytes", "4096", "--log-cache-bytes", "0"];

fn segments(cluster: &TestCluster, k: usize) -> Vec<String> {
    let dir = cluster
        .dir()
        .join("data")
        .join((k + 1).to_string())
        .join("log");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".jsonl"))
        .collect();
    names.sort();
    names
}

fn first_segment_index(cluster: &TestCluster, k: usize) -> u64 {
    let names = segments(cluster, k);
    let first = names.first().expect("a segment");
    Path::new(first)
        .file_stem()
        .and_then(|stem| stem.to_str())
        .and_then(|stem| stem.parse().ok())
        .expect("named by its first index")
}

/// Waits until node `k` lists a contiguous log from past `trimmed_below` to `last`.
fn wait_log_trimmed(cluster: &TestCluster, k: usize, trimmed_below: u64, last: u64) {
    let what = format!(
        "node {} to hold ..={last} trimmed below {trimmed_below}",
        k + 1
    );
    cluster.wait_for(TIMEOUT, &what, |cluster| {
        let state = cluster.query(k)?;
        let entries = state.entries?;
        let first = entries.first()?.index;
        let contiguous = entries
            .iter()
            .enumerate()
            .all(|(n, entry)| entry.index == first + n as u64);
        (first > trimmed_below && state.commit_index >= last && contiguous).then_some(())
    });
}

fn append_many(cluster: &TestCluster, count: usize) -> u64 {
    let mut last = 0;
    for n in 0..count {
        last = cluster
            .append(&format!("entry {n:04} {}", "x".repeat(40)))
            .index;
    }
    last
}

#[test]
fn a_trim_drops_whole_segments_before_a_committed_point_on_every_node() {
    let cluster = TestCluster::start_with("trim", 3, &ARGS);
    cluster.stable_leader(&ALL, TIMEOUT);
    let last = append_many(&cluster, 400);
    let before_counts: Vec<usize> = ALL.iter().map(|&k| segments(&cluster, k).len()).collect();
    let done = blocking::trim(&cluster.cluster.addrs(), 300, TIMEOUT).expect("trim commits");
    assert!(done.index > last);
    for k in ALL {
        // Whole segments only: the first kept one starts at or before 300.
        wait_log_trimmed(&cluster, k, 1, done.index);
        let first = first_segment_index(&cluster, k);
        assert!(
            first > 1 && first <= 300,
            "node {}: first segment {first}",
            k + 1
        );
        assert!(segments(&cluster, k).len() < before_counts[k]);
    }
}

#[test]
fn a_follower_left_behind_a_trim_is_caught_up_by_an_install() {
    let mut cluster = TestCluster::start_with("trim-install", 3, &ARGS);
    let (leader, _) = cluster.stable_leader(&ALL, TIMEOUT);
    let behind = (leader + 1) % 3;
    cluster.cluster.kill(behind);
    let last = append_many(&cluster, 400);
    blocking::trim(&cluster.cluster.addrs(), last - 20, TIMEOUT).expect("trim commits");
    let others: Vec<usize> = ALL.into_iter().filter(|&k| k != behind).collect();
    for &k in &others {
        wait_log_trimmed(&cluster, k, 100, last);
    }
    cluster.cluster.restart(behind).expect("restart");
    let leader_first = first_segment_index(&cluster, leader);
    wait_log_trimmed(&cluster, behind, leader_first - 1, last);
    // It holds the leader's retained log from its boundary on, nothing from before.
    let caught_up = cluster.query(behind).unwrap().entries.unwrap();
    let leader_entries = cluster.query(leader).unwrap().entries.unwrap();
    let from = caught_up[0].index;
    let same: Vec<_> = leader_entries.iter().filter(|e| e.index >= from).collect();
    assert_eq!(caught_up.iter().collect::<Vec<_>>()[..same.len()], same[..]);
    // Its storage, not only its answer, starts after a boundary: the install replaced it.
    assert!(
        first_segment_index(&cluster, behind) > 1,
        "the follower's first segment still starts at index 1"
    );
    // And it keeps working: a new append commits there too.
    let after = cluster.append("after the install");
    cluster.wait_committed_on(
        behind,
        &[(after.index, after.term, "after the install".into())],
    );
}

#[test]
fn a_trim_beyond_the_commit_index_is_refused_naming_it() {
    let cluster = TestCluster::start_with("trim-refused", 3, &ARGS);
    cluster.stable_leader(&ALL, TIMEOUT);
    let last = cluster.append("one").index;
    let error = blocking::trim(&cluster.cluster.addrs(), last + 100, TIMEOUT)
        .expect_err("beyond the commit index");
    let AppendError::Rejected { message } = error else {
        panic!("expected a refusal, got {error:?}");
    };
    assert!(message.contains("commit index is"), "{message}");
    assert!(message.contains(&format!("{last}")), "{message}");
}

#[test]
fn retain_entries_trims_by_itself() {
    let mut args = ARGS.to_vec();
    args.extend(["--retain-entries", "100"]);
    let cluster = TestCluster::start_with("retain", 3, &args);
    cluster.stable_leader(&ALL, TIMEOUT);
    let last = append_many(&cluster, 600);
    for k in ALL {
        wait_log_trimmed(&cluster, k, 200, last);
        let held = cluster.query(k).unwrap().entries.unwrap().len();
        assert!(held >= 100, "node {} keeps at least 100, has {held}", k + 1);
    }
}

#[test]
fn retain_bytes_keeps_the_sealed_segments_within_the_limit() {
    let mut args = ARGS.to_vec();
    args.extend(["--retain-bytes", "20000"]);
    let cluster = TestCluster::start_with("retain-bytes", 3, &args);
    cluster.stable_leader(&ALL, TIMEOUT);
    let last = append_many(&cluster, 600);
    for k in ALL {
        wait_log_trimmed(&cluster, k, 100, last);
        let dir = cluster
            .dir()
            .join("data")
            .join((k + 1).to_string())
            .join("log");
        // Retention runs after the appends (a point at most once a second, then each
        // node deletes whole segments), so the bound is what the node settles at. The
        // leader proposes the point its own segments need; a node's own layout may differ
        // by a segment either way.
        let what = format!(
            "node {} to keep at most 20000 bytes in sealed segments",
            k + 1
        );
        cluster.wait_for(TIMEOUT, &what, |cluster| {
            let names = segments(cluster, k);
            let (_open, sealed) = names.split_last()?;
            let sealed_bytes: u64 = sealed
                .iter()
                .map(|name| std::fs::metadata(dir.join(name)).map_or(0, |m| m.len()))
                .sum();
            (sealed_bytes <= 20000 + 2 * 4096).then_some(())
        });
    }
}
