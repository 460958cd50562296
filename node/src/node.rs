//! Starting a node: open storage, rebuild the core from it, bind the port, start the
//! threads, and run the core thread until shutdown.
//!
//! ```text
//!  peers ──frames──────────────────────────▶ core thread (Raft) ──frames──▶ peers
//!  clients ─lines──▶ client front end ─────▶ (one poll: peer  ─┬─▶ storage thread (fsync)
//!  clients ◀─lines── (one thread, epoll) ◀─┐  sockets, queue,  │   (a helper thread per
//!                                          │  tick timer)  ▲   │    peer dials, and writes
//!                                          ├── answers ◀───┼───┘    what sockets refuse)
//!                                          │               └── storage completions
//!                                          └── answers, stream chunks ◀── reader thread
//!                                              (read, query, follow: from the segments)
//! ```

use crate::client::ClientContext;
use crate::config::{Members, NodeConfig};
use crate::identity::{self, Origin, Roster};
use crate::listener::{self, ListenerContext};
use crate::metrics::{self, Metrics};
use crate::queue::{polled_queue, queue, PolledReceiver, QueueSender};
use crate::reader::{self, Progress};
use crate::runtime::{Control, CoreEvent, Inputs, Runtime, Stopped, Workers};
use crate::scheduling::Scheduling;
use crate::storage::{AppendMode, Storage, StorageError, StorageOptions};
use crate::storage_thread::{StorageJob, StorageThread};
use crate::transport::{Dialer, Hello, PeerContext, PeerInbox, Peers};
use crate::{joining, logging, signals};
use replog_core::{Config, RaftCore, RecoveryError};
use std::fmt;
use std::io::{self, Read};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// How long a stopping node waits for its front end, beyond which it exits regardless.
const FRONT_END_STOP_WAIT: Duration = Duration::from_secs(5);

/// Why a node could not start, or stopped with an error.
#[derive(Debug)]
pub enum NodeError {
    /// The data directory cannot be read back safely (names the file and line).
    Storage(StorageError),
    /// The files are readable but do not form a valid Raft state.
    Recovery(RecoveryError),
    Listen {
        addr: String,
        source: io::Error,
    },
    /// `--metrics-addr` cannot be bound.
    MetricsListen {
        addr: String,
        source: io::Error,
    },
    Thread(io::Error),
    /// Storage failed while running; the node stopped rather than risk lying.
    StorageFailed(String),
    /// The data directory's recorded identity (`cluster.json`) is unreadable, or the
    /// flags describe another node or cluster than it records.
    Identity(String),
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeError::Storage(error) => write!(f, "cannot recover storage: {error}"),
            NodeError::Recovery(error) => write!(f, "recovered state is invalid: {error}"),
            NodeError::Listen { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            NodeError::MetricsListen { addr, source } => {
                write!(
                    f,
                    "cannot serve metrics on {addr} (--metrics-addr): {source}"
                )
            }
            NodeError::Thread(error) => write!(f, "cannot start a thread: {error}"),
            NodeError::StorageFailed(problem) => {
                write!(f, "storage failed, node stopped: {problem}")
            }
            NodeError::Identity(problem) => write!(f, "{problem}"),
        }
    }
}

impl std::error::Error for NodeError {}

/// Runs a node until it is asked to stop (SIGINT or SIGTERM, or standard input closing
/// with `stop_on_stdin_eof`) or storage fails. Being killed instead is safe at any moment:
/// nothing is acknowledged before it is durable.
pub fn run(mut config: NodeConfig) -> Result<(), NodeError> {
    // Before anything is logged or opened: the node's id, and so its log lines, come from
    // the recorded identity, and another cluster's directory is refused untouched.
    let node_dir = config.data_dir.join(config.members.own_name().as_str());
    let joined = match &config.join {
        Some(join) => joining::prepare(&config, join, &node_dir).map_err(NodeError::Identity)?,
        None => Vec::new(),
    };
    let founding = config.members.clone();
    let loaded = identity::load(&node_dir, &identity_flags(&config, &founding))
        .map_err(NodeError::Identity)?;
    config.members = loaded.record.members.clone();
    logging::init(&config.log, config.members.own_id.0);
    for note in joined {
        info!("{note}");
    }
    let result = run_logged(config, &node_dir, (founding, loaded));
    logging::flush();
    result
}

