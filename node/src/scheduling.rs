//! How the core thread and the storage thread ask the kernel to schedule them.
//!
//! Under load, most of a node's work is handing messages from thread to thread: the
//! storage thread wakes when a sync returns, the core thread wakes for a peer's frame or a
//! batch of client requests. Under Linux's default policy a thread that wakes up
//! preempts the thread running on its CPU at once. With more busy threads than CPUs
//! (three nodes and a load generator on two vCPUs, say) the threads then take turns
//! message by message: the client front end is stopped after each answer it writes, the
//! load generator after each request it sends. Every turn is a context switch, and the
//! stopped thread's batch waits.
//!
//! `SCHED_BATCH` keeps the policy's fairness but drops that wake-up preemption: a batch
//! thread that wakes runs when its CPU frees up, which is soon when every busy thread is
//! one of ours, since they all block within microseconds. Batches then stay whole. With
//! the core and storage threads batched (`replog start --scheduling batch`),
//! `replog bench --local --clients 64` went from 42,461 to 51,869 appends/s on this
//! project's 2-vCPU machine (median of 6 runs each, old and new binaries alternating; p50
//! 1.38 to 1.11 ms). Batching the client front end too was slower, so it keeps the default
//! policy.
//!
//! The cost is the other side of the same coin, so it is not the default: next to
//! CPU-bound processes a woken batch thread waits out their time slices instead of running
//! at once. With two busy loops (`yes > /dev/null`) on the same two vCPUs, 4 clients
//! committed 5,593 appends/s (p50 0.40 ms) with `normal` and 305/s (p50 12 ms, p99 44 ms)
//! with `batch`. `batch` is for machines where replog's own threads are what keeps the
//! CPUs busy: several nodes on one machine, as in `replog bench --local`, which uses it.

use std::io;

/// The kernel scheduling policy for the core and storage threads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scheduling {
    /// `SCHED_BATCH`: no preemption of the running thread on wake-up.
    Batch,
    /// Whatever policy the process was started with: normally Linux's default
    /// (`SCHED_OTHER`), or what `chrt` gave it.
    #[default]
    Normal,
}

impl Scheduling {
    /// Applies this policy to the calling thread (only; threads it starts later inherit
    /// it). `Normal` leaves the thread as it is.
    pub fn apply_to_current_thread(self) -> io::Result<()> {
        if self == Scheduling::Normal {
            return Ok(());
        }
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: sched_setscheduler reads one sched_param through a valid pointer; pid 0
        // is the calling thread.
        let result = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
        if result == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's policy number for the calling thread.
    fn current_policy() -> i32 {
        // SAFETY: sched_getscheduler takes no pointers; pid 0 is the calling thread.
        unsafe { libc::sched_getscheduler(0) }
    }

    #[test]
    fn batch_switches_the_calling_thread_only_and_normal_leaves_it() {
        std::thread::spawn(|| {
            let before = current_policy();
            Scheduling::Normal.apply_to_current_thread().unwrap();
            assert_eq!(current_policy(), before);
            Scheduling::Batch.apply_to_current_thread().unwrap();
            assert_eq!(current_policy(), libc::SCHED_BATCH);
            let other = std::thread::spawn(current_policy).join().unwrap();
            assert_eq!(other, libc::SCHED_BATCH, "threads started later inherit it");
        })
        .join()
        .unwrap();
        assert_ne!(
            current_policy(),
            libc::SCHED_BATCH,
            "only that thread switched"
        );
    }
}
