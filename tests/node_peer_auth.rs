//! Peer authentication and the hello deadline against real nodes on loopback: with
//! `--cluster-secret-file`, a peer that cannot prove the secret is refused (logged with
//! its address) and never takes part; secrets rotate; a peer address that is not replog
//! is reported once, with what it sent, and redialled with growing backoff; bad secret
//! files are refused or warned about before the node runs.

#[path = "node_support/mod.rs"]
mod support;

use replog_node::client::RoleName;
use replog_node::local_cluster::fresh_temp_dir;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{exe, TestCluster};

const TIMEOUT: Duration = Duration::from_secs(20);

/// A secret file only its owner may read.
fn secret_file(dir: &Path, name: &str, secret: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{secret}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path.display().to_string()
}

fn secrets_dir(tag: &str) -> PathBuf {
    fresh_temp_dir(tag).expect("temp dir")
}

fn log_of(cluster: &TestCluster, k: usize) -> String {
    std::fs::read_to_string(cluster.cluster.log_path(k)).unwrap_or_default()
}

#[test]
fn a_hand_typed_hello_without_proof_is_refused_and_logged_with_its_address() {
    let secrets = secrets_dir("secret-hello");
    let file = secret_file(&secrets, "secret", "correct horse battery staple");
    let mut cluster = TestCluster::start_with("auth-hello", 3, &["--cluster-secret-file", &file]);
    // An authenticated cluster works as any other.
    cluster.stable_leader(&[0, 1, 2], TIMEOUT);
    let appended = cluster.append("with a secret");
    let expected = [(appended.index, appended.term, "with a secret".to_string())];
    for k in 0..3 {
        cluster.wait_committed_on(k, &expected);
    }
    // Node 3 is down: its hello, typed by hand, is what `nc` would send.
    cluster.cluster.kill(2);
    let hello = cluster.hello_as(2);
    let mut stream = TcpStream::connect(cluster.addr(0)).unwrap();
    let local = stream.local_addr().unwrap().to_string();
    stream.write_all(&hello.encode_line()).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer).unwrap();
    assert!(
        answer.contains("bad_request") && answer.contains("no proof of the cluster secret"),
        "{answer}"
    );
    let refusal = format!("refused peer connection from {local}: no proof of the cluster secret");
    cluster.wait_for(TIMEOUT, "the refusal to be logged", |cluster| {
        log_of(cluster, 0).contains(&refusal).then_some(())
    });
    assert!(!log_of(&cluster, 0).contains(&format!("peer n3 connected from {local}")));
    drop(cluster);
    let _ = std::fs::remove_dir_all(secrets);
}

#[test]
fn a_node_with_another_secret_is_refused_and_never_joins() {
    let secrets = secrets_dir("secret-wrong");
    let good = secret_file(&secrets, "good", "the cluster's secret");
    let wrong = secret_file(&secrets, "wrong", "some other secret");
    let mut cluster = TestCluster::start_with("auth-wrong", 3, &["--cluster-secret-file", &good]);
    cluster.stable_leader(&[0, 1, 2], TIMEOUT);
    cluster.cluster.stop(2).expect("stop node 3");
    let last_index_before = cluster.query(0).expect("query").last_index;
    cluster
        .cluster
        .set_node_args(2, &["--cluster-secret-file", &wrong]);
    cluster.cluster.restart(2).expect("restart node 3");
    for n in 0..5 {
        cluster.append(&format!("without node 3: {n}"));
    }
    let (leader, term) = cluster.stable_leader(&[0, 1], TIMEOUT);
    cluster.wait_for(TIMEOUT, "both sides to log the refusals", |cluster| {
        let refused_by_members = (0..2).all(|k| {
            let log = log_of(cluster, k);
            log.contains("refused peer connection from 127.0.0.1:")
                && log.contains("another cluster secret")
        });
        let node_3 = log_of(cluster, 2);
        let refused_by_3 = node_3.contains("refused peer connection from 127.0.0.1:")
            && node_3.contains("proved another cluster secret than ours");
        (refused_by_members && refused_by_3).then_some(())
    });
    // Well past several election timeouts and redials: node 3 has heard nothing.
    std::thread::sleep(Duration::from_secs(2));
    let state = cluster.status(2).expect("node 3 answers its clients");
    assert_ne!(state.role, RoleName::Leader);
    assert_eq!(state.leader, None, "node 3 must not know of a leader");
    assert!(
        state.last_index <= last_index_before,
        "node 3's log grew to {} (it held {last_index_before} before its secret changed)",
        state.last_index
    );
    // Its campaigns never reached the others: same leader, same term.
    assert_eq!(cluster.agreed_leader(&[0, 1]), Some((leader, term)));
    drop(cluster);
    let _ = std::fs::remove_dir_all(secrets);
}

