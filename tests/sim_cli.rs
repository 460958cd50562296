//! `replog sim run|replay|sweep` as a user runs them: exit codes and what they print.

use std::process::{Command, Output};

fn replog(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_replog"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("replog runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn trace_hash(output: &Output) -> String {
    stdout(output)
        .lines()
        .find(|line| line.starts_with("trace hash: "))
        .expect("every run prints its trace hash")
        .to_string()
}

#[test]
fn run_prints_a_summary_with_the_trace_hash_and_exits_zero() {
    let output = replog(&[
        "sim",
        "run",
        "--seed",
        "3",
        "--nodes",
        "3",
        "--duration",
        "5s",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    let text = stdout(&output);
    for expected in [
        "seed 3 · 3 nodes · swarm",
        "events: ",
        "elections: ",
        "commits: ",
        "faults injected: ",
        "operations: ",
        "liveness: leader after",
        "result: ok",
        "events/s",
        "x real time",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    trace_hash(&output);
}

#[test]
fn the_same_seed_twice_gives_the_same_trace_hash() {
    let args = [
        "sim",
        "run",
        "--seed",
        "11",
        "--nodes",
        "5",
        "--duration",
        "10s",
    ];
    let first = replog(&args);
    let second = replog(&args);
    assert_eq!(trace_hash(&first), trace_hash(&second));
    let other = replog(&[
        "sim",
        "run",
        "--seed",
        "12",
        "--nodes",
        "5",
        "--duration",
        "10s",
    ]);
    assert_ne!(trace_hash(&first), trace_hash(&other));
}

#[test]
fn replay_prints_the_full_trace_then_the_same_summary() {
    let run = replog(&[
        "sim",
        "run",
        "--seed",
        "5",
        "--nodes",
        "3",
        "--duration",
        "2s",
    ]);
    let replay = replog(&[
        "sim",
        "replay",
        "--seed",
        "5",
        "--nodes",
        "3",
        "--duration",
        "2s",
    ]);
    assert_eq!(replay.status.code(), Some(0));
    let text = stdout(&replay);
    assert!(text.starts_with("# replog sim replay --seed 5 --nodes 3 --duration 2s\n"));
    assert!(text.contains("recv AppendEntries"), "{text}");
    assert!(text.contains("LIVENESS PHASE: heal majority"));
    assert_eq!(trace_hash(&run), trace_hash(&replay));
}

#[test]
fn trace_file_receives_the_readable_trace() {
    let path = std::env::temp_dir().join(format!("replog-sim-trace-{}.txt", std::process::id()));
    let path_text = path.to_string_lossy().into_owned();
    let output = replog(&[
        "sim",
        "run",
        "--seed",
        "2",
        "--nodes",
        "3",
        "--duration",
        "1s",
        "--trace",
        &path_text,
    ]);
    assert_eq!(output.status.code(), Some(0));
    let trace = std::fs::read_to_string(&path).expect("trace written");
    std::fs::remove_file(&path).ok();
    assert!(trace.lines().count() > 100);
    assert!(trace.contains("role leader"));
}

#[test]
fn run_with_a_scenario_file() {
    let output = replog(&[
        "sim",
        "run",
        "--seed",
        "2",
        "--scenario",
        "scenarios/leader-isolated.json",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert!(stdout(&output).contains("scenario leader-isolated"));
    assert!(stdout(&output).contains("isolate_leader=2"));
}

#[test]
fn bad_arguments_exit_two_with_a_message() {
    let output = replog(&["sim", "run", "--seed", "1", "--nodes", "2"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("3 to 9 nodes"));
    let output = replog(&[
        "sim",
        "run",
        "--seed",
        "1",
        "--scenario",
        "scenarios/no-such-file.json",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read"));
    let output = replog(&["sim", "sweep", "--seeds", "5"]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn sweep_reports_throughput_and_no_failures() {
    let output = replog(&[
        "sim",
        "sweep",
        "--seeds",
        "0..6",
        "--jobs",
        "2",
        "--nodes",
        "3,5",
        "--duration",
        "3s",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    let text = stdout(&output);
    assert!(text.contains("seeds: 6 · nodes [3, 5]"), "{text}");
    assert!(text.contains("failures: 0"));
    assert!(text.contains("seeds/s") && text.contains("events/s") && text.contains("x real time"));
}

#[test]
fn a_sweep_checks_its_scenario_against_every_cluster_size() {
    // No "nodes" of its own, and a fault on node 5: fine for 5 nodes, not for 3.
    let path = std::env::temp_dir().join(format!("replog-node-five-{}.json", std::process::id()));
    std::fs::write(
        &path,
        r#"{"name":"node-five","duration_ms":2000,"schedule":[
            {"at_ms":500,"fault":{"kind":"crash","target":{"node":5}}}]}"#,
    )
    .unwrap();
    let output = replog(&[
        "sim",
        "sweep",
        "--seeds",
        "0..2",
        "--nodes",
        "5,3",
        "--scenario",
        path.to_str().unwrap(),
    ]);
    let _ = std::fs::remove_file(&path);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("at 500 ms"), "{stderr}");
}
