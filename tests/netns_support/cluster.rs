//! Real `replog` processes, node k started with `ip netns exec` in namespace k (which
//! execs the node, so the child's pid is the node's own, for kill -9 and SIGSTOP). Data
//! lives on tmpfs (/dev/shm): on a shared, busy disk a vote's fsync took 60–217 ms and
//! elections stormed, which is the disk's story, not the network's this test tells.

use super::net::{in_ns, Net};
use replog_node::client::blocking::Connection;
use replog_node::client::{Consistency, NodeState, Request, Response, RoleName};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const PORT: u16 = 7000;

pub struct Cluster {
    pub net: Net,
    dir: PathBuf,
    children: Vec<Option<Child>>,
}

impl Cluster {
    pub fn start(net: Net) -> Cluster {
        // REPLOG_NETNS_DATA_DIR puts the data elsewhere, e.g. on a disk, to compare.
        let base = std::env::var_os("REPLOG_NETNS_DATA_DIR").unwrap_or("/dev/shm".into());
        let dir = PathBuf::from(base).join(net.bridge_ns.trim_end_matches("-br"));
        std::fs::create_dir_all(&dir).expect("a data directory for the nodes");
        let mut cluster = Cluster {
            children: (0..net.nodes.len()).map(|_| None).collect(),
            net,
            dir,
        };
        for k in 0..cluster.len() {
            cluster.spawn(k);
        }
        cluster
    }

    pub fn len(&self) -> usize {
        self.net.nodes.len()
    }

    pub fn addr(&self, k: usize) -> String {
        format!("{}:{PORT}", self.net.nodes[k].1)
    }

    pub fn addrs(&self) -> Vec<String> {
        (0..self.len()).map(|k| self.addr(k)).collect()
    }

    /// Starts (or restarts, on the same data) node k.
    pub fn spawn(&mut self, k: usize) {
        let peers: Vec<String> = (0..self.len())
            .map(|j| format!("{}={}", j + 1, self.addr(j)))
            .collect();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("node{}.log", k + 1)))
            .expect("a node log file");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.net.nodes[k].0])
            .arg(env!("CARGO_BIN_EXE_replog"))
            .args(["start", "-i", &(k + 1).to_string(), "-a", &self.addr(k)])
            .args(["-p", &peers.join(",")])
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("ip netns exec replog start");
        self.children[k] = Some(child);
    }

    pub fn signal(&self, k: usize, signal: libc::c_int) {
        if let Some(child) = &self.children[k] {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        }
    }

    /// kill -9, and reaps it.
    pub fn kill(&mut self, k: usize) {
        if let Some(mut child) = self.children[k].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Node k's own view, asked from inside its namespace; `None` when it does not answer
    /// within `timeout` (stopped, killed, busy).
    pub fn status(&self, k: usize, timeout: Duration) -> Option<NodeState> {
        let addr = self.addr(k);
        in_ns(&self.net.nodes[k].0, move || {
            let mut connection = Connection::connect(&addr, timeout).ok()?;
            connection.set_read_timeout(Some(timeout)).ok()?;
            connection.state(false).ok()
        })
        .join()
        .ok()
        .flatten()
    }

    /// Every node's status, asked at once, returned as soon as the answers so far satisfy
    /// `enough` (so that a slow node does not delay a decision a majority already makes),
    /// or when every node has answered or given up after `timeout`.
    pub fn statuses_until(
        &self,
        timeout: Duration,
        enough: impl Fn(&[Option<NodeState>]) -> bool,
    ) -> Vec<Option<NodeState>> {
        let (tx, rx) = std::sync::mpsc::channel();
        for k in 0..self.len() {
            let addr = self.addr(k);
            let tx = tx.clone();
            // Detached: a late answer goes to a closed channel.
            drop(in_ns(&self.net.nodes[k].0, move || {
                let state = Connection::connect(&addr, timeout)
                    .and_then(|mut connection| {
                        connection.set_read_timeout(Some(timeout))?;
                        connection.state(false)
                    })
                    .ok();
                let _ = tx.send((k, state));
            }));
        }
        drop(tx);
        let mut states: Vec<Option<NodeState>> = vec![None; self.len()];
        for (k, state) in rx {
            states[k] = state;
            if enough(&states) {
                break;
            }
        }
        states
    }

    /// Every node's status, asked at once.
    pub fn statuses(&self, timeout: Duration) -> Vec<Option<NodeState>> {
        let handles: Vec<_> = (0..self.len())
            .map(|k| {
                let addr = self.addr(k);
                in_ns(&self.net.nodes[k].0, move || {
                    let mut connection = Connection::connect(&addr, timeout).ok()?;
                    connection.set_read_timeout(Some(timeout)).ok()?;
                    connection.state(false).ok()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().ok().flatten())
            .collect()
    }

    /// The leader a majority of the answering nodes agree on: (node, its commit index).
    pub fn leader(&self, timeout: Duration) -> Option<(usize, u64)> {
        self.leader_of(&self.statuses(timeout))
    }

    /// [`Cluster::leader`] from statuses already asked.
    pub fn leader_of(&self, states: &[Option<NodeState>]) -> Option<(usize, u64)> {
        let majority = self.len() / 2 + 1;
        let (k, state) = states
            .iter()
            .enumerate()
            .filter_map(|(k, s)| s.as_ref().map(|s| (k, s)))
            .filter(|(_, s)| s.role == RoleName::Leader)
            .max_by_key(|(_, s)| s.term)?;
        let addr = self.addr(k);
        let agree = states
            .iter()
            .flatten()
            .filter(|s| s.term == state.term && s.leader.as_deref() == Some(addr.as_str()))
            .count();
        (agree >= majority).then_some((k, state.commit_index))
    }

    /// Node k's committed log, read locally from inside its namespace: each entry's command,
    /// `None` for a no-op.
    pub fn committed_log(&self, k: usize) -> Vec<Option<String>> {
        let addr = self.addr(k);
        in_ns(&self.net.nodes[k].0, move || {
            let mut connection =
                Connection::connect(&addr, Duration::from_secs(5)).expect("connect to read");
            let _ = connection.set_read_timeout(Some(Duration::from_secs(10)));
            let mut out = Vec::new();
            let mut from = 1;
            loop {
                let request = Request::Read {
                    from,
                    limit: 10_000,
                    consistency: Consistency::Local,
                };
                match connection.call(&request).expect("a read answer") {
                    Response::Read(page) => {
                        assert_eq!(page.first_index, 1, "the test trims nothing");
                        out.extend(page.entries.into_iter().map(|e| e.command));
                        if page.next > page.commit_index {
                            return out;
                        }
                        from = page.next;
                    }
                    other => panic!("node at {addr} answered a read with {other:?}"),
                }
            }
        })
        .join()
        .expect("the read thread")
    }

    /// Where the nodes' logs are, for a failure message.
    pub fn dir(&self) -> &PathBuf {
        &self.dir
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for k in 0..self.len() {
            self.signal(k, libc::SIGCONT);
            self.kill(k);
        }
        if std::thread::panicking() {
            // The node logs outlive a failure (out of tmpfs); the data does not.
            let kept = std::env::temp_dir().join(self.dir.file_name().expect("named"));
            let _ = std::fs::create_dir_all(&kept);
            for k in 0..self.len() {
                let name = format!("node{}.log", k + 1);
                let _ = std::fs::copy(self.dir.join(&name), kept.join(&name));
            }
            eprintln!("node logs kept in {}", kept.display());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
