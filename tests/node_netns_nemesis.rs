//! The real-network fault test: five `replog` processes, each in its own network
//! namespace on a bridge, clients inside those namespaces appending and reading through
//! every fault, and a nemesis that cuts links (blackhole routes, and drop-style cuts that
//! lose frames in transit), kills and stops nodes. After each heal it measures the time to
//! a leader and for the cut nodes to catch up, and holds them to issue 13's goal; at the
//! end the whole history goes through `replog check`.
//!
//! Needs root and `ip` (iproute2). Where namespaces cannot be made it skips with one line,
//! unless REPLOG_REQUIRE_NETNS is set (CI), where that is a failure.

mod netns_support;

use netns_support::cluster::Cluster;
use netns_support::history::{client, Recorder, Tally};
use netns_support::net::{Cut, Net};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const NODES: usize = 5;
/// The nodes' largest election timeout (node/src/config.rs: 200–400 ms).
const ELECTION_TIMEOUT: Duration = Duration::from_millis(400);
/// What one measurement may lag the event it sees: the poll period (10 ms) plus one
/// status poll, which decides as soon as a majority's answers agree on a leader (a slow
/// node does not hold it up; one that has not answered within `POLL_TIMEOUT`, 80 ms,
/// counts as not answering), plus ~10 ms to start the polling threads. The goal itself is
/// not loosened.
const MEASURE_SLACK: Duration = Duration::from_millis(100);
const POLL_TIMEOUT: Duration = Duration::from_millis(80);
/// The goal's "time to send the backlog": a cut node is at most a few thousand short
/// entries (~20 bytes) behind, well under 1 MB, which a veth carries in a few ms, and the
/// follower writes to tmpfs; 150 ms bounds it with room for the leader's batching.
const BACKLOG_SEND: Duration = Duration::from_millis(150);
const STATUS_TIMEOUT: Duration = Duration::from_millis(300);

struct Figure {
    fault: &'static str,
    leader_ms: u128,
    caught_up_ms: u128,
}

struct Run {
    cluster: Cluster,
    figures: Vec<Figure>,
}

