//! Load-time checks of a compiled rule against the metrics its job can produce: every
//! `family.instance.field` chain, every metric name written as a string to a function, every
//! window string, and the options of `alert(...)` calls written as map literals. What can be
//! known before the first tick is an error at `runner check`, with the rule's line and column.

use rhai::{AST, ASTNode, Expr, Position};

use super::activation::OPTIONS;
use super::engine::METRIC_FUNCTIONS;
use super::values::Schema;
use super::window::{self, Span};
use crate::vocab::duration::parse_duration;

/// A problem in a rule, at a place in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleProblem {
    pub line: usize,
    pub column: usize,
    pub width: usize,
    pub message: String,
}

fn at(pos: Position, width: usize, message: String) -> RuleProblem {
    RuleProblem {
        line: pos.line().unwrap_or(0),
        column: pos.position().unwrap_or(0),
        width,
        message,
    }
}

/// `cpu.total.usage_percent` → (`cpu`, [`total`, `usage_percent`]) for a chain rooted at a
/// variable; `None` for anything else.
fn property_chain(expr: &Expr) -> Option<(&str, Position, Vec<String>)> {
    let Expr::Dot(binary, _, _) = expr else {
        return None;
    };
    let Expr::Variable(var, _, pos) = &binary.lhs else {
        return None;
    };
    let mut parts = Vec::new();
    let mut rest = &binary.rhs;
    loop {
        match rest {
            Expr::Property(p, _) => {
                parts.push(p.2.to_string());
                break;
            }
            Expr::Dot(inner, _, _) => {
                match &inner.lhs {
                    Expr::Property(p, _) => parts.push(p.2.to_string()),
                    _ => break,
                }
                rest = &inner.rhs;
            }
            _ => break,
        }
    }
    Some((var.1.as_str(), *pos, parts))
}

/// A number written as a literal (`95`, `99.9`, `-5`).
fn number_arg(args: &[Expr], index: usize) -> Option<(f64, Position)> {
    match args.get(index) {
        Some(Expr::IntegerConstant(i, pos)) => Some((*i as f64, *pos)),
        Some(Expr::FloatConstant(f, pos)) => Some((**f, *pos)),
        Some(Expr::FnCall(call, pos)) if call.name.as_str() == "-" && call.args.len() == 1 => {
            number_arg(&call.args, 0).map(|(v, _)| (-v, *pos))
        }
        _ => None,
    }
}

fn string_arg(args: &[Expr], index: usize) -> Option<(&str, Position)> {
    match args.get(index) {
        Some(Expr::StringConstant(s, pos)) => Some((s.as_str(), *pos)),
        _ => None,
    }
}

/// Every problem the AST shows against `schema`, in source order.
pub fn check(ast: &AST, schema: &Schema) -> Vec<RuleProblem> {
    let mut problems = Vec::new();
    ast.walk(&mut |path: &[ASTNode]| {
        let Some(ASTNode::Expr(expr)) = path.last() else {
            return true;
        };
        if let Some((family, pos, parts)) = property_chain(expr)
            && schema.families.contains_key(family)
        {
            let mut all = vec![family];
            all.extend(parts.iter().map(String::as_str));
            if let Err(message) = schema.check_parts(&all) {
                problems.push(at(pos, all.join(".").len(), message));
            }
        }
        if let Expr::FnCall(call, _) = expr {
            check_call(call.name.as_str(), &call.args, schema, &mut problems);
        }
        true
    });
    problems.sort_by_key(|p| (p.line, p.column));
    problems
}

