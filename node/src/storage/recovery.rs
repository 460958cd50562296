//! Reading the open segment back at start: the one gateway where bytes from disk become
//! entries. (Sealed segments are checked against their index instead, and every line they
//! hand out is checked again as it is read; see `segment.rs`.)
//!
//! Every line must carry a matching checksum and the index after the previous line's, with
//! a term that is non-zero and never decreases. The one exception is what a write
//! interrupted by a crash leaves behind: that is cut off with a warning. Any other damage is
//! an error naming the line, and nothing is dropped.
//!
//! ## What an interrupted write leaves
//! `log_file.rs` writes a batch of lines with one write right behind the durable lines, into
//! zeros (the space preallocated for appends, or past the end of the file, which reads back
//! as zeros), and reports the lines durable only once the batch's sync has returned (its
//! `fdatasync`, or a synchronous direct write itself). The next batch is written only after
//! that, and a truncation is made durable before anything is written behind it. So at any
//! instant at most one batch is unfinished, and it is the last thing in the file: before
//! it, lines whose sync returned; behind it, zeros only. A crash during it leaves each
//! [`SECTOR_BYTES`] sector of the batch either written or still zeros, in any mix: the disk
//! writes a sector whole, but the sectors of one write in no particular order. (A sector
//! that also holds durable bytes keeps them either way: a write that rewrites them, such as
//! a direct write of whole blocks, rewrites the same bytes.)
//! Our encoder never writes a zero byte (serde_json escapes control characters), so in the
//! batch a zero byte is one the write never reached, and zeros fill whole sectors there:
//! each run of them ends on a sector boundary and starts on one or where the batch starts.
//!
//! ## The rule
//! The first line that is not intact (no terminating newline, no checksum header, or a
//! checksum mismatch) is a torn write, and the file is cut where it starts, if
//! - nothing follows it: the classic torn tail, the last line of the write cut short; or
//! - it holds zero-filled sectors: at least one zero byte, and every run of zero bytes in
//!   it ends on a sector boundary of the file and starts on one or at the line's first
//!   byte. Every line after it goes too, and each must look like the rest of the same write:
//!   a matching checksum, or zero-filled sectors of its own, or (the last one) no newline.
//!   A line behind it that is damaged any other way fails `open`, naming that line.
//!
//! Anything else fails `open` naming the line: a damaged line with no zero byte, or with
//! zeros that do not fill whole sectors, followed by more lines (bit rot, not a tear); a
//! line whose checksum matches but whose content or index/term sequence is wrong. Line
//! numbers count newlines in the file as it is, which is what `sed -n 12p` shows.
//!
//! ## Why cutting there loses nothing that was reported durable
//! Lines before the unfinished batch are intact, so the first damaged line lies in that
//! batch; everything after it lies in the same batch or in the zeros behind it, since
//! nothing else is ever written behind an unfinished batch. None of it was acknowledged:
//! the batch's sync had not returned. The lines kept are exactly the durable ones plus the
//! batch's lines ahead of the first lost sector, a prefix of what was being written.
//!
//! This rests on the disk keeping its promises: a sector is written whole (as etcd's WAL
//! assumes), and nothing covered by a returned sync is lost or zeroed later. Media damage
//! that zeroes whole sectors of durable lines looks exactly like a tear and would be cut
//! too; no byte in the file can tell them apart. The commit index in `metadata.json` is the
//! safety net: if the cut would drop a committed entry, `open` fails instead (see
//! `check_consistent` in `mod.rs`). Zeros that do not fill whole sectors, and any other
//! damage followed by more lines, are refused as before.

use super::error::{io_error, LineProblem, StorageError};
use super::line::{count_headers, decode_line};
use replog_core::{Entry, Index, Term};
use std::io::BufRead;
use std::ops::Range;
use std::path::Path;

/// The unit a disk writes whole. File systems map whole blocks, multiples of it, onto the
/// disk, so a multiple of it in the file is a sector boundary on the disk too. (Disks with
/// larger sectors write in multiples of this, so their boundaries are among these.)
const SECTOR_BYTES: u64 = 512;

/// Where a segment's lines continue the log: the index of its first line and the term of
/// the entry before it (0 before the first entry of all).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Start {
    pub first_index: Index,
    pub prev_term: Term,
}

impl Start {
    pub(crate) const LOG: Start = Start {
        first_index: Index(1),
        prev_term: Term(0),
    };
}

