//! The driver logic around the sans-IO core that both the real node (`replog-node`) and the
//! simulator (`replog-sim`) run: one copy, so what the simulator checks is what the node does.
//!
//! Each module is one capability, generic over what differs between the two (who waits for an
//! answer, how time is measured):
//! - [`settle`]: proposal settlement, turning the core's commits into client answers
//!   (committed / overwritten / unknown).
//! - [`apply`]: the write applier, turning the core's `Write`s into storage operations in
//!   the contract's order, with the core's promises checked and the newest session
//!   checkpoint kept (the node's segment files and the simulator's disk are its targets).
//! - [`catch_up`]: catch-up serving, the answer to the core's `Fetch` (entries with the
//!   id before them, or the log's boundary for an install), from either storage.
//! - [`segments`]: the log as segments: when one is sealed, what a trim deletes (whole
//!   sealed segments), which one a truncation reopens.

#![forbid(unsafe_code)]

pub mod apply;
pub mod catch_up;
pub mod segments;
pub mod settle;
