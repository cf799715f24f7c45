//! The static check of a template's field references: every path (in `{{x}}`, helper
//! parameters and hashes, subexpressions, block parameters, partials, both branches of every
//! `if`/`else`) is looked up in a schema built from complete example data, following the
//! context as `each`, `with`, `../`, `@root` and block parameters change it. An example render
//! only sees the branches its data takes; this sees them all.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use handlebars::template::{BlockParam, HelperTemplate, Parameter, Template, TemplateElement};
use handlebars::{Handlebars, PathSeg, RenderErrorReason};
use serde_json::Value;

/// The shape of what a template sees.
#[derive(Debug, Clone, PartialEq)]
pub enum Schema {
    /// A struct: these fields and no others.
    Object(BTreeMap<String, Schema>),
    /// Keys are data (metric or host names): any key, each value of this shape.
    Map(Box<Schema>),
    /// A list of items of this shape.
    List(Box<Schema>),
    /// `text`, `a number`, `true or false`.
    Scalar(&'static str),
    /// Not known (a `null` or an empty list in the example): anything below passes.
    Any,
}

static ANY: Schema = Schema::Any;
static LOOP_VARIABLE: Schema = Schema::Scalar("a loop variable");
static INDEX_OR_KEY: Schema = Schema::Scalar("an index or a key");

impl Schema {
    /// The shape of `example`. A list stands for its items (all of them merged, so an item
    /// with a field another lacks still counts); an object is a struct unless its path is in
    /// `maps` (fields joined by `.`, list items adding nothing, a map's values `*`:
    /// `events.labels`), or it is empty (a map with nothing in it: its keys cannot be known).
    pub fn from_example(example: &Value, maps: &[&str]) -> Schema {
        Self::build(example, "", maps)
    }

    fn build(value: &Value, at: &str, maps: &[&str]) -> Schema {
        match value {
            Value::Null => Schema::Any,
            Value::Bool(_) => Schema::Scalar("true or false"),
            Value::Number(_) => Schema::Scalar("a number"),
            Value::String(_) => Schema::Scalar("text"),
            Value::Array(items) => Schema::List(Box::new(
                items
                    .iter()
                    .map(|item| Self::build(item, at, maps))
                    .fold(Schema::Any, Schema::merge),
            )),
            Value::Object(fields) if fields.is_empty() => Schema::Map(Box::new(Schema::Any)),
            Value::Object(fields) if maps.contains(&at) => {
                let values = join(at, "*");
                Schema::Map(Box::new(
                    fields
                        .values()
                        .map(|v| Self::build(v, &values, maps))
                        .fold(Schema::Any, Schema::merge),
                ))
            }
            Value::Object(fields) => Schema::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.clone(), Self::build(v, &join(at, k), maps)))
                    .collect(),
            ),
        }
    }

    /// Both shapes in one: the fields of either; what is not known gives way to what is.
    fn merge(self, other: Schema) -> Schema {
        match (self, other) {
            (Schema::Any, s) | (s, Schema::Any) => s,
            (Schema::Object(mut a), Schema::Object(b)) => {
                for (k, v) in b {
                    let merged = match a.remove(&k) {
                        Some(old) => old.merge(v),
                        None => v,
                    };
                    a.insert(k, merged);
                }
                Schema::Object(a)
            }
            (Schema::List(a), Schema::List(b)) => Schema::List(Box::new(a.merge(*b))),
            (Schema::Map(a), Schema::Map(b)) => Schema::Map(Box::new(a.merge(*b))),
            (Schema::Scalar(a), Schema::Scalar(_)) => Schema::Scalar(a),
            // A field that is a number here and an object there: nothing can be said.
            _ => Schema::Any,
        }
    }

    /// The paths the example leaves unknown (`null`, empty lists and maps): the example is
    /// complete when there are none, and only then does the check see every field.
    pub fn unknown(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.collect_unknown("", &mut out);
        out
    }

    fn collect_unknown(&self, at: &str, out: &mut Vec<String>) {
        match self {
            Schema::Any => out.push(if at.is_empty() { "." } else { at }.to_string()),
            Schema::Object(fields) => {
                for (k, v) in fields {
                    v.collect_unknown(&join(at, k), out);
                }
            }
            Schema::Map(v) => v.collect_unknown(&join(at, "*"), out),
            Schema::List(v) => v.collect_unknown(&format!("{at}[]"), out),
            Schema::Scalar(_) => {}
        }
    }

    /// What `#each` over this gives each item, and whether it sets `@key`.
    fn items(&self) -> (&Schema, bool) {
        match self {
            Schema::List(item) => (item, false),
            Schema::Map(value) => (value, true),
            // Over a struct's fields (of several shapes), or something unknown.
            Schema::Object(_) | Schema::Any => (&ANY, true),
            // `each` over text renders its `else` or fails; the shape of an item is moot.
            Schema::Scalar(_) => (&ANY, false),
        }
    }
}

fn join(at: &str, name: &str) -> String {
    if at.is_empty() {
        name.to_string()
    } else {
        format!("{at}.{name}")
    }
}

/// A field reference that is not in the schema, where it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathProblem {
    /// The template's file (its name in the registry, which `register_file` makes its path).
    pub template: PathBuf,
    /// Line and column (1-based) of the `{{...}}` that holds the path.
    pub at: Option<(usize, usize)>,
    /// As written: `../period.lable`.
    pub path: String,
    pub message: String,
    /// `did you mean `period.label`?`, when a close field exists.
    pub suggestion: Option<String>,
}

