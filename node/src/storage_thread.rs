//! The storage thread: the only thread that touches the node's files once it runs.
//!
//! It takes every job queued since its last fsync, makes all their writes durable with one
//! `persist` call (group commit: one write and one fsync however many proposals and
//! messages produced them), and reports the highest write id back to the core thread.
//! A storage error stops the node: after a failed fsync the kernel may have dropped the
//! dirty pages, so carrying on could acknowledge data that is not on disk.

use crate::storage::{Storage, StorageError};
use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};
use replog_core::{Index, Write, WriteId};
use std::thread::JoinHandle;
use std::time::Duration;

/// Work for the storage thread, sent once per core-loop iteration that produced any.
pub struct StorageJob {
    /// In write-id order, continuing the previous job's.
    pub writes: Vec<Write>,
    /// The core's applied index: committed and durable, so safe to record as the restart
    /// hint (storage refuses a hint beyond its durable log).
    pub commit_hint: Index,
}

/// What the storage thread reports back.
pub enum StorageEvent {
    /// Every write up to this id is durable.
    Persisted(WriteId),
    /// Storage failed; the node must stop. The text names the file and the problem.
    Failed(String),
}

/// How often a pending commit hint is offered to storage while no writes arrive (storage
/// itself decides whether enough time has passed to write it).
const HINT_RETRY: Duration = Duration::from_millis(100);

/// Handles on a running storage thread: jobs go in, events come out, and the thread
/// exits once `jobs` is dropped and its queue is done, returning its failure if any.
pub struct StorageThread {
    pub jobs: Sender<StorageJob>,
    pub events: Receiver<StorageEvent>,
    pub handle: JoinHandle<Option<String>>,
}

impl StorageThread {
    pub fn spawn(storage: Storage) -> std::io::Result<StorageThread> {
        let (jobs, jobs_rx) = unbounded();
        let (events_tx, events) = unbounded();
        let handle = std::thread::Builder::new()
            .name("storage".into())
            .spawn(move || run(storage, jobs_rx, events_tx))?;
        Ok(StorageThread {
            jobs,
            events,
            handle,
        })
    }
}

/// Returns the failure that stopped the thread, if one did.
fn run(
    mut storage: Storage,
    jobs: Receiver<StorageJob>,
    events: Sender<StorageEvent>,
) -> Option<String> {
    let mut writes = Vec::new();
    let mut hint = Index::ZERO;
    let mut hint_pending = false;
    loop {
        let first = if hint_pending {
            match jobs.recv_timeout(HINT_RETRY) {
                Ok(job) => Some(job),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match jobs.recv() {
                Ok(job) => Some(job),
                Err(_) => break,
            }
        };
        for job in first.into_iter().chain(jobs.try_iter()) {
            writes.extend(job.writes);
            hint = hint.max(job.commit_hint);
        }
        if let Some(last) = writes.last() {
            let last_id = last.id;
            if let Err(error) = storage.persist(&writes) {
                return fail(&events, error);
            }
            writes.clear();
            // A closed channel means the core thread has stopped; finish quietly.
            let _ = events.send(StorageEvent::Persisted(last_id));
        }
        if let Err(error) = storage.record_commit_index(hint) {
            return fail(&events, error);
        }
        hint_pending = hint > Index::ZERO;
        if writes.capacity() > 4096 {
            writes = Vec::new();
        }
    }
    match storage.flush_commit_index() {
        Ok(()) => None,
        Err(error) => fail(&events, error),
    }
}

fn fail(events: &Sender<StorageEvent>, error: StorageError) -> Option<String> {
    let problem = error.to_string();
    let _ = events.send(StorageEvent::Failed(problem.clone()));
    Some(problem)
}
