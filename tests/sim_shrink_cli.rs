//! `replog sim shrink`, and `sim run` on the scenarios it writes, as a user runs them.
//!
//! A release build of replog has no planted bugs and (as far as the simulator can tell) no
//! real ones, so no seed fails here; shrinking itself is tested on planted bugs in
//! sim/tests/planted_bugs.rs.

use std::path::PathBuf;
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

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A path in the temp dir, removed when dropped.
struct TempPath(PathBuf);

impl TempPath {
    fn new(name: &str) -> TempPath {
        let file = format!("replog-shrink-{name}-{}.json", std::process::id());
        TempPath(std::env::temp_dir().join(file))
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("temp paths are UTF-8")
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn shrinking_a_passing_run_is_an_error_that_names_its_replay_and_writes_nothing() {
    let out = TempPath::new("passing");
    let args = [
        "sim",
        "shrink",
        "--seed",
        "3",
        "--nodes",
        "3",
        "--duration",
        "2s",
    ];
    let output = replog(&[&args[..], &["--out", out.path()]].concat());
    assert_eq!(output.status.code(), Some(2), "{}", stdout(&output));
    let message = stderr(&output);
    assert!(
        message.contains(
            "seed 3 passes (replog sim replay --seed 3 --nodes 3 --duration 2s): nothing to shrink"
        ),
        "{message}"
    );
    assert!(!out.0.exists(), "no scenario written for a passing run");
}

#[test]
fn a_scenario_with_its_own_seed_runs_without_seed_and_the_same_as_with_it() {
    let scenario = TempPath::new("seeded");
    std::fs::write(
        &scenario.0,
        r#"{"name":"seeded","seed":7,"nodes":3,"duration_ms":2000,"schedule":[
            {"at_us":500123,"after_events":1,"fault":{"kind":"crash","target":{"node":2},
             "restart_after_us":1500}}],
            "operations":[{"at_us":1000,"client":0,"node":1}],"heal_majority":[1,3]}"#,
    )
    .expect("temp dir is writable");
    let own = replog(&["sim", "run", "--scenario", scenario.path()]);
    assert_eq!(
        own.status.code(),
        Some(0),
        "{}{}",
        stdout(&own),
        stderr(&own)
    );
    assert!(stdout(&own).starts_with("seed 7 · 3 nodes · scenario seeded"));
    let given = replog(&["sim", "run", "--seed", "7", "--scenario", scenario.path()]);
    let hash = |output: &Output| {
        let text = stdout(output);
        text.lines()
            .find(|line| line.starts_with("trace hash: "))
            .map(str::to_string)
    };
    assert_eq!(hash(&own), hash(&given));
    assert!(hash(&own).is_some());
}

#[test]
fn a_scenario_without_a_seed_still_needs_seed() {
    let scenario = TempPath::new("unseeded");
    std::fs::write(
        &scenario.0,
        r#"{"name":"unseeded","nodes":3,"schedule":[]}"#,
    )
    .expect("temp dir is writable");
    let output = replog(&["sim", "run", "--scenario", scenario.path()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("--seed is required: the scenario names no seed of its own"),
        "{}",
        stderr(&output)
    );
}
