//! Histories recorded elsewhere (a real cluster, a Jepsen-style test), checked with the
//! simulator's own linearizability checker: `replog check FILE`.
//!
//! The file is JSONL, one client event or final log per line (format: docs/history.md).
//! Each line becomes a typed, checked value here, the one gateway from bytes; the appends
//! are then fed to the same [`History`] the simulator fills as it runs, so both are held to
//! the same rules. Reads, which the simulator's clients do not issue yet, are checked here
//! against the committed log the final logs agree on.

use super::history::{History, OpId, Outcome};
use crate::report::Violation;
use replog_core::{Index, Term};
use serde::Deserialize;
use std::collections::BTreeMap;

/// One line of a history file.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum Line {
    Invoke {
        op: u64,
        time_us: u64,
        /// Who invoked it: for people reading the file; the checks need no client identity
        /// (an operation's own invoke and complete times say all real-time order needs).
        #[serde(default)]
        #[allow(dead_code)]
        client: Option<serde_json::Value>,
        f: Function,
        #[serde(default)]
        value: Option<String>,
    },
    Complete {
        op: u64,
        time_us: u64,
        outcome: Reported,
        /// An ok append: where its value was committed.
        #[serde(default)]
        index: Option<u64>,
        /// An ok read: the index of its first entry (default 1).
        #[serde(default)]
        from: Option<u64>,
        /// An ok read: the committed entries it returned, from `from` on (`null` for an
        /// entry no client appended: a leader's no-op, a retention point).
        #[serde(default)]
        entries: Option<Vec<Entry>>,
    },
    /// A node's committed log at the end, from index `from` (default 1; later when the
    /// node trimmed its log).
    Log {
        node: u64,
        #[serde(default)]
        from: Option<u64>,
        entries: Vec<Entry>,
    },
}

/// A committed entry: an appended value, or `None` (JSON `null`) for an entry no client
/// appended (a leader's no-op, a retention point), which still takes its index.
type Entry = Option<String>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Function {
    Append,
    Read,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Reported {
    Ok,
    Failed,
    Unknown,
}

/// A client operation as the file tells it, checked for shape.
#[derive(Clone, Debug)]
struct Operation {
    id: u64,
    line: usize,
    invoke_us: u64,
    kind: Kind,
    completion: Option<(u64, Completion)>,
    /// The line of its `complete`, 0 while it has none.
    complete_line: usize,
}

#[derive(Clone, Debug)]
enum Kind {
    Append(String),
    Read,
}

#[derive(Clone, Debug)]
enum Completion {
    Appended(Index),
    Read { from: u64, entries: Vec<Entry> },
    Failed,
    Unknown,
}

/// A parsed history file: operations in invocation order, and the final logs by node.
#[derive(Clone, Debug, Default)]
pub struct Recorded {
    ops: Vec<Operation>,
    logs: BTreeMap<u64, (usize, u64, Vec<Entry>)>,
}

/// What a check found, for the summary line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    pub appends: usize,
    pub acknowledged: usize,
    pub failed: usize,
    pub unknown: usize,
    pub reads: usize,
    pub logs: usize,
    pub committed: usize,
}

impl Recorded {
    /// Parses a whole file; the error names the (1-based) line and what is wrong with it.
    pub fn parse(text: &str) -> Result<Recorded, String> {
        let mut recorded = Recorded::default();
        let mut by_id: BTreeMap<u64, usize> = BTreeMap::new();
        let mut values: BTreeMap<String, (u64, usize)> = BTreeMap::new();
        for (k, raw) in text.lines().enumerate() {
            let line = k + 1;
            if raw.trim().is_empty() {
                continue;
            }
            let parsed: Line =
                serde_json::from_str(raw).map_err(|error| format!("line {line}: {error}"))?;
            recorded
                .take(parsed, line, &mut by_id, &mut values)
                .map_err(|error| format!("line {line}: {error}"))?;
        }
        if recorded.logs.is_empty() {
            return Err("the history has no final log (a {\"type\":\"log\",..} line)".into());
        }
        recorded.ops.sort_by_key(|op| (op.invoke_us, op.line));
        Ok(recorded)
    }

