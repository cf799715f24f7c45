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

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
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
}
