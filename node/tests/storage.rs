//! Durable storage through its public API: round trips, truncation, crash damage, and a
//! model-based proptest. Each test works in its own temp directory.

use proptest::prelude::*;
use replog_core::{
    Config, Entry, EntryId, FetchRequest, HardState, Index, Install, NodeId, Payload, RaftCore,
    Recovered, SessionsCheckpoint, Term, Write, WriteId,
};
use replog_node::storage::{
    AppendMode, RecoveryReport, Storage, StorageError, StorageOptions, TrimOutcome,
};
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};

const NODE: NodeId = NodeId(1);

/// The whole log a reopened storage holds from its first index: the entries before the
/// recovered tail, read back through the range read, then the tail (which must follow them,
/// or the boundary before the first index).
fn whole_log(storage: &Storage, recovered: &Recovered) -> Vec<Entry> {
    let prev = recovered.prev;
    let mut log = storage
        .read_entries(storage.first_index(), prev.index)
        .unwrap_or_else(|error| panic!("reading the log before the tail: {error}"));
    assert_eq!(
        log.last().map_or(storage.boundary(), Entry::id),
        prev,
        "the tail does not follow the stored log"
    );
    log.extend(recovered.entries.iter().cloned());
    log
}

fn open(dir: &Path) -> (Storage, Recovered, RecoveryReport) {
    Storage::open(dir, NODE).unwrap_or_else(|error| panic!("open failed: {error}"))
}

/// Opens in `mode`, and insists the mode took: a filesystem that refuses `O_DIRECT` would
/// otherwise quietly turn every direct-append test into a buffered one.
fn open_in(dir: &Path, mode: AppendMode) -> (Storage, Recovered, RecoveryReport) {
    let opened =
        Storage::open_with(dir, NODE, mode).unwrap_or_else(|error| panic!("open failed: {error}"));
    assert_eq!(
        opened.0.append_mode(),
        mode,
        "{} does not support {mode:?} appends",
        dir.display()
    );
    opened
}

fn open_error(dir: &Path) -> String {
    match Storage::open(dir, NODE) {
        Ok(_) => panic!("open succeeded on damaged storage"),
        Err(error) => error.to_string(),
    }
}

/// The first segment: the open one, until a test rolls over to more.
fn log_path(dir: &Path) -> PathBuf {
    dir.join("1").join("log").join("00000000000000000001.jsonl")
}

fn metadata_path(dir: &Path) -> PathBuf {
    dir.join("1").join("metadata.json")
}

fn command(index: u64, term: u64, text: &str) -> Entry {
    Entry {
        index: Index(index),
        term: Term(term),
        payload: Payload::Command(text.into()),
    }
}

fn noop(index: u64, term: u64) -> Entry {
    Entry {
        index: Index(index),
        term: Term(term),
        payload: Payload::Noop,
    }
}

fn hard_state(term: u64, voted_for: Option<u64>) -> HardState {
    HardState {
        term: Term(term),
        voted_for: voted_for.map(NodeId),
    }
}

/// A storage holding entries 1..=count in term 1, after a vote for node 1 in term 1.
fn storage_with_entries(dir: &Path, count: u64) -> Vec<Entry> {
    let (mut storage, _, _) = open(dir);
    let entries: Vec<Entry> = (1..=count)
        .map(|index| command(index, 1, &format!("command {index}")))
        .collect();
    storage
        .persist(&[Write {
            memberships: Vec::new(),
            id: WriteId(1),
            hard_state: Some(hard_state(1, Some(1))),
            install: None,
            truncate_after: None,
            entries: entries.clone(),
            sessions: Default::default(),
        }])
        .unwrap();
    entries
}

/// Byte offsets where each line of the log file starts, plus the file length at the end.
fn line_starts(bytes: &[u8]) -> Vec<usize> {
    let mut starts = vec![0];
    starts.extend(
        bytes
            .iter()
            .enumerate()
            .filter(|(_, &byte)| byte == b'\n')
            .map(|(position, _)| position + 1),
    );
    starts
}

#[test]
fn brand_new_directory_opens_empty() {
    let dir = tempfile::tempdir().unwrap();
    let (_, recovered, report) = open(dir.path());
    assert_eq!(recovered, Recovered::default());
    assert!(report.warnings.is_empty());
    assert!(metadata_path(dir.path()).exists());
    assert!(log_path(dir.path()).exists());
}

#[test]
fn persisted_writes_round_trip_through_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (mut storage, _, _) = open(dir.path());
    storage
        .persist(&[
            Write {
                memberships: Vec::new(),
                id: WriteId(1),
                hard_state: Some(hard_state(2, Some(3))),
                install: None,
                truncate_after: None,
                entries: vec![],
                sessions: Default::default(),
            },
            Write {
                memberships: Vec::new(),
                id: WriteId(2),
                hard_state: None,
                install: None,
                truncate_after: None,
                entries: vec![noop(1, 2), command(2, 2, "set x=\"1\"\n")],
                sessions: Default::default(),
            },
        ])
        .unwrap();
    storage
        .persist(&[Write {
            memberships: Vec::new(),
            id: WriteId(3),
            hard_state: None,
            install: None,
            truncate_after: None,
            entries: vec![command(3, 2, "")],
            sessions: Default::default(),
        }])
        .unwrap();
    storage.record_commit_index(Index(2)).unwrap();
    storage.flush_commit_index().unwrap();
    drop(storage);

    let (storage, recovered, report) = open(dir.path());
    assert!(report.warnings.is_empty());
    // Only the tail after the recorded commit index is read back for the core.
    assert_eq!(
        recovered,
        Recovered {
            membership: None,
            hard_state: hard_state(2, Some(3)),
            prev: command(2, 2, "set x=\"1\"\n").id(),
            entries: vec![command(3, 2, "")],
            commit_index: Index(2),
            sessions: Default::default(),
        }
    );
    assert_eq!(
        whole_log(&storage, &recovered),
        vec![
            noop(1, 2),
            command(2, 2, "set x=\"1\"\n"),
            command(3, 2, "")
        ]
    );
    let core = RaftCore::new(
        Config::new(NODE, vec![NodeId(1), NodeId(2), NodeId(3)]),
        recovered,
    );
    assert!(core.is_ok(), "{:?}", core.err());
}

#[test]
fn truncation_then_append_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    storage_with_entries(dir.path(), 5);
    let (mut storage, _, _) = open(dir.path());
    storage
        .persist(&[Write {
            memberships: Vec::new(),
            id: WriteId(1),
            hard_state: Some(hard_state(2, None)),
            install: None,
            truncate_after: Some(Index(2)),
            entries: vec![command(3, 2, "new 3"), command(4, 2, "new 4")],
            sessions: Default::default(),
        }])
        .unwrap();
    drop(storage);
    let (_, recovered, _) = open(dir.path());
    assert_eq!(recovered.hard_state, hard_state(2, None));
    assert_eq!(
        recovered.entries,
        vec![
            command(1, 1, "command 1"),
            command(2, 1, "command 2"),
            command(3, 2, "new 3"),
            command(4, 2, "new 4"),
        ]
    );
}

#[test]
fn truncations_inside_one_batch_apply_in_order() {
    let dir = tempfile::tempdir().unwrap();
    storage_with_entries(dir.path(), 4);
    let (mut storage, _, _) = open(dir.path());
    let write = |id, truncate_after: Option<u64>, entries| Write {
        memberships: Vec::new(),
        id: WriteId(id),
        hard_state: None,
        install: None,
        truncate_after: truncate_after.map(Index),
        entries,
        sessions: Default::default(),
    };
    storage
        .persist(&[
            write(1, None, vec![command(5, 1, "a5"), command(6, 1, "a6")]),
            // Cuts only staged lines.
            write(2, Some(5), vec![command(6, 1, "b6")]),
            // Cuts into lines already on disk.
            write(3, Some(2), vec![command(3, 1, "c3")]),
            write(4, Some(3), vec![command(4, 1, "d4")]),
        ])
        .unwrap();
    assert_eq!(storage.last_index(), Index(4));
    drop(storage);
    let (storage, recovered, _) = open(dir.path());
    let commands: Vec<String> = whole_log(&storage, &recovered)
        .iter()
        .map(|entry| match &entry.payload {
            Payload::Command(text) => text.to_string(),
            Payload::Noop => "noop".to_string(),
            Payload::Trim { before } => format!("trim<{}", before.0),
            Payload::Session {
                client,
                seq,
                command,
            } => format!("{client}#{seq}:{command}"),
            Payload::Config(membership) => format!("config {membership}"),
        })
        .collect();
    assert_eq!(commands, ["command 1", "command 2", "c3", "d4"]);
}

#[test]
fn torn_final_line_at_every_byte_offset_recovers_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let entries = storage_with_entries(dir.path(), 3);
    let intact = fs::read(log_path(dir.path())).unwrap();
    let last_start = line_starts(&intact)[2];
    for cut in last_start + 1..intact.len() {
        fs::write(log_path(dir.path()), &intact[..cut]).unwrap();
        let (mut storage, recovered, report) = open(dir.path());
        assert_eq!(recovered.entries, entries[..2], "cut at byte {cut}");
        assert_eq!(report.warnings.len(), 1, "cut at byte {cut}");
        let warning = &report.warnings[0];
        assert!(warning.contains("torn final line 3"), "{warning}");
        assert!(
            warning.contains("log/00000000000000000001.jsonl"),
            "{warning}"
        );
        assert!(
            warning.contains(&format!("({} bytes)", cut - last_start)),
            "{warning}"
        );
        // The cut is real: a new entry 3 lands where the torn one was.
        storage
            .persist(&[Write {
                memberships: Vec::new(),
                id: WriteId(1),
                hard_state: None,
                install: None,
                truncate_after: None,
                entries: vec![command(3, 1, "again")],
                sessions: Default::default(),
            }])
            .unwrap();
        drop(storage);
        let (_, recovered, report) = open(dir.path());
        assert!(report.warnings.is_empty());
        assert_eq!(recovered.entries[2], command(3, 1, "again"));
    }
}

#[test]
fn crash_at_any_byte_of_a_group_commit_recovers_its_complete_lines() {
    let dir = tempfile::tempdir().unwrap();
    let mut entries = storage_with_entries(dir.path(), 2);
    let before = fs::read(log_path(dir.path())).unwrap().len();
    let batch: Vec<Entry> = (3..=5).map(|index| command(index, 1, "batched")).collect();
    let (mut storage, _, _) = open(dir.path());
    let writes: Vec<Write> = batch
        .iter()
        .map(|entry| Write {
            memberships: Vec::new(),
            id: WriteId(entry.index.0),
            hard_state: None,
            install: None,
            truncate_after: None,
            entries: vec![entry.clone()],
            sessions: Default::default(),
        })
        .collect();
    storage.persist(&writes).unwrap();
    drop(storage);
    entries.extend(batch);
    let full = fs::read(log_path(dir.path())).unwrap();
    let starts = line_starts(&full);
    for cut in before..=full.len() {
        fs::write(log_path(dir.path()), &full[..cut]).unwrap();
        let (_, recovered, report) = open(dir.path());
        let complete = starts
            .iter()
            .filter(|&&start| start > 0 && start <= cut)
            .count();
        assert_eq!(recovered.entries, entries[..complete], "cut at byte {cut}");
        let mid_line = !starts.contains(&cut);
        assert_eq!(
            report.warnings.len(),
            usize::from(mid_line),
            "cut at byte {cut}"
        );
    }
}

