//! Cluster behaviour of real node processes on loopback: election, replication, kill -9
//! of the leader, whole-cluster restart, and crashes during a stream of appends.

#[path = "node_support/mod.rs"]
mod support;

use replog_node::client::blocking::{self, AppendError, Connection};
use replog_node::client::{Request, Response, RoleName};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{signal, TestCluster};

const ALL: [usize; 3] = [0, 1, 2];
const ELECTION: Duration = Duration::from_secs(20);

#[test]
fn three_nodes_elect_exactly_one_leader() {
    let cluster = TestCluster::start("elect", 3);
    let (leader, term) = cluster.stable_leader(&ALL, ELECTION);
    // Election Safety, observed from outside: whatever each node says over a while, no
    // term ever has two leaders.
    let mut leaders_by_term: BTreeMap<u64, usize> = BTreeMap::from([(term, leader)]);
    for _ in 0..10 {
        for k in ALL {
            if let Some(state) = cluster.status(k) {
                if state.role == RoleName::Leader {
                    let first = *leaders_by_term.entry(state.term).or_insert(k);
                    assert_eq!(first, k, "two leaders in term {}", state.term);
                }
            }
        }
    }
    let leaders = ALL
        .iter()
        .filter_map(|&k| cluster.status(k))
        .filter(|state| state.role == RoleName::Leader && state.term == term)
        .count();
    assert_eq!(leaders, 1);
}

#[test]
fn appends_through_leader_and_follower_commit_on_every_node() {
    let cluster = TestCluster::start("append", 3);
    let (leader, _) = cluster.stable_leader(&ALL, ELECTION);
    let follower = (leader + 1) % 3;

    let via_leader = blocking::append(&[cluster.addr(leader)], "via leader", ELECTION)
        .expect("append through the leader");
    assert_eq!(via_leader.leader, cluster.addr(leader));

    // A follower answers not_leader with the leader's client address...
    let mut connection = Connection::connect(&cluster.addr(follower), ELECTION).unwrap();
    let answer = connection
        .call(&Request::Append {
            command: "via follower".into(),
        })
        .unwrap();
    assert_eq!(
        answer,
        Response::NotLeader {
            leader: Some(cluster.addr(leader))
        }
    );
    // ...which the client follows.
    let via_follower = blocking::append(&[cluster.addr(follower)], "via follower", ELECTION)
        .expect("append through a follower");
    assert_eq!(via_follower.leader, cluster.addr(leader));
    assert!(via_follower.index > via_leader.index);

    let expected = vec![
        (via_leader.index, via_leader.term, "via leader".to_string()),
        (
            via_follower.index,
            via_follower.term,
            "via follower".to_string(),
        ),
    ];
    for k in ALL {
        cluster.wait_committed_on(k, &expected);
    }
}

#[test]
fn a_killed_leader_is_replaced_within_two_seconds_and_catches_up_on_restart() {
    let mut cluster = TestCluster::start("failover", 3);
    let (old_leader, old_term) = cluster.stable_leader(&ALL, ELECTION);
    let before: Vec<_> = (0..3)
        .map(|n| {
            let command = format!("before-{n}");
            let appended = cluster.append(&command);
            (appended.index, appended.term, command)
        })
        .collect();

    cluster.cluster.kill(old_leader);
    let killed_at = Instant::now();
    let survivors: Vec<usize> = ALL.into_iter().filter(|&k| k != old_leader).collect();
    let (_, new_term) = cluster.wait_for(ELECTION, "a new leader", |cluster| {
        cluster
            .agreed_leader(&survivors)
            .filter(|&(_, term)| term > old_term)
    });
    let took = killed_at.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "new leader after {took:?}\n{}",
        cluster.cluster.all_log_tails(30)
    );
    // The probe only accepts a survivor leading in a later term than the old leader.

    for &k in &survivors {
        cluster.wait_committed_on(k, &before);
    }
    let after = cluster.append("after failover");
    let mut expected = before.clone();
    expected.push((after.index, after.term, "after failover".to_string()));

    cluster.cluster.restart(old_leader).expect("restart");
    cluster.wait_committed_on(old_leader, &expected);
    let (_, term) = cluster.stable_leader(&ALL, ELECTION);
    assert!(term >= new_term);
}

