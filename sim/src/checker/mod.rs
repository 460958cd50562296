//! The safety checker. It runs after every event and looks only at what that event changed,
//! so a check costs about as much as the step it follows.
//!
//! Invariants (Raft paper Figure 3, and what clients were told):
//! - **Election Safety**: at most one leader per term; no node grants two votes in a term.
//! - **Leader Append-Only**: a leader never overwrites or deletes entries in its term.
//! - **Log Matching**: see [`registry`]; also, nobody ever drops entries of its current term.
//! - **Leader Completeness**: a leader of term T holds every entry committed before T.
//! - **State Machine Safety**: every node commits and applies a prefix of one sequence.
//! - **Monotonic Commit**: commit and applied indexes never decrease, and a restart resumes
//!   from what was durable.
//! - **Durability**: the newest committed entry is on a majority of disks, across crashes.
//! - **Membership** (`membership.rs`): a leader commits only what a majority of the voters
//!   of its configuration in force hold durably, and Durability counts that majority; a
//!   restarted node's configuration is the newest in its log, never an older one.
//! - **Linearizability**: see [`history`].
//! - **Log Window**: a core forgets only entries its disk holds durably (so a `Fetch` can
//!   always be served), and every `Fetch` asks for durable entries.

pub mod history;
mod membership;
pub mod recorded;
pub mod registry;
pub mod state;

use crate::disk::Durable;
use crate::report::Violation;
use history::History;
use registry::{fingerprint, Registry};
use replog_core::{
    Entry, Index, Membership, MessageBody, NodeId, Output, Payload, Role, Term, Write,
};
pub use state::NodeState;
use std::collections::BTreeMap;

/// What the checker last saw of a node: the state before the step it is checking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct NodeView {
    role: Role,
    term: Term,
    commit: Index,
    applied: Index,
    last_index: Index,
    last_term: Term,
}

impl NodeView {
    fn of(core: &NodeState) -> NodeView {
        NodeView {
            role: core.role,
            term: core.term,
            commit: core.commit_index,
            applied: core.applied_index,
            last_index: core.last_index(),
            last_term: core.last_term(),
        }
    }
}

/// One committed entry as first observed.
#[derive(Clone, Copy, Debug)]
struct Committed {
    term: Term,
    fingerprint: u64,
    /// The lowest term of any node at the moment it saw this entry committed. The entry was
    /// committed in this term or earlier, so every leader of a later term must hold it.
    seen_in_term: Term,
}

pub struct Checker {
    nodes: Vec<NodeView>,
    majority: usize,
    leaders: BTreeMap<Term, NodeId>,
    votes: BTreeMap<(Term, NodeId), NodeId>,
    registry: Registry,
    /// The committed log: `committed[k]` is the entry at index `k + 1`.
    committed: Vec<Committed>,
    /// The configuration before any entry, then each committed configuration entry, by
    /// index (for checking a restart's configuration).
    committed_configs: Vec<(Index, Membership)>,
    /// The highest index a leader committed and the voters of its configuration in force
    /// then: what Durability counts after a crash.
    commit_quorum: Option<(Index, Vec<NodeId>)>,
    pub history: History,
}

impl Checker {
    pub fn new(nodes: usize) -> Checker {
        let fresh = NodeView {
            role: Role::Follower,
            term: Term(0),
            commit: Index(0),
            applied: Index(0),
            last_index: Index(0),
            last_term: Term(0),
        };
        Checker {
            nodes: vec![fresh; nodes],
            majority: nodes / 2 + 1,
            leaders: BTreeMap::new(),
            votes: BTreeMap::new(),
            registry: Registry::default(),
            committed: Vec::new(),
            committed_configs: vec![(
                Index(0),
                Membership::bootstrap(&(1..=nodes as u64).map(NodeId).collect::<Vec<_>>()),
            )],
            commit_quorum: None,
            history: History::default(),
        }
    }

    /// A checker for `nodes` bootstrap voters and `spares` more nodes after them, members
    /// only once added.
    pub fn with_spares(nodes: usize, spares: usize) -> Checker {
        let mut checker = Checker::new(nodes);
        let fresh = checker.nodes[0];
        checker.nodes.extend(std::iter::repeat_n(fresh, spares));
        checker
    }

