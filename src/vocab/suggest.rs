//! "Did you mean": the nearest of the names a value could have been.

/// The candidate within two edits of `word`, or else the one `word` begins, if any.
pub fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let candidates: Vec<&str> = candidates.collect();
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d <= 2 && *d < c.len().max(word.len()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
        .or_else(|| {
            let mut prefixed = candidates
                .iter()
                .filter(|c| word.len() >= 3 && c.starts_with(word));
            match (prefixed.next(), prefixed.next()) {
                (Some(only), None) => Some(*only),
                _ => None,
            }
        })
}

/// Edit distance: insertions, deletions, substitutions, and a swap of two neighbours as one
/// (`lable` for `label` is one slip of the fingers, not two).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Three rows: the swap looks two rows back.
    let mut before: Vec<usize> = Vec::new();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut row = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (previous[j] + 1)
                .min(row[j - 1] + 1)
                .min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(before[j - 2] + 1);
            }
            row[j] = d;
        }
        before = std::mem::replace(&mut previous, row);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_near_miss() {
        let fields = ["schedule", "probes", "rules", "notify"];
        assert_eq!(closest("probe", fields.iter().copied()), Some("probes"));
        assert_eq!(closest("schedul", fields.iter().copied()), Some("schedule"));
        assert_eq!(closest("zzz", fields.iter().copied()), None);
    }

    #[test]
    fn distance_counts_edits_and_swaps() {
        assert_eq!(edit_distance("lable", "label"), 1);
        assert_eq!(edit_distance("titel", "title"), 1);
        assert_eq!(edit_distance("abc", "abc"), 0);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        let fields = ["fired", "resolved"];
        assert_eq!(closest("fird", fields.iter().copied()), Some("fired"));
    }
}
