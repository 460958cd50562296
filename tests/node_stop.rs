//! Stopping a real node with SIGTERM or SIGINT: it answers what is in flight, exits 0, and
//! leaves files that restart without a warning; a second signal exits at once.

#[path = "node_support/mod.rs"]
mod support;

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::Duration;
use support::TestCluster;

const TIMEOUT: Duration = Duration::from_secs(20);

fn signal(cluster: &TestCluster, k: usize, name: &str) {
    let pid = cluster.cluster.pid(k).expect("running").to_string();
    let status = Command::new("kill")
        .args(["-s", name, &pid])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -s {name} {pid}: {status}");
}

fn log_of(cluster: &TestCluster, k: usize) -> String {
    std::fs::read_to_string(cluster.cluster.log_path(k)).unwrap_or_default()
}

fn wait_logged(cluster: &TestCluster, k: usize, text: &str) {
    cluster.wait_for(TIMEOUT, &format!("{text:?} in the log"), |cluster| {
        log_of(cluster, k).contains(text).then_some(())
    });
}

fn connect(addr: &str) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream
}

/// Stops a one-node cluster that holds a few commands with `name`, with a client
/// connected, and restarts it.
fn a_signal_stops_the_node_cleanly(name: &str) {
    let mut cluster = TestCluster::start(&format!("stop-{name}"), 1);
    cluster.stable_leader(&[0], TIMEOUT);
    let commands: Vec<String> = (0..5).map(|n| format!("before {name} {n}")).collect();
    for command in &commands {
        cluster.append(command);
    }
    let mut idle = connect(&cluster.addr(0));
    signal(&cluster, 0, name);
    // The node shuts down its side of an open connection, and closes it once we do.
    let mut rest = Vec::new();
    idle.read_to_end(&mut rest)
        .expect("the node ends the connection");
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    drop(idle);
    let status = cluster
        .cluster
        .wait_exit(0, TIMEOUT)
        .expect("the node exits");
    let log = log_of(&cluster, 0);
    assert!(status.success(), "exit status {status}\n{log}");
    assert!(
        log.contains(&format!("received SIG{name}, stopping")),
        "{log}"
    );
    assert!(log.contains("stopped cleanly"), "{log}");

    let restart_from = log.len();
    cluster.cluster.restart(0).expect("restart");
    cluster.stable_leader(&[0], TIMEOUT);
    let restart_log = log_of(&cluster, 0)[restart_from..].to_string();
    assert!(
        !restart_log.contains("WARN"),
        "the restart after a clean stop warned:\n{restart_log}"
    );
    let entries = cluster
        .query(0)
        .and_then(|state| state.entries)
        .expect("query");
    for command in &commands {
        assert!(
            entries
                .iter()
                .any(|entry| entry.committed && entry.command.as_deref() == Some(command)),
            "{command:?} lost: {entries:?}"
        );
    }
}

#[test]
fn sigterm_stops_a_node_with_status_0_and_its_restart_logs_no_warning() {
    a_signal_stops_the_node_cleanly("TERM");
}

#[test]
fn sigint_stops_a_node_with_status_0_and_its_restart_logs_no_warning() {
    a_signal_stops_the_node_cleanly("INT");
}

#[test]
fn appends_in_flight_at_a_signal_are_answered_as_of_unknown_outcome() {
    let mut cluster = TestCluster::start("stop-in-flight", 3);
    let (leader, _) = cluster.stable_leader(&[0, 1, 2], TIMEOUT);
    // Without its followers the leader accepts appends and cannot commit them.
    for k in (0..3).filter(|&k| k != leader) {
        cluster.cluster.kill(k);
    }
    const APPENDS: u64 = 20;
    let mut client = connect(&cluster.addr(leader));
    for n in 0..APPENDS {
        let line = format!("{{\"op\":\"append\",\"command\":\"in flight {n}\"}}\n");
        client.write_all(line.as_bytes()).expect("send");
    }
    // Accepted appends are in the leader's log file. (A `status` would wait for them.)
    let log_file = cluster
        .dir()
        .join("data")
        .join((leader + 1).to_string())
        .join("log")
        .join("00000000000000000001.jsonl");
    let last = format!("in flight {}", APPENDS - 1);
    cluster.wait_for(TIMEOUT, "the leader to accept the appends", |_| {
        let bytes = std::fs::read(&log_file).ok()?;
        String::from_utf8_lossy(&bytes)
            .contains(&last)
            .then_some(())
    });
    signal(&cluster, leader, "TERM");
    let mut reader = BufReader::new(client);
    for n in 0..APPENDS {
        let mut line = String::new();
        reader.read_line(&mut line).expect("an answer");
        assert!(!line.is_empty(), "closed before answering append {n}");
        let answer: Value = serde_json::from_str(&line).expect("JSON");
        assert_eq!(answer["error"], "timeout", "append {n}: {answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(message.contains("the node is stopping"), "{answer}");
        assert!(message.contains("may still take effect"), "{answer}");
    }
    let mut rest = String::new();
    reader
        .read_to_string(&mut rest)
        .expect("the end of the answers");
    assert!(rest.is_empty(), "{rest:?}");
    drop(reader);
    let status = cluster.cluster.wait_exit(leader, TIMEOUT).expect("exits");
    assert!(
        status.success(),
        "exit status {status}\n{}",
        log_of(&cluster, leader)
    );
}

#[test]
fn a_second_signal_exits_at_once_with_the_signals_status() {
    let mut cluster = TestCluster::start("stop-twice", 1);
    cluster.stable_leader(&[0], TIMEOUT);
    // A client that never closes holds the clean stop back (for a while).
    let _holding = connect(&cluster.addr(0));
    signal(&cluster, 0, "TERM");
    wait_logged(&cluster, 0, "received SIGTERM, stopping");
    signal(&cluster, 0, "TERM");
    let status = cluster.cluster.wait_exit(0, TIMEOUT).expect("exits");
    let log = log_of(&cluster, 0);
    assert_eq!(status.code(), Some(143), "{status:?}\n{log}");
    assert_eq!(status.signal(), None, "{status:?}");
    assert!(log.contains("exiting at once"), "{log}");
    assert!(!log.contains("stopped cleanly"), "{log}");
}
