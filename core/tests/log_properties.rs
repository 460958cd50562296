//! proptest on the log: followers that append, truncate and match AppendEntries from a
//! history of leaders keep Log Matching (§5.3): two logs with an entry of the same index and
//! term are identical up to that index.

use proptest::prelude::*;
use replog_core::{Entry, EntryId, Index, Log, Payload, Term};

/// Leader `t` (term t+1) starts from a prefix of an earlier leader's log and appends its own.
fn leader_logs(specs: &[(usize, usize, usize)]) -> Vec<Vec<Entry>> {
    let mut leaders: Vec<Vec<Entry>> = Vec::new();
    for (term_minus_one, &(parent, cut, count)) in specs.iter().enumerate() {
        let term = Term(term_minus_one as u64 + 1);
        let mut log = match leaders.len() {
            0 => Vec::new(),
            n => {
                let parent = &leaders[parent % n];
                parent[..cut.min(parent.len())].to_vec()
            }
        };
        for _ in 0..count {
            let index = Index(log.len() as u64 + 1);
            log.push(Entry {
                index,
                term,
                payload: Payload::Command(format!("{}@{}", index.0, term.0).into()),
            });
        }
        leaders.push(log);
    }
    leaders
}

/// The follower's half of AppendEntries, as the core does it: check `prev`, skip entries
/// already present, truncate at the first conflict, append the rest.
fn apply_append(follower: &mut Log, leader: &[Entry], prev: usize, count: usize) -> bool {
    let prev = prev.min(leader.len());
    let prev_term = if prev == 0 {
        Term(0)
    } else {
        leader[prev - 1].term
    };
    if !follower.matches(Index(prev as u64), prev_term) {
        return false;
    }
    let entries = &leader[prev..(prev + count).min(leader.len())];
    if let Some(first_new) = follower.first_conflict(entries) {
        let conflict_at = entries[first_new].index;
        follower.truncate_after(conflict_at.prev());
        follower.append(&entries[first_new..]);
    }
    true
}