#[test]
fn secrets_rotate_nodes_prove_with_their_first_secret_and_accept_any() {
    let secrets = secrets_dir("secret-rotate");
    let old = secret_file(&secrets, "old", "the old secret");
    let new = secret_file(&secrets, "new", "the new secret");
    let old_first = ["--cluster-secret-file", &old, "--cluster-secret-file", &new];
    let new_first = ["--cluster-secret-file", &new, "--cluster-secret-file", &old];
    let mut cluster = TestCluster::start_with("auth-rotate", 3, &old_first);
    cluster.stable_leader(&[0, 1, 2], TIMEOUT);
    // Too early for the new secret alone: nodes 1 and 2 still prove with the old one.
    cluster.cluster.stop(2).expect("stop node 3");
    cluster
        .cluster
        .set_node_args(2, &["--cluster-secret-file", &new]);
    cluster.cluster.restart(2).expect("restart node 3");
    cluster.wait_for(TIMEOUT, "node 3 to refuse the old secret", |cluster| {
        let log = log_of(cluster, 2);
        (log.contains("refused peer connection from")
            && log.contains("proved another cluster secret than ours"))
        .then_some(())
    });
    // One node at a time moves on to proving with the new secret, still accepting the
    // old: every pair of nodes can talk throughout, and node 3 joins once both have.
    for k in [0, 1] {
        cluster.cluster.stop(k).expect("stop");
        cluster.cluster.set_node_args(k, &new_first);
        cluster.cluster.restart(k).expect("restart");
    }
    let appended = cluster.append("after the rotation");
    let expected = [(
        appended.index,
        appended.term,
        "after the rotation".to_string(),
    )];
    for k in 0..3 {
        cluster.wait_committed_on(k, &expected);
    }
    cluster.stable_leader(&[0, 1, 2], TIMEOUT);
    drop(cluster);
    let _ = std::fs::remove_dir_all(secrets);
}

/// A server that answers every connection like a web server asked nonsense, and notes
/// when each one came.
fn http_like_server() -> (String, Arc<Mutex<Vec<Instant>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let noted = arrivals.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            noted.lock().unwrap().push(Instant::now());
            let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
            let _ = stream.read(&mut [0u8; 1024]);
            let _ = stream.write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    (addr, arrivals)
}

