//! The README and `docs/`: every YAML example parses (and those that are whole jobs files
//! load), every link to a file or a section goes somewhere, and the README stays a short
//! front page.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::support::root;

fn documents() -> Vec<PathBuf> {
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    docs.push(root().join("README.md"));
    docs
}

/// GitHub's anchor for a heading: lower case, spaces to `-`, other punctuation dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn code_blocks<'a>(text: &'a str, language: &str) -> Vec<(usize, &'a str)> {
    let fence = format!("```{language}\n");
    let mut blocks = Vec::new();
    let mut rest = text;
    let mut offset = 0;
    while let Some(start) = rest.find(&fence) {
        let body_start = start + fence.len();
        let Some(len) = rest[body_start..].find("```") else {
            break;
        };
        let line = text[..offset + start].lines().count() + 1;
        blocks.push((line, &rest[body_start..body_start + len]));
        offset += body_start + len + 3;
        rest = &rest[body_start + len + 3..];
    }
    blocks
}

#[test]
fn every_yaml_example_in_the_docs_parses_and_whole_jobs_files_load() {
    let mut checked = 0;
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).unwrap();
        for (line, block) in code_blocks(&text, "yaml") {
            let parsed: Result<serde_json::Value, _> = serde_saphyr::from_str(block);
            assert!(
                parsed.is_ok(),
                "{}:{line}: {:?}\n{block}",
                doc.display(),
                parsed.err()
            );
            if block.contains("data_dir:") && block.contains("jobs:") {
                // A whole jobs file, loaded as if it stood in jobs/ (its paths start there).
                let file = root().join("jobs/docs-example.yaml");
                // Nothing set in the environment: examples give defaults (`${VAR:-}`).
                if let Err(problems) = runner::config::build::parse(&file, block, &|_| None) {
                    panic!("{}:{line}: {}", doc.display(), problems.render());
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 5, "only {checked} YAML examples found");
}

#[test]
fn every_link_of_the_docs_goes_somewhere() {
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).unwrap();
        let anchors: BTreeSet<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix('#'))
            .map(|l| slug(l.trim_start_matches('#')))
            .collect();
        let dir = doc.parent().unwrap();
        for (i, _) in text.match_indices("](") {
            let target = &text[i + 2..];
            let Some(end) = target.find(')') else {
                continue;
            };
            let target = &target[..end];
            if target.starts_with("http") {
                continue;
            }
            let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
            let linked: PathBuf = if file.is_empty() {
                doc.clone()
            } else {
                dir.join(file)
            };
            assert!(
                linked.exists(),
                "{}: a link to `{target}`, which is not there",
                doc.display()
            );
            if !anchor.is_empty() {
                let linked_text = std::fs::read_to_string(&linked).unwrap();
                let linked_anchors: BTreeSet<String> = if file.is_empty() {
                    anchors.clone()
                } else {
                    linked_text
                        .lines()
                        .filter_map(|l| l.strip_prefix('#'))
                        .map(|l| slug(l.trim_start_matches('#')))
                        .collect()
                };
                assert!(
                    linked_anchors.contains(anchor),
                    "{}: no section `#{anchor}` in {}",
                    doc.display(),
                    Path::new(file).display()
                );
            }
        }
    }
}

#[test]
fn the_readme_is_a_front_page_that_starts_with_the_two_commands() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(
        readme.lines().count() <= 200,
        "{} lines",
        readme.lines().count()
    );
    let commands = code_blocks(&readme, "sh")[0].1;
    assert!(commands.starts_with("cargo run --release -- --jobs jobs/jobs.yaml"));
    assert!(commands.contains("\ncargo test "));
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    assert!(
        ci.contains("\ncargo test --locked\n"),
        "CI runs the README's test command"
    );
}
