//! A measurement, not a test: the disk's raw fsync latency and `Storage::persist`
//! throughput with group commit. The numbers depend on the machine; run
//!
//! ```text
//! cargo run --release -p replog-node --example storage_bench
//! ```

use replog_core::{Entry, HardState, Index, NodeId, Payload, Term, Write, WriteId};
use replog_node::storage::{AppendMode, Storage};
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

const COMMAND_BYTES: usize = 64;
const RUN_TIME: Duration = Duration::from_millis(1500);

/// A directory on the same disk as the project (not a tmpfs), unless `REPLOG_BENCH_DIR`
/// names another place (e.g. /dev/shm, to separate encoding cost from the disk).
fn bench_dir() -> tempfile::TempDir {
    let parent = std::env::var("REPLOG_BENCH_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target").to_string());
    tempfile::tempdir_in(parent).unwrap()
}

fn percentile(sorted: &[Duration], per_mille: usize) -> Duration {
    sorted[(sorted.len() * per_mille / 1000).min(sorted.len() - 1)]
}

fn report(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let total: Duration = samples.iter().sum();
    println!(
        "{label:<52} n={:<6} mean={:>8.1?} p50={:>8.1?} p99={:>8.1?} max={:>8.1?}",
        samples.len(),
        total / samples.len() as u32,
        percentile(&samples, 500),
        percentile(&samples, 990),
        samples[samples.len() - 1],
    );
}

/// One 64-byte append plus fdatasync (what an append of one small entry costs), and the
/// same with a full fsync.
fn raw_fsync_latency(dir: &Path) {
    let line = [b'x'; 63];
    for (label, full) in [
        ("raw: 64-byte append + fdatasync", false),
        ("raw: 64-byte append + fsync", true),
    ] {
        let path = dir.join(format!("raw-{full}"));
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        let mut samples = Vec::new();
        for _ in 0..2000 {
            let start = Instant::now();
            file.write_all(&line).unwrap();
            file.write_all(b"\n").unwrap();
            if full {
                file.sync_all().unwrap();
            } else {
                file.sync_data().unwrap();
            }
            samples.push(start.elapsed());
        }
        report(label, samples);
    }
}

/// The same 64-byte write + fdatasync into space already allocated and synced, so the
/// file's size never changes: shows what preallocating the log could save.
fn raw_fsync_latency_preallocated(dir: &Path) {
    use std::os::unix::fs::FileExt;
    let path = dir.join("raw-preallocated");
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    file.write_all_at(&vec![0u8; 2000 * 64], 0).unwrap();
    file.sync_all().unwrap();
    let line = [b'x'; 64];
    let mut samples = Vec::new();
    for slot in 0..2000u64 {
        let start = Instant::now();
        file.write_all_at(&line, slot * 64).unwrap();
        file.sync_data().unwrap();
        samples.push(start.elapsed());
    }
    report("raw: 64-byte overwrite (preallocated) + fdatasync", samples);
}

/// CPU time this thread has used (user and system), which a busy machine's wall clock
/// does not show.
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    let result = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(result, 0, "clock_gettime failed");
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// `persist` of batches of `batch` 64-byte entries, back to back, for `RUN_TIME`.
fn persist_throughput(dir: &Path, batch: usize, mode: AppendMode) {
    let node = NodeId(batch as u64 * 2 + u64::from(mode == AppendMode::Direct));
    let (mut storage, _, _) = Storage::open_with(dir, node, mode).unwrap();
    let mode_name = match storage.append_mode() {
        AppendMode::Direct => "direct",
        AppendMode::Buffered => "buffered",
    };
    let term = Term(1);
    storage
        .persist(&[Write {
            memberships: Vec::new(),
            id: WriteId(1),
            hard_state: Some(HardState {
                term,
                voted_for: Some(NodeId(1)),
            }),
            install: None,
            truncate_after: None,
            entries: vec![],
            sessions: None,
        }])
        .unwrap();
    let command = "c".repeat(COMMAND_BYTES);
    let mut next_index = Index(1);
    let mut samples = Vec::new();
    let mut cpu = Duration::ZERO;
    let started = Instant::now();
    while started.elapsed() < RUN_TIME {
        // Build the batch outside the timed section: the runtime receives it ready-made.
        let writes: Vec<Write> = (0..batch)
            .map(|offset| Write {
                memberships: Vec::new(),
                id: WriteId(next_index.0 + offset as u64 + 1),
                hard_state: None,
                install: None,
                truncate_after: None,
                entries: vec![Entry {
                    index: next_index.plus(offset as u64),
                    term,
                    payload: Payload::Command(command.as_str().into()),
                }],
                sessions: None,
            })
            .collect();
        let start = Instant::now();
        let cpu_start = thread_cpu_time();
        storage.persist(&writes).unwrap();
        cpu += thread_cpu_time() - cpu_start;
        samples.push(start.elapsed());
        next_index = next_index.plus(batch as u64);
    }
    let busy: Duration = samples.iter().sum();
    let entries = samples.len() * batch;
    println!(
        "persist ({mode_name}): {batch:>4} writes of 1 entry per call -> {:>9.0} entries/s \
         ({} calls, {:.1?} CPU per call)",
        entries as f64 / busy.as_secs_f64(),
        samples.len(),
        cpu / samples.len() as u32,
    );
    report(
        &format!("persist ({mode_name}): batch of {batch}, latency per call"),
        samples,
    );
}

fn main() {
    let dir = bench_dir();
    raw_fsync_latency(dir.path());
    raw_fsync_latency_preallocated(dir.path());
    for batch in [1, 16, 256, 4096] {
        for mode in [AppendMode::Buffered, AppendMode::Direct] {
            persist_throughput(dir.path(), batch, mode);
        }
    }
}
