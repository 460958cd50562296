//! The node commands as a person uses them: `replog append|query|status` output formats and
//! exit codes, and `replog start` refusing a bad configuration.

#[path = "node_support/mod.rs"]
mod support;

use replog_node::client::RoleName;
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use support::TestCluster;

const ELECTION: Duration = Duration::from_secs(20);

fn replog(args: &[&str]) -> Output {
    Command::new(support::exe())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run replog")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn append_query_and_status_print_the_documented_formats() {
    let cluster = TestCluster::start("cli", 3);
    let (leader, _) = cluster.stable_leader(&[0, 1, 2], ELECTION);
    let follower = cluster.addr((leader + 1) % 3);

    let output = replog(&["append", "-t", &follower, "-c", "hello world"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.starts_with("committed at index "), "{text}");
    assert!(text.contains(&cluster.addr(leader)), "{text}");

    let output = replog(&["append", "-t", &follower, "-c", "second", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let answer: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(answer["ok"], true);
    let second_index = answer["index"].as_u64().unwrap();

    // The seed's listing format, read from the leader (which has committed both).
    let output = replog(&["query", "-t", &cluster.addr(leader)]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let listing: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(listing.len() as u64, second_index, "{text}");
    for (position, line) in listing.iter().enumerate() {
        let expected_start = format!("{}. ID:{} Term:", position + 1, position + 1);
        assert!(line.starts_with(&expected_start), "{line}");
        assert!(line.contains(" Committed:true Command:"), "{line}");
    }
    assert!(
        listing[listing.len() - 2].ends_with("Command:hello world"),
        "{text}"
    );
    assert!(
        listing[listing.len() - 1].ends_with("Command:second"),
        "{text}"
    );

    let output = replog(&["query", "-t", &follower, "--json"]);
    let answer: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert!(answer["entries"].is_array(), "{answer}");

    let output = replog(&["status", "-t", &follower, "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let answer: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(answer["role"], "follower");
    assert_eq!(answer["leader"], cluster.addr(leader).as_str());
    assert!(answer.get("entries").is_none(), "{answer}");

    let output = replog(&["status", "-t", &follower]);
    let text = stdout(&output);
    assert!(text.contains("follower"), "{text}");
    assert!(text.contains(&cluster.addr(leader)), "{text}");
}

#[test]
fn append_without_a_leader_exits_non_zero_with_a_clear_message() {
    let mut cluster = TestCluster::start("cli-noleader", 3);
    cluster.stable_leader(&[0, 1, 2], ELECTION);
    cluster.cluster.kill(1);
    cluster.cluster.kill(2);
    // Once the survivor knows it has no majority (CheckQuorum), nobody leads.
    cluster.wait_for(ELECTION, "the survivor to know no leader", |cluster| {
        let state = cluster.status(0)?;
        (state.role != RoleName::Leader && state.leader.is_none()).then_some(())
    });
    let output = replog(&[
        "append",
        "-t",
        &cluster.addr(0),
        "-c",
        "lost",
        "--timeout",
        "2",
    ]);
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(
        text.contains("no leader accepted the append in time"),
        "{text}"
    );
    assert!(stdout(&output).is_empty());
}

#[test]
fn commands_against_an_unreachable_node_fail_clearly() {
    let addr = replog_node::local_cluster::free_addrs(1).unwrap().remove(0);
    let output = replog(&["status", "-t", &addr]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains(&format!("cannot reach {addr}")),
        "{}",
        stderr(&output)
    );
    let output = replog(&["append", "-t", &addr, "-c", "x", "--timeout", "1"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("Connection refused"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn start_refuses_an_id_that_does_not_match_the_address_order() {
    let dir = replog_node::local_cluster::fresh_temp_dir("cli-id").unwrap();
    let output = Command::new(support::exe())
        .args([
            "start",
            "-i",
            "2",
            "-a",
            "127.0.0.1:7001",
            "-p",
            "127.0.0.1:7002",
        ])
        .arg("--data-dir")
        .arg(&dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(text.contains("1=127.0.0.1:7001,2=127.0.0.1:7002"), "{text}");
    assert!(text.contains("ID=ADDR"), "{text}");
}

#[test]
fn demo_starts_a_cluster_appends_and_stops_its_nodes_at_end_of_input() {
    use std::io::{BufRead, BufReader};
    let mut demo = Command::new(support::exe())
        .args(["demo", "--nodes", "3"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start replog demo");
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("demo output");
        let done = line.contains("Press Ctrl-C");
        seen.push(line);
        if done {
            break;
        }
    }
    let text = seen.join("\n");
    assert!(text.contains("Leader elected"), "{text}");
    assert_eq!(text.matches("  appended ").count(), 3, "{text}");
    let node_addrs: Vec<String> = seen
        .iter()
        .filter(|line| line.trim_start().starts_with("node "))
        .map(|line| line.split_whitespace().nth(2).unwrap().to_string())
        .collect();
    assert_eq!(node_addrs.len(), 3, "{text}");
    // The appends committed on a majority; the last node may still be catching up.
    for addr in &node_addrs {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let state = support::status_of(addr).expect("a demo node answers");
            if state.last_index >= 4 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{addr} never got the demo's appends: {state:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    drop(demo.stdin.take()); // End of input: the demo stops its nodes.
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = demo.wait().unwrap();
    assert!(status.success(), "{}", rest.join("\n"));
    let kept = rest
        .iter()
        .find_map(|line| line.strip_prefix("Stopped. Data kept in "))
        .unwrap_or_else(|| panic!("no stop message in {rest:?}"));
    for addr in &node_addrs {
        assert!(support::status_of(addr).is_none(), "{addr} still serves");
    }
    let _ = std::fs::remove_dir_all(kept);
}

/// The scheduling policy (field 41 of `/proc/PID/task/TID/stat`) of every thread of
/// process `pid`, by thread name; the main thread (the core thread) is named "core" here.
fn thread_policies(pid: u32) -> Vec<(String, u32)> {
    let mut policies = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("read /proc") {
        let task = task.unwrap();
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue; // The thread ended meanwhile.
        };
        let name_end = stat.rfind(')').expect("stat holds (comm)");
        let name_start = stat.find('(').expect("stat holds (comm)");
        let mut name = stat[name_start + 1..name_end].to_string();
        if task.file_name().to_string_lossy() == pid.to_string() {
            name = "core".to_string();
        }
        // Fields after the name start at field 3 (state); policy is field 41.
        let fields: Vec<&str> = stat[name_end + 1..].split_whitespace().collect();
        policies.push((name, fields[41 - 3].parse().expect("numeric policy")));
    }
    policies.sort();
    policies
}

fn policy_of(policies: &[(String, u32)], thread: &str) -> u32 {
    policies
        .iter()
        .find(|(name, _)| name == thread)
        .unwrap_or_else(|| panic!("no thread {thread:?} in {policies:?}"))
        .1
}

const SCHED_OTHER: u32 = 0;
const SCHED_BATCH: u32 = 3;

#[test]
fn scheduling_batch_puts_the_core_and_storage_threads_on_sched_batch_and_only_them() {
    let cluster = TestCluster::start("sched-default", 1);
    let policies = thread_policies(cluster.cluster.pid(0).expect("running"));
    assert!(
        policies.iter().all(|(_, policy)| *policy == SCHED_OTHER),
        "the default leaves every thread alone: {policies:?}"
    );

    let dir = replog_node::local_cluster::fresh_temp_dir("sched-batch").unwrap();
    let batch = replog_node::local_cluster::LocalCluster::start_with(
        &support::exe(),
        1,
        &dir,
        &["--scheduling", "batch"],
    )
    .expect("start with --scheduling batch");
    let policies = thread_policies(batch.pid(0).expect("running"));
    assert_eq!(policy_of(&policies, "core"), SCHED_BATCH, "{policies:?}");
    assert_eq!(policy_of(&policies, "storage"), SCHED_BATCH, "{policies:?}");
    for thread in ["clients", "log-writer", "stdin"] {
        assert_eq!(policy_of(&policies, thread), SCHED_OTHER, "{policies:?}");
    }
    drop(batch);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn start_names_a_bad_scheduling_value() {
    let output = replog(&[
        "start",
        "-i",
        "1",
        "-a",
        "127.0.0.1:1",
        "--scheduling",
        "fast",
    ]);
    assert!(!output.status.success());
    let error = stderr(&output);
    assert!(
        error.contains("--scheduling") && error.contains("fast"),
        "{error}"
    );
    assert!(
        error.contains("batch") && error.contains("normal"),
        "{error}"
    );
}

/// Runs `replog args`, reads the first line of its output and closes the pipe, as
/// `replog ... | head -1` does; returns how it ended and its stderr. The output must be
/// longer than a pipe buffer, so that the writes after the first line meet a closed pipe.
fn first_line_then_close(args: &[&str]) -> (std::process::ExitStatus, String) {
    use std::io::{BufRead, BufReader, Read};
    let mut child = Command::new(support::exe())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run replog");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut first)
        .expect("a first line");
    assert!(!first.is_empty(), "no output from {args:?}");
    let mut errors = String::new();
    child
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut errors)
        .expect("stderr");
    (child.wait().expect("wait"), errors)
}

fn assert_quiet_pipe_end(args: &[&str]) {
    use std::os::unix::process::ExitStatusExt;
    let (status, errors) = first_line_then_close(args);
    assert!(
        status.success() || status.signal() == Some(libc::SIGPIPE),
        "{args:?} ended with {status} on a closed pipe: {errors}"
    );
    assert!(!errors.contains("panicked"), "{args:?}: {errors}");
}

#[test]
fn query_into_a_closed_pipe_ends_quietly() {
    let cluster = TestCluster::start("cli-pipe", 1);
    cluster.stable_leader(&[0], ELECTION);
    let long = "x".repeat(40_000);
    for _ in 0..4 {
        cluster.append(&long);
    }
    assert_quiet_pipe_end(&["query", "-t", &cluster.addr(0)]);
}

#[test]
fn sim_replay_into_a_closed_pipe_ends_quietly() {
    assert_quiet_pipe_end(&[
        "sim",
        "replay",
        "--seed",
        "1",
        "--nodes",
        "3",
        "--duration",
        "20s",
    ]);
}

/// A `replog start` of a one-node cluster run by a test; stopped (stdin closed, then
/// killed if need be) and its directory removed when dropped.
struct OneNode {
    child: std::process::Child,
    dir: std::path::PathBuf,
    /// Where the node's socket is bound (its `--listen`).
    listen: String,
}

impl OneNode {
    /// Starts `replog start -i 1 ARGS --listen LISTEN` with its own data directory.
    fn start(tag: &str, args: &[&str], listen: &str) -> OneNode {
        let dir = replog_node::local_cluster::fresh_temp_dir(tag).unwrap();
        let child = Command::new(support::exe())
            .args(["start", "-i", "1"])
            .args(args)
            .args(["--listen", listen, "--stop-on-stdin-eof", "--data-dir"])
            .arg(dir.join("data"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start replog");
        OneNode {
            child,
            dir,
            listen: listen.to_string(),
        }
    }

    /// The node's status once it leads (a one-node cluster elects itself).
    fn wait_leading(&mut self) -> replog_node::client::NodeState {
        let deadline = std::time::Instant::now() + ELECTION;
        loop {
            if let Some(state) = support::status_of(&self.listen) {
                if state.role == RoleName::Leader {
                    return state;
                }
            }
            assert!(
                matches!(self.child.try_wait(), Ok(None)),
                "the node exited during start"
            );
            assert!(std::time::Instant::now() < deadline, "never led");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for OneNode {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn start_binds_listen_and_hands_clients_the_advertised_address() {
    let addrs = replog_node::local_cluster::free_addrs(2).unwrap();
    let (advertised, listen) = (&addrs[0], &addrs[1]);
    // The README's spellings: --address for -a, -l for --leader.
    let mut node = OneNode::start("cli-listen", &["--address", advertised, "-l"], listen);
    let state = node.wait_leading();
    assert_eq!(state.leader.as_deref(), Some(advertised.as_str()));
    assert!(
        support::status_of(advertised).is_none(),
        "the node bound its advertised address, not --listen"
    );
    let output = replog(&["append", "-t", listen, "-c", "via listen"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains(&format!("(leader {listen})")));
}

#[test]
fn start_advertises_127_0_0_1_8080_by_default() {
    let listen = replog_node::local_cluster::free_addrs(1).unwrap().remove(0);
    let mut node = OneNode::start("cli-default-addr", &[], &listen);
    let state = node.wait_leading();
    assert_eq!(state.leader.as_deref(), Some("127.0.0.1:8080"));
}

#[test]
fn start_refuses_bad_addresses_before_creating_anything() {
    let dir = replog_node::local_cluster::fresh_temp_dir("cli-bad-addr").unwrap();
    let data = dir.join("data");
    for (args, named) in [
        (
            vec!["-a", "notanaddress"],
            "\"notanaddress\" is not an address (no port)",
        ),
        (
            vec!["-a", "127.0.0.1:7001", "-p", "127.0.0.1"],
            "\"127.0.0.1\" is not an address (no port)",
        ),
        (
            vec!["-a", "127.0.0.1:7001", "--listen", "0.0.0.0"],
            "--listen: \"0.0.0.0\" is not an address (no port)",
        ),
    ] {
        let output = Command::new(support::exe())
            .args(["start", "-i", "1"])
            .args(&args)
            .arg("--data-dir")
            .arg(&data)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!output.status.success(), "{args:?}");
        assert!(
            stderr(&output).contains(named),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(!data.exists(), "{args:?} created {}", data.display());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn start_refuses_an_unknown_replog_log_level() {
    let dir = replog_node::local_cluster::fresh_temp_dir("cli-log-level").unwrap();
    let data = dir.join("data");
    let addr = replog_node::local_cluster::free_addrs(1).unwrap().remove(0);
    // With stdin at its end a node that does start stops at once, so this cannot hang.
    let output = Command::new(support::exe())
        .args([
            "start",
            "-i",
            "1",
            "-a",
            &addr,
            "--stop-on-stdin-eof",
            "--data-dir",
        ])
        .arg(&data)
        .env("REPLOG_LOG", "verbose")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!output.status.success());
    let text = stderr(&output);
    // tracing would read a bare `verbose` as a target to log everything of.
    assert!(
        text.contains("REPLOG_LOG=\"verbose\" is not a log filter"),
        "{text}"
    );
    assert!(
        text.contains("\"verbose\" is not a level (off, error, warn, info, debug, trace)"),
        "{text}"
    );
    assert!(!data.exists(), "created {}", data.display());
}

/// `replog append ARGS` with `input` on its standard input.
fn replog_with_input(args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(support::exe())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run replog");
    let mut stdin = child.stdin.take().expect("piped");
    let writer = std::thread::spawn({
        let input = input.to_vec();
        move || {
            let _ = stdin.write_all(&input);
        }
    });
    let output = child.wait_with_output().expect("wait");
    writer.join().expect("writer");
    output
}

/// The command of the last entry in node `addr`'s log.
fn last_command(addr: &str) -> Option<String> {
    let mut connection =
        replog_node::client::blocking::Connection::connect(addr, Duration::from_secs(5)).ok()?;
    let state = connection.state(true).ok()?;
    state.entries?.pop()?.command
}

#[test]
fn append_takes_a_2_mib_command_from_a_file_or_stdin_and_refuses_one_over_the_limit() {
    let cluster = TestCluster::start("cli-big", 1);
    cluster.stable_leader(&[0], ELECTION);
    let addr = cluster.addr(0);
    let big: String = (0..2 << 20)
        .map(|k| match k % 64 {
            0 => '\n',
            1 => '"',
            n => char::from(b'a' + (n % 26) as u8),
        })
        .collect();
    let path = cluster.dir().join("command.txt");
    std::fs::write(&path, &big).unwrap();
    let output = replog(&["append", "-t", &addr, "--file", path.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        last_command(&addr).as_deref() == Some(big.as_str()),
        "--file"
    );

    let from_stdin = format!("{big}tail");
    let output = replog_with_input(&["append", "-t", &addr, "-c", "-"], from_stdin.as_bytes());
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(last_command(&addr) == Some(from_stdin), "-c -");

    let limit = replog_node::config::MAX_LINE_BYTES;
    let too_big = "x".repeat(limit);
    let started = std::time::Instant::now();
    let output = replog_with_input(&["append", "-t", &addr, "-c", "-"], too_big.as_bytes());
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(
        text.contains(&format!("the protocol's limit is {limit} bytes")),
        "{text}"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "{text}");
    assert!(last_command(&addr).is_some_and(|last| last.ends_with("tail")));

    let output = replog_with_input(&["append", "-t", &addr, "-c", "-"], b"\xff\xfe");
    assert!(
        stderr(&output).contains("is not UTF-8"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn append_fails_fast_on_a_bad_address_or_when_every_target_refuses() {
    for (target, named) in [
        (
            "notanaddress",
            "\"notanaddress\" is not an address (no port)",
        ),
        ("127.0.0.1", "\"127.0.0.1\" is not an address (no port)"),
    ] {
        let output = replog(&["append", "-t", target, "-c", "x"]);
        assert!(!output.status.success());
        assert!(stderr(&output).contains(named), "{}", stderr(&output));
    }
    let dead = replog_node::local_cluster::free_addrs(2).unwrap();
    let started = std::time::Instant::now();
    // The default --timeout is 10 s; refusals are certain long before that.
    let output = replog(&["append", "-t", &dead.join(","), "-c", "x"]);
    let elapsed = started.elapsed();
    assert!(!output.status.success());
    let text = stderr(&output);
    for addr in &dead {
        assert!(
            text.contains(&format!("{addr}: Connection refused")),
            "{text}"
        );
    }
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}: {text}");
}

#[test]
fn append_query_and_status_take_target_lists_and_default_to_127_0_0_1_8080() {
    let cluster = TestCluster::start("cli-targets", 1);
    cluster.stable_leader(&[0], ELECTION);
    let dead = replog_node::local_cluster::free_addrs(1).unwrap().remove(0);
    let targets = format!("{dead},{}", cluster.addr(0));
    let output = replog(&["append", "-t", &targets, "-c", "listed", "--timeout", "5s"]);
    assert!(output.status.success(), "{}", stderr(&output));
    for command in ["query", "status"] {
        let output = replog(&[command, "-t", &targets]);
        assert!(output.status.success(), "{command}: {}", stderr(&output));
        assert!(stdout(&output).starts_with("node 1: leader"), "{command}");
    }
    // Without -t: start's default address. Whatever runs there, the answer names it.
    let output = replog(&["status"]);
    let text = format!("{}{}", stdout(&output), stderr(&output));
    assert!(text.contains("127.0.0.1:8080"), "{text}");
}

#[test]
fn query_text_escapes_control_characters_and_nul_in_commands() {
    let cluster = TestCluster::start("cli-escape", 1);
    cluster.stable_leader(&[0], ELECTION);
    cluster.append("two\nlines\0nul \u{1b}[31mred\\");
    let output = replog(&["query", "-t", &cluster.addr(0)]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "status, no-op, one command: {text:?}");
    assert!(
        lines[2].ends_with(r"Command:two\nlines\u{0}nul \u{1b}[31mred\\"),
        "{text:?}"
    );
    assert!(!text.contains('\0') && !text.contains('\u{1b}'), "{text:?}");
}

/// Whether process `pid` still runs (a zombie does not count: it has exited).
fn process_runs(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat[stat.rfind(')')? + 1..].split_whitespace().next()?;
            Some(state != "Z")
        })
        .unwrap_or(false)
}

#[test]
fn demo_names_the_leaders_pid_its_hints_outlive_the_leader_and_ctrl_c_leaves_no_process() {
    use std::io::{BufRead, BufReader};
    let mut demo = Command::new(support::exe())
        .args(["demo", "--nodes", "3"])
        .stdin(Stdio::piped()) // Kept open: only the signal may stop it.
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start replog demo");
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("demo output");
        let done = line.contains("Press Ctrl-C");
        seen.push(line);
        if done {
            break;
        }
    }
    let text = seen.join("\n");
    // "  node K  ADDR  pid PID  (log: PATH)"
    let nodes: Vec<(String, u32, String)> = seen
        .iter()
        .filter(|line| line.trim_start().starts_with("node "))
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(words[3], "pid", "{line}");
            let log = words[6].trim_end_matches(')').to_string();
            (words[2].to_string(), words[4].parse().expect("a pid"), log)
        })
        .collect();
    assert_eq!(nodes.len(), 3, "{text}");
    // "  kill -9 PID   # the leader (term T), node K; ..."
    let hint = seen
        .iter()
        .find_map(|line| line.trim_start().strip_prefix("kill -9 "))
        .unwrap_or_else(|| panic!("no kill -9 PID hint in {text}"));
    let leader_pid: u32 = hint
        .split_whitespace()
        .next()
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no pid in the hint {hint}"));
    let term: u64 = hint
        .split_once("(term ")
        .and_then(|(_, rest)| rest.split_once(')'))
        .and_then(|(term, _)| term.parse().ok())
        .unwrap_or_else(|| panic!("no term in the hint {hint}"));
    let (leader_addr, _, leader_log) = nodes
        .iter()
        .find(|(_, pid, _)| *pid == leader_pid)
        .unwrap_or_else(|| panic!("{leader_pid} is no node's pid: {text}"));
    // The hint names the leader of the term it gives: that node's own log says it became
    // leader in that term, and no other node's does. (It may have lost leadership since, on
    // a loaded machine; then it has moved on to a later term.)
    let became = format!("became leader term={term} ");
    for (addr, _, log) in &nodes {
        let log = std::fs::read_to_string(log).expect("a node's log");
        assert_eq!(log.contains(&became), addr == leader_addr, "{addr}: {log}");
    }
    let state = support::status_of(leader_addr).expect("the leader answers");
    assert!(
        state.role == RoleName::Leader && state.term == term || state.term > term,
        "the hint names {leader_addr} as leader of term {term}, it is {:?} in term {}: {}",
        state.role,
        state.term,
        std::fs::read_to_string(leader_log).unwrap_or_default()
    );

    assert!(Command::new("kill")
        .args(["-9", &leader_pid.to_string()])
        .status()
        .unwrap()
        .success());
    // The suggested commands, as printed, work without the leader.
    let exe = support::exe().display().to_string();
    for prefix in [" append -t ", " query -t ", " status -t "] {
        let command = seen
            .iter()
            .find(|line| line.contains(&format!("{exe}{prefix}")))
            .unwrap_or_else(|| panic!("no{prefix}hint in {text}"));
        let output = Command::new("sh").args(["-c", command]).output().unwrap();
        assert!(output.status.success(), "{command}: {}", stderr(&output));
    }

    assert!(Command::new("kill")
        .args(["-INT", &demo.id().to_string()])
        .status()
        .unwrap()
        .success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = demo.wait().unwrap();
    assert!(status.success(), "{status}: {}", rest.join("\n"));
    let kept = rest
        .iter()
        .find_map(|line| line.strip_prefix("Stopped. Data kept in "))
        .unwrap_or_else(|| panic!("no stop message in {rest:?}"));
    for (addr, pid, _) in &nodes {
        assert!(
            !process_runs(*pid),
            "node {addr} (pid {pid}) outlived the demo"
        );
    }
    let _ = std::fs::remove_dir_all(kept);
}

/// The options in `replog SUBCOMMAND -h` that have no help text. Clap writes an option's
/// help after it on its line, or (when helps are long) on the lines below it, indented.
fn options_without_help(subcommand: &str) -> Vec<String> {
    let output = replog(&[subcommand, "-h"]);
    assert!(output.status.success(), "{subcommand} -h");
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    let mut missing = Vec::new();
    for (k, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        if !trimmed.starts_with('-') {
            continue;
        }
        // The option's spelling: `-t, --target <TARGET>`, then two spaces and its help.
        let spec_end = trimmed.find("  ").unwrap_or(trimmed.len());
        let same_line = !trimmed[spec_end..].trim().is_empty();
        let next_line = lines.get(k + 1).is_some_and(|next| {
            let next = next.trim_start();
            !next.is_empty() && !next.starts_with('-')
        });
        if !same_line && !next_line {
            missing.push(trimmed[..spec_end].to_string());
        }
    }
    missing
}

#[test]
fn every_node_and_bench_option_has_help_text() {
    for subcommand in [
        "start", "append", "query", "status", "read", "follow", "demo", "bench",
    ] {
        let missing = options_without_help(subcommand);
        assert!(
            missing.is_empty(),
            "replog {subcommand}: no help for {missing:?}"
        );
    }
}
