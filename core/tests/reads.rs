//! Linearizable reads (ReadIndex) and lease reads: when a read is released, at what index,
//! and when it must fail instead.

mod support;

use replog_core::{Index, Input, MessageBody, NodeId, ReadId, ReadMode, Role};
use support::Cluster;

fn read(cluster: &mut Cluster, node: u64, id: u64, mode: ReadMode) {
    cluster.step(
        node,
        Input::Read {
            id: ReadId(id),
            mode,
        },
    );
}

fn answers(cluster: &Cluster, node: u64) -> Vec<(ReadId, Result<Index, Option<NodeId>>)> {
    cluster.node(node).reads.clone()
}

fn probes_in_flight(cluster: &Cluster) -> usize {
    cluster
        .network
        .iter()
        .filter(|m| matches!(m.body, MessageBody::ReadProbe { .. }))
        .count()
}

/// Lets `node` forget it heard the leader, so that it grants votes again.
fn outwait_leader(cluster: &mut Cluster, node: u64) {
    let min = cluster.core(node).config().election_timeout_ticks_min;
    for _ in 0..min {
        cluster.step(node, Input::Tick);
        cluster.network.retain(|m| m.from != NodeId(node));
    }
}

/// A leader with `commands` committed everywhere.
fn cluster_with(size: u64, commands: &[&str]) -> Cluster {
    let mut cluster = Cluster::new(size);
    cluster.elect(1);
    if !commands.is_empty() {
        cluster.propose(1, commands);
    }
    cluster.deliver_all();
    cluster
}

#[test]
fn a_leader_read_waits_for_a_majority_to_confirm_its_leadership() {
    let mut cluster = cluster_with(3, &["a", "b"]);
    let commit = cluster.core(1).commit_index();
    assert_eq!(commit, Index(3), "noop, a, b");
    read(&mut cluster, 1, 1, ReadMode::Linearizable);
    assert!(answers(&cluster, 1).is_empty(), "answered without a round");
    assert_eq!(probes_in_flight(&cluster), 2, "one probe per follower");
    // One follower's echo makes a majority of three with the leader.
    let first = cluster.network.remove(0);
    cluster.deliver(first);
    let echo = cluster.network.pop().expect("n2 answered");
    assert!(matches!(echo.body, MessageBody::ReadProbeResponse { .. }));
    cluster.deliver(echo);
    assert_eq!(answers(&cluster, 1), [(ReadId(1), Ok(commit))]);
}

#[test]
fn an_isolated_leader_never_confirms_a_read_and_fails_it_in_time() {
    let mut cluster = cluster_with(3, &["a"]);
    cluster.isolate(1);
    read(&mut cluster, 1, 7, ReadMode::Linearizable);
    // The others elect a new leader and commit more; the old leader must not answer.
    outwait_leader(&mut cluster, 3);
    cluster.elect(2);
    cluster.propose(2, &["b"]);
    cluster.deliver_all();
    assert!(answers(&cluster, 1).is_empty());
    let deadline = 2 * cluster.core(1).config().election_timeout_ticks_max;
    // CheckQuorum deposes it first; either way the read fails and is never served.
    cluster.tick(1, deadline);
    assert_eq!(answers(&cluster, 1).len(), 1);
    assert!(
        answers(&cluster, 1)[0].1.is_err(),
        "{:?}",
        answers(&cluster, 1)
    );
    assert_eq!(cluster.core(1).reads_outstanding(), 0);
}

#[test]
fn without_check_quorum_an_unconfirmed_read_fails_at_its_deadline() {
    let mut cluster = Cluster::with_config(3, |config| config.check_quorum = false);
    cluster.elect(1);
    cluster.deliver_all();
    cluster.isolate(1);
    read(&mut cluster, 1, 3, ReadMode::Linearizable);
    let deadline = 2 * cluster.core(1).config().election_timeout_ticks_max;
    cluster.tick(1, deadline - 1);
    assert!(answers(&cluster, 1).is_empty());
    assert_eq!(cluster.core(1).role(), Role::Leader);
    cluster.tick(1, 1);
    assert_eq!(answers(&cluster, 1), [(ReadId(3), Err(Some(NodeId(1))))]);
}

