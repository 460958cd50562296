//! Delta debugging (Zeller and Hildebrandt, "Simplifying and Isolating Failure-Inducing
//! Input", 2002): the smallest subsequence of a failing input that still fails, found by
//! trying ever finer chunks and their complements.

/// Reduces `items` to a 1-minimal subsequence for which `fails` holds: removing any single
/// item of the result makes it pass (unless `fails` gives up, e.g. on a run budget). The
/// order of `items` is kept. `fails(items)` is assumed to hold on entry.
pub fn ddmin<T: Clone>(items: Vec<T>, fails: &mut dyn FnMut(&[T]) -> bool) -> Vec<T> {
    if items.is_empty() || fails(&[]) {
        return Vec::new();
    }
    let mut items = items;
    let mut granularity = 2;
    while items.len() >= 2 {
        let chunk = items.len().div_ceil(granularity);
        let starts: Vec<usize> = (0..items.len()).step_by(chunk).collect();
        // Complements first: dropping one chunk keeps most of the run as it was, which in
        // a simulation (where any change reshuffles what follows) is likelier to fail
        // again than keeping a single chunk.
        let complement = starts.iter().find_map(|&start| {
            let end = (start + chunk).min(items.len());
            let complement: Vec<T> = items[..start]
                .iter()
                .chain(&items[end..])
                .cloned()
                .collect();
            fails(&complement).then_some(complement)
        });
        if let Some(complement) = complement {
            items = complement;
            granularity = (granularity - 1).max(2);
            continue;
        }
        let subset = starts.iter().find_map(|&start| {
            let subset = &items[start..(start + chunk).min(items.len())];
            (starts.len() > 2 && fails(subset)).then(|| subset.to_vec())
        });
        if let Some(subset) = subset {
            items = subset;
            granularity = 2;
            continue;
        }
        if granularity >= items.len() {
            break;
        }
        granularity = (granularity * 2).min(items.len());
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_items_that_together_cause_the_failure() {
        let items: Vec<u32> = (0..1000).collect();
        let mut tests = 0;
        let shrunk = ddmin(items, &mut |subset| {
            tests += 1;
            [17, 403, 404, 988]
                .iter()
                .all(|needed| subset.contains(needed))
        });
        assert_eq!(shrunk, [17, 403, 404, 988]);
        assert!(tests < 400, "{tests} tests for 4 of 1000 items");
    }

    #[test]
    fn an_input_that_fails_empty_shrinks_to_nothing() {
        assert!(ddmin(vec![1, 2, 3], &mut |_| true).is_empty());
    }

    #[test]
    fn the_result_is_one_minimal_when_the_failure_is_not_monotone() {
        // Fails with an even count of items above 10 (at least two): no single one can go.
        let fails = |subset: &[u32]| {
            let above = subset.iter().filter(|&&x| x > 10).count();
            above >= 2 && above % 2 == 0
        };
        let shrunk = ddmin((0..40).collect(), &mut |subset| fails(subset));
        assert!(fails(&shrunk));
        for skip in 0..shrunk.len() {
            let mut fewer = shrunk.clone();
            fewer.remove(skip);
            assert!(!fails(&fewer), "{shrunk:?} without item {skip} still fails");
        }
    }
}