impl std::fmt::Display for PathProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.template.display())?;
        if let Some((line, column)) = self.at {
            write!(f, ":{line}:{column}")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(suggestion) = &self.suggestion {
            write!(f, " ({suggestion})")?;
        }
        Ok(())
    }
}

impl PathProblem {
    /// As a located problem for `runner check`; `reference` says where every field is listed.
    pub fn to_problem(&self, field: &str, reference: &str) -> crate::diagnostic::Problem {
        let help = match &self.suggestion {
            Some(suggestion) => format!("{suggestion} {reference}"),
            None => reference.to_string(),
        };
        let problem = crate::diagnostic::Problem::error(&self.template, self.message.clone())
            .field(field)
            .help(help);
        match self.at {
            Some((line, column)) => problem.at(line as u64, column as u64, 1),
            None => problem,
        }
    }
}

/// Loads the template at `path` as a report or message would and checks its paths against
/// `root`, which `what` names in messages (`the summary`). A template that does not load has
/// no paths to check: loading reports why.
pub fn check_file(path: &Path, root: &Schema, what: &str) -> Vec<PathProblem> {
    let mut hb = super::registry(super::Escape::None);
    match super::register_file(&mut hb, path) {
        Ok(name) => check(&hb, &name, root, what),
        Err(_) => Vec::new(),
    }
}

/// Checks every path of the template registered as `name` (and of the partials it includes,
/// at each place they are included) against `root`.
pub fn check(hb: &Handlebars<'static>, name: &str, root: &Schema, what: &str) -> Vec<PathProblem> {
    let Some(template) = hb.get_template(name) else {
        return Vec::new();
    };
    let mut walker = Walker {
        hb,
        root,
        problems: Vec::new(),
        seen: BTreeSet::new(),
        helpers: HashMap::new(),
        partials: Vec::new(),
        partial_walks: 0,
    };
    let mut frames = vec![Frame {
        base: root,
        what: what.to_string(),
        locals: Locals::NONE,
        params: Vec::new(),
    }];
    let mut inline = HashMap::new();
    inline_partials(template, &mut inline);
    walker.walk(template, name, &mut frames, &inline, None);
    walker.problems
}

/// Which of `@index`, `@first`, `@last` and `@key` a block sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Locals {
    index: bool,
    key: bool,
}

impl Locals {
    const NONE: Locals = Locals {
        index: false,
        key: false,
    };
}

/// One block context as handlebars keeps them: `each`, `with` and partials push one, `if`
/// and `unless` do not (so `../` inside an `if` skips it, as at run time).
struct Frame<'a> {
    /// What `this` is.
    base: &'a Schema,
    /// `the summary`, `an item of `families``: for messages.
    what: String,
    locals: Locals,
    params: Vec<(String, &'a Schema)>,
}

/// How deep partials may include partials in the walk (`bounds` refuses circles already).
const MAX_PARTIAL_DEPTH: usize = 32;

/// How many partial bodies one check walks. Each inclusion is walked where it stands (its
/// context differs), so partials that each include the next twice would be walked 2^depth
/// times: 30 of them in 60 tags held `check` and every reload for hours. Past this, what is
/// left is not walked; a misspelt field in a partial shows at its first inclusions.
const MAX_PARTIAL_WALKS: usize = 4_096;

/// A problem's template, place and path.
type Said = (String, Option<(usize, usize)>, String);

struct Walker<'a> {
    hb: &'a Handlebars<'static>,
    root: &'a Schema,
    problems: Vec<PathProblem>,
    /// Template, place and path of every problem found: a partial included three times says
    /// its misspelt field once.
    seen: BTreeSet<Said>,
    helpers: HashMap<String, bool>,
    /// The partials being walked, innermost last.
    partials: Vec<String>,
    /// Partial bodies walked so far, against `MAX_PARTIAL_WALKS`.
    partial_walks: usize,
}

/// Where a path was looked up: the template and place, for the problem.
#[derive(Clone, Copy)]
struct Site<'t> {
    template: &'t str,
    at: Option<(usize, usize)>,
}

