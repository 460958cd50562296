//! The queue between the node's threads: many senders, one receiver that takes everything
//! queued in one go, and sleeps at once when there is nothing.
//!
//! Why not crossbeam-channel: its blocking receive spins and then calls `sched_yield`
//! several times before it sleeps. On a 2-core machine shared by three nodes and a load
//! generator, that spinning was most of a node's CPU time at low load (profiled with one
//! client: `sched_yield` was 30% of a follower's samples) and competed with useful work at
//! high load. Here a receiver with nothing to do sleeps on a condition variable at once,
//! and a sender pays for a wake-up only when the receiver is actually asleep. Taking the
//! whole queue at once (a swap of two vectors) makes batching the natural way to receive.
//!
//! A [`polled_queue`]'s receiver sleeps elsewhere: in a `mio::Poll` that also watches its
//! sockets (the core thread reads peer connections itself), and senders wake that poll.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

struct State<T> {
    items: Vec<T>,
    /// Live `QueueSender`s. Invariant: the receiver sees "disconnected" only once this is 0.
    senders: usize,
    receiver_alive: bool,
    receiver_asleep: bool,
}

/// How a sleeping receiver is woken.
enum Wake {
    /// It sleeps in [`QueueReceiver::take`], on this.
    Condvar(Condvar),
    /// It sleeps in the poll this waker belongs to ([`PolledReceiver`]).
    Poll(mio::Waker),
}

struct Shared<T> {
    state: Mutex<State<T>>,
    wake: Wake,
}

impl<T> Shared<T> {
    /// Wakes the receiver if it sleeps; the caller holds the lock.
    fn wake_receiver(&self, state: &mut State<T>) {
        if !state.receiver_asleep {
            return;
        }
        state.receiver_asleep = false;
        match &self.wake {
            Wake::Condvar(condvar) => condvar.notify_one(),
            // Fails only if the poll is gone, i.e. the receiver is stopping.
            Wake::Poll(waker) => drop(waker.wake()),
        }
    }

    fn condvar(&self) -> &Condvar {
        match &self.wake {
            Wake::Condvar(condvar) => condvar,
            Wake::Poll(_) => unreachable!("a polled queue's receiver sleeps in its poll"),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding the lock leaves a vector and counters: still consistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Creates a queue.
pub fn queue<T>() -> (QueueSender<T>, QueueReceiver<T>) {
    let shared = shared(Wake::Condvar(Condvar::new()));
    (
        QueueSender {
            shared: shared.clone(),
        },
        QueueReceiver { shared },
    )
}

/// Creates a queue whose receiver sleeps in the poll that `waker` wakes.
pub fn polled_queue<T>(waker: mio::Waker) -> (QueueSender<T>, PolledReceiver<T>) {
    let shared = shared(Wake::Poll(waker));
    (
        QueueSender {
            shared: shared.clone(),
        },
        PolledReceiver { shared },
    )
}

fn shared<T>(wake: Wake) -> Arc<Shared<T>> {
    Arc::new(Shared {
        state: Mutex::new(State {
            items: Vec::new(),
            senders: 1,
            receiver_alive: true,
            receiver_asleep: false,
        }),
        wake,
    })
}

pub struct QueueSender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> QueueSender<T> {
    /// Queues `item`; never blocks. Fails, handing it back, only if the receiver is gone.
    pub fn send(&self, item: T) -> Result<(), T> {
        let mut state = self.shared.lock();
        if !state.receiver_alive {
            return Err(item);
        }
        state.items.push(item);
        self.shared.wake_receiver(&mut state);
        Ok(())
    }
}

impl<T> Clone for QueueSender<T> {
    fn clone(&self) -> QueueSender<T> {
        self.shared.lock().senders += 1;
        QueueSender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for QueueSender<T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.senders -= 1;
        if state.senders == 0 {
            self.shared.wake_receiver(&mut state);
        }
    }
}

/// Every sender is gone and nothing is queued: nothing will ever arrive.
#[derive(Debug, PartialEq, Eq)]
pub struct Disconnected;

pub struct QueueReceiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> QueueReceiver<T> {
    /// Moves everything queued to the end of `batch`, first waiting until something is
    /// queued, `deadline` passes (`None`: no deadline) or every sender is gone.
    /// `Ok` with nothing added means the deadline passed.
    pub fn take(&self, batch: &mut Vec<T>, deadline: Option<Instant>) -> Result<(), Disconnected> {
        let mut state = self.shared.lock();
        loop {
            if !state.items.is_empty() {
                if batch.is_empty() {
                    // Swapping hands the sender side our (empty, allocated) vector to fill.
                    std::mem::swap(&mut state.items, batch);
                } else {
                    batch.append(&mut state.items);
                }
                return Ok(());
            }
            if state.senders == 0 {
                return Err(Disconnected);
            }
            let now = Instant::now();
            match deadline {
                Some(deadline) if deadline <= now => return Ok(()),
                Some(deadline) => {
                    state.receiver_asleep = true;
                    state = self
                        .shared
                        .condvar()
                        .wait_timeout(state, deadline - now)
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .0;
                }
                None => {
                    state.receiver_asleep = true;
                    state = self
                        .shared
                        .condvar()
                        .wait(state)
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                }
            }
            state.receiver_asleep = false;
        }
    }

    /// Moves everything queued to the end of `batch` without waiting.
    pub fn try_take(&self, batch: &mut Vec<T>) -> Result<(), Disconnected> {
        self.take(batch, Some(Instant::now()))
    }
}

impl<T> Drop for QueueReceiver<T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.receiver_alive = false;
        state.items = Vec::new();
    }
}

/// The receiving end of a [`polled_queue`].
pub struct PolledReceiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> PolledReceiver<T> {
    /// Moves everything queued to the end of `batch` without waiting, and marks the
    /// receiver awake.
    pub fn try_take(&self, batch: &mut Vec<T>) {
        let mut state = self.shared.lock();
        state.receiver_asleep = false;
        batch.append(&mut state.items);
    }

