//! Handlebars templates as ops write them: strict (a misspelt field is an error with its line
//! and column, not an empty string), and helpers for what templates show.

pub mod bounds;
pub mod paths;

use std::path::Path;

use handlebars::{
    Context, Handlebars, Helper, HelperResult, Output, RenderContext, RenderErrorReason,
    handlebars_helper,
};
use serde_json::Value;

use crate::scheduler::schedule::Zone;
use crate::vocab::size::format_size;
use crate::vocab::words::{format_for, format_value};

/// How a template's `{{value}}` output is escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// Plain text, Slack mrkdwn (use `{{mrkdwn x}}` where Slack needs it).
    None,
    Html,
    /// Markdown: what a value prints cannot break a table row or become markup.
    Markdown,
}

/// Text for Markdown's running text and table cells, shown as it is (issue 28 item 5): its
/// punctuation is backslash-escaped where it would matter, never turned into HTML entities
/// (which a code span would show as written). Always: `\`, `` ` ``, `*`, `[`, `]`, `<`, `>`,
/// `{`, `}`, `~` and `|` (a table cell's end, wherever the value lands). `_` unless between two
/// letters or digits (only there can it not be emphasis); `&` before what could be an entity;
/// and what starts a block only at the value's start, where a line or a list item's text
/// begins: `#`, `-`, `+`, `=`, the `.` or `)` after leading digits (and `#` after a space,
/// which would close a heading). `!` and `(` `)` need nothing once `[` and `]` are escaped.
/// Line breaks become spaces (a row is one line).
pub fn escape_markdown(text: &str) -> String {
    let chars: Vec<char> = text
        .chars()
        .map(|c| if matches!(c, '\n' | '\r') { ' ' } else { c })
        .collect();
    let lead = chars
        .iter()
        .position(|c| !matches!(c, ' ' | '\t'))
        .unwrap_or(chars.len());
    let digits_end = lead
        + chars[lead..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
    let mut out = String::with_capacity(text.len() + 8);
    for (i, &c) in chars.iter().enumerate() {
        let prev = i.checked_sub(1).map(|j| chars[j]);
        let next = chars.get(i + 1).copied();
        let escape = match c {
            '\\' | '`' | '*' | '[' | ']' | '<' | '>' | '{' | '}' | '~' | '|' => true,
            '_' => {
                !(prev.is_some_and(char::is_alphanumeric)
                    && next.is_some_and(char::is_alphanumeric))
            }
            '&' => next.is_some_and(|n| n.is_ascii_alphanumeric() || n == '#'),
            '#' => i == lead || prev.is_some_and(char::is_whitespace),
            '-' | '+' | '=' => i == lead,
            '.' | ')' => i == digits_end && digits_end > lead,
            _ => false,
        };
        if escape {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A Markdown code span showing `text` as it is: the fence is one backtick longer than the
/// longest run of backticks inside, with a space inside each end when the text starts or ends
/// with a backtick (or with spaces at both ends, which the span would strip). No escaping
/// works inside a code span, so there are no entities; only `|` is written `\|`, which a
/// table cell shows as `|` (without it the cell would end there). Line breaks become spaces.
pub fn code_span(text: &str) -> String {
    let text: String = text
        .chars()
        .map(|c| if matches!(c, '\n' | '\r') { ' ' } else { c })
        .collect();
    if text.is_empty() {
        return String::new();
    }
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    let pad = text.starts_with('`')
        || text.ends_with('`')
        || (text.starts_with(' ') && text.ends_with(' ') && !text.trim().is_empty());
    let pad = if pad { " " } else { "" };
    format!("{fence}{pad}{}{pad}{fence}", text.replace('|', "\\|"))
}

/// A helper's parameter as text: strings as they are, numbers and the rest as JSON writes
/// them, nothing for `null`.
fn text_of(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

handlebars_helper!(mrkdwn_helper: |text: str| escape_mrkdwn(text));
handlebars_helper!(value_helper: |v: f64| format_value(v));
handlebars_helper!(duration_helper: |secs: i64| format_for(secs));
handlebars_helper!(upper_helper: |text: str| text.to_uppercase());

/// A registry with the helpers every template may use; dates show in UTC.
pub fn registry(escape: Escape) -> Handlebars<'static> {
    registry_in(escape, Zone::utc())
}

/// A registry whose `date` helper shows times in `zone`.
pub fn registry_in(escape: Escape, zone: Zone) -> Handlebars<'static> {
    let mut hb = Handlebars::new();
    hb.set_strict_mode(true);
    match escape {
        Escape::None => hb.register_escape_fn(handlebars::no_escape),
        Escape::Markdown => hb.register_escape_fn(escape_markdown),
        Escape::Html => {}
    }
    // Ours: it stops at the render's limits, which handlebars' own `each` cannot.
    hb.register_helper("each", Box::new(bounds::BoundedEach));
    hb.register_helper("mrkdwn", Box::new(mrkdwn_helper));
    hb.register_helper("value", Box::new(value_helper));
    hb.register_helper("duration", Box::new(duration_helper));
    hb.register_helper("upper", Box::new(upper_helper));
    let html = escape == Escape::Html;
    register(&mut hb, "bytes", move |p, _| {
        Ok(number(p, 0)
            .map(|v| format_size(v.max(0.0) as u64))
            .unwrap_or_else(dash))
    });
    register(&mut hb, "percent", move |p, h| {
        let digits = digits(h).unwrap_or(1);
        Ok(number(p, 0)
            .map(|v| format!("{v:.digits$} %"))
            .unwrap_or_else(dash))
    });
    register(&mut hb, "number", move |p, h| {
        Ok(number(p, 0)
            .map(|v| match digits(h) {
                Some(d) => group_thousands(&format!("{v:.d$}")),
                None => group_thousands(&format_value(v)),
            })
            .unwrap_or_else(dash))
    });
    register(&mut hb, "duration", move |p, _| {
        Ok(number(p, 0)
            .map(|v| format_for(v as i64))
            .unwrap_or_else(dash))
    });
    register(&mut hb, "measure", move |p, _| {
        let unit = p.get(1).and_then(Value::as_str).unwrap_or("");
        Ok(number(p, 0).map(|v| measure(v, unit)).unwrap_or_else(dash))
    });
    register(&mut hb, "trend", move |p, _| Ok(trend(number(p, 0))));
    // What these print comes from the data, so each escapes it for where it lands.
    register(&mut hb, "code", move |p, _| {
        let text = text_of(p.first());
        Ok(match escape {
            Escape::Html => format!("<code>{}</code>", handlebars::html_escape(&text)),
            _ => code_span(&text),
        })
    });
    register(&mut hb, "md", move |p, _| {
        let text = escape_markdown(&text_of(p.first()));
        Ok(if html {
            handlebars::html_escape(&text)
        } else {
            text
        })
    });
    let date_zone = zone.clone();
    register(&mut hb, "date", move |p, h| {
        let Some(text) = p.first().and_then(Value::as_str) else {
            return Ok(dash());
        };
        let at = chrono::DateTime::parse_from_rfc3339(text)
            .map_err(|e| format!("`date` needs an RFC 3339 time, not `{text}`: {e}"))?;
        let format = h
            .get("format")
            .and_then(Value::as_str)
            .unwrap_or("%Y-%m-%d %H:%M");
        let zone = match h.get("tz").and_then(Value::as_str) {
            Some(name) => Zone::parse(name)?,
            None => date_zone.clone(),
        };
        Ok(zone.strftime(at.to_utc(), format))
    });
    register(&mut hb, "sparkline", move |p, h| {
        let series = series(p);
        Ok(if html {
            svg_chart(&series, width(h, 120), height(h, 24), false, "")
        } else {
            blocks(&series)
        })
    });
    register(&mut hb, "chart", move |p, h| {
        let series = series(p);
        let unit = h.get("unit").and_then(Value::as_str).unwrap_or("");
        Ok(if html {
            svg_chart(&series, width(h, 640), height(h, 120), true, unit)
        } else {
            blocks(&series)
        })
    });
    hb
}

/// Registers a helper from a function of its parameters and hash; its output is written as
/// it is (helpers produce numbers, words and SVG; `code` and `md` escape the text they are
/// given themselves).
fn register(
    hb: &mut Handlebars<'static>,
    name: &'static str,
    f: impl Fn(&[Value], &serde_json::Map<String, Value>) -> Result<String, String>
    + Send
    + Sync
    + 'static,
) {
    hb.register_helper(
        name,
        Box::new(
            move |h: &Helper<'_>,
                  _: &Handlebars<'_>,
                  _: &Context,
                  _: &mut RenderContext<'_, '_>,
                  out: &mut dyn Output|
                  -> HelperResult {
                let params: Vec<Value> = h.params().iter().map(|p| p.value().clone()).collect();
                let hash: serde_json::Map<String, Value> = h
                    .hash()
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.value().clone()))
                    .collect();
                let text = f(&params, &hash)
                    .map_err(|e| RenderErrorReason::Other(format!("{name}: {e}")))?;
                out.write(&text)?;
                Ok(())
            },
        ),
    );
}

fn dash() -> String {
    "–".to_string()
}

fn number(params: &[Value], i: usize) -> Option<f64> {
    params
        .get(i)
        .and_then(Value::as_f64)
        .filter(|v| v.is_finite())
}

fn digits(hash: &serde_json::Map<String, Value>) -> Option<usize> {
    hash.get("digits")
        .and_then(Value::as_u64)
        .map(|d| d.min(10) as usize)
}

fn width(hash: &serde_json::Map<String, Value>, default: u32) -> u32 {
    hash.get("width")
        .and_then(Value::as_u64)
        .map_or(default, |w| w.clamp(20, 4000) as u32)
}

fn height(hash: &serde_json::Map<String, Value>, default: u32) -> u32 {
    hash.get("height")
        .and_then(Value::as_u64)
        .map_or(default, |h| h.clamp(10, 2000) as u32)
}

/// `1234567.5` → `1,234,567.5`.
pub fn group_thousands(text: &str) -> String {
    let (sign, rest) = text.strip_prefix('-').map_or(("", text), |r| ("-", r));
    let (int, frac) = rest
        .split_once('.')
        .map_or((rest, None), |(i, f)| (i, Some(f)));
    if int.len() <= 3 || !int.bytes().all(|b| b.is_ascii_digit()) {
        return text.to_string();
    }
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

/// A value in the unit its metric's name gives.
pub fn measure(v: f64, unit: &str) -> String {
    match unit {
        "percent" => format!("{} %", format_value(v)),
        "bytes" => format_size(v.max(0.0) as u64),
        "bytes_per_sec" => format!("{}/s", format_size(v.max(0.0) as u64)),
        "per_sec" => format!("{}/s", group_thousands(&format_value(v))),
        "ms" => format!("{} ms", format_value(v)),
        "seconds" => format!("{} s", format_value(v)),
        "days" => format!("{} d", format_value(v)),
        "bool" => format!("{} % up", format_value(v * 100.0)),
        _ => group_thousands(&format_value(v)),
    }
}

/// `▲ 12 %`, `▼ 3.5 %`, `→ 0 %` (within ±1 %), or `–` without a previous value.
pub fn trend(change_percent: Option<f64>) -> String {
    match change_percent {
        None => dash(),
        Some(c) if c.abs() < 1.0 => "→ 0 %".to_string(),
        Some(c) if c > 0.0 => format!("▲ {} %", format_value(c.abs().min(9999.0))),
        Some(c) => format!("▼ {} %", format_value(c.abs())),
    }
}

fn series(params: &[Value]) -> Vec<Option<f64>> {
    match params.first() {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_f64().filter(|f| f.is_finite()))
            .collect(),
        _ => Vec::new(),
    }
}

/// `▁▂▃▅▇` blocks for text reports, at most 48 of them.
pub fn blocks(series: &[Option<f64>]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let points = downsample(series, 48);
    let values: Vec<f64> = points.iter().flatten().copied().collect();
    let (Some(min), Some(max)) = (
        values.iter().copied().reduce(f64::min),
        values.iter().copied().reduce(f64::max),
    ) else {
        return String::new();
    };
    points
        .iter()
        .map(|p| match p {
            None => ' ',
            Some(v) if max > min => BARS[(((v - min) / (max - min)) * 7.0).round() as usize],
            Some(_) => BARS[3],
        })
        .collect()
}

/// Means of equal slices, so a long series fits `max` points.
fn downsample(series: &[Option<f64>], max: usize) -> Vec<Option<f64>> {
    if series.len() <= max {
        return series.to_vec();
    }
    let chunk = series.len().div_ceil(max);
    series
        .chunks(chunk)
        .map(|c| {
            let values: Vec<f64> = c.iter().flatten().copied().collect();
            (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
        })
        .collect()
}

/// An inline SVG line chart; gaps where there were no samples. With `axes`, the lowest and
/// highest value are written at the left edge.
pub fn svg_chart(
    series: &[Option<f64>],
    width: u32,
    height: u32,
    axes: bool,
    unit: &str,
) -> String {
    let values: Vec<f64> = series.iter().flatten().copied().collect();
    let (Some(min), Some(max)) = (
        values.iter().copied().reduce(f64::min),
        values.iter().copied().reduce(f64::max),
    ) else {
        return format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"no data\"></svg>"
        );
    };
    let (w, h) = (f64::from(width), f64::from(height));
    let pad = if axes { 14.0 } else { 2.0 };
    let span = if max > min { max - min } else { 1.0 };
    let step = if series.len() > 1 {
        (w - 2.0) / (series.len() - 1) as f64
    } else {
        0.0
    };
    let mut paths = Vec::new();
    let mut current = String::new();
    for (i, point) in series.iter().enumerate() {
        match point {
            Some(v) => {
                let x = 1.0 + step * i as f64;
                let y = pad + (h - 2.0 * pad) * (1.0 - (v - min) / span);
                current.push_str(&format!(
                    "{}{x:.1},{y:.1}",
                    if current.is_empty() { "M" } else { " L" }
                ));
            }
            None if !current.is_empty() => paths.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    if !current.is_empty() {
        paths.push(current);
    }
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"from {} to {}\">",
        measure(min, unit),
        measure(max, unit)
    );
    if axes {
        svg.push_str(&format!(
            "<line x1=\"0\" y1=\"{pad}\" x2=\"{w}\" y2=\"{pad}\" stroke=\"#ddd\"/><line x1=\"0\" y1=\"{b}\" x2=\"{w}\" y2=\"{b}\" stroke=\"#ddd\"/>\
<text x=\"2\" y=\"{ty}\" font-size=\"10\" fill=\"#666\">{}</text><text x=\"2\" y=\"{by}\" font-size=\"10\" fill=\"#666\">{}</text>",
            measure(max, unit),
            measure(min, unit),
            b = h - pad,
            ty = pad - 3.0,
            by = h - 2.0,
        ));
    }
    for d in paths {
        // A lone point (one hour of data, or one between gaps) draws no line: a dot shows it.
        match d.strip_prefix('M').filter(|rest| !rest.contains(" L")) {
            Some(point) => {
                let (x, y) = point.split_once(',').unwrap_or((point, "0"));
                svg.push_str(&format!(
                    "<circle cx=\"{x}\" cy=\"{y}\" r=\"2\" fill=\"#2a6fdb\"/>"
                ));
            }
            None => svg.push_str(&format!(
                "<path d=\"{d}\" fill=\"none\" stroke=\"#2a6fdb\" stroke-width=\"1.5\"/>"
            )),
        }
    }
    svg.push_str("</svg>");
    svg
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
    pub fn to_problem(&self, field: &str, help: &str) -> crate::diagnostic::Problem {
        let problem = crate::diagnostic::Problem::error(&self.path, self.message.clone())
            .field(field)
            .help(help);
        match self.at {
            Some((line, column)) => problem.at(line as u64, column as u64, 1),
            None => problem,
        }
    }
}

/// Reads and registers the template at `path` under its path; the error says where. A
/// template that could take the process down is refused here: too big or nested too deep to
/// parse safely, or with partials that include themselves.
pub fn register_file(hb: &mut Handlebars<'static>, path: &Path) -> Result<String, TemplateProblem> {
    let name = path.display().to_string();
    let problem = |message: String, at| TemplateProblem {
        path: path.to_path_buf(),
        message,
        at,
    };
    let text = crate::diagnostic::read_text(path, "template").map_err(|p| {
        let at = (p.line > 0).then_some((p.line as usize, p.column as usize));
        problem(p.message, at)
    })?;
    bounds::check_source(&text).map_err(|p| problem(p.message, p.at))?;
    hb.register_template_string(&name, text)
        .map_err(|e| problem(syntax_words(&e.reason().to_string()), e.pos()))?;
    if let Err(p) = bounds::check_structure(hb) {
        hb.unregister_template(&name);
        return Err(problem(p.message, p.at));
    }
    Ok(name)
}

/// Renders the template registered as `name` (from `path`) within `limits`; a template error
/// or a limit reached is a problem naming the template.
pub fn render(
    hb: &Handlebars<'static>,
    name: &str,
    path: &Path,
    data: &impl serde::Serialize,
    limits: &bounds::Limits,
) -> Result<String, TemplateProblem> {
    bounds::render(hb, name, data, limits).map_err(|failure| match failure {
        bounds::RenderFailure::Exceeded(exceeded) => TemplateProblem {
            path: path.to_path_buf(),
            message: exceeded.to_string(),
            at: None,
        },
        bounds::RenderFailure::Template(e) => TemplateProblem {
            path: path.to_path_buf(),
            message: render_words(e.reason()),
            at: e.line_no.zip(e.column_no),
        },
    })
}

/// handlebars' render errors in a template author's words (its own print Rust's `Some("x")`).
fn render_words(reason: &RenderErrorReason) -> String {
    match reason {
        RenderErrorReason::MissingVariable(Some(path)) => {
            format!("`{path}` is not a field here (a misspelt name, or a field of another section)")
        }
        RenderErrorReason::MissingVariable(None) => "a field that is not here".to_string(),
        RenderErrorReason::TemplateError(e) => syntax_words(&e.reason().to_string()),
        RenderErrorReason::PartialNotFound(name) => {
            format!("there is no partial `{name}` (define it with `{{{{#*inline \"{name}\"}}}}`)")
        }
        // handlebars' own words here are misspelt ("cound").
        RenderErrorReason::PartialBlockNotFound => {
            "`{{> @partial-block}}` is used outside a partial block (`{{#> name}}…{{/name}}`)"
                .to_string()
        }
        other => other.to_string(),
    }
}

/// The parser lists every rule it expected; what it means for an author is shorter.
fn syntax_words(message: &str) -> String {
    match message.split_once(": expected ") {
        Some((head, list)) if list.contains(", ") => format!(
            "{head}: expected an expression (`{{{{name}}}}`), a block (`{{{{#if x}}}}...{{{{/if}}}}`) or a comment"
        ),
        _ => message.to_string(),
    }
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
    fn report_helpers_format_numbers_units_trends_and_charts() {
        let hb = registry_in(Escape::Html, Zone::parse("Europe/Berlin").unwrap());
        let data = serde_json::json!({
            "b": 1610612736u64, "p": 93.24, "n": 60480, "d": 3900, "t": "2026-11-30T08:00:00Z",
            "up": 0.5, "rise": 12.34, "fall": -3.5, "flat": 0.4, "none": null, "s": [1.0, null, 3.0, 2.0]
        });
        let out = hb
            .render_template(
                "{{bytes b}}|{{percent p}}|{{percent p digits=0}}|{{number n}}|{{number p digits=2}}|{{duration d}}|{{date t}}|{{date t format=\"%d.%m.%Y\" tz=\"UTC\"}}|{{measure up \"bool\"}}|{{measure b \"bytes_per_sec\"}}|{{trend rise}}|{{trend fall}}|{{trend flat}}|{{trend none}}|{{percent none}}",
                &data,
            )
            .unwrap();
        assert_eq!(
            out,
            "1.50 GiB|93.2 %|93 %|60,480|93.24|1h5m|2026-11-30 09:00|30.11.2026|50 % up|1.50 GiB/s|▲ 12.3 %|▼ 3.5 %|→ 0 %|–|–"
        );
        let svg = hb
            .render_template("{{chart s unit=\"ms\"}}", &data)
            .unwrap();
        assert!(
            svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"640\""),
            "{svg}"
        );
        assert_eq!(
            (svg.matches("<path").count(), svg.matches("<circle").count()),
            (1, 1),
            "a gap splits the line, and the lone point before it is a dot: {svg}"
        );
        let one = hb
            .render_template("{{chart one}}", &serde_json::json!({"one": [5.0]}))
            .unwrap();
        assert_eq!(
            one.matches("<circle").count(),
            1,
            "one hour draws a dot: {one}"
        );
        let grouped = hb
            .render_template(
                "{{number k}}|{{number m}}",
                &serde_json::json!({"k": 1234, "m": 999}),
            )
            .unwrap();
        assert_eq!(grouped, "1,234|999");
        assert!(
            svg.contains(">3 ms</text>") && svg.contains(">1 ms</text>"),
            "{svg}"
        );
        let text = registry(Escape::None)
            .render_template("{{sparkline s}}", &data)
            .unwrap();
        assert_eq!(text, "▁ █▅");
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

    /// Names and descriptions as data may hold them: every character Markdown could read as
    /// markup, at the start, inside and at the end.
    const HOSTILE: &[&str] = &[
        "custom.<b>x",
        "a`b",
        "`start",
        "end`",
        "``double`` and `single`",
        "*em*",
        "_em_",
        "__strong__",
        "cpu_high",
        "a_b_c",
        "x_ _y",
        "[link](http://x)",
        "![img](x)",
        "<http://x>",
        "<!-- c -->",
        "&lt;",
        "&amp;",
        "&#35;",
        "AT&T",
        "a|b",
        "a\\|b",
        "back\\slash",
        "trailing\\",
        "\\*",
        "# heading",
        "- item",
        "+ item",
        "1. one",
        "2) two",
        "---",
        "===",
        "> quote",
        "~~strike~~",
        "{braces}",
        "#tag",
        "a # b #",
        "line\nbreak",
        "**",
        "a * b",
        "tab\there",
    ];

    /// What CommonMark (with GitHub's tables and strikethrough) makes of `markdown`: the
    /// blocks and spans it starts, the text it shows, and its code spans.
    fn parsed(markdown: &str) -> (Vec<String>, String, Vec<String>) {
        use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};
        let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH;
        let (mut tags, mut text, mut codes) = (Vec::new(), String::new(), Vec::new());
        let mut in_head = false;
        for event in Parser::new_ext(markdown, options) {
            match event {
                Event::Start(Tag::TableHead) => in_head = true,
                Event::End(TagEnd::TableHead) => in_head = false,
                Event::Start(tag) => tags.push(format!("{tag:?}")),
                Event::Text(t) if !in_head => text.push_str(&t),
                Event::Code(c) => codes.push(c.to_string()),
                Event::Html(h) | Event::InlineHtml(h) => tags.push(format!("html {h}")),
                _ => {}
            }
        }
        (tags, text, codes)
    }

    #[test]
    fn markdown_shows_names_and_text_as_they_are_wherever_they_land() {
        for raw in HOSTILE {
            let shown = raw.replace('\n', " ");
            let text = escape_markdown(raw);
            let (tags, cell, codes) = parsed(&format!(
                "| name | text |\n| --- | --- |\n| {} | {text} |\n",
                code_span(raw)
            ));
            assert_eq!(
                codes,
                std::slice::from_ref(&shown),
                "{raw:?} as {}",
                code_span(raw)
            );
            assert_eq!(cell, shown, "{raw:?} as {text}");
            assert_eq!(
                tags.len(),
                6,
                "{raw:?}: a table, two head cells, a row and two cells: {tags:?}"
            );
            for (markdown, only) in [
                (format!("- {text}\n"), ["List(None)", "Item"].as_slice()),
                (format!("### {text}\n"), &["Heading"]),
                (format!("{text}\n"), &["Paragraph"]),
            ] {
                let (tags, shown_here, _) = parsed(&markdown);
                assert_eq!(shown_here, shown.trim(), "{markdown:?}");
                assert!(
                    tags.iter().all(|t| only.iter().any(|o| t.starts_with(o))),
                    "{markdown:?} makes {tags:?}"
                );
                assert_eq!(tags.len(), only.len(), "{markdown:?} makes {tags:?}");
            }
        }
    }

    #[test]
    fn a_code_span_fence_outgrows_the_backticks_inside() {
        assert_eq!(code_span("cpu.total"), "`cpu.total`");
        assert_eq!(code_span("a`b"), "``a`b``");
        assert_eq!(code_span("``x`"), "``` ``x` ```");
        assert_eq!(code_span("custom.<b>x"), "`custom.<b>x`", "no entities");
        assert_eq!(code_span("a|b"), "`a\\|b`");
        assert_eq!(code_span(""), "");
    }

    #[test]
    fn code_and_md_helpers_escape_for_the_template_they_are_in() {
        let data = serde_json::json!({"n": "a<b>`c", "d": "*em* & <i>"});
        let render =
            |escape, template: &str| registry(escape).render_template(template, &data).unwrap();
        assert_eq!(render(Escape::Markdown, "{{code n}}"), "``a<b>`c``");
        assert_eq!(
            render(Escape::Html, "{{code n}}"),
            "<code>a&lt;b&gt;&#x60;c</code>"
        );
        assert_eq!(render(Escape::Markdown, "{{d}}"), "\\*em\\* & \\<i\\>");
        assert_eq!(render(Escape::None, "{{md d}}"), "\\*em\\* & \\<i\\>");
        assert_eq!(
            render(Escape::Html, "{{md d}}"),
            "\\*em\\* &amp; \\&lt;i\\&gt;"
        );
    }

    #[test]
    fn a_partial_block_used_outside_one_is_said_in_plain_words() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.hbs");
        std::fs::write(&path, "a{{> @partial-block}}b").unwrap();
        let mut hb = registry(Escape::None);
        let name = register_file(&mut hb, &path).unwrap();
        let problem = render(
            &hb,
            &name,
            &path,
            &serde_json::json!({}),
            &bounds::Limits::message(),
        )
        .unwrap_err();
        assert!(
            problem.message.contains("outside a partial block"),
            "{problem}"
        );
        assert!(!problem.message.contains("cound"), "{problem}");
    }
}
