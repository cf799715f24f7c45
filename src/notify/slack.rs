//! The Slack notifier: an incoming webhook, Block Kit messages with a plain-text fallback.
//! One alert: a header `[SEVERITY] summary`, the explanation, value, threshold, host and since
//! when, and a context line (time in UTC, job, rule file). Several alerts within `group_wait`:
//! one message listing them. Block Kit's limits are kept by cutting visibly.

use std::path::Path;

use handlebars::Handlebars;
use serde_json::{Value, json};
use tracing::warn;

use super::destination::{DeliverFuture, Delivery, Destination, Rendered, classify, truncate};
use super::notice::ReportNotice;
use crate::alerts::event::{AlertEvent, EventKind};
use crate::config::{DeliverySpec, Secret};
use crate::http::redact_url;
use crate::template::bounds::Limits;
use crate::template::{Escape, escape_mrkdwn, register_file, registry};
use crate::vocab::Severity;
use crate::vocab::words::{format_for, format_value};

pub const MAX_BLOCKS: usize = 50;
pub const MAX_SECTION_CHARS: usize = 3000;
pub const MAX_FIELD_CHARS: usize = 2000;
pub const MAX_HEADER_CHARS: usize = 150;
pub const MAX_TEXT_CHARS: usize = 40_000;
/// Alerts per message: a header and two blocks each stay well under 50 blocks.
pub const MAX_GROUP: usize = 20;

pub struct Slack {
    name: String,
    url: Secret,
    http: reqwest::Client,
    /// A user's template and its name in the registry, if configured and valid.
    template: Option<(Handlebars<'static>, String)>,
}

impl Slack {
    /// A template that does not load is reported, and the built-in message is used instead:
    /// alerts still go out.
    pub fn new(
        name: &str,
        url: &Secret,
        template: Option<&Path>,
        delivery: &DeliverySpec,
    ) -> Result<Slack, String> {
        crate::http::request_url(url.expose())?;
        let http = crate::http::client(delivery.timeout)?;
        let template = template.and_then(|path| match load_template(path) {
            Ok(loaded) => Some(loaded),
            Err(e) => {
                warn!(
                    notifier = name,
                    "Slack template left out, the built-in message is used: {e}"
                );
                None
            }
        });
        Ok(Slack {
            name: name.to_string(),
            url: Secret::new(url.expose().to_string()),
            http,
            template,
        })
    }

