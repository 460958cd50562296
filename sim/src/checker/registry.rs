//! Log Matching, incrementally: every (index, term) ever appended anywhere, with its payload
//! and the term of the entry before it.
//!
//! Two logs that hold an entry with the same index and term must agree on its payload and on
//! the term just before it; by induction they then agree on the whole prefix (§5.3). So it
//! suffices to check each appended entry against the first copy seen of its (index, term),
//! which costs O(1) per appended entry instead of comparing whole logs.

use crate::report::Violation;
use replog_core::{Entry, Index, NodeId, Payload, Term};

#[derive(Clone, Copy, Debug)]
struct Known {
    term: Term,
    prev_term: Term,
    fingerprint: u64,
    first_holder: NodeId,
}

#[derive(Default)]
pub struct Registry {
    /// `by_index[i - 1]`: the distinct terms seen at index `i`, usually one or two.
    by_index: Vec<Vec<Known>>,
}

impl Registry {
    /// `node` appended `entry`, and the entry before it in its log has `prev_term`.
    pub fn observe(
        &mut self,
        node: NodeId,
        entry: &Entry,
        prev_term: Term,
    ) -> Result<(), Violation> {
        let position = (entry.index.0 - 1) as usize;
        if self.by_index.len() <= position {
            self.by_index.resize_with(position + 1, Vec::new);
        }
        let fingerprint = fingerprint(&entry.payload);
        let known = &mut self.by_index[position];
        match known.iter().find(|k| k.term == entry.term) {
            None => {
                known.push(Known {
                    term: entry.term,
                    prev_term,
                    fingerprint,
                    first_holder: node,
                });
                Ok(())
            }
            Some(k) if k.fingerprint == fingerprint && k.prev_term == prev_term => Ok(()),
            Some(k) => Err(Violation::new(
                "Log Matching",
                &[k.first_holder, node],
                format!(
                    "both hold an entry at {}/{} but they differ ({}; preceding term {} vs {})",
                    entry.index,
                    entry.term,
                    if k.fingerprint == fingerprint {
                        "same payload"
                    } else {
                        "different payloads"
                    },
                    k.prev_term,
                    prev_term
                ),
            )),
        }
    }

    /// How many distinct entries were ever appended at `index` (for tests).
    pub fn terms_at(&self, index: Index) -> usize {
        self.by_index
            .get((index.0 - 1) as usize)
            .map_or(0, Vec::len)
    }
}

/// A 64-bit FNV-1a digest of a payload: equal payloads give equal digests, and unequal ones
/// collide with negligible probability.
pub fn fingerprint(payload: &Payload) -> u64 {
    let mut hash: u64 = 0xCBF2_9CE4_8422_2325;
    let trim;
    let session;
    let config;
    let bytes: &[u8] = match payload {
        Payload::Noop => b"\x00noop",
        Payload::Command(command) => command.as_bytes(),
        Payload::Trim { before } => {
            trim = [b"\x00trim".as_slice(), &before.0.to_le_bytes()].concat();
            &trim
        }
        Payload::Session {
            client,
            seq,
            command,
        } => {
            let parts: [&[u8]; 5] = [
                b"\x00session",
                client.as_str().as_bytes(),
                b"\x00",
                &seq.get().to_le_bytes(),
                command.as_bytes(),
            ];
            session = parts.concat();
            &session
        }
        Payload::Config(membership) => {
            let mut bytes = b"\x00config".to_vec();
            for member in membership.members() {
                bytes.extend_from_slice(&member.id.0.to_le_bytes());
                bytes.push(u8::from(member.voter));
                bytes.extend_from_slice(member.meta.as_bytes());
                bytes.push(0);
            }
            config = bytes;
            &config
        }
    };
    for &byte in bytes {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01B3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64, command: &str) -> Entry {
        Entry {
            index: Index(index),
            term: Term(term),
            payload: Payload::Command(command.into()),
        }
    }

    #[test]
    fn matching_copies_and_different_terms_are_fine() {
        let mut registry = Registry::default();
        registry
            .observe(NodeId(1), &entry(1, 1, "a"), Term(0))
            .unwrap();
        registry
            .observe(NodeId(2), &entry(1, 1, "a"), Term(0))
            .unwrap();
        registry
            .observe(NodeId(3), &entry(1, 2, "b"), Term(0))
            .unwrap();
        assert_eq!(registry.terms_at(Index(1)), 2);
    }

    #[test]
    fn same_index_and_term_with_another_payload_is_reported() {
        let mut registry = Registry::default();
        registry
            .observe(NodeId(1), &entry(3, 2, "a"), Term(1))
            .unwrap();
        let error = registry
            .observe(NodeId(2), &entry(3, 2, "b"), Term(1))
            .unwrap_err();
        assert_eq!(error.invariant, "Log Matching");
        assert_eq!(error.nodes, vec![NodeId(1), NodeId(2)]);
    }

    #[test]
    fn same_entry_on_a_different_prefix_is_reported() {
        let mut registry = Registry::default();
        registry
            .observe(NodeId(1), &entry(3, 2, "a"), Term(1))
            .unwrap();
        assert!(registry
            .observe(NodeId(2), &entry(3, 2, "a"), Term(2))
            .is_err());
    }
}
