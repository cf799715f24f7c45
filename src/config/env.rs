//! `${VAR}` and `${VAR:-default}` in config strings, replaced from the environment at load time.
//!
//! Expansion happens on parsed string values, never on the raw YAML text, so a value can't
//! inject YAML structure and every error keeps the line and column of the string it came from.

/// The expanded text and the variables it read (so "set SLACK_WEBHOOK_URL" can be suggested).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expanded {
    pub value: String,
    pub vars: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("environment variable `{0}` is not set")]
    Unset(String),
    #[error("`${{` is not closed with `}}`")]
    Unclosed,
    #[error("`{0}` is not a valid environment variable name")]
    BadName(String),
}

impl EnvError {
    pub fn help(&self) -> &'static str {
        match self {
            EnvError::Unset(_) => {
                "export it before starting runner, or give a default: `${NAME:-default}` (`${NAME:-}` for empty)"
            }
            EnvError::Unclosed | EnvError::BadName(_) => {
                "write `${NAME}` or `${NAME:-default}`; `$$` is a literal `$`"
            }
        }
    }
}

/// Expands against the process environment.
pub fn expand(text: &str) -> Result<Expanded, EnvError> {
    expand_with(text, |name| std::env::var(name).ok())
}

/// Expands with a lookup of our choosing, so tests don't touch the process environment.
/// `${NAME:-default}` uses the default when NAME is unset or empty, as a POSIX shell does.
pub fn expand_with(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Expanded, EnvError> {
    let mut value = String::with_capacity(text.len());
    let mut vars = Vec::new();
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        value.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            value.push('$');
            rest = tail;
        } else if let Some(body_start) = after.strip_prefix('{') {
            let end = body_start.find('}').ok_or(EnvError::Unclosed)?;
            let body = &body_start[..end];
            let (name, default) = match body.find(":-") {
                Some(i) => (&body[..i], Some(&body[i + 2..])),
                None => (body, None),
            };
            if !is_var_name(name) {
                return Err(EnvError::BadName(name.to_string()));
            }
            vars.push(name.to_string());
            match (lookup(name), default) {
                (Some(found), Some(default)) if found.is_empty() => value.push_str(default),
                (Some(found), _) => value.push_str(&found),
                (None, Some(default)) => value.push_str(default),
                (None, None) => return Err(EnvError::Unset(name.to_string())),
            }
            rest = &body_start[end + 1..];
        } else {
            value.push('$');
            rest = after;
        }
    }
    value.push_str(rest);
    Ok(Expanded { value, vars })
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("db1".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[track_caller]
    fn case(text: &str, expected: &str) {
        assert_eq!(expand_with(text, env).map(|e| e.value), Ok(expected.into()));
    }

    #[test]
    fn replaces_set_variables_and_defaults() {
        case("http://${HOST}:5432", "http://db1:5432");
        case("${MISSING:-fallback}", "fallback");
        case("${MISSING:-}", "");
        case("${EMPTY:-x}", "x");
        case("${EMPTY}", "");
        case("${HOST:-x}", "db1");
        case("cost $5 and $$HOME", "cost $5 and $HOME");
        case("no vars", "no vars");
    }

    #[test]
    fn reports_unset_and_malformed() {
        assert_eq!(
            expand_with("${MISSING}", env),
            Err(EnvError::Unset("MISSING".into()))
        );
        assert_eq!(expand_with("${HOST", env), Err(EnvError::Unclosed));
        assert_eq!(
            expand_with("${1X}", env),
            Err(EnvError::BadName("1X".into()))
        );
    }

    #[test]
    fn records_the_variables_read() {
        let e = expand_with("${HOST}/${MISSING:-a}", env).unwrap();
        assert_eq!(e.vars, vec!["HOST".to_string(), "MISSING".to_string()]);
    }
}
