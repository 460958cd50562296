//! `membership.json`: the configurations the core applied ([`MembershipHistory`]: every
//! applied configuration entry from the newest at or before the log's boundary on),
//! replaced atomically as `sessions.json` is. A restart hands the newest back to the core;
//! a fetch answered `Trimmed` names the one at the boundary, which the follower's install
//! keeps in place of its own history.
//!
//! The file is absent until the first configuration entry is applied: the cluster then
//! still runs with its bootstrap configuration (`cluster.json`'s members). The core writes
//! a checkpoint in the step that applies the entry, and the storage thread records a
//! commit index only after that step's writes, so no applied configuration is missing
//! below the recorded commit index.

use super::error::{io_error, StorageError};
use super::metadata::replace_durably;
use replog_core::MembershipHistory;
use std::fs;
use std::io::ErrorKind;
use std::path::Path;

pub(crate) const FILE_NAME: &str = "membership.json";
const TEMP_FILE_NAME: &str = "membership.json.tmp";

/// Reads `membership.json` in `dir`; an empty history when the file does not exist.
pub(crate) fn read(dir: &Path) -> Result<MembershipHistory, StorageError> {
    let path = dir.join(FILE_NAME);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(Default::default()),
        Err(error) => return Err(io_error(&path, "reading")(error)),
    };
    serde_json::from_slice(&bytes).map_err(|error| StorageError::Metadata {
        path,
        problem: format!("garbled configuration history: {error}"),
    })
}

/// Atomically replaces `membership.json` in `dir` and makes the replacement durable.
pub(crate) fn write(dir: &Path, history: &MembershipHistory) -> Result<(), StorageError> {
    let mut bytes = serde_json::to_vec(history).expect("a history always serializes");
    bytes.push(b'\n');
    replace_durably(&dir.join(FILE_NAME), &dir.join(TEMP_FILE_NAME), &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use replog_core::{Index, Membership, MembershipCheckpoint, NodeId};

    #[test]
    fn a_history_round_trips_and_garbage_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), MembershipHistory::default());
        let mut history = MembershipHistory::default();
        history.record(MembershipCheckpoint {
            index: Index(4),
            membership: Membership::bootstrap(&[NodeId(1), NodeId(2)]),
        });
        write(dir.path(), &history).unwrap();
        assert_eq!(read(dir.path()).unwrap(), history);
        assert!(!dir.path().join(TEMP_FILE_NAME).exists());
        fs::write(
            dir.path().join(FILE_NAME),
            br#"{"checkpoints":[{"index":4,"membership":[]}]}"#,
        )
        .unwrap();
        let error = read(dir.path()).unwrap_err().to_string();
        assert!(error.contains("membership.json"), "{error}");
        assert!(error.contains("at least one voter"), "{error}");
    }
}
