//! What keeps a user's template from taking the process down or running on: a size and
//! nesting limit checked on the text before handlebars parses it (its parser recurses, and a
//! few thousand nested blocks overflow the stack), a walk of the parsed templates that refuses
//! partials that include themselves (handlebars would recurse until the stack overflows) and
//! partial names that are not written out (which the walk could not follow), and a budget for
//! every render: time, output size and a cancel flag, checked at each write and at each step of
//! `each`, which is ours for that reason.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use handlebars::template::{Parameter, Template, TemplateElement};
use handlebars::{
    BlockContext, BlockParams, Context, Handlebars, Helper, HelperDef, HelperResult, Output,
    RenderContext, RenderErrorReason, Renderable, to_json,
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// The largest template text accepted.
pub const MAX_TEMPLATE_BYTES: usize = 1 << 20;

/// How deeply blocks (`{{#each}}`, `{{#if}}`, ...) and subexpressions may nest.
pub const MAX_NESTING: usize = 32;

/// What one render may use.
#[derive(Debug, Clone)]
pub struct Limits {
    pub time: Duration,
    pub max_bytes: usize,
    /// Cancelled from outside (a job's timeout, a shutdown) to stop the render at its next step.
    pub cancel: Option<CancellationToken>,
}

impl Limits {
    /// For reports: a week of figures renders in milliseconds; a minute means a template that
    /// loops over loops.
    pub fn report() -> Limits {
        Limits {
            time: Duration::from_secs(60),
            max_bytes: 64 << 20,
            cancel: None,
        }
    }

    /// For a notification (a Slack message): Slack takes 40,000 characters of text.
    pub fn message() -> Limits {
        Limits {
            time: Duration::from_secs(2),
            max_bytes: 256 << 10,
            cancel: None,
        }
    }
}

/// Why a render was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    Time(Duration),
    Size(usize),
    Cancelled,
}

impl std::fmt::Display for Exceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exceeded::Time(limit) => write!(
                f,
                "rendering took longer than {} s and was stopped (a loop inside a loop over long lists?)",
                limit.as_secs_f64()
            ),
            Exceeded::Size(limit) => write!(
                f,
                "the output grew past {} MiB and rendering was stopped",
                *limit as f64 / (1 << 20) as f64
            ),
            Exceeded::Cancelled => f.write_str("rendering was cancelled"),
        }
    }
}

/// The budget of the render running on this thread.
struct Budget {
    deadline: Instant,
    limits: Limits,
    written: usize,
    exceeded: Option<Exceeded>,
}

thread_local! {
    static BUDGET: RefCell<Option<Budget>> = const { RefCell::new(None) };
}

/// Whether the render on this thread may go on; records why not.
fn may_go_on(extra_bytes: usize) -> bool {
    BUDGET.with(|b| {
        let mut b = b.borrow_mut();
        let Some(budget) = b.as_mut() else {
            return true;
        };
        if budget.exceeded.is_some() {
            return false;
        }
        budget.written = budget.written.saturating_add(extra_bytes);
        let exceeded = if budget.written > budget.limits.max_bytes {
            Some(Exceeded::Size(budget.limits.max_bytes))
        } else if budget
            .limits
            .cancel
            .as_ref()
            .is_some_and(CancellationToken::is_cancelled)
        {
            Some(Exceeded::Cancelled)
        } else if Instant::now() > budget.deadline {
            Some(Exceeded::Time(budget.limits.time))
        } else {
            None
        };
        budget.exceeded = exceeded;
        exceeded.is_none()
    })
}

/// Collects the output, refusing to grow past the budget.
struct BoundedWriter(Vec<u8>);

impl std::io::Write for BoundedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !may_go_on(buf.len()) {
            return Err(std::io::Error::other("over budget"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A render's failure: over a limit, or the template's own error (with its place).
#[derive(Debug)]
pub enum RenderFailure {
    Exceeded(Exceeded),
    Template(handlebars::RenderError),
}

/// Renders `name` within `limits`.
pub fn render(
    hb: &Handlebars<'static>,
    name: &str,
    data: &impl serde::Serialize,
    limits: &Limits,
) -> Result<String, RenderFailure> {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            BUDGET.with(|b| *b.borrow_mut() = None);
        }
    }
    let _reset = Reset;
    BUDGET.with(|b| {
        *b.borrow_mut() = Some(Budget {
            deadline: Instant::now() + limits.time,
            limits: limits.clone(),
            written: 0,
            exceeded: None,
        })
    });
    let mut out = BoundedWriter(Vec::new());
    let result = hb.render_to_write(name, data, &mut out);
    let exceeded = BUDGET.with(|b| b.borrow().as_ref().and_then(|b| b.exceeded));
    match (result, exceeded) {
        (_, Some(exceeded)) => Err(RenderFailure::Exceeded(exceeded)),
        (Err(e), None) => Err(RenderFailure::Template(e)),
        (Ok(()), None) => Ok(String::from_utf8_lossy(&out.0).into_owned()),
    }
}

/// A problem in a template's text or structure, at a line and column when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StructureProblem {
    pub message: String,
    pub at: Option<(usize, usize)>,
}

