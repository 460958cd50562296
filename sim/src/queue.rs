//! The event queue: virtual time, ordered by (time, sequence number). Events due at the same
//! microsecond run in the order they were scheduled, so the run never depends on how the heap
//! happens to break ties.
//!
//! The heap orders small keys only; event payloads (messages can be large) sit still in a
//! slab, so a sift moves 24 bytes rather than the whole event.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

pub struct Scheduled<E> {
    pub time_us: u64,
    /// Invariant: unique and increasing in scheduling order.
    pub seq: u64,
    pub event: E,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Key {
    time_us: u64,
    seq: u64,
    slot: u32,
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest event first. `seq` is
    /// unique, so `slot` never decides.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.time_us, other.seq).cmp(&(self.time_us, self.seq))
    }
}

pub struct EventQueue<E> {
    heap: BinaryHeap<Key>,
    /// Payloads by slot. Invariant: `Some` exactly for the slots of keys in `heap`.
    slots: Vec<Option<E>>,
    free: Vec<u32>,
    next_seq: u64,
}

impl<E> EventQueue<E> {
    pub fn new() -> EventQueue<E> {
        EventQueue {
            heap: BinaryHeap::with_capacity(1024),
            slots: Vec::with_capacity(1024),
            free: Vec::with_capacity(1024),
            next_seq: 0,
        }
    }

    pub fn push(&mut self, time_us: u64, event: E) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(event);
                slot
            }
            None => {
                self.slots.push(Some(event));
                (self.slots.len() - 1) as u32
            }
        };
        self.heap.push(Key { time_us, seq, slot });
    }

    pub fn pop(&mut self) -> Option<Scheduled<E>> {
        let key = self.heap.pop()?;
        let event = self.slots[key.slot as usize]
            .take()
            .expect("every queued key has its payload");
        self.free.push(key.slot);
        Some(Scheduled {
            time_us: key.time_us,
            seq: key.seq,
            event,
        })
    }

    /// When the next event is due.
    pub fn next_time_us(&self) -> Option<u64> {
        self.heap.peek().map(|key| key.time_us)
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        EventQueue::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_by_time_then_by_scheduling_order() {
        let mut queue = EventQueue::new();
        queue.push(5, "c");
        queue.push(1, "a");
        queue.push(5, "d");
        queue.push(1, "b");
        let order: Vec<&str> = std::iter::from_fn(|| queue.pop().map(|s| s.event)).collect();
        assert_eq!(order, ["a", "b", "c", "d"]);
    }

    #[test]
    fn slots_are_reused_without_mixing_payloads() {
        let mut queue = EventQueue::new();
        for round in 0..100u64 {
            queue.push(1000 + round, round);
            queue.push(round, round + 1000);
            assert_eq!(queue.pop().map(|s| s.event), Some(round + 1000));
        }
        assert_eq!(queue.len(), 100);
        let rest: Vec<u64> = std::iter::from_fn(|| queue.pop().map(|s| s.event)).collect();
        assert_eq!(rest, (0..100).collect::<Vec<_>>());
    }
}