    /// Terms in which some node led.
    pub fn elections(&self) -> usize {
        self.leaders.len()
    }

    pub fn committed_len(&self) -> Index {
        Index(self.committed.len() as u64)
    }

    /// Checks one step of node `node`, whose outputs are `outputs`.
    pub fn after_step(
        &mut self,
        node: usize,
        core: &NodeState,
        outputs: &[Output],
    ) -> Result<(), Violation> {
        let before = self.nodes[node];
        let id = core.id;
        if core.term < before.term {
            return Err(Violation::new(
                "Monotonic Commit",
                &[id],
                format!("term went back from {} to {}", before.term, core.term),
            ));
        }
        let installs_now = outputs.iter().any(|output| {
            matches!(output, Output::Persist(write)
                if write.install.as_ref().is_some_and(|i| i.last == core.window_prev))
        });
        let mut view = *core;
        if installs_now {
            // The disk will hold the install once this step's writes are carried out.
            view.pending_install = Some(core.window_prev);
        }
        let core = &view;
        if !core.window_edge_is_stored() {
            return Err(Violation::new(
                "Log Window",
                &[id],
                format!(
                    "the core forgot entries up to {}/{} that its disk does not hold",
                    core.window_prev.index, core.window_prev.term
                ),
            ));
        }
        for output in outputs {
            if let Output::Persist(write) = output {
                self.check_write(core, &before, write)?;
            }
        }
        self.check_commit(core, &before)?;
        if core.role == Role::Leader {
            self.check_leader(core, &before)?;
        }
        let mut applied = before.applied;
        for output in outputs {
            match output {
                Output::Send(message) => {
                    if let MessageBody::RequestVoteResponse {
                        pre_vote: false,
                        granted: true,
                    } = message.body
                    {
                        self.check_vote(message.term, message.from, message.to)?;
                    }
                }
                Output::Commit(entries) => applied = self.check_applied(id, applied, entries)?,
                _ => {}
            }
        }
        self.nodes[node] = NodeView::of(core);
        Ok(())
    }

    /// A write describes exactly how the step changed the in-memory log.
    fn check_write(
        &mut self,
        core: &NodeState,
        before: &NodeView,
        write: &Write,
    ) -> Result<(), Violation> {
        let id = core.id;
        if let Some(after) = write
            .truncate_after
            .filter(|&after| after < before.last_index)
        {
            if after < before.commit {
                return Err(Violation::new(
                    "State Machine Safety",
                    &[id],
                    format!(
                        "truncated after {after} below its commit index {}",
                        before.commit
                    ),
                ));
            }
            if before.role == Role::Leader && core.term == before.term {
                return Err(Violation::new(
                    "Leader Append-Only",
                    &[id],
                    format!(
                        "the leader of {} truncated its log after {after}",
                        before.term
                    ),
                ));
            }
            if before.last_term == core.term {
                // Entries of the current term come only from its leader, whose log never
                // contradicts them: dropping one means a stale request was obeyed.
                return Err(Violation::new(
                    "Log Matching",
                    &[id],
                    format!(
                        "truncated after {after}, dropping entries of its current term {}",
                        core.term
                    ),
                ));
            }
        }
        for entry in &write.entries {
            let prev_term = core.term_at(entry.index.prev()).unwrap_or(Term(0));
            self.registry.observe(id, entry, prev_term)?;
        }
        Ok(())
    }

    fn check_commit(&mut self, core: &NodeState, before: &NodeView) -> Result<(), Violation> {
        let commit = core.commit_index;
        if commit < before.commit {
            return Err(Violation::new(
                "Monotonic Commit",
                &[core.id],
                format!("commit index went back from {} to {commit}", before.commit),
            ));
        }
        for index in (before.commit.0 + 1)..=commit.0 {
            match core.entry(Index(index)) {
                Some(entry) => self.observe_committed(core.id, entry, core.term)?,
                // An install: the node's log now starts after a boundary it does not hold.
                None => self.check_boundary(core, Index(index))?,
            }
        }
        Ok(())
    }