#[test]
fn a_whole_cluster_restart_keeps_the_log() {
    let mut cluster = TestCluster::start("restart", 3);
    cluster.stable_leader(&ALL, ELECTION);
    let mut expected: Vec<_> = (0..5)
        .map(|n| {
            let command = format!("kept-{n}");
            let appended = cluster.append(&command);
            (appended.index, appended.term, command)
        })
        .collect();
    for k in ALL {
        cluster.wait_committed_on(k, &expected);
    }

    // A clean stop of every node, then a start.
    cluster.cluster.stop_all().expect("clean stop");
    restart_all_and_check(&mut cluster, &mut expected, "after clean restart");

    // kill -9 of every node at once, then a start.
    for k in ALL {
        cluster.cluster.kill(k);
    }
    restart_all_and_check(&mut cluster, &mut expected, "after crash restart");
}

/// Starts every (stopped) node again, appends `command`, and checks that every node holds
/// everything committed so far.
fn restart_all_and_check(
    cluster: &mut TestCluster,
    expected: &mut Vec<(u64, u64, String)>,
    command: &str,
) {
    for k in ALL {
        cluster.cluster.restart(k).expect("restart");
    }
    cluster.stable_leader(&ALL, ELECTION);
    let appended = cluster.append(command);
    expected.push((appended.index, appended.term, command.into()));
    for k in ALL {
        cluster.wait_committed_on(k, expected);
    }
}

/// What the appending client saw.
#[derive(Default)]
struct History {
    /// Command -> (index, term) for every acknowledged append.
    acknowledged: BTreeMap<String, (u64, u64)>,
    /// Commands whose outcome is unknown (timeout or a connection lost after sending).
    unknown: Vec<String>,
}

#[test]
fn repeated_kill_9_during_appends_loses_no_acknowledged_append() {
    let mut cluster = TestCluster::start("crashes", 3);
    cluster.stable_leader(&ALL, ELECTION);
    let history = Arc::new(Mutex::new(History::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|writer| {
            let addrs = cluster.cluster.addrs();
            let history = history.clone();
            let stop = stop.clone();
            std::thread::spawn(move || append_stream(writer, &addrs, &history, &stop))
        })
        .collect();

    // Kill the leader, then a follower, in turns; twice, kill two nodes at once (no
    // majority: nothing can commit until one returns). Restart the victims each round.
    for round in 0..8 {
        let (leader, _) = cluster.stable_leader(&ALL, ELECTION);
        let victims = match round % 4 {
            0 | 2 => vec![leader],
            1 => vec![(leader + 1) % 3],
            _ => vec![leader, (leader + 2) % 3],
        };
        let acknowledged_before = history.lock().unwrap().acknowledged.len();
        for &victim in &victims {
            cluster.cluster.kill(victim);
        }
        if victims.len() == 1 {
            let what = format!("appends to commit while node {} is down", victims[0] + 1);
            cluster.wait_for(ELECTION, &what, |_| {
                let acknowledged = history.lock().unwrap().acknowledged.len();
                (acknowledged > acknowledged_before + 5).then_some(())
            });
        }
        for &victim in &victims {
            cluster
                .cluster
                .restart(victim)
                .expect("every node restarts");
        }
    }
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.join().expect("writer thread");
    }

    let history = history.lock().unwrap();
    assert!(
        history.acknowledged.len() > 20,
        "too few appends to mean anything"
    );
    cluster.stable_leader(&ALL, ELECTION);
    // Commit everything still uncommitted (entries of older terms commit with this one).
    let last = cluster.append("final");
    let mut committed_logs = Vec::new();
    for k in ALL {
        let log = cluster.wait_for(ELECTION, "the final append everywhere", |cluster| {
            let state = cluster.query(k)?;
            (state.commit_index >= last.index).then_some(state.entries?)
        });
        // State Machine Safety: every node holds the same committed prefix.
        let prefix: Vec<_> = log
            .iter()
            .filter(|entry| entry.index <= last.index)
            .map(|entry| (entry.index, entry.term, entry.command.clone()))
            .collect();
        committed_logs.push(prefix);
        let mut seen: BTreeMap<&str, u64> = BTreeMap::new();
        for entry in log.iter().filter(|entry| entry.committed) {
            if let Some(command) = entry.command.as_deref() {
                let previous = seen.insert(command, entry.index);
                assert!(
                    previous.is_none(),
                    "{command:?} appears twice on node {}",
                    k + 1
                );
            }
        }
        for (command, &(index, term)) in &history.acknowledged {
            let entry = log
                .iter()
                .find(|entry| entry.index == index)
                .unwrap_or_else(|| panic!("node {} lost acknowledged index {index}", k + 1));
            assert!(
                entry.term == term && entry.command.as_deref() == Some(command) && entry.committed,
                "node {}: acknowledged {command:?} at {index} in term {term}, found {entry:?}",
                k + 1
            );
        }
    }
    assert_eq!(committed_logs[0], committed_logs[1]);
    assert_eq!(committed_logs[0], committed_logs[2]);
    eprintln!(
        "{} acknowledged, {} of unknown outcome",
        history.acknowledged.len(),
        history.unknown.len()
    );
}

