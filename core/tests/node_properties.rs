//! proptest on one node: arbitrary, adversarial input sequences (messages from any term,
//! duplicates, stale responses, ticks, proposals, early, late and bogus persist acks) never
//! panic and keep the safety properties a peer relies on.

mod support;

use proptest::prelude::*;
use replog_core::{
    AppendResponse, ConflictHint, Entry, Index, Input, Message, MessageBody, NodeId, Output,
    Payload, RaftCore, ReadId, ReadMode, Recovered, Role, Term, Write, WriteId,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use support::{config, Disk};

#[derive(Clone, Debug)]
enum Action {
    Tick(u8),
    Propose(u8),
    /// Report the first `k` pending writes durable (clamped), or a bogus id.
    Persist(u8),
    BogusPersist(u64),
    /// A message whose term is the node's current term plus `term_delta` when delivered, so
    /// that sequences stay relevant however far the node's term has moved.
    Receive(Message, i8),
    /// Deliver again a message this node received earlier (duplicate / stale).
    Replay(u8),
    /// A client read; a lease read when true.
    Read(bool),
    /// Ask the node to hand its leadership to this id (0 and 4 are no voters).
    Transfer(u64),
}

// Small ranges on purpose: collisions (matching prev entries, equal terms) are what make
// the interesting paths (acceptance, conflicts, commitment) reachable.
fn term() -> impl Strategy<Value = Term> {
    prop_oneof![3 => (1u64..4).prop_map(Term), 1 => (0u64..7).prop_map(Term)]
}

fn index() -> impl Strategy<Value = Index> {
    prop_oneof![3 => (0u64..4).prop_map(Index), 1 => (0u64..10).prop_map(Index)]
}

fn sender() -> impl Strategy<Value = NodeId> {
    prop_oneof![8 => (2u64..=3).prop_map(NodeId), 1 => Just(NodeId(9)), 1 => Just(NodeId(1))]
}

fn entries_after(
    prev: Index,
    prev_term: Term,
    max_term: Term,
) -> impl Strategy<Value = Vec<Entry>> {
    prop::collection::vec((0u64..=1, any::<bool>()), 0..4).prop_map(move |steps| {
        let mut term = prev_term.0.max(1);
        steps
            .into_iter()
            .enumerate()
            .map(|(offset, (bump, noop))| {
                term = (term + bump).min(max_term.0.max(1));
                Entry {
                    index: prev.plus(offset as u64 + 1),
                    term: Term(term),
                    payload: if noop {
                        Payload::Noop
                    } else {
                        Payload::Command(format!("e{offset}").into())
                    },
                }
            })
            .collect()
    })
}

fn body() -> impl Strategy<Value = (Term, MessageBody)> {
    prop_oneof![
        (term(), any::<bool>(), index(), term(), any::<bool>()).prop_map(
            |(t, pre_vote, last_log_index, last_log_term, transfer)| {
                (
                    t,
                    MessageBody::RequestVote {
                        pre_vote,
                        last_log_index,
                        last_log_term,
                        transfer,
                    },
                )
            }
        ),
        (term(), any::<bool>(), any::<bool>()).prop_map(|(t, pre_vote, granted)| (
            t,
            MessageBody::RequestVoteResponse { pre_vote, granted }
        )),
        (term(), index(), term(), index()).prop_flat_map(|(t, prev, prev_term, commit)| {
            // Index 0 only matches term 0.
            let prev_term = if prev == Index(0) { Term(0) } else { prev_term };
            entries_after(prev, prev_term, t).prop_map(move |entries| {
                let body = MessageBody::AppendEntries {
                    prev_log_index: prev,
                    prev_log_term: prev_term,
                    entries,
                    leader_commit: commit,
                };
                (t, body)
            })
        }),
        (
            term(),
            index(),
            proptest::option::of((proptest::option::of(term()), index()))
        )
            .prop_map(|(t, index, reject)| {
                let reject = reject.map(|(conflict_term, first_index)| ConflictHint {
                    conflict_term,
                    first_index,
                });
                (
                    t,
                    MessageBody::AppendEntriesResponse(AppendResponse { index, reject }),
                )
            }),
        (term(), 0u64..6).prop_map(|(t, id)| (t, MessageBody::ReadIndex { id: ReadId(id) })),
        (term(), 0u64..6, proptest::option::of(index())).prop_map(|(t, id, index)| (
            t,
            MessageBody::ReadIndexResponse {
                id: ReadId(id),
                index
            }
        )),
        (term(), 0u64..4).prop_map(|(t, round)| (t, MessageBody::ReadProbe { round })),
        (term(), 0u64..4).prop_map(|(t, round)| (t, MessageBody::ReadProbeResponse { round })),
        term().prop_map(|t| (t, MessageBody::TimeoutNow)),
    ]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => (1u8..8).prop_map(Action::Tick),
        2 => (1u8..4).prop_map(Action::Propose),
        4 => (0u8..4).prop_map(Action::Persist),
        1 => (0u64..40).prop_map(Action::BogusPersist),
        10 => (sender(), body(), -2i8..=2).prop_map(|(from, (term, body), term_delta)| {
            Action::Receive(Message { from, to: NodeId(1), term, body }, term_delta)
        }),
        2 => any::<u8>().prop_map(Action::Replay),
        2 => any::<bool>().prop_map(Action::Read),
        1 => (0u64..5).prop_map(Action::Transfer),
    ]
}

