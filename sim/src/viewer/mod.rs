//! `replog sim run|replay --html FILE`: one self-contained HTML page for one run.
//!
//! The page (inline CSS and JavaScript, a canvas; no network access) shows a lane per node
//! with its role and term over simulated time, messages as arrows between lanes once zoomed
//! in far enough (a Lamport diagram), client operations as bars coloured by outcome (as in
//! Jepsen's timeline), faults shaded, commits marked, and on a violation a marker, the
//! invariant's explanation and the events around it. The run's events are embedded as JSON
//! arrays of numbers, formatted by the page, to keep large runs small.

pub mod record;

use crate::checker::history::Outcome;
use crate::run::RunReport;
use crate::trace::{MessageKind, TraceRecord, What};
use record::Recording;
use replog_core::Role;
use serde_json::{json, Value};

const TEMPLATE: &str = include_str!("page.html");
const STYLE: &str = include_str!("page.css");
const SCRIPT: &str = include_str!("page.js");

/// The page for `report`'s run, from what `recording` kept of it.
pub fn page(report: &RunReport, recording: &Recording) -> String {
    let data = data(report, recording).to_string();
    // Inside <script>, only "</" can end the element early; JSON allows "<\/" for it.
    let data = data.replace("</", "<\\/");
    let title = html_escape(&format!(
        "replog sim · seed {} · {} nodes",
        report.options.seed,
        report.options.nodes()
    ));
    TEMPLATE
        .replace("{{TITLE}}", &title)
        .replace("{{STYLE}}", STYLE)
        .replace("{{SCRIPT}}", SCRIPT)
        .replace("{{DATA}}", &data)
}

fn data(report: &RunReport, recording: &Recording) -> Value {
    let mut roles = Vec::new();
    let mut events = Vec::new();
    for record in &recording.records {
        let node = i64::from(record.node) - 1;
        match record.what {
            What::Role { role, term, leader } => {
                roles.push(json!([record.time_us, node, role_code(role), term, leader]))
            }
            What::Deliver(_) | What::Tick | What::Persisted { .. } => {}
            _ => events.push(json!([
                record.time_us,
                node,
                event_code(&record.what),
                event_text(record)
            ])),
        }
    }
    let sends: Vec<Value> = recording
        .sends
        .iter()
        .map(|(sent, arrives, m)| {
            let [a, b, c, d] = m.numbers;
            json!([
                sent,
                arrives,
                m.from - 1,
                m.to - 1,
                kind_code(m.kind),
                m.term,
                a,
                b,
                c,
                d
            ])
        })
        .collect();
    let ops: Vec<Value> = recording
        .ops
        .iter()
        .enumerate()
        .map(|(id, op)| {
            let (outcome, index) = match op.outcome {
                // A read is shown like an acknowledged append, at the prefix it returned.
                Outcome::Acknowledged { index, .. } | Outcome::Read { index, .. } => (0, index.0),
                Outcome::Failed => (1, 0),
                Outcome::Unknown => (2, 0),
                Outcome::Pending => (3, 0),
            };
            let client = op.client.map_or(-1, |c| c as i64);
            let complete = op.complete_us.map_or(-1, |t| t as i64);
            let committed = op.committed_at.map_or(0, |i| i.0);
            json!([
                id,
                op.invoke_us,
                complete,
                outcome,
                client,
                index,
                committed
            ])
        })
        .collect();
    let violation = report.failure.as_ref().map(|failure| {
        json!({
            "time_us": failure.time_us,
            "invariant": failure.violation.invariant,
            "detail": failure.violation.detail,
            "nodes": failure.violation.nodes.iter().map(|id| id.0).collect::<Vec<_>>(),
            "recent": failure.recent.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
            "replay": report.options.replay_command(),
        })
    });
    json!({
        // A lane for every simulated node: spare nodes (membership changes) too.
        "nodes": report.options.nodes().max(recording.node_count()),
        "end_us": report.end_us,
        "fault_phase_us": report.options.duration_us(),
        "nominal_tick_us": recording.nominal_tick_us,
        "summary": report.summary(),
        "roles": roles,
        "events": events,
        "sends": sends,
        "commits": recording.commits.iter().map(|&(t, n, i)| json!([t, n, i])).collect::<Vec<_>>(),
        "marks": recording.marks.iter()
            .map(|(t, n, m)| json!([t, n, m.flags, m.tick_us])).collect::<Vec<_>>(),
        "network": recording.network.iter()
            .map(|(t, loss, dup)| json!([t, loss.0, loss.1, dup.0, dup.1])).collect::<Vec<_>>(),
        "ops": ops,
        "violation": violation,
    })
}

/// Indexes into the page's `ROLES`.
fn role_code(role: Role) -> u8 {
    match role {
        Role::Follower => 0,
        Role::PreCandidate => 1,
        Role::Candidate => 2,
        Role::Leader => 3,
    }
}

/// Indexes into the page's `KINDS`.
fn kind_code(kind: MessageKind) -> u8 {
    kind as u8
}

/// Indexes into the page's `EVENT_KINDS`, which pick an event's marker.
fn event_code(what: &What) -> u8 {
    match what {
        What::Crash { torn: true, .. } => 1,
        What::Crash { .. } => 0,
        What::Restart { .. } => 2,
        What::Pause | What::Resume { .. } => 3,
        What::Fault { .. } | What::HealMajority { .. } => 4,
        What::Dropped(..) | What::DeadLetter(_) => 5,
        What::Propose { .. } | What::Reply { .. } | What::ClientTimeout { .. } => 6,
        What::Fetched { .. } | What::TrimProposed { .. } | What::Trimmed { .. } => 7,
        _ => 8,
    }
}

/// A record as the trace prints it, without the time column (the page shows its own).
fn event_text(record: &TraceRecord) -> String {
    let text = record.to_string();
    match text.trim_start().split_once(' ') {
        Some((_, rest)) => rest.to_string(),
        None => text,
    }
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
