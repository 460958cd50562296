//! Exactly-once appends on real processes: a retry of an applied `(client, seq)` is
//! answered with the original index and term and the log holds the command once, also
//! after every node restarts, across a leader change, and on a follower caught up by an
//! install after a trim; bad ids and sequence numbers are refused with clear errors.

#[path = "node_support/mod.rs"]
mod support;

use replog_core::ClientId;
use replog_node::client::blocking::{self, AppendError, Appended};
use replog_node::client::Response;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::num::NonZeroU64;
use std::time::Duration;
use support::TestCluster;

const ALL: [usize; 3] = [0, 1, 2];
const TIMEOUT: Duration = Duration::from_secs(20);

fn once(cluster: &TestCluster, client: &str, seq: u64, command: &str) -> Appended {
    try_once(cluster, client, seq, command).unwrap_or_else(|error| {
        panic!(
            "append {command:?} as {client}#{seq} failed: {error}\n{}",
            cluster.cluster.all_log_tails(30)
        )
    })
}

fn try_once(
    cluster: &TestCluster,
    client: &str,
    seq: u64,
    command: &str,
) -> Result<Appended, AppendError> {
    let client = ClientId::new(client).expect("valid id");
    let seq = NonZeroU64::new(seq).expect("positive");
    blocking::append_once(&cluster.cluster.addrs(), command, &client, seq, TIMEOUT)
}

/// How many committed entries on node `k` carry `command`.
fn copies_on(cluster: &TestCluster, k: usize, command: &str) -> usize {
    let entries = cluster
        .query(k)
        .and_then(|state| state.entries)
        .unwrap_or_default();
    (entries.iter())
        .filter(|entry| entry.committed && entry.command.as_deref() == Some(command))
        .count()
}

/// Sends one raw line to node `k` and returns the answer line.
fn raw(cluster: &TestCluster, k: usize, line: &str) -> String {
    let mut stream = TcpStream::connect(cluster.addr(k)).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    stream
        .write_all(format!("{line}\n").as_bytes())
        .expect("send");
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .expect("answer");
    answer
}

#[test]
fn a_retry_of_an_applied_seq_returns_the_original_index_and_appends_nothing() {
    let cluster = TestCluster::start("once-retry", 3);
    let (leader, _) = cluster.stable_leader(&ALL, TIMEOUT);
    let first = once(&cluster, "alice", 1, "pay bob 5");
    let retry = once(&cluster, "alice", 1, "pay bob 5");
    assert_eq!((retry.index, retry.term), (first.index, first.term));
    let next = once(&cluster, "alice", 2, "pay carol 7");
    assert!(next.index > first.index);
    assert_eq!(copies_on(&cluster, leader, "pay bob 5"), 1);
    // Going backwards is refused, naming the highest seq, and appends nothing.
    let behind = raw(
        &cluster,
        leader,
        r#"{"op":"append","command":"pay bob 5","client":"alice","seq":1}"#,
    );
    // seq 1 is applied, but below the highest (2): the table keeps only the highest.
    assert_eq!(
        Response::parse(behind.trim_end().as_bytes()),
        Ok(Response::SeqBehind { highest: 2 })
    );
    assert_eq!(copies_on(&cluster, leader, "pay bob 5"), 1);
}

