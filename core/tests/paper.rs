//! Unit tests named after the rule they check: the Raft paper's §5.1–§5.4, PreVote and
//! CheckQuorum (thesis §9.6, §6.2), and the durability rule (thesis §3.8). Each asserts what
//! a node *emits*, not its private state.

mod support;

use replog_core::{
    AppendResponse, Config, ConflictHint, Entry, EntryId, HardState, Index, Input, Message,
    MessageBody, NodeId, Output, Payload, ProposalOutcome, RaftCore, Recovered, RecoveryError,
    Role, Term, WriteId,
};
use support::{config, Cluster};

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index: Index(index),
        term: Term(term),
        payload: Payload::Command(format!("c{index}").into()),
    }
}

fn node_with(
    id: u64,
    size: u64,
    term: u64,
    entries: Vec<Entry>,
    tweak: impl Fn(&mut Config),
) -> RaftCore {
    let mut config = config(id, size);
    tweak(&mut config);
    let recovered = Recovered {
        membership: None,
        prev: EntryId::ZERO,
        hard_state: HardState {
            term: Term(term),
            voted_for: None,
        },
        entries,
        commit_index: Index(0),
        sessions: Default::default(),
    };
    RaftCore::new(config, recovered).expect("valid recovery")
}

fn step(core: &mut RaftCore, input: Input) -> Vec<Output> {
    let mut outputs = Vec::new();
    core.step(input, &mut outputs);
    core.check_invariants();
    outputs
}

fn sent(outputs: &[Output]) -> Vec<&Message> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send(m) => Some(m),
            _ => None,
        })
        .collect()
}

fn persist_ids(outputs: &[Output]) -> Vec<WriteId> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Persist(w) => Some(w.id),
            _ => None,
        })
        .collect()
}

fn append(
    from: u64,
    to: u64,
    term: u64,
    prev: (u64, u64),
    entries: Vec<Entry>,
    commit: u64,
) -> Message {
    Message {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(term),
        body: MessageBody::AppendEntries {
            prev_log_index: Index(prev.0),
            prev_log_term: Term(prev.1),
            entries,
            leader_commit: Index(commit),
        },
    }
}

fn vote_request(from: u64, to: u64, term: u64, last: (u64, u64), pre_vote: bool) -> Message {
    Message {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(term),
        body: MessageBody::RequestVote {
            pre_vote,
            last_log_index: Index(last.0),
            last_log_term: Term(last.1),
            transfer: false,
        },
    }
}

