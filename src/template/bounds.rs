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

/// The largest template text accepted: 35 times the shipped weekly report's.
pub const MAX_TEMPLATE_BYTES: usize = 256 << 10;

/// The most tags (`{{…}}`, comments included) a template may hold: 12 times the shipped
/// weekly report's. handlebars works out the line and column of every construct by counting
/// from the start of the text, so parsing costs tags × bytes: at these two limits a template
/// parses in one to two seconds (`cargo bench --bench config -- register`), where a megabyte
/// of `{{else if}}` took minutes.
pub const MAX_TAGS: usize = 2_000;

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

/// The line and column (in characters, from 1) of byte `offset` of `text`.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// Checks the text before it is parsed: its size, and how deeply constructs nest. Handlebars
/// builds each `{{else if …}}` as a block inside the one before, so a chain counts one level a
/// link; literals (`[…]`, `{…}`) and subexpressions recurse in its parser and count inside a
/// tag. The scan over-counts rather than under-counts (a bracket in a comment of a tag is
/// counted), and it is linear: it runs before the parser, whose time grows faster than that.
pub fn check_source(text: &str) -> Result<(), StructureProblem> {
    if text.len() > MAX_TEMPLATE_BYTES {
        return Err(StructureProblem {
            message: format!(
                "the template is {} KiB; templates may be at most {} KiB (this is where it passes the limit)",
                text.len() >> 10,
                MAX_TEMPLATE_BYTES >> 10
            ),
            at: Some(position(text, MAX_TEMPLATE_BYTES)),
        });
    }
    let too_deep = |what: &str, offset: usize| StructureProblem {
        message: format!("{what} nest more than {MAX_NESTING} deep"),
        at: Some(position(text, offset)),
    };
    let bytes = text.as_bytes();
    // One frame per open block: the levels it adds (itself and each `else if` chained to it).
    let mut frames: Vec<usize> = Vec::new();
    let mut depth = 0usize;
    let mut tags = 0usize;
    let mut i = 0;
    while i + 1 < bytes.len() {
        if !(bytes[i] == b'{' && bytes[i + 1] == b'{') {
            i += 1;
            continue;
        }
        let tag = i;
        tags += 1;
        if tags > MAX_TAGS {
            return Err(StructureProblem {
                message: format!(
                    "the template has more than {MAX_TAGS} tags (`{{{{…}}}}`, comments included); split it into partials of their own files or loop over a list instead"
                ),
                at: Some(position(text, tag)),
            });
        }
        let mut j = i + 2;
        while j < bytes.len() && matches!(bytes[j], b'{' | b'~' | b' ' | b'\t' | b'\r' | b'\n') {
            j += 1;
        }
        // Comments hold text, not constructs.
        if bytes.get(j) == Some(&b'!') {
            let end = if text[j..].starts_with("!--") {
                "--}}"
            } else {
                "}}"
            };
            i = text[j..]
                .find(end)
                .map_or(bytes.len(), |at| j + at + end.len());
            continue;
        }
        let head = &text[j..];
        let chained = |rest: &str| {
            let rest = rest.trim_start_matches([' ', '\t', '\r', '\n', '~']);
            !rest.is_empty() && !rest.starts_with('}')
        };
        if head.starts_with('#') {
            frames.push(1);
            depth += 1;
            if depth > MAX_NESTING {
                return Err(too_deep("blocks (each `{{else if}}` counts as one)", tag));
            }
        } else if head.starts_with('/') {
            depth = depth.saturating_sub(frames.pop().unwrap_or(0));
        } else if let Some(rest) = head.strip_prefix('^').or_else(|| {
            head.strip_prefix("else")
                .filter(|r| !r.starts_with(is_symbol_char))
        }) && chained(rest)
            && let Some(frame) = frames.last_mut()
        {
            *frame += 1;
            depth += 1;
            if depth > MAX_NESTING {
                return Err(too_deep("blocks (each `{{else if}}` counts as one)", tag));
            }
        }
        // The rest of the tag, to its `}}` outside string literals.
        let mut brackets = 0usize;
        let mut quote: Option<u8> = None;
        while j < bytes.len() {
            let c = bytes[j];
            if let Some(q) = quote {
                if c == b'\\' {
                    j += 1;
                } else if c == q {
                    quote = None;
                }
            } else {
                match c {
                    b'"' | b'\'' => quote = Some(c),
                    b'(' | b'[' | b'{' => {
                        brackets += 1;
                        if brackets > MAX_NESTING {
                            return Err(too_deep("subexpressions and literals", j));
                        }
                    }
                    b')' | b']' => brackets = brackets.saturating_sub(1),
                    b'}' if brackets > 0 => brackets -= 1,
                    b'}' => break,
                    _ => {}
                }
            }
            j += 1;
        }
        i = j;
    }
    Ok(())
}

/// The characters of a handlebars identifier: `else` followed by one of them is a name.
fn is_symbol_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '-' | '_' | '$' | ':')
}

/// A partial reference found in a template: who refers, to what, where, and how deeply
/// nested in blocks of its owner.
struct Reference {
    from: String,
    to: String,
    at: Option<(usize, usize)>,
    depth: usize,
}

