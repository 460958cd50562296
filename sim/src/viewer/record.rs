//! What the viewer needs beyond the trace: when each message was sent and will arrive,
//! commits, and the fault state of every node over time. Collected only for a run that
//! asked for a page, outside the trace hash, so recording changes nothing in the run.

use crate::checker::history::Op;
use crate::engine::Simulation;
use crate::rng::Ratio;
use crate::trace::{MessageSummary, TraceRecord};
use replog_core::{Index, Message};

/// Bits of [`NodeMark::flags`].
pub const DOWN: u8 = 1;
pub const PAUSED: u8 = 2;
pub const PARTITIONED: u8 = 4;

/// One node's fault state from `time_us` until its next mark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeMark {
    pub flags: u8,
    pub tick_us: u64,
}

#[derive(Clone, Debug, Default)]
pub struct Recording {
    pub records: Vec<TraceRecord>,
    /// (sent, arrives, message) for every copy the network will deliver.
    pub sends: Vec<(u64, u64, MessageSummary)>,
    /// (time, node index, new commit index).
    pub commits: Vec<(u64, usize, u64)>,
    /// (time, node index, state), whenever a node's state changes.
    pub marks: Vec<(u64, usize, NodeMark)>,
    /// (time, loss, duplicate), whenever the network's ratios change.
    pub network: Vec<(u64, Ratio, Ratio)>,
    pub ops: Vec<Op>,
    pub nominal_tick_us: u64,
    last_marks: Vec<Option<NodeMark>>,
    last_network: Option<(Ratio, Ratio)>,
    last_commits: Vec<u64>,
}

impl Recording {
    /// Every simulated node the recording saw: the cluster's and any spares.
    pub fn node_count(&self) -> usize {
        self.last_marks.len().max(self.last_commits.len())
    }
}

impl Simulation {
    /// Starts keeping everything the viewer shows.
    pub fn record_for_viewer(&mut self) {
        self.recording = Some(Box::new(Recording {
            nominal_tick_us: self.params.tick_us,
            ..Recording::default()
        }));
    }

    pub fn take_viewer_recording(&mut self) -> Option<Recording> {
        let mut recording = *self.recording.take()?;
        recording.ops = self.checker.history.ops.clone();
        Some(recording)
    }

    /// After each event: note what changed in the nodes' fault state.
    pub(crate) fn viewer_after_event(&mut self) {
        let Some(recording) = self.recording.as_deref_mut() else {
            return;
        };
        let count = self.nodes.len();
        recording.last_marks.resize(count, None);
        for (n, node) in self.nodes.iter().enumerate() {
            let partitioned = (0..count)
                .any(|o| o != n && (self.net.link_down(n, o) || self.net.link_down(o, n)));
            let flag = |on: bool, bit: u8| if on { bit } else { 0 };
            let flags = flag(node.core.is_none(), DOWN)
                | flag(node.backlog.is_some(), PAUSED)
                | flag(partitioned, PARTITIONED);
            let mark = NodeMark {
                flags,
                tick_us: node.tick_us,
            };
            if recording.last_marks[n] != Some(mark) {
                recording.last_marks[n] = Some(mark);
                recording.marks.push((self.now_us, n, mark));
            }
        }
        let network = (self.net.params.loss, self.net.params.duplicate);
        if recording.last_network != Some(network) {
            recording.last_network = Some(network);
            recording.network.push((self.now_us, network.0, network.1));
        }
    }

    pub(crate) fn viewer_sent(&mut self, message: &Message, arrives_us: u64) {
        if let Some(recording) = self.recording.as_deref_mut() {
            let summary = MessageSummary::of(message);
            recording.sends.push((self.now_us, arrives_us, summary));
        }
    }

    pub(crate) fn viewer_committed(&mut self, node: usize, index: Index) {
        if let Some(recording) = self.recording.as_deref_mut() {
            recording.last_commits.resize(self.nodes.len(), 0);
            if index.0 > recording.last_commits[node] {
                recording.last_commits[node] = index.0;
                recording.commits.push((self.now_us, node, index.0));
            }
        }
    }

    pub(crate) fn viewer_record(&mut self, record: TraceRecord) {
        if let Some(recording) = self.recording.as_deref_mut() {
            recording.records.push(record);
        }
    }
}
