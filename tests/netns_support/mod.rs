//! Support for tests/node_netns_nemesis.rs: namespaces and cuts (`net`), real nodes in
//! them (`cluster`), and the recorded client history (`history`).

pub mod cluster;
pub mod history;
pub mod net;
