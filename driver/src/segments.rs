//! The log as segments: when the open segment is sealed, which segments a trim deletes,
//! and which one a truncation reopens. The node's segment files (`node/src/storage/
//! log_dir.rs`) and the simulator's modelled disk (`sim/src/disk.rs`) both decide with
//! these, so a trim in the simulator keeps exactly what it would keep on a node with the
//! same segment size.
//!
//! A log is a chain of sealed segments, each starting after the previous one's last entry,
//! followed by the open segment, the only one appended to. Generic over the segment type:
//! the callers pass how to read a segment's first or last index.

use replog_core::Index;

/// Whether the open segment, holding `open_bytes`, is sealed before a batch of
/// `batch_bytes` goes in: when it holds anything and the batch would take it past
/// `segment_bytes`. A batch goes whole into one segment, so that it stays one durable
/// write; a batch larger than `segment_bytes` makes a segment larger than that.
pub fn seals_before(open_bytes: u64, batch_bytes: u64, segment_bytes: u64) -> bool {
    open_bytes > 0 && open_bytes + batch_bytes > segment_bytes
}

/// How many of the oldest sealed segments a trim before `before` deletes: those whose
/// entries all lie before it. Segments go whole, and the open one always stays.
pub fn trimmed<S>(sealed: &[S], before: Index, last_index: impl Fn(&S) -> Index) -> usize {
    sealed.partition_point(|segment| last_index(segment) < before)
}

/// Which sealed segment holds the first entry a truncation after `keep` drops, when that
/// entry lies before the open segment (`keep + 1 < open_first`): it becomes the open
/// segment, cut after `keep`, and every later one goes.
pub fn reopened_by_truncation<S>(
    sealed: &[S],
    keep: Index,
    first_index: impl Fn(&S) -> Index,
) -> usize {
    let holder = sealed.partition_point(|segment| first_index(segment) <= keep.next());
    assert!(
        holder > 0,
        "a truncation after {keep} reaches before the log"
    );
    holder - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sealed segments as (first, last) index pairs: 1..=10, 11..=20, 21..=30.
    const SEALED: [(u64, u64); 3] = [(1, 10), (11, 20), (21, 30)];

    #[test]
    fn a_segment_is_sealed_only_when_it_holds_something_and_the_batch_overflows_it() {
        assert!(
            !seals_before(0, 10_000, 4096),
            "an empty segment takes any batch"
        );
        assert!(!seals_before(4000, 96, 4096));
        assert!(seals_before(4000, 97, 4096));
    }

    #[test]
    fn a_trim_deletes_only_the_whole_segments_before_its_point() {
        let last = |segment: &(u64, u64)| Index(segment.1);
        assert_eq!(trimmed(&SEALED, Index(10), last), 0, "entry 10 stays");
        assert_eq!(trimmed(&SEALED, Index(11), last), 1);
        assert_eq!(trimmed(&SEALED, Index(29), last), 2);
        assert_eq!(trimmed(&SEALED, Index(100), last), 3);
    }

    #[test]
    fn a_truncation_reopens_the_segment_holding_the_first_dropped_entry() {
        let first = |segment: &(u64, u64)| Index(segment.0);
        assert_eq!(reopened_by_truncation(&SEALED, Index(0), first), 0);
        assert_eq!(reopened_by_truncation(&SEALED, Index(10), first), 1);
        assert_eq!(reopened_by_truncation(&SEALED, Index(15), first), 1);
        assert_eq!(reopened_by_truncation(&SEALED, Index(29), first), 2);
    }
}