fn append_replies(outputs: &[Output]) -> Vec<AppendResponse> {
    sent(outputs)
        .into_iter()
        .filter_map(|m| match &m.body {
            MessageBody::AppendEntriesResponse(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

fn vote_replies(outputs: &[Output]) -> Vec<(Term, bool)> {
    sent(outputs)
        .into_iter()
        .filter_map(|m| match m.body {
            MessageBody::RequestVoteResponse { granted, .. } => Some((m.term, granted)),
            _ => None,
        })
        .collect()
}

/// Steps and immediately reports every write durable, returning all outputs.
fn step_durably(core: &mut RaftCore, input: Input) -> Vec<Output> {
    let mut outputs = step(core, input);
    if let Some(&last) = persist_ids(&outputs).last() {
        outputs.extend(step(core, Input::Persisted { write_id: last }));
    }
    outputs
}

fn no_pre_vote(config: &mut Config) {
    config.pre_vote = false;
}

// §5.1: terms.

#[test]
fn s5_1_leader_steps_down_on_higher_term() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    let term = cluster.core(1).term();
    let reply = Message {
        from: NodeId(2),
        to: NodeId(1),
        term: term.next(),
        body: MessageBody::AppendEntriesResponse(AppendResponse {
            index: Index(0),
            reject: None,
        }),
    };
    cluster.deliver(reply);
    assert_eq!(cluster.core(1).role(), Role::Follower);
    assert_eq!(cluster.core(1).term(), term.next());
}

#[test]
fn s5_1_stale_term_append_is_rejected_with_current_term() {
    let mut core = node_with(1, 3, 5, vec![], |_| {});
    let outputs = step_durably(
        &mut core,
        Input::Receive(append(2, 1, 3, (0, 0), vec![entry(1, 3)], 0)),
    );
    let replies = sent(&outputs);
    assert_eq!(replies.len(), 1);
    assert_eq!(
        replies[0].term,
        Term(5),
        "the deposed leader must learn the newer term"
    );
    assert!(
        matches!(&replies[0].body, MessageBody::AppendEntriesResponse(r) if r.reject.is_some())
    );
    assert_eq!(
        core.log().last_index(),
        Index(0),
        "entries from a stale leader are not taken"
    );
}

// §5.2: leader election.

#[test]
fn s5_2_follower_campaigns_after_election_timeout() {
    let mut core = node_with(1, 3, 0, vec![], no_pre_vote);
    let mut outputs = Vec::new();
    for _ in 0..core.config().election_timeout_ticks_max {
        outputs = step(&mut core, Input::Tick);
        if core.role() == Role::Candidate {
            break;
        }
    }
    assert_eq!(core.role(), Role::Candidate);
    assert_eq!(core.term(), Term(1));
    let requests: Vec<_> = sent(&outputs)
        .into_iter()
        .map(|m| (m.to, m.term, m.body.kind()))
        .collect();
    assert_eq!(
        requests,
        vec![
            (NodeId(2), Term(1), "RequestVote"),
            (NodeId(3), Term(1), "RequestVote")
        ]
    );
}

#[test]
fn s5_2_election_timeouts_are_randomized_within_range() {
    let mut timeouts = std::collections::BTreeSet::new();
    for seed in 0..20 {
        let mut config = config(1, 3);
        config.rng_seed = seed;
        config.pre_vote = false;
        let (min, max) = (
            config.election_timeout_ticks_min,
            config.election_timeout_ticks_max,
        );
        let mut core = RaftCore::new(config, Recovered::default()).unwrap();
        let mut ticks = 0;
        while core.role() == Role::Follower {
            step(&mut core, Input::Tick);
            ticks += 1;
        }
        assert!(
            (min..max).contains(&ticks),
            "timeout {ticks} outside [{min}, {max})"
        );
        timeouts.insert(ticks);
    }
    assert!(timeouts.len() > 3, "timeouts barely vary: {timeouts:?}");
}

#[test]
fn s5_2_candidate_with_majority_becomes_leader() {
    let mut cluster = Cluster::with_config(5, no_pre_vote);
    cluster.campaign(1);
    cluster.deliver_all();
    assert_eq!(cluster.leaders(), vec![(1, Term(1))]);
    for id in 2..=5 {
        assert_eq!(cluster.core(id).leader(), Some(NodeId(1)));
    }
}

#[test]
fn s5_2_at_most_one_vote_per_term() {
    let mut core = node_with(1, 3, 1, vec![], |c| c.check_quorum = false);
    let first = step_durably(
        &mut core,
        Input::Receive(vote_request(2, 1, 2, (0, 0), false)),
    );
    let second = step_durably(
        &mut core,
        Input::Receive(vote_request(3, 1, 2, (0, 0), false)),
    );
    assert_eq!(vote_replies(&first), vec![(Term(2), true)]);
    assert_eq!(vote_replies(&second), vec![(Term(2), false)]);
    // Asking again for the vote already given is answered the same way.
    let repeat = step_durably(
        &mut core,
        Input::Receive(vote_request(2, 1, 2, (0, 0), false)),
    );
    assert_eq!(vote_replies(&repeat), vec![(Term(2), true)]);
}

// §5.3: log replication.

#[test]
fn s5_3_mismatched_prev_is_rejected_with_conflict_hint() {
    let mut core = node_with(1, 3, 3, vec![entry(1, 1), entry(2, 2), entry(3, 2)], |_| {});
    let outputs = step_durably(
        &mut core,
        Input::Receive(append(2, 1, 3, (3, 3), vec![], 0)),
    );
    let hint = ConflictHint {
        conflict_term: Some(Term(2)),
        first_index: Index(2),
    };
    assert_eq!(
        append_replies(&outputs),
        vec![AppendResponse {
            index: Index(3),
            reject: Some(hint)
        }]
    );

    let outputs = step_durably(
        &mut core,
        Input::Receive(append(2, 1, 3, (7, 3), vec![], 0)),
    );
    let hint = ConflictHint {
        conflict_term: None,
        first_index: Index(4),
    };
    assert_eq!(
        append_replies(&outputs),
        vec![AppendResponse {
            index: Index(7),
            reject: Some(hint)
        }]
    );
}

#[test]
fn s5_3_follower_truncates_only_the_conflicting_suffix() {
    let mut core = node_with(1, 3, 3, vec![entry(1, 1), entry(2, 1), entry(3, 2)], |_| {});
    let outputs = step_durably(
        &mut core,
        Input::Receive(append(2, 1, 3, (1, 1), vec![entry(2, 1), entry(3, 3)], 0)),
    );
    let terms: Vec<u64> = core.log().held().iter().map(|e| e.term.0).collect();
    assert_eq!(terms, vec![1, 1, 3]);
    let write = outputs
        .iter()
        .find_map(|o| match o {
            Output::Persist(w) => Some(w.clone()),
            _ => None,
        })
        .expect("the new entry is persisted");
    assert_eq!(write.truncate_after, Some(Index(2)));
    assert_eq!(write.entries, vec![entry(3, 3)]);
    assert_eq!(
        append_replies(&outputs),
        vec![AppendResponse {
            index: Index(3),
            reject: None
        }]
    );
}

#[test]
fn s5_3_stale_append_entries_never_truncate() {
    let entries = vec![entry(1, 1), entry(2, 1), entry(3, 1)];
    let mut core = node_with(1, 3, 1, entries.clone(), |_| {});
    // A delayed copy of an older AppendEntries carrying only entry 2.
    let outputs = step(
        &mut core,
        Input::Receive(append(2, 1, 1, (1, 1), vec![entry(2, 1)], 0)),
    );
    assert_eq!(core.log().held(), &entries[..], "entry 3 must survive");
    assert!(persist_ids(&outputs).is_empty(), "nothing to write");
    assert_eq!(
        append_replies(&outputs),
        vec![AppendResponse {
            index: Index(2),
            reject: None
        }]
    );
}

#[test]
fn s5_3_follower_commit_is_bounded_by_the_last_verified_index() {
    // The follower holds entries 1..=3 of term 1 but the leader only proves a match up to 1.
    let mut core = node_with(1, 3, 2, vec![entry(1, 1), entry(2, 1), entry(3, 1)], |_| {});
    step_durably(
        &mut core,
        Input::Receive(append(2, 1, 2, (1, 1), vec![], 3)),
    );
    assert_eq!(
        core.commit_index(),
        Index(1),
        "entries 2..3 are unverified and may differ"
    );
}

#[test]
fn s5_3_leader_backtracks_quickly_to_the_divergence() {
    let mut cluster = Cluster::with_config(3, no_pre_vote);
    cluster.elect(1);
    cluster.propose(1, &["a"]);
    cluster.deliver_all();
    // Node 3 misses a long run of term-1 entries while cut off.
    cluster.isolate(3);
    for i in 0..50 {
        cluster.propose(1, &[&format!("x{i}")]);
        cluster.deliver_all();
    }
    cluster.heal();
    cluster.tick(1, cluster.core(1).config().heartbeat_interval_ticks);
    let mut rounds = 0;
    while !cluster.network.is_empty() {
        let batch = std::mem::take(&mut cluster.network);
        for m in batch {
            cluster.deliver(m);
        }
        rounds += 1;
    }
    assert_eq!(
        cluster.core(3).log().last_index(),
        cluster.core(1).log().last_index()
    );
    assert!(
        rounds <= 6,
        "backtracking took {rounds} round trips, not one per entry"
    );
}

// §5.4: safety.

#[test]
fn s5_4_1_vote_refused_to_a_candidate_with_a_stale_log() {
    let log = vec![entry(1, 1), entry(2, 2)];
    let mut core = node_with(1, 3, 2, log, |c| c.check_quorum = false);
    // Higher index but older last term: refused (last term compared first).
    let outputs = step_durably(
        &mut core,
        Input::Receive(vote_request(2, 1, 3, (9, 1), false)),
    );
    assert_eq!(vote_replies(&outputs), vec![(Term(3), false)]);
    // Same last term, shorter log: refused.
    let outputs = step_durably(
        &mut core,
        Input::Receive(vote_request(3, 1, 4, (1, 2), false)),
    );
    assert_eq!(vote_replies(&outputs), vec![(Term(4), false)]);
    // Same last term, same length: granted.
    let outputs = step_durably(
        &mut core,
        Input::Receive(vote_request(3, 1, 5, (2, 2), false)),
    );
    assert_eq!(vote_replies(&outputs), vec![(Term(5), true)]);
}

#[test]
fn s5_4_2_leader_commits_old_term_entries_only_through_its_own() {
    // Node 1 leads term 3 with an uncommitted entry from term 2 in its log.
    let log = vec![entry(1, 1), entry(2, 2)];
    let mut core = node_with(1, 3, 2, log, no_pre_vote);
    while core.role() != Role::Candidate {
        step_durably(&mut core, Input::Tick);
    }
    let term = core.term();
    let grant = Message {
        from: NodeId(2),
        to: NodeId(1),
        term,
        body: MessageBody::RequestVoteResponse {
            pre_vote: false,
            granted: true,
        },
    };
    step_durably(&mut core, Input::Receive(grant));
    assert_eq!(core.role(), Role::Leader);
    assert_eq!(
        core.log().last_index(),
        Index(3),
        "the new leader appended its no-op"
    );
    // Node 2 acknowledges entry 2 only: a majority holds it, but it is from term 2.
    let ack = |index| Message {
        from: NodeId(2),
        to: NodeId(1),
        term,
        body: MessageBody::AppendEntriesResponse(AppendResponse {
            index: Index(index),
            reject: None,
        }),
    };
    step_durably(&mut core, Input::Receive(ack(2)));
    assert_eq!(
        core.commit_index(),
        Index(0),
        "§5.4.2: must not commit a term-2 entry by counting"
    );
    step_durably(&mut core, Input::Receive(ack(3)));
    assert_eq!(
        core.commit_index(),
        Index(3),
        "committing the no-op commits everything before it"
    );
}

#[test]
fn every_new_leader_appends_a_noop() {
    let mut cluster = Cluster::new(3);
    cluster.elect(2);
    let last = cluster
        .core(2)
        .log()
        .held()
        .last()
        .cloned()
        .expect("a no-op");
    assert_eq!(last.payload, Payload::Noop);
    assert_eq!(last.term, cluster.core(2).term());
}

#[test]
fn proposal_to_a_follower_is_rejected_with_the_leader_hint() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    let outcome = cluster.propose(2, &["x"]);
    assert_eq!(
        outcome,
        ProposalOutcome::NotLeader {
            leader: Some(NodeId(1))
        }
    );
}

#[test]
fn committed_proposal_is_applied_on_every_node_in_order() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    let outcome = cluster.propose(1, &["a", "b"]);
    assert!(matches!(
        outcome,
        ProposalOutcome::Accepted {
            first_index: Index(2),
            count: 2,
            ..
        }
    ));
    cluster.deliver_all();
    cluster.tick(1, 2);
    cluster.deliver_all();
    for id in 1..=3 {
        let applied: Vec<_> = cluster
            .node(id)
            .committed
            .iter()
            .map(|e| e.payload.clone())
            .collect();
        assert_eq!(
            applied,
            vec![
                Payload::Noop,
                Payload::Command("a".into()),
                Payload::Command("b".into())
            ],
            "node {id}"
        );
    }
}

// PreVote (thesis §9.6).

#[test]
fn prevote_isolated_node_does_not_inflate_its_term() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    let term = cluster.core(1).term();
    cluster.isolate(3);
    for _ in 0..200 {
        cluster.step(3, Input::Tick);
        cluster.deliver_all();
    }
    assert_eq!(
        cluster.core(3).term(),
        term,
        "pre-votes must not raise the term"
    );
}

