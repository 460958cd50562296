//! The log window (`Log` holds a tail; storage holds the rest) and catching a follower up
//! from storage through `Output::Fetch` / `Input::Fetched`.

mod support;

use replog_core::{
    Config, Entry, EntryId, HardState, Index, Input, NodeId, Output, Payload, RaftCore, Recovered,
    RecoveryError, Role, Term,
};
use support::Cluster;

fn no_cache(config: &mut Config) {
    config.log_cache_bytes = 0;
}

fn command(index: u64, term: u64, text: &str) -> Entry {
    Entry {
        index: Index(index),
        term: Term(term),
        payload: Payload::Command(text.into()),
    }
}

/// Proposes `count` commands on `leader`, one per step, delivering everything after each.
fn propose_many(cluster: &mut Cluster, leader: u64, count: usize) {
    for k in 0..count {
        cluster.propose(leader, &[&format!("c{k}")]);
        cluster.deliver_all();
    }
}

#[test]
fn applied_entries_beyond_the_cache_leave_memory_but_not_storage() {
    let mut cluster = Cluster::with_config(3, no_cache);
    cluster.elect(1);
    propose_many(&mut cluster, 1, 20);
    // One more heartbeat round so that followers learn the last commit index.
    cluster.tick(1, 2);
    cluster.deliver_all();
    for id in 1..=3 {
        let core = cluster.core(id);
        assert_eq!(core.commit_index(), Index(21), "n{id}");
        assert_eq!(core.applied_index(), Index(21), "n{id}");
        // With no cache, what is applied goes once the window overflows.
        assert!(
            core.log().held().len() < 21,
            "n{id} still holds {} entries",
            core.log().held().len()
        );
        assert!(core.log().prev().index <= core.applied_index());
        assert_eq!(cluster.node(id).disk.entries.len(), 21, "storage keeps all");
        assert_eq!(core.log().last_index(), Index(21));
    }
}

#[test]
fn a_follower_behind_the_leaders_window_is_caught_up_from_storage() {
    let mut cluster = Cluster::with_config(3, no_cache);
    cluster.elect(1);
    cluster.isolate(3);
    propose_many(&mut cluster, 1, 30);
    assert_eq!(cluster.core(1).commit_index(), Index(31));
    assert!(
        cluster.core(1).log().prev().index > cluster.core(3).log().last_index(),
        "the leader no longer holds what n3 lacks"
    );
    let fetches_before = cluster.core(1).stats().fetches_requested;
    cluster.heal();
    for _ in 0..20 {
        cluster.tick(1, 2);
        cluster.deliver_all();
    }
    assert!(cluster.core(1).stats().fetches_requested > fetches_before);
    assert_eq!(cluster.core(3).log().last_index(), Index(31));
    assert_eq!(cluster.core(3).commit_index(), Index(31));
    assert_eq!(
        cluster.node(3).disk.entries,
        cluster.node(1).disk.entries,
        "n3's storage holds the leader's log"
    );
    assert_eq!(cluster.node(3).committed, cluster.node(1).committed);
}

#[test]
fn a_late_fetch_answer_is_ignored() {
    let mut cluster = Cluster::with_config(3, no_cache);
    cluster.elect(1);
    cluster.isolate(3);
    propose_many(&mut cluster, 1, 10);
    let leader = &cluster.node(1);
    // An answer for a request never made: counted and dropped, nothing sent.
    let bogus = leader.disk.fetch(&replog_core::FetchRequest {
        peer: NodeId(3),
        from: Index(2),
        max_entries: 10,
        max_bytes: 1 << 20,
    });
    let ignored_before = cluster.core(1).stats().bad_fetched_ignored;
    let outputs = cluster.step(1, Input::Fetched(bogus));
    assert!(outputs.iter().all(|o| !matches!(o, Output::Send(_))));
    assert_eq!(
        cluster.core(1).stats().bad_fetched_ignored,
        ignored_before + 1
    );
}

#[test]
fn a_follower_checks_an_append_that_starts_before_its_window_at_the_windows_edge() {
    // n2 restarts holding only the tail after its commit index 3.
    let config = support::config(2, 3);
    let recovered = Recovered {
        membership: None,
        hard_state: HardState {
            term: Term(2),
            voted_for: None,
        },
        prev: EntryId {
            index: Index(3),
            term: Term(1),
        },
        entries: vec![command(4, 2, "d")],
        commit_index: Index(3),
        sessions: None,
    };
    let mut core = RaftCore::new(config, recovered).expect("a valid tail");
    // The leader of term 2 sends from index 2: entries 2 and 3 are committed here and skipped;
    // entry 4 matches; entry 5 is new.
    let entries = vec![
        command(2, 1, "b"),
        command(3, 1, "c"),
        command(4, 2, "d"),
        command(5, 2, "e"),
    ];
    let message = replog_core::Message {
        from: NodeId(1),
        to: NodeId(2),
        term: Term(2),
        body: replog_core::MessageBody::AppendEntries {
            prev_log_index: Index(1),
            prev_log_term: Term(1),
            entries,
            leader_commit: Index(5),
        },
    };
    let mut outputs = Vec::new();
    core.step(Input::Receive(message), &mut outputs);
    core.check_invariants();
    assert_eq!(core.role(), Role::Follower);
    assert_eq!(core.log().last_index(), Index(5));
    assert_eq!(core.log().held(), &[command(4, 2, "d"), command(5, 2, "e")]);
    let write = outputs
        .iter()
        .find_map(|o| match o {
            Output::Persist(write) => Some(write),
            _ => None,
        })
        .expect("the new entry is written");
    assert_eq!(write.entries, vec![command(5, 2, "e")]);
    assert_eq!(write.truncate_after, None, "nothing committed is touched");
}

