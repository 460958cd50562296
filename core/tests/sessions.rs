//! Exactly-once appends: the leader answers a retried `(client, seq)` from the replicated
//! session table or its log, and never appends it twice.

mod support;

use replog_core::{ClientId, Index, Input, Payload, ProposalOutcome, Term};
use std::num::NonZeroU64;
use support::Cluster;

fn propose_once(cluster: &mut Cluster, node: u64, client: &str, seq: u64) -> ProposalOutcome {
    let input = Input::ProposeOnce {
        client: ClientId::new(client).expect("valid id"),
        seq: NonZeroU64::new(seq).expect("nonzero"),
        command: format!("{client}-{seq}"),
    };
    cluster.step(node, input);
    cluster
        .node(node)
        .proposals
        .last()
        .cloned()
        .expect("one outcome")
}

/// Commits everything in flight: deliver, let a heartbeat carry the commit index, deliver.
fn settle(cluster: &mut Cluster, leader: u64) {
    cluster.deliver_all();
    cluster.tick(leader, 2);
    cluster.deliver_all();
}

/// Ticks `nodes` until one of them leads; returns it.
fn elect_among(cluster: &mut Cluster, nodes: &[u64]) -> u64 {
    for _ in 0..1000 {
        for &node in nodes {
            cluster.tick(node, 1);
            cluster.deliver_all();
            if cluster.core(node).role() == replog_core::Role::Leader {
                return node;
            }
        }
    }
    panic!("no leader among {nodes:?}");
}

fn copies(cluster: &Cluster, node: u64, client: &str, seq: u64) -> usize {
    let seq = NonZeroU64::new(seq).expect("nonzero");
    (cluster.node(node).committed.iter())
        .filter(|entry| {
            matches!(&entry.payload, Payload::Session { client: c, seq: s, .. }
                if c.as_str() == client && *s == seq)
        })
        .count()
}

#[test]
fn a_retry_of_an_applied_seq_is_answered_with_the_original_index_and_appends_nothing() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    let first = propose_once(&mut cluster, 1, "alice", 1);
    assert_eq!(
        first,
        ProposalOutcome::Accepted {
            first_index: Index(2),
            count: 1,
            term: Term(1)
        }
    );
    settle(&mut cluster, 1);
    let last_index = cluster.core(1).log().last_index();
    assert_eq!(
        propose_once(&mut cluster, 1, "alice", 1),
        ProposalOutcome::AlreadyApplied {
            index: Index(2),
            term: Term(1)
        }
    );
    assert_eq!(
        cluster.core(1).log().last_index(),
        last_index,
        "nothing appended"
    );
    settle(&mut cluster, 1);
    for node in 1..=3 {
        assert_eq!(copies(&cluster, node, "alice", 1), 1);
    }
}

#[test]
fn a_retry_racing_its_uncommitted_original_waits_for_the_same_entry() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    settle(&mut cluster, 1);
    let first = propose_once(&mut cluster, 1, "bob", 7);
    let retry = propose_once(&mut cluster, 1, "bob", 7);
    assert_eq!(first, retry, "the retry names the original entry");
    settle(&mut cluster, 1);
    assert_eq!(copies(&cluster, 1, "bob", 7), 1);
}

#[test]
fn a_seq_below_the_highest_is_refused_without_appending() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    propose_once(&mut cluster, 1, "carol", 5);
    let last_index = cluster.core(1).log().last_index();
    let behind = propose_once(&mut cluster, 1, "carol", 4);
    let highest = NonZeroU64::new(5).expect("nonzero");
    assert_eq!(behind, ProposalOutcome::SeqBehind { highest });
    settle(&mut cluster, 1);
    assert_eq!(propose_once(&mut cluster, 1, "carol", 3), behind);
    assert_eq!(cluster.core(1).log().last_index(), last_index);
}

#[test]
fn a_new_leader_answers_retries_from_the_replicated_table_and_its_log() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    propose_once(&mut cluster, 1, "dave", 1);
    settle(&mut cluster, 1);
    // Replicated but not known committed on the followers yet when the leader dies.
    propose_once(&mut cluster, 1, "erin", 1);
    cluster.deliver_all();
    cluster.isolate(1);
    let leader = elect_among(&mut cluster, &[2, 3]);
    let applied = propose_once(&mut cluster, leader, "dave", 1);
    assert!(matches!(
        applied,
        ProposalOutcome::AlreadyApplied {
            index: Index(2),
            ..
        }
    ));
    // Committed by now through the new leader's no-op, or still in its log: either way
    // the original entry answers.
    let original = match propose_once(&mut cluster, leader, "erin", 1) {
        ProposalOutcome::Accepted { first_index, .. } => first_index,
        ProposalOutcome::AlreadyApplied { index, .. } => index,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(original, Index(3));
    settle(&mut cluster, leader);
    assert_eq!(copies(&cluster, leader, "erin", 1), 1);
}

#[test]
fn a_restarted_node_rebuilds_the_table_from_its_log() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    propose_once(&mut cluster, 1, "frank", 2);
    settle(&mut cluster, 1);
    for node in 1..=3 {
        cluster.crash_and_restart(node);
    }
    cluster.elect(3);
    let retry = propose_once(&mut cluster, 3, "frank", 2);
    assert!(matches!(
        retry,
        ProposalOutcome::AlreadyApplied {
            index: Index(2),
            ..
        }
    ));
}
