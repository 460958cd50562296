//! The client protocol's messages: one JSON object per line each way (see
//! README.md, "Client protocol"). Bytes from a socket become a typed [`Request`] or [`Response`]
//! here and nowhere else.

use crate::identity::NodeName;
use crate::membership::MemberRequest;
use crate::storage::{StoredEntry, StoredPayload};
use replog_core::ClientId;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::io::Write as _;
use std::num::NonZeroU64;

/// What a client can ask.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Append a command; answered once it is committed.
    Append { command: String },
    /// The node's view of the cluster and its log (the whole log, or a range of it).
    Query {
        range: QueryRange,
        consistency: Consistency,
    },
    /// The same without the log.
    Status,
    /// Retention: drop the committed entries before `before` from every node's storage
    /// (whole segments); answered like an append once the trim point is committed.
    Trim { before: u64 },
    /// Committed entries from `from`, at most `limit` of them (and at most
    /// [`READ_MAX_BYTES`] of them as encoded).
    Read {
        from: u64,
        limit: usize,
        consistency: Consistency,
    },
    /// Turns the connection into a stream of committed entries from `from` on.
    Follow { from: u64 },
    /// Append a command at most once, as the `seq`th of `client`: a retry of an applied
    /// `(client, seq)` is answered with the original index and term and appends nothing.
    AppendOnce {
        command: String,
        client: ClientId,
        seq: NonZeroU64,
    },
    /// Hand leadership to the member `to` names (its name, or its id in decimal), thesis
    /// §3.10; answered once `to` leads, or with why not. Only the leader carries it out.
    Transfer { to: String },
    /// Change the membership by one member (`membership`): answered like an append once
    /// the configuration entry is committed, or `bad_request` saying why not. Only the
    /// leader carries it out.
    Member(MemberRequest),
}

/// How fresh a `read` or `query` must be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    /// Confirmed with the leader (ReadIndex): holds every append acknowledged before the
    /// request was sent, wherever it is served.
    #[default]
    Linearizable,
    /// Served by the leader without a confirmation round while its lease holds (nodes
    /// started with `--read-lease`); as fresh as `linearizable` while clocks keep to the
    /// documented drift bound.
    Lease,
    /// What the contacted node has applied, at once: may be stale.
    Local,
}

impl Consistency {
    pub fn name(self) -> &'static str {
        match self {
            Consistency::Linearizable => "linearizable",
            Consistency::Lease => "lease",
            Consistency::Local => "local",
        }
    }

    pub fn parse(text: &str) -> Option<Consistency> {
        match text {
            "linearizable" => Some(Consistency::Linearizable),
            "lease" => Some(Consistency::Lease),
            "local" => Some(Consistency::Local),
            _ => None,
        }
    }
}

/// Which entries a `query` lists: all of them by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueryRange {
    /// The first index to list; `None`: the log's first.
    pub from: Option<u64>,
    /// At most this many entries; `None`: no limit.
    pub limit: Option<usize>,
}

/// `read`'s `limit` when the request gives none.
pub const READ_DEFAULT_LIMIT: usize = 1000;
/// The most bytes of entries (as their JSON objects) one `read` answer holds; it holds at
/// least one entry whatever its size.
pub const READ_MAX_BYTES: usize = 1 << 20;

/// The fields every request line may carry; which ones matter depends on `op`.
#[derive(Deserialize)]
struct RawRequest<'a> {
    #[serde(borrow)]
    op: Cow<'a, str>,
    #[serde(default)]
    command: Option<serde_json::Value>,
    #[serde(default)]
    before: Option<serde_json::Value>,
    #[serde(default)]
    from: Option<serde_json::Value>,
    #[serde(default)]
    limit: Option<serde_json::Value>,
    #[serde(default)]
    consistency: Option<serde_json::Value>,
    /// The client token (see `token`), on any request.
    #[serde(default, borrow)]
    token: Option<Cow<'a, str>>,
    #[serde(default)]
    client: Option<serde_json::Value>,
    #[serde(default)]
    seq: Option<serde_json::Value>,
    #[serde(default)]
    to: Option<serde_json::Value>,
    #[serde(default)]
    action: Option<serde_json::Value>,
    #[serde(default)]
    name: Option<serde_json::Value>,
    #[serde(default)]
    addr: Option<serde_json::Value>,
}

