//! `metadata.json`: current term, vote and commit index, replaced atomically.
//!
//! ```text
//! {"current_term":3,"voted_for":2,"commit_index":17,"first_index":1,"prev_term":0}
//! ```
//!
//! `first_index` is the log's first index and `prev_term` the term of the entry before it
//! (1 and 0 until the log's start is trimmed). Files written before they existed lack
//! them and read as those defaults.
//!
//! Replacement writes `metadata.json.tmp`, fsyncs it, renames it over `metadata.json` and
//! fsyncs the directory. rename(2) is atomic, so after a crash the file is wholly the old
//! version or wholly the new one; the directory fsync makes the rename itself durable.

use super::error::{io_error, StorageError};
use replog_core::{HardState, Index, NodeId, Term};
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::{ErrorKind, Write as _};
use std::path::Path;

pub(crate) const FILE_NAME: &str = "metadata.json";
const TEMP_FILE_NAME: &str = "metadata.json.tmp";

/// What `metadata.json` holds, as checked values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Metadata {
    pub hard_state: HardState,
    /// A restart hint: entries up to here were committed. Never beyond the durable log.
    pub commit_index: Index,
    /// The log's first index: entries below it were trimmed away.
    pub first_index: Index,
    /// The term of the entry before `first_index`; 0 if there is none.
    pub prev_term: Term,
}

impl Default for Metadata {
    fn default() -> Metadata {
        Metadata {
            hard_state: HardState::default(),
            commit_index: Index(0),
            first_index: Index(1),
            prev_term: Term(0),
        }
    }
}

/// The file's exact shape; unknown fields are refused rather than ignored.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetadataFile {
    current_term: u64,
    voted_for: Option<u64>,
    commit_index: u64,
    #[serde(default = "first_index_before_segments")]
    first_index: u64,
    #[serde(default)]
    prev_term: u64,
}

/// What a file written before `first_index` existed means: the log starts at 1.
fn first_index_before_segments() -> u64 {
    1
}

/// Reads `metadata.json` in `dir`; `None` when the file does not exist.
pub(crate) fn read(dir: &Path) -> Result<Option<Metadata>, StorageError> {
    let path = dir.join(FILE_NAME);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error(&path, "reading")(error)),
    };
    let garbled = |problem: String| StorageError::Metadata {
        path: path.clone(),
        problem: format!("garbled metadata: {problem}"),
    };
    let file: MetadataFile =
        serde_json::from_slice(&bytes).map_err(|error| garbled(error.to_string()))?;
    if file.voted_for == Some(0) {
        return Err(garbled("voted_for is 0, which is no node id".to_string()));
    }
    if file.first_index == 0 {
        return Err(garbled(
            "first_index is 0; the log starts at 1 or later".to_string(),
        ));
    }
    Ok(Some(Metadata {
        hard_state: HardState {
            term: Term(file.current_term),
            voted_for: file.voted_for.map(NodeId),
        },
        commit_index: Index(file.commit_index),
        first_index: Index(file.first_index),
        prev_term: Term(file.prev_term),
    }))
}

/// Atomically replaces `metadata.json` in `dir` and makes the replacement durable.
pub(crate) fn write(dir: &Path, metadata: &Metadata) -> Result<(), StorageError> {
    let file = MetadataFile {
        current_term: metadata.hard_state.term.0,
        voted_for: metadata.hard_state.voted_for.map(|id| id.0),
        commit_index: metadata.commit_index.0,
        first_index: metadata.first_index.0,
        prev_term: metadata.prev_term.0,
    };
    let mut bytes = serde_json::to_vec(&file).expect("metadata always serializes");
    bytes.push(b'\n');
    replace_durably(&dir.join(FILE_NAME), &dir.join(TEMP_FILE_NAME), &bytes)
}

/// Replaces `path` with `bytes` so that a crash leaves the old file or the new one, never a
/// mix: write `temp_path`, fsync it, rename it over `path`, fsync the directory.
pub(crate) fn replace_durably(
    path: &Path,
    temp_path: &Path,
    bytes: &[u8],
) -> Result<(), StorageError> {
    let mut temp = File::create(temp_path).map_err(io_error(temp_path, "creating"))?;
    temp.write_all(bytes)
        .map_err(io_error(temp_path, "writing"))?;
    temp.sync_all().map_err(io_error(temp_path, "fsync"))?;
    drop(temp);
    fs::rename(temp_path, path).map_err(io_error(path, "renaming the temp file over"))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Fsyncs a directory, which makes creations, renames and removals inside it durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(io_error(dir, "fsync of directory"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        let metadata = Metadata {
            hard_state: HardState {
                term: Term(3),
                voted_for: Some(NodeId(2)),
            },
            commit_index: Index(17),
            ..Metadata::default()
        };
        write(dir.path(), &metadata).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(metadata));
        assert!(!dir.path().join(TEMP_FILE_NAME).exists());
        let text = fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert_eq!(
            text,
            "{\"current_term\":3,\"voted_for\":2,\"commit_index\":17,\"first_index\":1,\"prev_term\":0}\n"
        );
    }

    #[test]
    fn a_file_from_before_segments_reads_with_the_log_starting_at_1() {
        let dir = tempfile::tempdir().unwrap();
        let old = "{\"current_term\":3,\"voted_for\":null,\"commit_index\":4}\n";
        fs::write(dir.path().join(FILE_NAME), old).unwrap();
        let metadata = read(dir.path()).unwrap().unwrap();
        assert_eq!(metadata.first_index, Index(1));
        assert_eq!(metadata.prev_term, Term(0));
        assert_eq!(metadata.commit_index, Index(4));
    }

    #[test]
    fn garbled_metadata_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        for garbage in [
            &b"{\"current_term\":3"[..],
            b"",
            b"\0\0\0\0",
            b"{\"current_term\":3,\"voted_for\":null,\"commit_index\":1,\"extra\":1}",
            b"{\"current_term\":3,\"voted_for\":0,\"commit_index\":1}",
            b"{\"current_term\":-1,\"voted_for\":null,\"commit_index\":1}",
        ] {
            fs::write(dir.path().join(FILE_NAME), garbage).unwrap();
            let error = read(dir.path()).unwrap_err().to_string();
            assert!(error.contains("metadata.json"), "{error}");
            assert!(error.contains("garbled"), "{error}");
        }
    }
}