#[test]
fn final_line_with_bad_checksum_or_zero_fill_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let entries = storage_with_entries(dir.path(), 3);
    let intact = fs::read(log_path(dir.path())).unwrap();
    let last_start = line_starts(&intact)[2];

    let mut flipped = intact.clone();
    flipped[last_start + 30] ^= 0x04;
    let mut zeroed = intact.clone();
    zeroed[last_start..].fill(0);
    // A line of zeros only (no newline left) holds no byte of an entry: routine, a note.
    for (damaged, warnings) in [(flipped, 1), (zeroed, 0)] {
        fs::write(log_path(dir.path()), &damaged).unwrap();
        let (_, recovered, report) = open(dir.path());
        assert_eq!(recovered.entries, entries[..2]);
        assert_eq!(report.warnings.len(), warnings, "{:?}", report.warnings);
        assert_eq!(report.warnings.len() + report.notes.len(), 1);
        assert_eq!(
            fs::read(log_path(dir.path())).unwrap(),
            &intact[..last_start]
        );
    }
}

/// Issue 14: after a kill -9 the log holds its lines and the preallocated zeros behind
/// them. Cutting those is routine: a note, never a warning.
#[test]
fn a_kill_9_state_of_lines_and_preallocated_zeros_recovers_without_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let (mut storage, _, _) = open(dir.path());
    let entries: Vec<Entry> = (1..=3).map(|index| command(index, 1, "x")).collect();
    storage
        .persist(&[Write {
            memberships: Vec::new(),
            id: WriteId(1),
            hard_state: Some(hard_state(1, Some(1))),
            install: None,
            truncate_after: None,
            entries: entries.clone(),
            sessions: Default::default(),
        }])
        .unwrap();
    // What the file holds while the node runs; a clean close would trim the zeros.
    let killed = fs::read(log_path(dir.path())).unwrap();
    drop(storage);
    let lines = fs::read(log_path(dir.path())).unwrap();
    assert!(killed.len() > lines.len() && killed.starts_with(&lines));
    assert!(killed[lines.len()..].iter().all(|&byte| byte == 0));
    fs::write(log_path(dir.path()), &killed).unwrap();

    let (_, recovered, report) = open(dir.path());
    assert_eq!(recovered.entries, entries);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(report.notes.len(), 1, "{:?}", report.notes);
    let note = &report.notes[0];
    let cut = killed.len() - lines.len();
    assert!(
        note.contains(&format!("cut {cut} bytes of unused preallocated space")),
        "{note}"
    );
    assert_eq!(fs::read(log_path(dir.path())).unwrap(), lines);
}

/// A torn line in front of the preallocated zeros lost bytes of an entry: still a warning.
#[test]
fn a_torn_line_before_preallocated_zeros_still_warns() {
    let dir = tempfile::tempdir().unwrap();
    let entries = storage_with_entries(dir.path(), 2);
    let mut bytes = fs::read(log_path(dir.path())).unwrap();
    bytes.extend_from_slice(b"{\"crc\":\"0badc0de\",\"index\":3,\"te");
    bytes.extend_from_slice(&[0; 4096]);
    fs::write(log_path(dir.path()), &bytes).unwrap();
    let (_, recovered, report) = open(dir.path());
    assert_eq!(recovered.entries, entries);
    assert!(report.notes.is_empty(), "{:?}", report.notes);
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert!(
        report.warnings[0].contains("torn final line 3"),
        "{}",
        report.warnings[0]
    );
}

#[test]
fn bit_flip_in_a_middle_line_refuses_to_open_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    storage_with_entries(dir.path(), 5);
    let intact = fs::read(log_path(dir.path())).unwrap();
    let third = line_starts(&intact)[2];
    for offset in [third, third + 5, third + 25, line_starts(&intact)[3] - 2] {
        let mut damaged = intact.clone();
        damaged[offset] ^= 0x10;
        fs::write(log_path(dir.path()), &damaged).unwrap();
        let error = open_error(dir.path());
        assert!(error.contains("log/00000000000000000001.jsonl"), "{error}");
        assert!(error.contains("line 3"), "{error}");
        // Nothing was repaired behind the operator's back.
        assert_eq!(fs::read(log_path(dir.path())).unwrap(), damaged);
    }
}

// ---------------------------------------------------------------------------------------
// A crash in the middle of a multi-sector write: a later sector of the unfinished batch
// reached the disk, an earlier one did not and still holds the preallocated zeros.

/// The disk writes whole sectors of this many bytes, in any order within one write.
const SECTOR: usize = 512;

/// A command entry whose line in the file is exactly `line_len` bytes long, newline included.
fn sized(index: u64, line_len: usize) -> Entry {
    let bare = format!("{{\"crc\":\"00000000\",\"index\":{index},\"term\":1,\"command\":\"\"}}\n");
    command(index, 1, &"x".repeat(line_len - bare.len()))
}

/// Persists `durable` in one batch (after a vote in term 1), then `unfinished` in a second,
/// and closes cleanly. Returns the file's bytes and where the second batch starts.
fn two_batches(dir: &Path, durable: &[Entry], unfinished: &[Entry]) -> (Vec<u8>, usize) {
    let (mut storage, _, _) = open(dir);
    let mut write = Write {
        memberships: Vec::new(),
        id: WriteId(1),
        hard_state: Some(hard_state(1, Some(1))),
        install: None,
        truncate_after: None,
        entries: durable.to_vec(),
        sessions: Default::default(),
    };
    storage.persist(std::slice::from_ref(&write)).unwrap();
    write.id = WriteId(2);
    write.hard_state = None;
    write.entries = unfinished.to_vec();
    storage.persist(&[write]).unwrap();
    drop(storage);
    let intact = fs::read(log_path(dir)).unwrap();
    let boundary = line_starts(&intact)[durable.len()];
    (intact, boundary)
}

/// Writes to the log what a crash leaves when the sectors in `holes` of the last write never
/// reached the disk: `intact`, with zeros in the holes and the preallocated zeros behind it.
fn lose_sectors(dir: &Path, intact: &[u8], boundary: usize, holes: &[Range<usize>]) -> Vec<u8> {
    let mut damaged = intact.to_vec();
    for hole in holes {
        assert!(
            hole.start >= boundary,
            "a lost sector of the unfinished write only"
        );
        assert!(
            hole.start % SECTOR == 0 || hole.start == boundary,
            "{hole:?}"
        );
        assert_eq!(hole.end % SECTOR, 0, "{hole:?}");
        damaged[hole.clone()].fill(0);
    }
    damaged.extend_from_slice(&[0; 2 * SECTOR]);
    fs::write(log_path(dir), &damaged).unwrap();
    damaged
}

/// After `lose_sectors`, reopening keeps exactly the lines that end before the hole, says
/// what it cut, and really cuts it: an append lands right behind the kept lines.
/// Returns the warning.
fn reopen_cuts_at_the_hole(
    dir: &Path,
    entries: &[Entry],
    intact: &[u8],
    hole: Range<usize>,
) -> String {
    let damaged = fs::read(log_path(dir)).unwrap();
    let starts = line_starts(intact);
    let kept = starts[1..].iter().filter(|&&end| end <= hole.start).count();
    let dropped = starts[..entries.len()]
        .iter()
        .filter(|&&start| start >= hole.end)
        .count();
    let (mut storage, recovered, report) = open(dir);
    assert_eq!(recovered.entries, entries[..kept]);
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    let warning = report.warnings[0].clone();
    assert!(
        warning.contains(&format!("torn line {} of", kept + 1)),
        "{warning}"
    );
    assert!(
        warning.contains("log/00000000000000000001.jsonl"),
        "{warning}"
    );
    assert!(
        warning.contains(&format!("({} bytes)", damaged.len() - starts[kept])),
        "{warning}"
    );
    let lines = if dropped == 1 {
        "line after it was"
    } else {
        "lines after it were"
    };
    let note = format!("{dropped} complete {lines} part of the same unfinished write");
    assert!(warning.contains(&note), "{warning}");
    assert_eq!(fs::read(log_path(dir)).unwrap(), &intact[..starts[kept]]);
    let again = command(kept as u64 + 1, 1, "again");
    storage
        .persist(&[Write {
            memberships: Vec::new(),
            id: WriteId(3),
            hard_state: None,
            install: None,
            truncate_after: None,
            entries: vec![again.clone()],
            sessions: Default::default(),
        }])
        .unwrap();
    drop(storage);
    let (_, recovered, report) = open(dir);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(recovered.entries[..kept], entries[..kept]);
    assert_eq!(recovered.entries[kept..], [again]);
    warning
}

#[test]
fn a_lost_earlier_sector_of_the_last_write_cuts_there_and_drops_the_lines_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let durable: Vec<Entry> = (1..=5)
        .map(|index| sized(index, 70 + index as usize))
        .collect();
    let unfinished: Vec<Entry> = (6..=30)
        .map(|index| sized(index, 60 + 3 * index as usize))
        .collect();
    let (intact, boundary) = two_batches(dir.path(), &durable, &unfinished);
    let entries = [durable, unfinished].concat();
    // The second sector that lies wholly inside the last write.
    let start = boundary.next_multiple_of(SECTOR) + SECTOR;
    let hole = start..start + SECTOR;
    let starts = line_starts(&intact);
    assert!(!starts.contains(&hole.start) && !starts.contains(&hole.end));
    assert!(starts.iter().filter(|&&line| line > hole.end).count() > 3);
    lose_sectors(dir.path(), &intact, boundary, std::slice::from_ref(&hole));
    let warning = reopen_cuts_at_the_hole(dir.path(), &entries, &intact, hole);
    assert!(warning.contains("zero bytes"), "{warning}");
}

#[test]
fn a_lost_sector_that_ends_exactly_where_a_line_starts_drops_that_line_too() {
    let lines = |lengths: &[usize], first: u64| -> Vec<Entry> {
        (first..)
            .zip(lengths)
            .map(|(index, &length)| sized(index, length))
            .collect()
    };
    let cases = [
        // 128-byte lines, so every fourth starts on a sector boundary: the hole is lines
        // 9 to 12 exactly, and line 13 starts right behind it.
        (lines(&[128; 21], 4), 1024..1536),
        // The hole starts inside line 4 (bytes 384..576) and ends where line 9 starts.
        (
            lines(&[[192, 64].as_slice(), &[128; 18]].concat(), 4),
            512..1024,
        ),
    ];
    for (unfinished, hole) in cases {
        let dir = tempfile::tempdir().unwrap();
        let durable = lines(&[128; 3], 1);
        let (intact, boundary) = two_batches(dir.path(), &durable, &unfinished);
        let entries = [durable, unfinished].concat();
        assert!(line_starts(&intact).contains(&hole.end), "{hole:?}");
        lose_sectors(dir.path(), &intact, boundary, std::slice::from_ref(&hole));
        reopen_cuts_at_the_hole(dir.path(), &entries, &intact, hole);
    }
}

