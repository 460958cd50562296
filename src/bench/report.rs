//! Turns a finished run into the text table or the one JSON object `replog bench` prints.

use super::load::{LoadConfig, LoadResult};
use serde::Serialize;

/// Everything a run reports; also the `--json` shape.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub nodes: Option<usize>,
    pub clients: usize,
    pub command_bytes: usize,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub committed: u64,
    pub ops_per_sec: f64,
    pub latency_us_p50: Option<u32>,
    pub latency_us_p90: Option<u32>,
    pub latency_us_p99: Option<u32>,
    pub latency_us_max: Option<u32>,
    /// Reads answered in the window (`--reads`), their rate, consistency and latency.
    pub reads: u64,
    pub reads_per_sec: f64,
    pub read_consistency: &'static str,
    pub read_latency_us_p50: Option<u32>,
    pub read_latency_us_p99: Option<u32>,
    pub redirects: u64,
    pub no_leader: u64,
    pub timeouts: u64,
    pub connection_errors: u64,
    /// The largest resident set of any node at the end (`--local` only).
    pub node_rss_bytes_max: Option<u64>,
    /// The `--scheduling` the nodes ran with (`--local` only).
    pub node_scheduling: Option<&'static str>,
    /// CPU time per committed append over the measured window (`--local` on Linux only).
    #[serde(flatten)]
    pub cpu: Option<CpuUse>,
}

/// CPU time spent per committed append, in microseconds: what limits throughput once the
/// machine's cores are busy.
#[derive(Clone, Debug, Serialize)]
pub struct CpuUse {
    /// One value per node, in node id order.
    #[serde(rename = "cpu_us_per_op_nodes")]
    pub node_us_per_op: Vec<f64>,
    /// The load generator itself.
    #[serde(rename = "cpu_us_per_op_client")]
    pub client_us_per_op: f64,
}

impl BenchReport {
    pub fn new(config: &LoadConfig, nodes: Option<usize>, result: LoadResult) -> BenchReport {
        let duration_s = config.duration.as_secs_f64();
        let percentiles = result.latencies.percentiles();
        let read_percentiles = result.read_latencies.percentiles();
        let problems = &result.problems;
        BenchReport {
            nodes,
            clients: config.clients,
            command_bytes: config.command_bytes,
            duration_s,
            warmup_s: config.warmup.as_secs_f64(),
            committed: result.committed,
            ops_per_sec: result.committed as f64 / duration_s,
            latency_us_p50: percentiles.map(|p| p.p50_us),
            latency_us_p90: percentiles.map(|p| p.p90_us),
            latency_us_p99: percentiles.map(|p| p.p99_us),
            latency_us_max: percentiles.map(|p| p.max_us),
            reads: result.reads,
            reads_per_sec: result.reads as f64 / duration_s,
            read_consistency: config.consistency.name(),
            read_latency_us_p50: read_percentiles.map(|p| p.p50_us),
            read_latency_us_p99: read_percentiles.map(|p| p.p99_us),
            redirects: problems.redirects,
            no_leader: problems.no_leader,
            timeouts: problems.timeouts,
            connection_errors: problems.connection_errors,
            node_rss_bytes_max: None,
            node_scheduling: None,
            cpu: None,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a report always serializes")
    }

    pub fn to_text(&self) -> String {
        let ms = |us: Option<u32>| {
            us.map_or("-".to_string(), |us| {
                format!("{:.2} ms", us as f64 / 1000.0)
            })
        };
        let mut text = format!(
            "clients {}  command {} B  measured {:.1} s (after {:.1} s warmup)\n\
             committed {}  throughput {:.0} ops/s\n\
             latency p50 {}  p90 {}  p99 {}  max {}\n",
            self.clients,
            self.command_bytes,
            self.duration_s,
            self.warmup_s,
            self.committed,
            self.ops_per_sec,
            ms(self.latency_us_p50),
            ms(self.latency_us_p90),
            ms(self.latency_us_p99),
            ms(self.latency_us_max),
        );
        if self.reads > 0 {
            text.push_str(&format!(
                "reads {} ({})  throughput {:.0} reads/s  latency p50 {}  p99 {}\n",
                self.reads,
                self.read_consistency,
                self.reads_per_sec,
                ms(self.read_latency_us_p50),
                ms(self.read_latency_us_p99),
            ));
        }
        if let Some(scheduling) = self.node_scheduling {
            text.push_str(&format!("nodes ran with --scheduling {scheduling}\n"));
        }
        if let Some(rss) = self.node_rss_bytes_max {
            text.push_str(&format!("largest node RSS {:.1} MB\n", rss as f64 / 1e6));
        }
        if let Some(cpu) = &self.cpu {
            let nodes: Vec<String> = cpu
                .node_us_per_op
                .iter()
                .map(|us| format!("{us:.1}"))
                .collect();
            text.push_str(&format!(
                "CPU per append: nodes {} us, load generator {:.1} us\n",
                nodes.join(" / "),
                cpu.client_us_per_op
            ));
        }
        let problems = self.redirects + self.no_leader + self.timeouts + self.connection_errors;
        if problems > 0 {
            text.push_str(&format!(
                "problems: {} redirects, {} no-leader answers, {} timeouts, {} connection errors\n",
                self.redirects, self.no_leader, self.timeouts, self.connection_errors
            ));
        }
        text
    }
}
