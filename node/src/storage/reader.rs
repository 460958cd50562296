//! A read-only view of a node's log, for serving `read`, `follow` and `query` off the
//! storage thread (which group-commits: a long read there would delay every fsync).
//!
//! The view opens the segment files itself and holds no lock. It may read only entries
//! that are committed and durable here (at most the core's applied index, which the
//! caller passes as `through`), and that is what makes reading beside the writer safe:
//! - sealed segments never change, and the open one only grows past what is durable;
//! - a truncation only cuts entries above the commit index, so every byte offset of a
//!   line at or below `through` stays valid, in the open segment and in the sealed
//!   segments a truncation reopens (the points of a sparse index at or below `through`
//!   too, however stale the rest of that index becomes);
//! - a segment is sealed (zeros cut, index written) before the next one is created, and
//!   the next one holds an entry before the applied index covers it, so a read that runs
//!   out of lines in one segment finds the next entry at the start of the next segment;
//! - trimming deletes segments from the front: a read below the first index in
//!   `metadata.json`, or of a segment gone meanwhile, is [`ReadError::Trimmed`], never an
//!   I/O error. An open [`Cursor`] keeps reading a segment deleted under it (its file
//!   stays open), which is correct: the entries were committed.
//!
//! Lines are checked with the same checksum as recovery (`line.rs`); a command's JSON
//! string is handed out as stored, so a stream copies it instead of re-encoding it.

use super::error::{io_error, StorageError};
use super::line::{check_record, decode_line, UNSEALED_HEADER};
use super::metadata;
use super::segment::{self, Name};
use replog_core::{ClientId, Entry, Index, Payload, Term};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, ErrorKind, Seek, SeekFrom};
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};

/// Why a read gave no (more) entries.
#[derive(Debug)]
pub enum ReadError {
    /// The entries asked for were trimmed away; the log now starts at `first_index`.
    Trimmed { first_index: Index },
    /// A file could not be read, or a line is damaged.
    Storage(StorageError),
}

impl From<StorageError> for ReadError {
    fn from(error: StorageError) -> ReadError {
        ReadError::Storage(error)
    }
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Trimmed { first_index } => {
                write!(f, "trimmed: the log starts at index {}", first_index.0)
            }
            ReadError::Storage(error) => error.fmt(f),
        }
    }
}

/// What one stored line holds, borrowed from the reader's buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredPayload<'a> {
    /// The command as a JSON string, quotes and escapes included, exactly as stored.
    Command(&'a [u8]),
    Noop,
    Trim {
        before: Index,
    },
    /// An append at most once: the client id as stored (its bytes, unquoted) and the
    /// command as a JSON string.
    Session {
        client: &'a str,
        seq: NonZeroU64,
        command: &'a [u8],
    },
    /// A configuration change: the configuration as JSON, checked when the line was read.
    Config(&'a [u8]),
}

/// One entry as read from a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredEntry<'a> {
    pub index: Index,
    pub term: Term,
    pub payload: StoredPayload<'a>,
}

impl StoredEntry<'_> {
    pub fn to_entry(&self) -> Entry {
        let payload = match self.payload {
            // Our own encoder wrote it and the checksum matched: it is a JSON string.
            StoredPayload::Command(json) => Payload::Command(
                serde_json::from_slice::<String>(json)
                    .unwrap_or_default()
                    .into(),
            ),
            StoredPayload::Noop => Payload::Noop,
            StoredPayload::Trim { before } => Payload::Trim { before },
            StoredPayload::Config(json) => Payload::Config(
                serde_json::from_slice(json).expect("a configuration checked when it was read"),
            ),
            StoredPayload::Session {
                client,
                seq,
                command,
            } => match ClientId::new(client) {
                Ok(client) => Payload::Session {
                    client,
                    seq,
                    command: serde_json::from_slice::<String>(command)
                        .unwrap_or_default()
                        .into(),
                },
                // Checked when the line was parsed; a command keeps the bytes readable.
                Err(_) => Payload::Command(client.into()),
            },
        };
        Entry {
            index: self.index,
            term: self.term,
            payload,
        }
    }
}