/// Each action `file`'s `alert()` calls name with a literal (`action: "restart_web"`) that
/// is not among `known` (the jobs file's `actions:`): a computed name is found at run time.
pub fn unknown_actions(file: &super::RuleFile, known: &[&str]) -> Vec<RuleProblem> {
    let mut problems = Vec::new();
    let mut unknown = |name: &str, pos: Position| {
        if known.contains(&name) {
            return;
        }
        let known = if known.is_empty() {
            "the jobs file has no `actions:`".to_string()
        } else {
            format!("known: {}", known.join(", "))
        };
        problems.push(at(
            pos,
            name.len() + 2,
            format!("unknown action `{name}` ({known})"),
        ));
    };
    // The stored AST is optimized: a call as a statement is a `Stmt`, a map of constants one
    // constant.
    file.ast.walk(&mut |path: &[ASTNode]| {
        let call = match path.last() {
            Some(ASTNode::Expr(Expr::FnCall(call, _))) => call,
            Some(ASTNode::Stmt(rhai::Stmt::FnCall(call, _))) => call,
            _ => return true,
        };
        if call.name.as_str() != "alert" {
            return true;
        }
        match call.args.get(1) {
            Some(Expr::Map(map, _)) => {
                for (ident, value) in map.0.iter() {
                    if ident.name.as_str() == "action"
                        && let Expr::StringConstant(name, pos) = value
                    {
                        unknown(name.as_str(), *pos);
                    }
                }
            }
            Some(Expr::DynamicConstant(value, pos)) => {
                if let Some(map) = value.read_lock::<rhai::Map>()
                    && let Some(name) = map.get("action")
                    && let Some(name) = name.read_lock::<rhai::ImmutableString>()
                {
                    unknown(name.as_str(), *pos);
                }
            }
            _ => {}
        }
        true
    });
    problems.sort_by_key(|p| (p.line, p.column));
    problems
}

/// A metric a rule reads: by its name (`cpu.total.usage_percent`, `value("…")`), or through a
/// function over history with the arguments written after the name.
#[derive(Debug, Clone, PartialEq)]
pub struct Read {
    pub metric: String,
    /// The history function (`avg`, `rate`, …); `None` for the value now.
    pub function: Option<String>,
    pub args: Vec<Literal>,
}

/// An argument written as a literal; anything else is `Other`.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Text(String),
    Number(f64),
    Other,
}

/// Each metric `file`'s rules read that `schema` knows, once, in source order: what
/// `runner dry-run` shows the values of.
pub fn reads(file: &super::RuleFile, schema: &Schema) -> Vec<Read> {
    let mut found: Vec<(Position, Read)> = Vec::new();
    file.ast.walk(&mut |path: &[ASTNode]| {
        let Some(ASTNode::Expr(expr)) = path.last() else {
            return true;
        };
        if let Some((family, pos, parts)) = property_chain(expr)
            && schema.families.contains_key(family)
        {
            let mut all = vec![family];
            all.extend(parts.iter().map(String::as_str));
            let metric = all.join(".");
            if schema.check_name(&metric).is_ok() {
                let read = Read {
                    metric,
                    function: None,
                    args: Vec::new(),
                };
                found.push((pos, read));
            }
        }
        if let Expr::FnCall(call, _) = expr
            && METRIC_FUNCTIONS.contains(&call.name.as_str())
            && let Some((metric, pos)) = string_arg(&call.args, 0)
            && schema.check_name(metric).is_ok()
        {
            let name = call.name.as_str();
            let function = (!["has", "value"].contains(&name)).then(|| name.to_string());
            let args = if function.is_some() {
                (1..call.args.len())
                    .map(
                        |i| match (string_arg(&call.args, i), number_arg(&call.args, i)) {
                            (Some((text, _)), _) => Literal::Text(text.to_string()),
                            (_, Some((number, _))) => Literal::Number(number),
                            _ => Literal::Other,
                        },
                    )
                    .collect()
            } else {
                Vec::new()
            };
            let read = Read {
                metric: metric.to_string(),
                function,
                args,
            };
            found.push((pos, read));
        }
        true
    });
    found.sort_by_key(|(pos, _)| (pos.line(), pos.position()));
    let mut reads: Vec<Read> = Vec::new();
    for (_, read) in found {
        if !reads.contains(&read) {
            reads.push(read);
        }
    }
    reads
}