#[test]
fn a_lost_sector_straddling_the_durable_end_cuts_at_the_first_line_of_the_write() {
    let dir = tempfile::tempdir().unwrap();
    let durable: Vec<Entry> = (1..=4).map(|index| sized(index, 100)).collect();
    let unfinished: Vec<Entry> = (5..=20).map(|index| sized(index, 100)).collect();
    let (intact, boundary) = two_batches(dir.path(), &durable, &unfinished);
    let entries = [durable, unfinished].concat();
    // The sector holding the end of line 4 and the start of line 5 keeps its durable bytes
    // and loses the rest.
    let hole = boundary..boundary.next_multiple_of(SECTOR);
    lose_sectors(dir.path(), &intact, boundary, std::slice::from_ref(&hole));
    reopen_cuts_at_the_hole(dir.path(), &entries, &intact, hole);
}

#[test]
fn a_hole_of_several_sectors_can_swallow_whole_lines() {
    let dir = tempfile::tempdir().unwrap();
    let durable: Vec<Entry> = (1..=2).map(|index| sized(index, 100)).collect();
    let unfinished: Vec<Entry> = (3..=40).map(|index| sized(index, 100)).collect();
    let (intact, boundary) = two_batches(dir.path(), &durable, &unfinished);
    let entries = [durable, unfinished].concat();
    // Bytes 1024..2048: the end of line 11, lines 12 to 20 whole, the start of line 21.
    let hole = 1024..2048;
    lose_sectors(dir.path(), &intact, boundary, std::slice::from_ref(&hole));
    reopen_cuts_at_the_hole(dir.path(), &entries, &intact, hole);
}

#[test]
fn two_holes_in_the_last_write_cut_at_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let durable: Vec<Entry> = (1..=2).map(|index| sized(index, 100)).collect();
    let unfinished: Vec<Entry> = (3..=40).map(|index| sized(index, 100)).collect();
    let (intact, boundary) = two_batches(dir.path(), &durable, &unfinished);
    let entries = [durable, unfinished].concat();
    let damaged = lose_sectors(dir.path(), &intact, boundary, &[1024..1536, 2048..2560]);
    let (_, recovered, report) = open(dir.path());
    // Line 11 (bytes 1000..1100) is the first one the holes damaged.
    assert_eq!(recovered.entries, entries[..10]);
    let warning = &report.warnings[0];
    assert!(warning.contains("torn line 11 of"), "{warning}");
    assert!(
        warning.contains(&format!("({} bytes)", damaged.len() - 1000)),
        "{warning}"
    );
    // Each hole also damages the line it ends in (16 and 26): lines 17 to 20 between the
    // holes and 27 to 40 behind the second are complete.
    assert!(
        warning.contains("18 complete lines after it were"),
        "{warning}"
    );
}

#[test]
fn a_zero_hole_below_the_stored_commit_index_is_an_error_not_a_repair() {
    let dir = tempfile::tempdir().unwrap();
    let durable: Vec<Entry> = (1..=2).map(|index| sized(index, 100)).collect();
    let unfinished: Vec<Entry> = (3..=20).map(|index| sized(index, 100)).collect();
    let (intact, boundary) = two_batches(dir.path(), &durable, &unfinished);
    let (mut storage, _, _) = open(dir.path());
    storage.record_commit_index(Index(20)).unwrap();
    storage.flush_commit_index().unwrap();
    drop(storage);
    let hole = 512..1024;
    let damaged = lose_sectors(dir.path(), &intact, boundary, std::slice::from_ref(&hole));
    let error = open_error(dir.path());
    assert!(error.contains("commit index 20"), "{error}");
    assert!(error.contains("line 6 is damaged"), "{error}");
    assert_eq!(fs::read(log_path(dir.path())).unwrap(), damaged);
}

#[test]
fn zeros_that_do_not_fill_whole_sectors_in_a_middle_line_refuse_to_open() {
    let dir = tempfile::tempdir().unwrap();
    storage_with_entries(dir.path(), 40);
    let intact = fs::read(log_path(dir.path())).unwrap();
    let starts = line_starts(&intact);
    let sector_start = starts[10].next_multiple_of(SECTOR);
    // A few zero bytes (a bad byte, not a lost sector), and zeros up to but not from a
    // sector boundary, and from but not up to one.
    for zeros in [
        starts[10] + 20..starts[10] + 21,
        sector_start - 7..sector_start,
        sector_start..sector_start + 7,
    ] {
        assert!(!starts.contains(&zeros.start), "{zeros:?} starts a line");
        let damaged_line = starts.iter().filter(|&&start| start <= zeros.start).count();
        let mut damaged = intact.clone();
        damaged[zeros.clone()].fill(0);
        fs::write(log_path(dir.path()), &damaged).unwrap();
        let error = open_error(dir.path());
        assert!(error.contains("log/00000000000000000001.jsonl"), "{error}");
        assert!(
            error.contains(&format!("line {damaged_line} is corrupt")),
            "{zeros:?}: {error}"
        );
        assert_eq!(fs::read(log_path(dir.path())).unwrap(), damaged);
    }
}

#[test]
fn index_gap_refuses_to_open_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    storage_with_entries(dir.path(), 4);
    let intact = fs::read(log_path(dir.path())).unwrap();
    let starts = line_starts(&intact);
    // Remove line 3 (index 3): each remaining line is intact, but index 4 now sits on line 3.
    let mut gapped = intact[..starts[2]].to_vec();
    gapped.extend_from_slice(&intact[starts[3]..]);
    fs::write(log_path(dir.path()), &gapped).unwrap();
    let error = open_error(dir.path());
    assert!(error.contains("log/00000000000000000001.jsonl"), "{error}");
    assert!(error.contains("line 3"), "{error}");
    assert!(error.contains("expected index 3, found 4"), "{error}");
}

#[test]
fn missing_metadata_next_to_a_log_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    storage_with_entries(dir.path(), 2);
    fs::remove_file(metadata_path(dir.path())).unwrap();
    let error = open_error(dir.path());
    assert!(error.contains("metadata.json"), "{error}");
    assert!(error.contains("missing"), "{error}");
}

#[test]
fn missing_log_next_to_metadata_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    storage_with_entries(dir.path(), 2);
    fs::remove_file(log_path(dir.path())).unwrap();
    let error = open_error(dir.path());
    assert!(
        error.contains("log/00000000000000000001.jsonl: missing"),
        "{error}"
    );
}

#[test]
fn crash_while_creating_the_directory_opens_as_fresh() {
    // open() creates the first segment before metadata.json; a crash between them
    // leaves this.
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("1").join("log")).unwrap();
    fs::write(log_path(dir.path()), b"").unwrap();
    let (_, recovered, report) = open(dir.path());
    assert_eq!(recovered, Recovered::default());
    assert!(report.warnings.is_empty());
    assert!(metadata_path(dir.path()).exists());
}

#[test]
fn garbled_metadata_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    storage_with_entries(dir.path(), 2);
    for garbage in ["{\"current_term\":", "not json", "{\"term\":1}"] {
        fs::write(metadata_path(dir.path()), garbage).unwrap();
        let error = open_error(dir.path());
        assert!(error.contains("metadata.json"), "{error}");
        assert!(error.contains("garbled"), "{error}");
    }
}

#[test]
fn stored_commit_index_beyond_the_log_is_an_error_not_clamped() {
    let dir = tempfile::tempdir().unwrap();
    storage_with_entries(dir.path(), 2);
    fs::write(
        metadata_path(dir.path()),
        "{\"current_term\":1,\"voted_for\":1,\"commit_index\":9}",
    )
    .unwrap();
    let error = open_error(dir.path());
    assert!(error.contains("commit index 9"), "{error}");
}

#[test]
fn damaged_final_line_below_the_commit_index_is_an_error_not_a_repair() {
    let dir = tempfile::tempdir().unwrap();
    storage_with_entries(dir.path(), 3);
    let (mut storage, _, _) = open(dir.path());
    storage.record_commit_index(Index(3)).unwrap();
    storage.flush_commit_index().unwrap();
    drop(storage);
    let mut bytes = fs::read(log_path(dir.path())).unwrap();
    let last = bytes.len() - 4;
    bytes[last] ^= 0x01;
    fs::write(log_path(dir.path()), &bytes).unwrap();
    let error = open_error(dir.path());
    assert!(error.contains("commit index 3"), "{error}");
    assert!(error.contains("final line 3 is damaged"), "{error}");
    assert_eq!(fs::read(log_path(dir.path())).unwrap(), bytes);
}

#[test]
fn log_term_beyond_the_stored_term_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    storage_with_entries(dir.path(), 2);
    fs::write(
        metadata_path(dir.path()),
        "{\"current_term\":0,\"voted_for\":null,\"commit_index\":0}",
    )
    .unwrap();
    let error = open_error(dir.path());
    assert!(error.contains("line 2 has term 1"), "{error}");
}

#[test]
fn recording_a_commit_index_beyond_the_durable_log_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    storage_with_entries(dir.path(), 2);
    let (mut storage, _, _) = open(dir.path());
    let error = storage.record_commit_index(Index(3)).unwrap_err();
    assert!(matches!(error, StorageError::CommitBeyondLog { .. }));
    storage.record_commit_index(Index(2)).unwrap();
    storage.flush_commit_index().unwrap();
    drop(storage);
    assert_eq!(open(dir.path()).1.commit_index, Index(2));
}

#[test]
fn commit_index_rides_along_with_the_next_hard_state_change() {
    let dir = tempfile::tempdir().unwrap();
    storage_with_entries(dir.path(), 2);
    let (mut storage, _, _) = open(dir.path());
    // Just opened, so the lazy write is deferred.
    storage.record_commit_index(Index(1)).unwrap();
    storage
        .persist(&[Write {
            memberships: Vec::new(),
            id: WriteId(1),
            hard_state: Some(hard_state(2, None)),
            install: None,
            truncate_after: None,
            entries: vec![],
            sessions: Default::default(),
        }])
        .unwrap();
    drop(storage);
    assert_eq!(open(dir.path()).1.commit_index, Index(1));
}

#[test]
fn a_second_open_of_the_same_node_is_refused_while_the_first_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let (storage, _, _) = open(dir.path());
    let error = open_error(dir.path());
    assert!(error.contains("locked by another process"), "{error}");
    drop(storage);
    open(dir.path());
}