    /// `core` considers `index` committed without holding it (an install put its log's
    /// boundary there): it must be committed already, with the term the node names.
    fn check_boundary(&self, core: &NodeState, index: Index) -> Result<(), Violation> {
        let Some(term) = core.term_at(index) else {
            return Ok(()); // Below the boundary: committed, and checked when it was.
        };
        match self.committed.get((index.0 - 1) as usize) {
            Some(known) if known.term == term => Ok(()),
            known => Err(Violation::new(
                "State Machine Safety",
                &[core.id],
                format!(
                    "its log now starts after {index}/{term}, but {}",
                    match known {
                        Some(known) => format!("{index}/{} was committed", known.term),
                        None => format!("{index} was never committed"),
                    }
                ),
            )),
        }
    }

    /// `node`, in `term`, considers `entry` committed.
    fn observe_committed(
        &mut self,
        node: NodeId,
        entry: &Entry,
        term: Term,
    ) -> Result<(), Violation> {
        let position = (entry.index.0 - 1) as usize;
        let print = fingerprint(&entry.payload);
        match self.committed.get_mut(position) {
            Some(known) if known.term != entry.term || known.fingerprint != print => {
                Err(Violation::new(
                    "State Machine Safety",
                    &[node],
                    format!(
                        "committed {}/{} where {}/{} was committed before",
                        entry.index, entry.term, entry.index, known.term
                    ),
                ))
            }
            Some(known) => {
                known.seen_in_term = known.seen_in_term.min(term);
                Ok(())
            }
            None => {
                assert_eq!(position, self.committed.len(), "commits are contiguous");
                self.committed.push(Committed {
                    term: entry.term,
                    fingerprint: print,
                    seen_in_term: term,
                });
                match &entry.payload {
                    Payload::Command(command) | Payload::Session { command, .. } => {
                        self.history.committed(command, entry.index)
                    }
                    Payload::Config(membership) => {
                        self.committed_configs
                            .push((entry.index, membership.clone()));
                        Ok(())
                    }
                    Payload::Noop | Payload::Trim { .. } => Ok(()),
                }
            }
        }
    }

    fn check_leader(&mut self, core: &NodeState, before: &NodeView) -> Result<(), Violation> {
        let (id, term) = (core.id, core.term);
        if before.role == Role::Leader && before.term == term {
            if core.last_index() < before.last_index
                || core.term_at(before.last_index) != Some(before.last_term)
            {
                return Err(Violation::new(
                    "Leader Append-Only",
                    &[id],
                    format!(
                        "the leader of {term} rewrote its log below {}",
                        before.last_index
                    ),
                ));
            }
            return Ok(());
        }
        if let Some(&other) = self.leaders.get(&term) {
            if other != id {
                return Err(Violation::new(
                    "Election Safety",
                    &[other, id],
                    format!("two leaders in {term}"),
                ));
            }
        }
        self.leaders.insert(term, id);
        self.check_completeness(core)
    }

    /// The newest entry committed before this leader's term must be in its log; Log Matching
    /// (checked on every append) then vouches for everything before it.
    fn check_completeness(&self, core: &NodeState) -> Result<(), Violation> {
        let term = core.term;
        let Some(position) = self.committed.iter().rposition(|c| c.seen_in_term < term) else {
            return Ok(());
        };
        let expected = &self.committed[position];
        let index = Index(position as u64 + 1);
        let held = core.entry(index);
        if held.is_some_and(|e| {
            e.term == expected.term && fingerprint(&e.payload) == expected.fingerprint
        }) {
            return Ok(());
        }
        if index < core.first_index() {
            // Trimmed here: everything up to the boundary was committed when it was trimmed,
            // and the boundary itself is checked when the node's commit index passes it.
            return Ok(());
        }
        Err(Violation::new(
            "Leader Completeness",
            &[core.id],
            format!(
                "the new leader of {term} lacks committed entry {index}/{} (it holds {:?})",
                expected.term,
                held.map(|e| e.term)
            ),
        ))
    }

    fn check_vote(
        &mut self,
        term: Term,
        voter: NodeId,
        candidate: NodeId,
    ) -> Result<(), Violation> {
        match self.votes.insert((term, voter), candidate) {
            Some(earlier) if earlier != candidate => Err(Violation::new(
                "Election Safety",
                &[voter, earlier, candidate],
                format!("{voter} granted its vote in {term} to both {earlier} and {candidate}"),
            )),
            _ => Ok(()),
        }
    }

