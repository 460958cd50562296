//! Membership changes with real processes on loopback: an empty node joins a running
//! three-node cluster with `replog start --join`, catches up as a learner and is promoted
//! to voter by itself; `replog member` refuses a name or an address a member holds and a
//! name that is no member, removes a founder, and lists what is in force; a `--join` data
//! directory of another cluster is refused before the node opens anything.

#[path = "node_support/mod.rs"]
mod support;

use replog_node::client::blocking::{self, ClientOptions};
use replog_node::client::NodeState;
use replog_node::local_cluster::free_addrs;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::{exe, TestCluster};

const TIMEOUT: Duration = Duration::from_secs(30);

/// A node process that is stopped (its standard input closed) and reaped when dropped.
struct Joiner(Child);

impl Drop for Joiner {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn member(args: &[&str]) -> Output {
    Command::new(exe())
        .arg("member")
        .args(args)
        .output()
        .expect("replog member runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn leader_state(cluster: &TestCluster) -> NodeState {
    let addrs = cluster.cluster.addrs();
    blocking::leader_state(&addrs, TIMEOUT, &ClientOptions::default())
        .expect("a leader answers")
        .1
}

#[test]
fn a_node_joins_is_promoted_and_a_founder_is_removed() {
    let cluster = TestCluster::start("membership-join", 3);
    cluster.append("before");
    let addr = free_addrs(1).expect("a free port").remove(0);
    let data = cluster.dir().join("data");
    let log = std::fs::File::create(cluster.dir().join("node4.log")).expect("log file");
    let joiner = Joiner(
        Command::new(exe())
            .args(["start", "-i", "node4", "-a", &addr, "--join"])
            .arg(cluster.addr(1))
            .arg("--data-dir")
            .arg(&data)
            .arg("--stop-on-stdin-eof")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the joining node starts"),
    );
    let joined_log = || std::fs::read_to_string(cluster.dir().join("node4.log")).unwrap();
    // It is added as a learner with the next id, catches up, and asks to be promoted.
    let state = cluster.wait_for(TIMEOUT, "node4 to become a voter", |cluster| {
        let state = leader_state(cluster);
        let configuration = state.configuration.clone()?;
        configuration.voters.contains(&4).then_some(state)
    });
    let configuration = state.configuration.as_ref().unwrap();
    assert_eq!(configuration.voters, vec![1, 2, 3, 4], "{}", joined_log());
    let node4 = (state.members.iter().flatten())
        .find(|member| member.id == 4)
        .expect("node4 is listed");
    assert_eq!(node4.name.as_deref(), Some("node4"));
    assert_eq!(node4.addr, addr);
    let log = joined_log();
    assert!(log.contains("joined cluster \"replog\""), "{log}");
    assert!(log.contains("promoted to voter"), "{log}");
    // The joined node holds what was committed before it came, and what comes after.
    cluster.append("after");
    cluster.wait_for(TIMEOUT, "node4 to hold both commands", |_| {
        let state = support::query_of(&addr)?;
        let commands: Vec<String> = (state.entries.unwrap_or_default().into_iter())
            .filter(|entry| entry.committed)
            .filter_map(|entry| entry.command)
            .collect();
        (commands == ["before", "after"]).then_some(())
    });

    // Refused, naming why: a held name, a held address, a name that is no member.
    let targets = cluster.cluster.addrs().join(",");
    let out = member(&["add", "node4", "127.0.0.1:1", "-t", &targets]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot add node4: it is a member already"),
        "{}",
        stderr(&out)
    );
    let out = member(&["add", "node9", &cluster.addr(0), "-t", &targets]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is at that address"),
        "{}",
        stderr(&out)
    );
    let out = member(&["remove", "node9", "-t", &targets]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("node9 is no member of the configuration in force"),
        "{}",
        stderr(&out)
    );
    let out = member(&["add", "bad name", "127.0.0.1:1", "-t", &targets]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("holds ' '"), "{}", stderr(&out));

    // A founder that does not lead is removed; the cluster goes on without it.
    let leader = leader_state(&cluster).node;
    let removed = (1..=3).find(|&id| id != leader).unwrap();
    let out = member(&["remove", &removed.to_string(), "-t", &targets]);
    assert!(out.status.success(), "{}", stderr(&out));
    let state = leader_state(&cluster);
    let voters = state.configuration.unwrap().voters;
    assert!(
        !voters.contains(&removed) && voters.len() == 3,
        "{voters:?}"
    );
    let out = member(&["list", "-t", &targets]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(listed.lines().count() == 4, "{listed}");
    assert!(
        listed.contains("node4") && listed.contains(&addr),
        "{listed}"
    );
    cluster.append("without the removed founder");

    // A --join directory recorded for another cluster is refused before anything opens.
    let elsewhere = cluster.dir().join("elsewhere");
    std::fs::create_dir_all(elsewhere.join("node4")).unwrap();
    let recorded = std::fs::read_to_string(data.join("node4").join("cluster.json")).unwrap();
    let id = recorded.split("\"cluster_id\":\"").nth(1).unwrap();
    let id = &id[..id.find('"').unwrap()];
    let other = recorded.replace(id, "another-cluster");
    std::fs::write(elsewhere.join("node4").join("cluster.json"), other).unwrap();
    let out = Command::new(exe())
        .args(["start", "-i", "node4", "-a", &addr, "--join"])
        .arg(cluster.addr(0))
        .arg("--data-dir")
        .arg(&elsewhere)
        .output()
        .expect("replog start runs");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("belongs to cluster \"replog\" (id another-cluster)"),
        "{}",
        stderr(&out)
    );
    drop(joiner);
}
