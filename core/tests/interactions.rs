//! Readable interaction scripts over a small in-test cluster. Each script reads like the
//! situation it tests; its transcript and final state are an insta snapshot to review.
//!
//! Commands: `elect N` (N campaigns, all messages delivered), `campaign N`, `deliver`,
//! `drop` (lose every message in flight), `tick N [count]`, `tick-all count` (every node,
//! delivering between rounds), `propose N cmd...`, `isolate N`, `heal`, `manual-persist`
//! (writes stay pending until `persist N`), `persist N`, `crash N` (lose unsynced writes,
//! restart from disk), `state` (print the cluster).

mod support;

use replog_core::{Input, Output};
use support::Cluster;

fn run(size: u64, script: &str) -> String {
    let mut cluster = Cluster::new(size);
    let mut out = String::new();
    for line in script
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        out.push_str(&format!("> {line}\n"));
        let words: Vec<&str> = line.split_whitespace().collect();
        let arg = |i: usize| -> u64 {
            words[i]
                .parse()
                .unwrap_or_else(|_| panic!("bad number in {line:?}"))
        };
        cluster.transcript.clear();
        match words[0] {
            "elect" => cluster.elect(arg(1)),
            "campaign" => cluster.campaign(arg(1)),
            "deliver" => cluster.deliver_all(),
            "drop" => cluster.drop_all(),
            "tick" => cluster.tick(arg(1), if words.len() > 2 { arg(2) } else { 1 }),
            "tick-all" => {
                for _ in 0..arg(1) {
                    for id in 1..=size {
                        cluster.tick(id, 1);
                    }
                    cluster.deliver_all();
                }
            }
            "propose" => {
                let outputs = cluster.step(
                    arg(1),
                    Input::Propose(words[2..].iter().map(|w| w.to_string()).collect()),
                );
                for output in outputs {
                    if let Output::Proposal(outcome) = output {
                        out.push_str(&format!("  {outcome:?}\n"));
                    }
                }
            }
            "isolate" => cluster.isolate(arg(1)),
            "heal" => cluster.heal(),
            "manual-persist" => cluster.auto_persist = false,
            "persist" => cluster.persist(arg(1)),
            "crash" => cluster.crash_and_restart(arg(1)),
            "state" => {
                for line in cluster.describe().lines() {
                    out.push_str(&format!("  {line}\n"));
                }
            }
            other => panic!("unknown command {other:?}"),
        }
        for event in &cluster.transcript {
            out.push_str(&format!("  {event}\n"));
        }
    }
    out.push_str("final:\n");
    for line in cluster.describe().lines() {
        out.push_str(&format!("  {line}\n"));
    }
    out
}

#[test]
fn election_then_replication() {
    insta::assert_snapshot!(run(
        3,
        "
        elect 1
        propose 1 set-x set-y
        deliver
        tick 1 2
        deliver
    "
    ));
}

#[test]
fn isolated_leader_is_replaced_and_its_uncommitted_entries_are_overwritten() {
    insta::assert_snapshot!(run(
        3,
        "
        elect 1
        isolate 1
        propose 1 lost
        tick-all 40
        state
        heal
        propose 2 kept
        tick-all 5
    "
    ));
}

#[test]
fn follower_crash_loses_unsynced_entries_and_catches_up() {
    insta::assert_snapshot!(run(
        3,
        "
        elect 1
        manual-persist
        propose 1 a
        deliver
        persist 1
        persist 2
        deliver
        # node 3 received entry a but never synced it
        crash 3
        state
        persist 1
        persist 2
        tick-all 3
        persist 1
        persist 2
        persist 3
        deliver
        persist 3
        deliver
        tick 1 2
        deliver
        persist 3
        deliver
    "
    ));
}

#[test]
fn lost_messages_are_repaired_by_heartbeats() {
    insta::assert_snapshot!(run(
        3,
        "
        elect 1
        propose 1 a b c
        drop
        state
        tick 1 2
        deliver
        tick 1 2
        deliver
    "
    ));
}

#[test]
fn partitioned_minority_node_rejoins_without_disruption() {
    insta::assert_snapshot!(run(
        5,
        "
        elect 1
        isolate 5
        tick-all 60
        propose 1 while-away
        tick-all 2
        heal
        tick-all 10
    "
    ));
}
