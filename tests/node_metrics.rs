//! `--metrics-addr`: real nodes serve Prometheus metrics and a health check over HTTP,
//! scraped here with plain HTTP/1.1 requests on loopback.

#[path = "node_support/mod.rs"]
mod support;

use replog_node::local_cluster::free_addrs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::TestCluster;

const TIMEOUT: Duration = Duration::from_secs(20);

/// Sends `request` as is and returns the status code and body of the answer.
fn exchange(addr: &str, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to the metrics port");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(request.as_bytes())
        .expect("send the request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read the answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("Content-Length: "))
        .and_then(|length| length.parse().ok())
        .unwrap_or_else(|| panic!("no Content-Length in {head:?}"));
    assert_eq!(length, body.len(), "Content-Length matches the body");
    (status, body.to_string())
}

fn get(addr: &str, path: &str) -> (u16, String) {
    exchange(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: test\r\n\r\n"),
    )
}

/// The value of the sample named exactly `series` (name and labels) in a scrape.
fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.parse().ok()
    })
}

fn scrape_value(addr: &str, series: &str) -> f64 {
    let (status, body) = get(addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    sample(&body, series).unwrap_or_else(|| panic!("no {series} in\n{body}"))
}

/// The metrics address node `k` logged (started with `--metrics-addr 127.0.0.1:0`).
fn metrics_addr(cluster: &TestCluster, k: usize) -> String {
    let marker = "serving metrics at http://";
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let log = cluster.cluster.log_tail(k, 200);
        if let Some(rest) = log.split(marker).nth(1) {
            let addr = rest.split('/').next().unwrap_or_default();
            return addr.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "node {k} logged no metrics address:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `addr` until `series` reaches `at_least` (metrics are published once per tick).
fn wait_for_value(addr: &str, series: &str, at_least: f64) -> f64 {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let value = scrape_value(addr, series);
        if value >= at_least {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{series} stayed at {value}, below {at_least}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn metrics_move_with_appends_and_a_leader_is_healthy() {
    let cluster = TestCluster::start_with("metrics-load", 3, &["--metrics-addr", "127.0.0.1:0"]);
    let (leader, term) = cluster.stable_leader(&[0, 1, 2], TIMEOUT);
    let addr = metrics_addr(&cluster, leader);
    wait_for_value(&addr, "replog_role{role=\"leader\"}", 1.0);
    let (status, body) = get(&addr, "/health");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, format!("ok: leader {} in term {term}\n", leader + 1));

    let ok_appends = "replog_client_requests_total{op=\"append\",outcome=\"ok\"}";
    let before = get(&addr, "/metrics").1;
    let value = |series: &str| sample(&before, series).unwrap_or_else(|| panic!("no {series}"));
    let commit = value("replog_commit_index");
    let latencies = value("replog_append_latency_seconds_count");
    let fsyncs = value("replog_fsync_latency_seconds_count");
    let sent = value("replog_messages_sent_total{kind=\"append_entries\"}");
    let appends = 20;
    // Through the leader itself, so that its front end answers every one.
    let leader_addr = [cluster.addr(leader)];
    for n in 0..appends {
        replog_node::client::blocking::append(&leader_addr, &format!("m{n}"), TIMEOUT)
            .expect("append");
    }
    let appends = f64::from(appends);
    wait_for_value(&addr, "replog_commit_index", commit + appends);
    wait_for_value(&addr, ok_appends, value(ok_appends) + appends);
    wait_for_value(
        &addr,
        "replog_append_latency_seconds_count",
        latencies + appends,
    );
    wait_for_value(&addr, "replog_fsync_latency_seconds_count", fsyncs + 1.0);
    wait_for_value(
        &addr,
        "replog_messages_sent_total{kind=\"append_entries\"}",
        sent + 1.0,
    );
    let scrape = get(&addr, "/metrics").1;
    let entries = sample(&scrape, "replog_log_entries").expect("log entries");
    assert!(entries >= appends, "{scrape}");
    // The leader knows how far each follower got.
    let last = sample(&scrape, "replog_log_last_index").expect("last index");
    for k in (0..3).filter(|&k| k != leader) {
        let follower = k + 1;
        let matched = wait_for_value(
            &addr,
            &format!("replog_follower_match_index{{peer=\"{follower}\"}}"),
            last,
        );
        assert!(matched <= last);
    }
    // A follower's view: it knows the leader, and has no followers of its own.
    let follower = (leader + 1) % 3;
    let follower_addr = metrics_addr(&cluster, follower);
    let follower_scrape = get(&follower_addr, "/metrics").1;
    let leader_id = sample(&follower_scrape, "replog_leader_id").expect("leader id");
    assert_eq!(leader_id, (leader + 1) as f64, "{follower_scrape}");
    assert!(
        !follower_scrape.contains("replog_follower_match_index"),
        "{follower_scrape}"
    );
}

#[test]
fn bad_http_requests_get_a_4xx_naming_the_problem() {
    let cluster = TestCluster::start_with("metrics-http", 1, &["--metrics-addr", "127.0.0.1:0"]);
    let addr = metrics_addr(&cluster, 0);
    let (status, body) = get(&addr, "/nothing");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("/metrics"), "{body}");
    let (status, body) = exchange(&addr, "hello there\r\n\r\n");
    assert_eq!(status, 400, "{body}");
    let (status, _) = exchange(&addr, "POST /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(status, 405);
    // A client that sends nothing is let go, and the next scrape is served.
    let silent = TcpStream::connect(&addr).unwrap();
    let (status, _) = get(&addr, "/metrics");
    assert_eq!(status, 200);
    drop(silent);
}

/// `replog start` for node 1 of a 3-node cluster whose other nodes never start.
fn lone_node(dir: &std::path::Path, metrics_addr: &str) -> Command {
    let addrs = free_addrs(3).expect("free ports");
    let mut command = Command::new(support::exe());
    command
        .args(["start", "-i", "1", "-a", &addrs[0], "-p", &addrs.join(",")])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--metrics-addr", metrics_addr, "--stop-on-stdin-eof"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

#[test]
fn without_a_leader_health_is_503_with_the_reason() {
    let dir = replog_node::local_cluster::fresh_temp_dir("metrics-noleader").unwrap();
    let addr = free_addrs(1).unwrap().remove(0);
    let mut child = lone_node(&dir, &addr).spawn().expect("spawn replog start");
    let deadline = Instant::now() + TIMEOUT;
    let (status, body) = loop {
        // Until the node serves, and past its start (its core thread publishes every tick).
        if TcpStream::connect(&addr).is_ok() {
            let answer = get(&addr, "/health");
            if answer.1.contains("no leader") {
                break answer;
            }
        }
        assert!(Instant::now() < deadline, "no 503 for the missing leader");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("no leader known in term "), "{body}");
    // Closing standard input stops the node.
    drop(child.stdin.take());
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_metrics_address_in_use_stops_the_start_with_its_name() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = replog_node::local_cluster::fresh_temp_dir("metrics-taken").unwrap();
    let mut child = lone_node(&dir, &addr).spawn().expect("spawn replog start");
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the node started on a taken metrics address"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot serve metrics on {addr} (--metrics-addr)")),
        "{stderr}"
    );
    assert!(stderr.contains("in use"), "{stderr}");
    // Refused before storage was opened: no data was written.
    assert!(!dir.join("data").join("1").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