/// Limits of one read.
#[derive(Clone, Copy, Debug)]
pub struct ReadLimits {
    pub max_entries: usize,
    /// Bytes of stored lines; a read returns at least one entry whatever its size.
    pub max_bytes: usize,
}

/// Where a sequence of reads has got to: the next entry, and the segment it is in.
pub struct Cursor {
    next: Index,
    segment: Option<OpenSegment>,
}

impl Cursor {
    /// The next entry this cursor reads.
    pub fn next(&self) -> Index {
        self.next
    }
}

struct OpenSegment {
    path: PathBuf,
    file: File,
    /// Where the line of the cursor's `next` starts.
    offset: u64,
}

/// A read-only view of `<data_dir>/<node_id>/log/`.
#[derive(Clone, Debug)]
pub struct LogReader {
    node_dir: PathBuf,
    log_dir: PathBuf,
    /// Where reads stopped: index -> (segment path, its inode, offset of that index's
    /// line). The open segment has no sparse index, so without these a read near the tail
    /// would scan the segment from its start every time. An offset is stable once the
    /// entries before it are committed (the only ones read), and the inode tells a
    /// segment from a later one of the same name (an install).
    positions: std::cell::RefCell<BTreeMap<Index, (PathBuf, u64, u64)>>,
}

/// Positions [`LogReader`] remembers; the lowest go first.
const POSITIONS_KEPT: usize = 1024;

impl LogReader {
    /// The view of the node directory `node_dir` (`Storage::dir`). Opens nothing yet.
    pub fn new(node_dir: &Path) -> LogReader {
        LogReader {
            node_dir: node_dir.to_path_buf(),
            log_dir: node_dir.join(segment::DIR_NAME),
            positions: Default::default(),
        }
    }

    /// The log's first index, from `metadata.json` (entries below it are trimmed).
    pub fn first_index(&self) -> Result<Index, StorageError> {
        Ok(metadata::read(&self.node_dir)?.map_or(Index(1), |meta| meta.first_index))
    }

    /// A cursor at `from`; opening files waits for the first read. Trimmed if `from` lies
    /// below the first index.
    pub fn cursor(&self, from: Index) -> Result<Cursor, ReadError> {
        let first_index = self.first_index()?;
        if from < first_index {
            return Err(ReadError::Trimmed { first_index });
        }
        Ok(Cursor {
            next: from,
            segment: None,
        })
    }

    /// Hands `each` the entries from the cursor's `next` through `through` (the caller's
    /// applied index), within `limits`, and moves the cursor past them. Returns how many.
    pub fn read(
        &self,
        cursor: &mut Cursor,
        through: Index,
        limits: ReadLimits,
        mut each: impl FnMut(&StoredEntry),
    ) -> Result<usize, ReadError> {
        let mut count = 0;
        let mut bytes = 0;
        let mut line = Vec::new();
        let mut scratch = Vec::new();
        while cursor.next <= through && count < limits.max_entries {
            let segment = match cursor.segment.as_mut() {
                Some(segment) => segment,
                None => cursor.segment.insert(self.locate(cursor.next)?),
            };
            let mut reader = segment_reader(&segment.file, &segment.path, segment.offset)?;
            let mut read_any = false;
            while cursor.next <= through && count < limits.max_entries {
                let Some(length) = next_line(&mut reader, &mut line, &segment.path)? else {
                    break;
                };
                if count > 0 && bytes + length > limits.max_bytes {
                    return Ok(count);
                }
                let entry = parse(&line, &segment.path, segment.offset, &mut scratch)?;
                if entry.index != cursor.next {
                    return Err(damaged_at(
                        &segment.path,
                        segment.offset,
                        format!("holds index {}, expected {}", entry.index.0, cursor.next.0),
                    )
                    .into());
                }
                each(&entry);
                read_any = true;
                count += 1;
                bytes += length;
                segment.offset += length as u64;
                cursor.next = cursor.next.next();
            }
            if cursor.next <= through && count < limits.max_entries && !read_any {
                // Out of lines: the entry is at the start of the next segment.
                cursor.segment = Some(self.open_at(cursor.next)?);
            }
        }
        if let Some(segment) = &cursor.segment {
            self.remember(cursor.next, segment);
        }
        Ok(count)
    }

