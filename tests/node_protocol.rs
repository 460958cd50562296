//! The client protocol against a real node: bad input of every kind gets an answer (or a
//! close) and never stops the node from serving others.

#[path = "node_support/mod.rs"]
mod support;

use replog_node::client::blocking::Connection;
use replog_node::client::{Request, Response, RoleName};
use replog_node::transport::wire::PROTOCOL_VERSION;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use support::TestCluster;

const TIMEOUT: Duration = Duration::from_secs(20);

/// A one-node cluster that has elected itself.
fn single_node(tag: &str) -> TestCluster {
    let cluster = TestCluster::start(tag, 1);
    cluster.stable_leader(&[0], TIMEOUT);
    cluster
}

/// A raw line-level connection, to send exactly the bytes a test wants.
struct Raw {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Raw {
    fn connect(addr: &str) -> Raw {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Raw { stream, reader }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    fn answer(&mut self) -> Value {
        let mut line = String::new();
        let read = self.reader.read_line(&mut line).expect("read an answer");
        assert!(read > 0, "connection closed instead of answering");
        serde_json::from_str(&line).unwrap_or_else(|error| panic!("{line:?}: {error}"))
    }

    fn assert_usable(&mut self) {
        self.send(b"{\"op\":\"status\"}\n");
        let answer = self.answer();
        assert_eq!(answer["ok"], true, "{answer}");
        assert_eq!(answer["role"], "leader", "{answer}");
    }
}

fn assert_bad_request(answer: &Value, mentions: &str) {
    assert_eq!(answer["ok"], false, "{answer}");
    assert_eq!(answer["error"], "bad_request", "{answer}");
    let message = answer["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(mentions),
        "{answer} should mention {mentions:?}"
    );
}

/// The node still serves a fresh client: status answers and an append commits.
fn assert_serving(cluster: &TestCluster) {
    let mut connection = Connection::connect(&cluster.addr(0), TIMEOUT).expect("connect");
    let state = connection.state(false).expect("status");
    assert_eq!(state.role, RoleName::Leader);
    let answer = connection
        .call(&Request::Append {
            command: "still serving".into(),
        })
        .expect("append");
    assert!(matches!(answer, Response::Appended { .. }), "{answer:?}");
}

#[test]
fn malformed_json_gets_bad_request_and_the_connection_stays_usable() {
    let cluster = single_node("malformed");
    let mut raw = Raw::connect(&cluster.addr(0));
    for line in [
        &b"{\"op\":\"append\",\"command\":\n"[..],
        b"not json at all\n",
        b"[1,2,3]\n",
        b"{\"op\":\"append\",\"command\":42}\n",
        b"{\"command\":\"x\"}\n",
        b"\xff\xfe\n",
    ] {
        raw.send(line);
        let answer = raw.answer();
        assert_eq!(answer["error"], "bad_request", "{line:?} -> {answer}");
        raw.assert_usable();
    }
    assert_serving(&cluster);
}

#[test]
fn an_unknown_op_gets_bad_request_and_the_connection_stays_usable() {
    let cluster = single_node("unknown-op");
    let mut raw = Raw::connect(&cluster.addr(0));
    raw.send(b"{\"op\":\"delete\",\"index\":1}\n");
    assert_bad_request(&raw.answer(), "unknown op");
    raw.assert_usable();
    assert_serving(&cluster);
}

#[test]
fn pipelined_requests_are_answered_in_request_order() {
    let cluster = single_node("pipeline");
    let mut raw = Raw::connect(&cluster.addr(0));
    raw.send(
        b"{\"op\":\"append\",\"command\":\"a\"}\n{\"op\":\"status\"}\nbad\n\n\
          {\"op\":\"append\",\"command\":\"b\"}\n{\"op\":\"query\"}\n",
    );
    let first = raw.answer();
    assert_eq!(first["ok"], true, "{first}");
    let status = raw.answer();
    assert_eq!(status["role"], "leader", "{status}");
    assert!(status.get("entries").is_none(), "{status}");
    assert_bad_request(&raw.answer(), "JSON");
    let second = raw.answer();
    assert_eq!(
        second["index"].as_u64().unwrap(),
        first["index"].as_u64().unwrap() + 1,
        "{second}"
    );
    let query = raw.answer();
    let entries = query["entries"].as_array().expect("query lists entries");
    let commands: Vec<&str> = entries
        .iter()
        .filter_map(|entry| entry["command"].as_str())
        .collect();
    assert_eq!(commands, ["a", "b"]);
    // A read behind appends on the node that accepted them sees them committed.
    assert!(
        entries.iter().all(|entry| entry["committed"] == true),
        "{query}"
    );
    assert_eq!(query["commit_index"], second["index"], "{query}");
}

#[test]
fn an_oversize_line_gets_an_error_and_closes_only_that_connection() {
    let cluster = single_node("oversize");
    let mut raw = Raw::connect(&cluster.addr(0));
    raw.assert_usable();
    let limit = replog_node::config::MAX_LINE_BYTES;
    let mut line = b"{\"op\":\"append\",\"command\":\"".to_vec();
    line.resize(line.len() + limit + 10, b'x');
    line.extend_from_slice(b"\"}\n");
    // The node may close while we are still writing; that is its right.
    let _ = raw.stream.write_all(&line);
    assert_bad_request(&raw.answer(), &format!("longer than {limit} bytes"));
    let mut rest = Vec::new();
    let closed = raw.reader.read_to_end(&mut rest);
    assert!(
        closed.is_err() || rest.is_empty(),
        "connection should close after the error"
    );

    // A line of exactly the limit is fine.
    let mut raw = Raw::connect(&cluster.addr(0));
    let prefix = b"{\"op\":\"append\",\"command\":\"";
    let mut line = prefix.to_vec();
    line.resize(limit - 2, b'y');
    line.extend_from_slice(b"\"}");
    assert_eq!(line.len(), limit);
    line.push(b'\n');
    raw.send(&line);
    let answer = raw.answer();
    assert_eq!(answer["ok"], true, "{answer}");
    assert_serving(&cluster);
}

#[test]
fn abrupt_disconnects_leave_the_node_serving() {
    let cluster = single_node("disconnect");
    let addr = cluster.addr(0);
    // Connect and vanish without a byte.
    drop(TcpStream::connect(&addr).unwrap());
    // Half a line, then gone.
    let mut raw = Raw::connect(&addr);
    raw.send(b"{\"op\":\"app");
    drop(raw);
    // An append, gone before its answer.
    let mut raw = Raw::connect(&addr);
    raw.send(b"{\"op\":\"append\",\"command\":\"orphan\"}\n");
    drop(raw);
    // Many pipelined requests, then a reset while answers are pending.
    let mut raw = Raw::connect(&addr);
    let burst: Vec<u8> = (0..2000)
        .flat_map(|n| format!("{{\"op\":\"append\",\"command\":\"burst-{n}\"}}\n").into_bytes())
        .collect();
    raw.send(&burst);
    drop(raw);
    // Garbage that is neither a client line nor a peer hello.
    let mut raw = Raw::connect(&addr);
    raw.send(&[0u8, 0, 0, 9, 1, 2, 3]);
    drop(raw);
    assert_serving(&cluster);
    // The orphaned append still committed, exactly once.
    let state = cluster.wait_for(TIMEOUT, "the orphan append to commit", |cluster| {
        let state = cluster.query(0)?;
        let entries = state.entries.as_ref()?;
        entries
            .iter()
            .any(|entry| entry.command.as_deref() == Some("orphan") && entry.committed)
            .then_some(state)
    });
    let orphans = state
        .entries
        .unwrap()
        .iter()
        .filter(|entry| entry.command.as_deref() == Some("orphan"))
        .count();
    assert_eq!(orphans, 1);
}

#[test]
fn a_peer_hello_from_another_cluster_is_refused_and_the_node_keeps_serving() {
    let cluster = single_node("stranger");
    let mut raw = Raw::connect(&cluster.addr(0));
    let hello = format!(
        "{{\"op\":\"peer_hello\",\"version\":{PROTOCOL_VERSION},\"cluster\":\"other\",\
         \"members\":\"1=127.0.0.1:1,2=127.0.0.1:2\",\"from\":2,\"addr\":\"127.0.0.1:2\"}}\n"
    );
    raw.send(hello.as_bytes());
    assert_bad_request(&raw.answer(), "cluster");
    // A peer_hello later on a client connection is just a bad request.
    let mut raw = Raw::connect(&cluster.addr(0));
    raw.assert_usable();
    raw.send(b"{\"op\":\"peer_hello\"}\n");
    assert_bad_request(&raw.answer(), "first line");
    raw.assert_usable();
    // Log lines reach the file through the node's log writer thread, a moment later.
    let log_path = cluster.cluster.log_path(0);
    cluster.wait_for(TIMEOUT, "the refusal in the node's log", |_| {
        let log = std::fs::read_to_string(&log_path).ok()?;
        log.contains("refused peer connection").then_some(())
    });
    assert_serving(&cluster);
}
