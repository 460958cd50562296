//! TLS on the node's port against real nodes on loopback, with certificates made for each
//! test: clients with `--tls-ca` are served; a certificate from an unknown CA or an
//! expired one is refused by the client, a client certificate from an unknown CA by the
//! node; plaintext to a TLS port, and TLS to a plaintext one, fail with a clear error; a
//! key that does not match its certificate stops the node at start.

#[path = "node_support/mod.rs"]
mod support;

#[path = "../src/bench/certs.rs"]
mod certs;

use certs::{Identity, TestCa, Validity};
use replog_node::client::blocking::ClientOptions;
use replog_node::local_cluster::fresh_temp_dir;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::{exe, TestCluster};

const TIMEOUT: Duration = Duration::from_secs(20);

/// Certificates for one test, removed with it.
struct Pki {
    dir: PathBuf,
    ca: TestCa,
    node: Identity,
}

impl Pki {
    fn new(tag: &str, validity: Validity) -> Pki {
        let dir = fresh_temp_dir(tag).unwrap();
        let ca = TestCa::new(&dir, "ca").unwrap();
        let node = ca.issue(&dir, "node", validity).unwrap();
        Pki { dir, ca, node }
    }

    fn node_args(&self) -> Vec<String> {
        let path = |path: &Path| path.display().to_string();
        vec![
            "--tls-cert".into(),
            path(&self.node.cert),
            "--tls-key".into(),
            path(&self.node.key),
            "--tls-ca".into(),
            path(&self.ca.cert),
        ]
    }

    fn ca(&self) -> String {
        self.ca.cert.display().to_string()
    }

    fn client(&self) -> ClientOptions {
        ClientOptions {
            tls: Some(replog_node::tls::client_config(&self.ca.cert, None).unwrap()),
            ..ClientOptions::default()
        }
    }