    /// Marks the receiver asleep unless something is queued. True means the caller may
    /// now sleep in its poll: the next item queued wakes it.
    pub fn ready_to_sleep(&self) -> bool {
        let mut state = self.shared.lock();
        state.receiver_asleep = state.items.is_empty();
        state.receiver_asleep
    }
}

impl<T> Drop for PolledReceiver<T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.receiver_alive = false;
        state.items = Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_receiver_takes_everything_queued_in_order() {
        let (sender, receiver) = queue();
        for k in 0..5 {
            sender.send(k).unwrap();
        }
        let mut batch = vec![];
        receiver.take(&mut batch, None).unwrap();
        assert_eq!(batch, [0, 1, 2, 3, 4]);
        sender.send(5).unwrap();
        receiver.try_take(&mut batch).unwrap();
        assert_eq!(batch, [0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_deadline_ends_the_wait() {
        let (sender, receiver) = queue();
        let mut batch: Vec<u32> = vec![];
        let deadline = Instant::now() + Duration::from_millis(5);
        receiver.take(&mut batch, Some(deadline)).unwrap();
        assert!(batch.is_empty() && Instant::now() >= deadline);
        drop(sender);
    }

    #[test]
    fn senders_leaving_wake_a_sleeping_receiver_and_a_gone_receiver_refuses_items() {
        let (sender, receiver) = queue::<u32>();
        let second = sender.clone();
        let waiter = std::thread::spawn(move || {
            let mut batch = vec![];
            let first = receiver.take(&mut batch, None);
            (first, batch, receiver.take(&mut Vec::new(), None))
        });
        second.send(7).unwrap();
        drop(second);
        drop(sender);
        let (first, batch, then) = waiter.join().unwrap();
        assert_eq!((first, batch, then), (Ok(()), vec![7], Err(Disconnected)));

        let (sender, receiver) = queue::<u32>();
        drop(receiver);
        assert_eq!(sender.send(1), Err(1));
    }

    #[test]
    fn a_polled_receiver_ready_to_sleep_is_woken_through_its_poll_by_the_next_item() {
        let mut poll = mio::Poll::new().unwrap();
        let waker = mio::Waker::new(poll.registry(), mio::Token(0)).unwrap();
        let (sender, receiver) = polled_queue(waker);
        sender.send(1).unwrap();
        assert!(!receiver.ready_to_sleep(), "an item is queued");
        let mut batch = vec![];
        receiver.try_take(&mut batch);
        assert!(receiver.ready_to_sleep());
        sender.send(2).unwrap();
        let mut events = mio::Events::with_capacity(4);
        poll.poll(&mut events, Some(Duration::from_secs(5)))
            .unwrap();
        assert!(!events.is_empty(), "the send woke the poll");
        receiver.try_take(&mut batch);
        assert_eq!(batch, [1, 2]);
    }
}