impl RawRequest<'_> {
    /// `from` or `limit`: absent, or a whole number from 1.
    fn positive(&self, name: &str) -> Result<Option<u64>, String> {
        let value = match name {
            "from" => &self.from,
            _ => &self.limit,
        };
        match value {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(value) => match value.as_u64() {
                Some(number) if number > 0 => Ok(Some(number)),
                _ => Err(format!(
                    "{} needs \"{name}\" to be a whole number from 1, got {value}",
                    self.op
                )),
            },
        }
    }

    fn from(&self) -> Result<u64, String> {
        self.positive("from")?
            .ok_or_else(|| format!("{} needs \"from\", the first index to read", self.op))
    }

    /// `consistency`: absent (linearizable) or one of the three names.
    fn consistency(&self) -> Result<Consistency, String> {
        match &self.consistency {
            None | Some(serde_json::Value::Null) => Ok(Consistency::default()),
            Some(value) => value.as_str().and_then(Consistency::parse).ok_or_else(|| {
                format!(
                    "{} needs \"consistency\" to be \"linearizable\", \"lease\" or \"local\", \
                     got {value}",
                    self.op
                )
            }),
        }
    }

    fn limit(&self) -> Result<Option<usize>, String> {
        Ok(self
            .positive("limit")?
            .map(|limit| usize::try_from(limit).unwrap_or(usize::MAX)))
    }

    /// `member`: an `action` of `add` (with `name` and `addr`), `promote` or `remove` (with
    /// `name`, a name or a decimal id).
    fn member(&self) -> Result<MemberRequest, String> {
        let text = |field: &Option<serde_json::Value>| match field {
            Some(serde_json::Value::String(text)) if !text.is_empty() => Some(text.clone()),
            Some(serde_json::Value::Number(number)) => Some(number.to_string()),
            _ => None,
        };
        let action = text(&self.action);
        let Some(name) = text(&self.name) else {
            return Err(
                "member needs \"name\", the name (or id) of the node to add, promote or \
                 remove"
                    .into(),
            );
        };
        match action.as_deref() {
            Some("add") => {
                let name =
                    NodeName::parse(&name).map_err(|error| format!("member add: {error}"))?;
                let Some(addr) = text(&self.addr) else {
                    return Err(format!(
                        "member add needs \"addr\", the address {name} is reached at"
                    ));
                };
                Ok(MemberRequest::Add { name, addr })
            }
            Some("promote") => Ok(MemberRequest::Promote { name }),
            Some("remove") => Ok(MemberRequest::Remove { name }),
            _ => Err(format!(
                "member needs \"action\" to be \"add\", \"promote\" or \"remove\", got {}",
                self.action
                    .as_ref()
                    .map_or("nothing".to_string(), ToString::to_string)
            )),
        }
    }

    fn into_request(self) -> Result<Request, String> {
        match self.op.as_ref() {
            "append" => {
                let Some(serde_json::Value::String(command)) = self.command else {
                    return Err("append needs a string \"command\"".into());
                };
                match (self.client, self.seq) {
                    (None, None) => Ok(Request::Append { command }),
                    (client, seq) => {
                        let (client, seq) = session(client, seq)?;
                        Ok(Request::AppendOnce {
                            command,
                            client,
                            seq,
                        })
                    }
                }
            }
            "query" => Ok(Request::Query {
                range: QueryRange {
                    from: self.positive("from")?,
                    limit: self.limit()?,
                },
                consistency: self.consistency()?,
            }),
            "status" => Ok(Request::Status),
            "read" => Ok(Request::Read {
                from: self.from()?,
                limit: self.limit()?.unwrap_or(READ_DEFAULT_LIMIT),
                consistency: self.consistency()?,
            }),
            "follow" => Ok(Request::Follow { from: self.from()? }),
            "trim" => match self.before.as_ref().and_then(serde_json::Value::as_u64) {
                Some(before) if before > 0 => Ok(Request::Trim { before }),
                _ => Err("trim needs a positive integer \"before\"".into()),
            },
            "transfer" => match self.to {
                Some(serde_json::Value::String(to)) if !to.is_empty() => {
                    Ok(Request::Transfer { to })
                }
                Some(serde_json::Value::Number(id)) if id.as_u64().is_some() => {
                    Ok(Request::Transfer { to: id.to_string() })
                }
                _ => Err("transfer needs \"to\", the name or id of the node to lead".into()),
            },
            "member" => self.member().map(Request::Member),
            other => Err(format!(
                "unknown op {other:?}; expected \"append\", \"query\", \"status\", \"read\", \
                 \"follow\", \"trim\", \"transfer\" or \"member\""
            )),
        }
    }
}

/// The `client` and `seq` of an append at most once: both present, a client id of 1 to
/// 128 bytes and a whole number from 1.
fn session(
    client: Option<serde_json::Value>,
    seq: Option<serde_json::Value>,
) -> Result<(ClientId, NonZeroU64), String> {
    let client = match client {
        Some(serde_json::Value::String(client)) => {
            ClientId::new(client).map_err(|error| format!("append: {error}"))?
        }
        Some(other) => {
            return Err(format!(
                "append needs \"client\" to be a string, got {other}"
            ))
        }
        None => return Err("append with \"seq\" needs a \"client\" id too".into()),
    };
    let Some(seq) = seq else {
        return Err("append with \"client\" needs a \"seq\" too".into());
    };
    match seq.as_u64().and_then(NonZeroU64::new) {
        Some(seq) => Ok((client, seq)),
        None => Err(format!(
            "append needs \"seq\" to be a whole number from 1, got {seq}"
        )),
    }
}

/// How a request line was read.
pub enum ParsedLine {
    Request(Request),
    /// A blank line (only whitespace): ignored, so that a person typing into `nc` can press
    /// Enter freely.
    Blank,
    /// The reserved op a peer opens its connection with (see `transport::wire`).
    PeerHello,
    /// `{"op":"auth","token":...}`: a client shows its token (see `token`).
    Auth,
    /// Not a request; the message says why, for a `bad_request` answer.
    Bad(String),
}

