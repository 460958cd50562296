//! `sessions.json`: the newest session checkpoint the core wrote (the replicated table of
//! exactly-once appends, as of an applied index), replaced atomically as `metadata.json`
//! is: written to `sessions.json.tmp`, fsynced, renamed over, directory fsynced.
//!
//! The file is absent until the first checkpoint, which the core writes in the step that
//! applies the first session entry; the storage thread records a commit index only after
//! the writes of the same batch, so without the file (or with an empty table in it) no
//! session entry is applied up to the recorded commit index, and the table is empty
//! there (`SessionsCheckpoint::through_given`). Written before an install's
//! metadata (its log may start after the old checkpoint's `through`).

use super::error::{io_error, StorageError};
use super::metadata::replace_durably;
use replog_core::SessionsCheckpoint;
use std::fs;
use std::io::ErrorKind;
use std::path::Path;

pub(crate) const FILE_NAME: &str = "sessions.json";
const TEMP_FILE_NAME: &str = "sessions.json.tmp";

/// Reads `sessions.json` in `dir`; `None` when the file does not exist.
pub(crate) fn read(dir: &Path) -> Result<Option<SessionsCheckpoint>, StorageError> {
    let path = dir.join(FILE_NAME);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error(&path, "reading")(error)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|error| StorageError::Metadata {
            path,
            problem: format!("garbled session checkpoint: {error}"),
        })
}

/// Atomically replaces `sessions.json` in `dir` and makes the replacement durable.
pub(crate) fn write(dir: &Path, checkpoint: &SessionsCheckpoint) -> Result<(), StorageError> {
    let mut bytes = serde_json::to_vec(checkpoint).expect("a checkpoint always serializes");
    bytes.push(b'\n');
    replace_durably(&dir.join(FILE_NAME), &dir.join(TEMP_FILE_NAME), &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use replog_core::{ClientId, EntryId, Index, SessionRecord, Term};
    use std::num::NonZeroU64;

    #[test]
    fn a_checkpoint_round_trips_and_garbage_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        let checkpoint = SessionsCheckpoint {
            through: Index(9),
            records: vec![SessionRecord {
                client: ClientId::new("abc").unwrap(),
                seq: NonZeroU64::new(3).unwrap(),
                at: EntryId {
                    index: Index(7),
                    term: Term(2),
                },
            }],
        };
        write(dir.path(), &checkpoint).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(checkpoint));
        assert!(!dir.path().join(TEMP_FILE_NAME).exists());
        fs::write(dir.path().join(FILE_NAME), b"{\"through\":").unwrap();
        let error = read(dir.path()).unwrap_err().to_string();
        assert!(error.contains("sessions.json"), "{error}");
    }
}
