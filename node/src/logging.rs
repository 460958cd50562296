//! Human-readable, leveled log lines on stderr:
//!
//! ```text
//! 12:04:05.123 INFO  n1 became leader in term 3
//! ```
//!
//! The level comes from `REPLOG_LOG` (`error`, `warn`, `info` (default) or `debug`). Each
//! line is written with one `write` call so that lines from different threads never mix.

use std::io::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;
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

/// Reads `REPLOG_LOG` and names this process in every line from now on.
pub fn init(prefix: &str) {
    if let Some(level) = std::env::var("REPLOG_LOG")
        .ok()
        .and_then(|text| Level::parse(&text))
    {
        MAX_LEVEL.store(level as u8, Ordering::Relaxed);
    }
    let _ = PREFIX.set(prefix.to_string());
}

pub fn enabled(level: Level) -> bool {
    level as u8 <= MAX_LEVEL.load(Ordering::Relaxed)
}

/// Writes one line; use the `error!`, `warn!`, `info!` and `debug!` macros instead.
pub fn write(level: Level, message: std::fmt::Arguments<'_>) {
    let prefix = PREFIX.get().map_or("", String::as_str);
    let line = format!("{} {} {prefix} {message}\n", clock(), level.label());
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
