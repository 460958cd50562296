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

/// A scenario file in the temp dir, removed when dropped.
struct TempScenario(std::path::PathBuf);

impl TempScenario {
    fn new(name: &str, json: &str) -> TempScenario {
        let path = std::env::temp_dir().join(format!("replog-{name}-{}.json", std::process::id()));
        std::fs::write(&path, json).expect("temp dir is writable");
        TempScenario(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("temp paths are UTF-8")
    }
}

impl Drop for TempScenario {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_fault_after_the_fault_phase_is_refused_naming_it() {
    let late = TempScenario::new(
        "late-fault",
        r#"{"name":"late","nodes":3,"duration_ms":2000,"schedule":[
            {"at_ms":500,"fault":{"kind":"isolate","target":"leader"}},
            {"at_ms":2500,"fault":{"kind":"crash","target":"leader"}}]}"#,
    );
    for command in ["run", "replay"] {
        let output = replog(&["sim", command, "--seed", "1", "--scenario", late.path()]);
        assert_eq!(output.status.code(), Some(2), "{}", stdout(&output));
        let message = stderr(&output);
        assert!(message.contains("at 2500 ms: crash_leader"), "{message}");
        assert!(message.contains("2000 ms fault phase"), "{message}");
    }
    let output = replog(&["sim", "sweep", "--seeds", "0..2", "--scenario", late.path()]);
    assert_eq!(output.status.code(), Some(2), "{}", stdout(&output));
    assert!(stderr(&output).contains("at 2500 ms: crash_leader"));

    // Without a duration of its own, the scenario's schedule is checked against --duration;
    // a fault exactly at the end is already too late (the liveness phase starts there).
    let open_ended = TempScenario::new(
        "open-ended",
        r#"{"name":"open-ended","schedule":[{"at_ms":3000,"fault":{"kind":"heal"}}]}"#,
    );
    let args = ["sim", "run", "--seed", "1", "--nodes", "3"];
    let too_short = [
        &args[..],
        &["--duration", "3s", "--scenario", open_ended.path()],
    ]
    .concat();
    let output = replog(&too_short);
    assert_eq!(output.status.code(), Some(2), "{}", stdout(&output));
    assert!(
        stderr(&output).contains("at 3000 ms: heal"),
        "{}",
        stderr(&output)
    );
    let long_enough = [
        &args[..],
        &["--duration", "4s", "--scenario", open_ended.path()],
    ]
    .concat();
    let output = replog(&long_enough);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).contains("faults injected: heal=1"));
}

#[test]
fn nodes_that_disagree_with_the_scenario_are_refused() {
    // leader-isolated.json fixes "nodes": 5.
    let scenario = "scenarios/leader-isolated.json";
    let output = replog(&[
        "sim",
        "run",
        "--seed",
        "1",
        "--nodes",
        "3",
        "--scenario",
        scenario,
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", stdout(&output));
    let message = stderr(&output);
    assert!(
        message.contains("leader-isolated is for 5 nodes, but --nodes asks for 3"),
        "{message}"
    );
    let output = replog(&[
        "sim",
        "sweep",
        "--seeds",
        "0..2",
        "--nodes",
        "5,3",
        "--scenario",
        scenario,
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", stdout(&output));
    assert!(stderr(&output).contains("--nodes asks for 3"));

    // Saying the same size, or none, runs the scenario's own.
    for nodes in [&["--nodes", "5"][..], &[]] {
        let args = [
            &["sim", "run", "--seed", "1", "--scenario", scenario][..],
            nodes,
        ]
        .concat();
        let output = replog(&args);
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        assert!(stdout(&output).contains("seed 1 · 5 nodes · scenario leader-isolated"));
    }
}

#[test]
fn a_duration_that_disagrees_with_the_scenario_is_refused() {
    // leader-isolated.json fixes "duration_ms": 20000.
    let scenario = "scenarios/leader-isolated.json";
    let run = ["sim", "run", "--seed", "1", "--scenario", scenario];
    let output = replog(&[&run[..], &["--duration", "5s"]].concat());
    assert_eq!(output.status.code(), Some(2), "{}", stdout(&output));
    let message = stderr(&output);
    assert!(
        message.contains("fault phase of 20s, but --duration asks for 5s"),
        "{message}"
    );
    let output = replog(&[&run[..], &["--duration", "20s"]].concat());
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).contains("fault phase 20.000000s"));

    // The sweep's own summary line reports the phase its seeds really ran.
    let output = replog(&["sim", "sweep", "--seeds", "0..1", "--scenario", scenario]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("nodes [5] · duration 20.000000s"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn every_sim_flag_has_help_text() {
    for command in ["run", "replay", "sweep"] {
        let output = replog(&["sim", command, "--help"]);
        assert_eq!(output.status.code(), Some(0));
        let help = stdout(&output);
        let options: Vec<&str> = help
            .lines()
            .map(str::trim)
            .filter(|line| line.starts_with("--") || line.starts_with('-'))
            .collect();
        assert!(options.len() >= 4, "{help}");
        for line in options {
            // "--seed <SEED>  The seed ...": the flag, then two spaces, then its help.
            assert!(
                line.split_once("  ")
                    .is_some_and(|(_, text)| !text.trim().is_empty()),
                "`sim {command}`: no help text for {line:?}\n{help}"
            );
        }
    }
}