    /// The JSON body for `events`.
    pub fn payload(&self, events: &[AlertEvent]) -> Value {
        if let Some((hb, name)) = &self.template {
            match render_template(hb, name, events) {
                Ok(payload) => return payload,
                Err(e) => {
                    warn!(notifier = %self.name, "Slack template failed, the built-in message is used: {e}")
                }
            }
        }
        message(events)
    }
}

/// Loads a Slack template.
pub fn load_template(
    path: &Path,
) -> Result<(Handlebars<'static>, String), crate::template::TemplateProblem> {
    let mut hb = registry(Escape::None);
    let name = register_file(&mut hb, path)?;
    Ok((hb, name))
}

/// Loads a Slack template and renders it against example alerts (a firing one and a resolved
/// one), as `runner check` does: a template that would fail at every alert fails here.
pub fn check_template(path: &Path) -> Result<(), crate::template::TemplateProblem> {
    let (hb, name) = load_template(path)?;
    crate::template::render(&hb, &name, path, &example_data(), &Limits::message())?;
    Ok(())
}

/// Fields of a template's data that are maps keyed by data, as `paths::Schema::from_example`
/// writes them: an alert's labels.
pub const MAP_FIELDS: &[&str] = &["events.labels"];

/// Every path of a Slack template checked against what a message's data holds, in the
/// branches example alerts do not reach too.
pub fn check_template_paths(path: &Path) -> Vec<crate::template::paths::PathProblem> {
    let schema = crate::template::paths::Schema::from_example(&example_data(), MAP_FIELDS);
    crate::template::paths::check_file(path, &schema, "a message's data")
}

/// What a template sees for example alerts, a firing one and a resolved one, with every field
/// filled (labels, incident, notify): the render reaches `{{#if incident}}`, and the schema
/// knows the fields of what real alerts may leave out.
fn example_data() -> Value {
    let at = chrono::Utc::now();
    let events: Vec<AlertEvent> = [EventKind::Firing, EventKind::Resolved]
        .into_iter()
        .map(|kind| {
            let mut e = AlertEvent::example("cpu_high", kind, Severity::Critical, at);
            e.labels.insert("instance".into(), "total".into());
            e.fingerprint = crate::alerts::event::fingerprint(&e.host, &e.name, &e.labels);
            e.description = "Sustained CPU load above the weekly pattern".into();
            e.incident = Some(crate::alerts::event::Incident {
                number: "INC0010001".into(),
                sys_id: "6816f79cc0a8016401c5a33be04be441".into(),
            });
            e.notify = Some(vec!["slack".into()]);
            e
        })
        .collect();
    template_data(&events)
}

/// What a template sees.
fn template_data(events: &[AlertEvent]) -> Value {
    json!({
        "events": events,
        "count": events.len(),
        "firing": count(events, |k| matches!(k, EventKind::Firing | EventKind::Repeat)),
        "resolved": count(events, |k| k == EventKind::Resolved),
        "flapping": count(events, |k| k == EventKind::Flapping),
        "severity": top_severity(events).as_str(),
    })
}

/// Renders a user's template: a JSON object is the whole payload, anything else the text.
pub fn render_template(
    hb: &Handlebars<'static>,
    name: &str,
    events: &[AlertEvent],
) -> Result<Value, String> {
    let out = crate::template::render(
        hb,
        name,
        Path::new(name),
        &template_data(events),
        &Limits::message(),
    )
    .map_err(|problem| problem.to_string())?;
    let trimmed = out.trim();
    if trimmed.starts_with('{')
        && let Ok(Value::Object(map)) = serde_json::from_str::<Value>(trimmed)
    {
        return Ok(Value::Object(map));
    }
    Ok(json!({ "text": truncate(trimmed, MAX_TEXT_CHARS) }))
}

fn count(events: &[AlertEvent], f: impl Fn(EventKind) -> bool) -> usize {
    events.iter().filter(|e| f(e.kind)).count()
}

fn top_severity(events: &[AlertEvent]) -> Severity {
    events
        .iter()
        .map(|e| e.severity)
        .max()
        .unwrap_or(Severity::Info)
}

fn emoji(event: &AlertEvent) -> &'static str {
    match (event.kind, event.severity) {
        (EventKind::Resolved, _) => ":white_check_mark:",
        (EventKind::Flapping, _) => ":twisted_rightwards_arrows:",
        (_, Severity::Critical) => ":rotating_light:",
        (_, Severity::Warning) => ":warning:",
        (_, Severity::Info) => ":information_source:",
    }
}

/// `[CRITICAL] summary`, `[RESOLVED] summary`, `[FLAPPING] summary`, `[ACTION FAILED] summary`.
pub fn title(event: &AlertEvent) -> String {
    match event.kind {
        EventKind::Firing => format!(
            "[{}] {}",
            event.severity.as_str().to_uppercase(),
            event.summary
        ),
        EventKind::Repeat => format!(
            "[{}] {} (still firing)",
            event.severity.as_str().to_uppercase(),
            event.summary
        ),
        EventKind::Resolved => format!("[RESOLVED] {}", event.summary),
        EventKind::Flapping => format!("[FLAPPING] {}", event.summary),
        EventKind::ActionFailed => format!("[ACTION FAILED] {}", event.summary),
    }
}

fn since(event: &AlertEvent) -> String {
    format!(
        "{} ({} {})",
        event.active_since.format("%Y-%m-%d %H:%M UTC"),
        if event.kind == EventKind::Resolved {
            "lasted"
        } else {
            "for"
        },
        format_for((event.at - event.active_since).num_seconds())
    )
}

