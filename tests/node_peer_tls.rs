//! Mutual TLS between peers, against real nodes on loopback with certificates made for
//! each test: a TLS cluster elects and replicates over TLS (its peer traffic, recorded by
//! a relay, never shows a command in the clear, while a plaintext cluster's does); a
//! peer whose certificate another CA signed, or one that expired, is refused by the node
//! it dials, which logs the address; a plaintext `peer_hello`, or one over TLS without a
//! client certificate, is refused; a node without TLS is not a peer of nodes with it, and
//! each side logs the failed handshake once.

#[path = "node_support/mod.rs"]
mod support;

#[path = "../src/bench/certs.rs"]
mod certs;

use certs::{Identity, TestCa, Validity};
use replog_node::client::blocking::{ClientOptions, Connection};
use replog_node::local_cluster::{free_addrs, fresh_temp_dir};
use replog_node::tls::{Stream, TlsStream};
use replog_node::transport::wire::PEER_HELLO_OP;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{exe, TestCluster};

const TIMEOUT: Duration = Duration::from_secs(20);

/// A CA and a node certificate for one test, removed with it.
struct Pki {
    dir: PathBuf,
    ca: TestCa,
    node: Identity,
}

impl Pki {
    fn new(tag: &str) -> Pki {
        let dir = fresh_temp_dir(tag).unwrap();
        let ca = TestCa::new(&dir, "ca").unwrap();
        let node = ca.issue(&dir, "node", Validity::Current).unwrap();
        Pki { dir, ca, node }
    }

    fn args(&self) -> Vec<String> {
        tls_args(&self.node, &self.ca.cert)
    }

    fn client(&self) -> ClientOptions {
        ClientOptions {
            tls: Some(replog_node::tls::client_config(&self.ca.cert, None).unwrap()),
            ..ClientOptions::default()
        }
    }