/// Appends unique commands one after another until `stop`, recording each outcome.
fn append_stream(writer: usize, addrs: &[String], history: &Mutex<History>, stop: &AtomicBool) {
    let mut sequence = 0;
    while !stop.load(Ordering::SeqCst) {
        let command = format!("w{writer}-{sequence}");
        sequence += 1;
        match blocking::append(addrs, &command, Duration::from_secs(10)) {
            Ok(appended) => {
                let mut history = history.lock().unwrap();
                history
                    .acknowledged
                    .insert(command, (appended.index, appended.term));
            }
            Err(AppendError::NoLeader { .. }) => {}
            Err(AppendError::Unknown { .. }) => history.lock().unwrap().unknown.push(command),
            Err(error @ AppendError::Rejected { .. }) => panic!("{error}"),
        }
    }
}

#[test]
fn a_frozen_follower_blocks_nobody_and_catches_up_when_it_thaws() {
    let cluster = TestCluster::start("frozen", 3);
    let (leader, _) = cluster.stable_leader(&ALL, ELECTION);
    let frozen = (leader + 1) % 3;
    signal(&cluster, frozen, "STOP");
    // The leader's sender to the frozen node fills its socket and queue; appends must
    // still commit with the other follower. Enough of them to overflow a socket buffer.
    let command = "x".repeat(4096);
    let mut expected = Vec::new();
    let started = Instant::now();
    // Through the leader: a client that picks the frozen node waits in vain, which is
    // not what this test is about.
    let targets = [cluster.addr(leader)];
    for n in 0..200 {
        let command = format!("{n}-{command}");
        let appended = blocking::append(&targets, &command, Duration::from_secs(20))
            .unwrap_or_else(|error| {
                panic!(
                    "append {n} failed: {error}\n{}",
                    cluster.cluster.all_log_tails(30)
                )
            });
        expected.push((appended.index, appended.term, command));
    }
    let last = expected.last().expect("appended").0;
    // The leader's status shows each follower's replication progress: the live one has
    // every entry, the frozen one is stuck behind them.
    let live = 3 - leader - frozen;
    let matches = match_indexes(&cluster, [leader, live, frozen], |live_match, _| {
        live_match >= last
    });
    assert!(
        matches.1 < expected[0].0,
        "frozen follower's match index: {matches:?}"
    );
    signal(&cluster, frozen, "CONT");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "appends crawled while a follower was frozen: {:?}",
        started.elapsed()
    );
    for k in ALL {
        cluster.wait_committed_on(k, &expected);
    }
    // Thawed, it catches up, and the leader's status says so.
    match_indexes(
        &cluster,
        [leader, live, frozen],
        |live_match, frozen_match| live_match >= last && frozen_match >= last,
    );

    /// The match indexes of the live and the frozen follower in the leader's `status`,
    /// once `until` holds for them (within 10 s).
    fn match_indexes(
        cluster: &TestCluster,
        [leader, live, frozen]: [usize; 3],
        until: impl Fn(u64, u64) -> bool,
    ) -> (u64, u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let state = support::status_of(&cluster.addr(leader)).expect("the leader answers");
            let members = state.members.expect("status lists the members");
            let of = |k: usize| {
                let member = members
                    .iter()
                    .find(|member| member.addr == cluster.addr(k))
                    .expect("every node is a member");
                member.match_index
            };
            assert_eq!(of(leader), None, "a leader shows no match index of its own");
            let (live, frozen) = (
                of(live).expect("a leader shows each follower's match index"),
                of(frozen).expect("a leader shows each follower's match index"),
            );
            if until(live, frozen) {
                return (live, frozen);
            }
            assert!(
                Instant::now() < deadline,
                "match indexes stayed at live {live}, frozen {frozen}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
