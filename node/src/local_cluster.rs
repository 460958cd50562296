//! A cluster of real node processes on loopback: free ports, one data directory, one log
//! file per node. `replog demo`, the benchmark's `--local` mode and the tests use it.
//!
//! Nodes are started with `--stop-on-stdin-eof` and a pipe on their standard input, and in
//! their own process group: Ctrl-C in a terminal reaches only the process that started
//! them, and when that process ends (however it ends) the pipes close and every node stops
//! cleanly. No node outlives the cluster's owner.

use crate::client::blocking::{ClientOptions, Connection};
use crate::client::RoleName;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a node may take to start serving.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a node may take to stop once asked.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts at finding ports nobody else grabs between our probe and the node's bind.
const PORT_ATTEMPTS: usize = 5;

/// One node of a local cluster.
pub struct LocalNode {
    pub id: u64,
    pub addr: String,
    child: Option<Child>,
    /// Length of the node's log file when its current process was spawned: where that
    /// process's own lines begin.
    log_start: u64,
    /// Extra arguments for this node alone, in place of the cluster's.
    args: Option<Vec<String>>,
}

/// A running local cluster. Dropping it kills whatever still runs.
pub struct LocalCluster {
    exe: PathBuf,
    dir: PathBuf,
    nodes: Vec<LocalNode>,
    extra_args: Vec<String>,
    /// How this process connects to the nodes (their token, TLS).
    client: ClientOptions,
}

impl LocalCluster {
    /// Starts `count` nodes of the `replog` executable `exe`, with data under `dir`, and
    /// waits until each answers `status`. Node `k` (from 0) has id `k + 1`.
    pub fn start(exe: &Path, count: usize, dir: &Path) -> io::Result<LocalCluster> {
        LocalCluster::start_with(exe, count, dir, &[])
    }

    /// As [`LocalCluster::start`], passing `extra_args` to every `replog start`.
    pub fn start_with(
        exe: &Path,
        count: usize,
        dir: &Path,
        extra_args: &[&str],
    ) -> io::Result<LocalCluster> {
        LocalCluster::start_secured(exe, count, dir, extra_args, ClientOptions::default())
    }