fn identity_flags<'a>(config: &'a NodeConfig, founding: &'a Members) -> identity::Flags<'a> {
    identity::Flags {
        cluster: &config.cluster,
        cluster_id: config.cluster_id.as_ref(),
        members: founding,
        peers_given: founding.addrs.len() > 1,
    }
}

fn run_logged(
    config: NodeConfig,
    node_dir: &Path,
    (founding, loaded): (Members, identity::Loaded),
) -> Result<(), NodeError> {
    log_start(&config, node_dir, &loaded);
    log_authentication(&config);
    // Before storage is opened, so that a taken address leaves the data directory alone.
    let metrics = start_metrics(&config)?;
    let (storage, core) = recover(&config, node_dir)?;
    // Under the directory's lock (the storage handle holds it), so no other process can
    // record another identity between this check and the write.
    let roster = establish(node_dir, &identity_flags(&config, &founding), loaded)?;
    let node_dir = storage.dir().to_path_buf();
    let own_addr = config.members.own_addr();
    let listener = TcpListener::bind(&config.listen).map_err(|source| NodeError::Listen {
        addr: config.listen.clone(),
        source,
    })?;
    let (inbox, waker) = PeerInbox::new(config.members.own_id, config.limits.max_frame_bytes)
        .map_err(NodeError::Thread)?;
    let (events, events_rx) = polled_queue(waker);
    // Shared by the storage thread (first index), the core thread and the reader.
    let progress = Progress::default();
    let storage_thread = StorageThread::spawn(
        storage,
        events.clone(),
        config.scheduling,
        (
            config.limits.retain_bytes,
            metrics.as_ref().map(Metrics::storage).unwrap_or_default(),
            progress.clone(),
        ),
    )
    .map_err(NodeError::Thread)?;
    let (runtime, inputs, front_end) = start_threads(
        (&config, roster),
        core,
        (listener, &node_dir),
        (storage_thread.jobs, metrics, progress),
        (events, events_rx, inbox),
    )
    .map_err(NodeError::Thread)?;
    info!(
        "listening on {} for peers and clients (advertised as {own_addr})",
        config.listen
    );
    if let Some(join) = config.join.as_ref().filter(|join| !join.learner) {
        let options = joining::client_options(&config).map_err(NodeError::Identity)?;
        let me = (config.members.own_id, config.members.own_name().clone());
        joining::promote_when_caught_up(me.0, me.1, join.targets.clone(), options);
    }
    // Last, so that no thread started from here inherits the policy.
    if config.scheduling == Scheduling::Batch {
        match config.scheduling.apply_to_current_thread() {
            Ok(()) => info!("core and storage threads run as SCHED_BATCH (--scheduling batch)"),
            Err(error) => warn!("core thread: cannot switch to SCHED_BATCH: {error}"),
        }
    }
    let stopped = runtime.run(inputs);
    // The runtime dropped its job queue on return: the storage thread finishes what is
    // queued, flushes the commit hint and exits.
    let storage_failure = storage_thread
        .handle
        .join()
        .unwrap_or_else(|_| Some("the storage thread panicked".to_string()));
    match (stopped, storage_failure) {
        (Stopped::StorageFailed(problem), _) | (Stopped::Shutdown, Some(problem)) => {
            Err(NodeError::StorageFailed(problem))
        }
        (Stopped::Shutdown, None) => {
            wait_for_front_end(&front_end);
            info!("stopped cleanly");
            Ok(())
        }
    }
}

/// Says who this node is, in which cluster, and where its identity came from.
fn log_start(config: &NodeConfig, node_dir: &Path, loaded: &identity::Loaded) {
    info!(
        "starting node {} (id {}) on {} in cluster {:?} (id {}; members {}), data in {}",
        config.members.own_name(),
        config.members.own_id.0,
        config.members.own_addr(),
        config.cluster,
        loaded.record.cluster_id,
        config.members.describe_named(),
        node_dir.display()
    );
    for note in &loaded.notes {
        info!("{note}");
    }
}

