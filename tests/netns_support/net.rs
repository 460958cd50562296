//! Network namespaces for the nemesis test: one per node, each with a veth pair into a
//! bridge that lives in its own namespace, so nothing of the test's network is in the host
//! namespace. Cuts act inside a node's namespace on what it sends to one peer:
//! - `Cut::Blackhole`: a blackhole route to the peer's address (sends fail locally);
//! - `Cut::Drop`: a permanent neighbour entry for the peer to an unused MAC address, so its
//!   frames go out and are lost in transit, as on a real network (no netfilter, no error
//!   the sender could see).
//!
//! Everything is named `rlnn-<pid>-<run>-...`: unique per run, so a leftover from a killed
//! run cannot collide, and removable by prefix ([`Net::clean_leftovers`]). Dropping a
//! [`Net`] deletes its namespaces (and with them every interface, route and neighbour
//! entry in them), also when the test panics.

use std::io;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// The prefix every namespace of every run of this test starts with.
pub const PREFIX: &str = "rlnn-";

/// A MAC address no interface has (locally administered): frames to it are dropped.
const UNUSED_MAC: &str = "02:00:5e:00:de:ad";

/// How one node's packets to one peer are stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    Blackhole,
    Drop,
}

pub struct Net {
    pub bridge_ns: String,
    /// Node k's namespace, and its address there.
    pub nodes: Vec<(String, String)>,
}

/// Runs `ip ARGS`, failing with its stderr.
pub fn ip(args: &[&str]) -> io::Result<()> {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|error| io::Error::other(format!("cannot run `ip` (iproute2): {error}")))?;
    if output.status.success() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    )))
}

/// The names of the namespaces that exist now.
fn namespaces() -> Vec<String> {
    let Ok(output) = Command::new("ip").args(["netns", "list"]).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next().map(str::to_string))
        .collect()
}

impl Net {
    /// Why namespaces cannot be made here, if they cannot (tried for real: a namespace is
    /// made and removed).
    pub fn unavailable() -> Option<String> {
        let probe = format!("{PREFIX}{}-probe", std::process::id());
        match ip(&["netns", "add", &probe]) {
            Ok(()) => {
                let _ = ip(&["netns", "del", &probe]);
                None
            }
            Err(error) => Some(error.to_string()),
        }
    }

    /// Removes what earlier runs left behind when they were killed (their test process is
    /// gone): the nodes still running in their namespaces, the namespaces, and the nodes'
    /// directories on tmpfs.
    pub fn clean_leftovers() {
        for ns in namespaces() {
            if !ns.starts_with(PREFIX) || !left_behind(&ns) {
                continue;
            }
            if let Ok(output) = Command::new("ip").args(["netns", "pids", &ns]).output() {
                for pid in String::from_utf8_lossy(&output.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<libc::pid_t>() {
                        // SAFETY: kill(2); the pid was just listed in a namespace of ours.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
            }
            let _ = ip(&["netns", "del", &ns]);
        }
        let Ok(dirs) = std::fs::read_dir("/dev/shm") else {
            return;
        };
        for dir in dirs.flatten() {
            let name = dir.file_name().to_string_lossy().into_owned();
            if name.starts_with(PREFIX) && left_behind(&name) {
                let _ = std::fs::remove_dir_all(dir.path());
            }
        }
    }

    /// `count` node namespaces on one bridge, node k at 10.213.<run>.(k+1)/24.
    pub fn create(count: usize) -> io::Result<Net> {
        static RUN: AtomicU32 = AtomicU32::new(0);
        let run = RUN.fetch_add(1, Ordering::Relaxed);
        let base = format!("{PREFIX}{}-{run}", std::process::id());
        let mut net = Net {
            bridge_ns: format!("{base}-br"),
            nodes: Vec::new(),
        };
        let br = net.bridge_ns.clone();
        ip(&["netns", "add", &br])?;
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &br, "link", "set", "br0", "up"])?;
        for k in 0..count {
            let ns = format!("{base}-n{}", k + 1);
            let addr = format!("10.213.{}.{}", run % 250, k + 1);
            // Pushed first, so that Drop removes it even if a step below fails.
            net.nodes.push((ns.clone(), addr.clone()));
            ip(&["netns", "add", &ns])?;
            let port = format!("v{}", k + 1);
            ip(&[
                "-n", &br, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ])?;
            ip(&["-n", &br, "link", "set", &port, "master", "br0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        }
        Ok(net)
    }

    /// Stops node `from`'s packets to node `to`.
    pub fn cut(&self, from: usize, to: usize, how: Cut) -> io::Result<()> {
        let (ns, _) = &self.nodes[from];
        let (_, peer) = &self.nodes[to];
        match how {
            Cut::Blackhole => ip(&["-n", ns, "route", "replace", "blackhole", peer]),
            Cut::Drop => ip(&[
                "-n",
                ns,
                "neigh",
                "replace",
                peer,
                "lladdr",
                UNUSED_MAC,
                "dev",
                "eth0",
                "nud",
                "permanent",
            ]),
        }
    }

    /// Lets node `from`'s packets reach node `to` again.
    pub fn restore(&self, from: usize, to: usize, how: Cut) -> io::Result<()> {
        let (ns, _) = &self.nodes[from];
        let (_, peer) = &self.nodes[to];
        match how {
            Cut::Blackhole => ip(&["-n", ns, "route", "del", "blackhole", peer]),
            Cut::Drop => ip(&["-n", ns, "neigh", "del", peer, "dev", "eth0"]),
        }
    }

    /// Cuts (or restores) both directions between every node of `a` and every node of `b`.
    pub fn partition(&self, a: &[usize], b: &[usize], how: Cut, on: bool) -> io::Result<()> {
        for &x in a {
            for &y in b {
                for (from, to) in [(x, y), (y, x)] {
                    if on {
                        self.cut(from, to, how)?;
                    } else {
                        self.restore(from, to, how)?;
                    }
                }
            }
        }
        Ok(())
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for (ns, _) in &self.nodes {
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = ip(&["netns", "del", &self.bridge_ns]);
    }
}

/// Whether `name` (`rlnn-<pid>-...`) belongs to a test process that is gone.
fn left_behind(name: &str) -> bool {
    let pid = name[PREFIX.len()..].split('-').next().unwrap_or("");
    pid != std::process::id().to_string() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Moves the calling thread into namespace `ns`: the sockets it makes from now on live
/// there (network namespaces are per thread), so the test's clients talk from inside the
/// nodes' namespaces, never from the host's.
pub fn enter(ns: &str) -> io::Result<()> {
    let file = std::fs::File::open(format!("/run/netns/{ns}"))?;
    // SAFETY: setns on a valid namespace fd affects only this thread's namespace.
    let result = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `job` on a fresh thread inside namespace `ns`.
pub fn in_ns<T: Send + 'static>(
    ns: &str,
    job: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        enter(&ns).unwrap_or_else(|error| panic!("cannot enter namespace {ns}: {error}"));
        job()
    })
}