#[test]
fn prevote_rejoining_node_cannot_depose_a_healthy_leader() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    let term = cluster.core(1).term();
    cluster.isolate(3);
    for _ in 0..100 {
        cluster.step(3, Input::Tick);
        cluster.tick(1, 1);
        cluster.tick(2, 1);
        cluster.deliver_all();
    }
    cluster.heal();
    for _ in 0..100 {
        for id in 1..=3 {
            cluster.tick(id, 1);
        }
        cluster.deliver_all();
    }
    assert_eq!(
        cluster.leaders(),
        vec![(1, term)],
        "the healthy leader stays"
    );
}

// CheckQuorum (thesis §6.2).

#[test]
fn check_quorum_leader_steps_down_when_cut_off_from_a_majority() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.isolate(1);
    let timeout = cluster.core(1).config().election_timeout_ticks_min;
    for _ in 0..2 * timeout {
        cluster.tick(1, 1);
        cluster.deliver_all();
    }
    assert_eq!(cluster.core(1).role(), Role::Follower);
}

#[test]
fn check_quorum_follower_in_lease_ignores_vote_requests() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    let term = cluster.core(1).term();
    // Node 3 (somehow at a higher term) asks node 2 for its vote while 2 hears from 1.
    let request = vote_request(3, 2, term.0 + 5, (99, term.0), false);
    let outputs = cluster.step(2, Input::Receive(request));
    assert!(
        sent(&outputs).is_empty(),
        "no answer while the leader is alive"
    );
    assert_eq!(cluster.core(2).term(), term, "the term is untouched");
}