    fn remember(&self, index: Index, segment: &OpenSegment) {
        use std::os::unix::fs::MetadataExt;
        let Ok(inode) = segment.file.metadata().map(|m| m.ino()) else {
            return;
        };
        let mut positions = self.positions.borrow_mut();
        positions.insert(index, (segment.path.clone(), inode, segment.offset));
        while positions.len() > POSITIONS_KEPT {
            positions.pop_first();
        }
    }

    /// The remembered position nearest below or at `index` in `path` (whose file is
    /// `file`), if it lies past `point`.
    fn remembered(
        &self,
        index: Index,
        path: &Path,
        file: &File,
        point: Index,
    ) -> Option<(Index, u64)> {
        use std::os::unix::fs::MetadataExt;
        let inode = file.metadata().ok()?.ino();
        let positions = self.positions.borrow();
        let (&at, (at_path, at_inode, offset)) = positions.range(point..=index).next_back()?;
        (at_path == path && *at_inode == inode).then_some((at, *offset))
    }

    /// The entries `from..=through`, at most `max_entries` of them, as `Entry` values.
    pub fn read_entries(
        &self,
        from: Index,
        through: Index,
        max_entries: usize,
    ) -> Result<Vec<Entry>, ReadError> {
        let mut cursor = self.cursor(from)?;
        let mut entries = Vec::new();
        let limits = ReadLimits {
            max_entries,
            max_bytes: usize::MAX,
        };
        self.read(&mut cursor, through, limits, |entry| {
            entries.push(entry.to_entry())
        })?;
        Ok(entries)
    }

    /// The segment holding `index`, positioned at its line: from the sparse index point
    /// nearest below it where the segment has an index, else from the segment's start.
    fn locate(&self, index: Index) -> Result<OpenSegment, ReadError> {
        let segments = self.list()?;
        let Some((&first, path)) = segments.range(..=index).next_back() else {
            return Err(self.trimmed_or(index, self.log_dir.clone()));
        };
        let (point, offset) = match segment::read_index(path, first)? {
            Ok(sparse) if sparse.last_index >= index => sparse.seek(index),
            _ => (first, 0),
        };
        let file = match File::open(path) {
            Ok(file) => file,
            Err(error) if error.kind() == ErrorKind::NotFound => {
                return Err(self.trimmed_or(index, path.clone()))
            }
            Err(error) => return Err(io_error(path, "opening")(error).into()),
        };
        let (point, offset) = self
            .remembered(index, path, &file, point)
            .unwrap_or((point, offset));
        let mut segment = OpenSegment {
            path: path.clone(),
            file,
            offset,
        };
        self.skip_to(&mut segment, point, index)?;
        Ok(segment)
    }

    /// Moves `segment` from the line of `at` to the line of `index`.
    fn skip_to(&self, segment: &mut OpenSegment, at: Index, index: Index) -> Result<(), ReadError> {
        let mut reader = segment_reader(&segment.file, &segment.path, segment.offset)?;
        let mut line = Vec::new();
        for _ in at.0..index.0 {
            match next_line(&mut reader, &mut line, &segment.path)? {
                Some(length) => segment.offset += length as u64,
                None => {
                    return Err(damaged_at(
                        &segment.path,
                        segment.offset,
                        format!("ends before index {}", index.0),
                    )
                    .into())
                }
            }
        }
        Ok(())
    }