fn assert_log_matching(a: &[Entry], b: &[Entry]) {
    for (x, y) in a.iter().zip(b) {
        if x.term == y.term {
            let upto = x.index.0 as usize;
            assert_eq!(
                &a[..upto],
                &b[..upto],
                "same (index, term) at {} but different prefixes",
                upto
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn append_truncate_and_match_keep_log_matching(
        specs in prop::collection::vec((any::<usize>(), 0usize..12, 0usize..5), 1..8),
        ops in prop::collection::vec((0usize..3, any::<usize>(), 0usize..14, 1usize..5), 0..60),
    ) {
        let leaders = leader_logs(&specs);
        let mut followers = [Log::new(), Log::new(), Log::new()];
        for (follower, leader, prev, count) in ops {
            let leader = &leaders[leader % leaders.len()];
            apply_append(&mut followers[follower], leader, prev, count);
            // Whatever happened, the follower still reads back as a valid log.
            let reread = Log::from_tail(EntryId::ZERO, followers[follower].held().to_vec());
            prop_assert!(reread.is_ok(), "invalid log: {:?}", reread);
        }
        let all: Vec<&[Entry]> = followers
            .iter()
            .map(|f| f.held())
            .chain(leaders.iter().map(|l| l.as_slice()))
            .collect();
        for a in &all {
            for b in &all {
                assert_log_matching(a, b);
            }
        }
    }

    /// The follower starts from another leader's log of the same history (extra, missing
    /// or conflicting entries) and keeps its first `keep` entries; whenever `prev` matches,
    /// the append must leave it holding the leader's log up to the last entry sent, which
    /// takes the skip, truncate and append paths alike.
    #[test]
    fn a_matching_append_leaves_the_follower_holding_the_leaders_prefix(
        specs in prop::collection::vec((any::<usize>(), 0usize..12, 0usize..5), 1..8),
        which in any::<usize>(),
        other in any::<usize>(),
        keep in 0usize..14,
        prev in 0usize..14,
        count in 1usize..5,
    ) {
        let leaders = leader_logs(&specs);
        let leader = &leaders[which % leaders.len()];
        let start = &leaders[other % leaders.len()];
        let mut follower = Log::from_tail(EntryId::ZERO, start[..keep.min(start.len())].to_vec()).unwrap();
        if apply_append(&mut follower, leader, prev, count) {
            let upto = (prev + count).min(leader.len());
            prop_assert!(follower.held().len() >= upto);
            prop_assert_eq!(&follower.held()[..upto], &leader[..upto]);
        }
    }
}

#[test]
fn up_to_date_compares_last_term_before_last_index() {
    let log = Log::from_tail(
        EntryId::ZERO,
        vec![
            Entry {
                index: Index(1),
                term: Term(1),
                payload: Payload::Noop,
            },
            Entry {
                index: Index(2),
                term: Term(3),
                payload: Payload::Noop,
            },
        ],
    )
    .unwrap();
    assert!(log.is_up_to_date(Index(1), Term(4)));
    assert!(!log.is_up_to_date(Index(9), Term(2)));
    assert!(log.is_up_to_date(Index(2), Term(3)));
    assert!(!log.is_up_to_date(Index(1), Term(3)));
}

#[test]
fn last_index_of_term_finds_the_end_of_each_term() {
    let entries: Vec<Entry> = [1, 1, 2, 2, 2, 5]
        .iter()
        .enumerate()
        .map(|(i, &t)| Entry {
            index: Index(i as u64 + 1),
            term: Term(t),
            payload: Payload::Noop,
        })
        .collect();
    let log = Log::from_tail(EntryId::ZERO, entries).unwrap();
    assert_eq!(log.last_index_of_term(Term(1)), Some(Index(2)));
    assert_eq!(log.last_index_of_term(Term(2)), Some(Index(5)));
    assert_eq!(log.last_index_of_term(Term(3)), None);
    assert_eq!(log.last_index_of_term(Term(5)), Some(Index(6)));
    assert_eq!(log.first_index_of_term_at(Index(4)), Index(3));
}

#[test]
fn batches_stop_at_the_count_and_byte_limits_but_never_send_nothing() {
    let entries: Vec<Entry> = (1..=10)
        .map(|i| Entry {
            index: Index(i),
            term: Term(1),
            payload: Payload::Command("x".repeat(100).into()),
        })
        .collect();
    let log = Log::from_tail(EntryId::ZERO, entries).unwrap();
    assert_eq!(log.batch_from(Index(1), 3, usize::MAX).unwrap().len(), 3);
    assert_eq!(log.batch_from(Index(1), 100, 250).unwrap().len(), 2);
    assert_eq!(
        log.batch_from(Index(1), 100, 1).unwrap().len(),
        1,
        "one entry always goes"
    );
    assert_eq!(log.batch_from(Index(9), 100, usize::MAX).unwrap().len(), 2);
    assert!(log
        .batch_from(Index(11), 100, usize::MAX)
        .unwrap()
        .is_empty());
}

proptest! {
    /// The conflict hint's first index of a term, against its definition: same term as the
    /// entry asked about, and the entry before it (if any) of an earlier term.
    #[test]
    fn first_index_of_term_at_is_where_that_term_begins(
        steps in proptest::collection::vec(0..3u64, 0..40),
        probe in 0..45u64,
    ) {
        let mut term = 1;
        let entries: Vec<Entry> = steps
            .iter()
            .enumerate()
            .map(|(i, &step)| {
                term += step;
                Entry { index: Index(i as u64 + 1), term: Term(term), payload: Payload::Noop }
            })
            .collect();
        let log = Log::from_tail(EntryId::ZERO, entries).unwrap();
        let index = Index(probe);
        let first = log.first_index_of_term_at(index);
        match log.term_at(index) {
            Ok(_) if index == Index(0) => prop_assert_eq!(first, Index(0)),
            Ok(term) => {
                prop_assert!(first <= index);
                prop_assert_eq!(log.term_at(first), Ok(term));
                prop_assert!(first == Index(1) || log.term_at(first.prev()).unwrap() < term);
            }
            Err(_) => prop_assert_eq!(first, index),
        }
    }
}

/// A whole log of `steps.len()` entries whose terms rise by `steps`.
fn whole_log(steps: &[u64]) -> Vec<Entry> {
    let mut term = 1;
    steps
        .iter()
        .enumerate()
        .map(|(i, &step)| {
            term += step;
            Entry {
                index: Index(i as u64 + 1),
                term: Term(term),
                payload: Payload::Noop,
            }
        })
        .collect()
}

/// The window of `whole` that starts after its first `start` entries.
fn window(whole: &[Entry], start: usize) -> Log {
    let prev = if start == 0 {
        EntryId::ZERO
    } else {
        whole[start - 1].id()
    };
    Log::from_tail(prev, whole[start..].to_vec()).unwrap()
}

proptest! {
    /// A window answers for `[prev, last]` exactly as the whole log would, and says
    /// `NotHeld` outside it, never a wrong term.
    #[test]
    fn a_window_answers_like_the_whole_log_within_its_range(
        steps in proptest::collection::vec(0..3u64, 0..30),
        start_seed in any::<usize>(),
    ) {
        let whole = whole_log(&steps);
        let start = start_seed % (whole.len() + 1);
        let log = window(&whole, start);
        let term_of = |i: u64| if i == 0 { Term(0) } else { whole[i as usize - 1].term };
        prop_assert_eq!(log.last_index(), Index(whole.len() as u64));
        prop_assert_eq!(log.last_term(), term_of(whole.len() as u64));
        prop_assert_eq!(log.first_held(), Index(start as u64 + 1));
        for i in 0..=(whole.len() as u64 + 2) {
            let got = log.term_at(Index(i));
            if i < start as u64 {
                prop_assert!(matches!(got, Err(replog_core::NotHeld::Before { .. })), "{i}: {got:?}");
            } else if i > whole.len() as u64 {
                prop_assert!(matches!(got, Err(replog_core::NotHeld::After { .. })), "{i}: {got:?}");
            } else {
                prop_assert_eq!(got, Ok(term_of(i)));
                // The conflict hint's first index of the term: as early as the window can
                // tell, and never past where the term really begins if the window holds that.
                if i > 0 {
                    let first = log.first_index_of_term_at(Index(i));
                    prop_assert!(first <= Index(i) && first.0 >= start as u64);
                    prop_assert_eq!(term_of(first.0), term_of(i));
                    prop_assert!(first.0 == start as u64 || first.0 == 1 || term_of(first.0 - 1) < term_of(i));
                }
            }
        }
        for t in 0..=(steps.iter().sum::<u64>() + 2) {
            let found = log.last_index_of_term(Term(t));
            let held: Vec<u64> = (start as u64..=whole.len() as u64)
                .filter(|&i| i > 0 && term_of(i) == Term(t))
                .collect();
            prop_assert_eq!(found, held.last().map(|&i| Index(i)), "term {}", t);
        }
    }

    /// Forgetting a prefix or truncating a suffix leaves the window that would have been
    /// built from the whole log at that point.
    #[test]
    fn forgetting_and_truncating_a_window_match_building_it_afresh(
        steps in proptest::collection::vec(0..3u64, 1..30),
        start_seed in any::<usize>(),
        point_seed in any::<usize>(),
    ) {
        let whole = whole_log(&steps);
        let start = start_seed % (whole.len() + 1);
        let point = start + point_seed % (whole.len() - start + 1);
        let mut forgotten = window(&whole, start);
        if point > 0 {
            forgotten.forget_through(Index(point as u64));
        }
        prop_assert_eq!(&forgotten, &window(&whole, point));
        let mut truncated = window(&whole, start);
        truncated.truncate_after(Index(point as u64));
        prop_assert_eq!(truncated, window(&whole[..point], start));
    }
}