#[test]
fn a_failed_write_poisons_the_handle() {
    let dir = tempfile::tempdir().unwrap();
    let (mut storage, _, _) = open(dir.path());
    fs::remove_dir_all(dir.path().join("1")).unwrap();
    let vote = Write {
        memberships: Vec::new(),
        id: WriteId(1),
        hard_state: Some(hard_state(1, Some(1))),
        install: None,
        truncate_after: None,
        entries: vec![],
        sessions: Default::default(),
    };
    let first = storage.persist(std::slice::from_ref(&vote)).unwrap_err();
    assert!(matches!(first, StorageError::Io { .. }), "{first}");
    let second = storage.persist(&[vote]).unwrap_err();
    assert!(matches!(second, StorageError::Poisoned { .. }), "{second}");
    let third = storage.record_commit_index(Index(0)).unwrap_err();
    assert!(matches!(third, StorageError::Poisoned { .. }), "{third}");
}

#[test]
fn storage_can_move_to_the_storage_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<Storage>();
    assert_send::<StorageError>();
}

// ---------------------------------------------------------------------------------------
// Model-based: any sequence of valid writes, reopened, gives exactly the model's state.

/// One step of the proptest: something the core could ask of storage.
#[derive(Clone, Debug)]
enum Op {
    /// A new term, with or without a vote in it.
    NewTerm { vote: Option<u64> },
    /// A vote in the current term (only taken if none was cast yet).
    Vote { vote: u64 },
    /// Client commands appended in the current term.
    Append { commands: Vec<String> },
    /// A conflict: keep `keep` of the uncommitted suffix, then append in a new term.
    Conflict { keep: u64, count: usize },
    /// The commit index advances by up to `by`.
    Commit { by: u64 },
    /// Drop the handle and open the directory again.
    Reopen,
    /// Crash in the middle of an append: leave `garbage` (newlines removed, so it is one
    /// final line) behind the log, then reopen.
    Crash { garbage: Vec<u8>, newline: bool },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => proptest::option::of(1..4u64).prop_map(|vote| Op::NewTerm { vote }),
        1 => (1..4u64).prop_map(|vote| Op::Vote { vote }),
        4 => proptest::collection::vec(".{0,12}", 1..6).prop_map(|commands| Op::Append { commands }),
        2 => (0..8u64, 0..4usize).prop_map(|(keep, count)| Op::Conflict { keep, count }),
        1 => (0..6u64).prop_map(|by| Op::Commit { by }),
        1 => Just(Op::Reopen),
        1 => (proptest::collection::vec(any::<u8>(), 0..80), any::<bool>())
            .prop_map(|(garbage, newline)| Op::Crash { garbage, newline }),
    ]
}

/// What storage must hold: the log and hard state as the core sees them.
#[derive(Default)]
struct Model {
    hard_state: HardState,
    log: Vec<Entry>,
    commit_index: Index,
    next_write_id: u64,
}

impl Model {
    fn write(&mut self, hard_state: Option<HardState>, truncate_after: Option<Index>) -> Write {
        self.next_write_id += 1;
        if let Some(next) = hard_state {
            self.hard_state = next;
        }
        if let Some(after) = truncate_after {
            self.log.truncate(after.0 as usize);
        }
        Write {
            memberships: Vec::new(),
            id: WriteId(self.next_write_id),
            hard_state,
            install: None,
            truncate_after,
            entries: vec![],
            sessions: Default::default(),
        }
    }

    fn append(&mut self, write: &mut Write, payloads: Vec<Payload>) {
        for payload in payloads {
            let entry = Entry {
                index: Index(self.log.len() as u64 + 1),
                term: self.hard_state.term,
                payload,
            };
            self.log.push(entry.clone());
            write.entries.push(entry);
        }
    }

    /// The write for `op`, or `None` if the op is storage-level (commit, reopen) or void.
    fn write_for(&mut self, op: &Op) -> Option<Write> {
        let term = self.hard_state.term;
        match op {
            Op::NewTerm { vote } => Some(self.write(Some(hard_state(term.0 + 1, *vote)), None)),
            Op::Vote { vote } if self.hard_state.voted_for.is_none() && term > Term(0) => {
                Some(self.write(Some(hard_state(term.0, Some(*vote))), None))
            }
            Op::Append { commands } if term > Term(0) => {
                let mut write = self.write(None, None);
                let payloads = commands
                    .iter()
                    .map(|command| Payload::Command(command.as_str().into()))
                    .collect();
                self.append(&mut write, payloads);
                Some(write)
            }
            Op::Conflict { keep, count } => {
                let uncommitted = self.log.len() as u64 - self.commit_index.0;
                let after = Index(self.commit_index.0 + keep % (uncommitted + 1));
                let mut write = self.write(Some(hard_state(term.0 + 1, None)), Some(after));
                let mut payloads = vec![Payload::Noop];
                payloads
                    .extend((0..*count).map(|n| Payload::Command(format!("conflict {n}").into())));
                self.append(&mut write, payloads);
                Some(write)
            }
            _ => None,
        }
    }
}

/// Bytes an interrupted append could leave: one final line that is not a valid entry.
fn torn_tail(garbage: &[u8], newline: bool) -> Vec<u8> {
    let mut tail: Vec<u8> = garbage.iter().copied().filter(|&b| b != b'\n').collect();
    if newline && !tail.is_empty() {
        tail.push(b'\n');
    }
    tail
}

fn append_bytes(path: &Path, bytes: &[u8]) {
    use std::io::Write as _;
    let mut file = fs::OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(bytes).unwrap();
}

/// Each case fsyncs many times, so fewer than proptest's default unless PROPTEST_CASES
/// asks for more (CI or a soak run).
fn model_cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(128)
}

/// Every reopen switches between direct and buffered appends, so both ways of writing are
/// exercised and each reads back what the other wrote.
fn run_model(batches: Vec<Vec<Op>>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::default();
    let mut modes = [AppendMode::Direct, AppendMode::Buffered]
        .into_iter()
        .cycle();
    let (mut storage, _, _) = open_in(dir.path(), modes.next().unwrap());
    for batch in batches {
        let mut writes = Vec::new();
        for op in &batch {
            match op {
                Op::Commit { by } => {
                    let target = (model.commit_index.0 + by).min(model.log.len() as u64);
                    model.commit_index = Index(target);
                }
                Op::Reopen => {}
                _ => writes.extend(model.write_for(op)),
            }
        }
        storage.persist(&writes).unwrap();
        storage.record_commit_index(model.commit_index).unwrap();
        let crash = batch.iter().find_map(|op| match op {
            Op::Crash { garbage, newline } => Some(torn_tail(garbage, *newline)),
            _ => None,
        });
        if crash.is_some() || batch.iter().any(|op| matches!(op, Op::Reopen)) {
            storage.flush_commit_index().unwrap();
            drop(storage);
            let tail = crash.unwrap_or_default();
            append_bytes(&log_path(dir.path()), &tail);
            let (reopened, recovered, report) = open_in(dir.path(), modes.next().unwrap());
            storage = reopened;
            // A tail of zeros alone is what preallocation leaves after a kill: cut with a
            // note; anything else is a torn write, cut with a warning.
            let zeros_only = !tail.is_empty() && tail.iter().all(|&byte| byte == 0);
            prop_assert_eq!(
                report.warnings.len(),
                usize::from(!tail.is_empty() && !zeros_only)
            );
            if zeros_only {
                prop_assert!(
                    report
                        .notes
                        .iter()
                        .any(|note| note.contains("preallocated space")),
                    "{:?}",
                    report.notes
                );
            }
            prop_assert_eq!(&whole_log(&storage, &recovered), &model.log);
            prop_assert_eq!(recovered.hard_state, model.hard_state);
            prop_assert_eq!(recovered.commit_index, model.commit_index);
        }
    }
    drop(storage);
    let (storage, recovered, report) = open(dir.path());
    prop_assert!(report.warnings.is_empty());
    prop_assert_eq!(&whole_log(&storage, &recovered), &model.log);
    prop_assert_eq!(recovered.hard_state, model.hard_state);
    prop_assert!(recovered.commit_index <= model.commit_index);
    let voters = vec![NodeId(1), NodeId(2), NodeId(3)];
    let core = RaftCore::new(Config::new(NODE, voters), recovered);
    prop_assert!(core.is_ok(), "RaftCore::new refused: {:?}", core.err());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(model_cases()))]

    #[test]
    fn reopen_yields_exactly_the_model_log_and_hard_state(
        batches in proptest::collection::vec(proptest::collection::vec(op_strategy(), 1..5), 1..12)
    ) {
        run_model(batches)?;
    }
}

// ---------------------------------------------------------------------------------------
// Direct and buffered appends: the same writes must leave the same bytes.

/// One batch: optionally cut back to `keep` entries in a new term, then append commands of
/// these lengths (long enough to cross 4096-byte blocks often).
#[derive(Clone, Debug)]
struct Batch {
    cut_to: Option<u64>,
    command_lengths: Vec<usize>,
}

fn batch_strategy() -> impl Strategy<Value = Batch> {
    (
        proptest::option::weighted(0.2, 0..40u64),
        proptest::collection::vec(0..3000usize, 0..6),
    )
        .prop_map(|(cut_to, command_lengths)| Batch {
            cut_to,
            command_lengths,
        })
}

/// Persists `batches` one at a time in `mode`; returns the file's bytes while the log was
/// still open (lines and preallocated zeros) and after it was closed.
fn write_batches(dir: &Path, mode: AppendMode, batches: &[Batch]) -> (Vec<u8>, Vec<u8>) {
    let (mut storage, _, _) = open_in(dir, mode);
    let mut last = 0u64;
    let mut term = 0u64;
    for (k, batch) in batches.iter().enumerate() {
        let mut write = Write {
            memberships: Vec::new(),
            id: WriteId(k as u64 + 1),
            hard_state: None,
            install: None,
            truncate_after: None,
            entries: vec![],
            sessions: Default::default(),
        };
        if term == 0 || batch.cut_to.is_some() {
            term += 1;
            write.hard_state = Some(hard_state(term, None));
        }
        if let Some(cut_to) = batch.cut_to.filter(|&cut_to| cut_to < last) {
            write.truncate_after = Some(Index(cut_to));
            last = cut_to;
        }
        for (n, &length) in batch.command_lengths.iter().enumerate() {
            last += 1;
            let text: String = (0..length)
                .map(|i| (b'a' + ((i + n) % 26) as u8) as char)
                .collect();
            write.entries.push(command(last, term, &text));
        }
        storage.persist(&[write]).unwrap();
    }
    let open_bytes = fs::read(log_path(dir)).unwrap();
    drop(storage);
    (open_bytes, fs::read(log_path(dir)).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(model_cases() / 4))]

    #[test]
    fn direct_and_buffered_appends_leave_identical_files(
        batches in proptest::collection::vec(batch_strategy(), 1..16)
    ) {
        let direct = tempfile::tempdir().unwrap();
        let buffered = tempfile::tempdir().unwrap();
        let from_direct = write_batches(direct.path(), AppendMode::Direct, &batches);
        let from_buffered = write_batches(buffered.path(), AppendMode::Buffered, &batches);
        prop_assert!(from_direct.0 == from_buffered.0, "files differ while open");
        prop_assert!(from_direct.1 == from_buffered.1, "files differ after closing");
        let (_, recovered, report) = open(direct.path());
        prop_assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        prop_assert_eq!(recovered.entries.len(), line_starts(&from_direct.1).len() - 1);
    }
}