    /// The segment that starts at `index`, which must exist unless it was trimmed.
    fn open_at(&self, index: Index) -> Result<OpenSegment, ReadError> {
        let path = segment::segment_path(&self.log_dir, index);
        match File::open(&path) {
            Ok(file) => Ok(OpenSegment {
                path,
                file,
                offset: 0,
            }),
            Err(error) if error.kind() == ErrorKind::NotFound => Err(self.trimmed_or(index, path)),
            Err(error) => Err(io_error(&path, "opening")(error).into()),
        }
    }

    /// Why no segment holds `index`: trimmed, if it lies below the first index now;
    /// otherwise damage, naming where it should have been.
    fn trimmed_or(&self, index: Index, path: PathBuf) -> ReadError {
        match self.first_index() {
            Ok(first_index) if index < first_index => ReadError::Trimmed { first_index },
            Ok(_) => ReadError::Storage(StorageError::Segment {
                path,
                problem: format!("missing: no segment holds committed entry {}", index.0),
            }),
            Err(error) => ReadError::Storage(error),
        }
    }

    fn list(&self) -> Result<BTreeMap<Index, PathBuf>, StorageError> {
        let mut segments = BTreeMap::new();
        let listing = fs::read_dir(&self.log_dir).map_err(io_error(&self.log_dir, "listing"))?;
        for item in listing {
            let item = item.map_err(io_error(&self.log_dir, "listing"))?;
            if let Name::Segment(first) = segment::parse_name(&item.file_name().to_string_lossy()) {
                segments.insert(first, item.path());
            }
        }
        Ok(segments)
    }
}

fn segment_reader<'a>(
    mut file: &'a File,
    path: &Path,
    offset: u64,
) -> Result<BufReader<&'a File>, StorageError> {
    file.seek(SeekFrom::Start(offset))
        .map_err(io_error(path, "seeking in"))?;
    Ok(BufReader::with_capacity(1 << 16, file))
}

/// The next whole line (newline included) into `line`; `None` at the end of the lines
/// written so far: end of file, a line not yet finished, or preallocated zeros.
fn next_line(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    path: &Path,
) -> Result<Option<usize>, StorageError> {
    line.clear();
    let read = reader
        .read_until(b'\n', line)
        .map_err(io_error(path, "reading"))?;
    if read == 0 || line.last() != Some(&b'\n') || line[0] == 0 {
        return Ok(None);
    }
    Ok(Some(read))
}

/// Checks one line (newline included) and splits it without copying the command. Lines
/// in another shape than our encoder's go through the full decoder, into `scratch`.
fn parse<'a>(
    line: &'a [u8],
    path: &Path,
    offset: u64,
    scratch: &'a mut Vec<u8>,
) -> Result<StoredEntry<'a>, StorageError> {
    let record = &line[..line.len() - 1];
    check_record(record).map_err(|problem| damaged_at(path, offset, problem.to_string()))?;
    if let Some(entry) = split_body(&record[UNSEALED_HEADER.len()..]) {
        return Ok(entry);
    }
    let entry =
        decode_line(record).map_err(|problem| damaged_at(path, offset, problem.to_string()))?;
    scratch.clear();
    let payload = match &entry.payload {
        Payload::Command(command) => {
            serde_json::to_writer(&mut *scratch, &**command).expect("a string serializes");
            StoredPayload::Command(scratch)
        }
        Payload::Noop => StoredPayload::Noop,
        Payload::Trim { before } => StoredPayload::Trim { before: *before },
        Payload::Config(membership) => {
            serde_json::to_writer(&mut *scratch, membership).expect("a configuration serializes");
            StoredPayload::Config(scratch)
        }
        Payload::Session {
            client,
            seq,
            command,
        } => {
            serde_json::to_writer(&mut *scratch, &**command).expect("a string serializes");
            let json_len = scratch.len();
            scratch.extend_from_slice(client.as_str().as_bytes());
            let (json, client) = scratch.split_at(json_len);
            StoredPayload::Session {
                client: std::str::from_utf8(client).expect("copied from a str"),
                seq: *seq,
                command: json,
            }
        }
    };
    Ok(StoredEntry {
        index: entry.index,
        term: entry.term,
        payload,
    })
}

