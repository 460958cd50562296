//! `replog sim sweep` telling what it did: the progress line, stopping early, coverage.

use std::process::{Command, Output};

fn replog(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_replog"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("replog runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const SMALL: [&str; 8] = [
    "sim",
    "sweep",
    "--nodes",
    "3",
    "--duration",
    "2s",
    "--jobs",
    "2",
];

#[test]
fn a_sweep_prints_coverage_with_what_never_happened_and_no_progress_off_a_terminal() {
    let output = replog(&[&SMALL[..], &["--seeds", "0..4"]].concat());
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("coverage:\n"), "{stdout}");
    for line in [
        "  message  AppendEntries ",
        "  role     candidate -> leader ",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in\n{stdout}");
    }
    // A 2 s swarm run injects far too few faults to reach every kind.
    let never = stdout
        .lines()
        .find(|line| line.starts_with("never happened: "))
        .expect("the gaps are listed");
    assert!(never.contains("fault "), "{never}");
    assert!(stdout
        .lines()
        .last()
        .unwrap_or("")
        .starts_with("sweep hash: "));
    assert_eq!(
        text(&output.stderr),
        "",
        "stderr is not a terminal: no progress"
    );
}

#[test]
fn the_progress_flag_draws_seeds_done_rate_failures_and_time_left_on_stderr() {
    let output = replog(&[&SMALL[..], &["--seeds", "0..3", "--progress"]].concat());
    assert_eq!(output.status.code(), Some(0));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("3/3 seeds · "), "{stderr}");
    assert!(stderr.contains(" seeds/s · 0 failed · "), "{stderr}");
    assert!(!text(&output.stdout).contains("seeds/s · 0 failed"));
}

#[test]
fn an_open_seed_range_runs_until_its_time_budget_and_says_where_it_stopped() {
    let output = replog(&[&SMALL[..], &["--seeds", "7..", "--time-budget", "1ms"]].concat());
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let seeds: u64 = stdout
        .lines()
        .find_map(|line| line.strip_prefix("seeds: "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|count| count.parse().ok())
        .expect("a seeds line");
    assert!(seeds >= 1, "{stdout}");
    // The seeds run are a prefix of the range, and the line says which.
    let stop = format!(
        "stopped after seeds 7..{}: time budget of 0s used up",
        7 + seeds
    );
    assert!(
        stdout.lines().any(|line| line == stop),
        "no {stop:?} in\n{stdout}"
    );
}

#[test]
fn an_open_seed_range_without_a_way_to_stop_is_refused() {
    let output = replog(&[&SMALL[..], &["--seeds", "0.."]].concat());
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("has no end; give --until-failure or --time-budget"),
        "{}",
        text(&output.stderr)
    );
}