// ---------------------------------------------------------------------------------------
// Segments: the log as a directory of segment files (issue 9).

/// Small enough that a few dozen entries fill a segment.
const SMALL_SEGMENT_BYTES: u64 = 4096;

fn open_segmented(dir: &Path, segment_bytes: u64) -> (Storage, Recovered, RecoveryReport) {
    let options = StorageOptions {
        segment_bytes,
        ..StorageOptions::default()
    };
    Storage::open_with_options(dir, NODE, options)
        .unwrap_or_else(|error| panic!("open failed: {error}"))
}

fn open_segmented_error(dir: &Path) -> String {
    let options = StorageOptions {
        segment_bytes: SMALL_SEGMENT_BYTES,
        ..StorageOptions::default()
    };
    match Storage::open_with_options(dir, NODE, options) {
        Ok(_) => panic!("open succeeded on damaged storage"),
        Err(error) => error.to_string(),
    }
}

fn segment_dir(dir: &Path) -> PathBuf {
    dir.join("1").join("log")
}

/// The segment files, oldest first.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(segment_dir(dir))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "jsonl"))
        .collect();
    found.sort();
    found
}

/// Appends `count` entries in term `term` behind `log`, `per_batch` to a `persist` call.
fn append_batches(
    storage: &mut Storage,
    log: &mut Vec<Entry>,
    term: u64,
    count: u64,
    per_batch: u64,
) {
    let mut written = 0;
    while written < count {
        let mut write = Write {
            memberships: Vec::new(),
            id: WriteId(log.len() as u64 + 1),
            hard_state: Some(hard_state(term, Some(1))),
            install: None,
            truncate_after: None,
            entries: vec![],
            sessions: Default::default(),
        };
        for _ in 0..per_batch.min(count - written) {
            let index = log.len() as u64 + 1;
            let entry = command(index, term, &format!("entry {index} {}", "x".repeat(40)));
            log.push(entry.clone());
            write.entries.push(entry);
            written += 1;
        }
        storage.persist(&[write]).unwrap();
    }
}

/// A log of `count` entries over many small segments, cleanly closed.
fn segmented_log(dir: &Path, count: u64) -> Vec<Entry> {
    let (mut storage, _, _) = open_segmented(dir, SMALL_SEGMENT_BYTES);
    let mut log = Vec::new();
    append_batches(&mut storage, &mut log, 1, count, 5);
    log
}

#[test]
fn the_log_rolls_over_into_many_segments_that_read_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let log = segmented_log(dir.path(), 400);
    let files = segments(dir.path());
    assert!(files.len() > 10, "{files:?}");
    for (k, file) in files.iter().enumerate() {
        let bytes = fs::read(file).unwrap();
        let first: u64 = file.file_stem().unwrap().to_str().unwrap().parse().unwrap();
        assert!(bytes.starts_with(b"{\"crc\":\""));
        assert!(String::from_utf8_lossy(&bytes).contains(&format!("\"index\":{first},")));
        let sealed = k + 1 < files.len();
        // A batch never spans segments, so a sealed one exceeds the limit by no more than
        // the batch that did not fit into it.
        if sealed {
            assert!(bytes.len() as u64 <= SMALL_SEGMENT_BYTES, "{file:?}");
            assert!(file.with_extension("idx").exists(), "{file:?} has no index");
        }
    }
    let (storage, recovered, report) = open_segmented(dir.path(), SMALL_SEGMENT_BYTES);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(recovered.entries, log);
    assert_eq!(storage.segment_count(), files.len());
    for (from, to) in [(1, 400), (1, 1), (400, 400), (37, 211), (150, 151), (5, 4)] {
        let read = storage.read_entries(Index(from), Index(to)).unwrap();
        let expected = log.get(from as usize - 1..to as usize).unwrap_or(&[]);
        assert_eq!(read, expected, "{from}..={to}");
    }
    let error = storage.read_entries(Index(1), Index(401)).unwrap_err();
    assert!(matches!(error, StorageError::OutsideLog { .. }), "{error}");
}

#[test]
fn a_segment_smaller_than_a_block_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let options = StorageOptions {
        segment_bytes: 100,
        ..StorageOptions::default()
    };
    let error = Storage::open_with_options(dir.path(), NODE, options)
        .err()
        .expect("refused")
        .to_string();
    assert!(error.contains("segment size 100 bytes"), "{error}");
}

#[test]
fn a_batch_larger_than_a_segment_goes_whole_into_one() {
    let dir = tempfile::tempdir().unwrap();
    let (mut storage, _, _) = open_segmented(dir.path(), SMALL_SEGMENT_BYTES);
    let mut log = Vec::new();
    append_batches(&mut storage, &mut log, 1, 3, 3);
    append_batches(&mut storage, &mut log, 1, 200, 200);
    append_batches(&mut storage, &mut log, 1, 3, 3);
    drop(storage);
    let files = segments(dir.path());
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(fs::read(&files[1]).unwrap().len() as u64 > SMALL_SEGMENT_BYTES);
    let (_, recovered, _) = open_segmented(dir.path(), SMALL_SEGMENT_BYTES);
    assert_eq!(recovered.entries, log);
}

#[test]
fn truncation_into_a_sealed_segment_removes_the_later_ones_and_reopens_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = segmented_log(dir.path(), 300);
    let before = segments(dir.path());
    let (mut storage, _, _) = open_segmented(dir.path(), SMALL_SEGMENT_BYTES);
    // Cut after an entry in the middle of the third segment, in a new term.
    let third_first: u64 = before[2]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let keep = third_first + 2;
    log.truncate(keep as usize);
    let replacement = command(keep + 1, 2, "after the cut");
    storage
        .persist(&[Write {
            memberships: Vec::new(),
            id: WriteId(1),
            hard_state: Some(hard_state(2, None)),
            install: None,
            truncate_after: Some(Index(keep)),
            entries: vec![replacement.clone()],
            sessions: Default::default(),
        }])
        .unwrap();
    log.push(replacement);
    assert_eq!(
        storage.read_entries(Index(1), Index(keep + 1)).unwrap(),
        log
    );
    append_batches(&mut storage, &mut log, 2, 120, 5);
    drop(storage);
    let after = segments(dir.path());
    assert_eq!(after[..3], before[..3]);
    let (_, recovered, report) = open_segmented(dir.path(), SMALL_SEGMENT_BYTES);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(recovered.entries, log);
    assert_eq!(recovered.hard_state, hard_state(2, Some(1)));
}

#[test]
fn a_deleted_middle_segment_refuses_to_start_naming_the_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    segmented_log(dir.path(), 200);
    let files = segments(dir.path());
    fs::remove_file(&files[2]).unwrap();
    fs::remove_file(files[2].with_extension("idx")).unwrap();
    let error = open_segmented_error(dir.path());
    let name = files[2].file_name().unwrap().to_str().unwrap();
    assert!(error.contains(name), "{error}");
    assert!(error.contains("missing"), "{error}");
    // Nothing was repaired behind the operator's back.
    assert_eq!(segments(dir.path()).len(), files.len() - 1);
}

#[test]
fn a_corrupt_last_line_of_a_sealed_segment_refuses_to_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    segmented_log(dir.path(), 200);
    let files = segments(dir.path());
    let mut bytes = fs::read(&files[1]).unwrap();
    let last = bytes.len() - 5;
    bytes[last] ^= 0x04;
    fs::write(&files[1], &bytes).unwrap();
    let error = open_segmented_error(dir.path());
    let name = files[1].file_name().unwrap().to_str().unwrap();
    assert!(error.contains(name), "{error}");
    assert!(error.contains("corrupt"), "{error}");
    assert_eq!(fs::read(&files[1]).unwrap(), bytes);
}

#[test]
fn a_torn_sealed_segment_is_damage_not_a_tear() {
    let dir = tempfile::tempdir().unwrap();
    segmented_log(dir.path(), 200);
    let files = segments(dir.path());
    let bytes = fs::read(&files[1]).unwrap();
    fs::write(&files[1], &bytes[..bytes.len() - 10]).unwrap();
    let error = open_segmented_error(dir.path());
    let name = files[1].file_name().unwrap().to_str().unwrap();
    assert!(error.contains(name), "{error}");
    assert!(error.contains("not a torn write"), "{error}");
}

#[test]
fn a_missing_or_damaged_index_is_rebuilt_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let log = segmented_log(dir.path(), 200);
    let files = segments(dir.path());
    let index = files[1].with_extension("idx");
    let intact = fs::read(&index).unwrap();
    let mut garbled = intact.clone();
    garbled[25] ^= 0x01;
    for (damage, why) in [(None, "missing"), (Some(garbled), "checksum mismatch")] {
        match damage {
            None => fs::remove_file(&index).unwrap(),
            Some(bytes) => fs::write(&index, bytes).unwrap(),
        }
        let (_, recovered, report) = open_segmented(dir.path(), SMALL_SEGMENT_BYTES);
        assert_eq!(recovered.entries, log);
        assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
        let warning = &report.warnings[0];
        assert!(warning.contains("rebuilt the index"), "{warning}");
        assert!(warning.contains(files[1].to_str().unwrap()), "{warning}");
        assert!(warning.contains(why), "{warning}");
        assert_eq!(fs::read(&index).unwrap(), intact);
    }
}

#[test]
fn a_failed_write_while_sealing_stops_storage_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let (mut storage, _, _) = open_segmented(dir.path(), SMALL_SEGMENT_BYTES);
    let mut log = Vec::new();
    append_batches(&mut storage, &mut log, 1, 10, 5);
    // The disk refuses the sealing's index file (as a full disk would its write).
    let blocker = log_path(dir.path()).with_extension("idx.tmp");
    fs::create_dir(&blocker).unwrap();
    let big = Write {
        memberships: Vec::new(),
        id: WriteId(99),
        hard_state: None,
        install: None,
        truncate_after: None,
        entries: (11..=80)
            .map(|index| command(index, 1, &"y".repeat(60)))
            .collect(),
        sessions: Default::default(),
    };
    let error = storage.persist(std::slice::from_ref(&big)).unwrap_err();
    assert!(error.to_string().contains("idx.tmp"), "{error}");
    let again = storage.persist(&[big]).unwrap_err();
    assert!(matches!(again, StorageError::Poisoned { .. }), "{again}");
    drop(storage);
    fs::remove_dir(&blocker).unwrap();
    let (_, recovered, _) = open_segmented(dir.path(), SMALL_SEGMENT_BYTES);
    assert_eq!(recovered.entries, log);
}