/// The checked contents of a log file.
#[derive(Debug, Default)]
pub(crate) struct ScannedLog {
    /// Invariant: `entries[k].index == first_index + k`, terms non-zero and non-decreasing
    /// from the start's `prev_term` on.
    pub entries: Vec<Entry>,
    /// Invariant: `offsets[k]` is the byte offset where the line of `entries[k]` starts.
    pub offsets: Vec<u64>,
    /// Bytes up to the end of the last good line before any tear; what the file is cut
    /// back to.
    pub valid_len: u64,
    /// What an interrupted write left behind the good lines, if anything.
    pub torn: Option<TornTail>,
}

/// The damaged line an interrupted write left, and everything behind it: all of it is cut.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TornTail {
    /// 1-based line number in the file of the first damaged line.
    pub line: u64,
    /// Bytes cut: from the start of that line (`ScannedLog::valid_len`) to the end of the
    /// file.
    pub bytes: u64,
    pub reason: String,
    /// Whether nothing followed the damaged line.
    pub final_line: bool,
    /// Lines with a matching checksum cut along with the damaged one: they lay behind its
    /// zero-filled sectors, later parts of the same unfinished write.
    pub dropped_lines: u64,
    /// Whether the cut bytes are zeros only, with no newline: no byte of any entry was
    /// there. That is what every crash leaves (the space preallocated for appends), so it
    /// is routine, not a repair.
    pub zeros_only: bool,
}

impl TornTail {
    fn new(line: u64, bytes: &[u8], problem: &str) -> TornTail {
        // A lost newline merges lines; say so, since then more than one entry goes.
        let headers = count_headers(bytes);
        let zeros_only = bytes.iter().all(|&byte| byte == 0);
        let reason = if zeros_only {
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
            final_line: true,
            dropped_lines: 0,
            zeros_only,
        }
    }

    /// "final line" or "line", for messages that name it.
    pub fn place(&self) -> &'static str {
        if self.final_line {
            "final line"
        } else {
            "line"
        }
    }

    fn note_zero_fill(&mut self, zeros: &ZeroFill) {
        self.reason.push_str(&format!(
            "; {} zero bytes in whole {SECTOR_BYTES}-byte sectors from byte {} of the file, \
             which the interrupted write never reached",
            zeros.bytes, zeros.first
        ));
        self.dropped_lines += u64::from(zeros.complete_line_after);
    }
}

/// Zero bytes in a damaged line that fill whole sectors: what a write leaves where it never
/// reached the disk.
struct ZeroFill {
    /// File offset of the first zero byte.
    first: u64,
    /// How many zero bytes the line holds.
    bytes: u64,
    /// Whether the bytes after the last zero are a line with a matching checksum: the hole
    /// ended exactly where that line starts.
    complete_line_after: bool,
}

impl ZeroFill {
    /// The zeros of `line` (newline included), which starts at byte `start` of the file.
    /// `None` unless there is at least one and every run of them ends on a sector boundary
    /// and starts on one or at the line's first byte.
    fn find(line: &[u8], start: u64) -> Option<ZeroFill> {
        debug_assert!(line.ends_with(b"\n"));
        let runs = zero_runs(line);
        let on_boundary = |offset: usize| (start + offset as u64).is_multiple_of(SECTOR_BYTES);
        let whole_sectors =
            |run: &Range<usize>| (run.start == 0 || on_boundary(run.start)) && on_boundary(run.end);
        if runs.is_empty() || !runs.iter().all(whole_sectors) {
            return None;
        }
        let after = &line[runs[runs.len() - 1].end..];
        Some(ZeroFill {
            first: start + runs[0].start as u64,
            bytes: runs.iter().map(|run| run.len() as u64).sum(),
            complete_line_after: after
                .strip_suffix(b"\n")
                .is_some_and(|content| decode_line(content).is_ok()),
        })
    }
}

/// The maximal runs of zero bytes in `bytes`, in order.
fn zero_runs(bytes: &[u8]) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let mut from = 0;
    while let Some(zero) = bytes[from..].iter().position(|&byte| byte == 0) {
        let start = from + zero;
        let end = bytes[start..]
            .iter()
            .position(|&byte| byte != 0)
            .map_or(bytes.len(), |length| start + length);
        runs.push(start..end);
        from = end;
    }
    runs
}

