//! `/health`: whether this node can serve clients now.
//!
//! Healthy means: the node knows a leader (itself or another: a client's append will be
//! taken or redirected), its storage has not failed, and its core thread published its
//! state within `CORE_SILENT_AFTER` (it publishes every tick; a core thread that stopped
//! publishing is stuck or gone, and the metrics it left are stale).

use super::{millis_since, Failure, Inner};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// How long the core thread may go without publishing before the node counts as unhealthy:
/// many ticks, so that a loaded machine's scheduling delays do not flap the check.
const CORE_SILENT_AFTER_MS: u64 = 2_000;

pub(super) struct HealthState {
    base: Instant,
    /// When the core thread last published, in milliseconds since `base`; 0: never.
    core_published_ms: AtomicU64,
    pub(super) storage_failure: Failure,
}

impl HealthState {
    pub(super) fn new() -> HealthState {
        HealthState {
            base: Instant::now(),
            core_published_ms: AtomicU64::new(0),
            storage_failure: Failure::default(),
        }
    }

    pub(super) fn core_published(&self) {
        // At least 1, so that 0 keeps meaning "never".
        let now = millis_since(self.base).max(1);
        self.core_published_ms.store(now, Ordering::Relaxed);
    }
}

/// `Ok` with a line for a healthy node, or `Err` with the reason it is not.
pub(super) fn check(inner: &Inner) -> Result<String, String> {
    let health = &inner.health;
    if let Some(problem) = health.storage_failure.get() {
        return Err(format!("storage failed: {problem}"));
    }
    let published = health.core_published_ms.load(Ordering::Relaxed);
    if published == 0 {
        return Err("the core thread has not started".into());
    }
    let silent_ms = millis_since(health.base).saturating_sub(published);
    if silent_ms > CORE_SILENT_AFTER_MS {
        return Err(format!(
            "the core thread has not reported for {silent_ms} ms"
        ));
    }
    let core = &inner.core;
    let term = core.term.get();
    match core.leader.get() {
        0 => Err(format!(
            "no leader known in term {term} (this node is a {})",
            core.role_name()
        )),
        leader => Ok(format!("ok: leader {leader} in term {term}")),
    }
}
