//! Bugs the simulator (`replog-sim`) found in the core, one test each, named after the rule
//! that was broken. Each says how to replay the original finding.

use replog_core::{
    Config, Entry, EntryId, HardState, Index, Input, Message, MessageBody, NodeId, Output, Payload,
    RaftCore, Recovered, Role, Term,
};

/// Steps `node` and completes every write it asks for at once, returning all outputs.
fn step(node: &mut RaftCore, input: Input) -> Vec<Output> {
    let mut outputs = Vec::new();
    node.step(input, &mut outputs);
    let mut index = 0;
    while index < outputs.len() {
        if let Output::Persist(write) = &outputs[index] {
            let write_id = write.id;
            let mut more = Vec::new();
            node.step(Input::Persisted { write_id }, &mut more);
            outputs.extend(more);
        }
        index += 1;
    }
    node.check_invariants();
    outputs
}

/// Figure 2: a follower converts to candidate when its election timeout elapses "without
/// receiving AppendEntries from the current leader or granting vote to candidate". Adopting
/// the higher term of a candidate whose vote it *refuses* is neither, so it must not restart
/// the timer. Otherwise a candidate with a stale log and a fast clock, campaigning again and
/// again (PreVote off), holds every up-to-date node off its own election forever.
///
/// Found by `replog sim run --seed 570 --nodes 3` (simulator as of this fix): after the
/// liveness heal, n1 (stale log, clock 50 % fast) campaigned from t288 to t320 while n2 and
/// n3 refused it and restarted their timers on each new term, and no leader was elected.
#[test]
fn refused_vote_requests_from_higher_terms_do_not_restart_the_election_timer() {
    let mut config = Config::new(NodeId(2), vec![NodeId(1), NodeId(2), NodeId(3)]);
    config.pre_vote = false;
    let recovered = Recovered {
        membership: None,
        prev: EntryId::ZERO,
        hard_state: HardState {
            term: Term(1),
            voted_for: None,
        },
        entries: vec![Entry {
            index: Index(1),
            term: Term(1),
            payload: Payload::Noop,
        }],
        commit_index: Index(0),
        sessions: Default::default(),
    };
    let mut node = RaftCore::new(config.clone(), recovered).expect("valid recovery");
    // A disruptive candidate with an empty log asks every 5 ticks, each time in a new term:
    // less than the minimum election timeout apart.
    for tick in 1..=(3 * config.election_timeout_ticks_max) {
        if tick % 5 == 0 {
            let request = Message {
                from: NodeId(1),
                to: NodeId(2),
                term: node.term().next(),
                body: MessageBody::RequestVote {
                    pre_vote: false,
                    last_log_index: Index(0),
                    last_log_term: Term(0),
                    transfer: false,
                },
            };
            let outputs = step(&mut node, Input::Receive(request));
            let granted = outputs.iter().any(|output| {
                matches!(
                    output,
                    Output::Send(Message {
                        body: MessageBody::RequestVoteResponse { granted: true, .. },
                        ..
                    })
                )
            });
            assert!(!granted, "a stale log must not get the vote (§5.4.1)");
        }
        step(&mut node, Input::Tick);
        if node.role() == Role::Candidate {
            return; // It campaigned within its own timeout, despite the disruption.
        }
    }
    panic!(
        "the node never campaigned in {} ticks: refused vote requests kept restarting its timer",
        3 * config.election_timeout_ticks_max
    );
}
