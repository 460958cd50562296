//! `replog bench --local --leadership KIND`: what a change of leader costs a client that
//! appends continuously (one append outstanding, following redirects), on a local cluster.
//!
//! - `transfer`: each round hands the leadership to the next node (`{"op":"transfer"}`);
//! - `failover`: each round kills the leader (SIGKILL) and restarts it once another leads;
//! - `rolling-restart`: stops (SIGTERM) and restarts every node in turn, first
//!   transferring the leadership away from the node about to stop if it leads;
//! - `rolling-restart-no-transfer`: the same without the transfers, for comparison.
//!
//! Reported: for each round the longest window without an acknowledged append, from just
//! before the change to after it settled, and over the run the appends that failed (an
//! error the client could not retry by itself: not committed in time, outcome unknown).

use replog_node::client::blocking::{self, ClientOptions};
use replog_node::local_cluster::LocalCluster;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Leadership {
    Transfer,
    Failover,
    RollingRestart,
    RollingRestartNoTransfer,
}

/// What the appending client saw.
#[derive(Default)]
struct Seen {
    acknowledged: Vec<Instant>,
    failed: Vec<String>,
}

const SETTLE: Duration = Duration::from_millis(500);
const TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `rounds` rounds of `kind` on `cluster`; returns the report's text.
pub fn run(
    kind: Leadership,
    cluster: &mut LocalCluster,
    rounds: usize,
    client: &ClientOptions,
) -> Result<String, String> {
    cluster.wait_for_leader(TIMEOUT)?;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let appender = {
        let (addrs, client) = (cluster.addrs(), client.clone());
        let (seen, stop) = (Arc::clone(&seen), Arc::clone(&stop));
        thread::spawn(move || append_until(&addrs, &client, &seen, &stop))
    };
    thread::sleep(SETTLE);
    let mut windows = Vec::new();
    let rounds = match kind {
        Leadership::RollingRestart | Leadership::RollingRestartNoTransfer => cluster.len(),
        _ => rounds,
    };
    let mut outcome = Ok(());
    for round in 0..rounds {
        let start = Instant::now();
        let step = match kind {
            Leadership::Transfer => transfer_to_next(cluster, client),
            Leadership::Failover => fail_over(cluster),
            Leadership::RollingRestart => restart_node(cluster, client, round, true),
            Leadership::RollingRestartNoTransfer => restart_node(cluster, client, round, false),
        };
        if let Err(problem) = step {
            outcome = Err(format!("round {}: {problem}", round + 1));
            break;
        }
        thread::sleep(SETTLE);
        let seen = seen.lock().expect("not poisoned");
        windows.push(longest_gap(&seen.acknowledged, start, Instant::now()));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = appender.join();
    outcome?;
    let seen = seen.lock().expect("not poisoned");
    Ok(report(kind, &windows, &seen))
}

fn append_until(addrs: &[String], client: &ClientOptions, seen: &Mutex<Seen>, stop: &AtomicBool) {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let result = blocking::append_with(addrs, &format!("bench {n}"), TIMEOUT, client);
        let mut seen = seen.lock().expect("not poisoned");
        match result {
            Ok(_) => seen.acknowledged.push(Instant::now()),
            Err(error) => seen.failed.push(error.to_string()),
        }
    }
}

/// The longest time between two acknowledgements (or the window's edges) within
/// `[from, to]`, the acknowledgement just before `from` included.
fn longest_gap(acks: &[Instant], from: Instant, to: Instant) -> Duration {
    let before = acks.iter().rev().find(|&&at| at <= from).copied();
    let mut last = before.unwrap_or(from);
    let mut longest = Duration::ZERO;
    for &at in acks.iter().filter(|&&at| at > from && at <= to) {
        longest = longest.max(at - last);
        last = at;
    }
    longest.max(to - last)
}

fn leader(cluster: &LocalCluster) -> Result<(usize, u64), String> {
    let (addr, term) = cluster.wait_for_leader_term(TIMEOUT)?;
    let k = (0..cluster.len()).find(|&k| cluster.addr(k) == addr);
    Ok((k.ok_or("the leader is not a node of the cluster")?, term))
}

/// Waits until a node other than `old` leads, in a later term than `term`.
fn new_leader(cluster: &LocalCluster, old: usize, term: u64) -> Result<usize, String> {
    let deadline = Instant::now() + TIMEOUT;
    while Instant::now() < deadline {
        if let Ok((k, now)) = leader(cluster) {
            if k != old && now > term {
                return Ok(k);
            }
        }
        thread::sleep(Duration::from_millis(5));
    }
    Err("no new leader in time".into())
}

fn transfer_to_next(cluster: &LocalCluster, client: &ClientOptions) -> Result<(), String> {
    let (k, _) = leader(cluster)?;
    let to = (k + 1) % cluster.len();
    blocking::transfer_with(&cluster.addrs(), &(to + 1).to_string(), TIMEOUT, client)?;
    Ok(())
}

fn fail_over(cluster: &mut LocalCluster) -> Result<(), String> {
    let (k, term) = leader(cluster)?;
    cluster.kill(k);
    new_leader(cluster, k, term)?;
    cluster.restart(k).map_err(|e| format!("restart: {e}"))
}

fn restart_node(
    cluster: &mut LocalCluster,
    client: &ClientOptions,
    k: usize,
    transfer_first: bool,
) -> Result<(), String> {
    let (leader, _) = leader(cluster)?;
    if transfer_first && leader == k {
        let to = (k + 1) % cluster.len();
        blocking::transfer_with(&cluster.addrs(), &(to + 1).to_string(), TIMEOUT, client)?;
    }
    cluster.stop(k).map_err(|e| format!("stop: {e}"))?;
    thread::sleep(Duration::from_millis(200));
    cluster.restart(k).map_err(|e| format!("restart: {e}"))
}

fn report(kind: Leadership, windows: &[Duration], seen: &Seen) -> String {
    let ms = |d: &Duration| format!("{:.1}", d.as_secs_f64() * 1000.0);
    let mut sorted = windows.to_vec();
    sorted.sort();
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or_default();
    let max = sorted.last().copied().unwrap_or_default();
    let each: Vec<String> = windows.iter().map(ms).collect();
    let mut out = format!(
        "leadership {kind:?}: {} rounds; longest window without a commit per round (ms): {}\n\
         median {} ms, max {} ms; appends acknowledged {}, failed {}\n",
        windows.len(),
        each.join(" "),
        ms(&median),
        ms(&max),
        seen.acknowledged.len(),
        seen.failed.len()
    );
    for failure in seen.failed.iter().take(5) {
        out.push_str(&format!("  failed: {failure}\n"));
    }
    out
}