/// `"index":7,"term":2,"command":"set x=1"}` (and the no-op and trim forms), as
/// `encode_entry` writes them after the checksum header.
fn split_body(body: &[u8]) -> Option<StoredEntry<'_>> {
    let rest = body.strip_prefix(b"\"index\":")?;
    let (index, rest) = split_number(rest)?;
    let rest = rest.strip_prefix(b",\"term\":")?;
    let (term, rest) = split_number(rest)?;
    let rest = rest.strip_prefix(b",")?.strip_suffix(b"}")?;
    let payload = if let Some(command) = rest.strip_prefix(b"\"command\":") {
        (command.len() >= 2 && command[0] == b'"').then_some(StoredPayload::Command(command))?
    } else if rest == b"\"noop\":true" {
        StoredPayload::Noop
    } else {
        let (before, after) = split_number(rest.strip_prefix(b"\"trim_before\":")?)?;
        (after.is_empty() && before > 0).then_some(StoredPayload::Trim {
            before: Index(before),
        })?
    };
    Some(StoredEntry {
        index: Index(index),
        term: Term(term),
        payload,
    })
}

fn split_number(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let digits = bytes
        .iter()
        .take_while(|byte| byte.is_ascii_digit())
        .count();
    let number = std::str::from_utf8(&bytes[..digits]).ok()?.parse().ok()?;
    Some((number, &bytes[digits..]))
}

fn damaged_at(path: &Path, offset: u64, problem: String) -> StorageError {
    segment::damaged(
        path,
        format!("the line at byte {offset} is corrupt ({problem})"),
    )
}

#[cfg(test)]
mod tests {
    use super::super::{Storage, StorageOptions};
    use super::*;
    use replog_core::{HardState, NodeId, Write, WriteId};

    fn command(index: u64, text: &str) -> Entry {
        Entry {
            index: Index(index),
            term: Term(1),
            payload: Payload::Command(text.into()),
        }
    }

    /// A node directory whose log holds `count` entries (a no-op first) in segments of
    /// about 4 KiB, one batch per entry.
    fn log_of(dir: &Path, count: u64) -> (Storage, Vec<Entry>) {
        let options = StorageOptions {
            segment_bytes: 4096,
            ..StorageOptions::default()
        };
        let (mut storage, _, _) = Storage::open_with_options(dir, NodeId(1), options).unwrap();
        let hard_state = HardState {
            term: Term(1),
            voted_for: Some(NodeId(1)),
        };
        let mut all = Vec::new();
        for index in 1..=count {
            let entry = match index {
                1 => Entry {
                    index: Index(1),
                    term: Term(1),
                    payload: Payload::Noop,
                },
                _ => command(index, &format!("set k{index}=\"v\"\n{}", "x".repeat(50))),
            };
            storage
                .persist(&[Write {
                    memberships: Vec::new(),
                    id: WriteId(index),
                    hard_state: (index == 1).then_some(hard_state),
                    install: None,
                    truncate_after: None,
                    entries: vec![entry.clone()],
                    sessions: None,
                }])
                .unwrap();
            all.push(entry);
        }
        (storage, all)
    }