    /// A cluster of `nodes` serving TLS with these certificates, plus `more` arguments.
    fn cluster(&self, tag: &str, nodes: usize, more: &[&str]) -> TestCluster {
        let mut args = self.node_args();
        args.extend(more.iter().map(|arg| arg.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        TestCluster::start_secured(tag, nodes, &args, self.client())
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn replog(args: &[&str]) -> Output {
    Command::new(exe())
        .args(args)
        .env_remove("REPLOG_TOKEN")
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn fails_with(output: &Output, expected: &[&str]) {
    assert!(!output.status.success(), "{}", text(output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for part in expected {
        assert!(stderr.contains(part), "no {part:?} in: {}", text(output));
    }
}

#[test]
fn a_tls_cluster_serves_clients_that_trust_its_ca_and_replicates() {
    let pki = Pki::new("tls-serves", Validity::Current);
    let cluster = pki.cluster("tls-serves", 3, &[]);
    cluster.stable_leader(&[0, 1, 2], TIMEOUT);
    let appended = cluster.append("over tls");
    let expected = [(appended.index, appended.term, "over tls".to_string())];
    for k in 0..3 {
        cluster.wait_committed_on(k, &expected);
    }
    let targets = cluster.cluster.addrs().join(",");
    let ca = pki.ca();
    let output = replog(&[
        "append",
        "-t",
        &targets,
        "-c",
        "from the cli",
        "--tls-ca",
        &ca,
    ]);
    assert!(output.status.success(), "{}", text(&output));
    for args in [
        &["status"][..],
        &["query"],
        &["read", "--from", "1"],
        &["follow", "--from", "1", "--count", "3"],
    ] {
        let mut args = args.to_vec();
        args.extend(["-t", &targets, "--tls-ca", &ca]);
        let output = replog(&args);
        assert!(output.status.success(), "{args:?}: {}", text(&output));
    }
    let followed = replog(&[
        "follow", "-t", &targets, "--tls-ca", &ca, "--from", "1", "--count", "3",
    ]);
    let stdout = String::from_utf8_lossy(&followed.stdout);
    assert!(
        stdout.contains("over tls") && stdout.contains("from the cli"),
        "{}",
        text(&followed)
    );
}

#[test]
fn a_node_certificate_from_an_unknown_ca_or_expired_is_refused_by_the_client() {
    let pki = Pki::new("tls-unknown-ca", Validity::Current);
    let cluster = pki.cluster("tls-unknown-ca", 1, &[]);
    cluster.stable_leader(&[0], TIMEOUT);
    let other = TestCa::new(&pki.dir, "other-ca").unwrap();
    let other_ca = other.cert.display().to_string();
    let addr = cluster.addr(0);
    let started = Instant::now();
    let output = replog(&["append", "-t", &addr, "-c", "x", "--tls-ca", &other_ca]);
    fails_with(&output, &["TLS handshake failed", "UnknownIssuer"]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "not refused at once"
    );
    fails_with(
        &replog(&["status", "-t", &addr, "--tls-ca", &other_ca]),
        &["UnknownIssuer"],
    );
    drop(cluster);

    let expired = Pki::new("tls-expired", Validity::Expired);
    let cluster = expired.cluster_unprobed("tls-expired");
    let output = replog(&["status", "-t", &cluster.1, "--tls-ca", &expired.ca()]);
    fails_with(&output, &["TLS handshake failed", "expired"]);
}

impl Pki {
    /// One node serving TLS with these certificates, not probed (clients refuse it):
    /// the child and its address.
    fn cluster_unprobed(&self, tag: &str) -> (ChildGuard, String) {
        let dir = self.dir.join(tag);
        let addr = replog_node::local_cluster::free_addrs(1).unwrap().remove(0);
        let child = Command::new(exe())
            .args(["start", "-i", "1", "-a", &addr, "--stop-on-stdin-eof"])
            .arg("--data-dir")
            .arg(&dir)
            .args(self.node_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + TIMEOUT;
        while TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "the node never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
        (ChildGuard(child), addr)
    }
}

struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}

#[test]
fn plaintext_to_a_tls_port_and_tls_to_a_plaintext_port_fail_clearly() {
    let pki = Pki::new("tls-plaintext", Validity::Current);
    let cluster = pki.cluster("tls-plaintext", 1, &[]);
    cluster.stable_leader(&[0], TIMEOUT);
    let addr = cluster.addr(0);
    let mut stream = TcpStream::connect(&addr).unwrap();
    stream.write_all(b"{\"op\":\"status\"}\n").unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut reader = BufReader::new(stream);
    let mut answer = String::new();
    reader.read_line(&mut answer).unwrap();
    assert!(
        answer.contains("bad_request") && answer.contains("speaks TLS"),
        "{answer}"
    );
    let mut rest = String::new();
    assert_eq!(
        reader.read_line(&mut rest).unwrap(),
        0,
        "not closed: {rest}"
    );
    fails_with(&replog(&["status", "-t", &addr]), &["speaks TLS"]);
    fails_with(
        &replog(&["append", "-t", &addr, "-c", "x"]),
        &["speaks TLS"],
    );

    let plain = TestCluster::start("tls-to-plain", 1);
    let started = Instant::now();
    let output = replog(&["status", "-t", &plain.addr(0), "--tls-ca", &pki.ca()]);
    fails_with(&output, &["TLS handshake failed", "--tls-cert"]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "not refused at once"
    );
}

#[test]
fn a_client_certificate_must_come_from_the_nodes_ca() {
    let pki = Pki::new("tls-client-cert", Validity::Current);
    let cluster = pki.cluster("tls-client-cert", 1, &[]);
    cluster.stable_leader(&[0], TIMEOUT);
    let addr = cluster.addr(0);
    let ours = pki.ca.issue(&pki.dir, "client", Validity::Current).unwrap();
    let other = TestCa::new(&pki.dir, "other-ca").unwrap();
    let theirs = other
        .issue(&pki.dir, "stranger", Validity::Current)
        .unwrap();
    let ca = pki.ca();
    let with = |identity: &Identity| {
        let (cert, key) = (
            identity.cert.display().to_string(),
            identity.key.display().to_string(),
        );
        replog(&[
            "status",
            "-t",
            &addr,
            "--tls-ca",
            &ca,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ])
    };
    let output = with(&ours);
    assert!(output.status.success(), "{}", text(&output));
    fails_with(&with(&theirs), &["TLS"]);
}

#[test]
fn tokens_work_over_tls() {
    let pki = Pki::new("tls-token", Validity::Current);
    let token = pki.dir.join("token");
    std::fs::write(&token, "t0ken\n").unwrap();
    let token = token.display().to_string();
    let args = ["--client-token-file", token.as_str()];
    let mut args_vec = pki.node_args();
    args_vec.extend(args.iter().map(|arg| arg.to_string()));
    let args: Vec<&str> = args_vec.iter().map(String::as_str).collect();
    let client = ClientOptions {
        token: Some("t0ken".into()),
        ..pki.client()
    };
    let cluster = TestCluster::start_secured("tls-token", 1, &args, client);
    cluster.stable_leader(&[0], TIMEOUT);
    let addr = cluster.addr(0);
    let ca = pki.ca();
    let output = replog(&[
        "append",
        "-t",
        &addr,
        "-c",
        "x",
        "--tls-ca",
        &ca,
        "--token-file",
        &token,
    ]);
    assert!(output.status.success(), "{}", text(&output));
    fails_with(
        &replog(&["append", "-t", &addr, "-c", "x", "--tls-ca", &ca]),
        &["requires a client token"],
    );
}

#[test]
fn a_key_that_does_not_match_its_certificate_stops_the_node_at_start() {
    let pki = Pki::new("tls-bad-key", Validity::Current);
    let stranger = pki
        .ca
        .issue(&pki.dir, "stranger", Validity::Current)
        .unwrap();
    let addr = replog_node::local_cluster::free_addrs(1).unwrap().remove(0);
    let (cert, key, ca) = (
        pki.node.cert.display().to_string(),
        stranger.key.display().to_string(),
        pki.ca(),
    );
    let output = Command::new(exe())
        .args([
            "start",
            "-i",
            "1",
            "-a",
            &addr,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ])
        .args(["--tls-ca", &ca])
        .arg("--data-dir")
        .arg(pki.dir.join("data"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    fails_with(
        &output,
        &[&format!(
            "--tls-key {key} does not go with --tls-cert {cert}"
        )],
    );
    assert!(
        !pki.dir.join("data").exists(),
        "the node made its data directory"
    );
    let missing = pki.dir.join("missing.pem").display().to_string();
    let output = Command::new(exe())
        .args([
            "start",
            "-i",
            "1",
            "-a",
            &addr,
            "--tls-cert",
            &missing,
            "--tls-key",
            &key,
        ])
        .args(["--tls-ca", &ca])
        .arg("--data-dir")
        .arg(pki.dir.join("data"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    fails_with(&output, &[&format!("--tls-cert {missing}")]);
}

#[test]
fn bench_local_tls_runs_its_nodes_and_clients_with_tls() {
    let dir = fresh_temp_dir("tls-bench").unwrap();
    let data = dir.display().to_string();
    let output = replog(&[
        "bench",
        "--local",
        "--tls",
        "--nodes",
        "1",
        "--clients",
        "2",
        "--duration",
        "1s",
        "--warmup",
        "0s",
        "--json",
        "--data-dir",
        &data,
    ]);
    assert!(output.status.success(), "{}", text(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(report["committed"].as_u64().unwrap_or(0) > 0, "{report}");
    assert_eq!(report["connection_errors"].as_u64(), Some(0), "{report}");
    let log = std::fs::read_to_string(dir.join("node-1.log")).unwrap();
    assert!(log.contains("clients must connect with TLS"), "{log}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn answers_bigger_than_the_socket_buffers_arrive_whole_over_tls() {
    let pki = Pki::new("tls-big", Validity::Current);
    let cluster = pki.cluster("tls-big", 1, &[]);
    cluster.stable_leader(&[0], TIMEOUT);
    // One answer of 12 MiB: the node writes it in many rounds, waiting for the socket.
    let command = "x".repeat(3 << 20);
    for _ in 0..4 {
        cluster.append(&command);
    }
    cluster.append("after");
    let state = cluster.query(0).expect("query over TLS");
    let entries = state.entries.unwrap();
    let commands: Vec<String> = entries.into_iter().filter_map(|e| e.command).collect();
    let mut expected = vec![command; 4];
    expected.push("after".to_string());
    assert!(
        commands == expected,
        "{} commands, not the 5 appended",
        commands.len()
    );
}
