//! Delta debugging (Zeller and Hildebrandt, "Simplifying and Isolating Failure-Inducing
//! Input", 2002): the smallest subsequence of a failing input that still fails, found by
//! trying ever finer chunks and their complements.

/// Reduces `items` to a 1-minimal subsequence that fails: removing any single item of the
/// result makes it pass (unless `fails` gives up, e.g. on a run budget). The order of
/// `items` is kept, and `items` is assumed to fail on entry.
///
/// `fails(candidate)` returns `None` when the candidate passes, else the part of it that
/// still fails for certain: all of it, or less when the test knows more (a simulated run
/// that failed at some moment fails the same without what comes after that moment).
pub fn ddmin<T: Clone>(items: Vec<T>, fails: &mut dyn FnMut(&[T]) -> Option<Vec<T>>) -> Vec<T> {
    if items.is_empty() || fails(&[]).is_some() {
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
            fails(&complement)
        });
        if let Some(complement) = complement {
            items = complement;
            granularity = (granularity - 1).max(2);
            continue;
        }
        let subset = starts.iter().find_map(|&start| {
            let subset = &items[start..(start + chunk).min(items.len())];
            if starts.len() > 2 {
                fails(subset)
            } else {
                None
            }
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

    /// A test that only says whether the candidate fails.
    fn whole<T: Clone>(fails: impl Fn(&[T]) -> bool) -> impl FnMut(&[T]) -> Option<Vec<T>> {
        move |subset| fails(subset).then(|| subset.to_vec())
    }

    #[test]
    fn finds_the_items_that_together_cause_the_failure() {
        let items: Vec<u32> = (0..1000).collect();
        let tests = std::cell::Cell::new(0);
        let shrunk = ddmin(
            items,
            &mut whole(|subset: &[u32]| {
                tests.set(tests.get() + 1);
                [17, 403, 404, 988]
                    .iter()
                    .all(|needed| subset.contains(needed))
            }),
        );
        assert_eq!(shrunk, [17, 403, 404, 988]);
        assert!(
            tests.get() < 400,
            "{} tests for 4 of 1000 items",
            tests.get()
        );
    }

    #[test]
    fn an_input_that_fails_empty_shrinks_to_nothing() {
        assert!(ddmin(vec![1, 2, 3], &mut whole(|_: &[u32]| true)).is_empty());
    }

    #[test]
    fn the_result_is_one_minimal_when_the_failure_is_not_monotone() {
        // Fails with an even count of items above 10 (at least two): no single one can go.
        let fails = |subset: &[u32]| {
            let above = subset.iter().filter(|&&x| x > 10).count();
            above >= 2 && above % 2 == 0
        };
        let shrunk = ddmin((0..40).collect(), &mut whole(fails));
        assert!(fails(&shrunk));
        for skip in 0..shrunk.len() {
            let mut fewer = shrunk.clone();
            fewer.remove(skip);
            assert!(!fails(&fewer), "{shrunk:?} without item {skip} still fails");
        }
    }

    #[test]
    fn a_test_that_names_a_smaller_failing_part_is_taken_at_its_word() {
        // Items are times; a candidate holding 7 and some time from 500 on fails at the
        // first of those, so what comes after it can go at once.
        let mut tests = 0;
        let shrunk = ddmin((0..1000).collect(), &mut |subset: &[u32]| {
            tests += 1;
            let until = subset.iter().copied().find(|&t| t >= 500)?;
            let kept = subset.iter().copied().filter(|&t| t <= until);
            subset.contains(&7).then(|| kept.collect())
        });
        assert_eq!(shrunk.len(), 2, "{shrunk:?}");
        assert!(shrunk[0] == 7 && shrunk[1] >= 500, "{shrunk:?}");
        assert!(tests < 40, "{tests} tests");
    }
}
