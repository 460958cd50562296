//! Client tokens against real nodes on loopback: with `--client-token-file`, a client
//! that shows no token or a wrong one is answered `unauthorized` and its connection is
//! closed; the right one (an `auth` line, or `"token"` on a request) lets it in; every
//! CLI client command sends `--token-file` or `REPLOG_TOKEN`; a node without a token file
//! ignores tokens; bad token files are refused or warned about before the node runs.

#[path = "node_support/mod.rs"]
mod support;

use replog_node::client::blocking::ClientOptions;
use replog_node::local_cluster::fresh_temp_dir;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::{exe, TestCluster};

const TIMEOUT: Duration = Duration::from_secs(20);
const TOKEN: &str = "open sesame";

fn token_file(dir: &Path, name: &str, token: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{token}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path.display().to_string()
}

fn with_token() -> ClientOptions {
    ClientOptions {
        token: Some(TOKEN.into()),
        ..ClientOptions::default()
    }
}

/// A directory removed when the test ends.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A one-node cluster that requires `TOKEN`, with a leader; and the token file.
fn guarded(tag: &str) -> (TestCluster, String, TempDir) {
    let dir = TempDir(fresh_temp_dir(&format!("{tag}-file")).unwrap());
    let file = token_file(&dir.0, "token", TOKEN);
    let args = ["--client-token-file", file.as_str()];
    let cluster = TestCluster::start_secured(tag, 1, &args, with_token());
    cluster.stable_leader(&[0], TIMEOUT);
    (cluster, file, dir)
}

/// Sends `lines` on one raw connection; returns every line the node sent before it closed
/// the connection (or `None` if it kept it open).
fn exchange(addr: &str, lines: &str) -> (Vec<String>, bool) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(lines.as_bytes()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut answers = Vec::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => return (answers, true),
            Ok(_) => answers.push(line.trim_end().to_string()),
            Err(_) => return (answers, false), // Timed out: still open.
        }
    }
}