impl Request {
    /// Parses one line (without its newline).
    pub fn parse(line: &[u8]) -> ParsedLine {
        Request::parse_with_token(line).0
    }

    /// Parses one line (without its newline), with the client token it carries, if any.
    pub fn parse_with_token(line: &[u8]) -> (ParsedLine, Option<Cow<'_, str>>) {
        if line.iter().all(u8::is_ascii_whitespace) {
            return (ParsedLine::Blank, None);
        }
        let mut raw: RawRequest = match serde_json::from_slice(line) {
            Ok(raw) => raw,
            Err(error) => {
                let message = format!("not a JSON request object: {error}");
                return (ParsedLine::Bad(message), None);
            }
        };
        let token = raw.token.take();
        let parsed = match raw.op.as_ref() {
            crate::transport::wire::PEER_HELLO_OP => return (ParsedLine::PeerHello, None),
            "auth" => ParsedLine::Auth,
            _ => match raw.into_request() {
                Ok(request) => ParsedLine::Request(request),
                Err(message) => ParsedLine::Bad(message),
            },
        };
        (parsed, token)
    }

    /// Appends the request as one line, newline included.
    pub fn encode(&self, out: &mut Vec<u8>) {
        // Writing into a Vec cannot fail.
        match self {
            Request::Append { command } => {
                out.extend_from_slice(b"{\"op\":\"append\",\"command\":");
                serde_json::to_writer(&mut *out, command).expect("a string always serializes");
                out.extend_from_slice(b"}\n");
            }
            Request::Query { range, consistency } => {
                out.extend_from_slice(b"{\"op\":\"query\"");
                if let Some(from) = range.from {
                    let _ = write!(out, ",\"from\":{from}");
                }
                if let Some(limit) = range.limit {
                    let _ = write!(out, ",\"limit\":{limit}");
                }
                encode_consistency(*consistency, out);
                out.extend_from_slice(b"}\n");
            }
            Request::Status => out.extend_from_slice(b"{\"op\":\"status\"}\n"),
            Request::Trim { before } => {
                let _ = writeln!(out, "{{\"op\":\"trim\",\"before\":{before}}}");
            }
            Request::Read {
                from,
                limit,
                consistency,
            } => {
                let _ = write!(out, "{{\"op\":\"read\",\"from\":{from},\"limit\":{limit}");
                encode_consistency(*consistency, out);
                out.extend_from_slice(b"}\n");
            }
            Request::Follow { from } => {
                let _ = writeln!(out, "{{\"op\":\"follow\",\"from\":{from}}}");
            }
            Request::AppendOnce {
                command,
                client,
                seq,
            } => {
                out.extend_from_slice(b"{\"op\":\"append\",\"command\":");
                serde_json::to_writer(&mut *out, command).expect("a string always serializes");
                out.extend_from_slice(b",\"client\":");
                serde_json::to_writer(&mut *out, client.as_str()).expect("serializes");
                let _ = writeln!(out, ",\"seq\":{seq}}}");
            }
            Request::Transfer { to } => {
                out.extend_from_slice(b"{\"op\":\"transfer\",\"to\":");
                serde_json::to_writer(&mut *out, to).expect("a string always serializes");
                out.extend_from_slice(b"}\n");
            }
            Request::Member(request) => {
                let (action, name, addr) = match request {
                    MemberRequest::Add { name, addr } => ("add", name.as_str(), Some(addr)),
                    MemberRequest::Promote { name } => ("promote", name.as_str(), None),
                    MemberRequest::Remove { name } => ("remove", name.as_str(), None),
                };
                let _ = write!(out, "{{\"op\":\"member\",\"action\":\"{action}\",\"name\":");
                serde_json::to_writer(&mut *out, name).expect("a string always serializes");
                if let Some(addr) = addr {
                    out.extend_from_slice(b",\"addr\":");
                    serde_json::to_writer(&mut *out, addr).expect("a string always serializes");
                }
                out.extend_from_slice(b"}\n");
            }
        }
    }
}

/// The default is left out, so that a default request's line is what it always was.
fn encode_consistency(consistency: Consistency, out: &mut Vec<u8>) {
    if consistency != Consistency::default() {
        let _ = write!(out, ",\"consistency\":\"{}\"", consistency.name());
    }
}

/// A node's role as clients see it. A pre-candidate (PreVote phase) shows as `candidate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoleName {
    Leader,
    Follower,
    Candidate,
}

impl From<replog_core::Role> for RoleName {
    fn from(role: replog_core::Role) -> RoleName {
        match role {
            replog_core::Role::Leader => RoleName::Leader,
            replog_core::Role::Follower => RoleName::Follower,
            replog_core::Role::PreCandidate | replog_core::Role::Candidate => RoleName::Candidate,
        }
    }
}

impl std::fmt::Display for RoleName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RoleName::Leader => "leader",
            RoleName::Follower => "follower",
            RoleName::Candidate => "candidate",
        })
    }
}

/// One log entry as clients see it. A leader's no-op (appended by every new leader, see
/// the core) has `command: null`; so does a retention point, which also carries
/// `trim_before`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryView {
    pub index: u64,
    pub term: u64,
    pub command: Option<String>,
    pub committed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trim_before: Option<u64>,
    /// A configuration change: the configuration after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<replog_core::Membership>,
}

