//! Configuration changes (`membership.rs`): learners, promotion, removal (the leader's own
//! included), the one-change-at-a-time and commit-in-term rules, and a configuration that
//! survives restarts and truncations.

mod support;

use replog_core::{
    Index, MembershipChange, MembershipRefusal, NodeId, Payload, ProposalOutcome, Role,
};
use support::Cluster;

fn add_learner(id: u64) -> MembershipChange {
    MembershipChange::AddLearner {
        id: NodeId(id),
        meta: format!("node{id}"),
    }
}

fn accepted(outcome: &ProposalOutcome) -> Index {
    match outcome {
        ProposalOutcome::Accepted { first_index, .. } => *first_index,
        other => panic!("expected the change accepted, got {other:?}"),
    }
}

/// A three-node cluster led by node 1 that has committed its no-op.
fn three() -> Cluster {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.deliver_all();
    cluster
}

#[test]
fn a_learner_receives_the_log_but_counts_for_no_quorum() {
    let mut cluster = three();
    cluster.add_node(4, 3);
    let at = accepted(&cluster.change(1, add_learner(4)));
    cluster.deliver_all();
    assert_eq!(cluster.core(1).commit_index(), at);
    assert_eq!(cluster.core(4).membership().index, at);
    assert_eq!(
        cluster.core(4).membership().membership.learners(),
        vec![NodeId(4)]
    );
    cluster.propose(1, &["x"]);
    cluster.deliver_all();
    cluster.tick(1, 2); // The next heartbeat carries the commit index.
    cluster.deliver_all();
    assert_eq!(cluster.core(4).commit_index(), at.next());

    // With both other voters cut off, the learner's copy commits nothing.
    cluster.isolate(2);
    cluster.isolate(3);
    cluster.propose(1, &["y"]);
    cluster.deliver_all();
    assert_eq!(cluster.core(1).commit_index(), at.next());
    assert_eq!(cluster.core(4).log().last_index(), at.plus(2));

    // Nor does a learner ever campaign, however long it hears nothing.
    cluster.isolate(4);
    cluster.tick(4, 500);
    assert_eq!(cluster.core(4).role(), Role::Follower);
    assert_eq!(cluster.core(4).stats().pre_votes_started, 0);
}

#[test]
fn a_promoted_learner_counts_and_a_lagging_one_is_refused() {
    let mut cluster = three();
    cluster.add_node(4, 3);
    cluster.isolate(4);
    accepted(&cluster.change(1, add_learner(4)));
    cluster.deliver_all();
    let refusal = cluster.change(1, MembershipChange::Promote { id: NodeId(4) });
    assert!(
        matches!(
            refusal,
            ProposalOutcome::MembershipRefused(MembershipRefusal::LearnerBehind {
                id: NodeId(4),
                ..
            })
        ),
        "{refusal:?}"
    );
    cluster.heal();
    cluster.tick(1, 2); // A heartbeat brings the learner up.
    cluster.deliver_all();
    let at = accepted(&cluster.change(1, MembershipChange::Promote { id: NodeId(4) }));
    cluster.deliver_all();
    assert!(cluster.core(1).membership().membership.is_voter(NodeId(4)));
    assert_eq!(cluster.core(1).commit_index(), at);

    // Four voters: two of them alone can no longer commit.
    cluster.isolate(3);
    cluster.isolate(4);
    cluster.propose(1, &["needs three of four"]);
    cluster.deliver_all();
    assert_eq!(cluster.core(1).commit_index(), at);
    cluster.heal();
    cluster.tick(1, 2);
    cluster.deliver_all();
    assert_eq!(cluster.core(1).commit_index(), at.next());
}

