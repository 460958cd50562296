//! Linearizable, lease and local reads on real processes: a linearizable read anywhere holds
//! every append acknowledged before it; a node cut off from its leader answers `timeout`
//! (or `not_leader`), never an old log; a deposed leader that wakes up does not serve its
//! old log either.

mod node_support;

use node_support::{signal, TestCluster};
use replog_node::client::blocking::Connection;
use replog_node::client::{Consistency, QueryRange, ReadPage, Request, Response};
use std::io::{BufRead, BufReader, Write};
use std::time::{Duration, Instant};

const ALL: [usize; 3] = [0, 1, 2];
const ELECTION: Duration = Duration::from_secs(20);
const WAIT: Duration = Duration::from_secs(5);

fn read(addr: &str, consistency: Consistency) -> Response {
    let mut connection = Connection::connect(addr, WAIT).expect("connect");
    connection
        .call(&Request::Read {
            from: 1,
            limit: 100_000,
            consistency,
        })
        .expect("an answer")
}

fn page(response: Response) -> ReadPage {
    match response {
        Response::Read(page) => page,
        other => panic!("expected a read page, got {other:?}"),
    }
}

fn commands(page: &ReadPage) -> Vec<String> {
    page.entries
        .iter()
        .filter_map(|entry| entry.command.clone())
        .collect()
}

#[test]
fn a_linearizable_read_on_any_node_holds_every_acknowledged_append() {
    let cluster = TestCluster::start("lin-reads", 3);
    let (leader, _) = cluster.stable_leader(&ALL, ELECTION);
    for round in 0..20 {
        let command = format!("c{round}");
        cluster.append(&command);
        // Right after the acknowledgement, on a follower that may not have heard of the
        // commit yet: the read must still hold it.
        let follower = (leader + 1 + round % 2) % 3;
        let page = page(read(&cluster.addr(follower), Consistency::Linearizable));
        assert_eq!(
            commands(&page).last(),
            Some(&command),
            "node {} answered without the append acknowledged before the read",
            follower + 1
        );
    }
    // `query` takes the same consistency.
    let mut connection = Connection::connect(&cluster.addr((leader + 1) % 3), WAIT).unwrap();
    let answer = connection
        .call(&Request::Query {
            range: QueryRange::default(),
            consistency: Consistency::Linearizable,
        })
        .unwrap();
    let Response::State(state) = answer else {
        panic!("expected a state, got {answer:?}");
    };
    let entries = state.entries.expect("query lists entries");
    assert_eq!(
        entries.iter().rev().find_map(|e| e.command.clone()),
        Some("c19".to_string())
    );
}

#[test]
fn a_node_cut_off_from_its_leader_never_answers_an_old_log() {
    let cluster = TestCluster::start("lin-cutoff", 3);
    let (leader, _) = cluster.stable_leader(&ALL, ELECTION);
    cluster.append("before");
    let follower = (leader + 1) % 3;
    signal(&cluster, leader, "STOP");
    // The follower still believes in the stopped leader: it cannot confirm a read.
    let started = Instant::now();
    let answer = read(&cluster.addr(follower), Consistency::Linearizable);
    assert!(
        matches!(answer, Response::Timeout | Response::NotLeader { .. }),
        "a read that cannot be confirmed answered {answer:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    // A local read answers at once from what the node has applied: maybe not "before"
    // yet (the stopped leader may not have told it the commit), never anything else.
    let local = page(read(&cluster.addr(follower), Consistency::Local));
    let held = commands(&local);
    assert!(held.is_empty() || held == ["before"], "{held:?}");
    // The two others elect a new leader and commit more while the old one sleeps.
    let others: Vec<usize> = ALL.iter().copied().filter(|&k| k != leader).collect();
    cluster.stable_leader(&others, ELECTION);
    let mut appended = None;
    for _ in 0..50 {
        let targets: Vec<String> = others.iter().map(|&k| cluster.addr(k)).collect();
        if let Ok(done) = replog_node::client::blocking::append(&targets, "after", WAIT) {
            appended = Some(done);
            break;
        }
    }
    let appended = appended.expect("the majority commits");
    // The old leader wakes up still thinking it leads: its linearizable read must not
    // return the log without "after".
    signal(&cluster, leader, "CONT");
    let answer = read(&cluster.addr(leader), Consistency::Linearizable);
    match answer {
        Response::Read(page) => assert!(
            page.entries.iter().any(|e| e.index == appended.index),
            "the woken old leader served a log without index {}: {:?}",
            appended.index,
            commands(&page)
        ),
        Response::Timeout | Response::NotLeader { .. } => {}
        other => panic!("unexpected answer {other:?}"),
    }
}

#[test]
fn lease_reads_are_served_by_the_leader_with_read_lease() {
    let cluster = TestCluster::start_with("lease-reads", 3, &["--read-lease"]);
    let (leader, _) = cluster.stable_leader(&ALL, ELECTION);
    for round in 0..10 {
        let command = format!("l{round}");
        cluster.append(&command);
        let page = page(read(&cluster.addr(leader), Consistency::Lease));
        assert_eq!(commands(&page).last(), Some(&command));
    }
    // Lease reads on a follower go through the leader like linearizable ones.
    let follower = (leader + 1) % 3;
    let page = page(read(&cluster.addr(follower), Consistency::Lease));
    assert_eq!(commands(&page).last().map(String::as_str), Some("l9"));
}

#[test]
fn a_bad_consistency_is_a_bad_request() {
    let cluster = TestCluster::start("bad-consistency", 1);
    cluster.stable_leader(&[0], ELECTION);
    let stream = std::net::TcpStream::connect(cluster.addr(0)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    for line in [
        r#"{"op":"read","from":1,"consistency":"strong"}"#,
        r#"{"op":"query","consistency":7}"#,
    ] {
        writeln!(writer, "{line}").unwrap();
        let mut answer = String::new();
        reader.read_line(&mut answer).unwrap();
        assert!(
            answer.contains("bad_request") && answer.contains("consistency"),
            "{line} answered {answer}"
        );
    }
}