    #[test]
    fn reads_any_range_across_segments_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let (storage, all) = log_of(dir.path(), 300);
        assert!(storage.segment_count() > 3, "{}", storage.segment_count());
        let reader = LogReader::new(storage.dir());
        for (from, through) in [(1, 300), (1, 1), (57, 180), (299, 300), (120, 119)] {
            let read = reader.read_entries(Index(from), Index(through), usize::MAX);
            let expected = &all[(from - 1) as usize..through.max(from - 1) as usize];
            assert_eq!(read.unwrap(), expected, "{from}..={through}");
        }
    }

    #[test]
    fn a_cursor_goes_on_where_it_stopped_as_the_log_grows_and_keeps_to_its_limits() {
        let dir = tempfile::tempdir().unwrap();
        let (storage, all) = log_of(dir.path(), 200);
        let reader = LogReader::new(storage.dir());
        let mut cursor = reader.cursor(Index(5)).unwrap();
        let mut seen = Vec::new();
        let limits = ReadLimits {
            max_entries: 7,
            max_bytes: 1000,
        };
        loop {
            let count = reader
                .read(&mut cursor, Index(150), limits, |entry| {
                    seen.push(entry.to_entry())
                })
                .unwrap();
            assert!(count <= 7 && count > 0 || cursor.next() == Index(151));
            if count == 0 {
                break;
            }
        }
        assert_eq!(seen, &all[4..150]);
        let one = ReadLimits {
            max_entries: 10,
            max_bytes: 1,
        };
        let count = reader.read(&mut cursor, Index(200), one, |_| {}).unwrap();
        assert_eq!(
            (count, cursor.next()),
            (1, Index(152)),
            "one entry at least"
        );
    }

    #[test]
    fn reads_below_the_first_index_or_of_a_trimmed_segment_are_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let (storage, _) = log_of(dir.path(), 200);
        let node_dir = storage.dir().to_path_buf();
        drop(storage);
        let log_dir = node_dir.join(segment::DIR_NAME);
        let reader = LogReader::new(&node_dir);
        let mut early = reader.cursor(Index(2)).unwrap();
        // What a trim does: the first index moves on in metadata, then segments go.
        let mut segments: Vec<PathBuf> = fs::read_dir(&log_dir)
            .unwrap()
            .map(|item| item.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "jsonl"))
            .collect();
        segments.sort();
        let second = match segment::parse_name(&segments[1].file_name().unwrap().to_string_lossy())
        {
            Name::Segment(first) => first,
            other => panic!("{other:?}"),
        };
        let meta = metadata::read(&node_dir).unwrap().unwrap();
        let trimmed = metadata::Metadata {
            first_index: second,
            prev_term: Term(1),
            ..meta
        };
        metadata::write(&node_dir, &trimmed).unwrap();
        fs::remove_file(&segments[0]).unwrap();
        let _ = fs::remove_file(segment::index_path(&segments[0]));

        for from in [1, 2, second.0 - 1] {
            match reader.read_entries(Index(from), Index(200), 10) {
                Err(ReadError::Trimmed { first_index }) => assert_eq!(first_index, second),
                other => panic!("from {from}: {other:?}"),
            }
        }
        match reader.read(
            &mut early,
            Index(200),
            ReadLimits {
                max_entries: 1,
                max_bytes: 1,
            },
            |_| {},
        ) {
            Err(ReadError::Trimmed { first_index }) => assert_eq!(first_index, second),
            other => panic!("a cursor into a deleted segment: {other:?}"),
        }
        let read = reader.read_entries(second, Index(200), usize::MAX).unwrap();
        assert_eq!(read.first().map(|entry| entry.index), Some(second));
        assert_eq!(read.len() as u64, 200 - second.0 + 1);
    }

    #[test]
    fn stored_commands_come_out_as_the_json_strings_they_were() {
        let mut line = Vec::new();
        let entry = command(9, "quote \" nl \n é");
        super::super::line::encode_entry(&entry, &mut line);
        let mut scratch = Vec::new();
        let parsed = parse(&line, Path::new("x"), 0, &mut scratch).unwrap();
        assert_eq!(
            parsed.payload,
            StoredPayload::Command(b"\"quote \\\" nl \\n \xc3\xa9\"")
        );
        assert_eq!(parsed.to_entry(), entry);
        let mut flipped = line.clone();
        flipped[30] ^= 1;
        assert!(parse(&flipped, Path::new("x"), 0, &mut scratch).is_err());
    }
}