impl EntryView {
    /// How a `query` shows `entry` to a node whose commit index is `commit_index`.
    pub fn of(entry: &replog_core::Entry, commit_index: replog_core::Index) -> EntryView {
        EntryView {
            index: entry.index.0,
            term: entry.term.0,
            command: match &entry.payload {
                replog_core::Payload::Command(command)
                | replog_core::Payload::Session { command, .. } => Some(command.to_string()),
                replog_core::Payload::Noop
                | replog_core::Payload::Trim { .. }
                | replog_core::Payload::Config(_) => None,
            },
            committed: entry.index <= commit_index,
            trim_before: match entry.payload {
                replog_core::Payload::Trim { before } => Some(before.0),
                _ => None,
            },
            config: match &entry.payload {
                replog_core::Payload::Config(membership) => Some(membership.clone()),
                _ => None,
            },
        }
    }
}

/// One committed entry as `read` and `follow` show it: a no-op has `command: null`, a
/// retention point also `trim_before`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    pub index: u64,
    pub term: u64,
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trim_before: Option<u64>,
    /// A configuration change: the configuration after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<replog_core::Membership>,
}

impl LogEntry {
    /// Appends `entry` (from the core's memory) as `read` shows it, without a newline:
    /// the same bytes [`LogEntry::encode_stored`] writes for its stored line.
    pub fn encode_entry(entry: &replog_core::Entry, out: &mut Vec<u8>) {
        // Writing into a Vec cannot fail.
        let _ = write!(
            out,
            "{{\"index\":{},\"term\":{},\"command\":",
            entry.index.0, entry.term.0
        );
        match &entry.payload {
            replog_core::Payload::Command(command)
            | replog_core::Payload::Session { command, .. } => {
                serde_json::to_writer(&mut *out, &**command).expect("a string always serializes")
            }
            replog_core::Payload::Noop => out.extend_from_slice(b"null"),
            replog_core::Payload::Trim { before } => {
                let _ = write!(out, "null,\"trim_before\":{}", before.0);
            }
            replog_core::Payload::Config(membership) => {
                out.extend_from_slice(b"null,\"config\":");
                serde_json::to_writer(&mut *out, membership).expect("a configuration serializes");
            }
        }
        out.push(b'}');
    }

    /// Appends `entry` as `read` and `follow` show it, without a newline. The command is
    /// copied as stored: a checked JSON string.
    pub fn encode_stored(entry: &StoredEntry, out: &mut Vec<u8>) {
        // Writing into a Vec cannot fail.
        let _ = write!(
            out,
            "{{\"index\":{},\"term\":{},\"command\":",
            entry.index.0, entry.term.0
        );
        match entry.payload {
            StoredPayload::Command(json) | StoredPayload::Session { command: json, .. } => {
                out.extend_from_slice(json)
            }
            StoredPayload::Noop => out.extend_from_slice(b"null"),
            StoredPayload::Trim { before } => {
                let _ = write!(out, "null,\"trim_before\":{}", before.0);
            }
            StoredPayload::Config(json) => {
                out.extend_from_slice(b"null,\"config\":");
                out.extend_from_slice(json);
            }
        }
        out.push(b'}');
    }

    /// Parses one line of a `follow` stream (client side); `Err` holds the line when it is
    /// not an entry (e.g. an error answer).
    pub fn parse(line: &[u8]) -> Result<LogEntry, String> {
        serde_json::from_slice(line).map_err(|error| error.to_string())
    }
}

/// The answer to `read`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadPage {
    pub entries: Vec<LogEntry>,
    /// The index to ask for next.
    pub next: u64,
    /// The log's first index on this node.
    pub first_index: u64,
    pub commit_index: u64,
}

impl ReadPage {
    /// How a `read` answer line starts, before its entries (each a [`LogEntry`] encoding,
    /// comma-separated). The storage reader and the core thread's window both write it.
    pub const HEAD: &'static [u8] = b"{\"ok\":true,\"entries\":[";

    /// Ends a `read` answer line begun with [`ReadPage::HEAD`].
    pub fn finish(line: &mut Vec<u8>, next: u64, first_index: u64, commit_index: u64) {
        // Writing into a Vec cannot fail.
        let _ = write!(
            line,
            "],\"next\":{next},\"first_index\":{first_index},\"commit_index\":{commit_index}}}"
        );
    }
}

/// The answer to `query` (with `entries`) and `status` (without).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    /// This node's numeric id.
    pub node: u64,
    /// This node's name (`-i`); absent from nodes older than names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Every member, with the names known so far; absent from nodes older than names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<MemberView>>,
    pub role: RoleName,
    pub term: u64,
    /// The leader's address, as clients should dial it.
    pub leader: Option<String>,
    pub commit_index: u64,
    pub last_index: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entries: Option<Vec<EntryView>>,
    /// The configuration in force on this node (the newest in its log); absent from nodes
    /// older than membership changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<ConfigurationView>,
    /// The cluster this node belongs to, as recorded at its first start: what a node
    /// that joins (`replog start --join`) records too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<Box<ClusterView>>,
}

