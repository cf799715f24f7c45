//! Wording for messages people read: counts with the right noun.

/// `1 file`, `3 files`, `0 files`.
pub fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else if let Some(stem) = word.strip_suffix('y') {
        format!("{n} {stem}ies")
    } else {
        format!("{n} {word}s")
    }
}

#[cfg(test)]
mod tests {
    use super::plural;

    #[test]
    fn counts_read_naturally() {
        assert_eq!(plural(1, "file"), "1 file");
        assert_eq!(plural(0, "archive"), "0 archives");
        assert_eq!(plural(2, "entry"), "2 entries");
    }
}