/// A data directory written by replog before segments: one `log.jsonl` (three entries and
/// a torn fourth line, as a crash left it) and a `metadata.json` without `first_index`.
const OLD_FORMAT_FIXTURE: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/old-format");

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn an_old_format_directory_is_converted_with_nothing_lost() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(Path::new(OLD_FORMAT_FIXTURE), dir.path());
    let old = dir.path().join("1").join("log.jsonl");
    let old_bytes = fs::read(&old).unwrap();
    let (storage, recovered, report) = open(dir.path());
    assert!(!old.exists());
    let commands: Vec<String> = whole_log(&storage, &recovered)
        .iter()
        .map(|entry| match &entry.payload {
            Payload::Command(text) => text.to_string(),
            Payload::Noop => "noop".to_string(),
            Payload::Trim { before } => format!("trim<{}", before.0),
            Payload::Session {
                client,
                seq,
                command,
            } => format!("{client}#{seq}:{command}"),
            Payload::Config(membership) => format!("config {membership}"),
        })
        .collect();
    assert_eq!(commands, ["noop", "set a=1", "set b=2", "set c=3"]);
    assert_eq!(recovered.commit_index, Index(4));
    assert_eq!(recovered.hard_state, hard_state(1, Some(1)));
    assert!(
        report.notes.iter().any(|note| note.contains("converted")),
        "{report:?}"
    );
    // The torn fifth line is cut by the usual rule, with the usual warning.
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert!(
        report.warnings[0].contains("torn final line 5"),
        "{:?}",
        report.warnings
    );
    drop(storage);
    let segment = fs::read(log_path(dir.path())).unwrap();
    assert!(old_bytes.starts_with(&segment));
    let (_, again, report) = open(dir.path());
    assert_eq!(again, recovered);
    assert!(
        report.warnings.is_empty() && report.notes.is_empty(),
        "{report:?}"
    );
}

#[test]
fn an_old_log_beside_segments_is_refused_unless_it_is_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    storage_with_entries(dir.path(), 3);
    let old = dir.path().join("1").join("log.jsonl");
    fs::hard_link(log_path(dir.path()), &old).unwrap();
    let (storage, recovered, report) = open(dir.path());
    assert_eq!(recovered.entries.len(), 3);
    assert!(!old.exists(), "{report:?}");
    drop(storage);
    fs::copy(log_path(dir.path()), &old).unwrap();
    let error = open_error(dir.path());
    assert!(error.contains("log.jsonl"), "{error}");
    assert!(error.contains("two logs"), "{error}");
}

/// One batch of the segment model: cut back to a share of the log in a new term, append
/// commands of these lengths, then maybe reopen.
#[derive(Clone, Debug)]
struct SegmentBatch {
    cut_per_mille: Option<u64>,
    command_lengths: Vec<usize>,
    reopen: bool,
}

fn segment_batch_strategy() -> impl Strategy<Value = SegmentBatch> {
    (
        proptest::option::weighted(0.2, 0..1000u64),
        proptest::collection::vec(0..400usize, 0..30),
        proptest::bool::weighted(0.2),
    )
        .prop_map(|(cut_per_mille, command_lengths, reopen)| SegmentBatch {
            cut_per_mille,
            command_lengths,
            reopen,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(model_cases() / 4))]

    /// Appends, truncations (often into sealed segments) and reopens over small segments:
    /// every reopen and every range read gives exactly the model's entries.
    #[test]
    fn range_reads_across_segments_equal_the_written_entries(
        batches in proptest::collection::vec(segment_batch_strategy(), 1..24),
        ranges in proptest::collection::vec((any::<proptest::sample::Index>(), any::<proptest::sample::Index>()), 8),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (mut storage, _, _) = open_segmented(dir.path(), SMALL_SEGMENT_BYTES);
        let mut log: Vec<Entry> = Vec::new();
        let mut term = 1;
        for (k, batch) in batches.iter().enumerate() {
            let mut write = Write { memberships: Vec::new(),
                id: WriteId(k as u64 + 1),
                hard_state: Some(hard_state(term, None)),
                install: None,
                truncate_after: None,
                entries: vec![],
                sessions: Default::default(),
            };
            if let Some(per_mille) = batch.cut_per_mille {
                term += 1;
                write.hard_state = Some(hard_state(term, None));
                let keep = log.len() as u64 * per_mille / 1000;
                write.truncate_after = Some(Index(keep));
                log.truncate(keep as usize);
            }
            for &length in &batch.command_lengths {
                let entry = command(log.len() as u64 + 1, term, &"z".repeat(length));
                log.push(entry.clone());
                write.entries.push(entry);
            }
            storage.persist(&[write]).unwrap();
            if batch.reopen {
                drop(storage);
                let (reopened, recovered, report) = open_segmented(dir.path(), SMALL_SEGMENT_BYTES);
                storage = reopened;
                prop_assert!(report.warnings.is_empty(), "{:?}", report.warnings);
                prop_assert_eq!(&recovered.entries, &log);
            }
        }
        prop_assert_eq!(storage.last_index(), Index(log.len() as u64));
        if !log.is_empty() {
            for (a, b) in &ranges {
                let (a, b) = (a.index(log.len()), b.index(log.len()));
                let (from, to) = (a.min(b), a.max(b));
                let read = storage.read_entries(Index(from as u64 + 1), Index(to as u64 + 1)).unwrap();
                prop_assert_eq!(&read[..], &log[from..=to]);
            }
        }
        drop(storage);
        let (_, recovered, report) = open_segmented(dir.path(), SMALL_SEGMENT_BYTES);
        prop_assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        prop_assert_eq!(&recovered.entries, &log);
    }
}

// ---------------------------------------------------------------------------------------
// Retention (issue 9): a log that starts after index 1, trims and installs.

/// The first index in a segment file's name.
fn first_of(segment: &Path) -> u64 {
    segment
        .file_stem()
        .and_then(|stem| stem.to_str())
        .and_then(|stem| stem.parse().ok())
        .unwrap_or_else(|| panic!("not a segment: {}", segment.display()))
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).unwrap().len()
}

/// A log of `count` entries in term 1 over small segments, all of them committed.
fn committed_segmented_log(dir: &Path, count: u64) -> (Storage, Vec<Entry>) {
    let log = segmented_log(dir, count);
    let (mut storage, _, _) = open_segmented(dir, SMALL_SEGMENT_BYTES);
    storage.record_commit_index(Index(count)).unwrap();
    storage.flush_commit_index().unwrap();
    (storage, log)
}

/// Rewrites fields of `metadata.json` as a test needs them.
fn edit_metadata(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = metadata_path(dir);
    let mut value: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    edit(&mut value);
    fs::write(&path, serde_json::to_vec(&value).unwrap()).unwrap();
}

fn is_trimmed(error: &StorageError, first: u64, prev_term: u64) -> bool {
    matches!(error, StorageError::Trimmed { first_index, prev_term: term, .. }
        if *first_index == Index(first) && *term == Term(prev_term))
}

#[test]
fn a_trim_drops_exactly_the_whole_sealed_segments_before_the_point() {
    let dir = tempfile::tempdir().unwrap();
    let (mut storage, log) = committed_segmented_log(dir.path(), 400);
    let before = segments(dir.path());
    assert!(before.len() > 6, "{before:?}");
    // Inside the fourth segment: the first three go, the fourth keeps its entries before
    // the point, committed as they are.
    let point = first_of(&before[3]) + 3;
    let removed: u64 = before[..3].iter().map(|path| file_len(path)).sum();
    let bytes_before = storage.log_bytes();
    let outcome = storage.trim_before(Index(point)).unwrap();
    assert_eq!(
        outcome,
        TrimOutcome {
            first_index: Index(first_of(&before[3])),
            segments_removed: 3,
            bytes_removed: removed,
        }
    );
    assert_eq!(segments(dir.path()), before[3..]);
    for gone in &before[..3] {
        assert!(!gone.with_extension("idx").exists(), "{gone:?}");
    }
    assert_eq!(storage.log_bytes(), bytes_before - removed);
    assert_eq!(storage.segment_count(), before.len() - 3);
    let first = first_of(&before[3]);
    assert_eq!(storage.first_index(), Index(first));
    assert_eq!(storage.boundary(), log[first as usize - 2].id());
    let kept = &log[first as usize - 1..];
    assert_eq!(
        storage.read_entries(Index(first), Index(400)).unwrap(),
        kept
    );
    let error = storage
        .read_entries(Index(first - 1), Index(400))
        .unwrap_err();
    assert!(is_trimmed(&error, first, 1), "{error}");
    // A point inside the first kept segment removes nothing more.
    let again = storage.trim_before(Index(point)).unwrap();
    assert_eq!(
        (again.first_index, again.segments_removed),
        (Index(first), 0)
    );
    drop(storage);

    let (storage, recovered, report) = open_segmented(dir.path(), SMALL_SEGMENT_BYTES);
    assert!(
        report.warnings.is_empty() && report.notes.is_empty(),
        "{report:?}"
    );
    assert_eq!(storage.first_index(), Index(first));
    assert_eq!(recovered.commit_index, Index(400));
    assert_eq!(whole_log(&storage, &recovered), kept);
    assert_eq!(segments(dir.path()), before[3..]);
}

#[test]
fn a_trim_at_a_segment_start_drops_the_segment_before_it_and_never_the_open_one() {
    let dir = tempfile::tempdir().unwrap();
    let (mut storage, log) = committed_segmented_log(dir.path(), 200);
    let files = segments(dir.path());
    let outcome = storage.trim_before(Index(first_of(&files[2]))).unwrap();
    assert_eq!(outcome.segments_removed, 2);
    // Everything committed may go, but the open segment stays, holding the last entries.
    let open_first = first_of(files.last().unwrap());
    let outcome = storage.trim_before(Index(201)).unwrap();
    assert_eq!(outcome.first_index, Index(open_first));
    assert_eq!(segments(dir.path()), [files.last().unwrap().clone()]);
    let tail = &log[open_first as usize - 1..];
    assert_eq!(
        storage.read_entries(Index(open_first), Index(200)).unwrap(),
        tail
    );
    let mut log = log;
    append_batches(&mut storage, &mut log, 1, 10, 5);
    drop(storage);
    let (storage, recovered, _) = open_segmented(dir.path(), SMALL_SEGMENT_BYTES);
    assert_eq!(
        whole_log(&storage, &recovered),
        &log[open_first as usize - 1..]
    );
}

