//! `replog bench`: drive a cluster with closed-loop clients and report committed ops/s and
//! latency percentiles; `--local` starts (and afterwards stops) a fresh local cluster.

use crate::bench::certs::{TestCa, Validity};
use crate::bench::leadership::{self, Leadership};
use crate::bench::load::{self, Event, LoadConfig};
use crate::bench::procfs;
use crate::bench::report::{BenchReport, CpuUse};
use crate::cli::client_args::ClientArgs;
use crate::cli::duration::parse_duration;
use crate::cli::node::{ConsistencyArg, SchedulingArg};
use clap::Args;
use replog_node::local_cluster::{fresh_temp_dir, LocalCluster};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Client addresses of the cluster's nodes, comma-separated (clients follow redirects).
    /// Needed unless --local.
    // Not `required_unless_present`: clap's message for it would not mention --local.
    #[arg(short, long, value_delimiter = ',', conflicts_with = "local")]
    target: Vec<String>,
    /// Start a fresh local cluster, bench it, and stop it.
    #[arg(long)]
    local: bool,
    /// Nodes in the `--local` cluster.
    #[arg(long, default_value_t = 3, requires = "local", value_parser = clap::value_parser!(u64).range(1..=9))]
    nodes: u64,
    /// Concurrent clients, each with its own connection and one append outstanding.
    #[arg(short, long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    clients: u64,
    /// Length of the measured window, e.g. 10s.
    #[arg(short, long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Load before measuring starts, not counted.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
    /// Bytes per command.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    size: u64,
    /// This percentage of operations are reads (of the newest entry the client appended)
    /// instead of appends.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=100))]
    reads: u64,
    /// The consistency of those reads (see `replog read --help`); `lease` starts the
    /// --local nodes with --read-lease.
    #[arg(long, value_enum, default_value_t = ConsistencyArg::Linearizable)]
    consistency: ConsistencyArg,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Where `--local` keeps node data (default: a fresh temporary directory, removed after).
    #[arg(long, requires = "local")]
    data_dir: Option<PathBuf>,
    /// `--scheduling` for the `--local` nodes (see `replog start --help`). `batch` by
    /// default: a local cluster and its load generator are exactly the case it is for,
    /// more busy replog threads than CPUs on one machine.
    #[arg(long, value_enum, default_value_t = SchedulingArg::Batch, requires = "local")]
    node_scheduling: SchedulingArg,
    /// Run the `--local` nodes with `--metrics-addr` (on free ports), to measure what
    /// collecting metrics costs.
    #[arg(long, requires = "local")]
    node_metrics: bool,
    /// Run the `--local` nodes with TLS, with certificates from a throwaway CA made for
    /// the run (in the data directory), and connect the clients with TLS.
    #[arg(long, requires = "local")]
    tls: bool,
    /// Instead of throughput: what changing the leader costs one client appending
    /// continuously (the longest window without a commit, failed appends), over
    /// --rounds rounds (one per node for the rolling restarts).
    #[arg(long, value_enum, requires = "local")]
    leadership: Option<Leadership>,
    /// Rounds of `--leadership transfer` or `failover`.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=1000))]
    rounds: u64,
    #[command(flatten)]
    client: ClientArgs,
}