    /// As [`LocalCluster::start_with`], for nodes that clients reach with `client`.
    pub fn start_secured(
        exe: &Path,
        count: usize,
        dir: &Path,
        extra_args: &[&str],
        client: ClientOptions,
    ) -> io::Result<LocalCluster> {
        assert!(count >= 1, "a cluster needs a node");
        fs::create_dir_all(dir)?;
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            let mut cluster = LocalCluster {
                exe: exe.to_path_buf(),
                dir: dir.to_path_buf(),
                nodes: free_addrs(count)?
                    .into_iter()
                    .enumerate()
                    .map(|(k, addr)| LocalNode {
                        id: k as u64 + 1,
                        addr,
                        child: None,
                        log_start: 0,
                        args: None,
                    })
                    .collect(),
                extra_args: extra_args.iter().map(|arg| arg.to_string()).collect(),
                client: client.clone(),
            };
            match cluster.start_all() {
                Ok(()) => return Ok(cluster),
                Err(error) if error.kind() == io::ErrorKind::AddrInUse => {
                    // Someone took a port between our probe and the node's bind: start
                    // over on other ports, without the half-started cluster's files.
                    drop(cluster);
                    let _ = fs::remove_dir_all(dir.join("data"));
                    last_error = Some(error);
                }
                Err(error) => return Err(error),
            }
        }
        Err(last_error.expect("at least one attempt"))
    }

    fn start_all(&mut self) -> io::Result<()> {
        for k in 0..self.nodes.len() {
            self.spawn(k)?;
        }
        for k in 0..self.nodes.len() {
            self.wait_serving(k)?;
        }
        Ok(())
    }

    /// Polls every node's status until one reports itself leader; returns its address.
    pub fn wait_for_leader(&self, timeout: Duration) -> Result<String, String> {
        self.wait_for_leader_term(timeout).map(|(addr, _)| addr)
    }

    /// Like [`LocalCluster::wait_for_leader`], with the term the node said it leads.
    pub fn wait_for_leader_term(&self, timeout: Duration) -> Result<(String, u64), String> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            for node in &self.nodes {
                let timeout = Duration::from_millis(500);
                let state = Connection::connect_with(&node.addr, timeout, &self.client)
                    .and_then(|mut connection| connection.state(false));
                if let Ok(state) = state {
                    if state.role == RoleName::Leader {
                        return Ok((node.addr.clone(), state.term));
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("no leader elected within {timeout:?}"))
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn addr(&self, k: usize) -> &str {
        &self.nodes[k].addr
    }

    /// How this process connects to the nodes.
    pub fn client(&self) -> &ClientOptions {
        &self.client
    }

    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(|node| node.addr.clone()).collect()
    }

    /// The `-p` list every node is started with (all addresses; a node skips its own).
    pub fn peers_arg(&self) -> String {
        self.addrs().join(",")
    }

    /// Where node `k` writes its log lines (appended across restarts).
    pub fn log_path(&self, k: usize) -> PathBuf {
        self.dir.join(format!("node-{}.log", self.nodes[k].id))
    }

    /// The last `lines` lines of node `k`'s log, for failure messages.
    pub fn log_tail(&self, k: usize, lines: usize) -> String {
        let text = fs::read_to_string(self.log_path(k)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Every node's log tail, labelled, for failure messages.
    pub fn all_log_tails(&self, lines: usize) -> String {
        (0..self.len())
            .map(|k| {
                format!(
                    "--- node {} ({}) ---\n{}",
                    self.nodes[k].id,
                    self.addr(k),
                    self.log_tail(k, lines)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Node `k`'s process id, while it runs.
    pub fn pid(&self, k: usize) -> Option<u32> {
        self.nodes[k].child.as_ref().map(Child::id)
    }

    /// Whether node `k`'s process is alive.
    pub fn is_running(&mut self, k: usize) -> bool {
        match self.nodes[k].child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// `kill -9` node `k` and reap it.
    pub fn kill(&mut self, k: usize) {
        if let Some(mut child) = self.nodes[k].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Asks node `k` to stop cleanly (closes its standard input) and waits for it.
    pub fn stop(&mut self, k: usize) -> io::Result<ExitStatus> {
        let Some(child) = self.nodes[k].child.as_mut() else {
            return Err(io::Error::other("node is not running"));
        };
        drop(child.stdin.take());
        self.wait_exit(k, STOP_TIMEOUT)
    }

    /// Waits up to `timeout` for node `k`'s process to exit (after a signal, say) and reaps
    /// it; kills it if it does not.
    pub fn wait_exit(&mut self, k: usize, timeout: Duration) -> io::Result<ExitStatus> {
        let Some(mut child) = self.nodes[k].child.take() else {
            return Err(io::Error::other("node is not running"));
        };
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("node {} did not stop within {timeout:?}", self.nodes[k].id),
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops every running node cleanly; returns the first failure.
    pub fn stop_all(&mut self) -> io::Result<()> {
        let mut result = Ok(());
        for k in 0..self.len() {
            if let Some(child) = self.nodes[k].child.as_mut() {
                drop(child.stdin.take());
            }
        }
        for k in 0..self.len() {
            if self.nodes[k].child.is_some() {
                match self.stop(k) {
                    Ok(status) if !status.success() => {
                        if result.is_ok() {
                            result = Err(io::Error::other(format!(
                                "node {} exited with {status}",
                                self.nodes[k].id
                            )));
                        }
                    }
                    Ok(_) => {}
                    Err(error) => {
                        if result.is_ok() {
                            result = Err(error);
                        }
                    }
                }
            }
        }
        result
    }

    /// Starts node `k` again (after `kill` or `stop`) and waits until it serves.
    pub fn restart(&mut self, k: usize) -> io::Result<()> {
        assert!(self.nodes[k].child.is_none(), "node {k} is still running");
        self.spawn(k)?;
        self.wait_serving(k)
    }

    /// Node `k` starts with `args` in place of the cluster's extra arguments from its next
    /// (re)start on: a node configured unlike the others.
    pub fn set_node_args(&mut self, k: usize, args: &[&str]) {
        self.nodes[k].args = Some(args.iter().map(|arg| arg.to_string()).collect());
    }

    /// The command line that starts node `k`, for people to copy.
    pub fn start_command(&self, k: usize) -> Vec<String> {
        let node = &self.nodes[k];
        let mut args = vec![
            "start".to_string(),
            "-i".into(),
            node.id.to_string(),
            "-a".into(),
            node.addr.clone(),
            "-p".into(),
            self.peers_arg(),
            "--data-dir".into(),
            self.dir.join("data").display().to_string(),
        ];
        args.extend(
            node.args
                .as_ref()
                .unwrap_or(&self.extra_args)
                .iter()
                .cloned(),
        );
        args
    }

    fn spawn(&mut self, k: usize) -> io::Result<()> {
        // Before the process starts: one that fails to bind exits within milliseconds.
        self.nodes[k].log_start = file_len(&self.log_path(k));
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(k))?;
        let child = Command::new(&self.exe)
            .args(self.start_command(k))
            .arg("--stop-on-stdin-eof")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()?;
        self.nodes[k].child = Some(child);
        Ok(())
    }

    /// Waits until node `k` answers `status`. A node that exits first is an error (with
    /// `AddrInUse` if it could not bind its port, so the caller can pick other ports).
    fn wait_serving(&mut self, k: usize) -> io::Result<()> {
        let log_start = self.nodes[k].log_start;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let timeout = Duration::from_secs(2);
            if let Ok(mut connection) =
                Connection::connect_with(self.addr(k), timeout, &self.client)
            {
                if connection.state(false).is_ok() {
                    return Ok(());
                }
            }
            if !self.is_running(k) {
                let log = read_from(&self.log_path(k), log_start);
                let kind = if log.contains("Address already in use") {
                    io::ErrorKind::AddrInUse
                } else {
                    io::ErrorKind::Other
                };
                self.nodes[k].child = None;
                return Err(io::Error::new(
                    kind,
                    format!("node {} exited during start:\n{log}", self.nodes[k].id),
                ));
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "node {} did not serve within {START_TIMEOUT:?}",
                        self.nodes[k].id
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for k in 0..self.nodes.len() {
            self.kill(k);
        }
    }
}

/// `count` loopback addresses whose ports were free a moment ago, sorted by port so that
/// node ids derived from the sorted address list (see `config`) match their positions.
pub fn free_addrs(count: usize) -> io::Result<Vec<String>> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<io::Result<_>>()?;
    let mut ports: Vec<u16> = listeners
        .iter()
        .map(|listener| listener.local_addr().map(|addr| addr.port()))
        .collect::<io::Result<_>>()?;
    ports.sort_unstable();
    Ok(ports
        .into_iter()
        .map(|port| format!("127.0.0.1:{port}"))
        .collect())
}

/// A fresh, empty directory under the system's temporary directory.
pub fn fresh_temp_dir(tag: &str) -> io::Result<PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |now| now.subsec_nanos());
    for attempt in 0..100u32 {
        let dir = std::env::temp_dir().join(format!(
            "replog-{tag}-{}-{nanos:09}-{attempt}",
            std::process::id()
        ));
        match fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(error),
        }
    }
    Err(io::Error::other(
        "cannot create a fresh temporary directory",
    ))
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map_or(0, |meta| meta.len())
}

fn read_from(path: &Path, offset: u64) -> String {
    let mut text = String::new();
    if let Ok(mut file) = File::open(path) {
        if file.seek(SeekFrom::Start(offset)).is_ok() {
            let _ = file.read_to_string(&mut text);
        }
    }
    text
}