#[test]
fn one_change_at_a_time_and_not_before_an_entry_of_the_leaders_term() {
    // Won, but the no-op is not committed until its acknowledgements arrive: hold them.
    let mut cluster = {
        let mut fresh = Cluster::new(3);
        fresh.campaign(1);
        // Deliver the vote requests and answers only (the append follows after).
        for _ in 0..4 {
            let batch = std::mem::take(&mut fresh.network);
            let (votes, rest): (Vec<_>, Vec<_>) = batch
                .into_iter()
                .partition(|m| !matches!(m.body, replog_core::MessageBody::AppendEntries { .. }));
            fresh.network = rest;
            for message in votes {
                fresh.deliver(message);
            }
        }
        assert_eq!(fresh.core(1).role(), Role::Leader);
        fresh
    };
    assert_eq!(
        cluster.change(1, add_learner(4)),
        ProposalOutcome::MembershipRefused(MembershipRefusal::NotYetCommittedInTerm)
    );
    cluster.deliver_all();
    let at = accepted(&cluster.change(1, add_learner(4)));
    // The first change is not committed (node 4's copy goes nowhere: it does not exist,
    // and the followers' acknowledgements are held back).
    cluster.isolate(2);
    cluster.isolate(3);
    assert_eq!(
        cluster.change(1, add_learner(5)),
        ProposalOutcome::MembershipRefused(MembershipRefusal::Pending { index: at })
    );
    assert_eq!(
        cluster.change(1, MembershipChange::Remove { id: NodeId(9) }),
        ProposalOutcome::MembershipRefused(MembershipRefusal::Pending { index: at })
    );
}

