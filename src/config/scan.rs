//! One walk over a jobs file's YAML events before it is parsed, for what a single serde parse
//! cannot tell: each mapping's `type` key that is not its first (for `tagged`), and every key
//! that appears twice in one mapping (serde stops at the first; this finds them all, with their
//! field paths). A document that does not parse yields what was found before the error: the
//! parse itself reports the error.

use std::collections::HashSet;

use serde_saphyr::granit_parser::{Event, Parser};

use super::tagged::LateTags;

/// A key written a second (or later) time in one mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateKey {
    pub key: String,
    /// 1-based line and column of the repeated key.
    pub line: u64,
    pub column: u64,
    /// The field path of the key, as problems name fields (`jobs.monitor.schedule`).
    pub path: String,
}

#[derive(Debug, Default)]
pub struct Scan {
    pub late_tags: LateTags,
    pub duplicates: Vec<DuplicateKey>,
}

/// What the walk knows about each open collection.
enum Frame {
    Sequence {
        /// Items started so far, counting the one being read.
        items: usize,
    },
    Mapping {
        keys: HashSet<String>,
        /// The last key read (the one whose value is being read when `at_key` is false).
        key: String,
        /// The next node is a key (else a value).
        at_key: bool,
        first_key: Option<(u64, u64)>,
        /// The key just read was `type` (not first): the next scalar is the tag.
        tag_next: bool,
    },
}

impl Frame {
    fn mapping() -> Frame {
        Frame::Mapping {
            keys: HashSet::new(),
            key: String::new(),
            at_key: true,
            first_key: None,
            tag_next: false,
        }
    }
}

/// A node (scalar, alias or collection) begins where the top frame expects one.
fn node_start(stack: &mut [Frame]) {
    if let Some(Frame::Sequence { items }) = stack.last_mut() {
        *items += 1;
    }
}

/// A node was read where the top frame expected one.
fn node_done(stack: &mut [Frame]) {
    if let Some(Frame::Mapping {
        at_key, tag_next, ..
    }) = stack.last_mut()
    {
        *at_key = !*at_key;
        if *at_key {
            *tag_next = false;
        }
    }
}

/// The field path of the key being read at the top of `stack`.
fn path(stack: &[Frame]) -> String {
    let mut out = String::new();
    for frame in stack {
        match frame {
            Frame::Mapping { key, .. } if !key.is_empty() => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Frame::Sequence { items } => out.push_str(&format!("[{}]", items.saturating_sub(1))),
            Frame::Mapping { .. } => {}
        }
    }
    out
}

pub fn scan(source: &str) -> Scan {
    let mut found = Scan::default();
    let mut stack: Vec<Frame> = Vec::new();
    for item in Parser::new_from_str(source) {
        let Ok((event, span)) = item else { break };
        match event {
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                if let Some(Frame::Mapping { tag_next, .. }) = stack.last_mut() {
                    *tag_next = false;
                }
                node_start(&mut stack);
                stack.push(if matches!(event, Event::MappingStart(..)) {
                    Frame::mapping()
                } else {
                    Frame::Sequence { items: 0 }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
                node_done(&mut stack);
            }
            Event::Scalar(value, ..) => {
                node_start(&mut stack);
                let position = (span.start.line() as u64, span.start.col() as u64 + 1);
                let mut duplicate = false;
                if let Some(Frame::Mapping {
                    keys,
                    key,
                    at_key,
                    first_key,
                    tag_next,
                }) = stack.last_mut()
                {
                    if *at_key {
                        key.clear();
                        key.push_str(&value);
                        duplicate = !keys.insert(value.to_string());
                        if first_key.is_none() {
                            *first_key = Some(position);
                        } else if value == "type" {
                            *tag_next = true;
                        }
                    } else if *tag_next && let Some(first) = first_key {
                        found.late_tags.insert(*first, value.to_string());
                    }
                }
                if duplicate {
                    found.duplicates.push(DuplicateKey {
                        key: value.to_string(),
                        line: position.0,
                        column: position.1,
                        path: path(&stack),
                    });
                }
                node_done(&mut stack);
            }
            Event::Alias(_) | Event::UnresolvedAlias(_) => {
                node_start(&mut stack);
                node_done(&mut stack);
            }
            _ => {}
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_types_and_duplicate_keys_in_one_walk() {
        let yaml = "jobs:\n  a:\n    schedule: x\n    type: monitor\n    schedule: y\n  b:\n    type: report\n    probes:\n      - { name: p, type: cpu, name: q }\n";
        let found = scan(yaml);
        assert_eq!(found.late_tags.get(&(3, 5)), Some(&"monitor".to_string()));
        assert_eq!(found.late_tags.get(&(9, 11)), Some(&"cpu".to_string()));
        assert_eq!(found.late_tags.len(), 2, "{:?}", found.late_tags);
        let where_: Vec<(u64, u64, &str)> = found
            .duplicates
            .iter()
            .map(|d| (d.line, d.column, d.path.as_str()))
            .collect();
        assert_eq!(
            where_,
            [(5, 5, "jobs.a.schedule"), (9, 31, "jobs.b.probes[0].name")]
        );
    }
}