impl<'a> Walker<'a> {
    fn walk(
        &mut self,
        template: &'a Template,
        file: &str,
        frames: &mut Vec<Frame<'a>>,
        inline: &HashMap<String, &'a Template>,
        outer_at: Option<(usize, usize)>,
    ) {
        for (i, element) in template.elements.iter().enumerate() {
            // An `{{else if}}` chain's templates have no places of their own: the block's.
            let at = template.mapping.get(i).map(|m| (m.0, m.1)).or(outer_at);
            let site = Site { template: file, at };
            match element {
                TemplateElement::Expression(h) | TemplateElement::HtmlExpression(h) => {
                    let name_only = h.params.is_empty() && h.hash.is_empty();
                    match &h.name {
                        Parameter::Path(path) if name_only => self.value(path, frames, site),
                        _ => self.arguments(&h.params, &h.hash, frames, site),
                    }
                }
                TemplateElement::HelperBlock(h) => {
                    self.arguments(&h.params, &h.hash, frames, site);
                    let inner = self.block_frame(h, frames, site);
                    if let Some(t) = &h.template {
                        match inner {
                            Some(frame) => {
                                frames.push(frame);
                                self.walk(t, file, frames, inline, at);
                                frames.pop();
                            }
                            None => self.walk(t, file, frames, inline, at),
                        }
                    }
                    // `{{else}}` (and `{{else if}}`) render outside the block's context.
                    if let Some(t) = &h.inverse {
                        self.walk(t, file, frames, inline, at);
                    }
                }
                TemplateElement::DecoratorBlock(d) | TemplateElement::DecoratorExpression(d) => {
                    // An inline partial is walked where it is included, in that context.
                    let is_inline = matches!(&d.name, Parameter::Name(n) if n == "inline");
                    if !is_inline && let Some(t) = &d.template {
                        self.walk(t, file, frames, inline, at);
                    }
                }
                TemplateElement::PartialExpression(d) | TemplateElement::PartialBlock(d) => {
                    self.partial(d, file, frames, inline, site);
                }
                // Text, comments, and what a later handlebars may add: no paths known.
                _ => {}
            }
        }
    }

    /// The context a block's body renders in when its helper pushes one: `each` an item of
    /// what it goes through, `with` what it names; a custom helper with block parameters one
    /// whose parameters are unknown. `None` for `if`, `unless` and the like, which render in
    /// the context they are in.
    fn block_frame(
        &mut self,
        h: &'a HelperTemplate,
        frames: &[Frame<'a>],
        site: Site<'_>,
    ) -> Option<Frame<'a>> {
        let helper = match &h.name {
            Parameter::Name(name) => name.as_str(),
            _ => "",
        };
        let outer = current(frames);
        if helper != "each" && helper != "with" {
            return match (&h.block_param, outer) {
                (Some(_), Some(f)) => Some(Frame {
                    base: f.base,
                    what: f.what.clone(),
                    locals: f.locals,
                    params: block_params(&h.block_param, &ANY, &ANY),
                }),
                _ => None,
            };
        }
        // What the block goes through or into; after a problem with it, anything (said once).
        let (target, written) = match h.params.first() {
            Some(Parameter::Path(path)) => match self.resolve(path, frames, site) {
                Some(schema) => (schema, raw(path)),
                None => (&ANY, raw(path)),
            },
            _ => (&ANY, "…"),
        };
        Some(if helper == "each" {
            let (item, key) = target.items();
            Frame {
                base: item,
                what: format!("an item of `{written}`"),
                locals: Locals { index: true, key },
                params: block_params(&h.block_param, item, &INDEX_OR_KEY),
            }
        } else {
            Frame {
                base: target,
                what: format!("`{written}`"),
                // `with` keeps the enclosing `each`'s `@index` and the like.
                locals: outer.map_or(Locals::NONE, |f| f.locals),
                params: block_params(&h.block_param, target, &ANY),
            }
        })
    }

    /// `{{> name [context] [key=value]...}}`: the partial renders in a context of its own (the
    /// one given, or the current one) with its hash as block parameters; so does the block
    /// of `{{#> name}}...{{/name}}`, which `{{> @partial-block}}` then prints.
    fn partial(
        &mut self,
        d: &'a handlebars::template::DecoratorTemplate,
        file: &str,
        frames: &mut Vec<Frame<'a>>,
        inline: &HashMap<String, &'a Template>,
        site: Site<'_>,
    ) {
        let name = match &d.name {
            Parameter::Name(name) => name.clone(),
            Parameter::Path(path) => raw(path).to_string(),
            Parameter::Literal(Value::String(name)) => name.clone(),
            // Computed names are refused when the template loads.
            _ => return,
        };
        if name == "@partial-block" {
            return;
        }
        let (base, what) = match d.params.first() {
            Some(Parameter::Path(path)) => (
                self.resolve(path, frames, site).unwrap_or(&ANY),
                format!("`{}`", raw(path)),
            ),
            Some(other) => {
                self.parameter(other, frames, site);
                (&ANY, format!("the context of `{name}`"))
            }
            None => match current(frames) {
                Some(f) => (f.base, f.what.clone()),
                None => (self.root, format!("the context of `{name}`")),
            },
        };
        let mut params = Vec::new();
        let mut keys: Vec<&String> = d.hash.keys().collect();
        keys.sort();
        for key in keys {
            let schema = match d.hash.get(key) {
                Some(Parameter::Path(path)) => self.resolve(path, frames, site).unwrap_or(&ANY),
                Some(other) => {
                    self.parameter(other, frames, site);
                    &ANY
                }
                None => &ANY,
            };
            params.push((key.clone(), schema));
        }
        // handlebars merges the hash into the context too; every path whose first name is a
        // hash key finds the block parameter first, so the base stays as it is.
        frames.push(Frame {
            base,
            what,
            locals: current(frames).map_or(Locals::NONE, |f| f.locals),
            params,
        });
        if let Some(block) = &d.template {
            self.walk(block, file, frames, inline, site.at);
        }
        if self.partials.contains(&name)
            || self.partials.len() >= MAX_PARTIAL_DEPTH
            || self.partial_walks >= MAX_PARTIAL_WALKS
        {
            frames.pop();
            return;
        }
        self.partial_walks += 1;
        self.partials.push(name.clone());
        if let Some(t) = inline.get(&name) {
            self.walk(t, file, frames, inline, site.at);
        } else if let Some(t) = self.hb.get_template(&name) {
            let mut theirs = inline.clone();
            inline_partials(t, &mut theirs);
            self.walk(t, &name, frames, &theirs, None);
        }
        self.partials.pop();
        frames.pop();
    }

