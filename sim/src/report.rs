//! What a run hands back: the violation that ended it, if any, and the summary.

use replog_core::NodeId;
use std::fmt;

/// A broken invariant, as the checker (or the disk, or a core assertion) found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The invariant's name, e.g. "Election Safety".
    pub invariant: &'static str,
    pub nodes: Vec<NodeId>,
    pub detail: String,
}

impl Violation {
    pub fn new(invariant: &'static str, nodes: &[NodeId], detail: impl Into<String>) -> Violation {
        Violation {
            invariant,
            nodes: nodes.to_vec(),
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes: Vec<String> = self.nodes.iter().map(|id| id.to_string()).collect();
        write!(
            f,
            "{} violated (nodes: {}): {}",
            self.invariant,
            if nodes.is_empty() {
                "-".to_string()
            } else {
                nodes.join(", ")
            },
            self.detail
        )
    }
}

/// Formats microseconds of simulated time as seconds, e.g. `12.003400s`.
pub fn seconds(time_us: u64) -> String {
    format!("{}.{:06}s", time_us / 1_000_000, time_us % 1_000_000)
}
