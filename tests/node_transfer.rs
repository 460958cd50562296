//! Leadership transfer with real processes on loopback: `replog transfer` moves the
//! leadership to the node it names (following the redirect from a follower to the
//! leader), and refuses a name that is no member, or the leader itself, saying why.

#[path = "node_support/mod.rs"]
mod support;

use replog_node::client::blocking;
use std::process::{Command, Output};
use std::time::Duration;
use support::{exe, TestCluster};

const TIMEOUT: Duration = Duration::from_secs(20);

fn transfer_cli(targets: &str, to: &str) -> Output {
    Command::new(exe())
        .args(["transfer", "-t", targets, "--to", to, "--timeout", "15s"])
        .output()
        .expect("replog transfer runs")
}

#[test]
fn transfer_moves_leadership_to_the_named_node() {
    let cluster = TestCluster::start("transfer-moves", 3);
    cluster.append("before");
    // On a loaded machine an election can move the leadership between finding the leader
    // and asking for the transfer, even onto the node named: then the transfer is refused
    // ("is the leader already"), rightly; find the leader again and name another node.
    let (leader, term, target, out) = (0..5)
        .find_map(|_| {
            let (leader, term) = cluster.stable_leader(&[0, 1, 2], TIMEOUT);
            let target = (leader + 1) % 3;
            let follower = 3 - leader - target;
            // Asked at the third node, which is not the leader: the CLI follows its redirect.
            let out = transfer_cli(&cluster.addr(follower), &(target + 1).to_string());
            let moved_meanwhile = !out.status.success()
                && String::from_utf8_lossy(&out.stderr).contains("is the leader already");
            (!moved_meanwhile).then_some((leader, term, target, out))
        })
        .expect("the leadership stood still long enough for one transfer in five tries");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "transfer failed: {}{}\n{}",
        stdout,
        String::from_utf8_lossy(&out.stderr),
        cluster.cluster.all_log_tails(30)
    );
    assert!(
        stdout.starts_with(&format!("{} leads in term ", target + 1)),
        "{stdout}"
    );
    let (now, new_term) = cluster.stable_leader(&[0, 1, 2], TIMEOUT);
    assert_eq!(now, target, "the named node leads");
    assert!(new_term > term);
    // The new leader takes appends, and nothing committed before was lost.
    cluster.append("after");
    let state = cluster.query(target).expect("the new leader answers");
    let commands: Vec<String> = (state.entries.unwrap_or_default())
        .into_iter()
        .filter(|entry| entry.committed)
        .filter_map(|entry| entry.command)
        .collect();
    assert!(
        commands.ends_with(&["before".to_string(), "after".to_string()]),
        "{commands:?}"
    );
    // And back, by the library call, to the node that led first.
    let addrs = cluster.cluster.addrs();
    let back = blocking::transfer_with(
        &addrs,
        &(leader + 1).to_string(),
        TIMEOUT,
        cluster.cluster.client(),
    )
    .expect("transfer back");
    assert_eq!(back.leader, (leader + 1).to_string());
    assert_eq!(cluster.stable_leader(&[0, 1, 2], TIMEOUT).0, leader);
}

#[test]
fn a_transfer_to_an_unknown_node_or_to_the_leader_is_refused_with_a_clear_error() {
    let cluster = TestCluster::start("transfer-refused", 3);
    let (leader, term) = cluster.stable_leader(&[0, 1, 2], TIMEOUT);
    let all = cluster.cluster.addrs().join(",");
    for (to, expected) in [
        ("nosuch", "no member is called \"nosuch\"".to_string()),
        ("9", "no member is called \"9\"".to_string()),
        ("bad name!", "transfer:".to_string()),
        (
            &*(leader + 1).to_string(),
            format!("{} is the leader already", leader + 1),
        ),
    ] {
        let out = transfer_cli(&all, to);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "transfer to {to:?} succeeded");
        assert!(stderr.contains(&expected), "to {to:?}: {stderr}");
    }
    // Nothing moved.
    assert_eq!(cluster.stable_leader(&[0, 1, 2], TIMEOUT), (leader, term));
}