/// `--metrics-addr`: registers the metrics and starts serving them (the thread lives as
/// long as the process: a scrape during the stop still gets an answer).
fn start_metrics(config: &NodeConfig) -> Result<Option<Metrics>, NodeError> {
    let Some(addr) = &config.metrics_addr else {
        return Ok(None);
    };
    let peers: Vec<_> = config.members.peers().map(|(peer, _)| peer).collect();
    let metrics = Metrics::new(&peers);
    let bound =
        metrics::serve(addr, metrics.clone()).map_err(|source| NodeError::MetricsListen {
            addr: addr.clone(),
            source,
        })?;
    info!("serving metrics at http://{bound}/metrics and health at /health");
    Ok(Some(metrics))
}

/// Says how peers are authenticated, and warns about the secret files.
fn log_authentication(config: &NodeConfig) {
    let secrets = &config.secrets;
    for warning in &secrets.warnings {
        warn!("{warning}");
    }
    if secrets.is_enabled() {
        let files: Vec<String> = secrets
            .paths()
            .iter()
            .map(|path| path.display().to_string())
            .collect();
        info!(
            "peers must prove the cluster secret: this node proves with {} and accepts {}",
            files[0],
            files.join(" or ")
        );
    } else {
        info!("peers are not authenticated (no --cluster-secret-file)");
    }
    match &config.client_token {
        Some(token) => {
            for warning in &token.warnings {
                warn!("{warning}");
            }
            info!("clients must show the token in {}", token.path().display());
        }
        None => info!("clients need no token (no --client-token-file)"),
    }
    if config.tls.is_some() {
        info!(
            "clients must connect with TLS (--tls-cert), and peers with mutual TLS: each \
             presents a certificate that --tls-ca signed"
        );
    }
}