    fn take(
        &mut self,
        parsed: Line,
        line: usize,
        by_id: &mut BTreeMap<u64, usize>,
        values: &mut BTreeMap<String, (u64, usize)>,
    ) -> Result<(), String> {
        match parsed {
            Line::Invoke {
                op,
                time_us,
                f,
                value,
                client: _,
            } => {
                if let Some(&earlier) = by_id.get(&op) {
                    let first = self.ops[earlier].line;
                    return Err(format!("op {op} was already invoked on line {first}"));
                }
                let kind = match (f, value) {
                    (Function::Append, Some(value)) => {
                        if let Some((other, first)) = values.insert(value.clone(), (op, line)) {
                            return Err(format!(
                                "value {value:?} was already appended by op {other} (line \
                                 {first}); appended values must be unique"
                            ));
                        }
                        Kind::Append(value)
                    }
                    (Function::Append, None) => return Err("an append needs its \"value\"".into()),
                    (Function::Read, None) => Kind::Read,
                    (Function::Read, Some(_)) => return Err("a read takes no \"value\"".into()),
                };
                by_id.insert(op, self.ops.len());
                self.ops.push(Operation {
                    id: op,
                    line,
                    invoke_us: time_us,
                    kind,
                    completion: None,
                    complete_line: 0,
                });
            }
            Line::Complete {
                op,
                time_us,
                outcome,
                index,
                from,
                entries,
            } => {
                let slot = *by_id
                    .get(&op)
                    .ok_or_else(|| format!("op {op} completes but was never invoked before"))?;
                let operation = &mut self.ops[slot];
                if operation.completion.is_some() {
                    return Err(format!("op {op} completes twice"));
                }
                if time_us < operation.invoke_us {
                    return Err(format!(
                        "op {op} completes at {time_us} µs, before it was invoked at {} µs",
                        operation.invoke_us
                    ));
                }
                let completion = completion(&operation.kind, outcome, index, from, entries)?;
                operation.completion = Some((time_us, completion));
                operation.complete_line = line;
            }
            Line::Log {
                node,
                from,
                entries,
            } => {
                let from = from.unwrap_or(1);
                if from == 0 {
                    return Err("a log's \"from\" is an index, 1 or more".into());
                }
                if let Some((first, _, _)) = self.logs.insert(node, (line, from, entries)) {
                    return Err(format!(
                        "node {node}'s log was already given on line {first}"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Runs the checks: the final logs agree (State Machine Safety), then every append
    /// through the simulator's [`History`], then every read.
    pub fn check(&self) -> Result<Checked, Violation> {
        let committed = self.committed_log()?;
        let appends = self.check_appends(&committed)?;
        let reads = self.check_reads(&committed)?;
        Ok(Checked {
            reads,
            logs: self.logs.len(),
            committed: committed.len(),
            ..appends
        })
    }

    /// The longest final log, once every other is checked to be a piece of it.
    fn committed_log(&self) -> Result<Vec<Entry>, Violation> {
        let (&longest_node, (_, longest_from, longest)) = self
            .logs
            .iter()
            .max_by_key(|(_, (_, from, entries))| from + entries.len() as u64)
            .expect("parse requires a log");
        if *longest_from != 1 {
            // Only the part every node still holds can be compared; indexes start there.
            return Err(Violation::new(
                "State Machine Safety",
                &[],
                format!(
                    "node {longest_node}'s log starts at index {longest_from}: give at least \
                     one node's log from index 1"
                ),
            ));
        }
        for (&node, (_, from, entries)) in &self.logs {
            for (k, entry) in entries.iter().enumerate() {
                let index = *from as usize + k;
                if longest.get(index - 1) != Some(entry) {
                    return Err(Violation::new(
                        "State Machine Safety",
                        &[],
                        format!(
                            "node {node} committed {} at index {index}, node {longest_node} {}",
                            shown(Some(entry)),
                            shown(longest.get(index - 1))
                        ),
                    ));
                }
            }
        }
        Ok(longest.clone())
    }

    /// Appends through [`History`]: invocations, then completions in time order, each
    /// acknowledged value marked committed (where the log holds it) just before its
    /// acknowledgement, then the rest of the log. `History` checks every commitment against
    /// the acknowledgements before its invocation, so the order below loses no check.
    fn check_appends(&self, committed: &[Entry]) -> Result<Checked, Violation> {
        let appends: Vec<&Operation> = self
            .ops
            .iter()
            .filter(|op| matches!(op.kind, Kind::Append(_)))
            .collect();
        let mut history = History::default();
        let mut by_value: BTreeMap<&str, OpId> = BTreeMap::new();
        for op in &appends {
            let Kind::Append(value) = &op.kind else {
                unreachable!("filtered")
            };
            by_value.insert(value, history.invoke(Some(0), op.invoke_us));
        }
        // Where each value first sits; a second place is caught below, as committed twice.
        let mut position: BTreeMap<&str, Index> = BTreeMap::new();
        for (k, value) in committed.iter().enumerate() {
            if let Some(value) = value {
                position
                    .entry(value.as_str())
                    .or_insert(Index(k as u64 + 1));
            }
        }
        let named = |violation: Violation| self.named(violation, &appends);
        let mut completions: Vec<(u64, usize, OpId, &Completion)> = appends
            .iter()
            .enumerate()
            .filter_map(|(k, op)| op.completion.as_ref().map(|(t, c)| (*t, op.line, k, c)))
            .collect();
        completions.sort_by_key(|&(time_us, line, _, _)| (time_us, line));
        for (time_us, _, op, completion) in completions {
            let outcome = match completion {
                Completion::Appended(index) => {
                    let command = History::command(op);
                    if let Some(&at) = position.get(append_value(appends[op])) {
                        history.committed(&command, at).map_err(named)?;
                    }
                    Outcome::Acknowledged {
                        index: *index,
                        term: Term(0),
                    }
                }
                Completion::Failed => Outcome::Failed,
                _ => Outcome::Unknown,
            };
            history.complete(op, outcome, time_us).map_err(named)?;
        }
        for (k, value) in committed.iter().enumerate() {
            let index = Index(k as u64 + 1);
            let Some(value) = value else {
                continue;
            };
            let Some(&op) = by_value.get(value.as_str()) else {
                return Err(linearizability(format!(
                    "the committed log holds {value:?} at index {}, which no append invoked \
                     (phantom)",
                    index.0
                )));
            };
            // Marked already when acknowledged, at its first place; any other place is a
            // second commitment, which `History` reports.
            if history.ops[op].committed_at != Some(index) {
                history
                    .committed(&History::command(op), index)
                    .map_err(named)?;
            }
        }
        let tally = history.tally();
        Ok(Checked {
            appends: appends.len(),
            acknowledged: tally.acknowledged as usize,
            failed: tally.failed as usize,
            unknown: tally.unknown as usize,
            reads: 0,
            logs: 0,
            committed: 0,
        })
    }

    /// A read from `from` returns every entry committed from there when it ran, so it saw
    /// the log up to `last`. A read that returned entries `from..=last` must have seen the committed log as it
    /// was at some instant between its invocation and completion: its entries are the
    /// log's, it holds every append acknowledged before it was invoked (and everything an
    /// earlier read returned), and nothing invoked after it completed.
    fn check_reads(&self, committed: &[Entry]) -> Result<usize, Violation> {
        let acked_before = |time_us: u64| {
            self.ops
                .iter()
                .filter_map(|op| match &op.completion {
                    Some((done_us, Completion::Appended(index))) if *done_us < time_us => {
                        Some(index.0)
                    }
                    _ => None,
                })
                .max()
                .unwrap_or(0)
        };
        let invoked_at: BTreeMap<&str, (u64, u64)> = self
            .ops
            .iter()
            .filter_map(|op| match &op.kind {
                Kind::Append(value) => Some((value.as_str(), (op.invoke_us, op.id))),
                Kind::Read => None,
            })
            .collect();
        let mut reads = 0;
        // (completion time, last index seen) of every read so far, for monotonic reads.
        let mut seen: Vec<(u64, u64)> = Vec::new();
        for op in &self.ops {
            let Some((done_us, Completion::Read { from, entries })) = &op.completion else {
                continue;
            };
            reads += 1;
            // An empty read saw the log end just before `from`.
            let last = from + entries.len() as u64 - 1;
            let fail = |detail: String| {
                Err(linearizability(format!(
                    "read op {} (lines {} and {}): {detail}",
                    op.id, op.line, op.complete_line
                )))
            };
            for (k, entry) in entries.iter().enumerate() {
                let index = from + k as u64;
                if committed.get(index as usize - 1) != Some(entry) {
                    return fail(format!(
                        "returned {} at index {index}, but the committed log holds {}",
                        shown(Some(entry)),
                        shown(committed.get(index as usize - 1))
                    ));
                }
                let appended = entry.as_deref().and_then(|entry| invoked_at.get(entry));
                if let Some(&(invoke_us, append)) = appended {
                    if invoke_us > *done_us {
                        return fail(format!(
                            "returned {}, appended by op {append}, invoked only after the \
                             read completed",
                            shown(Some(entry))
                        ));
                    }
                }
            }
            let acked = acked_before(op.invoke_us);
            if last < acked {
                return fail(format!(
                    "saw the log only up to index {last}, but an append at index {acked} was \
                     acknowledged before the read was invoked (stale read)"
                ));
            }
            let earlier = seen
                .iter()
                .filter(|&&(t, _)| t < op.invoke_us)
                .map(|&(_, l)| l)
                .max();
            if let Some(earlier) = earlier.filter(|&l| l > last) {
                return fail(format!(
                    "saw the log only up to index {last}, but a read that completed before \
                     it was invoked saw up to {earlier} (reads went back in time)"
                ));
            }
            seen.push((*done_us, last));
        }
        Ok(reads)
    }

    /// Rewrites the checker's `opN` (its own numbering) into the file's op ids and lines.
    fn named(&self, mut violation: Violation, appends: &[&Operation]) -> Violation {
        let mut out = String::new();
        let mut rest = violation.detail.as_str();
        while let Some(at) = rest.find("op") {
            out.push_str(&rest[..at]);
            let digits: String = rest[at + 2..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            match digits.parse::<usize>().ok().and_then(|k| appends.get(k)) {
                Some(op) => out.push_str(&format!(
                    "op {} (line {}, value {:?})",
                    op.id,
                    op.line,
                    append_value(op)
                )),
                None => out.push_str(&rest[at..at + 2 + digits.len()]),
            }
            rest = &rest[at + 2 + digits.len()..];
        }
        out.push_str(rest);
        violation.detail = out;
        violation
    }
}

fn append_value(op: &Operation) -> &str {
    match &op.kind {
        Kind::Append(value) => value,
        Kind::Read => "",
    }
}

fn completion(
    kind: &Kind,
    outcome: Reported,
    index: Option<u64>,
    from: Option<u64>,
    entries: Option<Vec<Entry>>,
) -> Result<Completion, String> {
    Ok(match (kind, outcome) {
        (Kind::Append(_), Reported::Ok) => {
            if from.is_some() || entries.is_some() {
                return Err("an append's completion takes no \"from\" or \"entries\"".into());
            }
            match index {
                Some(index) if index > 0 => Completion::Appended(Index(index)),
                _ => return Err("an ok append needs the \"index\" it was committed at".into()),
            }
        }
        (Kind::Read, Reported::Ok) => {
            if index.is_some() {
                return Err("a read's completion takes no \"index\"".into());
            }
            let from = from.unwrap_or(1);
            if from == 0 {
                return Err("a read's \"from\" is an index, 1 or more".into());
            }
            let entries = entries.ok_or("an ok read needs the \"entries\" it returned")?;
            Completion::Read { from, entries }
        }
        (_, Reported::Failed) => Completion::Failed,
        (_, Reported::Unknown) => Completion::Unknown,
    })
}

/// An entry for a message: its value quoted, `null` for an entry no client appended,
/// `nothing` past the end of a log.
fn shown(entry: Option<&Entry>) -> String {
    match entry {
        Some(Some(value)) => format!("{value:?}"),
        Some(None) => "null".into(),
        None => "nothing".into(),
    }
}

fn linearizability(detail: String) -> Violation {
    Violation::new("Linearizability", &[], detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invoke(op: u64, time_us: u64, value: &str) -> String {
        format!(
            r#"{{"type":"invoke","op":{op},"time_us":{time_us},"f":"append","value":"{value}"}}"#
        )
    }

    fn read(op: u64, time_us: u64) -> String {
        format!(r#"{{"type":"invoke","op":{op},"time_us":{time_us},"f":"read"}}"#)
    }

    fn ok(op: u64, time_us: u64, index: u64) -> String {
        format!(
            r#"{{"type":"complete","op":{op},"time_us":{time_us},"outcome":"ok","index":{index}}}"#
        )
    }

    fn returned(op: u64, time_us: u64, entries: &[&str]) -> String {
        let entries = serde_json::to_string(entries).expect("strings");
        format!(
            r#"{{"type":"complete","op":{op},"time_us":{time_us},"outcome":"ok","entries":{entries}}}"#
        )
    }

    fn ended(op: u64, time_us: u64, outcome: &str) -> String {
        format!(r#"{{"type":"complete","op":{op},"time_us":{time_us},"outcome":"{outcome}"}}"#)
    }

    fn log(node: u64, entries: &[&str]) -> String {
        let entries = serde_json::to_string(entries).expect("strings");
        format!(r#"{{"type":"log","node":{node},"entries":{entries}}}"#)
    }

    fn check(lines: &[String]) -> Result<Checked, Violation> {
        Recorded::parse(&lines.join("\n"))
            .expect("a well-formed history")
            .check()
    }

    fn detail(lines: &[String]) -> String {
        check(lines).expect_err("a violation").detail
    }

    #[test]
    fn concurrent_appends_may_commit_in_either_order() {
        let checked = check(&[
            invoke(1, 0, "a"),
            invoke(2, 5, "b"),
            ok(2, 10, 1),
            ok(1, 11, 2),
            invoke(3, 20, "c"),
            log(1, &["b", "a", "c"]),
            log(2, &["b"]),
        ])
        .expect("linearizable");
        assert_eq!((checked.appends, checked.acknowledged), (3, 2));
        assert_eq!((checked.unknown, checked.committed), (1, 3));
    }

    #[test]
    fn an_acknowledged_append_missing_from_the_log_is_lost() {
        let text = detail(&[invoke(7, 0, "a"), ok(7, 10, 1), log(1, &[])]);
        assert!(
            text.contains("op 7 (line 1, value \"a\") acknowledged at"),
            "{text}"
        );
    }

    #[test]
    fn a_failed_append_that_committed_is_reported() {
        let text = detail(&[invoke(1, 0, "a"), ended(1, 5, "failed"), log(1, &["a"])]);
        assert!(text.contains("reported failed but committed"), "{text}");
    }

    #[test]
    fn a_value_no_one_appended_is_a_phantom() {
        let text = detail(&[invoke(1, 0, "a"), log(1, &["a", "zz"])]);
        assert!(
            text.contains("holds \"zz\" at index 2, which no append invoked"),
            "{text}"
        );
    }

    #[test]
    fn an_append_invoked_after_another_was_acknowledged_must_commit_above_it() {
        let text = detail(&[
            invoke(1, 0, "a"),
            ok(1, 10, 2),
            invoke(2, 11, "b"),
            ok(2, 20, 1),
            log(1, &["b", "a"]),
        ]);
        assert!(
            text.contains("op 2 (line 3, value \"b\") was invoked after"),
            "{text}"
        );
    }

    #[test]
    fn logs_that_disagree_break_state_machine_safety() {
        let violation = check(&[
            invoke(1, 0, "a"),
            invoke(2, 0, "b"),
            log(1, &["a"]),
            log(2, &["b", "a"]),
        ])
        .expect_err("divergent");
        assert_eq!(violation.invariant, "State Machine Safety");
    }

    #[test]
    fn reads_see_acknowledged_appends_only_committed_entries_and_never_go_back() {
        let base = [invoke(1, 0, "a"), ok(1, 10, 1), invoke(2, 0, "b")];
        let with = |more: &[String]| [&base[..], more, &[log(1, &["a", "b"])]].concat();
        check(&with(&[read(3, 20), returned(3, 30, &["a", "b"])])).expect("a fresh read");
        let stale = detail(&with(&[read(3, 20), returned(3, 30, &[])]));
        assert!(stale.contains("(stale read)"), "{stale}");
        let wrong = detail(&with(&[read(3, 20), returned(3, 30, &["a", "c"])]));
        assert!(wrong.contains("returned \"c\" at index 2"), "{wrong}");
        let back = detail(&with(&[
            read(3, 20),
            returned(3, 30, &["a", "b"]),
            read(4, 40),
            returned(4, 50, &["a"]),
        ]));
        assert!(back.contains("reads went back in time"), "{back}");
        let future = detail(&[
            read(3, 0),
            returned(3, 5, &["x"]),
            invoke(4, 9, "x"),
            log(1, &["x"]),
        ]);
        assert!(
            future.contains("invoked only after the read completed"),
            "{future}"
        );
    }

    #[test]
    fn a_value_committed_twice_is_reported() {
        // Acknowledged at its first place, and unknown: both must be caught at the second.
        let text = detail(&[invoke(1, 0, "a"), ok(1, 10, 1), log(1, &["a", "a"])]);
        assert!(text.contains("committed twice, at i1 and at i2"), "{text}");
        let text = detail(&[
            invoke(1, 0, "a"),
            invoke(2, 0, "b"),
            log(1, &["a", "b", "a"]),
        ]);
        assert!(text.contains("committed twice, at i1 and at i3"), "{text}");
    }

    #[test]
    fn null_entries_take_an_index_and_belong_to_no_append() {
        let lines = [
            invoke(1, 0, "a"),
            ok(1, 10, 2),
            read(2, 20),
            r#"{"type":"complete","op":2,"time_us":30,"outcome":"ok","entries":[null,"a"]}"#
                .to_string(),
            r#"{"type":"log","node":1,"entries":[null,"a",null]}"#.to_string(),
            r#"{"type":"log","node":2,"entries":[null,"a"]}"#.to_string(),
        ];
        let checked = check(&lines).expect("linearizable");
        assert_eq!((checked.acknowledged, checked.committed), (1, 3));
        let mut wrong = lines.clone();
        wrong[3] =
            r#"{"type":"complete","op":2,"time_us":30,"outcome":"ok","entries":["a"]}"#.into();
        let text = detail(&wrong);
        assert!(
            text.contains("returned \"a\" at index 1, but the committed log holds null"),
            "{text}"
        );
    }

    #[test]
    fn malformed_lines_are_named_by_number() {
        let error = |lines: &[String]| Recorded::parse(&lines.join("\n")).expect_err("malformed");
        assert!(error(&["{".into()]).starts_with("line 1: "));
        assert_eq!(
            error(&[invoke(1, 0, "a"), invoke(2, 0, "a")]),
            "line 2: value \"a\" was already appended by op 1 (line 1); appended values must be unique"
        );
        assert_eq!(
            error(&[ok(1, 0, 1)]),
            "line 1: op 1 completes but was never invoked before"
        );
        assert_eq!(
            error(&[invoke(1, 9, "a"), ok(1, 5, 1)]),
            "line 2: op 1 completes at 5 µs, before it was invoked at 9 µs"
        );
        assert!(error(&[invoke(1, 0, "a")]).contains("no final log"));
        let unknown_field = error(&[r#"{"type":"log","node":1,"entries":[],"x":1}"#.into()]);
        assert!(
            unknown_field.contains("line 1: unknown field `x`"),
            "{unknown_field}"
        );
    }
}
