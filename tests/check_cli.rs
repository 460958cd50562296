//! `replog check FILE` as a user runs it, on the examples docs/history.md shows (so the
//! documented format and output cannot go stale).

use std::path::PathBuf;
use std::process::{Command, Output};

fn replog(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_replog"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("replog runs")
}

/// The doc's fenced blocks, in order: (info string, body).
fn doc_blocks() -> Vec<(String, String)> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/history.md"))
        .expect("docs/history.md");
    let mut blocks = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        if let Some(info) = line.strip_prefix("```") {
            let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
            blocks.push((info.to_string(), body.join("\n") + "\n"));
        }
    }
    blocks
}

struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!("replog-{}-{name}", std::process::id()));
        std::fs::write(&path, text).expect("write temp file");
        TempFile(path)
    }
    fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn the_documented_examples_check_as_the_doc_says() {
    let blocks = doc_blocks();
    let examples: Vec<&String> = blocks
        .iter()
        .filter(|(info, _)| info == "jsonl")
        .map(|(_, body)| body)
        .collect();
    let transcripts: Vec<&String> = blocks
        .iter()
        .filter(|(info, body)| info.is_empty() && body.starts_with("$ replog check "))
        .map(|(_, body)| body)
        .collect();
    assert_eq!(examples.len(), 2, "the doc shows a good and a bad history");
    assert_eq!(transcripts.len(), 2);
    for (k, (example, transcript)) in examples.iter().zip(&transcripts).enumerate() {
        let file = TempFile::new(&format!("doc-{k}.jsonl"), example);
        let output = replog(&["check", file.path()]);
        let (command, expected) = transcript.split_once('\n').expect("a command line");
        assert!(command.starts_with("$ replog check "));
        assert_eq!(String::from_utf8_lossy(&output.stdout), *expected);
        assert_eq!(output.status.code(), Some(if k == 0 { 0 } else { 1 }));
    }
}

#[test]
fn a_malformed_line_is_refused_with_its_line_number() {
    let file = TempFile::new(
        "malformed.jsonl",
        "{\"type\":\"invoke\",\"op\":1,\"time_us\":1,\"f\":\"append\",\"value\":\"a\"}\n\n\
         {\"type\":\"complete\",\"op\":1,\"time_us\":2,\"outcome\":\"ok\"}\n",
    );
    let output = replog(&["check", file.path()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("line 3: an ok append needs the \"index\" it was committed at"),
        "{stderr}"
    );
    let output = replog(&["check", "/nonexistent/history.jsonl"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read"));
}
