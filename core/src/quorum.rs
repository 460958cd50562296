//! Majority arithmetic, kept apart so joint consensus can replace it later.

use crate::types::Index;

/// The size of a majority of `voters` voters.
pub(crate) fn majority(voters: usize) -> usize {
    voters / 2 + 1
}

/// The highest index that a majority of `match_indexes` (one per voter) has reached.
pub(crate) fn committed_index(match_indexes: &mut [Index]) -> Index {
    assert!(!match_indexes.is_empty(), "quorum of no voters");
    match_indexes.sort_unstable_by(|a, b| b.cmp(a));
    match_indexes[majority(match_indexes.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority_of_odd_and_even_clusters() {
        assert_eq!(majority(1), 1);
        assert_eq!(majority(3), 2);
        assert_eq!(majority(4), 3);
        assert_eq!(majority(5), 3);
    }

    #[test]
    fn committed_index_is_the_majority_th_highest() {
        let mut matches = [Index(5), Index(1), Index(3), Index(9), Index(2)];
        assert_eq!(committed_index(&mut matches), Index(3));
        let mut matches = [Index(4), Index(4), Index(0)];
        assert_eq!(committed_index(&mut matches), Index(4));
    }
}
