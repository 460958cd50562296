//! Every client operation, recorded as docs/history.md's JSONL (invoke before sending,
//! complete once the outcome is known, times on one clock), for `replog check`.

use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::net::in_ns;
use replog_node::client::blocking::{self, AppendError};
use replog_node::client::{Consistency, Request, Response};
use std::num::NonZeroU64;

#[derive(Default)]
pub struct Recorder {
    start: Option<Instant>,
    next_op: AtomicU64,
    lines: Mutex<Vec<String>>,
}

/// The outcome of one client's appends, for the liveness check.
#[derive(Default)]
pub struct Tally {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    pub unknown: AtomicU64,
    pub reads: AtomicU64,
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            start: Some(Instant::now()),
            ..Recorder::default()
        }
    }

    fn now_us(&self) -> u64 {
        self.start.expect("started").elapsed().as_micros() as u64
    }

    fn push(&self, line: serde_json::Value) {
        self.lines.lock().expect("recorder").push(line.to_string());
    }

    pub fn invoke(&self, client: usize, f: &str, value: Option<&str>) -> u64 {
        let op = self.next_op.fetch_add(1, Ordering::Relaxed) + 1;
        let mut line = json!({"type": "invoke", "op": op, "client": client, "f": f});
        if let Some(value) = value {
            line["value"] = json!(value);
        }
        // The time is taken last: the invocation is no later than the sending.
        line["time_us"] = json!(self.now_us());
        self.push(line);
        op
    }

    pub fn complete(&self, op: u64, outcome: &str, extra: serde_json::Value) {
        let mut line = json!({"type": "complete", "op": op, "time_us": self.now_us(),
            "outcome": outcome});
        if let serde_json::Value::Object(fields) = extra {
            for (key, value) in fields {
                line[key] = value;
            }
        }
        self.push(line);
    }

    pub fn log(&self, node: usize, entries: &[Option<String>]) {
        self.push(json!({"type": "log", "node": node, "entries": entries}));
    }

    pub fn text(&self) -> String {
        let mut text = self.lines.lock().expect("recorder").join("\n");
        text.push('\n');
        text
    }
}

/// One client, in namespace `ns`, appending (at most once each, with its own client id)
/// through `targets` (its own node first) and reading now and then, until `stop`.
pub fn client(
    id: usize,
    ns: &str,
    targets: Vec<String>,
    recorder: Arc<Recorder>,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    in_ns(ns, move || {
        let client_id = blocking::random_client_id().expect("a client id");
        let mut last_acked = 0;
        let mut seq = 0;
        while !stop.load(Ordering::Relaxed) {
            seq += 1;
            if seq % 8 == 0 {
                read(id, &targets[0], last_acked, &recorder, &tally);
                continue;
            }
            let value = format!("c{id}-{seq}");
            let op = recorder.invoke(id, "append", Some(&value));
            let seq = NonZeroU64::new(seq).expect("from 1");
            let outcome =
                blocking::append_once(&targets, &value, &client_id, seq, Duration::from_secs(1));
            match outcome {
                Ok(appended) => {
                    last_acked = appended.index;
                    tally.ok.fetch_add(1, Ordering::Relaxed);
                    recorder.complete(op, "ok", json!({"index": appended.index}));
                }
                // Never accepted, or refused by the node itself: certainly not appended.
                Err(AppendError::NoLeader { .. } | AppendError::Rejected { .. }) => {
                    tally.failed.fetch_add(1, Ordering::Relaxed);
                    recorder.complete(op, "failed", json!({}));
                }
                Err(AppendError::Unknown { .. }) => {
                    tally.unknown.fetch_add(1, Ordering::Relaxed);
                    recorder.complete(op, "unknown", json!({}));
                }
            }
        }
    })
}

/// A linearizable read at `target` from a little below what this client last saw
/// acknowledged; recorded as ok only when its page reaches the commit index it read at
/// (a page cut short by the size limit would look stale).
fn read(id: usize, target: &str, last_acked: u64, recorder: &Recorder, tally: &Tally) {
    let from = last_acked.saturating_sub(20).max(1);
    let op = recorder.invoke(id, "read", None);
    let answer = blocking::Connection::connect(target, Duration::from_millis(500)).and_then(
        |mut connection| {
            connection.set_read_timeout(Some(Duration::from_secs(1)))?;
            connection.call(&Request::Read {
                from,
                limit: 100_000,
                consistency: Consistency::Linearizable,
            })
        },
    );
    match answer {
        Ok(Response::Read(page)) if page.next > page.commit_index => {
            tally.reads.fetch_add(1, Ordering::Relaxed);
            let entries: Vec<Option<String>> =
                page.entries.into_iter().map(|e| e.command).collect();
            recorder.complete(op, "ok", json!({"from": from, "entries": entries}));
        }
        // A read changes nothing: any other answer just completes it without a result.
        _ => recorder.complete(op, "unknown", json!({})),
    }
}