pub fn run(args: BenchArgs) -> ExitCode {
    if args.target.is_empty() && !args.local {
        eprintln!(
            "error: say which cluster to bench: --target ADDR[,ADDR...] for running nodes, \
             or --local to start a fresh local cluster (and stop it afterwards)"
        );
        return ExitCode::from(2);
    }
    if args.duration.is_zero() {
        eprintln!("error: --duration must be more than 0");
        return ExitCode::from(2);
    }
    if let Some(kind) = args.leadership {
        return run_leadership(&args, kind);
    }
    match if args.local {
        run_local(&args)
    } else {
        run_remote(&args)
    } {
        Ok(report) => {
            let text = if args.json {
                format!("{}\n", report.to_json())
            } else {
                report.to_text()
            };
            // A reader that went away (`| head`) is not an error of the run; SIGPIPE stays
            // ignored here (see main.rs), so this must not panic either.
            let _ = std::io::stdout().write_all(text.as_bytes());
            if report.committed == 0 {
                eprintln!("error: no append committed during the run");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `--leadership`: a fresh local cluster, the rounds, the report.
fn run_leadership(args: &BenchArgs, kind: Leadership) -> ExitCode {
    let outcome = (|| {
        let dir = fresh_temp_dir("replog-bench-leadership")
            .map_err(|e| format!("cannot make a temporary directory: {e}"))?;
        let exe = std::env::current_exe().map_err(|e| format!("cannot find replog: {e}"))?;
        let node_args = ["--scheduling", args.node_scheduling.as_arg()];
        let client = args.client.options()?;
        let nodes = args.nodes as usize;
        let mut cluster =
            LocalCluster::start_secured(&exe, nodes, &dir, &node_args, client.clone())
                .map_err(|e| format!("cannot start a local cluster: {e}"))?;
        let rounds = args.rounds as usize;
        let result = leadership::run(kind, &mut cluster, rounds, &client);
        if result.is_err() {
            eprintln!("{}", cluster.all_log_tails(20));
        }
        let _ = cluster.stop_all();
        let _ = std::fs::remove_dir_all(&dir);
        result
    })();
    match outcome {
        Ok(text) => {
            let _ = std::io::stdout().write_all(text.as_bytes());
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(args: &BenchArgs, targets: Vec<String>) -> Result<LoadConfig, String> {
    Ok(LoadConfig {
        targets,
        clients: args.clients as usize,
        duration: args.duration,
        warmup: args.warmup,
        command_bytes: args.size as usize,
        read_percent: args.reads,
        consistency: args.consistency.into(),
        client: args.client.options()?,
    })
}

fn run_remote(args: &BenchArgs) -> Result<BenchReport, String> {
    let targets: Vec<String> = args
        .target
        .iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    if targets.is_empty() {
        return Err("--target needs at least one address".into());
    }
    let config = load_config(args, targets)?;
    let mut progress = progress_line(&config);
    let result = load::run(&config, |event| {
        if let Event::Progress { elapsed, committed } = event {
            progress(elapsed, committed);
        }
    });
    finish_progress();
    Ok(BenchReport::new(&config, None, result))
}

fn run_local(args: &BenchArgs) -> Result<BenchReport, String> {
    let (data_dir, remove_after) = match &args.data_dir {
        Some(dir) => (dir.clone(), false),
        None => (
            fresh_temp_dir("replog-bench")
                .map_err(|e| format!("cannot make a temporary directory: {e}"))?,
            true,
        ),
    };
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find the replog executable: {e}"))?;
    let mut node_args = vec![
        "--scheduling".to_string(),
        args.node_scheduling.as_arg().into(),
    ];
    if args.node_metrics {
        node_args.extend(["--metrics-addr".into(), "127.0.0.1:0".into()]);
    }
    if args.consistency == ConsistencyArg::Lease {
        node_args.push("--read-lease".into());
    }
    let mut client = args.client.options()?;
    if args.tls {
        let (tls_args, config) = throwaway_tls(&data_dir)?;
        node_args.extend(tls_args);
        client.tls = Some(config);
    }
    let node_args: Vec<&str> = node_args.iter().map(String::as_str).collect();
    let nodes = args.nodes as usize;
    let mut cluster = LocalCluster::start_secured(&exe, nodes, &data_dir, &node_args, client)
        .map_err(|error| {
            format!(
                "cannot start a local cluster in {}: {error}",
                data_dir.display()
            )
        })?;
    let outcome = bench_cluster(args, &mut cluster);
    if outcome.is_err() {
        eprintln!("{}", cluster.all_log_tails(20));
    }
    let _ = cluster.stop_all();
    if remove_after {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    outcome
}

/// A CA and one certificate for every node (all on 127.0.0.1), in `dir/tls`: the nodes'
/// TLS flags, and the clients' configuration.
fn throwaway_tls(
    dir: &std::path::Path,
) -> Result<(Vec<String>, std::sync::Arc<rustls::ClientConfig>), String> {
    let dir = dir.join("tls");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
    let ca = TestCa::new(&dir, "bench-ca")?;
    let node = ca.issue(&dir, "node", Validity::Current)?;
    let args = [
        ("--tls-cert", &node.cert),
        ("--tls-key", &node.key),
        ("--tls-ca", &ca.cert),
    ]
    .iter()
    .flat_map(|(flag, path)| [flag.to_string(), path.display().to_string()])
    .collect();
    let config = replog_node::tls::client_config(&ca.cert, None)?;
    Ok((args, config))
}

fn bench_cluster(args: &BenchArgs, cluster: &mut LocalCluster) -> Result<BenchReport, String> {
    let leader = cluster.wait_for_leader(Duration::from_secs(10))?;
    status(
        args,
        &format!(
            "local cluster of {} nodes up (--scheduling {}{}); leader {leader}",
            args.nodes,
            args.node_scheduling.as_arg(),
            if args.node_metrics {
                ", metrics on"
            } else {
                ""
            }
        ),
    );
    // Clients start at the leader, with every node as a fallback.
    let mut targets = vec![leader.clone()];
    targets.extend(cluster.addrs().into_iter().filter(|a| *a != leader));
    let mut config = load_config(args, targets)?;
    config.client = cluster.client().clone();
    let pids: Vec<u32> = (0..cluster.len()).filter_map(|k| cluster.pid(k)).collect();
    let mut progress = progress_line(&config);
    let mut cpu = CpuMeter::new(pids.clone());
    let result = load::run(&config, |event| match event {
        Event::Progress { elapsed, committed } => progress(elapsed, committed),
        Event::WindowStart => cpu.start(),
        Event::WindowEnd => cpu.end(),
    });
    finish_progress();
    for k in 0..cluster.len() {
        if !cluster.is_running(k) {
            return Err(format!("node {} died during the run", k + 1));
        }
    }
    let mut report = BenchReport::new(&config, Some(args.nodes as usize), result);
    report.node_scheduling = Some(args.node_scheduling.as_arg());
    let rss: Vec<u64> = pids
        .iter()
        .filter_map(|&pid| procfs::rss_bytes(pid))
        .collect();
    report.node_rss_bytes_max = rss.iter().copied().max();
    report.cpu = cpu.per_op(report.committed);
    Ok(report)
}

/// CPU time used by every node and by this process over the measured window.
struct CpuMeter {
    pids: Vec<u32>,
    /// Node readings then this process's, at the window's start and end.
    start: Option<Vec<u64>>,
    end: Option<Vec<u64>>,
}

impl CpuMeter {
    fn new(pids: Vec<u32>) -> CpuMeter {
        CpuMeter {
            pids,
            start: None,
            end: None,
        }
    }

    fn read(&self) -> Option<Vec<u64>> {
        let mut readings: Vec<u64> = self
            .pids
            .iter()
            .map(|&pid| procfs::cpu_us(pid))
            .collect::<Option<_>>()?;
        readings.push(procfs::own_cpu_us()?);
        Some(readings)
    }

    fn start(&mut self) {
        self.start = self.read();
    }

    fn end(&mut self) {
        self.end = self.read();
    }

    fn per_op(&self, committed: u64) -> Option<CpuUse> {
        let (start, end) = (self.start.as_ref()?, self.end.as_ref()?);
        if committed == 0 {
            return None;
        }
        let per_op: Vec<f64> = start
            .iter()
            .zip(end)
            .map(|(a, b)| b.saturating_sub(*a) as f64 / committed as f64)
            .collect();
        let (client, nodes) = per_op.split_last()?;
        Some(CpuUse {
            node_us_per_op: nodes.to_vec(),
            client_us_per_op: *client,
        })
    }
}

fn status(args: &BenchArgs, message: &str) {
    if !args.json {
        eprintln!("{message}");
    }
}

/// Rewrites one progress line on stderr each second, when stderr is a terminal.
fn progress_line(config: &LoadConfig) -> impl FnMut(Duration, u64) {
    let total = config.warmup + config.duration;
    let warmup = config.warmup;
    let terminal = std::io::stderr().is_terminal();
    let mut last = 0;
    move |elapsed, committed| {
        if terminal {
            let phase = if elapsed < warmup {
                "warming up"
            } else {
                "measuring"
            };
            let rate = committed - last;
            last = committed;
            eprint!(
                "\r{phase}: {:>4.1}/{:.1} s  committed {committed}  ({rate} in the last second)   ",
                elapsed.as_secs_f64(),
                total.as_secs_f64()
            );
            let _ = std::io::stderr().flush();
        }
    }
}

fn finish_progress() {
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
}
