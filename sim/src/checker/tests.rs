//! The checker on fabricated cluster states: each invariant is reported when broken and
//! stays quiet when kept.

use super::*;
use crate::disk::Durable;
use replog_core::{HardState, Message, Write, WriteId};

fn log(terms: &[u64]) -> Vec<Entry> {
    terms
        .iter()
        .enumerate()
        .map(|(k, &term)| Entry {
            index: Index(k as u64 + 1),
            term: Term(term),
            payload: Payload::Noop,
        })
        .collect()
}

fn state(id: u64, role: Role, term: u64, commit: u64, log: &[Entry]) -> NodeState<'_> {
    NodeState::whole(NodeId(id), role, Term(term), Index(commit), log)
}

fn append(entries: &[Entry]) -> Output {
    Output::Persist(Write {
        memberships: Vec::new(),
        id: WriteId(1),
        hard_state: None,
        install: None,
        truncate_after: None,
        entries: entries.to_vec(),
        sessions: None,
    })
}

fn grant(voter: u64, candidate: u64, term: u64) -> Output {
    Output::Send(Message {
        from: NodeId(voter),
        to: NodeId(candidate),
        term: Term(term),
        body: MessageBody::RequestVoteResponse {
            pre_vote: false,
            granted: true,
        },
    })
}

#[test]
fn election_safety_two_leaders_in_one_term() {
    let entries = log(&[1]);
    let mut checker = Checker::new(3);
    checker
        .after_step(0, &state(1, Role::Leader, 2, 0, &entries), &[])
        .unwrap();
    // A leader of another term is fine.
    checker
        .after_step(1, &state(2, Role::Leader, 3, 0, &entries), &[])
        .unwrap();
    let error = checker
        .after_step(2, &state(3, Role::Leader, 2, 0, &entries), &[])
        .unwrap_err();
    assert_eq!(error.invariant, "Election Safety");
    assert_eq!(error.nodes, vec![NodeId(1), NodeId(3)]);
}

#[test]
fn election_safety_two_votes_in_one_term() {
    let mut checker = Checker::new(3);
    let follower = state(1, Role::Follower, 4, 0, &[]);
    checker.after_step(0, &follower, &[grant(1, 2, 4)]).unwrap();
    // The same grant again (a retransmission) and a grant in the next term are fine.
    checker.after_step(0, &follower, &[grant(1, 2, 4)]).unwrap();
    let error = checker
        .after_step(0, &follower, &[grant(1, 3, 4)])
        .unwrap_err();
    assert_eq!(error.invariant, "Election Safety");
    let mut checker = Checker::new(3);
    checker.after_step(0, &follower, &[grant(1, 2, 4)]).unwrap();
    checker
        .after_step(0, &state(1, Role::Follower, 5, 0, &[]), &[grant(1, 3, 5)])
        .unwrap();
}

#[test]
fn leader_append_only() {
    let mut checker = Checker::new(3);
    let before = log(&[1, 2, 2]);
    checker
        .after_step(0, &state(1, Role::Leader, 2, 0, &before), &[])
        .unwrap();
    let longer = log(&[1, 2, 2, 2]);
    checker
        .after_step(
            0,
            &state(1, Role::Leader, 2, 0, &longer),
            &[append(&longer[3..])],
        )
        .unwrap();
    let rewritten = log(&[1, 2, 3]);
    let error = checker
        .after_step(0, &state(1, Role::Leader, 2, 0, &rewritten), &[])
        .unwrap_err();
    assert_eq!(error.invariant, "Leader Append-Only");
}

#[test]
fn log_matching_across_nodes() {
    let mut checker = Checker::new(3);
    let a = log(&[1, 1]);
    checker
        .after_step(0, &state(1, Role::Follower, 1, 0, &a), &[append(&a)])
        .unwrap();
    checker
        .after_step(1, &state(2, Role::Follower, 1, 0, &a), &[append(&a)])
        .unwrap();
    // Same (index 2, term 2) on different prefixes.
    let b = log(&[1, 2]);
    let c = log(&[2, 2]);
    checker
        .after_step(1, &state(2, Role::Follower, 2, 0, &b), &[append(&b[1..])])
        .unwrap();
    let error = checker
        .after_step(2, &state(3, Role::Follower, 2, 0, &c), &[append(&c)])
        .unwrap_err();
    assert_eq!(error.invariant, "Log Matching");
}

#[test]
fn log_matching_stale_truncation_of_current_term_entries() {
    let mut checker = Checker::new(3);
    let full = log(&[1, 3, 3, 3]);
    checker
        .after_step(0, &state(1, Role::Follower, 3, 0, &full), &[append(&full)])
        .unwrap();
    let truncate = |after| {
        Output::Persist(Write {
            memberships: Vec::new(),
            id: WriteId(2),
            hard_state: None,
            install: None,
            truncate_after: Some(Index(after)),
            entries: Vec::new(),
            sessions: None,
        })
    };
    let short = log(&[1, 3]);
    let error = checker
        .after_step(0, &state(1, Role::Follower, 3, 0, &short), &[truncate(2)])
        .unwrap_err();
    assert_eq!(error.invariant, "Log Matching");
    // Dropping entries of an older term for a newer leader's is how Raft repairs logs.
    let mut checker = Checker::new(3);
    let old = log(&[1, 2, 2]);
    checker
        .after_step(0, &state(1, Role::Follower, 2, 0, &old), &[append(&old)])
        .unwrap();
    let repaired = log(&[1, 3]);
    let repair = Output::Persist(Write {
        memberships: Vec::new(),
        id: WriteId(2),
        hard_state: None,
        install: None,
        truncate_after: Some(Index(1)),
        entries: repaired[1..].to_vec(),
        sessions: None,
    });
    checker
        .after_step(0, &state(1, Role::Follower, 3, 0, &repaired), &[repair])
        .unwrap();
}

