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
//! - [`segments`]: the log as segments: when one is sealed, what a trim deletes (whole
//!   sealed segments), which one a truncation reopens.

#![forbid(unsafe_code)]

pub mod apply;
pub mod segments;
pub mod settle;
