//! What the client front end counts: connections, and requests by op and outcome.

use super::{counter, gauge, set_total, Metrics};
use crate::client::protocol::ParsedLine;
use crate::client::{Request, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Ops as the `op` label spells them; `invalid` is a line that was not a request.
const OPS: [&str; 10] = [
    "append", "query", "status", "read", "trim", "follow", "invalid", "auth", "transfer", "member",
];

/// Outcomes as the `outcome` label spells them.
const OUTCOMES: [&str; 10] = [
    "ok",
    "not_leader",
    "timeout",
    "stopping",
    "bad_request",
    "trimmed",
    "read_failed",
    "unauthorized",
    "seq_behind",
    "transfer_failed",
];

/// A request's op, as its answer is counted under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Op(u8);

impl Op {
    /// A line that was not a request, or one too long to read.
    pub const INVALID: Op = Op(6);

    /// The op of a parsed line (blank lines get no answer and are not counted).
    pub fn of(line: &ParsedLine) -> Op {
        Op(match line {
            ParsedLine::Request(Request::Append { .. } | Request::AppendOnce { .. }) => 0,
            ParsedLine::Request(Request::Query { .. }) => 1,
            ParsedLine::Request(Request::Status) => 2,
            ParsedLine::Request(Request::Read { .. }) => 3,
            ParsedLine::Request(Request::Trim { .. }) => 4,
            ParsedLine::Request(Request::Follow { .. }) => 5,
            ParsedLine::Blank | ParsedLine::PeerHello | ParsedLine::Bad(_) => 6,
            ParsedLine::Auth => 7,
            ParsedLine::Request(Request::Transfer { .. }) => 8,
            ParsedLine::Request(Request::Member(_)) => 9,
        })
    }
}

fn outcome_of(response: &Response) -> usize {
    match response {
        Response::Appended { .. }
        | Response::State(_)
        | Response::Read(_)
        | Response::Encoded(_)
        | Response::Authenticated
        | Response::Transferred { .. } => 0,
        Response::NotLeader { .. } => 1,
        Response::Timeout => 2,
        Response::Stopping { .. } => 3,
        Response::BadRequest { .. } => 4,
        Response::Trimmed { .. } => 5,
        Response::ReadFailed { .. } => 6,
        Response::Unauthorized { .. } => 7,
        Response::SeqBehind { .. } => 8,
        Response::TransferFailed { .. } => 9,
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabel {
    op: String,
    outcome: String,
}

pub(super) struct ClientShared {
    connections: Counter,
    open: Gauge,
    /// `OPS.len() * OUTCOMES.len()`, op-major.
    requests: Vec<Counter>,
}

impl ClientShared {
    pub(super) fn register(registry: &mut Registry) -> ClientShared {
        let family = Family::<RequestLabel, Counter>::default();
        registry.register(
            "client_requests",
            "Client requests answered, by op and outcome",
            family.clone(),
        );
        let mut requests = Vec::new();
        for op in OPS {
            for outcome in OUTCOMES {
                let label = RequestLabel {
                    op: op.to_string(),
                    outcome: outcome.to_string(),
                };
                requests.push(family.get_or_create(&label).clone());
            }
        }
        ClientShared {
            connections: counter(
                registry,
                "client_connections",
                "Client connections opened (counted at their first request line)",
            ),
            open: gauge(
                registry,
                "client_connections_open",
                "Connections open on the client port (a peer's until its hello is read)",
            ),
            requests,
        }
    }
}

/// The front end's counts, in plain fields, published once per wake-up when they moved.
#[derive(Default)]
pub struct RequestCounts {
    /// Where to publish; none without `--metrics-addr`.
    target: Option<Metrics>,
    connections: u64,
    open: usize,
    answered: Vec<u64>,
    moved: bool,
}

impl RequestCounts {
    pub(super) fn publishing(target: Metrics) -> RequestCounts {
        RequestCounts {
            target: Some(target),
            answered: vec![0; OPS.len() * OUTCOMES.len()],
            ..RequestCounts::default()
        }
    }

    /// A connection sent its first request line.
    pub fn connection_opened(&mut self) {
        self.connections += 1;
        self.moved = true;
    }

    /// The request of `op` is answered with `response`.
    pub fn answered(&mut self, op: Op, response: &Response) {
        if let Some(count) = self
            .answered
            .get_mut(usize::from(op.0) * OUTCOMES.len() + outcome_of(response))
        {
            *count += 1;
            self.moved = true;
        }
    }

    /// Publishes the counts, with `open` connections on the port.
    pub fn publish(&mut self, open: usize) {
        let Some(target) = &self.target else {
            return;
        };
        if !self.moved && open == self.open {
            return;
        }
        let shared = &target.inner.clients;
        set_total(&shared.connections, self.connections);
        shared.open.set(i64::try_from(open).unwrap_or(i64::MAX));
        for (counter, &count) in shared.requests.iter().zip(&self.answered) {
            set_total(counter, count);
        }
        self.open = open;
        self.moved = false;
    }
}