    /// A cluster of `nodes` with TLS (these certificates), plus `more` arguments.
    fn cluster(&self, tag: &str, nodes: usize, more: &[String]) -> TestCluster {
        let mut args = self.args();
        args.extend(more.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        TestCluster::start_secured(tag, nodes, &args, self.client())
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn tls_args(identity: &Identity, ca: &Path) -> Vec<String> {
    let path = |path: &Path| path.display().to_string();
    vec![
        "--tls-cert".into(),
        path(&identity.cert),
        "--tls-key".into(),
        path(&identity.key),
        "--tls-ca".into(),
        path(ca),
    ]
}

/// Node `k`'s log lines since `cluster` started it.
fn log_of(cluster: &TestCluster, k: usize) -> String {
    std::fs::read_to_string(cluster.cluster.log_path(k)).unwrap_or_default()
}

/// Polls until `probe` holds, or fails with `what` and `context()`.
fn wait_until(what: &str, mut probe: impl FnMut() -> bool, context: impl Fn() -> String) {
    let deadline = Instant::now() + TIMEOUT;
    while !probe() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_tls_cluster_elects_a_leader_and_replicates_with_the_cluster_secret_as_well() {
    let pki = Pki::new("peer-tls-replicates");
    let secret = pki.dir.join("secret");
    std::fs::write(&secret, "correct horse battery staple\n").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let more = [
        "--cluster-secret-file".to_string(),
        secret.display().to_string(),
    ];
    let cluster = pki.cluster("peer-tls-replicates", 3, &more);
    let (leader, _) = cluster.stable_leader(&[0, 1, 2], TIMEOUT);
    let mut expected = Vec::new();
    for k in 0..20 {
        let appended = cluster.append(&format!("over mutual tls {k}"));
        expected.push((
            appended.index,
            appended.term,
            format!("over mutual tls {k}"),
        ));
    }
    for k in (0..3).filter(|&k| k != leader) {
        cluster.wait_committed_on(k, &expected);
    }
    for k in 0..3 {
        let log = log_of(&cluster, k);
        assert!(log.contains("peers with mutual TLS"), "node {k}:\n{log}");
        // Dials to peers not yet started are refused by their kernel; no node refuses a peer.
        assert!(!log.contains("refused peer connection"), "node {k}:\n{log}");
        assert!(!log.contains("TLS handshake failed"), "node {k}:\n{log}");
    }
}

#[test]
fn entries_bigger_than_the_socket_buffers_replicate_whole_over_tls_and_a_lagging_follower_catches_up(
) {
    // Frames of megabytes: the core's writes leave records in the TLS session and the
    // helper finishes them; the receiver reads records that rustls holds past the
    // socket's readiness. A follower that was down catches up in one burst.
    let pki = Pki::new("peer-tls-big");
    let mut cluster = pki.cluster("peer-tls-big", 3, &[]);
    let (leader, _) = cluster.stable_leader(&[0, 1, 2], TIMEOUT);
    let lagging = (leader + 1) % 3;
    cluster.cluster.kill(lagging);
    let mut expected = Vec::new();
    for k in 0..6 {
        let command = format!("{k}{}", "x".repeat(1 << 20));
        let appended = cluster.append(&command);
        expected.push((appended.index, appended.term, command));
    }
    let other = 3 - leader - lagging;
    cluster.wait_committed_on(other, &expected);
    cluster.cluster.restart(lagging).unwrap();
    cluster.wait_committed_on(lagging, &expected);
}

/// The bytes one direction of one relayed connection carried.
type Recording = Arc<Mutex<Vec<u8>>>;

/// A relay between a node's advertised address and the one it listens on, keeping every
/// byte each connection carries (both directions, per connection).
struct Relay {
    streams: Arc<Mutex<Vec<Recording>>>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    fn start(listener: TcpListener, target: String) -> Relay {
        listener.set_nonblocking(true).unwrap();
        let streams = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (kept, stopped) = (streams.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((inbound, _)) => {
                        let Ok(outbound) = TcpStream::connect(&target) else {
                            continue; // The node is not up yet: the dialer retries.
                        };
                        inbound.set_nonblocking(false).unwrap();
                        for (from, to) in [
                            (inbound.try_clone().unwrap(), outbound.try_clone().unwrap()),
                            (outbound, inbound),
                        ] {
                            let record = Arc::new(Mutex::new(Vec::new()));
                            kept.lock().unwrap().push(record.clone());
                            std::thread::spawn(move || pump(from, to, &record));
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Relay { streams, stop }
    }

    fn recorded(&self) -> Vec<Vec<u8>> {
        let streams = self.streams.lock().unwrap();
        streams.iter().map(|s| s.lock().unwrap().clone()).collect()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, record: &Mutex<Vec<u8>>) {
    let mut buffer = [0u8; 16 * 1024];
    while let Ok(count @ 1..) = from.read(&mut buffer) {
        record.lock().unwrap().extend_from_slice(&buffer[..count]);
        if to.write_all(&buffer[..count]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// Runs a 2-node cluster (with TLS or not) whose nodes are reached only through relays,
/// appends `command`, waits until the follower holds it, and returns what the relays
/// carried.
fn relayed_traffic(tag: &str, pki: Option<&Pki>, command: &str) -> Vec<Vec<u8>> {
    let (base, client) = match pki {
        Some(pki) => (pki.args(), pki.client()),
        None => (Vec::new(), ClientOptions::default()),
    };
    let args: Vec<&str> = base.iter().map(String::as_str).collect();
    let mut cluster = TestCluster::start_secured(tag, 2, &args, client);
    // Each node in turn moves behind a relay on its advertised address; peers and the
    // test then reach it only through the relay.
    let mut relays = Vec::new();
    for k in 0..2 {
        cluster.cluster.kill(k);
        let listen = free_addrs(1).unwrap().remove(0);
        let relay_listener = TcpListener::bind(cluster.addr(k)).unwrap();
        relays.push(Relay::start(relay_listener, listen.clone()));
        let mut node_args = base.clone();
        node_args.extend(["--listen".to_string(), listen]);
        let node_args: Vec<&str> = node_args.iter().map(String::as_str).collect();
        cluster.cluster.set_node_args(k, &node_args);
        cluster.cluster.restart(k).unwrap();
    }
    let (leader, _) = cluster.stable_leader(&[0, 1], TIMEOUT);
    let appended = cluster.append(command);
    let expected = [(appended.index, appended.term, command.to_string())];
    cluster.wait_committed_on(1 - leader, &expected);
    relays.iter().flat_map(Relay::recorded).collect()
}

#[test]
fn peer_traffic_is_encrypted_with_tls_and_readable_without() {
    let command = "a command that must not cross the network in the clear 7f3e";
    let plain = relayed_traffic("peer-tls-relay-plain", None, command);
    let peer_streams: Vec<&Vec<u8>> = plain
        .iter()
        .filter(|bytes| bytes.starts_with(format!("{{\"op\":\"{PEER_HELLO_OP}\"").as_bytes()))
        .collect();
    assert!(
        peer_streams
            .iter()
            .any(|bytes| contains(bytes, command.as_bytes())),
        "without TLS the relay should see the command in a peer connection ({} peer \
         streams of {})",
        peer_streams.len(),
        plain.len()
    );

    let pki = Pki::new("peer-tls-relay");
    let encrypted = relayed_traffic("peer-tls-relay-tls", Some(&pki), command);
    let carried: usize = encrypted.iter().map(Vec::len).sum();
    assert!(carried > 0, "the relays carried nothing");
    for bytes in &encrypted {
        assert!(
            !contains(bytes, command.as_bytes()) && !contains(bytes, PEER_HELLO_OP.as_bytes()),
            "plaintext crossed a TLS cluster's relay: {:?}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
        );
    }
    // Every connection the relays saw, in either direction, is a TLS session (a record
    // header first: handshake, or an alert for one cut short).
    for bytes in encrypted.iter().filter(|bytes| !bytes.is_empty()) {
        assert!(
            matches!(bytes[0], 21 | 22),
            "a connection that does not start with a TLS record: {:?}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
        );
    }
}

/// A node started by the test itself, outside the cluster's harness; killed on drop.
struct Stranger {
    child: Child,
    log: PathBuf,
    data: PathBuf,
}

impl Stranger {
    /// Starts node `k` of `cluster` (which the test stopped) with `tls` in place of the
    /// cluster's TLS arguments, and its own data directory. `REPLOG_LOG=debug`, so that
    /// the failures it logs below warning level show too.
    fn start(cluster: &TestCluster, k: usize, tls: &[String], dir: &Path) -> Stranger {
        let mut args = cluster.cluster.start_command(k);
        let data = dir.join(format!("stranger-data-{k}"));
        if let Some(at) = args.iter().position(|arg| arg == "--data-dir") {
            args[at + 1] = data.display().to_string();
        }
        for flag in ["--tls-cert", "--tls-key", "--tls-ca"] {
            if let Some(at) = args.iter().position(|arg| arg == flag) {
                args.drain(at..at + 2);
            }
        }
        args.extend(tls.iter().cloned());
        let log = dir.join(format!("stranger-{k}.log"));
        let child = Command::new(exe())
            .args(&args)
            .arg("--stop-on-stdin-eof")
            .env("REPLOG_LOG", "debug")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Stranger { child, log, data }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Stranger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// The addresses of the connections from peer `id` that `log` shows accepted and not yet
/// closed. (Node 3 of these tests is a legitimate peer until it is killed, and nodes dial
/// every peer at start, so its first connections are in the logs, each with its close.)
fn live_peer_connections(log: &str, id: u64) -> Vec<&str> {
    let opened = format!("peer n{id} connected from ");
    let closed = format!("peer n{id} disconnected (");
    log.lines()
        .filter_map(|line| {
            line.split_once(opened.as_str())
                .map(|(_, from)| from.trim())
        })
        .filter(|from| {
            !log.lines().any(|line| {
                line.contains(closed.as_str()) && line.contains(&format!("connected from {from})"))
            })
        })
        .collect()
}

/// The lines of `log` that contain every one of `parts`.
fn lines_with<'a>(log: &'a str, parts: &[&str]) -> Vec<&'a str> {
    log.lines()
        .filter(|line| parts.iter().all(|part| line.contains(part)))
        .collect()
}

/// Node 3 of a 3-node TLS cluster restarts with `identity`'s certificate (trusting the
/// cluster's CA): nodes 1 and 2 refuse it, logging its address and `reason`, and it
/// never takes part, while they replicate without it.
fn a_stranger_is_refused(tag: &str, pki: &Pki, identity: &Identity, reason: &str) {
    let mut cluster = pki.cluster(tag, 3, &[]);
    cluster.cluster.kill(2);
    let stranger = Stranger::start(&cluster, 2, &tls_args(identity, &pki.ca.cert), &pki.dir);
    let (leader, _) = cluster.stable_leader(&[0, 1], TIMEOUT);
    let appended = cluster.append("not for strangers");
    let expected = [(appended.index, appended.term, "not for strangers".into())];
    cluster.wait_committed_on(1 - leader, &expected);
    let refusal = [
        "closed a connection from 127.0.0.1:",
        "TLS handshake failed",
        reason,
    ];
    for k in 0..2 {
        wait_until(
            &format!("node {} to refuse the stranger's certificate", k + 1),
            || !lines_with(&log_of(&cluster, k), &refusal).is_empty(),
            || format!("{}\nstranger:\n{}", log_of(&cluster, k), stranger.log()),
        );
        let log = log_of(&cluster, k);
        let line = lines_with(&log, &refusal)[0];
        let port = line
            .split("127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split(':').next());
        assert!(
            port.is_some_and(|port| port.parse::<u16>().is_ok()),
            "no address in {line}"
        );
        assert_eq!(
            live_peer_connections(&log, 3),
            Vec::<&str>::new(),
            "node {}:\n{log}",
            k + 1
        );
    }
    let stranger_log = stranger.log();
    assert!(
        !stranger_log.contains("connected to peer"),
        "the stranger became a peer:\n{stranger_log}"
    );
}

#[test]
fn a_peer_whose_certificate_another_ca_signed_is_refused() {
    let pki = Pki::new("peer-tls-other-ca");
    let other = TestCa::new(&pki.dir, "other-ca").unwrap();
    let stranger = other
        .issue(&pki.dir, "stranger", Validity::Current)
        .unwrap();
    a_stranger_is_refused("peer-tls-other-ca", &pki, &stranger, "UnknownIssuer");
}

#[test]
fn a_peer_whose_certificate_expired_is_refused() {
    let pki = Pki::new("peer-tls-expired");
    let expired = pki
        .ca
        .issue(&pki.dir, "expired", Validity::Expired)
        .unwrap();
    a_stranger_is_refused("peer-tls-expired", &pki, &expired, "xpired");
}

/// Sends a `peer_hello` line on `stream` and returns the answer line, after which the
/// node must close the connection.
fn hello_answer<S: Read + Write>(stream: S) -> String {
    let mut reader = BufReader::new(stream);
    let line = format!("{{\"op\":\"{PEER_HELLO_OP}\"}}\n");
    reader.get_mut().write_all(line.as_bytes()).unwrap();
    reader.get_mut().flush().unwrap();
    let mut answer = String::new();
    reader.read_line(&mut answer).unwrap();
    let mut rest = String::new();
    let more = reader.read_line(&mut rest).unwrap_or(0);
    assert_eq!(more, 0, "not closed after {answer}: {rest}");
    answer
}

#[test]
fn a_plaintext_peer_hello_or_one_without_a_client_certificate_is_refused() {
    let pki = Pki::new("peer-tls-hello");
    let cluster = pki.cluster("peer-tls-hello", 1, &[]);
    cluster.stable_leader(&[0], TIMEOUT);
    let addr = cluster.addr(0);

    let plain = TcpStream::connect(&addr).unwrap();
    plain.set_read_timeout(Some(TIMEOUT)).unwrap();
    let local = plain.local_addr().unwrap().to_string();
    let answer = hello_answer(&plain);
    assert!(
        answer.contains("bad_request") && answer.contains("plaintext peer_hello"),
        "{answer}"
    );
    let refusal = format!("refused peer connection from {local}: a plaintext peer_hello");
    wait_until(
        "the plaintext hello's refusal in the log",
        || log_of(&cluster, 0).contains(&refusal),
        || log_of(&cluster, 0),
    );

    // Over TLS, as a client would come: no client certificate. (Another node: refusals
    // are logged once per interval per address, and both come from 127.0.0.1.)
    let cluster = pki.cluster("peer-tls-hello-no-cert", 1, &[]);
    cluster.stable_leader(&[0], TIMEOUT);
    let addr = cluster.addr(0);
    let socket = TcpStream::connect(&addr).unwrap();
    socket.set_read_timeout(Some(TIMEOUT)).unwrap();
    let local = socket.local_addr().unwrap().to_string();
    let config = pki.client().tls.unwrap();
    let mut tls = TlsStream::client(socket, config, "127.0.0.1").unwrap();
    tls.handshake().unwrap();
    let answer = hello_answer(Stream::Tls(Box::new(tls)));
    assert!(
        answer.contains("bad_request") && answer.contains("without a client certificate"),
        "{answer}"
    );
    let refusal = format!("refused peer connection from {local}: a peer_hello over TLS without");
    wait_until(
        "the certificate-less hello's refusal in the log",
        || log_of(&cluster, 0).contains(&refusal),
        || log_of(&cluster, 0),
    );
    // Clients without a certificate are still served.
    let mut client = Connection::connect_with(&addr, TIMEOUT, &pki.client()).unwrap();
    client.state(false).unwrap();
}

#[test]
fn a_node_without_tls_is_not_a_peer_and_each_side_logs_the_failed_handshake_once() {
    let pki = Pki::new("peer-tls-mixed");
    let mut cluster = pki.cluster("peer-tls-mixed", 3, &[]);
    cluster.cluster.kill(2);
    let plain = Stranger::start(&cluster, 2, &[], &pki.dir);
    let (leader, _) = cluster.stable_leader(&[0, 1], TIMEOUT);
    let appended = cluster.append("tls only");
    let expected = [(appended.index, appended.term, "tls only".into())];
    cluster.wait_committed_on(1 - leader, &expected);

    // The plaintext node dials with a plaintext hello: refused, and it says so once at
    // warning level, then at debug level on each retry.
    let refused = ["peer n1 at", "refused our hello", "plaintext peer_hello"];
    wait_until(
        "the plaintext node to be refused three times",
        || lines_with(&plain.log(), &refused).len() >= 3,
        || plain.log(),
    );
    let log = plain.log();
    let lines = lines_with(&log, &refused);
    let warned: Vec<&&str> = lines.iter().filter(|line| line.contains("WARN")).collect();
    assert_eq!(warned.len(), 1, "{log}");
    assert!(!log.contains("connected to peer"), "{log}");

    // The leader (a follower sends it nothing) dials it with TLS, which it closes:
    // reported once, however often the leader retries; the plaintext node says why.
    let closed = [
        "peer n3 at",
        "closed the connection during our TLS handshake",
    ];
    wait_until(
        "the leader to report the plaintext peer",
        || !lines_with(&log_of(&cluster, leader), &closed).is_empty(),
        || log_of(&cluster, leader),
    );
    let log = log_of(&cluster, leader);
    assert_eq!(lines_with(&log, &closed).len(), 1, "{log}");
    let speaks_tls = [
        "closed a connection from 127.0.0.1:",
        "speaks TLS to a plaintext port",
    ];
    assert!(
        !lines_with(&plain.log(), &speaks_tls).is_empty(),
        "{}",
        plain.log()
    );
    for k in 0..2 {
        let refusal = [
            "refused peer connection from 127.0.0.1:",
            "a plaintext peer_hello",
        ];
        wait_until(
            &format!("node {} to refuse the plaintext hello", k + 1),
            || !lines_with(&log_of(&cluster, k), &refusal).is_empty(),
            || log_of(&cluster, k),
        );
        let log = log_of(&cluster, k);
        assert_eq!(
            live_peer_connections(&log, 3),
            Vec::<&str>::new(),
            "node {}:\n{log}",
            k + 1
        );
    }
    // The plaintext node learned nothing of the log.
    let state = Connection::connect(&cluster.addr(2), TIMEOUT)
        .and_then(|mut connection| connection.state(false))
        .unwrap();
    assert_eq!(state.commit_index, 0, "{state:?}");
}
