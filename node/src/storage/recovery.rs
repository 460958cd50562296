//! Reading `log.jsonl` back at start: the one gateway where bytes from disk become entries.
//!
//! Every line must carry a matching checksum and the index after the previous line's, with
//! a term that is non-zero and never decreases. The one exception is the final line: a
//! write interrupted by a crash leaves its last line without a newline or with a checksum
//! that does not match, and such a line was never reported durable (the fsync that would
//! have covered it had not returned), so it is cut off with a warning. Anything wrong
//! before the final line cannot come from an interrupted append, so it is an error naming
//! the line, and nothing is dropped.

use super::error::{io_error, LineProblem, StorageError};
use super::line::{count_headers, decode_line};
use replog_core::{Entry, Index, Term};
use std::io::BufRead;
use std::path::Path;

/// The checked contents of a log file.
#[derive(Debug, Default)]
pub(crate) struct ScannedLog {
    /// Invariant: `entries[k].index == k + 1`, terms non-zero and non-decreasing.
    pub entries: Vec<Entry>,
    /// Invariant: `offsets[k]` is the byte offset where the line of `entries[k]` starts.
    pub offsets: Vec<u64>,
    /// Bytes up to the end of the last good line; what the file is cut back to.
    pub valid_len: u64,
    /// A damaged final line, if there was one.
    pub torn: Option<TornTail>,
}

/// A final line that an interrupted write left behind.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TornTail {
    /// 1-based line number in the file.
    pub line: u64,
    pub bytes: u64,
    pub reason: String,
}

impl TornTail {
    fn new(line: u64, bytes: &[u8], problem: &str) -> TornTail {
        // A lost newline merges lines; say so, since then more than one entry goes.
        let headers = count_headers(bytes);
        let reason = if bytes.iter().all(|&byte| byte == 0) {
            format!(
                "{problem}: zero bytes only (space preallocated for appends, or an extension \
                 whose data never landed)"
            )
        } else if headers > 1 {
            format!("{problem}; it holds {headers} line headers, so several entries run together")
        } else {
            problem.to_string()
        };
        TornTail {
            line,
            bytes: bytes.len() as u64,
            reason,
        }
    }
}

/// Checks every line read from `reader` (the file at `path`), one line in memory at a time.
pub(crate) fn scan(path: &Path, mut reader: impl BufRead) -> Result<ScannedLog, StorageError> {
    let mut scanned = ScannedLog::default();
    let mut line = Vec::new();
    // A line that failed its checksum: fatal, unless nothing follows it.
    let mut suspect: Option<(TornTail, LineProblem)> = None;
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(io_error(path, "reading"))?;
        if read == 0 {
            break;
        }
        if let Some((torn, problem)) = suspect.take() {
            return Err(corrupt(path, torn.line, problem));
        }
        let line_number = scanned.entries.len() as u64 + 1;
        // read_until stops short of a newline only at the end of the file.
        let Some(content) = line.strip_suffix(b"\n") else {
            scanned.torn = Some(TornTail::new(line_number, &line, "no terminating newline"));
            break;
        };
        match decode_line(content) {
            Ok(entry) => {
                check_sequence(&scanned.entries, &entry)
                    .map_err(|problem| corrupt(path, line_number, problem))?;
                scanned.offsets.push(scanned.valid_len);
                scanned.entries.push(entry);
                scanned.valid_len += read as u64;
            }
            Err(problem) if is_tear(&problem) => {
                let torn = TornTail::new(line_number, &line, &problem.to_string());
                suspect = Some((torn, problem));
            }
            Err(problem) => return Err(corrupt(path, line_number, problem)),
        }
    }
    scanned.torn = scanned.torn.or(suspect.map(|(torn, _)| torn));
    Ok(scanned)
}

/// Damage an interrupted write can leave. A line whose checksum matches was written whole,
/// so a bad index or content in it is never a tear.
fn is_tear(problem: &LineProblem) -> bool {
    matches!(
        problem,
        LineProblem::MissingChecksum | LineProblem::ChecksumMismatch { .. }
    )
}

/// Whether `entry` may follow `previous` in a Raft log.
fn check_sequence(previous: &[Entry], entry: &Entry) -> Result<(), LineProblem> {
    let expected = Index(previous.len() as u64 + 1);
    if entry.index != expected {
        return Err(LineProblem::IndexGap {
            expected,
            found: entry.index,
        });
    }
    if entry.term == Term(0) {
        return Err(LineProblem::ZeroTerm);
    }
    let previous_term = previous.last().map_or(Term(0), |last| last.term);
    if entry.term < previous_term {
        return Err(LineProblem::TermDecreases {
            term: entry.term,
            previous: previous_term,
        });
    }
    Ok(())
}