#[test]
fn bad_ids_and_sequence_numbers_are_refused_naming_the_problem() {
    let cluster = TestCluster::start("once-bad", 1);
    cluster.stable_leader(&[0], TIMEOUT);
    let long = "x".repeat(129);
    for (fields, expected) in [
        (r#""client":"a","seq":0"#.to_string(), "whole number from 1"),
        (
            r#""client":"a","seq":-3"#.to_string(),
            "whole number from 1",
        ),
        (
            r#""client":"a","seq":"1""#.to_string(),
            "whole number from 1",
        ),
        (r#""client":"","seq":1"#.to_string(), "client id is empty"),
        (format!(r#""client":"{long}","seq":1"#), "129 bytes long"),
        (r#""seq":1"#.to_string(), "needs a \\\"client\\\""),
    ] {
        let answer = raw(
            &cluster,
            0,
            &format!(r#"{{"op":"append","command":"c",{fields}}}"#),
        );
        assert!(answer.contains("\"error\":\"bad_request\""), "{answer}");
        assert!(answer.contains(expected), "{fields}: {answer}");
    }
    let last = cluster.query(0).expect("answers").last_index;
    assert_eq!(last, 1, "nothing but the leader's no-op was appended");
}

#[test]
fn dedup_holds_across_a_leader_change_and_a_restart_of_every_node() {
    let mut cluster = TestCluster::start("once-restart", 3);
    let (leader, _) = cluster.stable_leader(&ALL, TIMEOUT);
    let first = once(&cluster, "dave", 1, "deposit 10");
    cluster.cluster.kill(leader);
    let others: Vec<usize> = ALL.into_iter().filter(|&k| k != leader).collect();
    cluster.stable_leader(&others, TIMEOUT);
    let retry = once(&cluster, "dave", 1, "deposit 10");
    assert_eq!((retry.index, retry.term), (first.index, first.term));
    cluster.cluster.restart(leader).expect("restart");
    let expected = [(first.index, first.term, "deposit 10".to_string())];
    for k in ALL {
        cluster.wait_committed_on(k, &expected);
    }
    // A clean stop records the commit index beyond the entry: a restart must then take
    // the table from the session checkpoint, not rebuild it from the log's tail.
    for k in ALL {
        cluster.cluster.stop(k).expect("stop");
    }
    for k in ALL {
        cluster.cluster.restart(k).expect("restart");
    }
    cluster.stable_leader(&ALL, TIMEOUT);
    let retry = once(&cluster, "dave", 1, "deposit 10");
    assert_eq!((retry.index, retry.term), (first.index, first.term));
    for k in ALL {
        cluster.wait_committed_on(k, &expected);
        assert_eq!(copies_on(&cluster, k, "deposit 10"), 1, "node {}", k + 1);
    }
}

#[test]
fn a_follower_caught_up_by_an_install_after_a_trim_has_the_session_table() {
    let args = ["--segment-bytes", "4096", "--log-cache-bytes", "0"];
    let mut cluster = TestCluster::start_with("once-install", 3, &args);
    let (leader, _) = cluster.stable_leader(&ALL, TIMEOUT);
    let behind = (leader + 1) % 3;
    cluster.cluster.kill(behind);
    let first = once(&cluster, "erin", 1, "erin's first");
    let mut last = 0;
    for n in 0..300 {
        last = cluster
            .append(&format!("filler {n:04} {}", "x".repeat(40)))
            .index;
    }
    blocking::trim(&cluster.cluster.addrs(), last - 20, TIMEOUT).expect("trim commits");
    cluster.cluster.restart(behind).expect("restart");
    let what = format!("node {} to be caught up past {last}", behind + 1);
    cluster.wait_for(TIMEOUT, &what, |cluster| {
        let state = cluster.query(behind)?;
        let first_held = state.entries?.first()?.index;
        (state.commit_index >= last && first_held > first.index).then_some(())
    });
    // The install brought the table: the follower's storage holds erin's row.
    let sessions = cluster
        .dir()
        .join("data")
        .join((behind + 1).to_string())
        .join("sessions.json");
    let text = std::fs::read_to_string(&sessions)
        .unwrap_or_else(|error| panic!("{}: {error}", sessions.display()));
    assert!(text.contains("\"erin\""), "{text}");
    // With the old leader gone, whoever leads answers the retry from the table.
    cluster.cluster.kill(leader);
    let others: Vec<usize> = ALL.into_iter().filter(|&k| k != leader).collect();
    cluster.stable_leader(&others, TIMEOUT);
    let retry = once(&cluster, "erin", 1, "erin's first");
    assert_eq!((retry.index, retry.term), (first.index, first.term));
}

/// Runs `replog append` against the cluster; returns (success, stdout, stderr).
fn cli_append(cluster: &TestCluster, extra: &[&str]) -> (bool, String, String) {
    let targets = cluster.cluster.addrs().join(",");
    let output = std::process::Command::new(support::exe())
        .args(["append", "-t", &targets, "--json"])
        .args(extra)
        .output()
        .expect("runs");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (
        output.status.success(),
        text(&output.stdout),
        text(&output.stderr),
    )
}

#[test]
fn replog_append_sends_an_id_so_a_rerun_with_the_same_id_and_seq_appends_nothing() {
    let cluster = TestCluster::start("once-cli", 3);
    cluster.stable_leader(&ALL, TIMEOUT);
    let fixed = ["--client-id", "deploy-42", "--seq", "3", "-c", "release v1"];
    let (ok, first, stderr) = cli_append(&cluster, &fixed);
    assert!(ok, "{stderr}");
    let (ok, again, stderr) = cli_append(&cluster, &fixed);
    assert!(ok, "{stderr}");
    assert_eq!(
        again, first,
        "the rerun is answered with the original index and term"
    );
    // Without --client-id every run is a fresh client: the same command appends again.
    let (ok, a, _) = cli_append(&cluster, &["-c", "tick"]);
    let (ok2, b, _) = cli_append(&cluster, &["-c", "tick"]);
    assert!(ok && ok2 && a != b, "{a} {b}");
    let (ok, _, stderr) = cli_append(
        &cluster,
        &["--client-id", "deploy-42", "--seq", "2", "-c", "x"],
    );
    assert!(!ok && stderr.contains("seq_behind"), "{stderr}");
    let (ok, _, stderr) = cli_append(&cluster, &["--client-id", "", "-c", "x"]);
    assert!(!ok && stderr.contains("client id is empty"), "{stderr}");
    let (ok, _, stderr) = cli_append(&cluster, &["--seq", "0", "-c", "x"]);
    assert!(!ok && stderr.contains("--seq"), "{stderr}");
}
