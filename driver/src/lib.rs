//! The driver logic around the sans-IO core that both the real node (`replog-node`) and the
//! simulator (`replog-sim`) run: one copy, so what the simulator checks is what the node does.
//!
//! Each module is one capability, generic over what differs between the two (who waits for an
//! answer, how time is measured):
//! - [`settle`]: proposal settlement, turning the core's commits into client answers
//!   (committed / overwritten / unknown).

#![forbid(unsafe_code)]

pub mod settle;
