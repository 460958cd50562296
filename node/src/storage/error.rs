//! What can go wrong with durable storage, worded so an operator can find the bad byte.

use replog_core::{Index, Term};
use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why one line of a log segment cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineProblem {
    /// The line does not start with the `{"crc":"XXXXXXXX",` header.
    MissingChecksum,
    /// The stored checksum does not match the line's content.
    ChecksumMismatch { stored: u32, computed: u32 },
    /// The checksum matched but the content is not a valid entry.
    Parse(String),
    /// The line does not carry the index that follows the line before it.
    IndexGap { expected: Index, found: Index },
    /// Term 0 belongs to no entry.
    ZeroTerm,
    /// The term is smaller than the previous entry's term.
    TermDecreases { term: Term, previous: Term },
}

impl fmt::Display for LineProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineProblem::MissingChecksum => f.write_str("no checksum header"),
            LineProblem::ChecksumMismatch { stored, computed } => write!(
                f,
                "checksum mismatch (stored {stored:08x}, computed {computed:08x})"
            ),
            LineProblem::Parse(message) => write!(f, "not a valid entry: {message}"),
            LineProblem::IndexGap { expected, found } => write!(
                f,
                "index gap: expected index {}, found {}",
                expected.0, found.0
            ),
            LineProblem::ZeroTerm => f.write_str("term 0 on an entry"),
            LineProblem::TermDecreases { term, previous } => {
                write!(f, "term decreases: {} after {}", term.0, previous.0)
            }
        }
    }
}

/// A storage failure. Every variant names the file involved.
#[derive(Debug)]
pub enum StorageError {
    /// An operating-system call failed. After a failed fsync the node must stop: the kernel
    /// may have dropped the dirty pages, so retrying could report success for lost data.
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    /// A line of the open segment is damaged in a way no interrupted write explains (see
    /// `recovery.rs`); refusing to drop it and the lines after it.
    CorruptLine {
        path: PathBuf,
        line: u64,
        problem: LineProblem,
    },
    /// `metadata.json` is missing while the log is not empty, or cannot be read as metadata.
    Metadata { path: PathBuf, problem: String },
    /// The files are each well-formed but contradict each other.
    Inconsistent { path: PathBuf, problem: String },
    /// The caller asked to record a commit index the durable log does not reach.
    CommitBeyondLog {
        path: PathBuf,
        commit_index: Index,
        last_index: Index,
    },
    /// A sealed segment, or the chain of segments, is damaged or incomplete. Sealed
    /// segments are never written again, so this is never a torn write.
    Segment { path: PathBuf, problem: String },
    /// A range read asked for entries the log does not hold.
    OutsideLog {
        path: PathBuf,
        from: Index,
        to: Index,
        first_index: Index,
        last_index: Index,
    },
    /// `snapshot.bin` is damaged, or does not fit the log.
    Snapshot { path: PathBuf, problem: String },
    /// A read or fetch asked for entries before the log's first index: they were trimmed
    /// (or replaced by an install). Not damage: the caller can serve the boundary instead,
    /// `first_index - 1` in `prev_term`, e.g. by sending an install.
    Trimmed {
        path: PathBuf,
        from: Index,
        first_index: Index,
        prev_term: Term,
    },
    /// A trim was asked to drop entries the recorded commit index does not cover.
    TrimBeyondCommit {
        path: PathBuf,
        before: Index,
        commit_index: Index,
    },
    /// A storage option the log cannot work with.
    BadOption { problem: String },
    /// Another process holds this node's storage open.
    Locked { path: PathBuf },
    /// An earlier call failed, so the files may no longer match what this handle believes.
    Poisoned { path: PathBuf },
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::Io {
                path,
                action,
                source,
            } => write!(f, "{}: {action} failed: {source}", path.display()),
            StorageError::CorruptLine {
                path,
                line,
                problem,
            } => write!(
                f,
                "{}: line {line} is corrupt ({problem}); refusing to start rather than drop \
                 this line and the ones after it",
                path.display()
            ),
            StorageError::Metadata { path, problem } => {
                write!(f, "{}: {problem}", path.display())
            }
            StorageError::Inconsistent { path, problem } => {
                write!(f, "{}: {problem}", path.display())
            }
            StorageError::CommitBeyondLog {
                path,
                commit_index,
                last_index,
            } => write!(
                f,
                "{}: commit index {} lies beyond the durable log (last index {})",
                path.display(),
                commit_index.0,
                last_index.0
            ),
            StorageError::Segment { path, problem } => {
                write!(f, "{}: {problem}", path.display())
            }
            StorageError::OutsideLog {
                path,
                from,
                to,
                first_index,
                last_index,
            } => write!(
                f,
                "{}: entries {}..={} asked for, but the log holds {}..={}",
                path.display(),
                from.0,
                to.0,
                first_index.0,
                last_index.0
            ),
            StorageError::Snapshot { path, problem } => {
                write!(f, "{}: {problem}", path.display())
            }
            StorageError::Trimmed {
                path,
                from,
                first_index,
                prev_term,
            } => write!(
                f,
                "{}: entry {} asked for, but the log now starts at index {} (entries before \
                 it were trimmed; the one before it has term {})",
                path.display(),
                from.0,
                first_index.0,
                prev_term.0
            ),
            StorageError::TrimBeyondCommit {
                path,
                before,
                commit_index,
            } => write!(
                f,
                "{}: refusing to trim entries before index {}: the commit index is {}, so \
                 only entries before {} may go",
                path.display(),
                before.0,
                commit_index.0,
                commit_index.0 + 1
            ),
            StorageError::BadOption { problem } => f.write_str(problem),
            StorageError::Locked { path } => write!(
                f,
                "{}: locked by another process; is a node with this id already running \
                 on this data directory?",
                path.display()
            ),
            StorageError::Poisoned { path } => write!(
                f,
                "{}: an earlier storage operation failed; restart the node to recover",
                path.display()
            ),
        }
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StorageError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Wraps an `io::Error` with the file and the action that failed.
pub(crate) fn io_error<'a>(
    path: &'a std::path::Path,
    action: &'static str,
) -> impl FnOnce(io::Error) -> StorageError + 'a {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}
