//! "did you mean `x`?": the candidate closest to a misspelled name, with the work one
//! check spends on suggestions bounded, so that a generated file with thousands of
//! misspelled references and thousands of names is checked in seconds, not minutes.

use std::cell::Cell;

/// What one check may spend on suggestions, in units of edit-distance table cells (plus
/// one per candidate character looked at). A hand-written file of a few hundred names
/// uses a small part of it; past it, diagnostics come without a suggestion.
const CHECK_BUDGET: u64 = 20_000_000;

thread_local! {
    /// The work left to the check running on this thread; `None` outside a check
    /// (unbounded: one lookup among a fixed list of names).
    static BUDGET: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Runs `check` with the suggestion work bounded by [`CHECK_BUDGET`]. A check runs on
/// one thread (`hamstr check`, or a reload on a blocking thread), so the budget is that
/// thread's; what was set before is put back after.
pub(super) fn bounded<T>(check: impl FnOnce() -> T) -> T {
    let before = BUDGET.replace(Some(CHECK_BUDGET));
    let out = check();
    BUDGET.set(before);
    out
}

/// "did you mean `x`?" for the closest candidate within a small edit distance.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    closest(name, candidates).map(|c| format!("did you mean `{c}`?"))
}

/// The candidate closest to `name` within a small edit distance (about one edit in
/// three characters; an adjacent transposition is one edit), ignoring case; ties go to
/// the shorter candidate, then the first. `None` too when the check's budget for
/// suggestions runs out during the search: a partial search names no "closest".
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let wanted: Vec<char> = name.chars().flat_map(char::to_lowercase).collect();
    let limit = (name.chars().count() / 3).max(1) + usize::from(name.len() > 6);
    let mut tables = Tables::default();
    let mut candidate: Vec<char> = Vec::new();
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        if c == name {
            continue;
        }
        candidate.clear();
        candidate.extend(c.chars().flat_map(char::to_lowercase));
        // Names further apart in length than the limit cannot be within it.
        let in_reach = candidate.len().abs_diff(wanted.len()) <= limit;
        let cells = if in_reach {
            (wanted.len() as u64 + 1) * (candidate.len() as u64 + 1)
        } else {
            0
        };
        if !spend(c.len() as u64 + cells) {
            return None;
        }
        if !in_reach {
            continue;
        }
        let Some(d) = tables.distance_within(&wanted, &candidate, limit) else {
            continue;
        };
        if best.is_none_or(|(bd, bc)| (d, c.len()) < (bd, bc.len())) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// Takes `work` from the running check's budget; false (and nothing taken) when there
/// is not that much left.
fn spend(work: u64) -> bool {
    BUDGET.with(|b| match b.get() {
        None => true,
        Some(left) if left >= work => {
            b.set(Some(left - work));
            true
        }
        Some(_) => {
            b.set(Some(0));
            false
        }
    })
}

/// The rows of one edit-distance table, kept between candidates.
#[derive(Default)]
struct Tables {
    two_back: Vec<usize>,
    back: Vec<usize>,
    row: Vec<usize>,
}

impl Tables {
    /// The optimal-string-alignment distance (insertions, deletions, substitutions and
    /// adjacent transpositions) between `a` and `b` when it is at most `limit`; stops
    /// early once every cell of a row is past it.
    fn distance_within(&mut self, a: &[char], b: &[char], limit: usize) -> Option<usize> {
        let width = b.len() + 1;
        for r in [&mut self.two_back, &mut self.back, &mut self.row] {
            r.clear();
            r.resize(width, 0);
        }
        self.back.iter_mut().enumerate().for_each(|(j, v)| *v = j);
        for i in 1..=a.len() {
            self.row[0] = i;
            let mut row_min = i;
            for j in 1..width {
                let cost = usize::from(a[i - 1] != b[j - 1]);
                let mut d = (self.back[j] + 1)
                    .min(self.row[j - 1] + 1)
                    .min(self.back[j - 1] + cost);
                if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                    d = d.min(self.two_back[j - 2] + 1);
                }
                self.row[j] = d;
                row_min = row_min.min(d);
            }
            if row_min > limit {
                return None;
            }
            std::mem::swap(&mut self.two_back, &mut self.back);
            std::mem::swap(&mut self.back, &mut self.row);
        }
        Some(self.back[b.len()]).filter(|d| *d <= limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_closest_name_within_reach() {
        assert_eq!(closest("ordres", ["orders", "payments"]), Some("orders"));
        assert_eq!(
            closest("Orders", ["orders"]),
            Some("orders"),
            "case is ignored"
        );
        assert_eq!(closest("orders", ["orders"]), None, "not the name itself");
        assert_eq!(closest("abc", ["xyz"]), None);
        assert_eq!(
            closest("ab", ["ba", "abc"]),
            Some("ba"),
            "a transposition is one edit"
        );
        assert_eq!(closest("sorce", ["sources", "source"]), Some("source"));
    }

    #[test]
    fn distances() {
        let chars = |s: &str| s.chars().collect::<Vec<_>>();
        let mut t = Tables::default();
        let d = |t: &mut Tables, a: &str, b: &str| t.distance_within(&chars(a), &chars(b), 9);
        assert_eq!(d(&mut t, "", ""), Some(0));
        assert_eq!(d(&mut t, "kitten", "sitting"), Some(3));
        assert_eq!(d(&mut t, "abcd", "acbd"), Some(1));
        assert_eq!(d(&mut t, "", "abc"), Some(3));
        assert_eq!(
            t.distance_within(&chars("abcdef"), &chars("uvwxyz"), 2),
            None
        );
    }

    #[test]
    fn a_check_spends_a_bounded_amount_on_suggestions() {
        // 3,000 misspellings among 3,000 names of one length: unbounded, 9 million
        // comparisons; bounded, the suggestions stop when the budget is spent.
        let names: Vec<String> = (0..3000).map(|i| format!("sink_{i:05}")).collect();
        let mut looked = 0;
        let suggested = bounded(|| {
            (0..3000)
                .filter(|i| {
                    looked += 1;
                    closest(&format!("snk_{i:05}"), names.iter().map(String::as_str)).is_some()
                })
                .count()
        });
        assert_eq!(looked, 3000);
        assert!(
            suggested > 10,
            "the first misspellings get their suggestion"
        );
        assert!(suggested < 3000, "the budget ran out: {suggested}");
        assert_eq!(BUDGET.get(), None, "the budget ends with the check");
        assert_eq!(
            closest("snk_00001", names.iter().map(String::as_str)),
            Some("sink_00001"),
            "outside a check, no bound"
        );
    }
}
