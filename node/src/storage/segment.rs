//! One segment of the log: its file name, and the sparse offset index of a sealed one.
//!
//! A segment is `log/<first-index>.jsonl`, the first index zero-padded to 20 digits so that
//! `ls` lists the segments in log order. A sealed segment has its index beside it,
//! `<first-index>.idx`, one checksummed line in the style of the log's:
//!
//! ```text
//! {"crc":"1c291d80","first_index":1,"last_index":812,"last_term":2,"bytes":65476,"points":[[1,0],[790,64013]]}
//! ```
//!
//! `points` are (index, byte offset) pairs: the first line, then the first line to start
//! at or past each further [`POINT_SPACING_BYTES`]. A read of index `i` seeks to the last
//! point at or below `i` and reads at most that many bytes to reach it. `bytes` is the
//! segment's length, so an index that does not belong to the file beside it is noticed.

use super::error::{io_error, LineProblem, StorageError};
use super::line::{check_record, decode_line, seal_record, UNSEALED_HEADER};
use super::metadata::replace_durably;
use replog_core::{Entry, Index, Term};
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, ErrorKind, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The name of the directory holding the segments, inside the node's directory.
pub(crate) const DIR_NAME: &str = "log";
const SEGMENT_SUFFIX: &str = ".jsonl";
const INDEX_SUFFIX: &str = ".idx";
const TEMP_SUFFIX: &str = ".tmp";
const NAME_DIGITS: usize = 20;
/// How far apart the points of a sparse index are, in bytes of lines.
const POINT_SPACING_BYTES: u64 = 64 << 10;

/// `00000000000000000001.jsonl` for the segment whose first index is 1.
pub(crate) fn segment_path(log_dir: &Path, first: Index) -> PathBuf {
    log_dir.join(format!("{:0NAME_DIGITS$}{SEGMENT_SUFFIX}", first.0))
}

/// The index file beside the segment at `segment`.
pub(crate) fn index_path(segment: &Path) -> PathBuf {
    segment.with_extension(&INDEX_SUFFIX[1..])
}

/// What one file name in the log directory is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Name {
    Segment(Index),
    Index(Index),
    /// A temporary file a crash left while an index was being written.
    Temp,
    Other,
}

pub(crate) fn parse_name(name: &str) -> Name {
    if name.ends_with(TEMP_SUFFIX) {
        return Name::Temp;
    }
    let first = |stem: &str| {
        (stem.len() == NAME_DIGITS && stem.bytes().all(|byte| byte.is_ascii_digit()))
            .then(|| stem.parse().ok().map(Index))
            .flatten()
    };
    if let Some(index) = name.strip_suffix(SEGMENT_SUFFIX).and_then(first) {
        return Name::Segment(index);
    }
    if let Some(index) = name.strip_suffix(INDEX_SUFFIX).and_then(first) {
        return Name::Index(index);
    }
    Name::Other
}

/// The sparse offset index of a sealed segment, as checked values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SparseIndex {
    pub first_index: Index,
    /// Invariant: `first_index <= last_index`; sealed segments are never empty.
    pub last_index: Index,
    pub last_term: Term,
    /// The segment file's length: its lines, no preallocated zeros.
    pub bytes: u64,
    /// Invariant: starts with `(first_index, 0)`; both strictly increasing; offsets below
    /// `bytes`, indices at most `last_index`.
    pub points: Vec<(Index, u64)>,
}

/// The index file's exact shape; unknown fields are refused rather than ignored.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IndexFile {
    #[serde(default, skip_serializing)]
    #[allow(dead_code)] // Checked from the raw bytes; present so the JSON is complete.
    crc: String,
    first_index: u64,
    last_index: u64,
    last_term: u64,
    bytes: u64,
    points: Vec<(u64, u64)>,
}

impl SparseIndex {
    /// The index of a segment whose lines start at `offsets` (of `first_index` onwards)
    /// and end at `bytes`.
    pub(crate) fn build(first_index: Index, last_term: Term, offsets: &[u64], bytes: u64) -> Self {
        assert!(
            !offsets.is_empty(),
            "a sealed segment holds at least one line"
        );
        let mut points = Vec::new();
        let mut next_point = 0;
        for (position, &offset) in offsets.iter().enumerate() {
            if offset >= next_point {
                points.push((first_index.plus(position as u64), offset));
                next_point = (offset / POINT_SPACING_BYTES + 1) * POINT_SPACING_BYTES;
            }
        }
        SparseIndex {
            first_index,
            last_index: first_index.plus(offsets.len() as u64 - 1),
            last_term,
            bytes,
            points,
        }
    }

