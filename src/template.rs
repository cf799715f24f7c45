//! Handlebars templates as ops write them: strict (a misspelt field is an error with its line
//! and column, not an empty string), and helpers for what templates show.

use std::path::Path;

use handlebars::{Handlebars, handlebars_helper};

use crate::alerts::event::{format_for, format_value};

/// How a template's `{{value}}` output is escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// Plain text, Markdown, Slack mrkdwn (use `{{mrkdwn x}}` where Slack needs it).
    None,
    Html,
}

handlebars_helper!(mrkdwn_helper: |text: str| escape_mrkdwn(text));
handlebars_helper!(value_helper: |v: f64| format_value(v));
handlebars_helper!(duration_helper: |secs: i64| format_for(secs));
handlebars_helper!(upper_helper: |text: str| text.to_uppercase());

/// A registry with the helpers every template may use.
pub fn registry(escape: Escape) -> Handlebars<'static> {
    let mut hb = Handlebars::new();
    hb.set_strict_mode(true);
    if escape == Escape::None {
        hb.register_escape_fn(handlebars::no_escape);
    }
    hb.register_helper("mrkdwn", Box::new(mrkdwn_helper));
    hb.register_helper("value", Box::new(value_helper));
    hb.register_helper("duration", Box::new(duration_helper));
    hb.register_helper("upper", Box::new(upper_helper));
    hb
}

/// Why a template does not load, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateProblem {
    pub path: std::path::PathBuf,
    pub message: String,
    /// Line and column (1-based) when the parser knows them.
    pub at: Option<(usize, usize)>,
}

impl std::fmt::Display for TemplateProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.at {
            Some((line, column)) => write!(
                f,
                "{}:{line}:{column}: {}",
                self.path.display(),
                self.message
            ),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

impl TemplateProblem {
    /// As a located problem for `runner check`.
    pub fn to_problem(&self, field: &str) -> crate::diagnostic::Problem {
        let problem = crate::diagnostic::Problem::error(&self.path, self.message.clone())
            .field(field)
            .help("fix the template; until then the built-in message is used");
        match self.at {
            Some((line, column)) => problem.at(line as u64, column as u64, 1),
            None => problem,
        }
    }
}

/// Reads and registers the template at `path` under its path; the error says where.
pub fn register_file(hb: &mut Handlebars<'static>, path: &Path) -> Result<String, TemplateProblem> {
    let name = path.display().to_string();
    let problem = |message: String, at| TemplateProblem {
        path: path.to_path_buf(),
        message,
        at,
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| problem(format!("cannot read the template: {e}"), None))?;
    hb.register_template_string(&name, text)
        .map_err(|e| problem(e.reason().to_string(), e.pos()))?;
    Ok(name)
}

/// `&`, `<` and `>` as Slack's mrkdwn wants them (everything else is literal).
pub fn escape_mrkdwn(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_templates_name_the_missing_field_and_its_place() {
        let mut hb = registry(Escape::None);
        hb.register_template_string("t", "ok {{alert.name}}\n{{alert.nmae}}")
            .unwrap();
        let data = serde_json::json!({"alert": {"name": "cpu_high"}});
        let err = hb.render("t", &data).unwrap_err().to_string();
        assert!(err.contains("alert.nmae"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn helpers_format_for_people() {
        let hb = registry(Escape::None);
        let data = serde_json::json!({"v": 93.24, "s": 3900, "t": "a < b & c"});
        let out = hb
            .render_template(
                "{{value v}} {{duration s}} {{mrkdwn t}} {{upper \"x\"}}",
                &data,
            )
            .unwrap();
        assert_eq!(out, "93.2 1h5m a &lt; b &amp; c X");
    }
}