#[test]
fn bad_changes_are_refused_with_their_reason() {
    let mut cluster = three();
    let refused = |outcome| match outcome {
        ProposalOutcome::MembershipRefused(refusal) => refusal,
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert_eq!(
        refused(cluster.change(1, add_learner(2))),
        MembershipRefusal::AlreadyMember { id: NodeId(2) }
    );
    assert_eq!(
        refused(cluster.change(1, MembershipChange::Promote { id: NodeId(3) })),
        MembershipRefusal::AlreadyVoter { id: NodeId(3) }
    );
    assert_eq!(
        refused(cluster.change(1, MembershipChange::Remove { id: NodeId(7) })),
        MembershipRefusal::NotMember { id: NodeId(7) }
    );
    assert_eq!(
        cluster.change(2, add_learner(4)),
        ProposalOutcome::NotLeader {
            leader: Some(NodeId(1))
        }
    );
    // Nothing was appended by any of them.
    assert_eq!(cluster.core(1).log().last_index(), Index(1));
}

#[test]
fn a_removed_leader_steps_down_once_its_removal_commits_and_never_campaigns() {
    let mut cluster = three();
    let at = accepted(&cluster.change(1, MembershipChange::Remove { id: NodeId(1) }));
    // In force at once: the leader counts only nodes 2 and 3 now, not itself.
    assert!(!cluster.core(1).membership().membership.is_voter(NodeId(1)));
    assert_eq!(cluster.core(1).role(), Role::Leader);
    cluster.deliver_all();
    assert_eq!(cluster.core(1).role(), Role::Follower);
    let stats = cluster.core(1).stats();
    let campaigns_before = (stats.pre_votes_started, stats.elections_started);
    // It stepped down the moment it knew the removal committed; the followers learn that
    // from the next leader (whose own no-op commits it again).
    assert_eq!(cluster.core(1).commit_index(), at);
    // The remaining two elect one of them; the removed node stays quiet.
    for _ in 0..60 {
        for id in 1..=3 {
            cluster.tick(id, 1);
        }
        cluster.deliver_all();
    }
    let leaders = cluster.leaders();
    assert_eq!(leaders.len(), 1, "{leaders:?}");
    assert_ne!(leaders[0].0, 1);
    let stats = cluster.core(1).stats();
    assert_eq!(
        (stats.pre_votes_started, stats.elections_started),
        campaigns_before,
        "the removed node campaigned"
    );
    let leader = leaders[0].0;
    cluster.propose(leader, &["after the removal"]);
    cluster.deliver_all();
    cluster.tick(leader, 2);
    cluster.deliver_all();
    let other = if leader == 2 { 3 } else { 2 };
    assert_eq!(cluster.core(other).commit_index(), at.plus(2));
}

#[test]
fn a_configuration_survives_a_restart() {
    let mut cluster = three();
    cluster.add_node(4, 3);
    accepted(&cluster.change(1, add_learner(4)));
    cluster.deliver_all();
    let at = accepted(&cluster.change(1, MembershipChange::Promote { id: NodeId(4) }));
    cluster.deliver_all();
    cluster.tick(1, 2); // The followers learn that it committed, and apply it.
    cluster.deliver_all();
    for id in [2, 4] {
        cluster.crash_and_restart(id);
        let membership = cluster.core(id).membership();
        assert_eq!(membership.index, at, "n{id}");
        assert_eq!(
            membership.membership.voters(),
            vec![NodeId(1), NodeId(2), NodeId(3), NodeId(4)]
        );
    }
    assert_eq!(
        cluster.node(2).disk.memberships.newest().map(|c| c.index),
        Some(at)
    );
}

#[test]
fn a_truncated_change_brings_the_previous_configuration_back() {
    let mut cluster = three();
    // Node 1 appends the removal of node 3 while cut off: only its own log holds it, and it
    // is in force there at once.
    cluster.isolate(1);
    let at = accepted(&cluster.change(1, MembershipChange::Remove { id: NodeId(3) }));
    assert_eq!(cluster.core(1).membership().index, at);
    cluster.drop_all();
    // Nodes 2 and 3 elect a leader of a later term, whose entry at that index differs.
    for _ in 0..60 {
        cluster.tick(2, 1);
        cluster.tick(3, 1);
        cluster.deliver_all();
    }
    let leaders: Vec<u64> = cluster.leaders().into_iter().map(|(id, _)| id).collect();
    let new_leader = *leaders.iter().find(|&&id| id != 1).expect("2 or 3 leads");
    // Back in touch: node 1 follows, its change is overwritten, the bootstrap
    // configuration is in force again and node 1 reports the change.
    cluster.heal();
    cluster.tick(new_leader, 2);
    cluster.deliver_all();
    assert_eq!(cluster.core(1).role(), Role::Follower);
    assert_eq!(cluster.core(1).membership().index, Index::ZERO);
    assert_eq!(
        cluster.core(1).membership().membership.voters(),
        vec![NodeId(1), NodeId(2), NodeId(3)]
    );
    assert!(cluster
        .transcript
        .iter()
        .any(|line| line.starts_with("n1: configuration of entry 0")));
    let overwritten = cluster
        .core(1)
        .log()
        .entry(at)
        .expect("held")
        .payload
        .clone();
    assert!(
        !matches!(overwritten, Payload::Config(_)),
        "{overwritten:?}"
    );
}

/// Storage records an applied configuration with the step's write and the commit index
/// lazily after it, so a crash can keep the first and lose the second (found by the
/// simulator's sweep): the configuration's entry is committed all the same, and recovery
/// takes it as the commit index instead of refusing to start.
#[test]
fn a_recorded_configuration_beyond_the_recorded_commit_index_counts_as_committed() {
    use replog_core::{
        Entry, EntryId, HardState, Membership, MembershipCheckpoint, RaftCore, Recovered, Term,
    };
    let two = Membership::bootstrap(&[NodeId(1), NodeId(2)]);
    let entries = vec![
        Entry {
            index: Index(1),
            term: Term(1),
            payload: Payload::Noop,
        },
        Entry {
            index: Index(2),
            term: Term(1),
            payload: Payload::Config(two.clone()),
        },
    ];
    let recovered = |commit: u64| Recovered {
        hard_state: HardState {
            term: Term(1),
            voted_for: Some(NodeId(1)),
        },
        prev: EntryId::ZERO,
        entries: entries.clone(),
        commit_index: Index(commit),
        sessions: None,
        membership: Some(MembershipCheckpoint {
            index: Index(2),
            membership: two.clone(),
        }),
    };
    let core = RaftCore::new(support::config(1, 3), recovered(1)).expect("recovers");
    assert_eq!(core.commit_index(), Index(2));
    assert_eq!(core.membership().index, Index(2));
    assert_eq!(
        core.membership().membership.voters(),
        vec![NodeId(1), NodeId(2)]
    );
    core.check_invariants();
}
