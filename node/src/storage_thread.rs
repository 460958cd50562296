//! The storage thread: the only thread that touches the node's files once it runs.
//!
//! It takes every job queued since its last fsync, makes all their writes durable with one
//! `persist` call (group commit: one write and one fsync however many proposals and
//! messages produced them), and reports the highest write id back to the core thread.
//! A storage error stops the node: after a failed fsync the kernel may have dropped the
//! dirty pages, so carrying on could acknowledge data that is not on disk.

use crate::metrics::StorageMetrics;
use crate::queue::{queue, QueueReceiver, QueueSender};
use crate::reader::Progress;
use crate::runtime::CoreEvent;
use crate::scheduling::Scheduling;
use crate::storage::{Storage, StorageError};
use replog_core::{FetchRequest, Fetched, Index, Trimmed, Write, WriteId};
use replog_driver::catch_up::Answer;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Work for the storage thread, sent once per core-loop iteration that produced any.
pub struct StorageJob {
    /// In write-id order, continuing the previous job's.
    pub writes: Vec<Write>,
    /// The core's applied index: committed and durable, so safe to record as the restart
    /// hint (storage refuses a hint beyond its durable log).
    pub commit_hint: Index,
    /// Catch-up reads the core asked for (`Output::Fetch`); served after the writes.
    pub fetches: Vec<FetchRequest>,
    /// A committed retention point: drop the whole segments before it (never past what
    /// is applied: `commit_hint`).
    pub trim_before: Option<Index>,
}

/// What the storage thread reports back.
pub enum StorageEvent {
    /// Every write up to this id is durable.
    Persisted(WriteId),
    /// Storage failed; the node must stop. The text names the file and the problem.
    Failed(String),
    /// The answer to an `Output::Fetch`.
    Fetched(Fetched),
    /// The answer to an `Output::Fetch` below the log's first retained index.
    FetchTrimmed(Trimmed),
    /// `--retain-bytes`: trimming before this index would bring the segments within the
    /// limit (sent when it moves).
    RetainPoint(Index),
}

/// How often a pending commit hint is offered to storage while no writes arrive (storage
/// itself decides whether enough time has passed to write it).
const HINT_RETRY: Duration = Duration::from_millis(100);

/// Handles on a running storage thread: jobs go in, events come out on the core thread's
/// queue, and the thread exits once `jobs` is dropped and its queue is done, returning
/// its failure if any.
pub struct StorageThread {
    pub jobs: QueueSender<StorageJob>,
    pub handle: JoinHandle<Option<String>>,
}

impl StorageThread {
    /// With `retain_bytes`, the thread reports where to trim to stay within it
    /// (`StorageEvent::RetainPoint`); the leader proposes that point.
    pub fn spawn(
        storage: Storage,
        events: QueueSender<CoreEvent>,
        scheduling: Scheduling,
        (retain_bytes, metrics, progress): (Option<u64>, StorageMetrics, Progress),
    ) -> std::io::Result<StorageThread> {
        let (jobs, jobs_rx) = queue();
        let handle = std::thread::Builder::new()
            .name("storage".into())
            .spawn(move || {
                if let Err(error) = scheduling.apply_to_current_thread() {
                    warn!("storage thread: cannot switch to SCHED_BATCH: {error}");
                }
                let events = Events {
                    queue: events,
                    metrics,
                    progress,
                };
                run(storage, jobs_rx, &events, retain_bytes)
            })?;
        Ok(StorageThread { jobs, handle })
    }
}

/// The storage thread's way to the core thread. If the thread panics (a write that breaks
/// the core's promises), the core hears of it and stops the node.
/// It also carries the metrics, which tell `/health` of a failure.
struct Events {
    queue: QueueSender<CoreEvent>,
    metrics: StorageMetrics,
    /// Where the log's first index is published (for the core thread's reads).
    progress: Progress,
}

impl Events {
    fn send(&self, event: StorageEvent) {
        if let StorageEvent::Failed(problem) = &event {
            self.metrics.failed(problem);
        }
        // A closed queue means the core thread has stopped; finish quietly.
        let _ = self.queue.send(CoreEvent::Storage(event));
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.send(StorageEvent::Failed(
                "the storage thread stopped unexpectedly".into(),
            ));
        }
    }
}