fn context_line(event: &AlertEvent) -> String {
    format!(
        "{} UTC · job `{}` · `{}` · host `{}` · `{}`",
        event.at.format("%Y-%m-%d %H:%M:%S"),
        escape_mrkdwn(&event.job),
        escape_mrkdwn(&event.rule_file),
        escape_mrkdwn(&event.host),
        event.short_fingerprint()
    )
}

fn explanation_text(event: &AlertEvent) -> String {
    let mut text = escape_mrkdwn(&event.explanation);
    if !event.description.is_empty() {
        text.push('\n');
        text.push_str(&escape_mrkdwn(&event.description));
    }
    text
}

fn field(label: &str, value: &str) -> Value {
    json!({ "type": "mrkdwn", "text": truncate(&format!("*{label}*\n{value}"), MAX_FIELD_CHARS) })
}

fn section(text: &str) -> Value {
    json!({ "type": "section", "text": { "type": "mrkdwn", "text": truncate(text, MAX_SECTION_CHARS) } })
}

fn context(text: &str) -> Value {
    json!({ "type": "context", "elements": [ { "type": "mrkdwn", "text": truncate(text, MAX_SECTION_CHARS) } ] })
}

fn header(text: &str) -> Value {
    json!({ "type": "header", "text": { "type": "plain_text", "text": truncate(text, MAX_HEADER_CHARS), "emoji": true } })
}

/// The built-in message for one event or a group.
pub fn message(events: &[AlertEvent]) -> Value {
    match events {
        [] => json!({ "text": "" }),
        [event] => single(event),
        _ => group(events),
    }
}

fn single(event: &AlertEvent) -> Value {
    let mut fields = Vec::new();
    if let Some(v) = event.value {
        fields.push(field("Value", &format_value(v)));
    }
    if let Some(t) = event.threshold {
        fields.push(field("Threshold", &format_value(t)));
    }
    fields.push(field("Host", &escape_mrkdwn(&event.host)));
    fields.push(field("Since", &since(event)));
    if let Some(incident) = &event.incident {
        fields.push(field("Incident", &escape_mrkdwn(&incident.number)));
    }
    let mut body = section(&explanation_text(event));
    body["fields"] = Value::Array(fields);
    let title = title(event);
    json!({
        "text": truncate(&format!("{title}: {}", event.explanation), MAX_TEXT_CHARS),
        "blocks": [
            header(&format!("{} {title}", emoji(event))),
            body,
            context(&context_line(event)),
        ],
    })
}

fn group(events: &[AlertEvent]) -> Value {
    let firing = count(events, |k| {
        matches!(k, EventKind::Firing | EventKind::Repeat)
    });
    let resolved = count(events, |k| k == EventKind::Resolved);
    let flapping = count(events, |k| k == EventKind::Flapping);
    let mut parts = Vec::new();
    for (n, what) in [
        (firing, "firing"),
        (resolved, "resolved"),
        (flapping, "flapping"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    let severity = top_severity(events).as_str().to_uppercase();
    let headline = format!("[{severity}] {} alerts: {}", events.len(), parts.join(", "));
    let top_emoji = if firing > 0 {
        events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Firing | EventKind::Repeat))
            .max_by_key(|e| e.severity)
            .map(emoji)
            .unwrap_or(":warning:")
    } else if flapping > 0 {
        ":twisted_rightwards_arrows:"
    } else {
        ":white_check_mark:"
    };
    let mut blocks = vec![header(&format!("{top_emoji} {headline}"))];
    let mut text = headline.clone();
    let room = (MAX_BLOCKS - 2) / 2;
    for event in events.iter().take(room) {
        let mut line = format!(
            "{} *{}*\n{}",
            emoji(event),
            escape_mrkdwn(&title(event)),
            explanation_text(event)
        );
        if let Some(incident) = &event.incident {
            line.push_str(&format!("\nIncident {}", escape_mrkdwn(&incident.number)));
        }
        blocks.push(section(&line));
        blocks.push(context(&context_line(event)));
    }
    for event in events {
        text.push('\n');
        text.push_str(&format!("{}: {}", title(event), event.explanation));
    }
    if events.len() > room {
        blocks.push(context(&format!(
            "…and {} more not shown here: see runner's alert log",
            events.len() - room
        )));
    }
    json!({ "text": truncate(&text, MAX_TEXT_CHARS), "blocks": blocks })
}

