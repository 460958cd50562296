//! Leadership transfer (thesis §3.10): the leader brings the target up to date, sends it
//! `TimeoutNow`, refuses proposals meanwhile and gives up after an election timeout; the
//! target campaigns at once, and voters grant it although they hear the leader.

mod support;

use proptest::prelude::*;
use replog_core::{
    Index, Input, Message, MessageBody, NodeId, Payload, ProposalOutcome, ReadId, ReadMode, Role,
    Term, TransferOutcome,
};
use std::collections::BTreeMap;
use support::Cluster;

fn transfer(cluster: &mut Cluster, leader: u64, to: u64) -> TransferOutcome {
    cluster.step(leader, Input::Transfer { to: NodeId(to) });
    match cluster.node(leader).transfers.last() {
        Some(Ok(outcome)) => *outcome,
        other => panic!("no answer to the transfer: {other:?}"),
    }
}

fn timeout_nows(cluster: &Cluster) -> usize {
    let is_timeout_now = |m: &&Message| m.body == MessageBody::TimeoutNow;
    cluster.network.iter().filter(is_timeout_now).count()
}

/// A 3-node cluster led by node 1 with `commands` committed everywhere.
fn cluster_with(tweak: impl Fn(&mut replog_core::Config), commands: &[&str]) -> Cluster {
    let mut cluster = Cluster::with_config(3, tweak);
    // With leases, votes are held for the minimum election timeout after a start.
    let min = cluster.core(1).config().election_timeout_ticks_min;
    for id in 2..=3 {
        cluster.tick(id, min);
    }
    cluster.elect(1);
    if !commands.is_empty() {
        cluster.propose(1, commands);
    }
    cluster.deliver_all();
    cluster
}

