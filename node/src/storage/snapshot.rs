//! `snapshot.bin`: what the last install put before the log, and the entry it ends at.
//!
//! ```text
//! {"crc":"84311546","last_index":812,"last_term":3,"bytes":5,"data_crc":"3610a686"}
//! hello
//! ```
//!
//! One checksummed header line in the style of the log's, then `bytes` bytes of data (the
//! `Install.data` the core handed over, opaque here), checked by `data_crc`.
//!
//! The file is also the install's progress marker. An install writes its data to
//! `snapshot.bin.tmp` durably, then the new start to `metadata.json` (the install's commit
//! point), replaces the log, and only then renames the temp file over `snapshot.bin`. So a
//! complete temp file whose last entry is exactly where `metadata.json` says the log
//! starts, with the commit index there too, is an install a crash interrupted after its
//! commit point: recovery finishes it (see `finish_interrupted_install`). Any other temp
//! file belongs to an install that never took effect, and goes.

use super::error::{io_error, StorageError};
use super::line::{check_record, seal_record, UNSEALED_HEADER};
use super::log_dir;
use super::metadata::{sync_dir, Metadata};
use super::recovery::Start;
use super::segment;
use replog_core::{EntryId, Index, Install, Term};
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::{ErrorKind, Write as _};
use std::path::Path;

pub(crate) const FILE_NAME: &str = "snapshot.bin";
const STAGED_FILE_NAME: &str = "snapshot.bin.tmp";

/// The header line's exact shape; unknown fields are refused rather than ignored.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    #[serde(default, skip_serializing)]
    #[allow(dead_code)] // Checked from the raw bytes; present so the JSON is complete.
    crc: String,
    last_index: u64,
    last_term: u64,
    bytes: u64,
    data_crc: String,
}

fn encode(install: &Install) -> Vec<u8> {
    let header = Header {
        crc: String::new(),
        last_index: install.last.index.0,
        last_term: install.last.term.0,
        bytes: install.data.len() as u64,
        data_crc: format!("{:08x}", crc32fast::hash(&install.data)),
    };
    let json = serde_json::to_vec(&header).expect("a header always serializes");
    let mut out = UNSEALED_HEADER.to_vec();
    out.extend_from_slice(&json[1..]);
    seal_record(&mut out, 0);
    out.extend_from_slice(&install.data);
    out
}

/// Reads a file back; `Err` says what is wrong with it.
fn decode(bytes: &[u8]) -> Result<Install, String> {
    let end = bytes
        .iter()
        .position(|&byte| byte == b'\n')
        .ok_or("no header line")?;
    let line = &bytes[..end];
    check_record(line).map_err(|problem| format!("header: {problem}"))?;
    let header: Header =
        serde_json::from_slice(line).map_err(|error| format!("header: {error}"))?;
    let data = &bytes[end + 1..];
    if data.len() as u64 != header.bytes {
        return Err(format!(
            "the header says {} bytes of data, the file holds {}",
            header.bytes,
            data.len()
        ));
    }
    let computed = format!("{:08x}", crc32fast::hash(data));
    if computed != header.data_crc {
        return Err(format!(
            "data checksum mismatch (stored {}, computed {computed})",
            header.data_crc
        ));
    }
    Ok(Install {
        last: EntryId {
            index: Index(header.last_index),
            term: Term(header.last_term),
        },
        data: data.to_vec(),
        // The table that came with it is kept in `sessions.json`.
        sessions: Default::default(),
        // And the configuration in `membership.json`.
        membership: None,
    })
}

/// Writes `install` to `snapshot.bin.tmp` in `dir` and makes it durable, file and name,
/// before the caller writes the metadata that makes it count.
pub(crate) fn stage(dir: &Path, install: &Install) -> Result<(), StorageError> {
    let path = dir.join(STAGED_FILE_NAME);
    let mut file = File::create(&path).map_err(io_error(&path, "creating"))?;
    file.write_all(&encode(install))
        .map_err(io_error(&path, "writing"))?;
    file.sync_all().map_err(io_error(&path, "fsync"))?;
    sync_dir(dir)
}