/// The driver side of the test: a disk that changes only when the node is told a write is
/// durable, and everything the node ever said.
struct Harness {
    core: RaftCore,
    disk: Disk,
    pending: Vec<Write>,
    received: Vec<Message>,
    /// Vote grants sent, by term.
    granted: BTreeMap<Term, NodeId>,
    /// For each success acknowledgement the node owes (to, term, index): the log prefix it
    /// vouched for when the AppendEntries was handled, oldest first. An ack may be released
    /// steps later, after a (faulty) same-term leader changed the log again; what must be
    /// durable by then is what the ack vouched for, not the log of the moment.
    vouched: BTreeMap<(NodeId, Term, Index), VecDeque<Vec<Entry>>>,
    committed: Vec<Entry>,
    /// Reads asked (ids 0..reads_asked) and the ones answered.
    reads_asked: u64,
    reads_answered: BTreeSet<ReadId>,
}

impl Harness {
    fn step(&mut self, input: Input) {
        let term_before = self.core.term();
        let commit_before = self.core.commit_index();
        // The default cache holds these short logs whole, so the window starts at index 1.
        let committed_prefix = self
            .core
            .log()
            .slice(Index(1), commit_before)
            .expect("the cache holds the whole log")
            .to_vec();
        let mut outputs = Vec::new();
        self.core.step(input.clone(), &mut outputs);
        self.core.check_invariants();
        let transfer_answers = outputs
            .iter()
            .filter(|o| matches!(o, Output::Transfer(_)))
            .count();
        let asked = usize::from(matches!(input, Input::Transfer { .. }));
        assert_eq!(
            transfer_answers, asked,
            "a transfer answered other than once"
        );
        if let Input::Receive(message) = &input {
            self.record_vouched(message);
        }

        if let Input::Persisted { write_id } = input {
            self.apply_durable(write_id);
        }
        assert!(self.core.term() >= term_before, "term decreased");
        assert!(
            self.core.commit_index() >= commit_before,
            "commit index decreased"
        );
        assert_eq!(
            self.core.log().slice(Index(1), commit_before),
            Ok(&committed_prefix[..]),
            "a committed entry changed"
        );
        for output in outputs {
            self.check_output(output, commit_before);
        }
    }

    /// Records what a success ack to `message` will vouch for, if the node accepted it.
    fn record_vouched(&mut self, message: &Message) {
        let MessageBody::AppendEntries {
            prev_log_index,
            prev_log_term,
            entries,
            ..
        } = &message.body
        else {
            return;
        };
        let log = self.core.log();
        // Any node but itself may lead it: a leader added after its configuration is one
        // it has never heard of (membership changes).
        let accepted = message.from != NodeId(1)
            && message.from != NodeId(0)
            && message.term == self.core.term()
            && self.core.role() != Role::Leader
            && well_formed(*prev_log_index, *prev_log_term, message.term, entries)
            && log.matches(*prev_log_index, *prev_log_term)
            && entries.iter().all(|e| log.matches(e.index, e.term));
        if accepted {
            let last = prev_log_index.plus(entries.len() as u64);
            let prefix = log
                .slice(Index(1), last)
                .expect("the cache holds the whole log")
                .to_vec();
            let key = (message.from, message.term, last);
            self.vouched.entry(key).or_default().push_back(prefix);
        }
    }

    fn apply_durable(&mut self, write_id: WriteId) {
        while self.pending.first().is_some_and(|w| w.id <= write_id) {
            let write = self.pending.remove(0);
            self.disk.apply(&write);
        }
    }

    fn check_output(&mut self, output: Output, commit_before: Index) {
        match output {
            Output::Persist(write) => {
                if let Some(after) = write.truncate_after {
                    assert!(
                        after >= commit_before,
                        "truncates committed entries after {after}"
                    );
                }
                self.pending.push(write);
            }
            Output::Send(message) => self.check_sent(message),
            Output::Commit(entries) => {
                for entry in entries {
                    assert_eq!(entry.index.0, self.committed.len() as u64 + 1, "commit gap");
                    let on_disk = self.disk.entries.get(entry.index.0 as usize - 1);
                    assert_eq!(on_disk, Some(&entry), "committed an entry not on disk");
                    self.committed.push(entry);
                }
            }
            Output::Fetch(request) => {
                panic!("nothing leaves the default cache here, yet {request:?}")
            }
            Output::MembershipChanged(in_force) => {
                panic!("nothing changes the configuration here, yet {in_force:?}")
            }
            Output::ReadReady { reads, index } => {
                assert!(
                    index <= self.core.applied_index(),
                    "released a read at {index} before applying it"
                );
                self.answered(reads);
            }
            Output::ReadFailed { reads, .. } => self.answered(reads),
            Output::Proposal(_)
            | Output::RoleChanged { .. }
            | Output::Transfer(_)
            | Output::TransferAborted { .. } => {}
        }
    }