/// Checks the text before it is parsed: its size, and how deeply `{{#...}}` blocks and `(...)`
/// subexpressions nest (a cheap scan that over-counts rather than under-counts).
pub fn check_source(text: &str) -> Result<(), StructureProblem> {
    if text.len() > MAX_TEMPLATE_BYTES {
        return Err(StructureProblem {
            message: format!(
                "the template is {} KiB; templates may be at most {} KiB",
                text.len() >> 10,
                MAX_TEMPLATE_BYTES >> 10
            ),
            at: None,
        });
    }
    let (mut blocks, mut parens) = (0usize, 0usize);
    let (mut line, mut column) = (1usize, 1usize);
    let mut in_tag = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let at = (line, column);
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
        if !in_tag {
            if c == '{' && chars.peek() == Some(&'{') {
                chars.next();
                column += 1;
                in_tag = true;
                while let Some(&next) = chars.peek() {
                    if next == '{' || next == '~' || next == ' ' {
                        chars.next();
                        column += 1;
                    } else {
                        break;
                    }
                }
                match chars.peek() {
                    Some('#') => blocks += 1,
                    Some('/') => blocks = blocks.saturating_sub(1),
                    _ => {}
                }
                if blocks > MAX_NESTING {
                    return Err(StructureProblem {
                        message: format!("blocks nest more than {MAX_NESTING} deep"),
                        at: Some(at),
                    });
                }
            }
            continue;
        }
        match c {
            '(' => {
                parens += 1;
                if parens > MAX_NESTING {
                    return Err(StructureProblem {
                        message: format!("subexpressions nest more than {MAX_NESTING} deep"),
                        at: Some(at),
                    });
                }
            }
            ')' => parens = parens.saturating_sub(1),
            '}' if chars.peek() == Some(&'}') => {
                in_tag = false;
                parens = 0;
            }
            _ => {}
        }
    }
    Ok(())
}

/// A partial reference found in a template: who refers, to what, where.
struct Reference {
    from: String,
    to: String,
    at: Option<(usize, usize)>,
}

/// Walks the parsed templates of `hb`: a partial name that is not written out, or partials that
/// include each other in a circle, are problems (handlebars would recurse until the process's
/// stack overflows).
pub fn check_structure(hb: &Handlebars<'static>) -> Result<(), StructureProblem> {
    let mut references = Vec::new();
    for (name, template) in hb.get_templates() {
        collect(template, name, &mut references)?;
    }
    let mut graph: BTreeMap<&str, Vec<&Reference>> = BTreeMap::new();
    for reference in &references {
        graph.entry(&reference.from).or_default().push(reference);
    }
    // Depth-first, each node once: a reference back into the current path closes a circle.
    fn visit<'a>(
        node: &'a str,
        graph: &BTreeMap<&'a str, Vec<&'a Reference>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<&'a Reference> {
        if done.contains(node) {
            return None;
        }
        path.push(node);
        for reference in graph.get(node).into_iter().flatten() {
            if path.contains(&reference.to.as_str()) {
                return Some(reference);
            }
            if let Some(found) = visit(&reference.to, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node);
        None
    }
    let mut done = BTreeSet::new();
    let nodes: Vec<&str> = graph.keys().copied().collect();
    for node in nodes {
        let mut path = Vec::new();
        if let Some(reference) = visit(node, &graph, &mut path, &mut done) {
            return Err(StructureProblem {
                message: format!(
                    "the partial `{}` includes itself (through {}); a template cannot recurse",
                    reference.to,
                    path.join(" → ")
                ),
                at: reference.at,
            });
        }
    }
    Ok(())
}

