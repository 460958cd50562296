//! # replog-sim: a deterministic simulator for `replog-core`
//!
//! One thread, virtual time, and one seed: every run is a pure function of its seed and
//! options, so any failure replays exactly (TigerBeetle's VOPR and FoundationDB's simulation
//! are the models).
//!
//! - [`engine`]: a discrete-event loop over a queue ordered by (time, sequence). It drives 3
//!   to 9 cores through the same step/output contract as the real node, and calls
//!   `check_invariants()` after every step.
//! - [`disk`]: per-node storage where a write is durable only after a simulated fsync; a
//!   crash loses (or tears) what was not synced, and a restart rebuilds the core from disk.
//! - [`net`]: latency, loss, duplication, reordering and partitions of every shape.
//! - [`params`]: each seed draws its own fault mix (swarm testing); [`scenario`] files fix one.
//! - [`checker`]: Raft's safety properties and client linearizability, after every event,
//!   looking only at what the event changed; then a liveness phase.
//! - [`shrink`]: a failing run recorded as data, then delta-debugged to a small scenario
//!   that fails the same way.
//! - [`trace`]: the run's fingerprint (trace hash) and a readable event log.
//! - [`viewer`]: one self-contained HTML page showing a run (lanes, messages, operations,
//!   faults, the violation).
//! - [`coverage`]: which faults, role changes, messages and protocol paths a run or sweep
//!   exercised, and which it never reached.
//!
//! Determinism rules: no wall clock, no threads inside a run, no `HashMap` iteration, no
//! floats in decisions (probabilities are integer [`Ratio`]s).

pub mod checker;
pub mod coverage;
pub mod disk;
pub mod engine;
pub mod fault;
pub mod net;
pub mod params;
pub mod queue;
pub mod report;
pub mod rng;
mod run;
pub mod scenario;
pub mod shrink;
mod sweep;
pub mod trace;
pub mod viewer;

pub use coverage::Coverage;
pub use engine::Recording;
pub use fault::{Direction, Fault, Target};
pub use params::Params;
pub use report::Violation;
pub use rng::Ratio;
pub use run::{record, run, run_recorded, Failure, RunOptions, RunReport};
pub use scenario::Scenario;
pub use sweep::{sweep, sweep_until, SeedResult, SweepOptions, SweepReport};
