//! Human-readable, leveled log lines on stderr:
//!
//! ```text
//! 12:04:05.123 INFO  n1 became leader in term 3
//! ```
//!
//! The level comes from `REPLOG_LOG` (`error`, `warn`, `info` (default) or `debug`). Each
//! line is written with one `write` call so that lines from different threads never mix.
//!
//! After [`init`], lines go through a bounded queue to one writer thread, so that no thread
//! of the node (least of all the core thread) ever blocks on a slow or stalled stderr: when
//! the queue is full a line is dropped and counted, and the writer reports the count.
//! [`flush`] waits for the queue to drain; the node calls it before it returns.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::OnceLock;
use std::time::Duration;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
}

impl Level {
    fn label(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN ",
            Level::Info => "INFO ",
            Level::Debug => "DEBUG",
        }
    }

    fn parse(text: &str) -> Option<Level> {
        match text.trim().to_ascii_lowercase().as_str() {
            "error" => Some(Level::Error),
            "warn" | "warning" => Some(Level::Warn),
            "info" => Some(Level::Info),
            "debug" => Some(Level::Debug),
            _ => None,
        }
    }
}

static MAX_LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);
/// The node's name on every line (`n1`), set once at start.
static PREFIX: OnceLock<String> = OnceLock::new();

/// Lines waiting for the writer thread before new ones are dropped.
const QUEUE_LINES: usize = 4096;

enum Job {
    Line(String),
    /// Answer once every line queued before this one is written.
    Flush(SyncSender<()>),
}

/// The writer thread's queue, once [`init`] started it.
static SINK: OnceLock<SyncSender<Job>> = OnceLock::new();
/// Lines dropped because the queue was full, not yet reported.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// The level `REPLOG_LOG` asks for (`None` when it is unset), or what is wrong with it.
/// The command line checks this before starting a node, so that a typo is refused rather
/// than silently logged at the default level.
pub fn level_from_env() -> Result<Option<Level>, String> {
    match std::env::var("REPLOG_LOG") {
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(text)) => Err(format!(
            "REPLOG_LOG={text:?} is not a log level; use error, warn, info or debug"
        )),
        Ok(text) => Level::parse(&text).map(Some).ok_or_else(|| {
            format!("REPLOG_LOG={text:?} is not a log level; use error, warn, info or debug")
        }),
    }
}

/// Reads `REPLOG_LOG`, names this process in every line from now on, and starts the writer.
/// A bad `REPLOG_LOG` is reported on stderr and the default level used.
pub fn init(prefix: &str) {
    match level_from_env() {
        Ok(Some(level)) => MAX_LEVEL.store(level as u8, Ordering::Relaxed),
        Ok(None) => {}
        Err(problem) => eprintln!("warning: {problem}; logging at info"),
    }
    let _ = PREFIX.set(prefix.to_string());
    SINK.get_or_init(|| {
        let (jobs, queue) = sync_channel(QUEUE_LINES);
        let spawned = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || write_lines(queue));
        if spawned.is_err() {
            // No writer: the queue fills and lines are counted as dropped; `write` below
            // falls back to stderr directly for the caller's own lines.
            eprintln!("warning: could not start the log writer thread; logging directly");
        }
        jobs
    });
}

pub fn enabled(level: Level) -> bool {
    level as u8 <= MAX_LEVEL.load(Ordering::Relaxed)
}

/// Writes one line; use the `error!`, `warn!`, `info!` and `debug!` macros instead.
pub fn write(level: Level, message: std::fmt::Arguments<'_>) {
    let prefix = PREFIX.get().map_or("", String::as_str);
    let line = format!("{} {} {prefix} {message}\n", clock(), level.label());
    match SINK.get() {
        Some(sink) => match sink.try_send(Job::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                DROPPED.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(Job::Line(line))) => write_stderr(&line),
            Err(TrySendError::Disconnected(Job::Flush(_))) => {}
        },
        None => write_stderr(&line),
    }
}

/// Waits (up to a second) until every line logged so far is written, unless the queue is
/// full (then there is nothing it can do without blocking).
pub fn flush() {
    let Some(sink) = SINK.get() else {
        return;
    };
    let (done, wait) = sync_channel(1);
    // Never block here either: with the queue full, give up on flushing rather than wait.
    if sink.try_send(Job::Flush(done)).is_ok() {
        let _ = wait.recv_timeout(Duration::from_secs(1));
    }
}

/// The writer thread: the only place that blocks on stderr.
fn write_lines(queue: Receiver<Job>) {
    for job in queue {
        let dropped = DROPPED.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            write_stderr(&format!(
                "{} WARN  {} {dropped} log lines dropped: stderr is not keeping up\n",
                clock(),
                PREFIX.get().map_or("", String::as_str)
            ));
        }
        match job {
            Job::Line(line) => write_stderr(&line),
            Job::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

fn write_stderr(line: &str) {
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Wall-clock time of day (UTC), `HH:MM:SS.mmm`, so lines of several nodes can be merged.
fn clock() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let day_ms = now.as_millis() % 86_400_000;
    let (hours, rest) = (day_ms / 3_600_000, day_ms % 3_600_000);
    let (minutes, rest) = (rest / 60_000, rest % 60_000);
    format!(
        "{hours:02}:{minutes:02}:{:02}.{:03}",
        rest / 1000,
        rest % 1000
    )
}

#[macro_export]
macro_rules! log_at {
    ($level:expr, $($arg:tt)*) => {
        if $crate::logging::enabled($level) {
            $crate::logging::write($level, format_args!($($arg)*));
        }
    };
}

#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log_at!($crate::logging::Level::Error, $($arg)*) };
}

#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log_at!($crate::logging::Level::Warn, $($arg)*) };
}

#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log_at!($crate::logging::Level::Info, $($arg)*) };
}

#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log_at!($crate::logging::Level::Debug, $($arg)*) };
}

/// Lets a repeated warning through at most once per interval, counting what it held back.
pub struct RateLimit {
    interval: std::time::Duration,
    last: Option<std::time::Instant>,
    suppressed: u64,
}

impl RateLimit {
    pub fn new(interval: std::time::Duration) -> RateLimit {
        RateLimit {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(n)` when a line may be written now, `n` being how many were held back since
    /// the last one.
    pub fn allow(&mut self) -> Option<u64> {
        let now = std::time::Instant::now();
        if self.last.is_some_and(|last| now - last < self.interval) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}
