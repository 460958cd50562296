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
//! thread that wakes runs when its CPU frees up, which is soon, since every thread here
//! blocks within microseconds. Batches then stay whole. Giving it to the core and storage
//! threads raised `replog bench --local --clients 64` from 45,000 to 63,000 appends/s on
//! this project's 2-vCPU machine (median of 4 alternating runs each), and the latency fell
//! with it (p50 1.30 to 0.95 ms). The client front end stays under the default policy:
//! batching it too was slower.
//!
//! The cost: under a CPU-bound neighbour, a batch thread may wait out the neighbour's time
//! slice (a few milliseconds) before it runs, where the default policy would have run it
//! at once. That is far below Raft's timeouts, but a node sharing its CPUs with busy
//! processes may prefer `Scheduling::Normal` (`replog start --scheduling normal`).

use std::io;

/// The kernel scheduling policy for the core and storage threads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scheduling {
    /// `SCHED_BATCH`: no preemption of the running thread on wake-up.
    #[default]
    Batch,
    /// The default policy (`SCHED_OTHER`).
    Normal,
}

impl Scheduling {
    /// Applies this policy to the calling thread (only; threads it starts later inherit it).
    pub fn apply_to_current_thread(self) -> io::Result<()> {
        let policy = match self {
            Scheduling::Batch => libc::SCHED_BATCH,
            Scheduling::Normal => libc::SCHED_OTHER,
        };
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: sched_setscheduler reads one sched_param through a valid pointer; pid 0
        // is the calling thread.
        let result = unsafe { libc::sched_setscheduler(0, policy, &param) };
        if result == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// The policy's name as `chrt` and the kernel documentation spell it.
    pub fn policy_name(self) -> &'static str {
        match self {
            Scheduling::Batch => "SCHED_BATCH",
            Scheduling::Normal => "SCHED_OTHER",
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
    fn a_thread_can_switch_to_batch_and_back() {
        std::thread::spawn(|| {
            Scheduling::Batch.apply_to_current_thread().unwrap();
            assert_eq!(current_policy(), libc::SCHED_BATCH);
            Scheduling::Normal.apply_to_current_thread().unwrap();
            assert_eq!(current_policy(), libc::SCHED_OTHER);
        })
        .join()
        .unwrap();
    }
}