#[test]
fn a_peer_address_that_is_not_replog_is_reported_once_and_redialled_with_backoff() {
    let (fake, arrivals) = http_like_server();
    let dir = fresh_temp_dir("not-replog").unwrap();
    let addr = replog_node::local_cluster::free_addrs(1).unwrap().remove(0);
    let log_path = dir.join("node.log");
    let mut child = Command::new(exe())
        .args(["start", "-i", "1", "-a", &addr, "-p", &format!("2={fake}")])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--stop-on-stdin-eof")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    // Watched until the eighth dial: the backoff doubles from 20 ms (with a quarter of
    // jitter either way), so the seventh gap is 1,280 ms less at most a quarter. Counted
    // from the first dial, not from the spawn: on a loaded machine a new node can take
    // seconds to create its data directory before it dials at all.
    let enough = 8;
    let deadline = Instant::now() + Duration::from_secs(30);
    while arrivals.lock().unwrap().len() < enough && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // And it keeps growing: the eighth gap is 2,560 ms less at most a quarter, so no dial
    // comes in the next 1.5 s.
    std::thread::sleep(Duration::from_millis(1500));
    drop(child.stdin.take());
    let status = child.wait().unwrap();
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(status.success(), "{log}");
    let reports: Vec<&str> = log
        .lines()
        .filter(|line| line.contains(&format!("peer n2 at {fake}")))
        .collect();
    assert_eq!(reports.len(), 1, "one report, not one per redial:\n{log}");
    assert!(
        reports[0].contains("WARN")
            && reports[0].contains("did not complete the peer handshake")
            && reports[0].contains(r#""HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"#),
        "{}",
        reports[0]
    );
    assert!(!log.contains("connected to peer n2"), "{log}");
    let arrivals = arrivals.lock().unwrap().clone();
    let gaps: Vec<Duration> = arrivals.windows(2).map(|pair| pair[1] - pair[0]).collect();
    assert!(
        arrivals.len() >= enough,
        "redialled only {} times in 30 s: {gaps:?}",
        arrivals.len()
    );
    assert_eq!(
        arrivals.len(),
        enough,
        "dialled again within 1.5 s of the eighth dial: {gaps:?}"
    );
    // Exponential, and past the unreachable cap (250 ms): the first redial comes soon, the
    // seventh after more than 900 ms.
    assert!(
        gaps[0] < Duration::from_millis(400),
        "the first redial waited: {gaps:?}"
    );
    assert!(
        gaps[enough - 2] >= Duration::from_millis(900),
        "the backoff did not grow: {gaps:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Runs `replog start` for one node with `args` added; returns its exit success and
/// standard error once it exits or, if it serves, once it is stopped after `run_for`.
fn start_node_with(args: &[&str], run_for: Duration) -> (bool, String) {
    let dir = fresh_temp_dir("secret-file").unwrap();
    let addr = replog_node::local_cluster::free_addrs(1).unwrap().remove(0);
    let log_path = dir.join("node.log");
    let mut child = Command::new(exe())
        .args(["start", "-i", "1", "-a", &addr])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--stop-on-stdin-eof")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + run_for;
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(child.stdin.take());
    let status = child.wait().unwrap();
    let log = std::fs::read_to_string(&log_path).unwrap();
    let created_data = dir.join("data").exists();
    let _ = std::fs::remove_dir_all(&dir);
    (status.success() && created_data, log)
}

#[test]
fn secret_files_that_are_missing_or_empty_are_refused_and_world_readable_ones_warned() {
    let dir = secrets_dir("secret-files");
    let missing = dir.join("missing").display().to_string();
    let (ran, log) = start_node_with(&["--cluster-secret-file", &missing], TIMEOUT);
    assert!(!ran, "{log}");
    assert!(
        log.contains(&format!(
            "error: --cluster-secret-file {missing}: cannot read it"
        )),
        "{log}"
    );
    let empty = dir.join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let empty = empty.display().to_string();
    let (ran, log) = start_node_with(&["--cluster-secret-file", &empty], TIMEOUT);
    assert!(!ran, "{log}");
    assert!(
        log.contains(&format!("error: --cluster-secret-file {empty} is empty")),
        "{log}"
    );
    let open = secret_file(&dir, "open", "a secret");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ran, log) = start_node_with(&["--cluster-secret-file", &open], Duration::from_secs(2));
    assert!(
        ran,
        "a world-readable secret is a warning, not an error:\n{log}"
    );
    assert!(
        log.lines().any(|line| line.contains("WARN")
            && line.contains(&format!(
                "--cluster-secret-file {open} is readable by every user"
            ))),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A TCP relay in front of one node that can "cut the network": every connection it holds
/// when the cut starts, and every one it takes during the cut, has its bytes read and
/// thrown away from then on, in both directions, as if its packets vanished. (The
/// sender's kernel still sees its bytes taken, so only the application can tell.)
/// Connections made after the cut heals are relayed.
struct Relay {
    epoch: Arc<std::sync::atomic::AtomicU64>,
    cutting: Arc<std::sync::atomic::AtomicBool>,
}

impl Relay {
    fn start(listen: &str, target: String) -> Relay {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let listener = TcpListener::bind(listen).expect("the relay's port");
        let epoch = Arc::new(AtomicU64::new(0));
        let cutting = Arc::new(AtomicBool::new(false));
        let (epoch_in, cutting_in) = (epoch.clone(), cutting.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let born = epoch_in.load(Ordering::SeqCst);
                let born_dead = cutting_in.load(Ordering::SeqCst);
                let dead = {
                    let epoch = epoch_in.clone();
                    Arc::new(move || born_dead || epoch.load(Ordering::SeqCst) != born)
                };
                for (from, to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let dead = dead.clone();
                    std::thread::spawn(move || pump(from, to, &*dead));
                }
            }
        });
        Relay { epoch, cutting }
    }

    fn cut(&self) {
        use std::sync::atomic::Ordering;
        self.cutting.store(true, Ordering::SeqCst);
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    fn heal(&self) {
        use std::sync::atomic::Ordering;
        self.cutting.store(false, Ordering::SeqCst);
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, dead: &dyn Fn() -> bool) {
    let mut buffer = [0u8; 64 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(count) if !dead() => {
                if to.write_all(&buffer[..count]).is_err() {
                    break;
                }
            }
            Ok(_) => {} // Vanished.
        }
    }
    if !dead() {
        let _ = to.shutdown(std::net::Shutdown::Write);
    }
}

#[test]
fn a_follower_cut_off_by_vanishing_packets_catches_up_soon_after_the_cut_heals() {
    let mut cluster = TestCluster::start("dead-link", 3);
    cluster.stable_leader(&[0, 1, 2], TIMEOUT);
    // Node 3 moves behind a relay at its advertised address: its peers reach it only
    // through the relay, and it still dials them directly.
    cluster.cluster.stop(2).expect("stop node 3");
    let behind = replog_node::local_cluster::free_addrs(1).unwrap().remove(0);
    let relay = Relay::start(&cluster.addr(2), behind.clone());
    cluster.cluster.set_node_args(2, &["--listen", &behind]);
    cluster.cluster.restart(2).expect("restart node 3");
    // Node 3 must be a follower for the cut below to cut a follower off. A restarted node
    // holds its vote for a while, yet on a loaded machine the leader can lose its lease
    // and node 3 win the election that follows: then it is restarted again, so that one
    // of the others leads.
    let mut restarts = 1;
    while cluster.stable_leader(&[0, 1, 2], TIMEOUT).0 == 2 {
        assert!(restarts < 5, "node 3 led after each of {restarts} restarts");
        cluster.cluster.stop(2).expect("stop node 3");
        cluster.stable_leader(&[0, 1], TIMEOUT);
        cluster.cluster.restart(2).expect("restart node 3");
        restarts += 1;
    }
    let before = cluster.append("before the cut");
    cluster.wait_committed_on(2, &[(before.index, before.term, "before the cut".into())]);

    relay.cut();
    let expected: Vec<(u64, u64, String)> = (0..20)
        .map(|n| {
            let command = format!("during the cut: {n}");
            let appended = cluster.append(&command);
            (appended.index, appended.term, command)
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    // Asked directly: the relay cuts clients too.
    let state = support::status_of(&behind).expect("node 3 answers its clients");
    assert!(
        state.commit_index < expected[0].0,
        "the cut let entries through"
    );
    relay.heal();
    let healed = Instant::now();
    cluster.wait_committed_on(2, &expected);
    let caught_up = healed.elapsed();
    // The goal is about a second; the rest is room for a loaded machine.
    assert!(
        caught_up < Duration::from_secs(5),
        "node 3 took {caught_up:?} after the heal to catch up\n{}",
        cluster.cluster.all_log_tails(30)
    );
}