#[test]
fn a_new_leader_serves_reads_only_after_committing_an_entry_of_its_term() {
    let mut cluster = cluster_with(3, &["a"]);
    cluster.isolate(1);
    outwait_leader(&mut cluster, 3);
    cluster.campaign(2);
    while cluster.core(2).role() != Role::Leader {
        let message = cluster.network.remove(0);
        cluster.deliver(message);
    }
    // Its no-op is not yet acknowledged by anyone: hold n3's answers back.
    let term = cluster.core(2).term();
    cluster.cut.insert((NodeId(3), NodeId(2)));
    cluster.deliver_all();
    assert!(
        cluster
            .core(2)
            .log()
            .term_at(cluster.core(2).commit_index())
            != Ok(term)
    );
    read(&mut cluster, 2, 1, ReadMode::Linearizable);
    assert_eq!(
        probes_in_flight(&cluster),
        0,
        "no round before its term commits"
    );
    cluster.cut.clear();
    cluster.isolate(1);
    cluster.tick(2, cluster.core(2).config().heartbeat_interval_ticks);
    cluster.deliver_all();
    let commit = cluster.core(2).commit_index();
    assert_eq!(cluster.core(2).log().term_at(commit), Ok(term));
    assert_eq!(answers(&cluster, 2), [(ReadId(1), Ok(commit))]);
}

#[test]
fn reads_that_arrive_together_share_one_round() {
    let mut cluster = cluster_with(5, &["a"]);
    for id in 0..10 {
        read(&mut cluster, 1, id, ReadMode::Linearizable);
    }
    assert_eq!(probes_in_flight(&cluster), 4, "one round for ten reads");
    cluster.deliver_all();
    let answered = answers(&cluster, 1);
    assert_eq!(answered.len(), 10);
    assert!(answered.iter().all(|(_, at)| *at == Ok(Index(2))));
}

#[test]
fn a_lost_probe_is_sent_again_at_the_next_heartbeat() {
    let mut cluster = cluster_with(3, &["a"]);
    read(&mut cluster, 1, 1, ReadMode::Linearizable);
    cluster.drop_all();
    cluster.tick(1, cluster.core(1).config().heartbeat_interval_ticks);
    assert_eq!(probes_in_flight(&cluster), 2);
    cluster.deliver_all();
    assert_eq!(answers(&cluster, 1), [(ReadId(1), Ok(Index(2)))]);
}

#[test]
fn a_follower_read_is_served_once_it_applied_the_leaders_read_index() {
    let mut cluster = cluster_with(3, &["a"]);
    // n3 misses the next append, so it lags the leader's commit index.
    cluster.cut.insert((NodeId(1), NodeId(3)));
    cluster.propose(1, &["b", "c"]);
    cluster.deliver_all();
    assert_eq!(cluster.core(1).commit_index(), Index(4));
    assert!(cluster.core(3).applied_index() < Index(4));
    cluster.cut.clear();
    read(&mut cluster, 3, 9, ReadMode::Linearizable);
    let forwarded = cluster.network.remove(0);
    assert!(matches!(forwarded.body, MessageBody::ReadIndex { .. }));
    cluster.deliver(forwarded);
    // Deliver everything but the entries n3 lacks: it gets the read index first.
    let (to_three, rest): (Vec<_>, Vec<_>) = cluster
        .network
        .drain(..)
        .partition(|m| m.to == NodeId(3) && matches!(m.body, MessageBody::ReadProbe { .. }));
    cluster.network = rest;
    for message in to_three {
        cluster.deliver(message);
    }
    cluster.deliver_all();
    assert!(cluster.core(3).applied_index() < Index(4));
    assert!(
        answers(&cluster, 3).is_empty(),
        "served before it applied 4"
    );
    // The next heartbeat brings the entries it missed.
    cluster.tick(1, cluster.core(1).config().heartbeat_interval_ticks);
    cluster.deliver_all();
    let answered = answers(&cluster, 3);
    assert_eq!(answered, [(ReadId(9), Ok(Index(4)))]);
    assert!(cluster.core(3).applied_index() >= Index(4));
}

#[test]
fn a_follower_without_a_leader_fails_the_read_at_once() {
    let mut cluster = Cluster::new(3);
    read(&mut cluster, 2, 5, ReadMode::Linearizable);
    assert_eq!(answers(&cluster, 2), [(ReadId(5), Err(None))]);
}

