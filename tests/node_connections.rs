//! Connection lifetimes against a real node: every connection a client ends is closed by
//! the node too, so descriptors do not pile up.

#[path = "node_support/mod.rs"]
mod support;

use replog_core::{Index, Message, MessageBody, NodeId, Term};
use replog_node::transport::wire::{encode_frames, Hello};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};
use support::TestCluster;

const TIMEOUT: Duration = Duration::from_secs(20);
/// Enough clients that many of them have their request and their end of input arrive
/// together, in one readiness event.
const HALF_CLOSING_CLIENTS: usize = 300;
/// The same for peer connections, which the node logs one line each for.
const HALF_CLOSING_PEERS: usize = 100;

/// The node's open file descriptors.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the node's /proc entry")
        .count()
}

/// Polls until the node holds at most `limit` descriptors; returns how many it holds.
fn wait_fds_at_most(pid: u32, limit: usize, timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        let fds = open_fds(pid);
        if fds <= limit || Instant::now() > deadline {
            return fds;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Connects, sends `request`, and shuts its own output down, as `nc -q1` does.
fn half_closed_request(addr: &str, request: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.write_all(request).expect("send");
    stream
        .shutdown(Shutdown::Write)
        .expect("shut down our output");
    stream
}

#[test]
fn a_half_closed_connection_gets_every_answer_then_is_closed_by_the_node() {
    let cluster = TestCluster::start("half-close", 1);
    cluster.stable_leader(&[0], TIMEOUT);
    let pid = cluster.cluster.pid(0).expect("running");
    let addr = cluster.addr(0);
    // The probes that found the leader may still be closing.
    std::thread::sleep(Duration::from_millis(200));
    let baseline = open_fds(pid);

    let request = b"{\"op\":\"status\"}\n{\"op\":\"append\",\"command\":\"half\"}\n";
    let clients: Vec<TcpStream> = (0..HALF_CLOSING_CLIENTS)
        .map(|_| half_closed_request(&addr, request))
        .collect();
    // Reading to the end returns only once the node closes its side: a connection the
    // node keeps open blocks until the shared deadline, and counts as not closed.
    let deadline = Instant::now() + TIMEOUT;
    let mut not_closed = 0;
    for mut client in clients {
        let left = deadline.saturating_duration_since(Instant::now());
        client
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let mut answers = String::new();
        match client.read_to_string(&mut answers) {
            Ok(_) => {
                let lines: Vec<&str> = answers.lines().collect();
                assert_eq!(lines.len(), 2, "one answer per request: {answers:?}");
                assert!(lines[0].contains("\"role\":\"leader\""), "{answers:?}");
                assert!(
                    lines[1].starts_with("{\"ok\":true,\"index\":"),
                    "{answers:?}"
                );
            }
            Err(_) => not_closed += 1,
        }
    }
    assert_eq!(
        not_closed, 0,
        "{not_closed} of {HALF_CLOSING_CLIENTS} half-closed connections were left open"
    );
    let fds = wait_fds_at_most(pid, baseline, Duration::from_secs(5));
    assert!(
        fds <= baseline,
        "the node holds {fds} descriptors, {baseline} before the clients came"
    );
}

/// Opens a peer connection as `hello` says, and waits for the node to log that it took it.
fn peer_connections(
    cluster: &TestCluster,
    target: usize,
    hello: &Hello,
    count: usize,
) -> Vec<TcpStream> {
    let log_path = cluster.cluster.log_path(target);
    let connected = format!("peer n{} connected from", hello.from);
    let before = std::fs::read_to_string(&log_path)
        .unwrap_or_default()
        .matches(&connected)
        .count();
    let streams = (0..count)
        .map(|_| {
            let mut stream = TcpStream::connect(cluster.addr(target)).expect("connect");
            stream
                .write_all(&hello.encode_line())
                .expect("send the hello");
            stream
        })
        .collect();
    cluster.wait_for(TIMEOUT, "the node to take every peer connection", |_| {
        let log = std::fs::read_to_string(&log_path).ok()?;
        (log.matches(&connected).count() >= before + count).then_some(())
    });
    streams
}

#[test]
fn a_peer_connection_that_sends_a_frame_and_half_closes_is_closed_by_the_node() {
    let mut cluster = TestCluster::start("peer-half-close", 2);
    // Speak as node 2, which is down, so that its own connections do not come and go.
    cluster.cluster.kill(1);
    let pid = cluster.cluster.pid(0).expect("running");
    let hello = cluster.hello_as(1);
    std::thread::sleep(Duration::from_millis(200));
    let baseline = open_fds(pid);
    let streams = peer_connections(&cluster, 0, &hello, HALF_CLOSING_PEERS);
    // A stale vote request: read and ignored, after the connection was handed over.
    let mut frame = Vec::new();
    let stale = Message {
        from: NodeId(2),
        to: NodeId(1),
        term: Term(0),
        body: MessageBody::RequestVote {
            pre_vote: true,
            last_log_index: Index(0),
            last_log_term: Term(0),
            transfer: false,
        },
    };
    encode_frames([&stale], &mut frame);
    for mut stream in &streams {
        stream.write_all(&frame).expect("send a frame");
        stream
            .shutdown(Shutdown::Write)
            .expect("shut down our output");
    }
    let deadline = Instant::now() + TIMEOUT;
    let mut not_closed = 0;
    for mut stream in streams {
        let left = deadline.saturating_duration_since(Instant::now());
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let mut rest = Vec::new();
        if stream.read_to_end(&mut rest).is_err() {
            not_closed += 1;
        }
    }
    assert_eq!(
        not_closed, 0,
        "{not_closed} of {HALF_CLOSING_PEERS} half-closed peer connections were left open"
    );
    let fds = wait_fds_at_most(pid, baseline, Duration::from_secs(5));
    assert!(
        fds <= baseline,
        "the node holds {fds} descriptors, {baseline} before the peer connections came"
    );
}
