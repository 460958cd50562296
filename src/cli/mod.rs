//! One module per subcommand family; `main.rs` only dispatches.

pub mod bench;
pub mod check;
pub mod client_args;
pub mod duration;
pub mod member;
pub mod node;
pub mod read;
pub mod shrink;
pub mod sim;
pub mod start_config;
pub mod sweep_watch;
pub mod transfer;
pub mod trim;