#[test]
fn state_machine_safety_two_different_entries_committed_at_one_index() {
    let mut checker = Checker::new(3);
    let a = log(&[1, 1]);
    let b = log(&[1, 2]);
    checker
        .after_step(0, &state(1, Role::Follower, 2, 2, &a), &[])
        .unwrap();
    checker
        .after_step(1, &state(2, Role::Follower, 2, 1, &b), &[])
        .unwrap();
    let error = checker
        .after_step(1, &state(2, Role::Follower, 2, 2, &b), &[])
        .unwrap_err();
    assert_eq!(error.invariant, "State Machine Safety");
}

#[test]
fn state_machine_safety_applying_an_uncommitted_entry() {
    let mut checker = Checker::new(3);
    let entries = log(&[1, 1]);
    checker
        .after_step(
            0,
            &state(1, Role::Follower, 1, 1, &entries),
            &[Output::Commit(entries[..1].to_vec())],
        )
        .unwrap();
    let mut other = log(&[1, 1]);
    other[1].term = Term(2);
    let error = checker
        .after_step(
            1,
            &state(2, Role::Follower, 2, 0, &other),
            &[Output::Commit(other.clone())],
        )
        .unwrap_err();
    assert_eq!(error.invariant, "State Machine Safety");
}

#[test]
fn monotonic_commit() {
    let mut checker = Checker::new(3);
    let entries = log(&[1, 1, 1]);
    checker
        .after_step(0, &state(1, Role::Follower, 1, 2, &entries), &[])
        .unwrap();
    checker
        .after_step(0, &state(1, Role::Follower, 1, 3, &entries), &[])
        .unwrap();
    let error = checker
        .after_step(0, &state(1, Role::Follower, 1, 1, &entries), &[])
        .unwrap_err();
    assert_eq!(error.invariant, "Monotonic Commit");
}

#[test]
fn leader_completeness() {
    let mut checker = Checker::new(3);
    let committed = log(&[1, 1, 2]);
    checker
        .after_step(0, &state(1, Role::Leader, 2, 3, &committed), &[])
        .unwrap();
    // A leader of term 3 that holds the committed entries is fine.
    checker
        .after_step(1, &state(2, Role::Leader, 3, 0, &log(&[1, 1, 2, 3])), &[])
        .unwrap();
    let error = checker
        .after_step(2, &state(3, Role::Leader, 4, 0, &log(&[1, 1])), &[])
        .unwrap_err();
    assert_eq!(error.invariant, "Leader Completeness");
}

#[test]
fn leader_completeness_allows_a_stale_leader_of_an_earlier_term() {
    // Entry 2 was first seen committed in term 5; a leader of term 4 elected late (its vote
    // answers were delayed) may lack it without breaking anything.
    let mut checker = Checker::new(3);
    checker
        .after_step(0, &state(1, Role::Follower, 5, 2, &log(&[1, 5])), &[])
        .unwrap();
    checker
        .after_step(1, &state(2, Role::Leader, 4, 0, &log(&[1])), &[])
        .unwrap();
}

#[test]
fn durability_of_the_newest_committed_entry() {
    let mut checker = Checker::new(3);
    let entries = log(&[1, 1]);
    checker
        .after_step(0, &state(1, Role::Leader, 1, 2, &entries), &[])
        .unwrap();
    let on_disk = |terms: &[u64]| Durable {
        memberships: Default::default(),
        hard_state: HardState::default(),
        boundary: replog_core::EntryId::ZERO,
        entries: log(terms),
        commit_index: Index(0),
        sessions: Default::default(),
        segments: Default::default(),
    };
    let (full, short) = (on_disk(&[1, 1]), on_disk(&[1]));
    let disks = [(NodeId(1), &full), (NodeId(2), &full), (NodeId(3), &short)];
    checker.check_durability(disks.into_iter()).unwrap();
    let disks = [(NodeId(1), &full), (NodeId(2), &short), (NodeId(3), &short)];
    let error = checker.check_durability(disks.into_iter()).unwrap_err();
    assert_eq!(error.invariant, "Durability");
}

#[test]
fn committed_commands_feed_the_linearizability_history() {
    let mut checker = Checker::new(3);
    let phantom = vec![Entry {
        index: Index(1),
        term: Term(1),
        payload: Payload::Command("op0".into()),
    }];
    let error = checker
        .after_step(0, &state(1, Role::Leader, 1, 1, &phantom), &[])
        .unwrap_err();
    assert_eq!(error.invariant, "Linearizability");
    let mut checker = Checker::new(3);
    checker.history.invoke(Some(0), 0);
    checker
        .after_step(0, &state(1, Role::Leader, 1, 1, &phantom), &[])
        .unwrap();
}

#[test]
fn log_window_a_core_that_forgot_entries_its_disk_lacks_is_reported() {
    let mut checker = Checker::new(3);
    let view = |edge: u64, stored: &'static [Entry]| NodeState {
        stored,
        window_prev: replog_core::EntryId {
            index: Index(edge),
            term: Term(1),
        },
        window: &[],
        ..state(1, Role::Follower, 1, edge, &[])
    };
    let stored: &'static [Entry] = Box::leak(log(&[1, 1, 1]).into_boxed_slice());
    // Held on disk: fine.
    checker.after_step(0, &view(3, stored), &[]).unwrap();
    // Forgot 4, which the disk never got: reported.
    let error = checker.after_step(0, &view(4, stored), &[]).unwrap_err();
    assert_eq!(error.invariant, "Log Window");
}