#[test]
fn transfer_to_an_up_to_date_follower_makes_it_leader_of_the_next_term_section_3_10() {
    let mut cluster = cluster_with(|_| {}, &["a"]);
    assert_eq!(
        transfer(&mut cluster, 1, 2),
        TransferOutcome::Started { to: NodeId(2) }
    );
    assert_eq!(
        timeout_nows(&cluster),
        1,
        "n2 matches already: TimeoutNow at once"
    );
    let pre_votes = cluster.core(2).stats().pre_votes_started;
    cluster.deliver_all();
    assert_eq!(cluster.leaders(), [(2, Term(2))]);
    assert_eq!(cluster.core(1).role(), Role::Follower);
    assert_eq!(cluster.core(2).stats().transfer_campaigns, 1);
    assert_eq!(
        cluster.core(2).stats().pre_votes_started,
        pre_votes,
        "the target skips PreVote"
    );
    // The new leader commits, and nothing committed was lost.
    cluster.propose(2, &["b"]);
    cluster.deliver_all();
    let heartbeat = cluster.core(2).config().heartbeat_interval_ticks;
    cluster.tick(2, heartbeat); // Carries the commit index to n1.
    cluster.deliver_all();
    let commands: Vec<_> = cluster
        .node(1)
        .committed
        .iter()
        .filter_map(|e| match &e.payload {
            Payload::Command(c) => Some(c.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(commands, ["a", "b"]);
}

#[test]
fn voters_that_hear_the_leader_grant_the_targets_vote_but_not_an_ordinary_one_section_6_2() {
    let mut cluster = cluster_with(|_| {}, &[]);
    // n3 just heard the leader. An ordinary RequestVote from n2 in term 2 is ignored ...
    let ordinary = Message {
        from: NodeId(2),
        to: NodeId(3),
        term: Term(2),
        body: MessageBody::RequestVote {
            pre_vote: false,
            last_log_index: cluster.core(2).log().last_index(),
            last_log_term: cluster.core(2).log().last_term(),
            transfer: false,
        },
    };
    cluster.deliver(ordinary.clone());
    assert_eq!(cluster.core(3).term(), Term(1), "a leased voter moved on");
    assert!(cluster.network.is_empty(), "a leased voter answered");
    // ... while the transfer's campaign gets its vote.
    let flagged = Message {
        body: MessageBody::RequestVote {
            pre_vote: false,
            last_log_index: cluster.core(2).log().last_index(),
            last_log_term: cluster.core(2).log().last_term(),
            transfer: true,
        },
        ..ordinary
    };
    cluster.deliver(flagged);
    assert_eq!(cluster.core(3).term(), Term(2));
    assert_eq!(cluster.core(3).voted_for(), Some(NodeId(2)));
}

#[test]
fn a_lagging_target_is_caught_up_before_timeout_now() {
    let mut cluster = cluster_with(|_| {}, &["a"]);
    cluster.isolate(2);
    cluster.propose(1, &["b", "c"]);
    cluster.deliver_all();
    assert_eq!(
        cluster.core(1).commit_index(),
        Index(4),
        "n3 made the majority"
    );
    cluster.heal();
    assert_eq!(
        transfer(&mut cluster, 1, 2),
        TransferOutcome::Started { to: NodeId(2) }
    );
    assert_eq!(timeout_nows(&cluster), 0, "n2 lacks b and c");
    // Deliver until TimeoutNow is sent: by then n2 must hold the leader's whole log.
    // What the leader sent n2 while it was cut off is lost; its heartbeat finds that out.
    for _ in 0..100 {
        if timeout_nows(&cluster) > 0 {
            break;
        }
        if cluster.network.is_empty() {
            cluster.step(1, Input::Tick);
            continue;
        }
        let message = cluster.network.remove(0);
        cluster.deliver(message);
    }
    assert_eq!(timeout_nows(&cluster), 1);
    assert_eq!(cluster.core(2).log().last_index(), Index(4));
    cluster.deliver_all();
    assert_eq!(cluster.leaders(), [(2, Term(2))]);
}

#[test]
fn proposals_are_refused_while_transferring_and_accepted_again_after_giving_up() {
    let mut cluster = cluster_with(|_| {}, &["a"]);
    cluster.isolate(2);
    cluster.propose(1, &["b"]);
    cluster.deliver_all();
    assert_eq!(
        transfer(&mut cluster, 1, 2),
        TransferOutcome::Started { to: NodeId(2) }
    );
    let refused = cluster.propose(1, &["c"]);
    assert_eq!(refused, ProposalOutcome::Transferring { to: NodeId(2) });
    cluster.step(1, Input::Trim { before: Index(1) });
    assert_eq!(
        cluster.node(1).proposals.last(),
        Some(&ProposalOutcome::Transferring { to: NodeId(2) }),
        "a trim appends too"
    );
    // n2 stays cut off: after the maximum election timeout the leader gives up.
    let give_up = cluster.core(1).config().election_timeout_ticks_max;
    for tick in 1..=give_up {
        cluster.step(1, Input::Tick);
        cluster.deliver_all(); // n3 keeps answering: CheckQuorum holds.
        let gave_up = cluster.node(1).transfers.last() == Some(&Err(NodeId(2)));
        assert_eq!(gave_up, tick == give_up, "gave up at tick {tick}");
    }
    assert_eq!(cluster.core(1).role(), Role::Leader);
    assert!(matches!(
        cluster.propose(1, &["c"]),
        ProposalOutcome::Accepted { .. }
    ));
}

#[test]
fn a_transfer_is_refused_by_a_follower_to_itself_to_a_non_voter_and_while_one_is_under_way() {
    let mut cluster = cluster_with(|_| {}, &[]);
    assert_eq!(
        transfer(&mut cluster, 2, 3),
        TransferOutcome::NotLeader {
            leader: Some(NodeId(1))
        }
    );
    assert_eq!(transfer(&mut cluster, 1, 1), TransferOutcome::TargetIsSelf);
    assert_eq!(
        transfer(&mut cluster, 1, 9),
        TransferOutcome::NotVoter { to: NodeId(9) }
    );
    assert_eq!(
        transfer(&mut cluster, 1, 0),
        TransferOutcome::NotVoter { to: NodeId(0) }
    );
    cluster.isolate(3);
    cluster.propose(1, &["x"]);
    cluster.deliver_all();
    assert_eq!(
        transfer(&mut cluster, 1, 3),
        TransferOutcome::Started { to: NodeId(3) }
    );
    assert_eq!(
        transfer(&mut cluster, 1, 2),
        TransferOutcome::AlreadyTransferring { to: NodeId(3) }
    );
    assert_eq!(
        cluster.node(1).transfers.len(),
        5,
        "one answer per transfer"
    );
    assert_eq!(cluster.node(2).transfers.len(), 1);
}

#[test]
fn timeout_now_from_a_node_that_is_not_our_leader_or_from_another_term_is_ignored() {
    let mut cluster = cluster_with(|_| {}, &[]);
    let elections = cluster.core(3).stats().elections_started;
    for (from, term) in [(2, 1), (1, 0)] {
        cluster.deliver(Message {
            from: NodeId(from),
            to: NodeId(3),
            term: Term(term),
            body: MessageBody::TimeoutNow,
        });
    }
    assert_eq!(cluster.core(3).role(), Role::Follower);
    assert_eq!(cluster.core(3).stats().elections_started, elections);
    // From the leader, in its term: n3 campaigns.
    cluster.deliver(Message {
        from: NodeId(1),
        to: NodeId(3),
        term: Term(1),
        body: MessageBody::TimeoutNow,
    });
    assert_eq!(cluster.core(3).role(), Role::Candidate);
}

#[test]
fn a_lost_timeout_now_is_sent_again_at_the_next_heartbeat() {
    let mut cluster = cluster_with(|_| {}, &[]);
    transfer(&mut cluster, 1, 2);
    cluster
        .network
        .retain(|m| m.body != MessageBody::TimeoutNow);
    let heartbeat = cluster.core(1).config().heartbeat_interval_ticks;
    cluster.tick(1, heartbeat);
    assert_eq!(timeout_nows(&cluster), 1);
    cluster.deliver_all();
    assert_eq!(cluster.leaders(), [(2, Term(2))]);
}

/// With leases, the leader that sent TimeoutNow must not serve a lease read: the target may
/// win with the votes of followers that heard the old leader a moment ago, commit, and the
/// old leader's lease would then serve a stale read.
#[test]
fn a_leader_serves_no_lease_read_once_it_sent_timeout_now() {
    let mut cluster = cluster_with(|config| config.read_lease = true, &["a"]);
    // A first lease read takes a round and starts the lease; a second is served at once.
    cluster.step(
        1,
        Input::Read {
            id: ReadId(1),
            mode: ReadMode::Lease,
        },
    );
    cluster.deliver_all();
    cluster.step(
        1,
        Input::Read {
            id: ReadId(2),
            mode: ReadMode::Lease,
        },
    );
    assert_eq!(cluster.node(1).reads.len(), 2, "served within the lease");
    transfer(&mut cluster, 1, 2);
    // n2 wins with n3's vote; n1 hears nothing of it.
    cluster.cut.insert((NodeId(2), NodeId(1)));
    cluster.cut.insert((NodeId(3), NodeId(1)));
    cluster.deliver_all();
    assert_eq!(cluster.core(2).role(), Role::Leader);
    cluster.propose(2, &["b"]);
    cluster.deliver_all();
    assert_eq!(cluster.core(2).commit_index(), Index(4), "b is committed");
    assert_eq!(cluster.core(1).role(), Role::Leader, "n1 does not know yet");
    // Within what would have been its lease, n1 must not answer from its stale state.
    cluster.step(
        1,
        Input::Read {
            id: ReadId(3),
            mode: ReadMode::Lease,
        },
    );
    let answers = &cluster.node(1).reads;
    assert_eq!(
        answers.len(),
        2,
        "served a lease read after TimeoutNow: {answers:?}"
    );
    let probes = cluster
        .network
        .iter()
        .filter(|m| matches!(m.body, MessageBody::ReadProbe { .. }))
        .count();
    assert_eq!(probes, 2, "the read takes a round instead");
    // The round cannot be confirmed in term 1: the read fails rather than return stale data.
    cluster.heal();
    cluster.deliver_all();
    assert!(matches!(
        cluster.node(1).reads.last(),
        Some((ReadId(3), Err(_)))
    ));
}

#[test]
fn after_giving_up_the_leader_still_serves_no_lease_read_in_that_term() {
    let mut cluster = cluster_with(|config| config.read_lease = true, &["a"]);
    transfer(&mut cluster, 1, 2);
    cluster
        .network
        .retain(|m| m.body != MessageBody::TimeoutNow);
    cluster.cut.insert((NodeId(1), NodeId(2)));
    let give_up = cluster.core(1).config().election_timeout_ticks_max;
    for _ in 0..give_up {
        cluster.step(1, Input::Tick);
        cluster.deliver_all();
    }
    assert_eq!(cluster.node(1).transfers.last(), Some(&Err(NodeId(2))));
    // A delayed TimeoutNow could still start n2's campaign: every lease read takes a round.
    for id in 1..=2 {
        cluster.step(
            1,
            Input::Read {
                id: ReadId(id),
                mode: ReadMode::Lease,
            },
        );
        assert!(
            cluster
                .network
                .iter()
                .any(|m| matches!(m.body, MessageBody::ReadProbe { .. })),
            "lease read {id} was served without a round"
        );
        cluster.deliver_all();
    }
    assert_eq!(cluster.node(1).reads.len(), 2);
}

#[derive(Clone, Debug)]
enum Step {
    Tick(u64),
    Deliver(usize),
    Drop(usize),
    Transfer(u64, u64),
    Propose(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (1u64..=3).prop_map(Step::Tick),
        8 => any::<usize>().prop_map(Step::Deliver),
        1 => any::<usize>().prop_map(Step::Drop),
        2 => (1u64..=3, 0u64..=4).prop_map(|(leader, to)| Step::Transfer(leader, to)),
        2 => (1u64..=3).prop_map(Step::Propose),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    /// Transfers at random moments, with loss and reordering: at most one leader per term
    /// (§5.2), committed logs agree (§5.4.3), and each transfer is answered once.
    #[test]
    fn random_transfers_keep_election_safety_and_agreeing_commits(
        steps in prop::collection::vec(step(), 1..300),
        lease in any::<bool>(),
    ) {
        let mut cluster = Cluster::with_config(3, |config| config.read_lease = lease);
        let mut leaders: BTreeMap<Term, u64> = BTreeMap::new();
        let mut asked = [0usize; 4];
        for step in steps {
            match step {
                Step::Tick(id) => cluster.step(id, Input::Tick),
                Step::Deliver(k) if !cluster.network.is_empty() => {
                    let message = cluster.network.remove(k % cluster.network.len());
                    cluster.deliver(message);
                    Vec::new()
                }
                Step::Drop(k) if !cluster.network.is_empty() => {
                    let k = k % cluster.network.len();
                    cluster.network.remove(k);
                    Vec::new()
                }
                Step::Deliver(_) | Step::Drop(_) => Vec::new(),
                Step::Transfer(id, to) => {
                    asked[id as usize] += 1;
                    cluster.step(id, Input::Transfer { to: NodeId(to) })
                }
                Step::Propose(id) => {
                    cluster.propose(id, &["x"]);
                    Vec::new()
                }
            };
            for (id, term) in cluster.leaders() {
                let first = *leaders.entry(term).or_insert(id);
                prop_assert_eq!(first, id, "two leaders in {}", term);
            }
        }
        for id in 1..=3u64 {
            let answers = cluster.node(id).transfers.iter().filter(|t| t.is_ok()).count();
            prop_assert_eq!(answers, asked[id as usize]);
        }
        let logs: Vec<_> = (1..=3).map(|id| cluster.node(id).committed.clone()).collect();
        for a in &logs {
            for b in &logs {
                let n = a.len().min(b.len());
                prop_assert_eq!(&a[..n], &b[..n], "committed logs diverge");
            }
        }
    }
}
