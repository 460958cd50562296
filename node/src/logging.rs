//! Leveled, structured log lines on stderr, through `tracing`. Plain text by default:
//!
//! ```text
//! 12:04:05.123 INFO  n1 became leader term=3 last_index=7 commit_index=6
//! ```
//!
//! or one JSON object per line with `--log-format json`:
//!
//! ```text
//! {"time":"2026-12-02T12:04:05.123Z","level":"INFO","node":1,"target":"replog_node::runtime","message":"became leader","fields":{"commit_index":6,"last_index":7,"term":3}}
//! ```
//!
//! `REPLOG_LOG` filters them with tracing's directive syntax: a level (`error`, `warn`,
//! `info` (default), `debug`, `trace`, `off`) and/or `TARGET=LEVEL` pairs, where a target
//! is a module path (`replog_node::transport=debug,info`).
//!
//! Call sites use `tracing`'s macros. After [`init`], each formatted line goes through a
//! bounded queue to one writer thread, so that no thread of the node (least of all the
//! core thread) ever blocks on a slow or stalled stderr: when the queue is full a line is
//! dropped and counted, and the writer reports the count in a line of its own. Each line
//! is written with one `write` call, so lines from different threads never mix. [`flush`]
//! waits for the queue to drain; the node calls it before it returns.

use std::fmt;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// How lines are laid out (`--log-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Time, level, node and message, then the fields as `key=value`.
    #[default]
    Text,
    /// One JSON object per line: `time`, `level`, `node`, `target`, `message`, `fields`.
    Json,
}

/// What the node logs and how: a filter already checked by [`LogSettings::from_env`].
#[derive(Clone, Debug)]
pub struct LogSettings {
    /// Invariant: parses as an [`EnvFilter`] (checked by [`check_filter`]).
    filter: String,
    pub format: LogFormat,
}

impl Default for LogSettings {
    fn default() -> LogSettings {
        LogSettings {
            filter: "info".into(),
            format: LogFormat::Text,
        }
    }
}

impl LogSettings {
    /// The filter `REPLOG_LOG` asks for (`info` when it is unset), or what is wrong with
    /// it. The command line calls this before starting a node, so that a typo is refused
    /// rather than silently logged at the default level.
    pub fn from_env(format: LogFormat) -> Result<LogSettings, String> {
        let filter = match std::env::var("REPLOG_LOG") {
            Err(std::env::VarError::NotPresent) => "info".to_string(),
            Err(std::env::VarError::NotUnicode(text)) => {
                return Err(format!("REPLOG_LOG={text:?} is not UTF-8"))
            }
            Ok(text) => {
                check_filter(&text).map_err(|problem| {
                    format!("REPLOG_LOG={text:?} is not a log filter: {problem}")
                })?;
                text
            }
        };
        Ok(LogSettings { filter, format })
    }
}

const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Checks a filter in tracing's directive syntax. tracing reads a bare word that is not a
/// level as a target to log everything of, so a misspelt level (`REPLOG_LOG=verbose`)
/// would silently log nothing of ours; a bare word must be a level here.
fn check_filter(text: &str) -> Result<(), String> {
    let directives: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|directive| !directive.is_empty())
        .collect();
    if directives.is_empty() {
        return Err("it is empty".into());
    }
    for directive in directives {
        let is_level = LEVELS.contains(&directive.to_ascii_lowercase().as_str());
        if !directive.contains('=') && !is_level {
            return Err(format!(
                "{directive:?} is not a level ({}) nor TARGET=LEVEL \
                 (e.g. replog_node::transport=debug,info)",
                LEVELS.join(", ")
            ));
        }
    }
    EnvFilter::builder()
        .parse(text)
        .map(drop)
        .map_err(|error| error.to_string())
}

/// Lines waiting for the writer thread before new ones are dropped.
const QUEUE_LINES: usize = 4096;

enum Job {
    Line(Vec<u8>),
    /// Answer once every line queued before this one is written.
    Flush(SyncSender<()>),
}

