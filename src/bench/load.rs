//! The closed-loop load generator: each client owns one connection and keeps exactly one
//! append outstanding, following `not_leader` redirects like any well-behaved client.

use super::latency::Latencies;
use replog_node::client::blocking::Connection;
use replog_node::client::protocol::{Request, Response};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// What to run.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// Client addresses of any nodes of the cluster; clients start spread over them.
    pub targets: Vec<String>,
    pub clients: usize,
    /// Length of the measured window.
    pub duration: Duration,
    /// Load before the measured window; its operations are not counted.
    pub warmup: Duration,
    /// Size of each command in bytes.
    pub command_bytes: usize,
}

/// Things that went wrong along the way (none of them stop the run).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Problems {
    pub redirects: u64,
    pub no_leader: u64,
    pub timeouts: u64,
    pub connection_errors: u64,
}

impl Problems {
    fn add(&mut self, other: &Problems) {
        self.redirects += other.redirects;
        self.no_leader += other.no_leader;
        self.timeouts += other.timeouts;
        self.connection_errors += other.connection_errors;
    }
}

/// What one run measured.
pub struct LoadResult {
    pub latencies: Latencies,
    pub problems: Problems,
    /// Appends acknowledged in the measured window.
    pub committed: u64,
}

/// Appends acknowledged so far, for a progress line.
#[derive(Clone, Default)]
pub struct Progress(Arc<AtomicU64>);

impl Progress {
    pub fn committed(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// What the load generator tells its caller while it runs.
pub enum Event {
    /// About once a second: time since the start, appends acknowledged in the window so far.
    Progress { elapsed: Duration, committed: u64 },
    /// The measured window starts now (after the warmup).
    WindowStart,
    /// The measured window ends now.
    WindowEnd,
}

/// Runs the load, reporting [`Event`]s to `on_event` as it goes.
pub fn run(config: &LoadConfig, mut on_event: impl FnMut(Event)) -> LoadResult {
    assert!(
        !config.targets.is_empty() && config.clients > 0,
        "checked by the CLI"
    );
    let start = Instant::now();
    let window = (
        start + config.warmup,
        start + config.warmup + config.duration,
    );
    let progress = Progress::default();
    let handles: Vec<_> = (0..config.clients)
        .map(|client| {
            let config = config.clone();
            let progress = progress.clone();
            thread::Builder::new()
                .name(format!("bench-client-{client}"))
                .spawn(move || Client::new(client, &config, window).run(&progress))
                .expect("spawn a client thread")
        })
        .collect();
    for (edge, event) in [(window.0, Event::WindowStart), (window.1, Event::WindowEnd)] {
        while Instant::now() < edge {
            thread::sleep(
                Duration::from_millis(1000).min(edge.saturating_duration_since(Instant::now())),
            );
            on_event(Event::Progress {
                elapsed: start.elapsed(),
                committed: progress.committed(),
            });
        }
        on_event(event);
    }
    let mut result = LoadResult {
        latencies: Latencies::default(),
        problems: Problems::default(),
        committed: 0,
    };
    for handle in handles {
        let (latencies, problems) = handle.join().expect("a client thread panicked");
        result.committed += latencies.len() as u64;
        result.latencies.merge(latencies);
        result.problems.add(&problems);
    }
    result
}

struct Client<'a> {
    id: usize,
    config: &'a LoadConfig,
    window: (Instant, Instant),
    target: String,
    next_fallback: usize,
    connection: Option<Connection>,
    sequence: u64,
    latencies: Latencies,
    problems: Problems,
}

impl<'a> Client<'a> {
    fn new(id: usize, config: &'a LoadConfig, window: (Instant, Instant)) -> Client<'a> {
        let first = id % config.targets.len();
        Client {
            id,
            config,
            window,
            target: config.targets[first].clone(),
            next_fallback: first,
            connection: None,
            sequence: 0,
            latencies: Latencies::default(),
            problems: Problems::default(),
        }
    }

    fn run(mut self, progress: &Progress) -> (Latencies, Problems) {
        let mut request = Request::Append {
            command: String::new(),
        };
        while Instant::now() < self.window.1 {
            let Request::Append { command } = &mut request else {
                unreachable!()
            };
            fill_command(command, self.id, self.sequence, self.config.command_bytes);
            let Some(connection) = self.connected() else {
                continue;
            };
            let sent_at = Instant::now();
            let answer = connection.send(&request).and_then(|()| connection.recv());
            let done_at = Instant::now();
            self.sequence += 1;
            match answer {
                Ok(Response::Appended { .. }) => {
                    if done_at >= self.window.0 && done_at <= self.window.1 {
                        self.latencies.record(done_at - sent_at);
                        progress.0.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(Response::NotLeader {
                    leader: Some(leader),
                }) if leader != self.target => {
                    self.problems.redirects += 1;
                    self.target = leader;
                    self.connection = None;
                }
                Ok(Response::NotLeader { .. }) => {
                    self.problems.no_leader += 1;
                    self.fall_back();
                }
                Ok(Response::Timeout) => self.problems.timeouts += 1,
                Ok(_) | Err(_) => {
                    self.problems.connection_errors += 1;
                    self.fall_back();
                }
            }
        }
        (self.latencies, self.problems)
    }

    fn connected(&mut self) -> Option<&mut Connection> {
        if self.connection.is_none() {
            match Connection::connect(&self.target, Duration::from_secs(5)) {
                Ok(connection) => self.connection = Some(connection),
                Err(_) => {
                    self.problems.connection_errors += 1;
                    self.fall_back();
                    return None;
                }
            }
        }
        self.connection.as_mut()
    }

    /// Drops the connection and moves to the next configured target after a short pause.
    fn fall_back(&mut self) {
        self.connection = None;
        self.next_fallback = (self.next_fallback + 1) % self.config.targets.len();
        self.target = self.config.targets[self.next_fallback].clone();
        thread::sleep(Duration::from_millis(20));
    }
}

/// Writes a unique command of exactly `bytes` bytes (or the unique prefix, if longer).
fn fill_command(command: &mut String, client: usize, sequence: u64, bytes: usize) {
    use std::fmt::Write as _;
    command.clear();
    let _ = write!(command, "bench-{client}-{sequence}-");
    while command.len() < bytes {
        command.push('x');
    }
}

#[cfg(test)]
mod tests {
    use super::fill_command;

    #[test]
    fn commands_are_unique_and_sized() {
        let mut a = String::new();
        let mut b = String::new();
        fill_command(&mut a, 1, 2, 64);
        fill_command(&mut b, 12, 2, 64);
        assert_eq!((a.len(), b.len()), (64, 64));
        assert_ne!(a, b);
        fill_command(&mut a, 1, 23, 4);
        assert_eq!(a, "bench-1-23-");
    }
}
