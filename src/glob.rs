//! File patterns as the jobs file writes them (`../rules/*.rhai`, `/var/log/nginx/*.log`):
//! `*`, `?` and `[abc]` in the last path component, a plain path otherwise.
//!
//! Wildcards only in the file name keep every match inside one named folder, which is what
//! rotation's "never leave the configured directories" needs, and make a typo in a folder name
//! an error rather than an empty match.

use std::path::{Path, PathBuf};

/// Whether `name` matches `pattern` (`*` any run, `?` one character, `[abc]`/`[a-z]` a set).
pub fn matches(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ni));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                '[' => {
                    if let Some((matched, next)) = class(&p, pi, n[ni])
                        && matched
                    {
                        pi = next;
                        ni += 1;
                        continue;
                    }
                }
                c if c == n[ni] => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, sn)) => {
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Matches `c` against the `[...]` at `start`; returns the result and the index after `]`.
fn class(p: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = matches!(p.get(i), Some('!') | Some('^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let first = i;
    while i < p.len() && (p[i] != ']' || i == first) {
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            matched |= p[i] <= c && c <= p[i + 2];
            i += 3;
        } else {
            matched |= p[i] == c;
            i += 1;
        }
    }
    (i < p.len()).then_some((matched != negate, i + 1))
}

pub fn has_wildcards(text: &str) -> bool {
    text.contains(['*', '?', '['])
}

/// Why a pattern could not be expanded.
#[derive(Debug, thiserror::Error)]
pub enum GlobError {
    #[error("wildcards are only allowed in the file name, not in folders: `{0}`")]
    WildcardInFolder(String),
    #[error("cannot list {path}: {source}")]
    Unreadable {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The files `pattern` names, sorted. A pattern without wildcards names itself (existing or
/// not); a folder that does not exist matches nothing.
pub fn expand(pattern: &Path) -> Result<Vec<PathBuf>, GlobError> {
    let text = pattern.to_string_lossy();
    let Some(file_pattern) = pattern
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
    else {
        return Ok(vec![pattern.to_path_buf()]);
    };
    let dir = pattern.parent().unwrap_or(Path::new("."));
    if has_wildcards(&dir.to_string_lossy()) {
        return Err(GlobError::WildcardInFolder(text.into_owned()));
    }
    if !has_wildcards(&file_pattern) {
        return Ok(vec![pattern.to_path_buf()]);
    }
    let dir_for_listing = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let entries = match std::fs::read_dir(dir_for_listing) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(GlobError::Unreadable {
                path: dir.display().to_string(),
                source,
            });
        }
    };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| matches(&file_pattern, &e.file_name().to_string_lossy()))
        .map(|e| dir.join(e.file_name()))
        .collect();
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn case(pattern: &str, name: &str, want: bool) {
        assert_eq!(matches(pattern, name), want, "{pattern} ~ {name}");
    }

    #[test]
    fn wildcards() {
        case("*.rhai", "cpu.rhai", true);
        case("*.rhai", "cpu.rhai.bak", false);
        case("*.jsonl", "2026-11-20.jsonl", true);
        case("app-?.log", "app-1.log", true);
        case("app-?.log", "app-10.log", false);
        case("app-[0-9].log", "app-7.log", true);
        case("app-[!0-9].log", "app-7.log", false);
        case("a*b*c", "aXXbYYc", true);
        case("a*b*c", "aXXbYY", false);
        case("*", "", true);
        case("exact.log", "exact.log", true);
    }

    #[test]
    fn expands_in_one_folder() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["b.rhai", "a.rhai", "c.txt"] {
            std::fs::write(dir.path().join(f), "").unwrap();
        }
        let got = expand(&dir.path().join("*.rhai")).unwrap();
        assert_eq!(got, [dir.path().join("a.rhai"), dir.path().join("b.rhai")]);
        assert!(expand(&dir.path().join("nope/*.rhai")).unwrap().is_empty());
        assert!(matches!(
            expand(&dir.path().join("*/x.rhai")),
            Err(GlobError::WildcardInFolder(_))
        ));
    }
}