/// The writer thread's queue, once [`init`] started it.
static SINK: OnceLock<SyncSender<Job>> = OnceLock::new();
/// Lines dropped because the queue was full, not yet reported.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Starts the writer and makes this process log as node `node_id` with `settings`, from
/// every thread. Only the first call in a process has an effect.
pub fn init(settings: &LogSettings, node_id: u64) {
    if SINK.get().is_some() {
        return;
    }
    let sink = SINK.get_or_init(|| {
        let (jobs, queue) = sync_channel(QUEUE_LINES);
        let spawned = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || write_lines(queue));
        if spawned.is_err() {
            // The queue is disconnected then, and each line is written by its caller.
            eprintln!("warning: could not start the log writer thread; logging directly");
        }
        jobs
    });
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .parse_lossy(&settings.filter);
    let installed = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .event_format(LineFormat {
            format: settings.format,
            node_id,
        })
        .with_writer(QueueWriter { sink: sink.clone() })
        .try_init();
    if let Err(error) = installed {
        eprintln!("warning: cannot install the logger: {error}");
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
            // Through the queue like any line, so that it has the chosen format; there is
            // room, as this thread just took a job out. Dropped itself, it is counted.
            tracing::warn!(
                dropped_lines = dropped,
                "log lines dropped: stderr is not keeping up"
            );
        }
        match job {
            Job::Line(line) => write_stderr(&line),
            Job::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

fn write_stderr(line: &[u8]) {
    let _ = std::io::stderr().lock().write_all(line);
}

/// Hands each formatted line to the writer thread without ever waiting for it.
struct QueueWriter {
    sink: SyncSender<Job>,
}

impl<'a> MakeWriter<'a> for QueueWriter {
    type Writer = QueuedLine<'a>;

    fn make_writer(&'a self) -> QueuedLine<'a> {
        QueuedLine { sink: &self.sink }
    }
}

/// tracing's fmt layer writes each event with one `write_all` of the whole line.
struct QueuedLine<'a> {
    sink: &'a SyncSender<Job>,
}

impl std::io::Write for QueuedLine<'_> {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        match self.sink.try_send(Job::Line(line.to_vec())) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                DROPPED.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => write_stderr(line),
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Lays out one event as a text or a JSON line.
struct LineFormat {
    format: LogFormat,
    node_id: u64,
}

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let level = *event.metadata().level();
        match self.format {
            LogFormat::Text => {
                let label = match level {
                    Level::ERROR => "ERROR",
                    Level::WARN => "WARN ",
                    Level::INFO => "INFO ",
                    Level::DEBUG => "DEBUG",
                    Level::TRACE => "TRACE",
                };
                write!(writer, "{} {label} n{} ", time_of_day(now), self.node_id)?;
                ctx.field_format().format_fields(writer.by_ref(), event)?;
                writeln!(writer)
            }
            LogFormat::Json => {
                let mut fields = JsonFields::default();
                event.record(&mut fields);
                let line = JsonLine {
                    time: timestamp(now),
                    level: level.as_str(),
                    node: self.node_id,
                    target: event.metadata().target(),
                    message: &fields.message,
                    fields: &fields.fields,
                };
                let line = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
                writeln!(writer, "{line}")
            }
        }
    }
}

/// One `--log-format json` line, its keys in this order.
#[derive(serde::Serialize)]
struct JsonLine<'a> {
    time: String,
    level: &'a str,
    node: u64,
    target: &'a str,
    message: &'a str,
    fields: &'a serde_json::Map<String, serde_json::Value>,
}

/// An event's message and its other fields as JSON values.
#[derive(Default)]
struct JsonFields {
    message: String,
    fields: serde_json::Map<String, serde_json::Value>,
}

impl JsonFields {
    fn insert(&mut self, field: &Field, value: serde_json::Value) {
        self.fields.insert(field.name().to_string(), value);
    }
}

