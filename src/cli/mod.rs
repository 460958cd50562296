//! One module per subcommand family; `main.rs` only dispatches.

pub mod bench;
pub mod duration;
pub mod node;
pub mod read;
pub mod shrink;
pub mod sim;
pub mod trim;