/// Gives the front end the time it takes to hand its clients their last answers (it lets
/// go of connections whose clients do not close within its own deadline).
fn wait_for_front_end(front_end: &JoinHandle<()>) {
    let deadline = Instant::now() + FRONT_END_STOP_WAIT;
    while !front_end.is_finished() {
        if Instant::now() >= deadline {
            warn!("some clients may not have had their last answers");
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Records the identity at a first start (or in a directory from before names), having
/// read it again; returns the members as the handshake will check them.
fn establish(
    node_dir: &Path,
    flags: &identity::Flags,
    loaded: identity::Loaded,
) -> Result<Arc<Roster>, NodeError> {
    let loaded = match loaded.origin {
        Origin::Recorded => loaded,
        // Storage has created metadata.json meanwhile, so the origin is the first look's.
        first => match identity::load(node_dir, flags).map_err(NodeError::Identity)? {
            again if again.origin == Origin::Recorded => again,
            again => identity::Loaded {
                origin: first,
                ..again
            },
        },
    };
    let record = &loaded.record;
    let shown = node_dir.join(identity::record::FILE_NAME);
    match loaded.origin {
        Origin::Recorded => {}
        Origin::Founded => info!(
            "first start: recorded node {} (id {}) of cluster {:?} (id {}) in {}",
            record.members.own_name(),
            record.members.own_id.0,
            record.cluster,
            record.cluster_id,
            shown.display()
        ),
        Origin::Upgraded => info!(
            "recorded this node's identity in {} (the data directory predates names): node \
             {} of cluster {:?} (id {})",
            shown.display(),
            record.members.own_id.0,
            record.cluster,
            record.cluster_id
        ),
    }
    if loaded.origin != Origin::Recorded {
        identity::record::write(node_dir, record).map_err(NodeError::Storage)?;
    }
    Ok(Arc::new(Roster::new(loaded.record, node_dir.to_path_buf())))
}

/// Reads back what storage holds and rebuilds the core from it.
fn recover(config: &NodeConfig, node_dir: &Path) -> Result<(Storage, RaftCore), NodeError> {
    let options = StorageOptions {
        segment_bytes: config.limits.segment_bytes,
        ..StorageOptions::default()
    };
    let (storage, recovered, report) =
        Storage::open_dir(node_dir, options).map_err(NodeError::Storage)?;
    for warning in &report.warnings {
        warn!("recovery: {warning}");
    }
    for note in &report.notes {
        info!("recovery: {note}");
    }
    match storage.append_mode() {
        AppendMode::Direct => info!("log appends: direct synchronous writes (O_DIRECT, O_DSYNC)"),
        AppendMode::Buffered => info!(
            "log appends: write and fdatasync (the filesystem of {} does not support O_DIRECT)",
            storage.dir().display()
        ),
    }
    info!(
        "recovered term {}, vote {}, log to index {} ({} entries after commit index {} read), from {}",
        recovered.hard_state.term.0,
        recovered
            .hard_state
            .voted_for
            .map_or("none".to_string(), |vote| vote.to_string()),
        storage.last_index().0,
        recovered.entries.len(),
        recovered.commit_index.0,
        storage.dir().display()
    );
    let core = RaftCore::new(core_config(config), recovered).map_err(NodeError::Recovery)?;
    Ok((storage, core))
}

/// Starts the peer senders, the listener, the reader thread, the signal watcher and the
/// stdin watcher, and builds the runtime with the queue it waits on.
fn start_threads(
    (config, roster): (&NodeConfig, Arc<Roster>),
    core: RaftCore,
    (listener, node_dir): (TcpListener, &std::path::Path),
    (storage_jobs, metrics, progress): (QueueSender<StorageJob>, Option<Metrics>, Progress),
    (events, events_rx, inbox): (QueueSender<CoreEvent>, PolledReceiver<CoreEvent>, PeerInbox),
) -> io::Result<(Runtime, Inputs, JoinHandle<()>)> {
    let hello = Arc::new(Hello::new(config, &roster));
    let (reader_jobs, reader_rx) = queue();
    let secrets = Arc::new(config.secrets.clone());
    // The runtime starts a sender per peer of the configuration in force as it starts.
    let peers = Peers::new(Dialer {
        hello: hello.clone(),
        secrets: secrets.clone(),
        tls: config.tls.as_ref().map(|tls| tls.peer.clone()),
        queue_batches: config.limits.peer_queue_batches,
    });
    let context = ListenerContext {
        peer: PeerContext {
            hello,
            roster: roster.clone(),
            secrets,
            core: events.clone(),
            tls_required: config.tls.is_some(),
        },
        client: ClientContext {
            requests: events.clone(),
            reader: reader_jobs.clone(),
            max_line_bytes: config.limits.max_line_bytes,
            metrics: metrics.clone(),
            token: config.client_token.clone().map(Arc::new),
            tls: config.tls.as_ref().map(|tls| tls.server.clone()),
        },
    };
    let (answer_sink, front_end) = listener::spawn(listener, context)?;
    // Ends by itself once the front end and the core thread let go of its queue.
    reader::spawn(node_dir, progress.clone(), reader_rx, answer_sink.clone())?;
    signals::watch(events.clone())?;
    if config.stop_on_stdin_eof {
        watch_stdin(events)?;
    }
    let runtime = Runtime::new(
        core,
        roster,
        config.timing.clone(),
        config.campaign_at_start,
        peers,
        Workers {
            storage_jobs,
            reader_jobs,
            progress,
        },
        answer_sink,
    )
    .with_retention(
        config.limits.retain_entries,
        config.limits.retain_bytes.is_some(),
    )
    .with_metrics(metrics.as_ref().map(Metrics::core).unwrap_or_default());
    let inputs = Inputs {
        events: events_rx,
        inbox,
    };
    Ok((runtime, inputs, front_end))
}

fn core_config(config: &NodeConfig) -> Config {
    let mut core = Config::new(config.members.own_id, config.members.founding_voters());
    let timing = &config.timing;
    core.election_timeout_ticks_min = timing.election_timeout_ticks_min;
    core.election_timeout_ticks_max = timing.election_timeout_ticks_max;
    core.heartbeat_interval_ticks = timing.heartbeat_interval_ticks;
    core.log_cache_bytes = config.limits.log_cache_bytes;
    core.read_lease = timing.read_lease;
    // Real nodes want different timeouts on every start; only the simulator needs replay.
    core.rng_seed = entropy();
    core
}

/// A seed that differs between processes and starts, without an RNG crate.
fn entropy() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(now.as_nanos());
    }
    hasher.finish()
}

/// Asks the core thread to stop once standard input reaches end of file.
fn watch_stdin(control: QueueSender<CoreEvent>) -> io::Result<()> {
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut sink = [0u8; 1024];
            let mut stdin = io::stdin().lock();
            loop {
                match stdin.read(&mut sink) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = control.send(CoreEvent::Control(Control::Shutdown(
                "standard input closed".into(),
            )));
        })?;
    Ok(())
}
