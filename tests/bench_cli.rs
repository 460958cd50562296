//! Smoke test for `replog bench --local`: it starts a cluster, commits appends and reports
//! them. No timing assertions: only that the run worked and its figures are coherent.

use std::process::Command;

#[test]
fn a_short_local_bench_commits_appends_and_reports_sane_percentiles() {
    let output = Command::new(env!("CARGO_BIN_EXE_replog"))
        .args([
            "bench",
            "--local",
            "--duration",
            "2s",
            "--clients",
            "8",
            "--json",
        ])
        .output()
        .expect("run replog bench");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench failed: {stderr}");
    let stdout = String::from_utf8(output.stdout).expect("utf-8 output");
    let report: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|error| panic!("not one JSON object ({error}): {stdout}"));
    let number = |name: &str| {
        report[name]
            .as_u64()
            .unwrap_or_else(|| panic!("{name} missing in {report}"))
    };
    assert_eq!(number("clients"), 8);
    assert_eq!(number("nodes"), 3);
    assert!(number("committed") > 0, "nothing committed: {report}");
    assert!(report["ops_per_sec"].as_f64().is_some_and(|ops| ops > 0.0));
    let (p50, p90, p99, max) = (
        number("latency_us_p50"),
        number("latency_us_p90"),
        number("latency_us_p99"),
        number("latency_us_max"),
    );
    assert!(
        p50 <= p90 && p90 <= p99 && p99 <= max,
        "percentiles out of order: {report}"
    );
    assert!(number("node_rss_bytes_max") > 0, "no node RSS: {report}");
    assert_eq!(report["node_scheduling"], "batch", "{report}");
}

#[test]
fn bench_without_a_target_points_to_local() {
    let output = Command::new(env!("CARGO_BIN_EXE_replog"))
        .arg("bench")
        .output()
        .expect("run replog bench");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--target") && stderr.contains("--local"),
        "{stderr}"
    );
}

#[test]
fn bench_node_metrics_starts_every_local_node_with_metrics() {
    let dir = replog_node::local_cluster::fresh_temp_dir("bench-metrics").expect("temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_replog"))
        .args(["bench", "--local", "--node-metrics", "--duration", "1s"])
        .args(["--warmup", "0s", "--clients", "4", "--data-dir"])
        .arg(&dir)
        .output()
        .expect("run replog bench");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench failed: {stderr}");
    assert!(stderr.contains("metrics on"), "{stderr}");
    for k in 1..=3 {
        let log = std::fs::read_to_string(dir.join(format!("node-{k}.log"))).expect("node log");
        assert!(
            log.contains("serving metrics at http://127.0.0.1:"),
            "node {k}: {log}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