    fn arguments(
        &mut self,
        params: &'a [Parameter],
        hash: &'a HashMap<String, Parameter>,
        frames: &[Frame<'a>],
        site: Site<'_>,
    ) {
        for p in params {
            self.parameter(p, frames, site);
        }
        let mut keys: Vec<&String> = hash.keys().collect();
        keys.sort();
        for key in keys {
            if let Some(p) = hash.get(key) {
                self.parameter(p, frames, site);
            }
        }
    }

    fn parameter(&mut self, p: &'a Parameter, frames: &[Frame<'a>], site: Site<'_>) {
        match p {
            Parameter::Path(path) => {
                self.resolve(path, frames, site);
            }
            Parameter::Subexpression(sub) => {
                if let TemplateElement::Expression(h) = sub.as_element() {
                    self.arguments(&h.params, &h.hash, frames, site);
                }
            }
            // Names and literals are not looked up.
            _ => {}
        }
    }

    /// `{{name}}` alone: a helper without parameters when one is registered under exactly that
    /// name (`{{this.name}}` is always the field), otherwise a value.
    fn value(&mut self, path: &'a handlebars::Path, frames: &[Frame<'a>], site: Site<'_>) {
        if let handlebars::Path::Relative((segs, written)) = path
            && let [PathSeg::Named(name)] = segs.as_slice()
            && name == written
            && self.is_helper(name)
        {
            if let Some(Schema::Object(fields)) = current(frames).map(|f| f.base)
                && fields.contains_key(name)
            {
                self.report(
                    site,
                    written,
                    format!(
                        "`{{{{{name}}}}}` calls the helper `{name}`, not the field `{name}` (it prints `–`)"
                    ),
                    Some(format!("write `{{{{this.{name}}}}}` for the field.")),
                );
            }
            return;
        }
        self.resolve(path, frames, site);
    }

    /// Whether `name` is a helper of the registry: rendering `{{name}}` against nothing calls
    /// it, or says the field is missing when there is none. Asked of the registry itself so
    /// that a helper added to it is known here without a list to keep.
    fn is_helper(&mut self, name: &str) -> bool {
        if let Some(known) = self.helpers.get(name) {
            return *known;
        }
        let probe = format!("{{{{{name}}}}}");
        let known = match self.hb.render_template(&probe, &Value::Null) {
            Ok(_) => true,
            Err(e) => !matches!(
                e.reason(),
                RenderErrorReason::MissingVariable(_) | RenderErrorReason::TemplateError(_)
            ),
        };
        self.helpers.insert(name.to_string(), known);
        known
    }

    /// The shape `path` has where it is written, or `None` after reporting why it has none.
    fn resolve(
        &mut self,
        path: &'a handlebars::Path,
        frames: &[Frame<'a>],
        site: Site<'_>,
    ) -> Option<&'a Schema> {
        let segs = match path {
            handlebars::Path::Local((level, name, written)) => {
                return self.local(*level, name, written, frames, site);
            }
            handlebars::Path::Relative((segs, _)) => segs,
        };
        let written = raw(path);
        // As handlebars resolves: `../` counts levels up, `@root` starts at the top, and a
        // first name that is a block parameter of any enclosing block is that parameter.
        let mut ups = 0;
        let mut from_root = false;
        for seg in segs {
            match seg {
                PathSeg::Ruled(rule) => {
                    // handlebars does not export its grammar's rules; their names are stable.
                    match format!("{rule:?}").as_str() {
                        "path_root" => {
                            from_root = true;
                            break;
                        }
                        "path_up" => ups += 1,
                        _ => break,
                    }
                }
                _ => break,
            }
        }
        let names: Vec<&'a str> = segs
            .iter()
            .filter_map(|s| match s {
                PathSeg::Named(n) => Some(n.as_str()),
                _ => None,
            })
            .collect();
        let prefix = if from_root {
            "@root.".to_string()
        } else {
            "../".repeat(ups)
        };
        if !from_root
            && let Some(first) = names.first()
            && let Some(param) = frames
                .iter()
                .rev()
                .find_map(|f| f.params.iter().find(|(n, _)| n == first))
        {
            let start = Start {
                schema: param.1,
                what: format!("the block parameter `{first}`"),
                prefix: format!("{prefix}{first}."),
                frame: None,
            };
            return self.descend(start, &names[1..], written, frames, site);
        }
        let (schema, what, frame) = if from_root {
            (self.root, frames.first().map(|f| f.what.clone()), None)
        } else {
            // Past the outermost block handlebars falls back to the current one.
            let index = frames
                .len()
                .checked_sub(1 + ups)
                .or_else(|| frames.len().checked_sub(1));
            match index.and_then(|i| frames.get(i).map(|f| (i, f))) {
                Some((i, f)) => (f.base, Some(f.what.clone()), Some(i)),
                None => (self.root, None, None),
            }
        };
        let start = Start {
            schema,
            what: what.unwrap_or_else(|| "the context".into()),
            prefix,
            frame,
        };
        self.descend(start, &names, written, frames, site)
    }

    /// Follows `names` down from `start`.
    fn descend(
        &mut self,
        start: Start<'a>,
        names: &[&'a str],
        written: &str,
        frames: &[Frame<'a>],
        site: Site<'_>,
    ) -> Option<&'a Schema> {
        let mut schema = start.schema;
        for (i, name) in names.iter().enumerate() {
            let so_far = || format!("`{}{}`", start.prefix, names[..i].join("."));
            let owner = if i == 0 { start.what.clone() } else { so_far() };
            schema = match schema {
                Schema::Any => return Some(&ANY),
                Schema::Map(value) => value,
                Schema::Object(fields) => match fields.get(*name) {
                    Some(field) => field,
                    None => {
                        let suggestion =
                            crate::vocab::suggest::closest(name, fields.keys().map(String::as_str))
                                .map(|near| {
                                    let mut fixed = names.to_vec();
                                    fixed[i] = near;
                                    format!(
                                        "did you mean `{}{}`?",
                                        start.prefix,
                                        fixed
                                            .iter()
                                            .map(|n| bracketed(n))
                                            .collect::<Vec<_>>()
                                            .join(".")
                                    )
                                })
                                .or_else(|| {
                                    (i == 0)
                                        .then(|| self.outer(names, start.frame, frames))
                                        .flatten()
                                });
                        self.report(
                            site,
                            written,
                            format!("`{written}` is not a field: {owner} has no field `{name}`"),
                            suggestion,
                        );
                        return None;
                    }
                },
                Schema::List(item) if name.parse::<usize>().is_ok() => item,
                Schema::List(_) => {
                    let list = if i == 0 { owner } else { so_far() };
                    let hint = (*name == "length").then(|| {
                        format!(
                            "`{{{{len {}{}}}}}` counts the items.",
                            start.prefix,
                            names[..i].join(".")
                        )
                    });
                    self.report(
                        site,
                        written,
                        format!(
                            "`{written}` is not a field: {list} is a list, whose items are reached with `{{{{#each}}}}` or a number (`.0`)"
                        ),
                        hint,
                    );
                    return None;
                }
                Schema::Scalar(kind) => {
                    self.report(
                        site,
                        written,
                        format!("`{written}` is not a field: {owner} is {kind}, without fields"),
                        None,
                    );
                    return None;
                }
            };
        }
        Some(schema)
    }

    /// A first name that is not in the current context but in an enclosing one: the path
    /// that reaches it.
    fn outer(&self, names: &[&str], from: Option<usize>, frames: &[Frame<'a>]) -> Option<String> {
        let first = names.first()?;
        let from = from?;
        let has =
            |f: &Frame<'_>| matches!(f.base, Schema::Object(fields) if fields.contains_key(*first));
        let found = (0..from).rev().find(|&i| frames.get(i).is_some_and(has))?;
        // `../` counts from the innermost block, whatever the path wrote.
        let prefix = if found == 0 {
            "@root.".to_string()
        } else {
            "../".repeat(frames.len().saturating_sub(1 + found))
        };
        Some(format!(
            "`{first}` is a field of {}: did you mean `{prefix}{}`?",
            frames
                .get(found)
                .map_or("an enclosing block", |f| f.what.as_str()),
            names.join(".")
        ))
    }

    /// `@index`, `@first`, `@last`, `@key` (`@../index` a level up); `@root` is the top.
    fn local(
        &mut self,
        level: usize,
        name: &str,
        written: &str,
        frames: &[Frame<'a>],
        site: Site<'_>,
    ) -> Option<&'a Schema> {
        if name == "root" {
            return Some(self.root);
        }
        let locals = frames
            .len()
            .checked_sub(1 + level)
            .and_then(|i| frames.get(i))
            .map_or(Locals::NONE, |f| f.locals);
        let set = match name {
            "index" | "first" | "last" => locals.index,
            "key" => locals.key,
            _ => false,
        };
        if set {
            return Some(&LOOP_VARIABLE);
        }
        let why = match name {
            "index" | "first" | "last" => format!("`{written}` is set only inside `{{{{#each}}}}`"),
            "key" => format!(
                "`{written}` is set only inside `{{{{#each}}}}` over a map (a list has `@index`)"
            ),
            _ => format!(
                "`{written}` is not a variable: there are `@index`, `@first`, `@last`, `@key` and `@root`"
            ),
        };
        self.report(site, written, why, None);
        None
    }

    fn report(
        &mut self,
        site: Site<'_>,
        written: &str,
        message: String,
        suggestion: Option<String>,
    ) {
        let key = (site.template.to_string(), site.at, written.to_string());
        if !self.seen.insert(key) {
            return;
        }
        self.problems.push(PathProblem {
            template: PathBuf::from(site.template),
            at: site.at,
            path: written.to_string(),
            message,
            suggestion,
        });
    }
}

/// Where a path's names are looked up from.
struct Start<'a> {
    schema: &'a Schema,
    what: String,
    /// What the path writes before its first name (`../`, `@root.`, a block parameter's `item.`).
    prefix: String,
    /// The frame it starts in (for finding a name in an enclosing one instead).
    frame: Option<usize>,
}