/// The message a report makes: its headline, highlights and where the files are.
pub fn report_message(notice: &ReportNotice) -> Value {
    let headline = notice.headline();
    let bullets: String = notice
        .highlights
        .iter()
        .map(|h| format!("• {}\n", escape_mrkdwn(h)))
        .collect();
    let files: Vec<String> = notice
        .files
        .iter()
        .map(|f| format!("`{}`", escape_mrkdwn(&f.display().to_string())))
        .collect();
    let mut text = format!("{headline}\n");
    for h in &notice.highlights {
        text.push_str(&format!("• {h}\n"));
    }
    json!({
        "text": truncate(text.trim_end(), MAX_TEXT_CHARS),
        "blocks": [
            header(&format!(":bar_chart: {headline}")),
            section(if bullets.is_empty() { "Nothing stood out." } else { bullets.trim_end() }),
            context(&format!("job `{}` · {}", escape_mrkdwn(&notice.job), if files.is_empty() { "no file written".to_string() } else { files.join(" · ") })),
        ],
    })
}

/// The words of a payload: its text and every block's text, for people and `runner test`.
pub fn payload_text(payload: &Value) -> String {
    let mut out = Vec::new();
    if let Some(text) = payload.get("text").and_then(Value::as_str) {
        out.push(text.to_string());
    }
    fn walk(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(text)) = map.get("text") {
                    out.push(text.clone());
                }
                for (key, v) in map {
                    if key != "text" || !v.is_string() {
                        walk(v, out);
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    if let Some(blocks) = payload.get("blocks") {
        walk(blocks, &mut out);
    }
    out.join("\n")
}

impl Destination for Slack {
    fn name(&self) -> &str {
        &self.name
    }

    fn secrets(&self) -> Vec<String> {
        crate::http::url_secrets(self.url.expose())
    }

    fn max_group(&self) -> usize {
        MAX_GROUP
    }

    fn render(&self, events: &[AlertEvent]) -> Vec<Rendered> {
        let payload = self.payload(events);
        vec![Rendered {
            method: "POST",
            url: redact_url(self.url.expose()),
            body: serde_json::to_string_pretty(&payload).unwrap_or_default(),
            text: payload_text(&payload),
        }]
    }

    fn takes_reports(&self) -> bool {
        true
    }

    fn render_report(&self, notice: &ReportNotice) -> Vec<Rendered> {
        let payload = report_message(notice);
        vec![Rendered {
            method: "POST",
            url: redact_url(self.url.expose()),
            body: serde_json::to_string_pretty(&payload).unwrap_or_default(),
            text: payload_text(&payload),
        }]
    }

    fn deliver_report<'a>(&'a self, notice: &'a ReportNotice) -> DeliverFuture<'a> {
        Box::pin(async move { self.post(&report_message(notice)).await })
    }

    fn deliver<'a>(&'a self, events: &'a [AlertEvent]) -> DeliverFuture<'a> {
        Box::pin(async move { self.post(&self.payload(events)).await })
    }
}

impl Slack {
    async fn post(&self, payload: &Value) -> Delivery {
        let body = serde_json::to_vec(payload).unwrap_or_default();
        let result = self
            .http
            .post(self.url.expose())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        match classify(result).await {
            Delivery::Refused { reason } => Delivery::Refused {
                reason: format!(
                    "{reason}: Slack refused the message; fix the webhook (revoked, channel archived, or invalid payload)"
                ),
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::event::Incident;

    fn event(kind: EventKind, severity: Severity, summary: &str) -> AlertEvent {
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-28T09:26:00Z")
            .unwrap()
            .to_utc();
        let mut e = AlertEvent::example("cpu_high", kind, severity, at);
        e.fingerprint = "0123456789abcdef0123".into();
        e.summary = summary.into();
        e.description = "CPU <busy> & hot".into();
        e
    }

    /// A chain of `{{else if}}` nests one block a link: a long one overflowed the stack when
    /// rendered, at every alert and again at every start (the queued notice rendered again).
    /// It is refused when loaded, and alerts go out with the built-in message.
    #[test]
    fn a_template_too_deep_to_render_is_refused_and_the_built_in_message_goes_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deep.hbs");
        let mut text = String::from("{{#if firing}}x");
        for i in 0..1000 {
            text.push_str(&format!("{{{{else if events.{i}.name}}}}y"));
        }
        std::fs::write(&path, text + "{{/if}}").unwrap();
        let problem = check_template(&path).unwrap_err();
        assert!(problem.message.contains("nest more than"), "{problem}");
        let delivery = DeliverySpec {
            timeout: std::time::Duration::from_secs(1),
            retry_initial: std::time::Duration::from_secs(1),
            retry_max: std::time::Duration::from_secs(1),
            max_per_second: None,
            burst: 1,
            group_wait: std::time::Duration::ZERO,
            give_up_after: std::time::Duration::from_secs(86400),
        };
        let url = Secret::new("http://127.0.0.1:9/hook".to_string());
        let slack = Slack::new("team", &url, Some(&path), &delivery).unwrap();
        let events = [event(EventKind::Firing, Severity::Critical, "CPU high")];
        assert_eq!(slack.payload(&events), message(&events));
    }

    #[test]
    fn the_template_check_example_fills_every_field() {
        // A template's paths are checked against what the example alerts have: a field they
        // left out (an incident, labels) would be unknown to the check.
        let schema = crate::template::paths::Schema::from_example(&example_data(), MAP_FIELDS);
        assert_eq!(schema.unknown(), Vec::<String>::new());
    }

    #[test]
    fn one_firing_alert_has_header_facts_and_context() {
        let mut e = event(EventKind::Firing, Severity::Critical, "CPU high on web-1");
        e.incident = Some(Incident {
            number: "INC0010001".into(),
            sys_id: "x".into(),
        });
        let p = message(&[e]);
        assert_eq!(
            p["text"],
            "[CRITICAL] CPU high on web-1: cpu.total.usage_percent 93.2 > 85 for 12m"
        );
        assert_eq!(p["blocks"][0]["type"], "header");
        assert_eq!(
            p["blocks"][0]["text"]["text"],
            ":rotating_light: [CRITICAL] CPU high on web-1"
        );
        let section = &p["blocks"][1];
        assert_eq!(
            section["text"]["text"],
            "cpu.total.usage_percent 93.2 &gt; 85 for 12m\nCPU &lt;busy&gt; &amp; hot"
        );
        let fields: Vec<&str> = section["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["text"].as_str().unwrap())
            .collect();
        assert_eq!(
            fields,
            [
                "*Value*\n93.2",
                "*Threshold*\n85",
                "*Host*\nweb-1",
                "*Since*\n2026-11-28 09:14 UTC (for 12m)",
                "*Incident*\nINC0010001"
            ]
        );
        assert_eq!(
            p["blocks"][2]["elements"][0]["text"],
            "2026-11-28 09:26:00 UTC · job `monitor` · `rules/cpu.rhai` · host `web-1` · `0123456789abcdef`"
        );
    }

    #[test]
    fn resolved_and_flapping_look_different() {
        let r = message(&[event(EventKind::Resolved, Severity::Critical, "CPU high")]);
        assert_eq!(
            r["blocks"][0]["text"]["text"],
            ":white_check_mark: [RESOLVED] CPU high"
        );
        assert!(r["blocks"][1]["fields"].to_string().contains("lasted 12m"));
        let f = message(&[event(EventKind::Flapping, Severity::Warning, "CPU high")]);
        assert_eq!(
            f["blocks"][0]["text"]["text"],
            ":twisted_rightwards_arrows: [FLAPPING] CPU high"
        );
        let a = message(&[event(
            EventKind::ActionFailed,
            Severity::Warning,
            "CPU high",
        )]);
        assert_eq!(
            a["blocks"][0]["text"]["text"],
            ":warning: [ACTION FAILED] CPU high"
        );
    }

    #[test]
    fn limits_are_kept_visibly() {
        let long = "x".repeat(5000);
        let mut e = event(EventKind::Firing, Severity::Warning, &long);
        e.explanation = long.clone();
        let p = message(&[e]);
        let header = p["blocks"][0]["text"]["text"].as_str().unwrap();
        assert_eq!(header.chars().count(), MAX_HEADER_CHARS);
        assert!(header.ends_with('…'));
        let section = p["blocks"][1]["text"]["text"].as_str().unwrap();
        assert_eq!(section.chars().count(), MAX_SECTION_CHARS);

        let many: Vec<AlertEvent> = (0..30)
            .map(|i| event(EventKind::Firing, Severity::Warning, &format!("alert {i}")))
            .collect();
        let p = message(&many);
        let blocks = p["blocks"].as_array().unwrap();
        assert!(blocks.len() <= MAX_BLOCKS, "{}", blocks.len());
        assert!(
            blocks
                .last()
                .unwrap()
                .to_string()
                .contains("and 6 more not shown")
        );
        assert_eq!(
            p["blocks"][0]["text"]["text"],
            ":warning: [WARNING] 30 alerts: 30 firing"
        );
        assert!(
            p["text"].as_str().unwrap().contains("alert 29"),
            "the fallback text lists them all"
        );
    }

    #[test]
    fn a_group_counts_each_kind() {
        let events = [
            event(EventKind::Firing, Severity::Warning, "a"),
            event(EventKind::Resolved, Severity::Critical, "b"),
            event(EventKind::Firing, Severity::Critical, "c"),
        ];
        let p = message(&events);
        assert_eq!(
            p["blocks"][0]["text"]["text"],
            ":rotating_light: [CRITICAL] 3 alerts: 2 firing, 1 resolved"
        );
        assert_eq!(p["blocks"].as_array().unwrap().len(), 7);
    }

    #[test]
    fn the_shipped_template_renders_firing_and_resolved() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/slack.hbs");
        let (hb, name) = load_template(&path).unwrap();
        let mut firing = event(EventKind::Firing, Severity::Critical, "CPU <high>");
        firing.incident = Some(Incident {
            number: "INC0010001".into(),
            sys_id: "x".into(),
        });
        let resolved = event(EventKind::Resolved, Severity::Critical, "disk full");
        let out = render_template(&hb, &name, &[firing, resolved]).unwrap();
        assert_eq!(
            out["text"],
            ":rotating_light: *[CRITICAL] CPU &lt;high&gt;* on `web-1`\n> cpu.total.usage_percent 93.2 &gt; 85 for 12m · INC0010001\n:white_check_mark: *[CRITICAL] disk full* on `web-1`\n> cpu.total.usage_percent 93.2 &gt; 85 for 12m"
        );
    }

    #[test]
    fn a_template_makes_the_text_or_the_whole_payload() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("text.hbs");
        std::fs::write(
            &text,
            "{{#each events}}{{upper severity}}: {{mrkdwn summary}} ({{value value}}){{/each}}",
        )
        .unwrap();
        let (hb, name) = load_template(&text).unwrap();
        let e = event(EventKind::Firing, Severity::Warning, "disk <full>");
        assert_eq!(
            render_template(&hb, &name, std::slice::from_ref(&e)).unwrap(),
            json!({"text": "WARNING: disk &lt;full&gt; (93.2)"})
        );
        let whole = dir.path().join("whole.hbs");
        std::fs::write(
            &whole,
            "{\"text\": \"{{count}} alerts\", \"unfurl_links\": false}",
        )
        .unwrap();
        let (hb, name) = load_template(&whole).unwrap();
        assert_eq!(
            render_template(&hb, &name, &[e]).unwrap(),
            json!({"text": "1 alerts", "unfurl_links": false})
        );
        let bad = dir.path().join("bad.hbs");
        std::fs::write(&bad, "{{#each events}}").unwrap();
        let err = load_template(&bad).unwrap_err();
        assert_eq!(err.path, bad);
        assert!(err.at.is_some(), "{err}");
    }
}
