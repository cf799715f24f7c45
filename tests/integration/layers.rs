//! The library's modules import one way only: each may use the modules below it and none above,
//! so there is no cycle and `config` depends on nothing but shared vocabulary. This test reads
//! the sources and fails on an import that points up or sideways into a cycle.

use std::collections::BTreeMap;
use std::path::Path;

use crate::support::root;

/// Top-level modules from the bottom up; a module may import those of a lower rank.
const LAYERS: &[(&str, u8)] = &[
    ("vocab", 0),
    ("diagnostic", 1),
    ("glob", 1),
    ("logging", 1),
    ("http", 1),
    ("tls", 1),
    ("child", 1),
    ("lock", 1),
    ("alloc", 1),
    ("footprint", 1),
    ("failpoint", 1),
    ("scheduler", 2),
    ("template", 3),
    ("config", 4),
    ("probes", 5),
    ("store", 6),
    ("rules", 7),
    ("alerts", 8),
    ("servicenow", 9),
    ("notify", 10),
    ("remote_write", 10),
    ("monitor", 11),
    ("report", 11),
    ("rotate", 11),
    ("rule_test", 12),
    ("replay", 12),
    ("job", 12),
    ("status", 11),
    ("cli", 13),
];

/// The source without its `#[cfg(test)]` module (tests may reach anywhere).
fn without_tests(source: &str) -> &str {
    match source.find("#[cfg(test)]\nmod tests") {
        Some(i) => &source[..i],
        None => source,
    }
}

/// Every `crate::name` a source file refers to, including `use crate::{a, b::c}` groups.
fn references(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = source;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.push(name);
                }
            }
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.push(name);
        }
    }
    out
}

fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn modules_import_only_the_layers_below_them() {
    let rank: BTreeMap<&str, u8> = LAYERS.iter().copied().collect();
    let src = root().join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    let mut seen_modules = std::collections::BTreeSet::new();
    let mut wrong = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let module = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        seen_modules.insert(module.clone());
        let Some(&from) = rank.get(module.as_str()) else {
            wrong.push(format!(
                "{}: module `{module}` has no layer in LAYERS",
                relative.display()
            ));
            continue;
        };
        let source = std::fs::read_to_string(file).unwrap();
        for target in references(without_tests(&source)) {
            if target == module {
                continue;
            }
            match rank.get(target.as_str()) {
                Some(&to) if to < from => {}
                Some(_) => wrong.push(format!(
                    "{}: `{module}` imports `{target}`, which is not below it",
                    relative.display()
                )),
                None => wrong.push(format!(
                    "{}: `{module}` refers to unknown module `{target}`",
                    relative.display()
                )),
            }
        }
    }
    wrong.sort();
    wrong.dedup();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let listed: std::collections::BTreeSet<String> =
        LAYERS.iter().map(|(m, _)| m.to_string()).collect();
    assert_eq!(
        seen_modules, listed,
        "LAYERS lists a module that is gone, or misses one"
    );
}

#[test]
fn references_are_found_in_paths_and_groups() {
    assert_eq!(
        references(
            "use crate::config::{A, B};\nuse crate::{store::x, vocab::Severity};\nlet x = crate::rules::f();"
        ),
        ["config", "store", "vocab", "rules"]
    );
}