    /// `Commit` outputs continue the node's applied sequence, along the committed log.
    fn check_applied(
        &self,
        id: NodeId,
        applied: Index,
        entries: &[Entry],
    ) -> Result<Index, Violation> {
        let mut applied = applied;
        for entry in entries {
            if entry.index != applied.next() {
                return Err(Violation::new(
                    "Monotonic Commit",
                    &[id],
                    format!("applied {} right after {applied}", entry.index),
                ));
            }
            let position = (entry.index.0 - 1) as usize;
            let same = self.committed.get(position).is_some_and(|c| {
                c.term == entry.term && c.fingerprint == fingerprint(&entry.payload)
            });
            if !same {
                return Err(Violation::new(
                    "State Machine Safety",
                    &[id],
                    format!(
                        "applied {}/{}, which is not the committed entry there",
                        entry.index, entry.term
                    ),
                ));
            }
            applied = entry.index;
        }
        Ok(applied)
    }

    /// A read returned the prefix ending at `index`/`term`: it must be the committed log's
    /// (the history then checks its freshness).
    pub fn read_returned(
        &mut self,
        op: history::OpId,
        index: Index,
        term: Term,
        now_us: u64,
    ) -> Result<(), Violation> {
        if index > Index(0) {
            let known = self.committed.get((index.0 - 1) as usize);
            if known.is_none_or(|c| c.term != term) {
                return Err(Violation::new(
                    "Linearizability",
                    &[],
                    format!(
                        "op{op} read the log up to {index}/{term}, which is not the committed \
                         log's (it holds {:?} there)",
                        known.map(|c| c.term)
                    ),
                ));
            }
        }
        self.history.read_returned(op, index, term, now_us)
    }

    /// A node came back from disk: it resumes at its durable commit index, which must still
    /// be the committed log's.
    pub fn after_restart(
        &mut self,
        node: usize,
        core: &NodeState,
        durable: &Durable,
    ) -> Result<(), Violation> {
        let id = core.id;
        let commit = core.commit_index;
        if commit < durable.commit_index || core.applied_index < durable.commit_index {
            return Err(Violation::new(
                "Monotonic Commit",
                &[id],
                format!(
                    "restarted below its durable commit index {}",
                    durable.commit_index
                ),
            ));
        }
        if commit > Index(0) {
            let term = core.term_at(commit).expect("commit within log");
            let position = (commit.0 - 1) as usize;
            if self.committed.get(position).is_none_or(|c| c.term != term) {
                return Err(Violation::new(
                    "State Machine Safety",
                    &[id],
                    format!(
                        "restarted with {commit}/{} committed, which is not the committed entry",
                        term
                    ),
                ));
            }
        }
        self.nodes[node] = NodeView::of(core);
        Ok(())
    }

    /// After a crash: the newest committed entry must still be on a majority of disks.
    pub fn check_durability<'a>(
        &self,
        disks: impl Iterator<Item = (NodeId, &'a Durable)>,
    ) -> Result<(), Violation> {
        let Some(last) = self.committed.last() else {
            return Ok(());
        };
        let position = self.committed.len() - 1;
        // Counted among the voters the newest commit was made with (all nodes, before any).
        let voters = self.commit_quorum.as_ref().map(|(_, voters)| voters);
        let majority = voters.map_or(self.majority, |voters| voters.len() / 2 + 1);
        let holders = disks
            .filter(|(id, _)| voters.is_none_or(|voters| voters.contains(id)))
            .filter(|(_, durable)| {
                durable
                    .id_at(Index(position as u64 + 1))
                    .is_some_and(|id| id.term == last.term)
            })
            .count();
        if holders >= majority {
            return Ok(());
        }
        Err(Violation::new(
            "Durability",
            &[],
            format!(
                "committed entry {}/{} is on only {holders} disks of voters {voters:?}, fewer \
                 than a majority of {majority}",
                position + 1,
                last.term,
            ),
        ))
    }
}

#[cfg(test)]
mod tests;
