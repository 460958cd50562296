//! The client protocol: newline-delimited JSON on the node's address (see
//! README.md, "Client protocol"). `protocol` holds the messages, `connection` serves them on the node,
//! and `blocking` is a small client for the CLI, the tests and the benchmark.

pub mod blocking;
pub mod connection;
pub mod lines;
pub mod mailbox;
pub mod protocol;

pub use connection::{ClientContext, ClientRequest};
pub use mailbox::ReplyTo;
pub use protocol::{EntryView, NodeState, Request, Response, RoleName};