fn check_call(name: &str, args: &[Expr], schema: &Schema, problems: &mut Vec<RuleProblem>) {
    if METRIC_FUNCTIONS.contains(&name)
        && let Some((metric, pos)) = string_arg(args, 0)
        && let Err(message) = schema.check_name(metric)
    {
        problems.push(at(pos, metric.len() + 2, message));
    }
    // Window and duration arguments, by position, with what bounds each.
    let spans: &[(usize, Span)] = match name {
        "avg" | "min" | "max" | "sum" | "count" | "stddev" | "zscore" | "rate" | "delta"
        | "covered" => &[(1, Span::Window)],
        "ewma" => &[(1, Span::HalfLife)],
        "percentile" => &[(2, Span::Window)],
        "predict" => &[(1, Span::Window), (2, Span::Ahead)],
        _ => &[],
    };
    for &(i, span) in spans {
        if let Some((text, pos)) = string_arg(args, i)
            && let Err(message) = window::parse(text, span)
        {
            problems.push(at(pos, text.len() + 2, message));
        }
    }
    if name == "percentile"
        && let Some((p, pos)) = number_arg(args, 1)
        && let Err(message) = window::percent(p)
    {
        problems.push(at(pos, p.to_string().len(), message));
    }
    if name == "instances"
        && let Some((family, pos)) = string_arg(args, 0)
    {
        match schema.families.get(family) {
            None => problems.push(at(
                pos,
                family.len() + 2,
                format!("this job collects no `{family}` metrics"),
            )),
            Some(f) if f.flat => problems.push(at(
                pos,
                family.len() + 2,
                format!("`{family}` has no instances"),
            )),
            Some(_) => {}
        }
    }
    if name == "alert"
        && let Some(Expr::Map(map, _)) = args.get(1)
    {
        for (ident, value) in map.0.iter() {
            let key = ident.name.as_str();
            if !OPTIONS.contains(&key) {
                let hint = crate::vocab::suggest::closest(key, OPTIONS.iter().copied())
                    .map(|b| format!("; did you mean `{b}`?"))
                    .unwrap_or_default();
                problems.push(at(
                    ident.pos,
                    key.len(),
                    format!("unknown alert option `{key}`{hint}"),
                ));
            }
            if let Expr::StringConstant(text, vpos) = value {
                let bad = match key {
                    "severity" => {
                        (!["info", "warning", "critical"].contains(&text.as_str())).then(|| {
                            format!(
                                "unknown severity `{text}` (expected info, warning or critical)"
                            )
                        })
                    }
                    "on_missing" => {
                        (!["keep", "resolve", "alert"].contains(&text.as_str())).then(|| {
                            format!("unknown on_missing `{text}` (expected keep, resolve or alert)")
                        })
                    }
                    "pending_for" | "keep_firing_for" | "repeat_interval" => parse_duration(text)
                        .err()
                        .map(|e| format!("alert option `{key}`: {e}")),
                    _ => None,
                };
                if let Some(message) = bad {
                    problems.push(at(*vpos, text.len() + 2, message));
                }
            }
        }
    }
}

#[cfg(test)]
mod action_tests {
    use super::*;

    #[test]
    fn an_action_a_rule_names_with_a_literal_must_be_known() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.rhai");
        std::fs::write(
            &path,
            "let v = 1.0;\nalert(\"a\", #{ active: v > 0.5, action: \"act\" });\nlet name = \"x\";\nalert(\"b\", #{ action: name });\n",
        )
        .unwrap();
        let (rules, problems) = crate::rules::RuleSet::load(
            &[path],
            Schema::default(),
            std::time::Duration::from_secs(1),
        );
        assert!(!problems.has_errors());
        let file = &rules.files()[0];
        let found: Vec<String> = unknown_actions(file, &["restart_web"])
            .iter()
            .map(|p| format!("{}:{} {}", p.line, p.column, p.message))
            .collect();
        assert_eq!(found, ["2:40 unknown action `act` (known: restart_web)"]);
        assert!(unknown_actions(file, &["act"]).is_empty());
    }
}