/// Renames the staged file over `snapshot.bin` durably: the install is complete.
pub(crate) fn promote(dir: &Path) -> Result<(), StorageError> {
    let path = dir.join(FILE_NAME);
    fs::rename(dir.join(STAGED_FILE_NAME), &path)
        .map_err(io_error(&path, "renaming the temp file over"))?;
    sync_dir(dir)
}

/// At start: finishes or discards what an interrupted install left, then reads
/// `snapshot.bin`. Returns it (if any) and notes for the node's log.
pub(crate) fn recover(
    dir: &Path,
    meta: &Metadata,
) -> Result<(Option<Install>, Vec<String>), StorageError> {
    let mut notes = Vec::new();
    let staged_path = dir.join(STAGED_FILE_NAME);
    if let Some(bytes) = read_if_present(&staged_path)? {
        let boundary = EntryId {
            index: meta.first_index.prev(),
            term: meta.prev_term,
        };
        match decode(&bytes) {
            Ok(install) if install.last == boundary && meta.commit_index == boundary.index => {
                notes.push(finish_interrupted_install(dir, boundary)?);
            }
            _ => {
                segment::remove_if_present(&staged_path)?;
                sync_dir(dir)?;
                notes.push(format!(
                    "removed {}: the data of an install that a crash interrupted before it \
                     took effect",
                    staged_path.display()
                ));
            }
        }
    }
    let path = dir.join(FILE_NAME);
    let Some(bytes) = read_if_present(&path)? else {
        return Ok((None, notes));
    };
    let install = decode(&bytes).map_err(|problem| StorageError::Snapshot {
        path: path.clone(),
        problem: format!("damaged ({problem}); refusing to start without it"),
    })?;
    if install.last.index >= meta.first_index {
        return Err(StorageError::Snapshot {
            path,
            problem: format!(
                "ends at index {}, but {} says the log starts at {}; the two belong to \
                 different logs",
                install.last.index.0,
                super::metadata::FILE_NAME,
                meta.first_index.0
            ),
        });
    }
    Ok((Some(install), notes))
}

/// Redoes an install's steps after its commit point: the log replaced by an empty one
/// after `boundary`, then the staged data renamed into place.
fn finish_interrupted_install(dir: &Path, boundary: EntryId) -> Result<String, StorageError> {
    let log_dir = dir.join(segment::DIR_NAME);
    match fs::create_dir(&log_dir) {
        Ok(()) => sync_dir(dir)?,
        Err(error) if error.kind() == ErrorKind::AlreadyExists => {}
        Err(error) => return Err(io_error(&log_dir, "creating directory")(error)),
    }
    let start = Start {
        first_index: boundary.index.next(),
        prev_term: boundary.term,
    };
    let path = log_dir::replace_all(&log_dir, start)?;
    promote(dir)?;
    Ok(format!(
        "finished an install that a crash interrupted: the log now starts empty at {}, \
         after entry {} of term {}",
        path.display(),
        boundary.index.0,
        boundary.term.0
    ))
}

fn read_if_present(path: &Path) -> Result<Option<Vec<u8>>, StorageError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(None),
        Err(error) => Err(io_error(path, "reading")(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn install(data: &[u8]) -> Install {
        Install {
            membership: None,
            last: EntryId {
                index: Index(812),
                term: Term(3),
            },
            data: data.to_vec(),
            sessions: Default::default(),
        }
    }

    #[test]
    fn a_snapshot_round_trips_and_matches_the_documented_example() {
        let encoded = encode(&install(b"hello"));
        assert_eq!(decode(&encoded).unwrap(), install(b"hello"));
        let text = String::from_utf8(encoded).unwrap();
        assert_eq!(
            text,
            "{\"crc\":\"84311546\",\"last_index\":812,\"last_term\":3,\"bytes\":5,\
             \"data_crc\":\"3610a686\"}\nhello"
        );
        assert_eq!(decode(&encode(&install(b""))).unwrap(), install(b""));
    }

    #[test]
    fn any_damage_or_truncation_is_detected() {
        let encoded = encode(&install(b"some data\nwith a newline"));
        for cut in 0..encoded.len() {
            assert!(decode(&encoded[..cut]).is_err(), "cut at {cut}");
        }
        for byte in 0..encoded.len() {
            let mut damaged = encoded.clone();
            damaged[byte] ^= 0x20;
            assert!(decode(&damaged).is_err(), "flip at byte {byte}");
        }
    }
}
