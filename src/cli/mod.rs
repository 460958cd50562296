//! One module per subcommand family; `main.rs` only dispatches.

pub mod bench;
pub mod client_args;
pub mod duration;
pub mod node;
pub mod read;
pub mod sim;
pub mod trim;