#[test]
fn a_read_forwarded_to_a_leader_that_is_deposed_fails() {
    let mut cluster = cluster_with(3, &["a"]);
    cluster.cut.insert((NodeId(1), NodeId(2)));
    cluster.cut.insert((NodeId(2), NodeId(1)));
    read(&mut cluster, 2, 4, ReadMode::Linearizable);
    assert!(answers(&cluster, 2).is_empty());
    // n2 loses touch with n1 and campaigns: the read forwarded to n1 is void.
    cluster.campaign(2);
    assert_eq!(answers(&cluster, 2), [(ReadId(4), Err(None))]);
}

#[test]
fn a_single_node_confirms_reads_at_once() {
    let mut cluster = cluster_with(1, &["a"]);
    read(&mut cluster, 1, 1, ReadMode::Linearizable);
    assert_eq!(answers(&cluster, 1), [(ReadId(1), Ok(Index(2)))]);
}

#[test]
fn a_lease_read_is_served_without_a_round_while_the_lease_holds() {
    let mut cluster = Cluster::with_config(3, |config| config.read_lease = true);
    // Votes are held for the minimum election timeout after a start.
    let min = cluster.core(1).config().election_timeout_ticks_min;
    for id in 2..=3 {
        cluster.tick(id, min);
    }
    cluster.elect(1);
    cluster.propose(1, &["a"]);
    cluster.deliver_all();
    // The first lease read takes a round, which starts the lease.
    read(&mut cluster, 1, 1, ReadMode::Lease);
    assert_eq!(probes_in_flight(&cluster), 2);
    cluster.deliver_all();
    assert_eq!(answers(&cluster, 1), [(ReadId(1), Ok(Index(2)))]);
    read(&mut cluster, 1, 2, ReadMode::Lease);
    assert_eq!(probes_in_flight(&cluster), 0, "served within the lease");
    assert_eq!(answers(&cluster, 1)[1], (ReadId(2), Ok(Index(2))));
    // Past the lease, a lease read takes a round again.
    let lease = cluster.core(1).config().lease_ticks();
    assert!(lease > 0);
    for _ in 0..lease {
        cluster.step(1, Input::Tick);
        cluster.drop_all();
    }
    read(&mut cluster, 1, 3, ReadMode::Lease);
    assert_eq!(answers(&cluster, 1).len(), 2);
    assert_eq!(probes_in_flight(&cluster), 2);
}

#[test]
fn with_leases_a_restarted_node_holds_its_vote_for_the_minimum_election_timeout() {
    let mut cluster = Cluster::with_config(3, |config| config.read_lease = true);
    cluster.crash_and_restart(3);
    // A candidate asks the restarted node at once: it may have echoed a probe it forgot.
    cluster.isolate(1);
    cluster.campaign(2);
    let requests: Vec<_> = cluster
        .network
        .drain(..)
        .filter(|m| m.to == NodeId(3))
        .collect();
    assert!(!requests.is_empty());
    for request in requests {
        cluster.deliver(request);
    }
    let answers: Vec<bool> = cluster
        .network
        .iter()
        .filter_map(|m| match m.body {
            MessageBody::RequestVoteResponse { granted, .. } if m.from == NodeId(3) => {
                Some(granted)
            }
            _ => None,
        })
        .collect();
    assert_eq!(answers, [false], "granted during its start lease");
    // Once the minimum election timeout has passed, it votes again.
    let min = cluster.core(3).config().election_timeout_ticks_min;
    cluster.tick(3, min);
    cluster.drop_all();
    for _ in 0..100 {
        cluster.tick(2, 1);
        cluster.deliver_all();
        if cluster.core(2).role() == Role::Leader {
            assert_eq!(cluster.core(3).voted_for(), Some(NodeId(2)));
            return;
        }
    }
    panic!("n2 never won n3's vote after its start lease");
}

#[test]
fn lease_reads_need_check_quorum() {
    let mut config = support::config(1, 3);
    config.read_lease = true;
    config.check_quorum = false;
    let error = config.validate().unwrap_err();
    assert!(error.to_string().contains("check_quorum"), "{error}");
}