    /// Every read is answered once, and only reads that were asked.
    fn answered(&mut self, reads: Vec<ReadId>) {
        for id in reads {
            assert!(id.0 < self.reads_asked, "answered {id}, never asked");
            assert!(self.reads_answered.insert(id), "answered {id} twice");
        }
    }

    /// Acks never precede persistence: whatever a response vouches for is on disk already.
    fn check_sent(&mut self, message: Message) {
        match &message.body {
            MessageBody::RequestVoteResponse {
                pre_vote: false,
                granted: true,
            } => {
                let previous = self.granted.insert(message.term, message.to);
                assert!(
                    previous.is_none_or(|p| p == message.to),
                    "two votes in {}",
                    message.term
                );
                // Durable means: the vote itself, or a later term (which rules out voting again).
                let durable = self.disk.hard_state;
                let vote_durable = durable.term > message.term
                    || (durable.term == message.term && durable.voted_for == Some(message.to));
                assert!(
                    vote_durable,
                    "vote in {} granted before it was durable",
                    message.term
                );
            }
            MessageBody::AppendEntriesResponse(AppendResponse {
                index,
                reject: None,
            }) => {
                assert!(
                    self.disk.hard_state.term >= message.term,
                    "ack before its term was durable"
                );
                let key = (message.to, message.term, *index);
                let vouched = self.vouched.get_mut(&key).and_then(VecDeque::pop_front);
                let vouched = vouched.expect("a success ack for an AppendEntries never accepted");
                let on_disk = &self.disk.entries[..vouched.len().min(self.disk.entries.len())];
                assert_eq!(
                    on_disk,
                    &vouched[..],
                    "acked entries up to {index} before they were durable"
                );
            }
            _ => {}
        }
    }
}

fn run(actions: Vec<Action>) {
    let core = RaftCore::new(config(1, 3), Recovered::default()).unwrap();
    let mut h = Harness {
        core,
        disk: Disk::default(),
        pending: Vec::new(),
        received: Vec::new(),
        granted: BTreeMap::new(),
        vouched: BTreeMap::new(),
        committed: Vec::new(),
        reads_asked: 0,
        reads_answered: BTreeSet::new(),
    };
    for action in actions {
        match action {
            Action::Tick(n) => (0..n).for_each(|_| h.step(Input::Tick)),
            Action::Propose(n) => h.step(Input::Propose((0..n).map(|i| format!("p{i}")).collect())),
            Action::Persist(k) => {
                if let Some(write) = h
                    .pending
                    .get((k as usize).min(h.pending.len().saturating_sub(1)))
                {
                    let write_id = write.id;
                    h.step(Input::Persisted { write_id });
                }
            }
            Action::BogusPersist(id) => h.step(Input::Persisted {
                write_id: WriteId(id),
            }),
            Action::Receive(mut message, term_delta) => {
                let term = (h.core.term().0 as i64 + term_delta as i64).max(0) as u64;
                message.term = Term(term);
                if let MessageBody::AppendEntries { entries, .. } = &mut message.body {
                    // Leaders only send entries of their term or earlier; a few stay invalid
                    // (term 0) so that rejection paths run too.
                    for entry in entries.iter_mut() {
                        entry.term = entry.term.min(Term(term));
                    }
                }
                h.received.push(message.clone());
                h.step(Input::Receive(message));
            }
            Action::Read(lease) => {
                let id = ReadId(h.reads_asked);
                h.reads_asked += 1;
                let mode = if lease {
                    ReadMode::Lease
                } else {
                    ReadMode::Linearizable
                };
                h.step(Input::Read { id, mode });
            }
            Action::Transfer(to) => h.step(Input::Transfer { to: NodeId(to) }),
            Action::Replay(k) => {
                if !h.received.is_empty() {
                    let message = h.received[k as usize % h.received.len()].clone();
                    h.step(Input::Receive(message));
                }
            }
        }
    }
    // Whatever is not answered is still held by the core, to be answered later.
    let unanswered = h.reads_asked - h.reads_answered.len() as u64;
    assert_eq!(
        unanswered,
        h.core.reads_outstanding() as u64,
        "a read was lost"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn adversarial_inputs_keep_a_node_safe(actions in prop::collection::vec(action(), 1..200)) {
        run(actions);
    }
}

/// The core's gateway check on AppendEntries entries, restated: contiguous after `prev`,
/// terms non-decreasing from `prev_term`, none above the sender's term, none zero.
fn well_formed(prev: Index, prev_term: Term, leader_term: Term, entries: &[Entry]) -> bool {
    let mut expected = prev.next();
    let mut previous = prev_term;
    for entry in entries {
        if entry.index != expected
            || entry.term < previous
            || entry.term > leader_term
            || entry.term == Term(0)
        {
            return false;
        }
        expected = expected.next();
        previous = entry.term;
    }
    true
}
