//! Leadership transfers asked for by clients (`{"op":"transfer","to":NAME}`), from the
//! request to its answer. The core does the transfer (`replog_core`'s `transfer.rs`); this
//! keeps the clients waiting for it and answers them once the target leads, or with why
//! not: the core gave up after an election timeout, another node won, or no new leader was
//! seen within `wait` (three maximum election timeouts, a bound the core's own give-up is
//! well inside).

use crate::client::answers::Answer;
use crate::client::{ReplyTo, Response};
use crate::config::Members;
use crate::identity::NodeName;
use replog_core::{NodeId, Term, TransferOutcome};
use std::time::{Duration, Instant};

/// A client waiting for `to` to lead.
struct Waiter {
    to: NodeId,
    reply: ReplyTo,
    deadline: Instant,
}

/// The clients waiting on transfers, in arrival order.
#[derive(Default)]
pub struct Transfers {
    waiting: Vec<Waiter>,
}

/// The member a request's `to` names: a name, or an id in decimal. Checked here, at the
/// gateway: the core only ever sees a member's id.
pub fn resolve(to: &str, members: &Members) -> Result<NodeId, String> {
    let name = NodeName::parse(to).map_err(|error| format!("transfer: {error}"))?;
    let by_id = name.number().filter(|id| members.addr_of(*id).is_some());
    members.id_named(&name).or(by_id).ok_or_else(|| {
        format!(
            "transfer: no member is called {to:?}; the members are {}",
            members.describe_named()
        )
    })
}

/// The name a member is shown by in answers: its name if known, else its id.
fn shown(id: NodeId, members: &Members) -> String {
    members
        .name_of(id)
        .map_or_else(|| id.0.to_string(), |name| name.as_str().to_string())
}

impl Transfers {
    /// The core's answer to a transfer to `to`: a waiter for a transfer under way (this
    /// one, or an earlier one to the same node), or the refusal.
    pub fn started(
        &mut self,
        outcome: TransferOutcome,
        reply: ReplyTo,
        members: &Members,
        now: Instant,
        wait: Duration,
    ) -> Option<(ReplyTo, Response)> {
        let refusal = match outcome {
            TransferOutcome::Started { to } => return self.wait_for(to, reply, now + wait),
            TransferOutcome::AlreadyTransferring { to } if self.waits_for(to) => {
                return self.wait_for(to, reply, now + wait)
            }
            TransferOutcome::AlreadyTransferring { to } => Response::TransferFailed {
                message: format!("a transfer to {} is under way already", shown(to, members)),
            },
            TransferOutcome::NotVoter { to } => Response::BadRequest {
                message: format!("transfer: {} is not a voter", shown(to, members)),
            },
            TransferOutcome::TargetIsSelf => Response::BadRequest {
                message: format!(
                    "transfer: {} is the leader already",
                    shown(members.own_id, members)
                ),
            },
            // The caller answers with its usual not_leader redirect instead.
            TransferOutcome::NotLeader { .. } => unreachable!("asked only as leader"),
        };
        Some((reply, refusal))
    }

    /// Whether any client waits.
    pub fn any(&self) -> bool {
        !self.waiting.is_empty()
    }

    fn waits_for(&self, to: NodeId) -> bool {
        self.waiting.iter().any(|waiter| waiter.to == to)
    }

    fn wait_for(
        &mut self,
        to: NodeId,
        reply: ReplyTo,
        deadline: Instant,
    ) -> Option<(ReplyTo, Response)> {
        self.waiting.push(Waiter {
            to,
            reply,
            deadline,
        });
        None
    }

    /// The leader this node knows changed: answer the transfers it settles.
    pub fn leader_changed(
        &mut self,
        leader: Option<NodeId>,
        term: Term,
        members: &Members,
        answers: &mut Vec<Answer>,
    ) {
        let Some(leader) = leader.filter(|&leader| leader != members.own_id) else {
            return; // Between leaders, or still this node: keep waiting.
        };
        for waiter in std::mem::take(&mut self.waiting) {
            let response = if waiter.to == leader {
                Response::Transferred {
                    leader: shown(leader, members),
                    term: term.0,
                }
            } else {
                Response::TransferFailed {
                    message: format!(
                        "{} became leader in term {} instead of {}",
                        shown(leader, members),
                        term.0,
                        shown(waiter.to, members)
                    ),
                }
            };
            waiter.reply.answer(response, answers);
        }
    }

    /// The core gave up the transfer to `to` after an election timeout.
    pub fn aborted(&mut self, to: NodeId, members: &Members, answers: &mut Vec<Answer>) {
        let message = format!(
            "gave up after an election timeout: {} did not take over (down, cut off or \
             too far behind?); this node leads still",
            shown(to, members)
        );
        self.answer_where(|waiter| waiter.to == to, &message, answers);
    }

    /// Answers the waiters past their deadline.
    pub fn expire(&mut self, now: Instant, members: &Members, answers: &mut Vec<Answer>) {
        if self.waiting.iter().all(|waiter| waiter.deadline > now) {
            return;
        }
        let expired: Vec<Waiter> = {
            let (expired, kept) = std::mem::take(&mut self.waiting)
                .into_iter()
                .partition(|waiter| waiter.deadline <= now);
            self.waiting = kept;
            expired
        };
        for waiter in expired {
            let message = format!(
                "timeout: no new leader seen in time; {} may or may not lead now",
                shown(waiter.to, members)
            );
            waiter
                .reply
                .answer(Response::TransferFailed { message }, answers);
        }
    }

    /// The node is stopping: whatever becomes of the transfers, nobody will see it here.
    pub fn abandon(&mut self, answers: &mut Vec<Answer>) {
        for waiter in std::mem::take(&mut self.waiting) {
            let response = Response::Stopping { accepted: false };
            waiter.reply.answer(response, answers);
        }
    }

    fn answer_where(
        &mut self,
        settled: impl Fn(&Waiter) -> bool,
        message: &str,
        answers: &mut Vec<Answer>,
    ) {
        let (done, kept): (Vec<Waiter>, Vec<Waiter>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(settled);
        self.waiting = kept;
        for waiter in done {
            let response = Response::TransferFailed {
                message: message.to_string(),
            };
            waiter.reply.answer(response, answers);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members() -> Members {
        let peers: Vec<String> = ["alpha=127.0.0.1:7001", "beta=127.0.0.1:7002"]
            .iter()
            .map(|peer| peer.to_string())
            .collect();
        let own = NodeName::parse("alpha").expect("a name");
        Members::resolve(&own, "127.0.0.1:7001", &peers).expect("members")
    }

    #[test]
    fn a_transfer_names_a_member_by_name_or_by_id() {
        let members = members();
        let beta = members.id_named(&NodeName::parse("beta").unwrap()).unwrap();
        assert_eq!(resolve("beta", &members), Ok(beta));
        assert_eq!(resolve(&beta.0.to_string(), &members), Ok(beta));
    }

    #[test]
    fn a_transfer_to_no_member_says_who_the_members_are() {
        let members = members();
        let error = resolve("gamma", &members).unwrap_err();
        assert!(error.contains("no member is called \"gamma\""), "{error}");
        assert!(error.contains("alpha"), "{error}");
        assert!(resolve("", &members).unwrap_err().starts_with("transfer: "));
    }
}