// The durability rule (thesis §3.8).

#[test]
fn durability_vote_grant_waits_for_persistence() {
    let mut core = node_with(1, 3, 1, vec![], |c| c.check_quorum = false);
    let outputs = step(
        &mut core,
        Input::Receive(vote_request(2, 1, 2, (0, 0), false)),
    );
    assert!(
        vote_replies(&outputs).is_empty(),
        "grant sent before the vote was durable"
    );
    let ids = persist_ids(&outputs);
    assert_eq!(ids.len(), 1);
    let outputs = step(&mut core, Input::Persisted { write_id: ids[0] });
    assert_eq!(vote_replies(&outputs), vec![(Term(2), true)]);
}

#[test]
fn durability_append_ack_waits_for_persistence() {
    let mut core = node_with(1, 3, 1, vec![], |_| {});
    let outputs = step(
        &mut core,
        Input::Receive(append(2, 1, 1, (0, 0), vec![entry(1, 1)], 0)),
    );
    assert!(
        append_replies(&outputs).is_empty(),
        "ack before the entry was durable"
    );
    let ids = persist_ids(&outputs);
    // Even a heartbeat arriving meanwhile is answered only after the write.
    let heartbeat = step(
        &mut core,
        Input::Receive(append(2, 1, 1, (1, 1), vec![], 0)),
    );
    assert!(append_replies(&heartbeat).is_empty());
    let outputs = step(&mut core, Input::Persisted { write_id: ids[0] });
    assert_eq!(append_replies(&outputs).len(), 2);
}