#[test]
fn recovery_refuses_a_tail_that_starts_after_the_commit_index() {
    let recovered = Recovered {
        membership: None,
        hard_state: HardState {
            term: Term(1),
            voted_for: None,
        },
        prev: EntryId {
            index: Index(5),
            term: Term(1),
        },
        entries: vec![command(6, 1, "f")],
        commit_index: Index(4),
        sessions: Default::default(),
    };
    assert_eq!(
        RaftCore::new(support::config(1, 3), recovered).err(),
        Some(RecoveryError::TailAfterCommit {
            prev_index: Index(5),
            commit_index: Index(4),
        })
    );
}

fn install_message(term: u64, last: (u64, u64)) -> replog_core::Message {
    replog_core::Message {
        from: NodeId(1),
        to: NodeId(2),
        term: Term(term),
        body: replog_core::MessageBody::InstallSnapshot {
            membership: None,
            last: EntryId {
                index: Index(last.0),
                term: Term(last.1),
            },
            data: Vec::new(),
            sessions: replog_core::SessionsCheckpoint {
                through: Index(last.0),
                records: Vec::new(),
            },
        },
    }
}

#[test]
fn s5_4_1_a_follower_behind_the_leaders_retained_log_installs_its_boundary_durably() {
    // n2 holds a stale, uncommitted tail from term 1; the leader of term 2 has trimmed
    // through 10/2.
    let recovered = Recovered {
        membership: None,
        hard_state: HardState {
            term: Term(2),
            voted_for: None,
        },
        prev: EntryId::ZERO,
        entries: vec![command(1, 1, "a"), command(2, 1, "stale")],
        commit_index: Index(1),
        sessions: Default::default(),
    };
    let mut core = RaftCore::new(support::config(2, 3), recovered).expect("valid");
    let mut outputs = Vec::new();
    core.step(Input::Receive(install_message(2, (10, 2))), &mut outputs);
    core.check_invariants();
    assert_eq!(
        core.log().prev(),
        EntryId {
            index: Index(10),
            term: Term(2)
        }
    );
    assert!(core.log().held().is_empty());
    assert_eq!(
        (core.commit_index(), core.applied_index()),
        (Index(10), Index(10))
    );
    let write = outputs
        .iter()
        .find_map(|o| match o {
            Output::Persist(write) => Some(write.clone()),
            _ => None,
        })
        .expect("the install is written");
    assert_eq!(
        write.install.as_ref().map(|i| i.last.index),
        Some(Index(10))
    );
    assert!(
        outputs.iter().all(|o| !matches!(o, Output::Send(_))),
        "no answer before the install is durable"
    );
    let mut outputs = Vec::new();
    core.step(Input::Persisted { write_id: write.id }, &mut outputs);
    core.check_invariants();
    let reply = outputs.iter().find_map(|o| match o {
        Output::Send(m) => Some(m.clone()),
        _ => None,
    });
    let Some(replog_core::Message {
        body: replog_core::MessageBody::AppendEntriesResponse(response),
        ..
    }) = reply
    else {
        panic!("expected the install's answer, got {outputs:?}");
    };
    assert_eq!(response.index, Index(10));
    assert!(response.reject.is_none());
    // Entries after the boundary are accepted as usual.
    let append = replog_core::Message {
        from: NodeId(1),
        to: NodeId(2),
        term: Term(2),
        body: replog_core::MessageBody::AppendEntries {
            prev_log_index: Index(10),
            prev_log_term: Term(2),
            entries: vec![command(11, 2, "k")],
            leader_commit: Index(11),
        },
    };
    let mut outputs = Vec::new();
    core.step(Input::Receive(append), &mut outputs);
    core.check_invariants();
    assert_eq!(core.log().held(), &[command(11, 2, "k")]);
}

#[test]
fn an_install_that_the_log_already_holds_only_advances_the_commit_index() {
    let recovered = Recovered {
        membership: None,
        hard_state: HardState {
            term: Term(2),
            voted_for: None,
        },
        prev: EntryId::ZERO,
        entries: vec![command(1, 1, "a"), command(2, 2, "b"), command(3, 2, "c")],
        commit_index: Index(1),
        sessions: Default::default(),
    };
    let mut core = RaftCore::new(support::config(2, 3), recovered).expect("valid");
    let mut outputs = Vec::new();
    core.step(Input::Receive(install_message(2, (2, 2))), &mut outputs);
    core.check_invariants();
    assert_eq!(core.commit_index(), Index(2));
    assert_eq!(core.log().last_index(), Index(3), "the suffix is kept (§7)");
    assert!(outputs
        .iter()
        .all(|o| !matches!(o, Output::Persist(w) if w.install.is_some())));
}
