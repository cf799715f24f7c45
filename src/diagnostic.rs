//! Problems in the files ops write (jobs, rules, templates), located by file, line, column and
//! field path, and rendered the way `just` and `rustc` show them: message, arrow, source line, caret.

use std::fmt;
use std::path::{Path, PathBuf};

/// How bad a problem is: errors stop `runner check` and refuse a config; warnings are told once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem in one file, at one place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    pub file: PathBuf,
    /// 1-based; 0 when the problem concerns the whole file.
    pub line: u64,
    /// 1-based, in characters.
    pub column: u64,
    /// Characters the caret underlines (at least one).
    pub width: u64,
    /// Where in the document's structure, e.g. `jobs.weekly-report.schedule`; empty for the root.
    pub field: String,
    pub message: String,
    /// What to do about it, when there is something better to say than the message.
    pub help: Option<String>,
}

impl Problem {
    pub fn error(file: &Path, message: impl Into<String>) -> Self {
        Problem {
            severity: Severity::Error,
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            width: 1,
            field: String::new(),
            message: message.into(),
            help: None,
        }
    }

    pub fn warning(file: &Path, message: impl Into<String>) -> Self {
        Problem {
            severity: Severity::Warning,
            ..Problem::error(file, message)
        }
    }

    pub fn at(mut self, line: u64, column: u64, width: u64) -> Self {
        self.line = line;
        self.column = column;
        self.width = width.max(1);
        self
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = field.into();
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// `file:line:col`, or just the file when the problem has no position.
    pub fn location(&self) -> String {
        if self.line == 0 {
            self.file.display().to_string()
        } else {
            format!("{}:{}:{}", self.file.display(), self.line, self.column)
        }
    }

    /// The full report with the offending source line and a caret under the place.
    pub fn render(&self, source: Option<&str>) -> String {
        self.render_concealed(source, &[])
    }

    /// `render`, with each of `secrets` in the source line shown as `****` (the caret still
    /// under the same text).
    fn render_concealed(&self, source: Option<&str>, secrets: &[String]) -> String {
        let mut out = String::new();
        let label = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        out.push_str(&format!("{label}: {}\n", self.message));
        let line_text = source
            .filter(|_| self.line > 0)
            .and_then(|s| s.lines().nth((self.line - 1) as usize));
        let gutter = " ".repeat(self.line.max(1).to_string().len());
        out.push_str(&format!("{gutter}--> {}\n", self.location()));
        if let Some(text) = line_text {
            let text = text.trim_end_matches('\r');
            let chars = text.chars().count() as u64;
            let start = self.column.saturating_sub(1).min(chars);
            let width = self.width.min(chars.saturating_sub(start)).max(1);
            let (text, start, width) = conceal(text, secrets, start, width);
            out.push_str(&format!("{gutter} |\n"));
            out.push_str(&format!("{} | {}\n", self.line, text));
            out.push_str(&format!(
                "{gutter} | {}{}\n",
                " ".repeat(start as usize),
                "^".repeat(width as usize)
            ));
        }
        if !self.field.is_empty() {
            out.push_str(&format!("{gutter} = field: {}\n", self.field));
        }
        if let Some(help) = &self.help {
            out.push_str(&format!("{gutter} = help: {help}\n"));
        }
        out
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location(), self.message)?;
        if !self.field.is_empty() {
            write!(f, " (at {})", self.field)?;
        }
        Ok(())
    }
}

/// What stands for a concealed secret in a rendered source line.
const CONCEALED: &str = "****";