#[test]
fn durability_leader_counts_its_own_entries_only_once_persisted() {
    // Node 3 is cut off, so entries commit only with node 2's copy plus the leader's.
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.auto_persist = false;
    cluster.isolate(3);
    cluster.propose(1, &["x"]);
    let last = cluster.core(1).log().last_index();
    while !cluster.network.is_empty() {
        let batch = std::mem::take(&mut cluster.network);
        for message in batch {
            let to = message.to.0;
            cluster.deliver(message);
            if to == 2 {
                cluster.persist(2);
            }
        }
    }
    assert!(
        cluster.core(1).commit_index() < last,
        "committed with the leader's copy unpersisted"
    );
    cluster.persist(1);
    assert_eq!(cluster.core(1).commit_index(), last);
}

#[test]
fn durability_commit_output_only_carries_durable_entries() {
    let mut core = node_with(1, 3, 1, vec![], |_| {});
    // The leader says entry 1 is committed, but our copy is not durable yet.
    let outputs = step(
        &mut core,
        Input::Receive(append(2, 1, 1, (0, 0), vec![entry(1, 1)], 1)),
    );
    assert!(!outputs.iter().any(|o| matches!(o, Output::Commit(_))));
    let id = persist_ids(&outputs)[0];
    let outputs = step(&mut core, Input::Persisted { write_id: id });
    let committed: Vec<_> = outputs
        .iter()
        .filter_map(|o| match o {
            Output::Commit(entries) => Some(entries.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(committed, vec![vec![entry(1, 1)]]);
}

#[test]
fn durability_candidate_leads_only_once_its_own_vote_is_durable() {
    let mut core = node_with(1, 3, 0, vec![], no_pre_vote);
    let mut writes = Vec::new();
    while core.role() != Role::Candidate {
        writes.extend(persist_ids(&step(&mut core, Input::Tick)));
    }
    let grant = Message {
        from: NodeId(2),
        to: NodeId(1),
        term: core.term(),
        body: MessageBody::RequestVoteResponse {
            pre_vote: false,
            granted: true,
        },
    };
    step(&mut core, Input::Receive(grant));
    assert_eq!(
        core.role(),
        Role::Candidate,
        "led with a vote a crash could forget"
    );
    step(
        &mut core,
        Input::Persisted {
            write_id: *writes.last().unwrap(),
        },
    );
    assert_eq!(core.role(), Role::Leader);
}

// Pipelining and batching.

#[test]
fn leader_pipelines_up_to_the_window_once_a_follower_matches() {
    let mut cluster = Cluster::with_config(3, |c| {
        c.max_append_entries = 1;
        c.max_inflight_appends = 3;
    });
    cluster.elect(1);
    let outputs = cluster.step(1, Input::Propose((0..10).map(|i| i.to_string()).collect()));
    let to_2 = sent(&outputs)
        .into_iter()
        .filter(|m| m.to == NodeId(2))
        .count();
    assert_eq!(
        to_2, 3,
        "a matched follower gets a full window, one entry each"
    );
    cluster.deliver_all();
    let last = cluster.core(1).log().last_index();
    assert_eq!(
        cluster.core(2).log().last_index(),
        last,
        "acks reopen the window until done"
    );
    assert_eq!(cluster.core(1).commit_index(), last);
}

#[test]
fn append_batches_respect_the_byte_limit() {
    let mut cluster = Cluster::with_config(3, |c| c.max_append_bytes = 100);
    cluster.elect(1);
    let big = "x".repeat(60);
    let outputs = cluster.step(1, Input::Propose(vec![big.clone(), big.clone(), big]));
    let mut appends = 0;
    for message in sent(&outputs) {
        if let MessageBody::AppendEntries { entries, .. } = &message.body {
            appends += 1;
            assert_eq!(
                entries.len(),
                1,
                "each 76-byte entry goes alone under a 100-byte limit"
            );
        }
    }
    assert_eq!(
        appends, 6,
        "the three entries go to each of the two followers"
    );
}

// Bad input is ignored, counted, and never panics.

#[test]
fn messages_from_nobody_and_bogus_persist_acks_are_ignored() {
    let mut core = node_with(1, 3, 1, vec![], |_| {});
    let outputs = step(
        &mut core,
        Input::Receive(append(0, 1, 5, (0, 0), vec![], 0)),
    );
    assert!(outputs.is_empty(), "node id 0 is nobody");
    let outputs = step(
        &mut core,
        Input::Receive(append(1, 1, 5, (0, 0), vec![], 0)),
    );
    assert!(outputs.is_empty(), "from itself");
    let outputs = step(
        &mut core,
        Input::Receive(append(2, 3, 5, (0, 0), vec![], 0)),
    );
    assert!(outputs.is_empty(), "misaddressed");
    let outputs = step(
        &mut core,
        Input::Persisted {
            write_id: WriteId(42),
        },
    );
    assert!(outputs.is_empty());
    assert_eq!(core.term(), Term(1));
    assert_eq!(core.stats().messages_ignored, 3);
    assert_eq!(core.stats().bad_persisted_ignored, 1);
}

/// A node outside this node's configuration may lead it: after membership changes the
/// leader can be a node added after the configuration this node knows (it is still
/// catching up), so the core does not filter senders by membership; the node's peer
/// transport authenticates who may connect at all.
#[test]
fn a_leader_unknown_to_the_configuration_is_followed() {
    let mut core = node_with(1, 3, 1, vec![], |_| {});
    let outputs = step(
        &mut core,
        Input::Receive(append(9, 1, 5, (0, 0), vec![], 0)),
    );
    assert_eq!(core.term(), Term(5));
    assert_eq!(core.leader(), Some(NodeId(9)));
    assert!(outputs.iter().any(|o| matches!(o, Output::Persist(_))));
}

// Recovery.

#[test]
fn recovery_restores_term_vote_and_log() {
    let recovered = Recovered {
        membership: None,
        prev: EntryId::ZERO,
        hard_state: HardState {
            term: Term(4),
            voted_for: Some(NodeId(2)),
        },
        entries: vec![entry(1, 1), entry(2, 4)],
        commit_index: Index(1),
        sessions: Default::default(),
    };
    let core = RaftCore::new(config(1, 3), recovered).unwrap();
    assert_eq!((core.term(), core.voted_for()), (Term(4), Some(NodeId(2))));
    assert_eq!(core.log().last_index(), Index(2));
    assert_eq!(core.commit_index(), Index(1));
}

#[test]
fn recovery_rejects_state_no_raft_node_could_have_written() {
    let bad_commit = Recovered {
        membership: None,
        prev: EntryId::ZERO,
        hard_state: HardState {
            term: Term(1),
            voted_for: None,
        },
        entries: vec![entry(1, 1)],
        commit_index: Index(3),
        sessions: Default::default(),
    };
    let future = Recovered {
        hard_state: HardState {
            term: Term(1),
            voted_for: None,
        },
        entries: vec![entry(1, 2)],
        ..Recovered::default()
    };
    let gap = Recovered {
        hard_state: HardState {
            term: Term(1),
            voted_for: None,
        },
        entries: vec![entry(1, 1), entry(3, 1)],
        ..Recovered::default()
    };
    assert!(matches!(
        RaftCore::new(config(1, 3), bad_commit),
        Err(RecoveryError::CommitBeyondLog { .. })
    ));
    assert!(matches!(
        RaftCore::new(config(1, 3), future),
        Err(RecoveryError::EntryFromFutureTerm { .. })
    ));
    assert!(matches!(
        RaftCore::new(config(1, 3), gap),
        Err(RecoveryError::Log(_))
    ));
}

#[test]
fn s5_3_follower_never_truncates_what_it_verified_for_the_current_leader() {
    // A leader's log only grows during its term, so a same-term request contradicting what
    // the follower already verified (and may have acknowledged) is from a faulty peer.
    let mut core = node_with(1, 3, 2, vec![], |_| {});
    step_durably(
        &mut core,
        Input::Receive(append(2, 1, 2, (0, 0), vec![entry(1, 1), entry(2, 1)], 0)),
    );
    let outputs = step_durably(
        &mut core,
        Input::Receive(append(2, 1, 2, (0, 0), vec![entry(1, 2)], 0)),
    );
    assert!(
        append_replies(&outputs).is_empty(),
        "a contradiction is not acknowledged"
    );
    assert_eq!(core.log().held(), &[entry(1, 1), entry(2, 1)]);
    assert_eq!(core.stats().unsafe_truncations_refused, 1);
    // The same entries from the leader of a later term do replace them (§5.3).
    step_durably(
        &mut core,
        Input::Receive(append(3, 1, 3, (0, 0), vec![entry(1, 3)], 0)),
    );
    assert_eq!(core.log().held(), &[entry(1, 3)]);
}
