//! The client protocol: newline-delimited JSON on the node's address (see README.md,
//! "Client protocol"). `protocol` holds the messages, `frontend` serves them on the node
//! (one thread for every connection), `answers` carries the core thread's answers back to
//! it, `token` decides whether a connection has shown the client token
//! (`--client-token-file`), and `blocking` is a small client for the CLI, the tests and
//! the benchmark.

pub mod answers;
pub mod blocking;
pub mod frontend;
pub mod lines;
pub mod protocol;
pub mod token;

pub use answers::{Answer, AnswerSink, ReplyTo};
pub use frontend::{ClientContext, ClientRequest};
pub use protocol::{
    ClusterView, ConfigurationView, Consistency, EntryView, FounderView, LogEntry, MemberView,
    NodeState, QueryRange, ReadPage, Request, Response, RoleName,
};
