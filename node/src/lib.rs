//! # replog-node: the sans-IO Raft core on real threads, sockets and files
//!
//! One thread owns the core (`runtime`); it never blocks on I/O. It sleeps in one poll over
//! its peer connections and its event queue, reads peer frames and writes them with
//! non-blocking calls. Around it:
//! - `storage_thread` makes writes durable (group commit) through `storage`;
//! - `reader` serves `read`, `query`'s log and `follow` streams from the segments, off the
//!   storage and core threads;
//! - `transport` carries Raft messages between peers: framed JSON after a handshake; a
//!   helper thread per peer dials and writes only what a full socket would not take;
//! - `client` speaks the newline-delimited JSON client protocol (one front-end thread polls
//!   every connection), and holds a blocking client for the CLI and tests;
//! - `listener` starts the front end on the node's one port; peers are told from clients
//!   by their first line;
//! - `tls` makes that port speak TLS (`--tls-cert`), and the clients too;
//! - `queue` is how the threads hand each other work: batches, no spinning;
//! - `logging` writes `tracing`'s events to stderr (text or JSON) from its own thread;
//! - `pending` tracks appends until they commit, are overwritten, or time out;
//! - `metrics` serves Prometheus metrics and a health check over HTTP (`--metrics-addr`);
//! - `retention` decides when a leader proposes a trim point (`--retain-entries`);
//! - `joining` lets an empty node join a running cluster (`start --join`) and ask to be
//!   promoted once caught up;
//! - `membership` carries members' names and addresses in configuration entries, keeps
//!   the address book in step with them and turns `member` requests into core changes;
//! - `transfer` keeps clients' leadership transfers until the target leads (or not);
//! - `config` maps `-i`/`-a`/`-p` to node ids and holds timing and limits;
//! - `identity` records the node's name, id and cluster in its data directory at its first
//!   start, checks later starts against it, and learns peers' names from their hellos;
//! - `signals` turns SIGINT and SIGTERM into a clean stop (a second one exits at once);
//! - `node` wires it all up; `local_cluster` starts whole clusters of node processes (for
//!   `replog demo`, the benchmark and the tests).
//!
//! The client protocol is documented in README.md, "Client protocol".

pub mod logging;

pub mod client;
pub mod config;
pub mod identity;
pub mod joining;
pub mod listener;
pub mod local_cluster;
pub mod membership;
pub mod metrics;
pub mod node;
pub mod pending;
pub mod queue;
pub mod reader;
mod retention;
pub mod runtime;
pub mod scheduling;
pub mod signals;
pub mod storage;
pub mod storage_thread;
pub mod tls;
mod transfer;
pub mod transport;

pub use config::{Members, NodeConfig};
pub use node::{run, NodeError};