/// Returns the failure that stopped the thread, if one did.
fn run(
    mut storage: Storage,
    jobs: QueueReceiver<StorageJob>,
    events: &Events,
    retain_bytes: Option<u64>,
) -> Option<String> {
    let mut queued = Vec::new();
    let mut writes = Vec::new();
    let mut fetches = Vec::new();
    let mut trim: Option<Index> = None;
    let mut retain_reported: Option<Index> = None;
    let mut hint = Index::ZERO;
    let mut hint_pending = false;
    events.metrics.log(&storage);
    events.progress.publish_first_index(storage.first_index());
    loop {
        let deadline = hint_pending.then(|| Instant::now() + HINT_RETRY);
        if jobs.take(&mut queued, deadline).is_err() {
            break;
        }
        for job in queued.drain(..) {
            writes.extend(job.writes);
            hint = hint.max(job.commit_hint);
            fetches.extend(job.fetches);
            trim = trim.max(job.trim_before);
        }
        if let Some(last) = writes.last() {
            let last_id = last.id;
            let started = Instant::now();
            if let Err(error) = storage.persist(&writes) {
                return fail(events, error);
            }
            let entries = writes.iter().map(|write| write.entries.len()).sum();
            events.metrics.persisted(entries, started.elapsed());
            if let Some(notice) = storage.take_fallback_notice() {
                warn!("{notice}");
            }
            writes.clear();
            events.send(StorageEvent::Persisted(last_id));
        }
        // Reads come after the writes: what they ask for is durable by now.
        if let Err(error) = serve_fetches(&storage, &mut fetches, events) {
            return fail(events, error);
        }
        if let Err(error) = storage.record_commit_index(hint) {
            return fail(events, error);
        }
        if let Some(before) = trim.take() {
            if let Err(error) = trim_storage(&mut storage, before, hint) {
                return fail(events, error);
            }
        }
        events.metrics.log(&storage);
        // Trims and installs (a persisted write) move it; a store per group commit.
        events.progress.publish_first_index(storage.first_index());
        if let Some(max_bytes) = retain_bytes {
            if let Some(point) = storage.retain_point(max_bytes) {
                if retain_reported != Some(point) {
                    retain_reported = Some(point);
                    events.send(StorageEvent::RetainPoint(point));
                }
            }
        }
        // Come back for a hint that had to wait out the interval, and only for one.
        hint_pending = storage.commit_hint_pending();
        if writes.capacity() > 4096 {
            writes = Vec::new();
        }
    }
    match storage.flush_commit_index() {
        Ok(()) => None,
        Err(error) => fail(events, error),
    }
}

/// Serves the core's catch-up reads from the segments, on this thread between group
/// commits: each is one bounded batch. (Client reads are the reader thread's.)
fn serve_fetches(
    storage: &Storage,
    fetches: &mut Vec<FetchRequest>,
    events: &Events,
) -> Result<(), StorageError> {
    for request in fetches.drain(..) {
        let event = match storage.serve_fetch(&request)? {
            Answer::Fetched(fetched) => StorageEvent::Fetched(fetched),
            Answer::Trimmed(trimmed) => StorageEvent::FetchTrimmed(trimmed),
        };
        events.send(event);
    }
    Ok(())
}

/// Drops the whole segments before `before`, never past the applied index `applied`
/// (the commit hint storage has just been given).
fn trim_storage(storage: &mut Storage, before: Index, applied: Index) -> Result<(), StorageError> {
    let point = before.min(applied.next());
    if point <= storage.first_index() {
        return Ok(());
    }
    let outcome = storage.trim_before(point)?;
    if outcome.segments_removed > 0 {
        info!(
            "trimmed the log before {}: {} segments, {} bytes deleted; it now starts at {}",
            point.0, outcome.segments_removed, outcome.bytes_removed, outcome.first_index.0
        );
    }
    Ok(())
}

fn fail(events: &Events, error: StorageError) -> Option<String> {
    let problem = error.to_string();
    events.send(StorageEvent::Failed(problem.clone()));
    Some(problem)
}