fn current<'f, 'a>(frames: &'f [Frame<'a>]) -> Option<&'f Frame<'a>> {
    frames.last()
}

/// `as |value|` or `as |value key|`, bound to these shapes.
fn block_params<'a>(
    param: &Option<BlockParam>,
    value: &'a Schema,
    key: &'a Schema,
) -> Vec<(String, &'a Schema)> {
    match param {
        Some(BlockParam::Single(Parameter::Name(v))) => vec![(v.clone(), value)],
        Some(BlockParam::Pair((Parameter::Name(v), Parameter::Name(k)))) => {
            vec![(v.clone(), value), (k.clone(), key)]
        }
        _ => Vec::new(),
    }
}

fn raw(path: &handlebars::Path) -> &str {
    match path {
        handlebars::Path::Relative((_, raw)) | handlebars::Path::Local((_, _, raw)) => raw,
    }
}

/// A name as a path segment: `[two words]` when it is not a plain identifier.
fn bracketed(name: &str) -> String {
    if name
        .chars()
        .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
    {
        name.to_string()
    } else {
        format!("[{name}]")
    }
}

/// Every `{{#*inline "name"}}` of `template`, by name.
fn inline_partials<'a>(template: &'a Template, out: &mut HashMap<String, &'a Template>) {
    for element in &template.elements {
        match element {
            TemplateElement::DecoratorBlock(d) | TemplateElement::DecoratorExpression(d) => {
                let is_inline = matches!(&d.name, Parameter::Name(n) if n == "inline");
                if let (true, Some(Parameter::Literal(Value::String(name))), Some(t)) =
                    (is_inline, d.params.first(), &d.template)
                {
                    out.insert(name.clone(), t);
                }
                if let Some(t) = &d.template {
                    inline_partials(t, out);
                }
            }
            TemplateElement::HelperBlock(h) => {
                for t in h.template.iter().chain(h.inverse.iter()) {
                    inline_partials(t, out);
                }
            }
            TemplateElement::PartialBlock(d) => {
                if let Some(t) = &d.template {
                    inline_partials(t, out);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::{Escape, registry};
    use serde_json::json;

    fn problems(source: &str, schema: &Schema) -> Vec<PathProblem> {
        let mut hb = registry(Escape::None);
        hb.register_template_string("t.hbs", source).unwrap();
        check(&hb, "t.hbs", schema, "the data")
    }

    /// Each problem as `line:column path`.
    fn places(source: &str, schema: &Schema) -> Vec<String> {
        problems(source, schema)
            .iter()
            .map(|p| {
                let (line, column) = p.at.unwrap_or((0, 0));
                format!("{line}:{column} {}", p.path)
            })
            .collect()
    }

    /// A config of its own (the shipped jobs file changes under other work).
    fn config() -> (tempfile::TempDir, crate::config::Config) {
        let dir = tempfile::tempdir().unwrap();
        let jobs = dir.path().join("jobs.yaml");
        std::fs::write(
            &jobs,
            "data_dir: var\njobs:\n  weekly: { type: report, schedule: \"0 8 * * Mon\" }\n",
        )
        .unwrap();
        let config = crate::config::Config::load(&jobs).unwrap();
        (dir, config)
    }

    /// A small report-like data set: a struct, a list of structs, a map, a list of scalars.
    fn data() -> Schema {
        Schema::from_example(
            &json!({
                "title": "Weekly",
                "period": {"label": "week", "days": 7},
                "alerts": {"fired": 2, "by_rule": [{"name": "cpu_high", "fired": 2}]},
                "families": [{
                    "name": "cpu",
                    "metrics": [{"name": "cpu.total.usage_percent", "avg": 35.0, "series": [1.0, null]}]
                }],
                "hosts": {"web-1": {"samples": 10}},
                "highlights": ["No alert fired."],
                "incident": {"number": "INC1"},
            }),
            &["hosts"],
        )
    }

    #[test]
    fn the_issues_template_renders_against_the_example_but_not_past_this_check() {
        let (dir, config) = config();
        let source = "# {{title}}\n{{#if alerts.fired}}{{alerts.fired}} fired{{else}}No alert over the {{period.lable}}.{{/if}}\n";
        // The example has alerts, so its render never takes the `else`: the check of one
        // example render passed this template, and the report failed every quiet week.
        let path = dir.path().join("issue.md.hbs");
        std::fs::write(&path, source).unwrap();
        let example = crate::report::summary::example(&config);
        let limits = crate::template::bounds::Limits::report();
        assert!(crate::report::render::render(&path, &example, &config.zone, &limits).is_ok());

        let found = check_file(
            &path,
            &crate::report::summary::schema(&config),
            "the summary",
        );
        assert_eq!(found.len(), 1, "{found:?}");
        let p = &found[0];
        assert_eq!(p.template, path);
        assert_eq!(p.at, Some((2, 69)));
        assert_eq!(p.path, "period.lable");
        assert_eq!(
            p.message,
            "`period.lable` is not a field: `period` has no field `lable`"
        );
        assert_eq!(
            p.suggestion.as_deref(),
            Some("did you mean `period.label`?")
        );
        let problem = p.to_problem(
            "jobs.weekly.templates",
            "`runner report --summary` prints every field",
        );
        assert_eq!(
            problem.help.as_deref(),
            Some("did you mean `period.label`? `runner report --summary` prints every field")
        );
        assert_eq!((problem.line, problem.column), (2, 69));
    }

    /// 30 partials, each including the next twice: 90 tags the limits accept, 2^30 walks if
    /// each inclusion were walked. The check ends, and says the misspelt field once.
    #[test]
    fn partials_that_include_the_next_twice_are_walked_a_bounded_number_of_times() {
        let mut source = String::new();
        for i in 0..30 {
            source.push_str(&format!(
                "{{{{#*inline \"p{i}\"}}}}{{{{> p{next}}}}}{{{{> p{next}}}}}{{{{/inline}}}}",
                next = i + 1
            ));
        }
        source.push_str("{{#*inline \"p30\"}}{{titel}}{{/inline}}{{> p0}}");
        assert_eq!(places(&source, &data()), ["1:1401 titel"]);
    }

    #[test]
    fn a_misspelt_field_in_an_each_in_a_branch_no_example_takes_is_found() {
        let source = "{{#if alerts.fired}}\n{{else}}\n{{#each families}}\n  {{#each metrics}}{{nmae}}{{/each}}\n{{/each}}\n{{/if}}";
        assert_eq!(places(source, &data()), ["4:20 nmae"]);
        let p = &problems(source, &data())[0];
        assert_eq!(
            p.message,
            "`nmae` is not a field: an item of `metrics` has no field `nmae`"
        );
        assert_eq!(p.suggestion.as_deref(), Some("did you mean `name`?"));
    }

    #[test]
    fn both_branches_of_if_unless_and_else_if_chains_are_checked() {
        let source = "{{#if title}}{{titel}}{{else if alerts.fird}}{{a}}{{else if hosts}}{{b}}{{else}}{{c}}{{/if}}{{#unless title}}{{d}}{{else}}{{e}}{{/unless}}";
        let found: Vec<String> = problems(source, &data())
            .into_iter()
            .map(|p| p.path)
            .collect();
        assert_eq!(found, ["titel", "alerts.fird", "a", "b", "c", "d", "e"]);
        // `each` and `with` have an `else` too, outside their context.
        let source = "{{#each families}}{{name}}{{else}}{{name}}{{/each}}{{#with period}}{{label}}{{else}}{{label}}{{/with}}";
        assert_eq!(places(source, &data()), ["1:35 name", "1:85 label"]);
    }

    #[test]
    fn up_and_root_reach_the_enclosing_contexts() {
        let good = "{{#each families}}{{#each metrics}}{{name}} {{../name}} {{../../title}} {{@root.period.label}}{{#if avg}}{{../name}}{{/if}}{{/each}}{{/each}}{{#with period}}{{label}} {{../title}}{{/with}}";
        assert_eq!(places(good, &data()), Vec::<String>::new());
        let bad = "{{#each families}}{{#each metrics}}{{../avg}} {{../../titel}} {{@root.period.lable}} {{title}}{{/each}}{{/each}}";
        let found = problems(bad, &data());
        let said: Vec<(&str, Option<&str>)> = found
            .iter()
            .map(|p| (p.path.as_str(), p.suggestion.as_deref()))
            .collect();
        assert_eq!(
            said,
            [
                ("../avg", None),
                ("../../titel", Some("did you mean `../../title`?")),
                (
                    "@root.period.lable",
                    Some("did you mean `@root.period.label`?")
                ),
                (
                    "title",
                    Some("`title` is a field of the data: did you mean `@root.title`?")
                ),
            ]
        );
    }

    #[test]
    fn block_parameters_have_the_shape_of_what_they_name() {
        let good = "{{#each families as |family i|}}{{#each family.metrics as |m|}}{{family.name}} {{m.avg}} {{i}} {{@index}} {{@first}} {{@last}} {{m.series.0}}{{/each}}{{/each}}{{#with period as |p|}}{{p.days}}{{/with}}{{#each hosts as |h host|}}{{h.samples}} {{host}} {{@key}}{{/each}}{{#each highlights as |line|}}{{line}}{{/each}}";
        assert_eq!(places(good, &data()), Vec::<String>::new());
        let bad = "{{#each families as |family|}}{{#each family.metrics as |m|}}{{m.avgg}} {{family.nam}}{{/each}}{{/each}}{{#with period as |p|}}{{p.day}}{{/with}}{{#each hosts as |h|}}{{h.sample}}{{/each}}";
        let found: Vec<String> = problems(bad, &data()).into_iter().map(|p| p.path).collect();
        assert_eq!(found, ["m.avgg", "family.nam", "p.day", "h.sample"]);
    }

    #[test]
    fn helper_parameters_hashes_and_subexpressions_are_paths_too() {
        // A helper given a misspelt field renders `–` without an error: only this finds it.
        let source = "{{number alerts.fird digits=perod.days}}{{#if (eq (lookup hosts tittle) 1)}}x{{/if}}{{chart families.0.metrics.0.series unit=families.0.metrics.0.unt}}";
        let found: Vec<String> = problems(source, &data())
            .into_iter()
            .map(|p| p.path)
            .collect();
        assert_eq!(
            found,
            [
                "alerts.fird",
                "perod.days",
                "tittle",
                "families.0.metrics.0.unt"
            ]
        );
    }

    #[test]
    fn partials_are_checked_where_they_are_included() {
        let source = "{{#*inline \"rows\"}}{{#each rows}}{{name}} {{fird}}{{/each}} {{title}}{{/inline}}{{> rows rows=alerts.by_rule}}{{#each families}}{{> rows rows=metrics}}{{/each}}{{#> missing}}{{titl}}{{/missing}}";
        let found = places(source, &data());
        // `fird` once (an inline partial included twice says its problem once); `title` is
        // not a field of a family, where the second inclusion is.
        assert_eq!(found, ["1:43 fird", "1:61 title", "1:175 titl"]);
    }

    #[test]
    fn locals_exist_only_in_the_blocks_that_set_them() {
        let source = "{{@index}}{{#each families}}{{@index}}{{@key}}{{#with this}}{{@index}}{{/with}}{{/each}}{{#each hosts}}{{@key}}{{@level}}{{/each}}";
        assert_eq!(
            places(source, &data()),
            ["1:1 @index", "1:39 @key", "1:112 @level"]
        );
    }

    #[test]
    fn lists_scalars_and_maps_say_what_they_are() {
        let found = problems(
            "{{families.name}}{{families.length}}{{title.text}}{{hosts.any-host.samples}}{{hosts.web-1.sampels}}",
            &data(),
        );
        let said: Vec<(&str, &str, Option<&str>)> = found
            .iter()
            .map(|p| (p.path.as_str(), p.message.as_str(), p.suggestion.as_deref()))
            .collect();
        assert_eq!(
            said,
            [
                (
                    "families.name",
                    "`families.name` is not a field: `families` is a list, whose items are reached with `{{#each}}` or a number (`.0`)",
                    None
                ),
                (
                    "families.length",
                    "`families.length` is not a field: `families` is a list, whose items are reached with `{{#each}}` or a number (`.0`)",
                    Some("`{{len families}}` counts the items.")
                ),
                (
                    "title.text",
                    "`title.text` is not a field: `title` is text, without fields",
                    None
                ),
                (
                    "hosts.web-1.sampels",
                    "`hosts.web-1.sampels` is not a field: `hosts.web-1` has no field `sampels`",
                    Some("did you mean `hosts.web-1.samples`?")
                ),
            ]
        );
    }

    #[test]
    fn a_field_named_like_a_helper_needs_this() {
        let source = "{{number}}{{#with incident}}{{number}} {{this.number}}{{/with}}";
        let found = problems(source, &data());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].at, Some((1, 29)));
        assert_eq!(
            found[0].suggestion.as_deref(),
            Some("write `{{this.number}}` for the field.")
        );
    }

    #[test]
    fn a_correct_template_with_every_construct_passes() {
        let source = r#"{{#*inline "rule"}}{{name}}: {{fired}}{{/inline}}
# {{title}} over the {{period.label}} ({{number period.days digits=0}} days)
{{#if alerts.fired}}
{{#each alerts.by_rule as |rule|}}{{> rule}} {{rule.name}}{{#unless @last}}, {{/unless}}{{/each}}
{{else if highlights}}
{{#each highlights}}- {{this}}{{/each}}
{{else}}
None over the {{period.label}}.
{{/if}}
{{#each families}}
## {{name}}
{{#each metrics as |m i|}}{{i}}. {{m.name}} {{measure avg "percent"}} {{sparkline series}} {{../name}} {{@root.title}} {{#if (gt avg 10)}}{{../../period.label}}{{/if}}{{/each}}
{{/each}}
{{#with period}}{{label}} {{days}} {{@root.alerts.fired}}{{/with}}
{{#each hosts}}{{@key}}: {{samples}}{{/each}}
{{#with incident}}{{this.number}}{{/with}}
{{len families}} {{lookup hosts "web-1"}}
"#;
        assert_eq!(places(source, &data()), Vec::<String>::new());
    }

    #[test]
    fn every_shipped_template_passes() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let (_dir, config) = config();
        let summary = crate::report::summary::schema(&config);
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let found = if name.starts_with("slack") {
                crate::notify::slack::check_template_paths(&path)
            } else if name.starts_with("fleet") {
                check_file(
                    &path,
                    &crate::report::fleet::schema(&config),
                    "the fleet summary",
                )
            } else {
                check_file(&path, &summary, "the summary")
            };
            assert_eq!(found, Vec::new(), "{name}");
            checked += 1;
        }
        assert!(checked >= 3, "the shipped templates are there");
    }

    #[test]
    fn the_schema_of_an_example_merges_items_and_knows_maps() {
        let schema = Schema::from_example(
            &json!({
                "items": [{"a": 1}, {"b": "x", "c": null}],
                "labels": {"instance": "total"},
                "empty": {},
                "none": [],
            }),
            &["labels"],
        );
        let Schema::Object(fields) = &schema else {
            panic!("{schema:?}")
        };
        let Some(Schema::List(item)) = fields.get("items") else {
            panic!("{schema:?}")
        };
        let Schema::Object(item) = item.as_ref() else {
            panic!("{item:?}")
        };
        assert_eq!(item.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(
            fields.get("labels"),
            Some(&Schema::Map(Box::new(Schema::Scalar("text"))))
        );
        assert_eq!(
            fields.get("empty"),
            Some(&Schema::Map(Box::new(Schema::Any)))
        );
        assert_eq!(schema.unknown(), ["empty.*", "items[].c", "none[]"]);
    }
}