fn collect(
    template: &Template,
    owner: &str,
    out: &mut Vec<Reference>,
) -> Result<(), StructureProblem> {
    for (i, element) in template.elements.iter().enumerate() {
        let at = template.mapping.get(i).map(|m| (m.0, m.1));
        match element {
            TemplateElement::HelperBlock(h) => {
                for inner in h.template.iter().chain(h.inverse.iter()) {
                    collect(inner, owner, out)?;
                }
            }
            TemplateElement::DecoratorBlock(d) | TemplateElement::DecoratorExpression(d) => {
                let is_inline = matches!(&d.name, Parameter::Name(n) if n == "inline");
                let defines = match d.params.first() {
                    Some(Parameter::Literal(Value::String(name))) if is_inline => name.clone(),
                    _ => owner.to_string(),
                };
                if let Some(inner) = &d.template {
                    collect(inner, &defines, out)?;
                }
            }
            TemplateElement::PartialExpression(d) | TemplateElement::PartialBlock(d) => {
                let name = match &d.name {
                    Parameter::Name(name) => name.clone(),
                    Parameter::Path(
                        handlebars::Path::Relative((_, raw)) | handlebars::Path::Local((_, _, raw)),
                    ) => raw.clone(),
                    Parameter::Literal(Value::String(name)) => name.clone(),
                    _ => {
                        return Err(StructureProblem {
                            message: "a partial's name must be written out, not computed".into(),
                            at,
                        });
                    }
                };
                if name != "@partial-block" {
                    out.push(Reference {
                        from: owner.to_string(),
                        to: name,
                        at,
                    });
                }
                if let Some(inner) = &d.template {
                    collect(inner, owner, out)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// `{{#each}}` as handlebars has it (arrays and objects, `@index`, `@key`, `@first`, `@last`,
/// block parameters, `{{else}}`), checking the render's budget before every item: a loop over
/// a loop over long lists stops at its time limit even if it writes nothing.
#[derive(Clone, Copy)]
pub struct BoundedEach;

impl HelperDef for BoundedEach {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        rc: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        let value = h
            .param(0)
            .ok_or(RenderErrorReason::ParamNotFoundForIndex("each", 0))?;
        let Some(template) = h.template() else {
            return Ok(());
        };
        let items: Vec<(Value, &Value, String)> = match value.value() {
            Value::Array(list) if !list.is_empty() || h.inverse().is_none() => list
                .iter()
                .enumerate()
                .map(|(i, v)| (to_json(i), v, i.to_string()))
                .collect(),
            Value::Object(map) if !map.is_empty() || h.inverse().is_none() => map
                .iter()
                .map(|(k, v)| (to_json(k), v, k.clone()))
                .collect(),
            _ => {
                return if let Some(inverse) = h.inverse() {
                    inverse.render(r, ctx, rc, out)
                } else if r.strict_mode() {
                    Err(handlebars::RenderError::strict_error(value.relative_path()))
                } else {
                    Ok(())
                };
            }
        };
        let is_object = value.value().is_object();
        let base_path = value.context_path().cloned();
        let mut block = BlockContext::new();
        match &base_path {
            Some(path) => block.base_path_mut().clone_from(path),
            None => block.set_base_value(value.value().clone()),
        }
        rc.push_block(block);
        let len = items.len();
        for (i, (key, item, segment)) in items.into_iter().enumerate() {
            if !may_go_on(0) {
                rc.pop_block();
                return Err(RenderErrorReason::Other("over budget".into()).into());
            }
            if let Some(block) = rc.block_mut() {
                block.set_local_var("first", to_json(i == 0));
                block.set_local_var("last", to_json(i + 1 == len));
                block.set_local_var("index", to_json(i));
                if is_object {
                    block.set_local_var("key", key.clone());
                }
                match &base_path {
                    Some(path) => {
                        let mut item_path = path.clone();
                        item_path.push(segment);
                        *block.base_path_mut() = item_path;
                    }
                    None => block.set_base_value(item.clone()),
                }
                let mut params = BlockParams::new();
                if let Some(name) = h.block_param() {
                    if base_path.is_some() {
                        params.add_path(name, Vec::new())?;
                    } else {
                        params.add_value(name, item.clone())?;
                    }
                    block.set_block_params(params);
                } else if let Some((name, key_name)) = h.block_param_pair() {
                    if base_path.is_some() {
                        params.add_path(name, Vec::new())?;
                    } else {
                        params.add_value(name, item.clone())?;
                    }
                    params.add_value(key_name, key)?;
                    block.set_block_params(params);
                }
            }
            template.render(r, ctx, rc, out)?;
        }
        rc.pop_block();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(templates: &[(&str, &str)]) -> Handlebars<'static> {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        hb.register_helper("each", Box::new(BoundedEach));
        for (name, text) in templates {
            hb.register_template_string(name, *text).unwrap();
        }
        hb
    }

    #[test]
    fn each_behaves_as_handlebars_each() {
        let hb = registry(&[(
            "t",
            "{{#each list}}{{@index}}:{{this}}{{#if @first}}F{{/if}}{{#if @last}}L{{/if}} {{/each}}|{{#each map}}{{@key}}={{this}} {{/each}}|{{#each list as |x i|}}{{i}}{{x}}{{/each}}|{{#each empty}}x{{else}}none{{/each}}|{{#each items}}{{name}}{{../sep}}{{/each}}",
        )]);
        let data = serde_json::json!({
            "list": ["a", "b", "c"], "map": {"k": 1, "m": 2}, "empty": [],
            "items": [{"name": "n1"}, {"name": "n2"}], "sep": ";"
        });
        assert_eq!(
            render(&hb, "t", &data, &Limits::message()).unwrap(),
            "0:aF 1:b 2:cL |k=1 m=2 |0a1b2c|none|n1;n2;"
        );
    }

    #[test]
    fn a_loop_over_loops_stops_at_its_time_limit_even_writing_nothing() {
        let hb = registry(&[(
            "t",
            "{{#each s}}{{#each ../s}}{{#each ../../s}}{{#each ../../../s}}{{#each ../../../../s}}{{/each}}{{/each}}{{/each}}{{/each}}{{/each}}",
        )]);
        let data = serde_json::json!({ "s": (0..168).collect::<Vec<_>>() });
        let limits = Limits {
            time: Duration::from_millis(50),
            max_bytes: 1 << 20,
            cancel: None,
        };
        let started = Instant::now();
        match render(&hb, "t", &data, &limits) {
            Err(RenderFailure::Exceeded(Exceeded::Time(_))) => {}
            other => panic!("{other:?}"),
        }
        // 168^5 steps would take hours; it stopped near its limit (a lower bound is all a busy
        // machine allows to assert, and the outcome above is the point).
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn output_size_and_cancellation_stop_a_render() {
        let hb = registry(&[("t", "{{#each s}}{{#each ../s}}xxxxxxxxxx{{/each}}{{/each}}")]);
        let data = serde_json::json!({ "s": (0..1000).collect::<Vec<_>>() });
        let small = Limits {
            time: Duration::from_secs(60),
            max_bytes: 100_000,
            cancel: None,
        };
        assert!(matches!(
            render(&hb, "t", &data, &small),
            Err(RenderFailure::Exceeded(Exceeded::Size(100_000)))
        ));
        let token = CancellationToken::new();
        token.cancel();
        let cancelled = Limits {
            cancel: Some(token),
            ..small
        };
        assert!(matches!(
            render(&hb, "t", &data, &cancelled),
            Err(RenderFailure::Exceeded(Exceeded::Cancelled))
        ));
    }

    #[test]
    fn partials_that_include_themselves_are_found_before_rendering() {
        let hb = registry(&[("t", "{{#*inline \"p\"}}x{{> p}}{{/inline}}{{> p}}")]);
        let problem = check_structure(&hb).unwrap_err();
        assert!(
            problem
                .message
                .starts_with("the partial `p` includes itself"),
            "{problem:?}"
        );
        let hb = registry(&[(
            "a",
            "{{#*inline \"p\"}}{{> q}}{{/inline}}{{#*inline \"q\"}}{{> p}}{{/inline}}{{> p}}",
        )]);
        assert!(check_structure(&hb).is_err());
        let hb = registry(&[("a", "{{> b}}"), ("b", "{{> a}}")]);
        assert!(check_structure(&hb).is_err());
        let fine = registry(&[(
            "t",
            "{{#*inline \"row\"}}<td>{{this}}</td>{{/inline}}{{#each s}}{{> row}}{{/each}}",
        )]);
        assert_eq!(check_structure(&fine), Ok(()));
    }

    #[test]
    fn deep_nesting_and_huge_templates_are_refused_before_parsing() {
        let deep = format!("{}x{}", "{{#if a}}".repeat(5000), "{{/if}}".repeat(5000));
        let problem = check_source(&deep).unwrap_err();
        assert_eq!(problem.message, "blocks nest more than 32 deep");
        assert_eq!(problem.at, Some((1, 1 + 9 * 32)));
        let parens = format!("{{{{x {}y{}}}}}", "(a ".repeat(100), ")".repeat(100));
        assert!(check_source(&parens).is_err());
        assert!(check_source(&"x".repeat(MAX_TEMPLATE_BYTES + 1)).is_err());
        let ok = "{{#each a}}{{#if b}}{{c (d e)}}{{/if}}{{/each}}";
        assert_eq!(check_source(ok), Ok(()));
    }
}