/// The lines of a file, read one at a time into a reused buffer.
struct Lines<'a, R> {
    path: &'a Path,
    reader: R,
    /// The line read last, newline included; only the file's last line may lack one.
    current: Vec<u8>,
    /// 1-based number of `current` in the file.
    number: u64,
    /// Byte offset in the file where `current` starts; the file's length once read through.
    start: u64,
}

impl<'a, R: BufRead> Lines<'a, R> {
    fn new(path: &'a Path, reader: R) -> Self {
        Lines {
            path,
            reader,
            current: Vec::new(),
            number: 0,
            start: 0,
        }
    }

    /// Reads the next line into `current`; false at the end of the file.
    fn advance(&mut self) -> Result<bool, StorageError> {
        self.start += self.current.len() as u64;
        self.current.clear();
        let read = self
            .reader
            .read_until(b'\n', &mut self.current)
            .map_err(io_error(self.path, "reading"))?;
        self.number += 1;
        Ok(read > 0)
    }

    /// The current line without its newline; `None` if it has none. (read_until stops
    /// short of a newline only at the end of the file.)
    fn content(&self) -> Option<&[u8]> {
        self.current.strip_suffix(b"\n")
    }

    fn end(&self) -> u64 {
        self.start + self.current.len() as u64
    }

    fn corrupt(&self, problem: LineProblem) -> StorageError {
        corrupt(self.path, self.number, problem)
    }
}

/// Checks every line read from `reader` (the file at `path`), one line in memory at a time.
pub(crate) fn scan(
    path: &Path,
    reader: impl BufRead,
    start: Start,
) -> Result<ScannedLog, StorageError> {
    let mut lines = Lines::new(path, reader);
    let mut scanned = ScannedLog::default();
    while lines.advance()? {
        match lines.content().map(decode_line) {
            Some(Ok(entry)) => {
                check_sequence(start, &scanned.entries, &entry)
                    .map_err(|problem| lines.corrupt(problem))?;
                scanned.offsets.push(lines.start);
                scanned.entries.push(entry);
                scanned.valid_len = lines.end();
            }
            None => {
                let torn = TornTail::new(lines.number, &lines.current, "no terminating newline");
                scanned.torn = Some(torn);
                break;
            }
            Some(Err(problem)) if is_tear(&problem) => {
                scanned.torn = Some(tear(&mut lines, problem)?);
                break;
            }
            Some(Err(problem)) => return Err(lines.corrupt(problem)),
        }
    }
    Ok(scanned)
}

/// Judges the first damaged line (newline-terminated, failing its checksum) and, if it is a
/// tear, everything behind it. Reads the file to its end.
fn tear<R: BufRead>(lines: &mut Lines<R>, problem: LineProblem) -> Result<TornTail, StorageError> {
    let (torn_line, torn_start) = (lines.number, lines.start);
    let mut torn = TornTail::new(torn_line, &lines.current, &problem.to_string());
    let zeros = ZeroFill::find(&lines.current, lines.start);
    if let Some(zeros) = &zeros {
        torn.note_zero_fill(zeros);
    }
    if !lines.advance()? {
        return Ok(torn);
    }
    if zeros.is_none() {
        return Err(corrupt(lines.path, torn_line, problem));
    }
    torn.final_line = false;
    loop {
        torn.dropped_lines += rest_of_write(lines)?;
        if !lines.advance()? {
            break;
        }
    }
    torn.bytes = lines.start - torn_start;
    Ok(torn)
}

