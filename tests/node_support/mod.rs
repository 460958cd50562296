//! Shared helpers for the node tests: real `replog` processes on loopback, polled with
//! generous deadlines (conditions, never fixed sleeps, decide every assertion).

#![allow(dead_code)]

use replog_node::client::blocking::{self, Appended, ClientOptions, Connection};
use replog_node::client::{NodeState, RoleName};
use replog_node::identity::{ClusterId, NodeName};
use replog_node::local_cluster::{fresh_temp_dir, LocalCluster};
use replog_node::transport::wire::{Hello, PEER_HELLO_OP, PROTOCOL_VERSION};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_replog"))
}

/// A local cluster in a fresh temporary directory. The directory is removed when the test
/// passes, and kept (with its node logs printed) when it fails.
pub struct TestCluster {
    pub cluster: LocalCluster,
    dir: PathBuf,
}

impl TestCluster {
    pub fn start(tag: &str, nodes: usize) -> TestCluster {
        TestCluster::start_with(tag, nodes, &[])
    }

    /// A cluster whose nodes all get `extra_args` on their command line.
    pub fn start_with(tag: &str, nodes: usize, extra_args: &[&str]) -> TestCluster {
        TestCluster::start_secured(tag, nodes, extra_args, ClientOptions::default())
    }

    /// As [`TestCluster::start_with`], for nodes that the test reaches with `client`.
    pub fn start_secured(
        tag: &str,
        nodes: usize,
        extra_args: &[&str],
        client: ClientOptions,
    ) -> TestCluster {
        let dir = fresh_temp_dir(tag).expect("temp dir");
        let cluster = LocalCluster::start_secured(&exe(), nodes, &dir, extra_args, client)
            .unwrap_or_else(|error| {
                panic!(
                    "cannot start a {nodes}-node cluster in {}: {error}",
                    dir.display()
                )
            });
        TestCluster { cluster, dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The hello node `k` sends its peers (what `nc` would type, speaking as it).
    pub fn hello_as(&self, k: usize) -> Hello {
        let members: Vec<String> = (0..self.cluster.len())
            .map(|j| format!("{}={}", j + 1, self.addr(j)))
            .collect();
        Hello {
            op: PEER_HELLO_OP.into(),
            version: PROTOCOL_VERSION,
            cluster: "replog".into(),
            cluster_id: self.cluster_id(),
            from: k as u64 + 1,
            name: NodeName::of_number(replog_core::NodeId(k as u64 + 1)),
            addr: self.addr(k),
            members: members.join(","),
            nonce: None,
        }
    }

    /// The cluster id node 1 recorded at its first start (its `cluster.json`).
    pub fn cluster_id(&self) -> ClusterId {
        let node_dir = self.dir.join("data").join("1");
        replog_node::identity::record::read(&node_dir)
            .expect("a readable cluster.json")
            .expect("node 1 recorded its identity")
            .cluster_id
    }

    pub fn addr(&self, k: usize) -> String {
        self.cluster.addr(k).to_string()
    }

    pub fn position_of(&self, addr: &str) -> usize {
        (0..self.cluster.len())
            .find(|&k| self.cluster.addr(k) == addr)
            .unwrap_or_else(|| panic!("{addr} is not a node of this cluster"))
    }

    /// Node `k`'s status, if it answers within a second.
    pub fn status(&self, k: usize) -> Option<NodeState> {
        Connection::connect_with(
            self.cluster.addr(k),
            Duration::from_secs(1),
            self.cluster.client(),
        )
        .and_then(|mut connection| connection.state(false))
        .ok()
    }

    pub fn query(&self, k: usize) -> Option<NodeState> {
        Connection::connect_with(
            self.cluster.addr(k),
            Duration::from_secs(2),
            self.cluster.client(),
        )
        .and_then(|mut connection| connection.state(true))
        .ok()
    }

    /// Polls `probe` until it returns `Some`, or fails the test after `timeout` with
    /// `what` and every node's log tail.
    pub fn wait_for<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut probe: impl FnMut(&Self) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(value) = probe(self) {
                return value;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}\n{}",
                    self.cluster.all_log_tails(30)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the nodes in `among` agree on one leader: it reports itself leader in
    /// term T, and every other one of them follows it in T. Returns (position, term).
    pub fn stable_leader(&self, among: &[usize], timeout: Duration) -> (usize, u64) {
        self.wait_for(timeout, "a stable leader", |cluster| {
            cluster.agreed_leader(among)
        })
    }

    /// One probe of [`TestCluster::stable_leader`].
    pub fn agreed_leader(&self, among: &[usize]) -> Option<(usize, u64)> {
        let states: Vec<NodeState> = among
            .iter()
            .map(|&k| self.status(k))
            .collect::<Option<_>>()?;
        let leaders: Vec<usize> = (0..states.len())
            .filter(|&i| states[i].role == RoleName::Leader)
            .collect();
        let [leader] = leaders[..] else {
            return None;
        };
        let term = states[leader].term;
        let leader_addr = self.cluster.addr(among[leader]);
        let agreed = states
            .iter()
            .all(|state| state.term == term && state.leader.as_deref() == Some(leader_addr));
        agreed.then_some((among[leader], term))
    }

    /// Appends through any node, following redirects; panics if it does not commit.
    pub fn append(&self, command: &str) -> Appended {
        let (addrs, timeout) = (self.cluster.addrs(), Duration::from_secs(20));
        blocking::append_with(&addrs, command, timeout, self.cluster.client()).unwrap_or_else(
            |error| {
                panic!(
                    "append {command:?} failed: {error}\n{}",
                    self.cluster.all_log_tails(30)
                )
            },
        )
    }

    /// Waits until node `k` holds `expected` (index, term, command) as committed entries.
    pub fn wait_committed_on(&self, k: usize, expected: &[(u64, u64, String)]) {
        let what = format!("node {} to commit {} entries", k + 1, expected.len());
        self.wait_for(Duration::from_secs(20), &what, |cluster| {
            let state = cluster.query(k)?;
            let entries = state.entries?;
            expected
                .iter()
                .all(|(index, term, command)| {
                    entries.iter().any(|entry| {
                        entry.index == *index
                            && entry.term == *term
                            && entry.committed
                            && entry.command.as_deref() == Some(command.as_str())
                    })
                })
                .then_some(())
        });
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("node logs and data kept in {}", self.dir.display());
            return;
        }
        let _ = self.cluster.stop_all();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn status_of(addr: &str) -> Option<NodeState> {
    Connection::connect(addr, Duration::from_secs(1))
        .and_then(|mut connection| connection.state(false))
        .ok()
}

/// Sends `signal` (e.g. "STOP", "CONT") to node `k` of `cluster` with the `kill` command.
pub fn signal(cluster: &TestCluster, k: usize, signal: &str) {
    let pid = cluster.cluster.pid(k).expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args([format!("-{signal}"), pid])
        .status()
        .expect("run kill");
    assert!(status.success());
}

/// The node at `addr`'s own view with its log (a local query), if it answers.
pub fn query_of(addr: &str) -> Option<NodeState> {
    Connection::connect(addr, Duration::from_secs(2))
        .and_then(|mut connection| connection.state(true))
        .ok()
}