    /// How many entries the segment holds.
    pub(crate) fn entries(&self) -> u64 {
        self.last_index.0 - self.first_index.0 + 1
    }

    /// The last point at or below `index`: where a read of it starts.
    pub(crate) fn seek(&self, index: Index) -> (Index, u64) {
        let after = self.points.partition_point(|&(point, _)| point <= index);
        self.points[after.max(1) - 1]
    }

    fn encode(&self) -> Vec<u8> {
        let file = IndexFile {
            crc: String::new(),
            first_index: self.first_index.0,
            last_index: self.last_index.0,
            last_term: self.last_term.0,
            bytes: self.bytes,
            points: self.points.iter().map(|&(i, o)| (i.0, o)).collect(),
        };
        let json = serde_json::to_vec(&file).expect("an index always serializes");
        let mut out = UNSEALED_HEADER.to_vec();
        out.extend_from_slice(&json[1..]);
        seal_record(&mut out, 0);
        out
    }

    /// Reads back an index; `Err` says what is wrong with it, for the rebuild warning.
    fn decode(bytes: &[u8], first_index: Index) -> Result<SparseIndex, String> {
        let line = bytes.strip_suffix(b"\n").ok_or("no terminating newline")?;
        check_record(line).map_err(|problem| problem.to_string())?;
        let file: IndexFile = serde_json::from_slice(line).map_err(|error| error.to_string())?;
        let index = SparseIndex {
            first_index: Index(file.first_index),
            last_index: Index(file.last_index),
            last_term: Term(file.last_term),
            bytes: file.bytes,
            points: file.points.iter().map(|&(i, o)| (Index(i), o)).collect(),
        };
        if index.first_index != first_index {
            return Err(format!(
                "it describes a segment starting at index {}",
                index.first_index.0
            ));
        }
        let well_formed = index.first_index <= index.last_index
            && index.points.first() == Some(&(first_index, 0))
            && index
                .points
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1)
            && index
                .points
                .last()
                .is_some_and(|&(i, o)| i <= index.last_index && o < index.bytes);
        if !well_formed {
            return Err("its points are out of order or out of range".to_string());
        }
        Ok(index)
    }
}

/// Reads the index of the segment at `segment`; `Ok(Err(why))` if it is missing or damaged
/// (the caller rebuilds it), `Err` if reading failed.
pub(crate) fn read_index(
    segment: &Path,
    first_index: Index,
) -> Result<Result<SparseIndex, String>, StorageError> {
    let path = index_path(segment);
    match fs::read(&path) {
        Ok(bytes) => Ok(SparseIndex::decode(&bytes, first_index)),
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(Err("missing".to_string())),
        Err(error) => Err(io_error(&path, "reading")(error)),
    }
}

/// Writes the index of the segment at `segment` durably: temp file, fsync, rename, fsync
/// of the directory. A crash leaves the old index, none, or the new one, never a mix.
pub(crate) fn write_index(segment: &Path, index: &SparseIndex) -> Result<(), StorageError> {
    let path = index_path(segment);
    let temp_path = path.with_extension("idx.tmp");
    replace_durably(&path, &temp_path, &index.encode())
}

/// Removes `path` if it exists (not yet durable: fsync its directory after).
pub(crate) fn remove_if_present(path: &Path) -> Result<(), StorageError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(()),
        Err(error) => Err(io_error(path, "removing")(error)),
    }
}

/// A damaged sealed segment: never a torn write, since sealed segments are not written.
pub(crate) fn damaged(path: &Path, problem: String) -> StorageError {
    StorageError::Segment {
        path: path.to_path_buf(),
        problem,
    }
}