/// How many complete lines the current line, behind a torn one, adds to what is cut; an
/// error if it cannot be a later part of the same unfinished write.
fn rest_of_write<R: BufRead>(lines: &Lines<R>) -> Result<u64, StorageError> {
    let Some(content) = lines.content() else {
        // The end of the file: the write's last line cut short, or the zeros behind it.
        return Ok(0);
    };
    match decode_line(content) {
        Ok(_) => Ok(1),
        Err(problem) if is_tear(&problem) => ZeroFill::find(&lines.current, lines.start)
            .map(|zeros| u64::from(zeros.complete_line_after))
            .ok_or_else(|| lines.corrupt(problem)),
        Err(problem) => Err(lines.corrupt(problem)),
    }
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
fn check_sequence(start: Start, previous: &[Entry], entry: &Entry) -> Result<(), LineProblem> {
    let expected = start.first_index.plus(previous.len() as u64);
    if entry.index != expected {
        return Err(LineProblem::IndexGap {
            expected,
            found: entry.index,
        });
    }
    if entry.term == Term(0) {
        return Err(LineProblem::ZeroTerm);
    }
    let previous_term = previous.last().map_or(start.prev_term, |last| last.term);
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
    use std::ops::Range;

    fn log_bytes(terms: &[u64]) -> Vec<u8> {
        let mut out = Vec::new();
        for (position, &term) in terms.iter().enumerate() {
            let entry = Entry {
                index: Index(position as u64 + 1),
                term: Term(term),
                payload: Payload::Command(format!("c{position}").into()),
            };
            encode_entry(&entry, &mut out);
        }
        out
    }

    #[test]
    fn empty_file_is_an_empty_log() {
        let scanned = scan(Path::new("log.jsonl"), &b""[..], Start::LOG).unwrap();
        assert!(scanned.entries.is_empty());
        assert_eq!(scanned.valid_len, 0);
        assert_eq!(scanned.torn, None);
    }

    #[test]
    fn offsets_point_at_line_starts() {
        let bytes = log_bytes(&[1, 1, 2]);
        let scanned = scan(Path::new("log.jsonl"), &bytes[..], Start::LOG).unwrap();
        assert_eq!(scanned.offsets[0], 0);
        for &offset in &scanned.offsets[1..] {
            assert_eq!(bytes[offset as usize - 1], b'\n');
        }
        assert_eq!(scanned.valid_len, bytes.len() as u64);
    }

    #[test]
    fn a_decreasing_term_is_refused_with_its_line() {
        let bytes = log_bytes(&[1, 2, 1]);
        let error = scan(Path::new("log.jsonl"), &bytes[..], Start::LOG)
            .unwrap_err()
            .to_string();
        assert!(error.contains("line 3"), "{error}");
        assert!(error.contains("term decreases"), "{error}");
    }

    #[test]
    fn zero_term_is_refused() {
        let error = scan(Path::new("log.jsonl"), &log_bytes(&[0])[..], Start::LOG).unwrap_err();
        assert!(error.to_string().contains("term 0"), "{error}");
    }

    #[test]
    fn a_complete_final_line_with_bad_checksum_is_torn() {
        let mut bytes = log_bytes(&[1, 1]);
        let last = bytes.len() - 3;
        bytes[last] ^= 0x01;
        let scanned = scan(Path::new("log.jsonl"), &bytes[..], Start::LOG).unwrap();
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
            let intact = scan(Path::new("log.jsonl"), &original[..], Start::LOG).unwrap();
            let mut damaged = original.clone();
            damaged[position.index(original.len())] = value;
            if let Ok(scanned) = scan(Path::new("log.jsonl"), &damaged[..], Start::LOG) {
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
            let _ = scan(Path::new("log.jsonl"), &bytes[..], Start::LOG);
        }
    }

    /// Lines of a log holding `commands`, all in term 1.
    fn command_lines(commands: &[String]) -> Vec<u8> {
        let mut out = Vec::new();
        for (position, command) in commands.iter().enumerate() {
            let entry = Entry {
                index: Index(position as u64 + 1),
                term: Term(1),
                payload: Payload::Command(command.as_str().into()),
            };
            encode_entry(&entry, &mut out);
        }
        out
    }

    /// Where each line of `bytes` (whole lines only) starts and ends.
    fn line_spans(bytes: &[u8]) -> Vec<Range<usize>> {
        let mut spans = Vec::new();
        let mut start = 0;
        for (position, &byte) in bytes.iter().enumerate() {
            if byte == b'\n' {
                spans.push(start..position + 1);
                start = position + 1;
            }
        }
        spans
    }

    /// Sector runs `(first, count)`, the first counted among the sectors the last write
    /// touches, as byte ranges: clipped to start no earlier than the write, since the
    /// sector the write starts in keeps its durable bytes whether or not it was written.
    fn holes(sectors: &[(usize, usize)], write: Range<usize>) -> Vec<Range<usize>> {
        let sector = SECTOR_BYTES as usize;
        let first_sector = write.start / sector;
        let touched = (write.end - 1) / sector - first_sector + 1;
        sectors
            .iter()
            .map(|&(first, count)| {
                let first = first_sector + first % touched;
                (first * sector).max(write.start)..(first + count) * sector
            })
            .collect()
    }

    proptest::proptest! {
        /// A crash loses some runs of sectors of the last write (they keep the zeros that
        /// were there), while the sectors around them are written. Scan keeps exactly the
        /// lines before the first line a hole touches, cuts the rest of the file, and
        /// counts the lines behind it that came through whole.
        #[test]
        fn lost_sectors_of_the_last_write_keep_exactly_the_lines_before_the_first_hole(
            commands in proptest::collection::vec(proptest::prelude::any::<String>(), 1..40),
            durable in proptest::prelude::any::<proptest::sample::Index>(),
            sectors in proptest::collection::vec((0..64usize, 1..4usize), 1..4),
            preallocated in 0..2048usize,
        ) {
            let intact = command_lines(&commands);
            let spans = line_spans(&intact);
            let boundary = spans[durable.index(spans.len())].start;
            let holes = holes(&sectors, boundary..intact.len());
            let mut damaged = intact.clone();
            damaged.resize(intact.len() + preallocated, 0);
            for hole in &holes {
                let end = hole.end.min(damaged.len());
                damaged[hole.start..end].fill(0);
            }
            let first_hole = holes.iter().map(|hole| hole.start).min().unwrap();
            let kept = spans.iter().filter(|span| span.end <= first_hole).count();
            let overlaps = |span: &Range<usize>| {
                holes.iter().any(|hole| span.start < hole.end && hole.start < span.end)
            };
            let dropped = spans[kept..].iter().filter(|span| !overlaps(span)).count();

            let scanned = scan(Path::new("log.jsonl"), &damaged[..], Start::LOG).unwrap();
            let expected = scan(Path::new("log.jsonl"), &intact[..spans[kept].start], Start::LOG).unwrap();
            proptest::prop_assert_eq!(&scanned.entries, &expected.entries);
            proptest::prop_assert_eq!(&scanned.offsets, &expected.offsets);
            proptest::prop_assert_eq!(scanned.valid_len, spans[kept].start as u64);
            let torn = scanned.torn.unwrap();
            proptest::prop_assert_eq!(torn.line, kept as u64 + 1);
            proptest::prop_assert_eq!(torn.bytes, (damaged.len() - spans[kept].start) as u64);
            proptest::prop_assert_eq!(torn.dropped_lines, dropped as u64, "{}", torn.reason);
        }
    }

    #[test]
    fn a_line_with_bit_rot_behind_a_hole_is_refused_naming_that_line() {
        let commands: Vec<String> = (0..30).map(|n| format!("command {n:040}")).collect();
        let mut bytes = command_lines(&commands);
        let spans = line_spans(&bytes);
        bytes[512..1024].fill(0);
        let rotten = spans.iter().position(|span| span.start > 1100).unwrap();
        bytes[spans[rotten].start + 30] ^= 0x04;
        // Numbered as in the damaged file, whose hole swallowed some newlines.
        let line = 1 + bytes[..spans[rotten].start]
            .iter()
            .filter(|&&byte| byte == b'\n')
            .count();
        assert!(line < rotten + 1);
        let error = scan(Path::new("log.jsonl"), &bytes[..], Start::LOG)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(&format!("line {line} is corrupt")),
            "{error}"
        );
        assert!(error.contains("checksum mismatch"), "{error}");
    }

    #[test]
    fn a_hole_followed_only_by_the_end_of_the_write_is_a_final_torn_line() {
        let commands: Vec<String> = (0..30).map(|n| format!("command {n:040}")).collect();
        let mut bytes = command_lines(&commands);
        let spans = line_spans(&bytes);
        let hole_start = spans.last().unwrap().start.next_multiple_of(512) - 512;
        bytes.truncate(hole_start);
        bytes.resize(hole_start + 4096, 0);
        let scanned = scan(Path::new("log.jsonl"), &bytes[..], Start::LOG).unwrap();
        let torn = scanned.torn.unwrap();
        assert!(torn.final_line);
        assert_eq!(torn.dropped_lines, 0);
        assert_eq!(torn.line, scanned.entries.len() as u64 + 1);
        assert_eq!(torn.bytes, bytes.len() as u64 - scanned.valid_len);
    }

    #[test]
    fn a_zero_filled_tail_is_torn() {
        let mut bytes = log_bytes(&[1, 1]);
        let good = bytes.len();
        bytes.extend_from_slice(&[0u8; 4096]);
        let scanned = scan(Path::new("log.jsonl"), &bytes[..], Start::LOG).unwrap();
        assert_eq!(scanned.entries.len(), 2);
        assert_eq!(scanned.valid_len, good as u64);
        assert_eq!(scanned.torn.unwrap().bytes, 4096);
    }
}
