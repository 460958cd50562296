//! `replog sim run --html FILE`: the page is self-contained, and renders in headless
//! Chromium (Debian's `chromium`) with its lanes drawn and no script error. CI installs
//! Chromium and sets REPLOG_REQUIRE_CHROMIUM=1, so there the browser checks cannot be
//! skipped; elsewhere they are skipped, with a note, when no `chromium` is installed.

use replog_sim::report::Violation;
use replog_sim::{run, run_recorded, Failure, RunOptions};
use std::path::{Path, PathBuf};
use std::process::Command;

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("replog-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&path).expect("temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn chromium() -> Option<&'static str> {
    let found = Command::new("chromium").arg("--version").output().is_ok();
    if !found && std::env::var_os("REPLOG_REQUIRE_CHROMIUM").is_some() {
        panic!("REPLOG_REQUIRE_CHROMIUM is set but no chromium is installed");
    }
    if !found {
        eprintln!("note: no chromium installed; skipping the browser checks");
    }
    found.then_some("chromium")
}

/// The DOM after the page's scripts ran, as headless Chromium serializes it.
fn rendered_dom(browser: &str, page: &Path, fragment: &str, profile: &Path) -> String {
    let output = Command::new(browser)
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}{fragment}", page.display()))
        .output()
        .expect("chromium runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

const SCRIPT_ERROR: &str = "<div id=\"script-error\"";

#[test]
fn run_html_writes_one_self_contained_page_that_renders_a_lane_per_node() {
    let dir = TempDir::new("viewer");
    let page = dir.0.join("run.html");
    let output = Command::new(env!("CARGO_BIN_EXE_replog"))
        .args([
            "sim",
            "run",
            "--seed",
            "3",
            "--nodes",
            "3",
            "--duration",
            "5s",
            "--html",
        ])
        .arg(&page)
        .output()
        .expect("replog runs");
    assert_eq!(output.status.code(), Some(0));
    let html = std::fs::read_to_string(&page).expect("the page was written");
    // Nothing is fetched from anywhere: no external scripts, styles or images.
    for external in ["http://", "https://", " src=", "<link", "@import"] {
        assert!(!html.contains(external), "the page refers to {external:?}");
    }
    assert!(html.contains("<script id=\"run-data\" type=\"application/json\">{"));
    let Some(browser) = chromium() else { return };
    let dom = rendered_dom(browser, &page, "", &dir.0.join("profile"));
    assert!(
        !dom.contains(SCRIPT_ERROR),
        "the page's script failed:\n{dom}"
    );
    // A lane per simulated node: the cluster's three, and the spares the seed drew for
    // membership changes, as the page's data declares them.
    let start = html
        .find("<script id=\"run-data\" type=\"application/json\">")
        .unwrap();
    let data = &html[start..];
    let data = &data[data.find('>').unwrap() + 1..data.find("</script>").unwrap()];
    let data: serde_json::Value = serde_json::from_str(data).expect("the run data is JSON");
    let lanes = data["nodes"].as_u64().expect("the data names its nodes");
    assert!((3..=5).contains(&lanes), "{lanes} nodes in a 3-node run");
    assert!(
        dom.contains(&format!("data-lanes-drawn=\"{lanes}\"")),
        "no lanes drawn:\n{dom}"
    );
    for node in 1..=3 {
        assert!(
            dom.contains(&format!("data-node=\"{node}\"")),
            "no lane label n{node}"
        );
    }
    // A zoomed-in view, as a picture to look at; it stays in the temp dir.
    let shot = dir.0.join("run.png");
    let status = Command::new(browser)
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--virtual-time-budget=5000",
        ])
        .args(["--window-size=1400,600", "--hide-scrollbars"])
        .arg(format!(
            "--user-data-dir={}",
            dir.0.join("profile").display()
        ))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}#1000000-1300000", page.display()))
        .output()
        .expect("chromium runs");
    assert!(status.status.success());
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(size > 10_000, "a {size}-byte screenshot shows nothing");
}

#[test]
fn a_violation_gets_a_marker_its_explanation_and_a_jump_to_it() {
    let options = RunOptions::swarm(4, 3, 2_000_000);
    let (mut report, recording) = run_recorded(&options, None);
    // Recording for the page changes nothing in the run.
    assert_eq!(report.trace_hash, run(&options, None).trace_hash);
    // Fabricate a failure at a real moment of a real run, with its real events.
    report.failure = Some(Failure {
        violation: Violation::new("Election Safety", &[], "two leaders in t3"),
        time_us: 1_234_567,
        recent: recording.records[..20].to_vec(),
    });
    let html = replog_sim::viewer::page(&report, &recording);
    assert!(html.contains("jump to the violation"));
    let dir = TempDir::new("viewer-violation");
    let page = dir.0.join("violation.html");
    std::fs::write(&page, &html).expect("write page");
    let Some(browser) = chromium() else { return };
    let dom = rendered_dom(browser, &page, "#violation", &dir.0.join("profile"));
    assert!(
        !dom.contains(SCRIPT_ERROR),
        "the page's script failed:\n{dom}"
    );
    assert!(
        dom.contains("<h2>VIOLATION: Election Safety at 1.234567s</h2>"),
        "{dom}"
    );
    assert!(dom.contains("two leaders in t3"));
    assert!(dom.contains("replay: replog sim replay --seed 4"));
    // The jump opened the window just before the violation.
    assert!(dom.contains("1.184567s – 1.244567s"), "{dom}");

    // The error marker the checks above rely on does appear when the script breaks.
    let broken = dir.0.join("broken.html");
    std::fs::write(&broken, html.replace("legend();", "no_such_function();")).expect("write");
    let dom = rendered_dom(browser, &broken, "", &dir.0.join("profile"));
    assert!(dom.contains(SCRIPT_ERROR), "a broken script went unnoticed");
}