#[test]
fn a_trim_beyond_the_commit_index_is_refused_naming_it_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    segmented_log(dir.path(), 300);
    let (mut storage, _, _) = open_segmented(dir.path(), SMALL_SEGMENT_BYTES);
    storage.record_commit_index(Index(100)).unwrap();
    let files = segments(dir.path());
    let error = storage.trim_before(Index(102)).unwrap_err();
    assert!(
        matches!(error, StorageError::TrimBeyondCommit { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("commit index is 100"), "{error}");
    assert_eq!(segments(dir.path()), files);
    // Not a failure of the disk: the handle goes on, and the commit index covers 101.
    let outcome = storage.trim_before(Index(101)).unwrap();
    assert!(outcome.segments_removed > 0);
    assert!(outcome.first_index <= Index(101));
    drop(storage);
    // The trim wrote the pending commit index with the new first index.
    let (_, recovered, _) = open_segmented(dir.path(), SMALL_SEGMENT_BYTES);
    assert_eq!(recovered.commit_index, Index(100));
}

#[test]
fn a_crash_between_a_trims_metadata_and_its_deletions_removes_the_leftovers_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (mut storage, log) = committed_segmented_log(dir.path(), 300);
    let files = segments(dir.path());
    let saved: Vec<(PathBuf, Vec<u8>)> = files[..4]
        .iter()
        .flat_map(|path| [path.clone(), path.with_extension("idx")])
        .map(|path| {
            let bytes = fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    storage.trim_before(Index(first_of(&files[4]))).unwrap();
    drop(storage);
    // What a crash after the metadata left: every segment still there, or some of them
    // (the deletions were not yet durable), with or without their indices.
    for restored in [&saved[..], &saved[2..3], &saved[4..6]] {
        for (path, bytes) in restored {
            fs::write(path, bytes).unwrap();
        }
        let (storage, recovered, report) = open_segmented(dir.path(), SMALL_SEGMENT_BYTES);
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        let segments_restored = restored
            .iter()
            .filter(|(path, _)| path.extension().unwrap() == "jsonl");
        for (path, _) in segments_restored {
            let note = report
                .notes
                .iter()
                .find(|note| note.contains(path.to_str().unwrap()));
            let note = note.unwrap_or_else(|| panic!("no note for {path:?}: {report:?}"));
            assert!(
                note.contains("only entries before the log's first index"),
                "{note}"
            );
        }
        assert_eq!(segments(dir.path()), files[4..]);
        for (path, _) in restored {
            assert!(!path.exists(), "{path:?}");
        }
        assert_eq!(
            whole_log(&storage, &recovered),
            &log[first_of(&files[4]) as usize - 1..]
        );
    }
}

#[test]
fn a_fetch_before_the_first_index_is_trimmed_and_one_at_it_names_the_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let (mut storage, log) = committed_segmented_log(dir.path(), 200);
    let first = storage
        .trim_before(Index(first_of(&segments(dir.path())[2])))
        .unwrap()
        .first_index;
    let request = |from: u64| FetchRequest {
        peer: NodeId(2),
        from: Index(from),
        max_entries: 10,
        max_bytes: 1 << 20,
    };
    let error = storage.fetch(&request(first.0 - 1)).unwrap_err();
    assert!(is_trimmed(&error, first.0, 1), "{error}");
    let error = storage.fetch(&request(1)).unwrap_err();
    assert!(is_trimmed(&error, first.0, 1), "{error}");
    let fetched = storage.fetch(&request(first.0)).unwrap();
    assert_eq!(
        fetched.prev,
        EntryId {
            index: first.prev(),
            term: Term(1)
        }
    );
    assert_eq!(
        fetched.entries,
        &log[first.0 as usize - 1..first.0 as usize + 9]
    );
    let fetched = storage.fetch(&request(first.0 + 1)).unwrap();
    assert_eq!(fetched.prev, log[first.0 as usize - 1].id());
}

#[test]
fn a_first_segment_that_straddles_the_first_index_serves_only_entries_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let (storage, log) = committed_segmented_log(dir.path(), 200);
    drop(storage);
    let files = segments(dir.path());
    let first = first_of(&files[1]) + 4;
    edit_metadata(dir.path(), |meta| {
        meta["first_index"] = first.into();
        meta["prev_term"] = 1.into();
    });
    let (storage, recovered, report) = open_segmented(dir.path(), SMALL_SEGMENT_BYTES);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    // The first segment holds only entries before the first index: it goes, the second
    // stays and straddles it.
    let first_name = files[0].to_str().unwrap();
    assert!(
        report.notes.len() == 1 && report.notes[0].contains(first_name),
        "{report:?}"
    );
    assert_eq!(segments(dir.path()), files[1..]);
    assert!(first_of(&files[1]) < first);
    assert_eq!(storage.first_index(), Index(first));
    assert_eq!(whole_log(&storage, &recovered), &log[first as usize - 1..]);
    let read = storage
        .read_entries(Index(first), Index(first + 30))
        .unwrap();
    assert_eq!(read, &log[first as usize - 1..first as usize + 30]);
    let error = storage
        .read_entries(Index(first - 1), Index(first + 30))
        .unwrap_err();
    assert!(is_trimmed(&error, first, 1), "{error}");
    drop(storage);
    // The segment holds the entry before the first index in term 1, not 2.
    edit_metadata(dir.path(), |meta| meta["prev_term"] = 2.into());
    let error = open_segmented_error(dir.path());
    assert!(
        error.contains(&format!("entry {} has term 1", first - 1)),
        "{error}"
    );
    assert!(error.contains("metadata.json"), "{error}");
}

#[test]
fn a_first_index_before_the_oldest_segment_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let (mut storage, _) = committed_segmented_log(dir.path(), 200);
    let files = segments(dir.path());
    storage.trim_before(Index(first_of(&files[3]))).unwrap();
    drop(storage);
    edit_metadata(dir.path(), |meta| {
        meta["first_index"] = first_of(&files[2]).into()
    });
    let error = open_segmented_error(dir.path());
    let name = files[2].file_name().unwrap().to_str().unwrap();
    assert!(error.contains(name) && error.contains("missing"), "{error}");
    assert!(error.contains("says the log starts at index"), "{error}");
}

fn install_write(last: (u64, u64), data: &[u8], entries: Vec<Entry>) -> Write {
    Write {
        memberships: Vec::new(),
        id: WriteId(1000),
        hard_state: Some(hard_state(last.1, None)),
        install: Some(Install {
            membership: None,
            last: EntryId {
                index: Index(last.0),
                term: Term(last.1),
            },
            data: data.to_vec(),
            sessions: SessionsCheckpoint {
                through: Index(last.0),
                records: Vec::new(),
            },
        }),
        truncate_after: None,
        entries,
        sessions: Default::default(),
    }
}

#[test]
fn an_install_replaces_the_log_by_an_empty_one_after_its_last_entry() {
    let dir = tempfile::tempdir().unwrap();
    segmented_log(dir.path(), 300);
    let (mut storage, _, _) = open_segmented(dir.path(), SMALL_SEGMENT_BYTES);
    storage.record_commit_index(Index(100)).unwrap();
    let after: Vec<Entry> = (901..=905)
        .map(|index| command(index, 4, "after"))
        .collect();
    storage
        .persist(&[install_write((900, 4), b"state", after.clone())])
        .unwrap();
    assert_eq!(storage.first_index(), Index(901));
    assert_eq!(
        storage.boundary(),
        EntryId {
            index: Index(900),
            term: Term(4)
        }
    );
    assert_eq!(storage.snapshot().map(|s| &s.data[..]), Some(&b"state"[..]));
    assert_eq!(storage.read_entries(Index(901), Index(905)).unwrap(), after);
    let error = storage.read_entries(Index(900), Index(905)).unwrap_err();
    assert!(is_trimmed(&error, 901, 4), "{error}");
    drop(storage);
    assert_eq!(
        segments(dir.path()),
        [segment_dir(dir.path()).join("00000000000000000901.jsonl")]
    );
    let (mut storage, recovered, report) = open_segmented(dir.path(), SMALL_SEGMENT_BYTES);
    assert!(
        report.warnings.is_empty() && report.notes.is_empty(),
        "{report:?}"
    );
    assert_eq!(
        recovered,
        Recovered {
            membership: None,
            hard_state: hard_state(4, None),
            prev: EntryId {
                index: Index(900),
                term: Term(4)
            },
            entries: after.clone(),
            commit_index: Index(900),
            // The install's session table is kept with it.
            sessions: Some(SessionsCheckpoint {
                through: Index(900),
                records: Vec::new(),
            }),
        }
    );
    let snapshot = storage.snapshot().unwrap();
    assert_eq!(
        (snapshot.last.index, &snapshot.data[..]),
        (Index(900), &b"state"[..])
    );
    // An install with nothing after it: the log is the boundary alone.
    storage
        .persist(&[install_write((2000, 5), b"", vec![])])
        .unwrap();
    drop(storage);
    let (storage, recovered, _) = open_segmented(dir.path(), SMALL_SEGMENT_BYTES);
    assert_eq!(
        recovered.prev,
        EntryId {
            index: Index(2000),
            term: Term(5)
        }
    );
    assert!(recovered.entries.is_empty());
    assert_eq!(recovered.commit_index, Index(2000));
    assert_eq!(storage.last_index(), Index(2000));
    assert_eq!(storage.snapshot().unwrap().last.index, Index(2000));
    let core = RaftCore::new(
        Config::new(NODE, vec![NodeId(1), NodeId(2), NodeId(3)]),
        recovered,
    );
    assert!(core.is_ok(), "{:?}", core.err());
}

/// Files by path (below the data directory) and contents.
type Files = Vec<(PathBuf, Vec<u8>)>;

/// The files of a node directory, by name below it.
fn snapshot_of_dir(dir: &Path) -> Files {
    let mut files = Vec::new();
    let node = dir.join("1");
    for sub in [node.clone(), node.join("log")] {
        for entry in fs::read_dir(&sub).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                let bytes = fs::read(&path).unwrap();
                files.push((path.strip_prefix(dir).unwrap().to_path_buf(), bytes));
            }
        }
    }
    files.sort();
    files
}

fn restore_dir(dir: &Path, files: &[(PathBuf, Vec<u8>)]) {
    let _ = fs::remove_dir_all(dir.join("1"));
    fs::create_dir_all(dir.join("1").join("log")).unwrap();
    for (path, bytes) in files {
        fs::write(dir.join(path), bytes).unwrap();
    }
}