fn corrupt(path: &Path, line: u64, problem: LineProblem) -> StorageError {
    StorageError::CorruptLine {
        path: path.to_path_buf(),
        line,
        problem,
    }
}

#[cfg(test)]
mod tests {
    use super::super::line::encode_entry;
    use super::*;
    use replog_core::Payload;

    fn log_bytes(terms: &[u64]) -> Vec<u8> {
        let mut out = Vec::new();
        for (position, &term) in terms.iter().enumerate() {
            let entry = Entry {
                index: Index(position as u64 + 1),
                term: Term(term),
                payload: Payload::Command(format!("c{position}")),
            };
            encode_entry(&entry, &mut out);
        }
        out
    }

    #[test]
    fn empty_file_is_an_empty_log() {
        let scanned = scan(Path::new("log.jsonl"), &b""[..]).unwrap();
        assert!(scanned.entries.is_empty());
        assert_eq!(scanned.valid_len, 0);
        assert_eq!(scanned.torn, None);
    }

    #[test]
    fn offsets_point_at_line_starts() {
        let bytes = log_bytes(&[1, 1, 2]);
        let scanned = scan(Path::new("log.jsonl"), &bytes[..]).unwrap();
        assert_eq!(scanned.offsets[0], 0);
        for &offset in &scanned.offsets[1..] {
            assert_eq!(bytes[offset as usize - 1], b'\n');
        }
        assert_eq!(scanned.valid_len, bytes.len() as u64);
    }

    #[test]
    fn a_decreasing_term_is_refused_with_its_line() {
        let bytes = log_bytes(&[1, 2, 1]);
        let error = scan(Path::new("log.jsonl"), &bytes[..])
            .unwrap_err()
            .to_string();
        assert!(error.contains("line 3"), "{error}");
        assert!(error.contains("term decreases"), "{error}");
    }

    #[test]
    fn zero_term_is_refused() {
        let error = scan(Path::new("log.jsonl"), &log_bytes(&[0])[..]).unwrap_err();
        assert!(error.to_string().contains("term 0"), "{error}");
    }

    #[test]
    fn a_complete_final_line_with_bad_checksum_is_torn() {
        let mut bytes = log_bytes(&[1, 1]);
        let last = bytes.len() - 3;
        bytes[last] ^= 0x01;
        let scanned = scan(Path::new("log.jsonl"), &bytes[..]).unwrap();
        assert_eq!(scanned.entries.len(), 1);
        assert_eq!(scanned.torn.as_ref().unwrap().line, 2);
    }

    proptest::proptest! {
        /// Whatever one damaged byte does, recovery never invents or reorders an entry: it
        /// refuses, or returns a prefix of the original log, dropping lines only with a
        /// warning (more than the final one only when a lost newline merged them).
        #[test]
        fn one_damaged_byte_never_yields_a_different_log(
            terms in proptest::collection::vec(1..4u64, 1..8),
            position in proptest::prelude::any::<proptest::sample::Index>(),
            value in proptest::prelude::any::<u8>(),
        ) {
            let mut sorted = terms;
            sorted.sort();
            let original = log_bytes(&sorted);
            let intact = scan(Path::new("log.jsonl"), &original[..]).unwrap();
            let mut damaged = original.clone();
            damaged[position.index(original.len())] = value;
            if let Ok(scanned) = scan(Path::new("log.jsonl"), &damaged[..]) {
                let kept = scanned.entries.len();
                proptest::prop_assert_eq!(&scanned.entries[..], &intact.entries[..kept]);
                proptest::prop_assert_eq!(scanned.torn.is_some(), kept < intact.entries.len());
                if kept + 1 < intact.entries.len() {
                    // Only a lost newline merges lines, and the warning says so.
                    let torn = scanned.torn.unwrap();
                    proptest::prop_assert!(torn.reason.contains("run together"), "{}", torn.reason);
                }
            }
        }

        /// Arbitrary bytes are input, not a bug: scanning them never panics.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = scan(Path::new("log.jsonl"), &bytes[..]);
        }
    }

    #[test]
    fn a_zero_filled_tail_is_torn() {
        let mut bytes = log_bytes(&[1, 1]);
        let good = bytes.len();
        bytes.extend_from_slice(&[0u8; 4096]);
        let scanned = scan(Path::new("log.jsonl"), &bytes[..]).unwrap();
        assert_eq!(scanned.entries.len(), 2);
        assert_eq!(scanned.valid_len, good as u64);
        assert_eq!(scanned.torn.unwrap().bytes, 4096);
    }
}