/// What the walk of the parsed templates gathers: partial references, and how deeply each
/// template and inline partial nests on its own.
#[derive(Default)]
struct Walk {
    references: Vec<Reference>,
    own_depth: BTreeMap<String, usize>,
}

/// Walks the parsed templates of `hb`: a partial name that is not written out, partials that
/// include each other in a circle (handlebars would recurse until the process's stack
/// overflows), or a chain of partials whose blocks nest deeper than `MAX_NESTING` altogether
/// (each partial renders inside the one that includes it) are problems.
pub fn check_structure(hb: &Handlebars<'static>) -> Result<(), StructureProblem> {
    let mut walk = Walk::default();
    for (name, template) in hb.get_templates() {
        collect(template, name, 0, &mut walk)?;
    }
    let references = &walk.references;
    let mut graph: BTreeMap<&str, Vec<&Reference>> = BTreeMap::new();
    for reference in references {
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
    // No circles: the deepest a render can go from each node is finite. Computed bottom-up
    // (memoised), so a long chain of partials costs one pass, not one per path.
    fn deepest<'a>(
        node: &'a str,
        graph: &BTreeMap<&'a str, Vec<&'a Reference>>,
        own: &BTreeMap<String, usize>,
        memo: &mut BTreeMap<&'a str, usize>,
        chain: usize,
    ) -> usize {
        if let Some(&d) = memo.get(node) {
            return d;
        }
        // The walk itself recurses once a partial: past the limit the answer is known.
        if chain > MAX_NESTING {
            return usize::MAX;
        }
        let mut d = own.get(node).copied().unwrap_or(0);
        for reference in graph.get(node).into_iter().flatten() {
            let below = deepest(&reference.to, graph, own, memo, chain + 1);
            d = d.max(reference.depth.saturating_add(1).saturating_add(below));
        }
        memo.insert(node, d);
        d
    }
    let mut memo = BTreeMap::new();
    for reference in references {
        let below = deepest(&reference.to, &graph, &walk.own_depth, &mut memo, 0);
        let total = reference.depth.saturating_add(1).saturating_add(below);
        if total > MAX_NESTING {
            return Err(StructureProblem {
                message: format!(
                    "blocks and the partials they include nest more than {MAX_NESTING} deep from here (`{}` and what it includes)",
                    reference.to
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
    depth: usize,
    walk: &mut Walk,
) -> Result<(), StructureProblem> {
    let own = walk.own_depth.entry(owner.to_string()).or_default();
    *own = (*own).max(depth);
    for (i, element) in template.elements.iter().enumerate() {
        let at = template.mapping.get(i).map(|m| (m.0, m.1));
        match element {
            TemplateElement::HelperBlock(h) => {
                for inner in h.template.iter().chain(h.inverse.iter()) {
                    collect(inner, owner, depth + 1, walk)?;
                }
            }
            TemplateElement::DecoratorBlock(d) | TemplateElement::DecoratorExpression(d) => {
                let is_inline = matches!(&d.name, Parameter::Name(n) if n == "inline");
                let (defines, inner_depth) = match d.params.first() {
                    Some(Parameter::Literal(Value::String(name))) if is_inline => (name.clone(), 0),
                    _ => (owner.to_string(), depth + 1),
                };
                if let Some(inner) = &d.template {
                    collect(inner, &defines, inner_depth, walk)?;
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
                    walk.references.push(Reference {
                        from: owner.to_string(),
                        to: name,
                        at,
                        depth,
                    });
                }
                if let Some(inner) = &d.template {
                    collect(inner, owner, depth + 1, walk)?;
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
        assert!(problem.message.starts_with("blocks"), "{problem:?}");
        assert_eq!(problem.at, Some((1, 1 + 9 * 32)));
        let parens = format!("{{{{x {}y{}}}}}", "(a ".repeat(100), ")".repeat(100));
        assert!(check_source(&parens).is_err());
        let huge = format!("{}\n{}", "x".repeat(10), "y".repeat(MAX_TEMPLATE_BYTES));
        let problem = check_source(&huge).unwrap_err();
        assert_eq!(
            problem.at,
            Some((2, MAX_TEMPLATE_BYTES - 10)),
            "{problem:?}"
        );
        let ok = "{{#each a}}{{#if b}}{{c (d e)}}{{/if}}{{/each}}";
        assert_eq!(check_source(ok), Ok(()));
    }

    #[test]
    fn tags_are_counted_comments_included() {
        let at_limit = "{{a}}".repeat(MAX_TAGS);
        assert_eq!(check_source(&at_limit), Ok(()));
        let over = format!("{at_limit}\n{{{{!-- x --}}}}");
        let problem = check_source(&over).unwrap_err();
        assert!(
            problem.message.contains("more than 2000 tags"),
            "{problem:?}"
        );
        assert_eq!(problem.at, Some((2, 1)));
    }

    /// Each `{{else if}}` is a block inside the one before, to the parser and the renderer:
    /// a chain of them nests as deep as its length, and a long one overflowed the stack.
    #[test]
    fn else_if_chains_count_as_nesting() {
        let chain = |links: usize, open: &str| {
            let mut text = String::from("{{#if a}}x");
            for i in 0..links {
                text.push_str(&format!("{open} b{i}}}}}y"));
            }
            text + "{{else}}z{{/if}}"
        };
        for open in [
            "{{else if",
            "{{~else if",
            "{{ else if",
            "{{^if",
            "{{else unless",
        ] {
            let problem = check_source(&chain(1000, open)).unwrap_err();
            assert!(problem.message.starts_with("blocks"), "{open}: {problem:?}");
            assert_eq!(
                check_source(&chain(MAX_NESTING - 1, open)),
                Ok(()),
                "{open}"
            );
            assert!(check_source(&chain(MAX_NESTING, open)).is_err(), "{open}");
        }
        // A chain ends with its block: the next block starts from the depth before it.
        let twice = format!(
            "{}{}",
            chain(MAX_NESTING - 1, "{{else if"),
            chain(MAX_NESTING - 1, "{{else if")
        );
        assert_eq!(check_source(&twice), Ok(()));
        // `{{else}}`, `{{^}}` and a field named like `elsewhere` do not nest.
        let plain = "{{#if a}}x{{else}}y{{/if}}{{#if a}}x{{^}}y{{/if}}{{elsewhere}}".repeat(100);
        assert_eq!(check_source(&plain), Ok(()));
    }

    #[test]
    fn literals_nest_too_and_strings_and_comments_hold_no_constructs() {
        for (open, close) in [("[", "]"), ("{", "}"), ("(a ", ")")] {
            let deep = format!("{{{{x {}1{}}}}}", open.repeat(1000), close.repeat(1000));
            assert!(check_source(&deep).is_err(), "{open}");
        }
        let quoted = format!("{{{{x \"{}\"}}}}", "((([[[{{{".repeat(100));
        assert_eq!(check_source(&quoted), Ok(()));
        let commented = format!("{{{{!-- {} --}}}}", "{{#if a}}".repeat(100));
        assert_eq!(check_source(&commented), Ok(()));
    }

    /// What `check_source` lets through renders: no construct it accepts overflows a thread's
    /// stack. Registered and rendered on a thread of 512 KiB, a quarter of tokio's worker
    /// stack, at the deepest nesting allowed of every kind at once.
    #[test]
    fn the_deepest_template_accepted_parses_and_renders_on_a_small_stack() {
        let mut text = String::new();
        for _ in 0..MAX_NESTING / 2 {
            text.push_str("{{#each @root.list}}");
        }
        text.push_str("{{#if @root.a}}x");
        for i in 0..MAX_NESTING / 2 - 2 {
            text.push_str(&format!("{{{{else if @root.b{i}}}}}y"));
        }
        text.push_str(&format!(
            "{{{{else}}}}{{{{x {}1{}}}}}",
            "(x ".repeat(MAX_NESTING - 1),
            ")".repeat(MAX_NESTING - 1)
        ));
        text.push_str("{{/if}}");
        for _ in 0..MAX_NESTING / 2 {
            text.push_str("{{/each}}");
        }
        assert_eq!(check_source(&text), Ok(()));
        let rendered = std::thread::Builder::new()
            .stack_size(512 << 10)
            .spawn(move || {
                let mut hb = registry(&[]);
                hb.register_helper(
                    "x",
                    Box::new(
                        |_: &Helper,
                         _: &Handlebars,
                         _: &Context,
                         _: &mut RenderContext,
                         out: &mut dyn Output|
                         -> HelperResult { Ok(out.write("deep")?) },
                    ),
                );
                hb.register_template_string("t", text).unwrap();
                let mut data = serde_json::json!({"list": [1], "a": false});
                for i in 0..MAX_NESTING {
                    data[format!("b{i}")] = false.into();
                }
                render(&hb, "t", &data, &Limits::message()).unwrap()
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(rendered, "deep");
    }

    #[test]
    fn a_chain_of_partials_counts_its_nesting_altogether() {
        // 40 inline partials, each including the next inside a block: no circle, but a render
        // 80 levels deep.
        let mut text = String::new();
        for i in 0..40 {
            text.push_str(&format!(
                "{{{{#*inline \"p{i}\"}}}}{{{{#if a}}}}{{{{> p{}}}}}{{{{/if}}}}{{{{/inline}}}}",
                i + 1
            ));
        }
        text.push_str("{{#*inline \"p40\"}}end{{/inline}}{{> p0}}");
        assert_eq!(check_source(&text), Ok(()));
        let hb = registry(&[("t", &text)]);
        let problem = check_structure(&hb).unwrap_err();
        assert!(problem.message.contains("nest more than"), "{problem:?}");
        // The same chain, short, is fine.
        let short = "{{#*inline \"p0\"}}{{#if a}}{{> p1}}{{/if}}{{/inline}}{{#*inline \"p1\"}}end{{/inline}}{{> p0}}";
        assert_eq!(check_structure(&registry(&[("t", short)])), Ok(()));
    }
}