/// The cluster's identity, as `status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterView {
    /// `--cluster`.
    pub name: String,
    pub id: String,
    /// The founding voters (the bootstrap configuration), with their founding addresses.
    pub founders: Vec<FounderView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FounderView {
    pub id: u64,
    pub addr: String,
}

/// The configuration in force, as `status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigurationView {
    /// The entry that carried it; 0 for the bootstrap configuration.
    pub index: u64,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
}

/// A member as `status` and `query` show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    pub id: u64,
    /// `null` until the node has heard this peer's hello.
    pub name: Option<String>,
    pub addr: String,
    /// Only in a leader's answer, for each other member: the highest index known to match
    /// that member's log (its replication progress; `last_index` minus it is its lag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_index: Option<u64>,
}

/// Every answer a node gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// The append is committed at `index` in `term`.
    Appended {
        index: u64,
        term: u64,
    },
    /// This node cannot append; `leader` is the leader's address if known. Also the answer
    /// when an accepted append was overwritten by a new leader before it committed: the
    /// command was not appended, and retrying at `leader` is safe.
    NotLeader {
        leader: Option<String>,
    },
    /// Not committed in time; the append may or may not take effect later.
    Timeout,
    /// The node is stopping. Sent with the codes clients already act on: `timeout` for an
    /// append it accepted and had not committed (`accepted`: the outcome is unknown), and
    /// `not_leader` with no leader for a request it did not carry out (resending it
    /// elsewhere is safe). Parses back as those.
    Stopping {
        accepted: bool,
    },
    /// An append at most once whose `seq` is below `highest`, the highest its client has
    /// used: nothing was appended.
    SeqBehind {
        highest: u64,
    },
    /// The line was not a valid request.
    BadRequest {
        message: String,
    },
    State(NodeState),
    /// A `read` answer as the client sees it; nodes send it as `Encoded`.
    Read(ReadPage),
    /// The entries asked for were trimmed away: the log now starts at `first_index`.
    Trimmed {
        first_index: u64,
    },
    /// The node could not read its log (a damaged segment): the message names the file.
    ReadFailed {
        message: String,
    },
    /// The `auth` line's token is right (or the node requires none).
    Authenticated,
    /// A wrong or missing client token: the node closes the connection after this.
    Unauthorized {
        message: String,
    },
    /// An answer line already encoded, without its newline, by the thread that built it.
    Encoded(Vec<u8>),
    /// A transfer is done: `leader` (a member's name) leads in `term`.
    Transferred {
        leader: String,
        term: u64,
    },
    /// A transfer did not happen (under way to another node already, given up after an
    /// election timeout, another node won); the message says which. Retrying is safe.
    TransferFailed {
        message: String,
    },
}

#[derive(Serialize)]
struct ReadLine<'a> {
    ok: bool,
    #[serde(flatten)]
    page: &'a ReadPage,
}

#[derive(Serialize)]
struct StateLine<'a> {
    ok: bool,
    #[serde(flatten)]
    state: &'a NodeState,
}

impl Response {
    /// Appends the response as one line, newline included.
    pub fn encode(&self, out: &mut Vec<u8>) {
        // Writing into a Vec cannot fail.
        match self {
            Response::Appended { index, term } => {
                let _ = write!(out, "{{\"ok\":true,\"index\":{index},\"term\":{term}}}");
            }
            Response::NotLeader { leader } => {
                out.extend_from_slice(b"{\"ok\":false,\"error\":\"not_leader\",\"leader\":");
                serde_json::to_writer(&mut *out, leader).expect("serializes");
                out.push(b'}');
            }
            Response::Timeout => out.extend_from_slice(
                b"{\"ok\":false,\"error\":\"timeout\",\"message\":\"not committed in time; \
                  the append may still take effect\"}",
            ),
            Response::Stopping { accepted: true } => out.extend_from_slice(
                b"{\"ok\":false,\"error\":\"timeout\",\"message\":\"the node is stopping; \
                  the append was not committed yet and may still take effect\"}",
            ),
            Response::Stopping { accepted: false } => out.extend_from_slice(
                b"{\"ok\":false,\"error\":\"not_leader\",\"leader\":null,\"message\":\
                  \"the node is stopping; the request was not carried out\"}",
            ),
            Response::SeqBehind { highest } => {
                let _ = write!(
                    out,
                    "{{\"ok\":false,\"error\":\"seq_behind\",\"highest\":{highest},\
                     \"message\":\"seq is below the highest this client has used; nothing \
                     was appended\"}}"
                );
            }
            Response::BadRequest { message } => {
                out.extend_from_slice(b"{\"ok\":false,\"error\":\"bad_request\",\"message\":");
                serde_json::to_writer(&mut *out, message).expect("serializes");
                out.push(b'}');
            }
            Response::State(state) => {
                let line = StateLine { ok: true, state };
                serde_json::to_writer(&mut *out, &line).expect("serializes");
            }
            Response::Read(page) => {
                let line = ReadLine { ok: true, page };
                serde_json::to_writer(&mut *out, &line).expect("serializes");
            }
            Response::Trimmed { first_index } => {
                let _ = write!(
                    out,
                    "{{\"ok\":false,\"error\":\"trimmed\",\"first_index\":{first_index}}}"
                );
            }
            Response::ReadFailed { message } => {
                out.extend_from_slice(b"{\"ok\":false,\"error\":\"read_failed\",\"message\":");
                serde_json::to_writer(&mut *out, message).expect("serializes");
                out.push(b'}');
            }
            Response::Authenticated => {
                out.extend_from_slice(b"{\"ok\":true,\"authenticated\":true}")
            }
            Response::Unauthorized { message } => {
                out.extend_from_slice(b"{\"ok\":false,\"error\":\"unauthorized\",\"message\":");
                serde_json::to_writer(&mut *out, message).expect("serializes");
                out.push(b'}');
            }
            Response::Encoded(line) => out.extend_from_slice(line),
            Response::Transferred { leader, term } => {
                out.extend_from_slice(b"{\"ok\":true,\"transferred\":true,\"leader\":");
                serde_json::to_writer(&mut *out, leader).expect("serializes");
                let _ = write!(out, ",\"term\":{term}}}");
            }
            Response::TransferFailed { message } => {
                out.extend_from_slice(b"{\"ok\":false,\"error\":\"transfer_failed\",\"message\":");
                serde_json::to_writer(&mut *out, message).expect("serializes");
                out.push(b'}');
            }
        }
        out.push(b'\n');
    }