impl Run {
    /// The current leader, waiting for one up to `within`.
    fn leader(&self, within: Duration) -> Option<(usize, u64)> {
        let deadline = Instant::now() + within;
        loop {
            let states = self.cluster.statuses_until(POLL_TIMEOUT, |states| {
                self.cluster.leader_of(states).is_some()
            });
            if let Some(found) = self.cluster.leader_of(&states) {
                return Some(found);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn stable_leader(&self) -> usize {
        self.leader(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("no leader within 10 s (logs: {:?})", self.cluster.dir()))
            .0
    }

    /// Measures from `healed`: the time until a majority agrees on a leader, then until
    /// every node of `cut` has committed what that leader had committed at the heal.
    fn measure(&mut self, fault: &'static str, healed: Instant, cut: &[usize]) {
        let (_, backlog) = self
            .leader(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{fault}: no leader within 10 s of the heal"));
        let leader_at = healed.elapsed();
        let deadline = healed + Duration::from_secs(15);
        let mut pending: Vec<usize> = cut.to_vec();
        while !pending.is_empty() {
            assert!(
                Instant::now() < deadline,
                "{fault}: nodes {pending:?} not caught up to {backlog} within 15 s"
            );
            pending.retain(|&k| {
                self.cluster
                    .status(k, POLL_TIMEOUT)
                    .is_none_or(|s| s.commit_index < backlog)
            });
            std::thread::sleep(Duration::from_millis(10));
        }
        let caught_up = healed.elapsed();
        println!(
            "{fault}: leader {} ms after the heal, cut nodes caught up to index {backlog} in {} ms",
            leader_at.as_millis(),
            caught_up.as_millis()
        );
        self.figures.push(Figure {
            fault,
            leader_ms: leader_at.as_millis(),
            caught_up_ms: caught_up.as_millis(),
        });
        std::thread::sleep(Duration::from_millis(500));
    }

    fn others(&self, k: usize) -> Vec<usize> {
        (0..NODES).filter(|&j| j != k).collect()
    }

    fn follower(&self, leader: usize, nth: usize) -> usize {
        self.others(leader)[nth]
    }
}

#[test]
fn the_cluster_heals_within_the_goal_and_its_history_is_linearizable_under_real_network_faults() {
    if let Some(why) = Net::unavailable() {
        assert!(
            std::env::var_os("REPLOG_REQUIRE_NETNS").is_none(),
            "REPLOG_REQUIRE_NETNS is set but network namespaces cannot be made: {why}"
        );
        println!("skipped: network namespaces cannot be made here ({why})");
        return;
    }
    Net::clean_leftovers();
    let started = Instant::now();
    let net = Net::create(NODES).expect("namespaces, veths and a bridge");
    let cluster = Cluster::start(net);
    let mut run = Run {
        cluster,
        figures: Vec::new(),
    };
    run.stable_leader();

    let recorder = Arc::new(Recorder::new());
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..NODES)
        .map(|k| {
            let mut targets = run.cluster.addrs();
            targets.rotate_left(k);
            let ns = run.cluster.net.nodes[k].0.clone();
            client(
                k,
                &ns,
                targets,
                recorder.clone(),
                tally.clone(),
                stop.clone(),
            )
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));

    nemesis(&mut run);
    // Liveness after the last heal: appends keep being acknowledged.
    let before = tally.ok.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(1));
    let after = tally.ok.load(Ordering::Relaxed);
    assert!(
        after > before + 100,
        "only {} appends acknowledged in the second after the last heal",
        after - before
    );

    stop.store(true, Ordering::Relaxed);
    for handle in clients {
        handle.join().expect("a client thread");
    }
    check_history(&run, &recorder, &tally);
    report(&run.figures);
    println!("run took {} s", started.elapsed().as_secs());
}

fn net(run: &Run) -> &Net {
    &run.cluster.net
}

/// The faults, one after another, each healed and measured before the next.
fn nemesis(run: &mut Run) {
    let hold = Duration::from_secs(3);

    // The leader alone, its clients still talking to it (blackhole routes).
    let leader = run.stable_leader();
    let others = run.others(leader);
    net(run)
        .partition(&[leader], &others, Cut::Blackhole, true)
        .unwrap();
    std::thread::sleep(hold);
    net(run)
        .partition(&[leader], &others, Cut::Blackhole, false)
        .unwrap();
    run.measure("isolated leader", Instant::now(), &[leader]);

    // A follower cut off for 8 s, frames lost in transit (the case).
    let leader = run.stable_leader();
    let f = run.follower(leader, 0);
    let rest = run.others(f);
    net(run).partition(&[f], &rest, Cut::Drop, true).unwrap();
    std::thread::sleep(Duration::from_secs(8));
    net(run).partition(&[f], &rest, Cut::Drop, false).unwrap();
    run.measure("8 s drop cut", Instant::now(), &[f]);

    // Majority / minority, the leader in the minority.
    let leader = run.stable_leader();
    let minority = [leader, run.follower(leader, 0)];
    let majority: Vec<usize> = (0..NODES).filter(|k| !minority.contains(k)).collect();
    net(run)
        .partition(&minority, &majority, Cut::Drop, true)
        .unwrap();
    std::thread::sleep(hold);
    net(run)
        .partition(&minority, &majority, Cut::Drop, false)
        .unwrap();
    run.measure("split, leader in minority", Instant::now(), &minority);

    // A bridge: {a, b} and {d, e} cannot talk, c talks to all.
    let leader = run.stable_leader();
    let order = run.others(leader);
    let (left, right) = ([leader, order[0]], [order[2], order[3]]);
    net(run).partition(&left, &right, Cut::Drop, true).unwrap();
    std::thread::sleep(hold);
    net(run).partition(&left, &right, Cut::Drop, false).unwrap();
    run.measure(
        "bridge",
        Instant::now(),
        &[left[0], left[1], right[0], right[1]],
    );

    // One way: the leader's packets to everyone are lost, theirs to it arrive.
    let leader = run.stable_leader();
    for &k in &run.others(leader) {
        net(run).cut(leader, k, Cut::Drop).unwrap();
    }
    std::thread::sleep(hold);
    for &k in &run.others(leader) {
        net(run).restore(leader, k, Cut::Drop).unwrap();
    }
    run.measure("one-way cut of the leader", Instant::now(), &[leader]);

    // Flapping: a follower's links cut and restored every 300 ms for 3 s.
    let leader = run.stable_leader();
    let f = run.follower(leader, 1);
    let rest = run.others(f);
    for _ in 0..5 {
        net(run).partition(&[f], &rest, Cut::Drop, true).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        net(run).partition(&[f], &rest, Cut::Drop, false).unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    run.measure("flapping follower", Instant::now(), &[f]);

    // kill -9 of the leader, restarted on its data 2 s later.
    let leader = run.stable_leader();
    run.cluster.kill(leader);
    std::thread::sleep(Duration::from_secs(2));
    run.cluster.spawn(leader);
    run.measure(
        "kill -9 and restart of the leader",
        Instant::now(),
        &[leader],
    );

    // SIGSTOP of the leader for 3 s, then SIGCONT.
    let leader = run.stable_leader();
    run.cluster.signal(leader, libc::SIGSTOP);
    std::thread::sleep(hold);
    run.cluster.signal(leader, libc::SIGCONT);
    run.measure("SIGSTOP/SIGCONT of the leader", Instant::now(), &[leader]);
}

/// Every node's final log and every client operation through `replog check`; and
/// liveness: appends kept being acknowledged, also after the last heal.
fn check_history(run: &Run, recorder: &Recorder, tally: &Tally) {
    let leader = run.stable_leader();
    let (_, commit) = run.cluster.leader(STATUS_TIMEOUT).expect("a leader");
    // Every node has applied the final commit index before its log is taken.
    let deadline = Instant::now() + Duration::from_secs(10);
    for k in 0..NODES {
        while run
            .cluster
            .status(k, STATUS_TIMEOUT)
            .is_none_or(|s| s.commit_index < commit)
        {
            assert!(
                Instant::now() < deadline,
                "node {} never reached {commit}",
                k + 1
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    for k in 0..NODES {
        recorder.log(k + 1, &run.cluster.committed_log(k));
    }
    let ok = tally.ok.load(Ordering::Relaxed);
    println!(
        "history: {ok} appends ok, {} failed, {} unknown, {} reads; leader at the end: node {}",
        tally.failed.load(Ordering::Relaxed),
        tally.unknown.load(Ordering::Relaxed),
        tally.reads.load(Ordering::Relaxed),
        leader + 1
    );
    assert!(
        ok > 100,
        "only {ok} appends were acknowledged: the cluster made no progress"
    );
    let file = run.cluster.dir().join("history.jsonl");
    std::fs::write(&file, recorder.text()).expect("write the history");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_replog"))
        .arg("check")
        .arg(&file)
        .output()
        .expect("replog check");
    let said = String::from_utf8_lossy(&output.stdout);
    print!("{said}");
    if !output.status.success() {
        let kept = std::env::temp_dir().join("replog-netns-history.jsonl");
        let _ = std::fs::copy(&file, &kept);
        panic!(
            "replog check failed (history kept at {}):\n{said}{}",
            kept.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Prints the figures, then holds every one to the goal: a leader within one election
/// timeout of the heal, the cut nodes caught up within 1 s plus the backlog's send time.
fn report(figures: &[Figure]) {
    println!("{:<36} {:>10} {:>14}", "fault", "leader ms", "caught up ms");
    for figure in figures {
        println!(
            "{:<36} {:>10} {:>14}",
            figure.fault, figure.leader_ms, figure.caught_up_ms
        );
    }
    let leader_goal = (ELECTION_TIMEOUT + MEASURE_SLACK).as_millis();
    let caught_up_goal = (Duration::from_secs(1) + BACKLOG_SEND + MEASURE_SLACK).as_millis();
    for figure in figures {
        assert!(
            figure.leader_ms <= leader_goal,
            "{}: a leader only {} ms after the heal (goal: {leader_goal} ms)",
            figure.fault,
            figure.leader_ms
        );
        assert!(
            figure.caught_up_ms <= caught_up_goal,
            "{}: caught up only {} ms after the heal (goal: {caught_up_goal} ms)",
            figure.fault,
            figure.caught_up_ms
        );
    }
}