fn replog(args: &[&str], env_token: Option<&str>) -> Output {
    let mut command = Command::new(exe());
    command.args(args).env_remove("REPLOG_TOKEN");
    if let Some(token) = env_token {
        command.env("REPLOG_TOKEN", token);
    }
    command.output().unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn a_missing_or_wrong_token_is_answered_unauthorized_and_the_connection_closed() {
    let (cluster, _file, _dir) = guarded("token-refused");
    let addr = cluster.addr(0);
    for lines in [
        "{\"op\":\"status\"}\n{\"op\":\"status\"}\n".to_string(),
        "{\"op\":\"auth\",\"token\":\"open sesam\"}\n{\"op\":\"status\"}\n".to_string(),
        "{\"op\":\"append\",\"command\":\"x\",\"token\":\"wrong\"}\n".to_string(),
        "{\"op\":\"follow\",\"from\":1}\n".to_string(),
    ] {
        let (answers, closed) = exchange(&addr, &lines);
        assert_eq!(answers.len(), 1, "{lines}: {answers:?}");
        assert!(
            answers[0].contains("\"error\":\"unauthorized\""),
            "{answers:?}"
        );
        assert!(closed, "{lines}: the connection stayed open");
    }
    // Nothing was appended by the refused requests.
    let state = cluster.query(0).expect("query with the token");
    let commands: Vec<_> = state
        .entries
        .unwrap()
        .into_iter()
        .filter_map(|e| e.command)
        .collect();
    assert!(commands.is_empty(), "{commands:?}");
}

#[test]
fn the_right_token_in_an_auth_line_or_on_a_request_opens_the_connection() {
    let (cluster, _file, _dir) = guarded("token-accepted");
    let addr = cluster.addr(0);
    let lines = format!(
        "{{\"op\":\"auth\",\"token\":\"{TOKEN}\"}}\n{{\"op\":\"append\",\"command\":\"a\"}}\n\
         {{\"op\":\"status\"}}\n"
    );
    let (answers, closed) = exchange(&addr, &lines);
    assert!(!closed, "{answers:?}");
    assert_eq!(answers.len(), 3, "{answers:?}");
    assert_eq!(answers[0], "{\"ok\":true,\"authenticated\":true}");
    assert!(
        answers[1].starts_with("{\"ok\":true,\"index\":"),
        "{answers:?}"
    );
    assert!(answers[2].contains("\"role\":\"leader\""), "{answers:?}");
    let lines = format!(
        "{{\"op\":\"append\",\"command\":\"b\",\"token\":\"{TOKEN}\"}}\n{{\"op\":\"status\"}}\n"
    );
    let (answers, closed) = exchange(&addr, &lines);
    assert!(!closed, "{answers:?}");
    assert!(
        answers[0].starts_with("{\"ok\":true,\"index\":"),
        "{answers:?}"
    );
    assert!(answers[1].contains("\"role\":\"leader\""), "{answers:?}");
    let log = std::fs::read_to_string(cluster.cluster.log_path(0)).unwrap();
    assert!(log.contains("clients must show the token in"), "{log}");
}

#[test]
fn every_cli_client_command_sends_the_token_from_a_file_or_the_environment() {
    let (cluster, file, _dir) = guarded("token-cli");
    let addr = cluster.addr(0);
    let with_file = |args: &[&str]| {
        let mut args = args.to_vec();
        args.extend(["-t", &addr, "--token-file", &file]);
        replog(&args, None)
    };
    let appended = with_file(&["append", "-c", "set x=1"]);
    assert!(appended.status.success(), "{}", text(&appended));
    for args in [
        &["status"][..],
        &["query"],
        &["read", "--from", "1"],
        &["follow", "--from", "1", "--count", "2"],
        &["trim", "--before", "2"],
    ] {
        let output = with_file(args);
        assert!(output.status.success(), "{args:?}: {}", text(&output));
    }
    let followed = with_file(&["follow", "--from", "1", "--count", "2"]);
    assert!(
        String::from_utf8_lossy(&followed.stdout).contains("set x=1"),
        "{}",
        text(&followed)
    );
    let from_env = replog(&["append", "-t", &addr, "-c", "set y=2"], Some(TOKEN));
    assert!(from_env.status.success(), "{}", text(&from_env));
    let bench = replog(
        &[
            "bench",
            "-t",
            &addr,
            "--clients",
            "2",
            "--duration",
            "1s",
            "--warmup",
            "0s",
            "--json",
        ],
        Some(TOKEN),
    );
    assert!(bench.status.success(), "{}", text(&bench));
    let report: serde_json::Value = serde_json::from_slice(&bench.stdout).unwrap();
    assert!(report["committed"].as_u64().unwrap_or(0) > 0, "{report}");
    // Without the token, or with a wrong one, every command fails and says why.
    for (args, env) in [
        (&["append", "-t", &addr, "-c", "z"][..], None),
        (&["status", "-t", &addr], None),
        (&["status", "-t", &addr], Some("nope")),
        (&["read", "-t", &addr, "--from", "1"], Some("nope")),
        (&["follow", "-t", &addr, "--from", "1"], Some("nope")),
        (&["trim", "-t", &addr, "--before", "2"], Some("nope")),
    ] {
        let started = Instant::now();
        let output = replog(args, env);
        assert!(!output.status.success(), "{args:?}: {}", text(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("unauthorized") || stderr.contains("token"),
            "{stderr}"
        );
        // Refused at once: retrying elsewhere would only be refused again.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{args:?} took {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn a_node_without_a_token_file_ignores_tokens() {
    let cluster = TestCluster::start("token-ignored", 1);
    cluster.stable_leader(&[0], TIMEOUT);
    let dir = fresh_temp_dir("token-ignored-file").unwrap();
    let file = token_file(&dir, "token", "whatever");
    let addr = cluster.addr(0);
    let output = replog(
        &["append", "-t", &addr, "-c", "x", "--token-file", &file],
        None,
    );
    assert!(output.status.success(), "{}", text(&output));
    let (answers, closed) = exchange(&addr, "{\"op\":\"status\",\"token\":\"any\"}\n");
    assert!(!closed && answers[0].contains("\"ok\":true"), "{answers:?}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Runs `replog start` for one node with `args` added; returns whether it served (ran
/// until stopped after `run_for`) and its standard error.
fn start_node_with(args: &[&str], run_for: Duration) -> (bool, String) {
    let dir = fresh_temp_dir("token-file").unwrap();
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
    let mut log = String::new();
    std::fs::File::open(&log_path)
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    let created_data = dir.join("data").exists();
    let _ = std::fs::remove_dir_all(&dir);
    (status.success() && created_data, log)
}

#[test]
fn token_files_that_are_missing_or_empty_are_refused_and_world_readable_ones_warned() {
    let dir = fresh_temp_dir("token-files").unwrap();
    let missing = dir.join("missing").display().to_string();
    let (ran, log) = start_node_with(&["--client-token-file", &missing], TIMEOUT);
    assert!(!ran, "{log}");
    assert!(
        log.contains(&format!(
            "error: --client-token-file {missing}: cannot read it"
        )),
        "{log}"
    );
    let empty = token_file(&dir, "empty", "  ");
    let (ran, log) = start_node_with(&["--client-token-file", &empty], TIMEOUT);
    assert!(!ran, "{log}");
    assert!(
        log.contains(&format!("error: --client-token-file {empty} is empty")),
        "{log}"
    );
    let open = token_file(&dir, "open", "a token");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ran, log) = start_node_with(&["--client-token-file", &open], Duration::from_secs(2));
    assert!(
        ran,
        "a world-readable token is a warning, not an error:\n{log}"
    );
    assert!(
        log.lines().any(|line| line.contains("WARN")
            && line.contains(&format!(
                "--client-token-file {open} is readable by every user"
            ))),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
