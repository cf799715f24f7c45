//! One parse pass per job and per notifier, so a mistake in one section does not hide the
//! mistakes in the others.
//!
//! A serde error ends a deserialization: there is no safe way to skip the rest of a broken
//! node and go on. So the loader parses the file once with every section skipped (checking the
//! top level), then once more per section with only that section read strictly and all others
//! skipped. A config file is small (parsing one takes well under a millisecond), so a few extra
//! passes cost nothing and buy "every problem at once".

use std::cell::Cell;

use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};

thread_local! {
    /// Which section (by order of appearance) the current pass reads strictly; `None` skips all.
    static FOCUS: Cell<Option<usize>> = const { Cell::new(None) };
    /// How many sections the current pass has met so far.
    static SEEN: Cell<usize> = const { Cell::new(0) };
}

/// A job or notifier entry: read in its own pass, skipped in the others.
#[derive(Debug)]
pub enum Section<T> {
    Parsed(T),
    Skipped,
}

impl<T> Section<T> {
    pub fn into_parsed(self) -> Option<T> {
        match self {
            Section::Parsed(value) => Some(value),
            Section::Skipped => None,
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Section<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let index = SEEN.with(|seen| {
            let index = seen.get();
            seen.set(index + 1);
            index
        });
        if FOCUS.with(Cell::get) == Some(index) {
            T::deserialize(deserializer).map(Section::Parsed)
        } else {
            IgnoredAny::deserialize(deserializer).map(|_| Section::Skipped)
        }
    }
}

/// Runs one pass with `focus` (`None`: skip every section) and returns its result together
/// with the number of sections the pass met.
pub fn pass<R>(focus: Option<usize>, parse: impl FnOnce() -> R) -> (R, usize) {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            FOCUS.with(|f| f.set(None));
            SEEN.with(|s| s.set(0));
        }
    }
    let _reset = Reset;
    FOCUS.with(|f| f.set(focus));
    SEEN.with(|s| s.set(0));
    let result = parse();
    let seen = SEEN.with(Cell::get);
    (result, seen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use indexmap::IndexMap;

    #[derive(Debug, Deserialize)]
    struct Doc {
        items: IndexMap<String, Section<u32>>,
    }

    #[test]
    fn each_pass_reads_only_its_section() {
        let yaml = "items:\n  a: 1\n  b: not-a-number\n  c: 3\n";
        let (doc, count) = pass(None, || serde_saphyr::from_str::<Doc>(yaml));
        assert!(doc.is_ok());
        assert_eq!(count, 3);
        let results: Vec<bool> = (0..count)
            .map(|i| {
                pass(Some(i), || serde_saphyr::from_str::<Doc>(yaml))
                    .0
                    .is_ok()
            })
            .collect();
        assert_eq!(results, vec![true, false, true]);
        let (doc, _) = pass(Some(2), || serde_saphyr::from_str::<Doc>(yaml));
        let parsed: Vec<u32> = doc
            .unwrap()
            .items
            .into_values()
            .filter_map(Section::into_parsed)
            .collect();
        assert_eq!(parsed, vec![3]);
    }
}