/// Checks that the sealed segment at `path` ends where `index` says: its length, and a
/// last line that is intact and holds `last_index` (reading from the last point only).
pub(crate) fn check_tail(path: &Path, index: &SparseIndex) -> Result<(), StorageError> {
    let file = File::open(path).map_err(io_error(path, "opening"))?;
    let len = file
        .metadata()
        .map_err(io_error(path, "reading the length of"))?
        .len();
    if len != index.bytes {
        return Err(damaged(
            path,
            format!(
                "sealed segment is {len} bytes long, but its index says {}",
                index.bytes
            ),
        ));
    }
    let (from, offset) = index.points[index.points.len() - 1];
    let mut last = None;
    for_each_line(path, file, offset, len, from, |entry| {
        last = Some(entry.index);
        Ok(true)
    })?;
    if last != Some(index.last_index) {
        return Err(damaged(
            path,
            format!(
                "sealed segment ends at index {}, but its index says {}",
                last.map_or(0, |last| last.0),
                index.last_index.0
            ),
        ));
    }
    Ok(())
}

/// Decodes the lines of `file` (at `path`) from byte `start` (the line of index `first`)
/// to byte `end`, handing each entry to `each` until it returns false. Every line must be
/// intact and hold the next index: this reads sealed segments and durable lines only,
/// where nothing is torn.
pub(crate) fn for_each_line(
    path: &Path,
    mut file: File,
    start: u64,
    end: u64,
    first: Index,
    mut each: impl FnMut(Entry) -> Result<bool, StorageError>,
) -> Result<(), StorageError> {
    file.seek(SeekFrom::Start(start))
        .map_err(io_error(path, "seeking in"))?;
    let mut reader = BufReader::with_capacity(1 << 16, file.take(end - start));
    let mut line = Vec::new();
    let mut expected = first;
    let mut offset = start;
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(io_error(path, "reading"))?;
        if read == 0 {
            return Ok(());
        }
        let entry = line
            .strip_suffix(b"\n")
            .ok_or(LineProblem::MissingChecksum)
            .and_then(decode_line)
            .and_then(|entry| {
                if entry.index == expected {
                    Ok(entry)
                } else {
                    Err(LineProblem::IndexGap {
                        expected,
                        found: entry.index,
                    })
                }
            })
            .map_err(|problem| {
                damaged(
                    path,
                    format!("the line at byte {offset} is corrupt ({problem})"),
                )
            })?;
        if !each(entry)? {
            return Ok(());
        }
        expected = expected.next();
        offset += read as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_in_log_order_and_parse_back() {
        let dir = Path::new("log");
        let names: Vec<String> = [1, 9, 10, 123_456]
            .iter()
            .map(|&first| {
                let path = segment_path(dir, Index(first));
                path.file_name().unwrap().to_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(names[0], "00000000000000000001.jsonl");
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(sorted, names);
        assert_eq!(parse_name(&names[3]), Name::Segment(Index(123_456)));
        assert_eq!(
            parse_name("00000000000000000001.idx"),
            Name::Index(Index(1))
        );
        assert_eq!(parse_name("00000000000000000001.idx.tmp"), Name::Temp);
        for other in [
            "1.jsonl",
            "log.jsonl",
            "0000000000000000000x.jsonl",
            "notes",
        ] {
            assert_eq!(parse_name(other), Name::Other, "{other}");
        }
    }

    #[test]
    fn an_index_round_trips_and_seeks_to_the_last_point_at_or_below() {
        let offsets: Vec<u64> = (0..5000).map(|n| n * 100).collect();
        let index = SparseIndex::build(Index(7), Term(3), &offsets, 500_000);
        assert_eq!(index.last_index, Index(5006));
        assert!(index.points.len() > 5, "{:?}", index.points);
        let decoded = SparseIndex::decode(&index.encode(), Index(7)).unwrap();
        assert_eq!(decoded, index);
        for target in [7, 8, 700, 5006] {
            let (point, offset) = index.seek(Index(target));
            assert!(point <= Index(target));
            assert_eq!(offset, (point.0 - 7) * 100);
            assert!(Index(target).0 - point.0 <= POINT_SPACING_BYTES / 100);
        }
    }

    #[test]
    fn a_damaged_or_foreign_index_says_what_is_wrong() {
        let index = SparseIndex::build(Index(1), Term(1), &[0, 50], 100);
        let mut bytes = index.encode();
        assert!(SparseIndex::decode(&bytes, Index(2))
            .unwrap_err()
            .contains("starting at index 1"));
        bytes[30] ^= 1;
        assert!(SparseIndex::decode(&bytes, Index(1))
            .unwrap_err()
            .contains("checksum"));
    }
}