/// `text` with every occurrence of a secret replaced, and the caret's start and width (in
/// characters) moved to cover the same text as before.
fn conceal(text: &str, secrets: &[String], start: u64, width: u64) -> (String, u64, u64) {
    if !secrets
        .iter()
        .any(|s| !s.is_empty() && text.contains(s.as_str()))
    {
        return (text.to_string(), start, width);
    }
    let mut out = String::with_capacity(text.len());
    // For each character of `text`, the characters of `out` it became.
    let mut spans: Vec<(u64, u64)> = Vec::new();
    let mut at = 0u64;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        let secret = secrets
            .iter()
            .find(|s| !s.is_empty() && rest.starts_with(s.as_str()));
        match secret {
            Some(secret) => {
                let end = at + CONCEALED.len() as u64;
                spans.extend(secret.chars().map(|_| (at, end)));
                out.push_str(CONCEALED);
                at = end;
                rest = &rest[secret.len()..];
            }
            None => {
                spans.push((at, at + 1));
                out.push(c);
                at += 1;
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    let first = spans.get(start as usize).map_or(at, |s| s.0);
    let last = spans
        .get((start + width).saturating_sub(1) as usize)
        .map_or(at, |s| s.1);
    (out, first, last.saturating_sub(first).max(1))
}

/// Every problem found in one pass over the files, errors and warnings together.
#[derive(Clone, Debug, Default)]
pub struct Problems {
    items: Vec<Problem>,
    /// Secrets written in the files (a password in a connection string): never shown in a
    /// rendered source line.
    conceal: Vec<String>,
}

impl Problems {
    /// Keeps `secret` out of every source line these problems render.
    pub fn conceal(&mut self, secret: &str) {
        if !secret.is_empty() && !self.conceal.iter().any(|s| s == secret) {
            self.conceal.push(secret.to_string());
            // The longest first, so a secret containing another is hidden whole.
            self.conceal.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    pub fn push(&mut self, problem: Problem) {
        self.items.push(problem);
    }

    pub fn extend(&mut self, other: Problems) {
        self.items.extend(other.items);
        for secret in &other.conceal {
            self.conceal(secret);
        }
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(Problem::is_error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.items.iter().filter(|p| p.is_error())
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Problem> {
        self.items.iter().filter(|p| !p.is_error())
    }

    pub fn iter(&self) -> impl Iterator<Item = &Problem> {
        self.items.iter()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Sorted by file and position so a report reads top to bottom like the file.
    pub fn sorted(mut self) -> Self {
        self.items
            .sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
        self
    }

    /// Renders every problem, reading each file once for its source lines.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut cache: Vec<(PathBuf, Option<String>)> = Vec::new();
        for problem in &self.items {
            let source = match cache.iter().find(|(path, _)| path == &problem.file) {
                Some((_, text)) => text.clone(),
                None => {
                    let text = std::fs::read_to_string(&problem.file).ok();
                    cache.push((problem.file.clone(), text.clone()));
                    text
                }
            };
            out.push_str(&problem.render_concealed(source.as_deref(), &self.conceal));
            out.push('\n');
        }
        out
    }
}

impl From<Problem> for Problems {
    fn from(problem: Problem) -> Self {
        Problems {
            items: vec![problem],
            conceal: Vec::new(),
        }
    }
}

impl IntoIterator for Problems {
    type Item = Problem;
    type IntoIter = std::vec::IntoIter<Problem>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for problem in &self.items {
            writeln!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// A text file the user wrote, read whole; a file that is not UTF-8 is a problem at the line
/// and column of its first bad byte, not a bare "stream did not contain valid UTF-8".
pub fn read_text(path: &Path, what: &str) -> Result<String, Box<Problem>> {
    let bytes = std::fs::read(path)
        .map_err(|e| Problem::error(path, format!("cannot read the {what}: {e}")))?;
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        // Everything before the bad byte is valid text: count its lines and characters.
        let text = String::from_utf8_lossy(good);
        let line = text.matches('\n').count() as u64 + 1;
        let column = text.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u64 + 1;
        Box::new(
            Problem::error(path, format!("the {what} is not UTF-8 text"))
                .at(line, column, 1)
                .help("save the file as UTF-8"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_that_is_not_utf8_is_located() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.yaml");
        std::fs::write(&path, b"data_dir: var\njobs:\n  m\xff: x\n").unwrap();
        let problem = read_text(&path, "jobs file").unwrap_err();
        assert_eq!(problem.message, "the jobs file is not UTF-8 text");
        assert_eq!((problem.line, problem.column), (3, 4));
        std::fs::write(&path, "fine ✓").unwrap();
        assert_eq!(read_text(&path, "jobs file").unwrap(), "fine ✓");
    }

    #[test]
    fn renders_caret_under_the_place() {
        let source = "jobs:\n  a:\n    schedule: \"nope\"\n";
        let problem = Problem::error(Path::new("jobs.yaml"), "bad schedule")
            .at(3, 15, 6)
            .field("jobs.a.schedule")
            .help("use 5 or 6 cron fields");
        assert_eq!(
            problem.render(Some(source)),
            "error: bad schedule\n --> jobs.yaml:3:15\n  |\n3 |     schedule: \"nope\"\n  |               ^^^^^^\n  = field: jobs.a.schedule\n  = help: use 5 or 6 cron fields\n"
        );
    }

    #[test]
    fn whole_file_problem_has_no_snippet() {
        let problem = Problem::error(Path::new("jobs.yaml"), "empty");
        assert_eq!(problem.render(Some("")), "error: empty\n --> jobs.yaml\n");
    }

    #[test]
    fn a_concealed_secret_is_masked_and_the_caret_stays_under_its_text() {
        let secrets = ["hunter2".to_string()];
        let line = "dsn: \"postgres://u:hunter2@db1/shop\", x: 1";
        // The caret under the whole quoted string, then under `x` after it.
        let (text, start, width) = conceal(line, &secrets, 5, 31);
        assert_eq!(text, "dsn: \"postgres://u:****@db1/shop\", x: 1");
        assert_eq!((start, width), (5, 28));
        let (_, start, width) = conceal(line, &secrets, 38, 1);
        assert_eq!((start, width), (35, 1));
        let (text, ..) = conceal("no secret here", &secrets, 0, 2);
        assert_eq!(text, "no secret here");
    }

    #[test]
    fn caret_is_clamped_to_the_line() {
        let problem = Problem::error(Path::new("f"), "m").at(1, 3, 40);
        assert!(
            problem
                .render(Some("abcd"))
                .contains("1 | abcd\n  |   ^^\n")
        );
    }
}