    /// Parses one response line (client side).
    pub fn parse(line: &[u8]) -> Result<Response, String> {
        let value: serde_json::Value = serde_json::from_slice(line)
            .map_err(|error| format!("the node sent a line that is not JSON: {error}"))?;
        let field = |name: &str| value.get(name);
        match field("ok").and_then(serde_json::Value::as_bool) {
            Some(true) if field("index").is_some() => {
                let number = |name| field(name).and_then(serde_json::Value::as_u64);
                match (number("index"), number("term")) {
                    (Some(index), Some(term)) => Ok(Response::Appended { index, term }),
                    _ => Err(format!("malformed append answer: {value}")),
                }
            }
            Some(true) if field("authenticated").is_some() => Ok(Response::Authenticated),
            Some(true) if field("transferred").is_some() => {
                let leader = field("leader").and_then(serde_json::Value::as_str);
                let term = field("term").and_then(serde_json::Value::as_u64);
                match (leader, term) {
                    (Some(leader), Some(term)) => Ok(Response::Transferred {
                        leader: leader.to_string(),
                        term,
                    }),
                    _ => Err(format!("malformed transfer answer: {value}")),
                }
            }
            Some(true) if field("next").is_some() => serde_json::from_value(value.clone())
                .map(Response::Read)
                .map_err(|error| format!("malformed read answer ({error}): {value}")),
            Some(true) => serde_json::from_value(value.clone())
                .map(Response::State)
                .map_err(|error| format!("malformed state answer ({error}): {value}")),
            Some(false) => {
                let text = |name| field(name).and_then(serde_json::Value::as_str);
                match text("error") {
                    Some("not_leader") => Ok(Response::NotLeader {
                        leader: text("leader").map(str::to_string),
                    }),
                    Some("timeout") => Ok(Response::Timeout),
                    Some("bad_request") => Ok(Response::BadRequest {
                        message: text("message").unwrap_or_default().to_string(),
                    }),
                    Some("seq_behind") => match field("highest").and_then(|v| v.as_u64()) {
                        Some(highest) => Ok(Response::SeqBehind { highest }),
                        None => Err(format!("malformed seq_behind answer: {value}")),
                    },
                    Some("trimmed") => match field("first_index").and_then(|v| v.as_u64()) {
                        Some(first_index) => Ok(Response::Trimmed { first_index }),
                        None => Err(format!("malformed trimmed answer: {value}")),
                    },
                    Some("read_failed") => Ok(Response::ReadFailed {
                        message: text("message").unwrap_or_default().to_string(),
                    }),
                    Some("transfer_failed") => Ok(Response::TransferFailed {
                        message: text("message").unwrap_or_default().to_string(),
                    }),
                    Some("unauthorized") => Ok(Response::Unauthorized {
                        message: text("message").unwrap_or_default().to_string(),
                    }),
                    _ => Err(format!("unknown error answer: {value}")),
                }
            }
            None => Err(format!("answer without \"ok\": {value}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_behind_names_the_highest_and_parses_back() {
        let text = line(&Response::SeqBehind { highest: 4 });
        assert!(
            text.starts_with(r#"{"ok":false,"error":"seq_behind","highest":4,"#),
            "{text}"
        );
        let parsed = Response::parse(text.trim_end().as_bytes()).unwrap();
        assert_eq!(parsed, Response::SeqBehind { highest: 4 });
    }

    fn line(response: &Response) -> String {
        let mut out = Vec::new();
        response.encode(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn requests_parse_and_round_trip() {
        for request in [
            Request::Append {
                command: "set x=\"1\"\n".into(),
            },
            Request::Query {
                range: QueryRange::default(),
                consistency: Consistency::Linearizable,
            },
            Request::Query {
                range: QueryRange {
                    from: Some(3),
                    limit: Some(2),
                },
                consistency: Consistency::Local,
            },
            Request::Status,
            Request::Read {
                from: 1,
                limit: 5,
                consistency: Consistency::Lease,
            },
            Request::Follow { from: 9 },
            Request::Transfer {
                to: "node\"2".into(),
            },
            Request::Member(MemberRequest::Add {
                name: NodeName::parse("node4").unwrap(),
                addr: "127.0.0.1:8083".into(),
            }),
            Request::Member(MemberRequest::Promote {
                name: "node\"4".into(),
            }),
            Request::Member(MemberRequest::Remove { name: "3".into() }),
            Request::AppendOnce {
                command: "x".into(),
                client: ClientId::new("c\"1").unwrap(),
                seq: NonZeroU64::new(7).unwrap(),
            },
        ] {
            let mut out = Vec::new();
            request.encode(&mut out);
            assert_eq!(out.last(), Some(&b'\n'));
            match Request::parse(&out[..out.len() - 1]) {
                ParsedLine::Request(parsed) => assert_eq!(parsed, request),
                _ => panic!("did not parse"),
            }
        }
    }

    #[test]
    fn bad_lines_say_why() {
        let bad = |text: &str| match Request::parse(text.as_bytes()) {
            ParsedLine::Bad(message) => message,
            _ => panic!("{text} accepted"),
        };
        assert!(bad("{not json").contains("not a JSON request"));
        assert!(bad(r#"{"op":"delete"}"#).contains("unknown op"));
        assert!(
            bad(r#"{"op":"member","action":"add","name":"a b","addr":"x"}"#)
                .contains("member add: node name")
        );
        assert!(bad(r#"{"op":"member","action":"add","name":"n4"}"#).contains("needs \"addr\""));
        assert!(bad(r#"{"op":"member","action":"kick","name":"n4"}"#)
            .contains("\"add\", \"promote\" or \"remove\", got \"kick\""));
        assert!(bad(r#"{"op":"member","action":"remove"}"#).contains("needs \"name\""));
        assert!(bad(r#"{"op":"append"}"#).contains("command"));
        assert!(bad(r#"{"op":"append","command":5}"#).contains("command"));
        assert!(bad("[1,2]").contains("not a JSON request"));
        let once = |fields: &str| bad(&format!(r#"{{"op":"append","command":"x",{fields}}}"#));
        for seq in ["0", "-1", "1.5", "\"1\"", "true"] {
            let message = once(&format!(r#""client":"a","seq":{seq}"#));
            assert!(
                message.contains("\"seq\" to be a whole number from 1"),
                "{message}"
            );
        }
        assert!(once(r#""client":"","seq":1"#).contains("client id is empty"));
        let long = once(&format!(r#""client":"{}","seq":1"#, "x".repeat(129)));
        assert!(long.contains("129 bytes long; the most is 128"), "{long}");
        assert!(once(r#""client":5,"seq":1"#).contains("\"client\" to be a string"));
        assert!(once(r#""seq":1"#).contains("needs a \"client\""));
        assert!(once(r#""client":"a""#).contains("needs a \"seq\""));
        assert!(matches!(Request::parse(b"  \r"), ParsedLine::Blank));
        for from in ["0", "-1", "1.5", "\"1\"", "true"] {
            let message = bad(&format!(r#"{{"op":"read","from":{from}}}"#));
            assert!(
                message.contains("\"from\" to be a whole number from 1"),
                "{message}"
            );
            let message = bad(&format!(r#"{{"op":"follow","from":{from}}}"#));
            assert!(message.contains("\"from\""), "{message}");
        }
        assert!(bad(r#"{"op":"read"}"#).contains("needs \"from\""));
        assert!(bad(r#"{"op":"follow"}"#).contains("needs \"from\""));
        assert!(bad(r#"{"op":"read","from":1,"limit":0}"#).contains("\"limit\""));
        assert!(bad(r#"{"op":"query","limit":-2}"#).contains("\"limit\""));
        for consistency in ["\"strong\"", "1", "\"Local\""] {
            let message = bad(&format!(r#"{{"op":"query","consistency":{consistency}}}"#));
            assert!(message.contains("\"consistency\" to be"), "{message}");
            let message = bad(&format!(
                r#"{{"op":"read","from":1,"consistency":{consistency}}}"#
            ));
            assert!(message.contains(&consistency.to_string()), "{message}");
        }
    }

    #[test]
    fn read_defaults_to_a_thousand_entries() {
        match Request::parse(br#"{"op":"read","from":4}"#) {
            ParsedLine::Request(request) => assert_eq!(
                request,
                Request::Read {
                    from: 4,
                    limit: 1000,
                    consistency: Consistency::Linearizable,
                }
            ),
            _ => panic!("not parsed"),
        }
    }

    /// A read served from the core's memory is byte for byte the one served from storage.
    #[test]
    fn entries_in_memory_encode_as_stored_ones() {
        use replog_core::{Entry, Index, Payload, Term};
        for command in ["set x=1", "", "a\nb\"c\\d\u{1}\u{7f}é🦀"] {
            let json = serde_json::to_vec(command).unwrap();
            let payloads = [
                (
                    Payload::Command(command.into()),
                    StoredPayload::Command(&json),
                ),
                (Payload::Noop, StoredPayload::Noop),
                (
                    Payload::Trim { before: Index(4) },
                    StoredPayload::Trim { before: Index(4) },
                ),
            ];
            let client = replog_core::ClientId::new("c1").unwrap();
            let session = (
                Payload::Session {
                    client,
                    seq: std::num::NonZeroU64::new(3).unwrap(),
                    command: command.into(),
                },
                StoredPayload::Session {
                    client: "c1",
                    seq: std::num::NonZeroU64::new(3).unwrap(),
                    command: &json,
                },
            );
            for (payload, stored) in payloads.into_iter().chain([session]) {
                let entry = Entry {
                    index: Index(9),
                    term: Term(2),
                    payload,
                };
                let stored = StoredEntry {
                    index: Index(9),
                    term: Term(2),
                    payload: stored,
                };
                let (mut a, mut b) = (Vec::new(), Vec::new());
                LogEntry::encode_entry(&entry, &mut a);
                LogEntry::encode_stored(&stored, &mut b);
                assert_eq!(String::from_utf8(a).unwrap(), String::from_utf8(b).unwrap());
            }
        }
    }

    #[test]
    fn stored_entries_encode_as_log_entries() {
        let cases = [
            (StoredPayload::Command(b"\"a\\nb\""), Some("a\nb"), None),
            (StoredPayload::Noop, None, None),
            (
                StoredPayload::Trim {
                    before: replog_core::Index(5),
                },
                None,
                Some(5),
            ),
        ];
        for (payload, command, trim_before) in cases {
            let stored = StoredEntry {
                index: replog_core::Index(7),
                term: replog_core::Term(2),
                payload,
            };
            let mut out = Vec::new();
            LogEntry::encode_stored(&stored, &mut out);
            let expected = LogEntry {
                config: None,
                index: 7,
                term: 2,
                command: command.map(str::to_string),
                trim_before,
            };
            assert_eq!(LogEntry::parse(&out), Ok(expected));
        }
    }

    #[test]
    fn responses_have_the_documented_shape() {
        assert_eq!(
            line(&Response::Appended { index: 3, term: 2 }),
            "{\"ok\":true,\"index\":3,\"term\":2}\n"
        );
        assert_eq!(
            line(&Response::NotLeader { leader: None }),
            "{\"ok\":false,\"error\":\"not_leader\",\"leader\":null}\n"
        );
        let state = NodeState {
            configuration: None,
            cluster: None,
            node: 1,
            name: None,
            members: None,
            role: RoleName::Leader,
            term: 2,
            leader: Some("127.0.0.1:7001".into()),
            commit_index: 1,
            last_index: 1,
            entries: None,
        };
        assert_eq!(
            line(&Response::State(state)),
            "{\"ok\":true,\"node\":1,\"role\":\"leader\",\"term\":2,\"leader\":\"127.0.0.1:7001\",\
             \"commit_index\":1,\"last_index\":1}\n"
        );
    }

    #[test]
    fn stopping_answers_use_the_codes_clients_already_act_on() {
        let accepted = line(&Response::Stopping { accepted: true });
        assert!(accepted.contains("\"error\":\"timeout\""), "{accepted}");
        assert!(accepted.contains("the node is stopping"), "{accepted}");
        assert!(accepted.contains("may still take effect"), "{accepted}");
        let parsed = Response::parse(accepted.trim_end().as_bytes()).unwrap();
        assert_eq!(parsed, Response::Timeout);
        let refused = line(&Response::Stopping { accepted: false });
        assert!(refused.contains("the node is stopping"), "{refused}");
        let parsed = Response::parse(refused.trim_end().as_bytes()).unwrap();
        assert_eq!(parsed, Response::NotLeader { leader: None });
    }

    #[test]
    fn responses_parse_back() {
        let state = NodeState {
            configuration: None,
            cluster: None,
            node: 2,
            name: Some("node2".into()),
            members: Some(vec![MemberView {
                id: 2,
                name: Some("node2".into()),
                addr: "127.0.0.1:2".into(),
                match_index: Some(1),
            }]),
            role: RoleName::Follower,
            term: 4,
            leader: None,
            commit_index: 1,
            last_index: 2,
            entries: Some(vec![EntryView {
                config: None,
                index: 1,
                term: 4,
                command: None,
                committed: true,
                trim_before: None,
            }]),
        };
        for response in [
            Response::Appended { index: 9, term: 4 },
            Response::NotLeader {
                leader: Some("127.0.0.1:1".into()),
            },
            Response::NotLeader { leader: None },
            Response::Timeout,
            Response::BadRequest {
                message: "nope".into(),
            },
            Response::State(state),
            Response::Read(ReadPage {
                entries: vec![LogEntry {
                    config: None,
                    index: 3,
                    term: 1,
                    command: Some("x".into()),
                    trim_before: None,
                }],
                next: 4,
                first_index: 1,
                commit_index: 9,
            }),
            Response::Trimmed { first_index: 12 },
            Response::ReadFailed {
                message: "damaged".into(),
            },
            Response::Authenticated,
            Response::Unauthorized {
                message: "wrong token".into(),
            },
        ] {
            let text = line(&response);
            let parsed = Response::parse(text.trim_end().as_bytes()).unwrap();
            assert_eq!(parsed, response);
        }
    }
}