#[test]
fn every_crash_point_of_an_install_recovers_the_old_log_or_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let (mut storage, old_log) = committed_segmented_log(dir.path(), 200);
    drop(storage);
    let old = snapshot_of_dir(dir.path());
    (storage, _, _) = open_segmented(dir.path(), SMALL_SEGMENT_BYTES);
    storage
        .persist(&[install_write((500, 3), b"data", vec![])])
        .unwrap();
    drop(storage);
    let new = snapshot_of_dir(dir.path());
    let file = |files: &[(PathBuf, Vec<u8>)], name: &str| -> Vec<u8> {
        let found = files.iter().find(|(path, _)| path.ends_with(name));
        found.unwrap_or_else(|| panic!("no {name}")).1.clone()
    };
    let staged = |bytes: Vec<u8>| (PathBuf::from("1/snapshot.bin.tmp"), bytes);
    let metadata = |files| {
        (
            PathBuf::from("1/metadata.json"),
            file(files, "metadata.json"),
        )
    };
    let snapshot = file(&new, "snapshot.bin");
    let old_segments: Vec<_> = old
        .iter()
        .filter(|(path, _)| path.starts_with("1/log"))
        .cloned()
        .collect();
    let old_metadata = metadata(&old);
    let new_metadata = metadata(&new);
    let new_segment = (
        PathBuf::from("1/log/00000000000000000501.jsonl"),
        vec![0; 4096],
    );
    let with = |parts: &[&[(PathBuf, Vec<u8>)]]| parts.concat();
    // Each step of the install, in order: the state a crash right after it leaves.
    let states: Vec<(&str, Files, bool)> = vec![
        (
            "data half staged",
            with(&[&old, &[staged(snapshot[..20].to_vec())]]),
            false,
        ),
        (
            "data staged",
            with(&[&old, &[staged(snapshot.clone())]]),
            false,
        ),
        (
            "metadata replaced",
            with(&[
                &old_segments,
                &[new_metadata.clone(), staged(snapshot.clone())],
            ]),
            true,
        ),
        (
            "newer segments removed",
            with(&[
                &old_segments[..3],
                &[new_metadata.clone(), staged(snapshot.clone())],
            ]),
            true,
        ),
        (
            "all segments removed",
            vec![new_metadata.clone(), staged(snapshot.clone())],
            true,
        ),
        (
            "new segment created",
            vec![
                new_metadata.clone(),
                staged(snapshot.clone()),
                new_segment.clone(),
            ],
            true,
        ),
        ("data in place", new.clone(), true),
    ];
    assert!(old.contains(&old_metadata));
    for (step, files, installed) in states {
        restore_dir(dir.path(), &files);
        let (storage, recovered, report) = open_segmented(dir.path(), SMALL_SEGMENT_BYTES);
        assert!(report.warnings.is_empty(), "{step}: {:?}", report.warnings);
        if installed {
            assert_eq!(storage.first_index(), Index(501), "{step}");
            assert_eq!(
                recovered.prev,
                EntryId {
                    index: Index(500),
                    term: Term(3)
                },
                "{step}"
            );
            assert!(recovered.entries.is_empty(), "{step}");
            assert_eq!(storage.snapshot().unwrap().data, b"data", "{step}");
            assert_eq!(segments(dir.path()).len(), 1, "{step}");
        } else {
            assert_eq!(storage.first_index(), Index(1), "{step}");
            assert_eq!(whole_log(&storage, &recovered), old_log, "{step}");
            assert!(storage.snapshot().is_none(), "{step}");
        }
        // Every state but the last says what recovery removed or finished.
        let expected_notes = usize::from(step != "data in place");
        assert_eq!(report.notes.len(), expected_notes, "{step}: {report:?}");
        drop(storage);
        // What recovery did is durable and complete: a second start has nothing to do.
        let (_, again, report) = open_segmented(dir.path(), SMALL_SEGMENT_BYTES);
        assert!(
            report.warnings.is_empty() && report.notes.is_empty(),
            "{step}: {report:?}"
        );
        assert_eq!(again, recovered, "{step}");
        assert!(
            !dir.path().join("1").join("snapshot.bin.tmp").exists(),
            "{step}"
        );
    }
}

#[test]
fn a_damaged_snapshot_refuses_to_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut storage, _, _) = open(dir.path());
    storage
        .persist(&[install_write((50, 2), b"some state", vec![])])
        .unwrap();
    drop(storage);
    let path = dir.path().join("1").join("snapshot.bin");
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    let error = open_error(dir.path());
    assert!(
        error.contains("snapshot.bin") && error.contains("checksum"),
        "{error}"
    );
}

/// One batch of the retention model: maybe advance the commit index and trim before a
/// share of the committed log, then either install a log after an entry at or beyond the
/// commit index or cut back a share of the uncommitted suffix (each in a new term),
/// append commands of these lengths, and maybe reopen.
#[derive(Clone, Debug)]
struct RetentionBatch {
    commit_per_mille: Option<u64>,
    trim_per_mille: Option<u64>,
    install_ahead: Option<u64>,
    cut_per_mille: Option<u64>,
    command_lengths: Vec<usize>,
    reopen: bool,
}

fn retention_batch_strategy() -> impl Strategy<Value = RetentionBatch> {
    (
        proptest::option::weighted(0.5, 0..1000u64),
        proptest::option::weighted(0.3, 0..1000u64),
        proptest::option::weighted(0.08, 0..60u64),
        proptest::option::weighted(0.15, 0..1000u64),
        proptest::collection::vec(0..300usize, 0..30),
        proptest::bool::weighted(0.2),
    )
        .prop_map(
            |(commit_per_mille, trim_per_mille, install_ahead, cut_per_mille, lengths, reopen)| {
                RetentionBatch {
                    commit_per_mille,
                    trim_per_mille,
                    install_ahead,
                    cut_per_mille,
                    command_lengths: lengths,
                    reopen,
                }
            },
        )
}

/// The log as storage must hold it: `entries` follow `boundary`, and storage serves them
/// from `first` on (a trim keeps whole segments, so `first` may lie past `boundary`).
struct RetentionModel {
    boundary: EntryId,
    entries: Vec<Entry>,
    first: Index,
    commit: Index,
}

impl RetentionModel {
    fn last(&self) -> Index {
        self.boundary.index.plus(self.entries.len() as u64)
    }

    /// The entries storage serves: from the first index on.
    fn served(&self) -> &[Entry] {
        &self.entries[self.boundary.index.count_to(self.first.prev()) as usize..]
    }

    /// The id of the entry before `index`, for a fetch from it.
    fn before(&self, index: Index) -> EntryId {
        match index.prev().0.checked_sub(self.boundary.index.0 + 1) {
            Some(position) => self.entries[position as usize].id(),
            None => self.boundary,
        }
    }
}

fn check_retained(storage: &Storage, model: &RetentionModel) -> Result<(), TestCaseError> {
    prop_assert_eq!(storage.first_index(), model.first);
    prop_assert_eq!(storage.last_index(), model.last());
    let read = storage.read_entries(model.first, model.last()).unwrap();
    prop_assert_eq!(&read[..], model.served());
    let request = FetchRequest {
        peer: NodeId(2),
        from: model.first,
        max_entries: 3,
        max_bytes: 1 << 20,
    };
    let fetched = storage.fetch(&request).unwrap();
    prop_assert_eq!(fetched.prev, model.before(model.first));
    if model.first > Index(1) {
        let below = FetchRequest {
            from: model.first.prev(),
            ..request
        };
        let error = storage.fetch(&below).unwrap_err();
        prop_assert!(matches!(error, StorageError::Trimmed { .. }), "{}", error);
    }
    Ok(())
}

fn run_retention_model(batches: &[RetentionBatch]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let (mut storage, _, _) = open_segmented(dir.path(), SMALL_SEGMENT_BYTES);
    let mut model = RetentionModel {
        boundary: EntryId::ZERO,
        entries: Vec::new(),
        first: Index(1),
        commit: Index(0),
    };
    let mut term = 1;
    for (k, batch) in batches.iter().enumerate() {
        if let Some(per_mille) = batch.commit_per_mille {
            let by = model.commit.count_to(model.last()) * per_mille / 1000;
            model.commit = model.commit.plus(by);
            storage.record_commit_index(model.commit).unwrap();
        }
        if let Some(per_mille) = batch.trim_per_mille {
            let before = model
                .first
                .plus(model.first.count_to(model.commit.next()) * per_mille / 1000);
            let outcome = storage.trim_before(before).unwrap();
            prop_assert!(outcome.first_index >= model.first && outcome.first_index <= before);
            model.first = outcome.first_index;
            // Whole segments only: the first one kept reaches the trim point.
            let files = segments(dir.path());
            prop_assert_eq!(first_of(&files[0]), model.first.0);
            prop_assert!(files.len() == 1 || first_of(&files[1]) > before.0);
        }
        let mut write = Write {
            memberships: Vec::new(),
            id: WriteId(k as u64 + 1),
            hard_state: Some(hard_state(term, None)),
            install: None,
            truncate_after: None,
            entries: vec![],
            sessions: Default::default(),
        };
        if let Some(ahead) = batch.install_ahead {
            term += 1;
            let last = EntryId {
                index: model.commit.plus(ahead).max(Index(1)),
                term: Term(term),
            };
            write.hard_state = Some(hard_state(term, None));
            write.install = Some(Install {
                membership: None,
                last,
                data: format!("state at {}", last.index.0).into_bytes(),
                sessions: SessionsCheckpoint {
                    through: last.index,
                    records: Vec::new(),
                },
            });
            model = RetentionModel {
                boundary: last,
                entries: Vec::new(),
                first: last.index.next(),
                commit: last.index,
            };
        } else if let Some(per_mille) = batch.cut_per_mille {
            term += 1;
            write.hard_state = Some(hard_state(term, None));
            let keep = model
                .commit
                .plus(model.commit.count_to(model.last()) * per_mille / 1000);
            write.truncate_after = Some(keep);
            model
                .entries
                .truncate(model.boundary.index.count_to(keep) as usize);
        }
        for &length in &batch.command_lengths {
            let entry = command(model.last().next().0, term, &"r".repeat(length));
            model.entries.push(entry.clone());
            write.entries.push(entry);
        }
        storage.persist(&[write]).unwrap();
        check_retained(&storage, &model)?;
        if batch.reopen {
            storage.flush_commit_index().unwrap();
            drop(storage);
            let (reopened, recovered, report) = open_segmented(dir.path(), SMALL_SEGMENT_BYTES);
            storage = reopened;
            prop_assert!(
                report.warnings.is_empty() && report.notes.is_empty(),
                "{:?}",
                report
            );
            prop_assert_eq!(recovered.commit_index, model.commit);
            prop_assert_eq!(&whole_log(&storage, &recovered)[..], model.served());
            check_retained(&storage, &model)?;
            let voters = vec![NodeId(1), NodeId(2), NodeId(3)];
            let core = RaftCore::new(Config::new(NODE, voters), recovered);
            prop_assert!(core.is_ok(), "RaftCore::new refused: {:?}", core.err());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(model_cases() / 4))]

    /// Trims and installs mixed into appends, truncations, commits and reopens over small
    /// segments: storage always serves exactly the model's entries from its first index,
    /// names the boundary before them, and refuses what lies before it.
    #[test]
    fn trims_and_installs_keep_exactly_the_models_entries_from_the_first_index(
        batches in proptest::collection::vec(retention_batch_strategy(), 1..24),
    ) {
        run_retention_model(&batches)?;
    }
}
