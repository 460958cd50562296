//! Leader election (§5.2) with PreVote (thesis §9.6): timers, campaigns, votes.

use crate::io::Output;
use crate::message::{Message, MessageBody};
use crate::planted::{self, Bug};
use crate::quorum::VoteResult;
use crate::raft::RaftCore;
use crate::role::{RoleState, Votes};
use crate::types::{Role, Term};

impl RaftCore {
    /// A tick for a node that is not leader: campaign once the election timeout passes.
    pub(crate) fn tick_election(&mut self, outputs: &mut Vec<Output>) {
        self.election_timeout.tick();
        if self.election_timeout.fired() && !self.may_campaign() {
            // A learner, or a node removed from the configuration: it never campaigns.
            self.reset_election_timer();
            return;
        }
        if self.election_timeout.fired() {
            if self.config.pre_vote {
                self.start_pre_vote(outputs);
            } else {
                self.start_election(outputs);
            }
        }
    }

    /// PreVote: ask whether we could win in `term + 1` without changing any state that
    /// others see, so a node returning from a partition cannot depose a healthy leader.
    fn start_pre_vote(&mut self, outputs: &mut Vec<Output>) {
        self.stats.pre_votes_started += 1;
        self.role = RoleState::PreCandidate {
            votes: Votes::from([(self.config.id, true)]),
        };
        self.leader = None;
        self.reset_election_timer();
        if self.has_vote_quorum() {
            self.start_election(outputs);
            return;
        }
        self.request_votes(true, false, self.term.next(), outputs);
    }

    /// A real election: enter a new term and vote for ourselves. Our own vote counts only
    /// once it is durable, or a crash could let us vote twice in this term.
    pub(crate) fn start_election(&mut self, outputs: &mut Vec<Output>) {
        self.campaign(false, outputs);
    }

    /// `start_election`; with `transfer`, the votes asked for carry the transfer flag.
    pub(crate) fn campaign(&mut self, transfer: bool, outputs: &mut Vec<Output>) {
        self.stats.elections_started += 1;
        self.term = self.term.next();
        self.voted_for = Some(self.config.id);
        self.stage_hard_state();
        self.role = RoleState::Candidate {
            votes: Votes::new(),
        };
        self.leader = None;
        self.reset_election_timer();
        self.request_votes(false, transfer, self.term, outputs);
    }

    fn request_votes(
        &mut self,
        pre_vote: bool,
        transfer: bool,
        term: Term,
        outputs: &mut Vec<Output>,
    ) {
        let me = self.config.id;
        for peer in self.quorum.voters().into_iter().filter(|&id| id != me) {
            let message = Message {
                from: self.config.id,
                to: peer,
                term,
                body: MessageBody::RequestVote {
                    pre_vote,
                    last_log_index: self.log.last_index(),
                    last_log_term: self.log.last_term(),
                    transfer,
                },
            };
            outputs.push(Output::Send(message));
        }
    }

    /// Counts the candidate's own vote once the write recording it is durable.
    pub(crate) fn count_own_vote_if_durable(&mut self, outputs: &mut Vec<Output>) {
        let own_vote_durable = self.writes.durable_hard_state == self.hard_state();
        let me = self.config.id;
        if let (RoleState::Candidate { votes }, true) = (&mut self.role, own_vote_durable) {
            votes.insert(me, true);
            if self.has_vote_quorum() {
                self.become_leader(outputs);
            }
        }
    }

    fn vote_result(&self) -> VoteResult {
        let votes = self.role.votes();
        self.quorum
            .vote_result(|id| votes.and_then(|votes| votes.get(&id).copied()))
    }

    fn has_vote_quorum(&self) -> bool {
        self.vote_result() == VoteResult::Won
    }

    /// Answers RequestVote or PreVote. The term rule has already run.
    pub(crate) fn handle_vote_request(&mut self, message: Message, outputs: &mut Vec<Output>) {
        let MessageBody::RequestVote {
            pre_vote,
            last_log_index,
            last_log_term,
            ..
        } = message.body
        else {
            unreachable!("dispatched by body");
        };
        let up_to_date = if planted::active(Bug::UpToDateIgnoresTerm) {
            last_log_index >= self.log.last_index()
        } else {
            self.log.is_up_to_date(last_log_index, last_log_term)
        };
        let granted = if pre_vote {
            // Would we vote for this node in the term it names? Only if that term is ahead of
            // ours and we are not following a live leader.
            message.term > self.term && up_to_date && !self.in_leader_lease()
        } else {
            let can_vote = self.voted_for.is_none()
                || self.voted_for == Some(message.from)
                || planted::active(Bug::VoteTwice);
            message.term == self.term && can_vote && up_to_date
        };
        if granted && !pre_vote {
            self.voted_for = Some(message.from);
            self.stage_hard_state();
            self.reset_election_timer();
        }
        // A granted pre-vote echoes the proposed term; any refusal carries ours so a lagging
        // candidate learns it.
        let term = if granted && pre_vote {
            message.term
        } else {
            self.term
        };
        let response = Message {
            from: self.config.id,
            to: message.from,
            term,
            body: MessageBody::RequestVoteResponse { pre_vote, granted },
        };
        if pre_vote {
            outputs.push(Output::Send(response));
        } else {
            self.stats.votes_held_for_fsync += u64::from(granted && self.writes.must_hold());
            self.send_after_persist(response, outputs);
        }
    }

    /// Counts a (pre-)vote answer. The term rule has already run.
    pub(crate) fn handle_vote_response(&mut self, message: Message, outputs: &mut Vec<Output>) {
        let MessageBody::RequestVoteResponse { pre_vote, granted } = message.body else {
            unreachable!("dispatched by body");
        };
        let expected = match (self.role(), pre_vote) {
            (Role::PreCandidate, true) => {
                // Grants echo term + 1; a refusal carries the voter's (not higher) term.
                if granted {
                    message.term == self.term.next()
                } else {
                    message.term <= self.term
                }
            }
            (Role::Candidate, false) => message.term == self.term,
            _ => false,
        };
        if !expected {
            self.stats.messages_ignored += 1;
            return;
        }
        self.role
            .votes_mut()
            .expect("checked: a campaign is under way")
            .insert(message.from, granted);
        let me = self.config.id;
        match self.vote_result() {
            VoteResult::Won => match self.role() {
                Role::PreCandidate => self.start_election(outputs),
                // Lead only once our own vote is durable: a leader whose term could be
                // forgotten in a crash might see a second leader elected in the same term.
                Role::Candidate if self.role.votes().is_some_and(|v| v.contains_key(&me)) => {
                    self.become_leader(outputs)
                }
                Role::Candidate => {}
                _ => unreachable!("checked above"),
            },
            VoteResult::Lost => self.become_follower(self.term, None),
            VoteResult::Pending => {}
        }
    }
}