impl Visit for JsonFields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.insert(field, text.into());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.insert(field, value.into());
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.insert(field, value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.insert(field, value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.insert(field, value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.insert(field, value.into());
    }
}

/// Wall-clock time of day (UTC), `HH:MM:SS.mmm`, so lines of several nodes can be merged.
fn time_of_day(since_epoch: Duration) -> String {
    let day_ms = since_epoch.as_millis() % 86_400_000;
    let (hours, rest) = (day_ms / 3_600_000, day_ms % 3_600_000);
    let (minutes, rest) = (rest / 60_000, rest % 60_000);
    format!(
        "{hours:02}:{minutes:02}:{:02}.{:03}",
        rest / 1000,
        rest % 1000
    )
}

/// RFC 3339 in UTC with milliseconds (`2026-12-02T12:04:05.123Z`), for machines.
fn timestamp(since_epoch: Duration) -> String {
    let days = since_epoch.as_secs() / 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{}Z",
        time_of_day(since_epoch)
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
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

/// A [`RateLimit`] per remote address, for refusals that a misconfigured peer repeats
/// each time it redials: the limit on one address does not hide another's refusals.
pub struct PerAddress {
    interval: std::time::Duration,
    limits: std::sync::Mutex<std::collections::HashMap<Option<std::net::IpAddr>, RateLimit>>,
}

impl PerAddress {
    pub fn new(interval: std::time::Duration) -> PerAddress {
        PerAddress {
            interval,
            limits: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// As [`RateLimit::allow`], for lines about `ip` (`None`: an unknown address).
    pub fn allow(&self, ip: Option<std::net::IpAddr>) -> Option<u64> {
        let Ok(mut limits) = self.limits.lock() else {
            return Some(0); // A panic elsewhere while logging: log rather than lose it.
        };
        if limits.len() > 1024 {
            limits.clear(); // Many addresses: forget them rather than grow without bound.
        }
        limits
            .entry(ip)
            .or_insert_with(|| RateLimit::new(self.interval))
            .allow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_word_that_is_not_a_level_is_refused_and_directives_are_accepted() {
        assert!(check_filter("verbose").unwrap_err().contains("\"verbose\""));
        assert!(check_filter("").is_err());
        assert!(check_filter("replog_node=loud").is_err());
        for good in ["debug", "WARN", "replog_node=debug,info", "off"] {
            assert_eq!(check_filter(good), Ok(()), "{good}");
        }
    }

    /// Appends what it is given to a shared buffer.
    struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_full_queue_drops_lines_without_blocking_and_the_writer_reports_how_many() {
        use std::io::Write as _;
        let (jobs, queue) = sync_channel(2);
        let mut line = QueuedLine { sink: &jobs };
        // Empty lines: the writer thread's stderr output is not what is checked.
        for _ in 0..5 {
            assert_eq!(line.write(b"").unwrap(), 0);
        }
        assert_eq!(DROPPED.load(Ordering::Relaxed), 3);
        drop(jobs);
        let reported = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let into = reported.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || Capture(into.clone()))
            .finish();
        std::thread::spawn(move || {
            tracing::subscriber::with_default(subscriber, || write_lines(queue))
        })
        .join()
        .unwrap();
        let reported = String::from_utf8(reported.lock().unwrap().clone()).unwrap();
        assert_eq!(reported.lines().count(), 1, "{reported}");
        assert!(
            reported.contains("WARN")
                && reported.contains("log lines dropped: stderr is not keeping up dropped_lines=3"),
            "{reported}"
        );
        assert_eq!(DROPPED.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn timestamps_are_utc_dates() {
        // 2026-12-02T03:10:34.123Z
        let at = Duration::from_millis(1_796_181_034_123);
        assert_eq!(timestamp(at), "2026-12-02T03:10:34.123Z");
        assert_eq!(timestamp(Duration::ZERO), "1970-01-01T00:00:00.000Z");
        // A leap day.
        assert_eq!(
            timestamp(Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
    }
}
