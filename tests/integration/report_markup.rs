//! The shipped report templates as a reader sees them: the Markdown one read by a CommonMark
//! parser shows names and descriptions as they are; the HTML one aligns text left and figures
//! right, on one line; and highlights, the alerts table and "still firing" give each alert one
//! severity, with alerts still firing highlighted even when the window has no samples
//! (issue 28 items 4, 5 and 6).

use std::time::Duration;

use chrono::{DateTime, Utc};
use runner::alerts::event::{AlertEvent, EventKind};
use runner::config::Config;
use runner::report::summary::{self, Summary};
use runner::store::sample::Sample;
use runner::template::bounds::Limits;
use runner::vocab::{MetricName, Severity};

use crate::support::{jobs_file, root};

const END: &str = "2026-11-30T08:00:00Z";

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

fn config(dir: &std::path::Path, jobs: &str) -> Config {
    let file = jobs_file(dir, jobs);
    Config::load(&file).unwrap_or_else(|p| panic!("{}", p.render()))
}

fn render(template: &str, summary: &Summary, config: &Config) -> String {
    runner::report::render::render(
        &root().join(template),
        summary,
        &config.zone,
        &Limits::report(),
    )
    .unwrap_or_else(|p| panic!("{p}"))
    .text
}

/// The Markdown as GitHub shows it (CommonMark with tables), in HTML.
fn commonmark(markdown: &str) -> String {
    let options =
        pulldown_cmark::Options::ENABLE_TABLES | pulldown_cmark::Options::ENABLE_STRIKETHROUGH;
    let mut html = String::new();
    pulldown_cmark::html::push_html(
        &mut html,
        pulldown_cmark::Parser::new_ext(markdown, options),
    );
    html
}

const REPORT_JOB: &str = "jobs:\n  weekly: { type: report, schedule: \"0 8 * * Mon\" }\n  monitor: { type: monitor, schedule: \"@every 1m\", probes: [{ type: cpu }] }\n";

#[test]
fn the_markdown_report_shows_names_and_descriptions_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), REPORT_JOB);
    let mut s = summary::example(&config);
    s.families[0].metrics[0].name = "custom.<b>x".into();
    let mut odd = s.families[0].metrics[0].clone();
    odd.name = "custom.a`b|c".into();
    s.families[0].metrics.push(odd);
    s.incidents.open[0].short_description = "*em* and _em_ <i>x</i> [link](http://x)".into();
    s.alerts.still_firing[0].name = "**cpu** # high".into();
    let md = render("templates/weekly.md.hbs", &s, &config);
    let html = commonmark(&md);
    assert!(
        html.contains("<code>custom.&lt;b&gt;x</code>"),
        "{md}\n{html}"
    );
    assert!(html.contains("<code>custom.a`b|c</code>"), "{md}\n{html}");
    assert!(
        html.contains("*em* and _em_ &lt;i&gt;x&lt;/i&gt; [link](http://x)"),
        "{md}\n{html}"
    );
    assert!(html.contains("<li>**cpu** # high on web-1"), "{md}\n{html}");
    for markup in ["<em>", "<b>", "<i>", "<a ", "&amp;lt;"] {
        assert!(!html.contains(markup), "{markup} in {html}");
    }
    assert_eq!(
        html.matches("<strong>").count(),
        1,
        "the host's own: {html}"
    );
    // Both metric rows keep their nine cells: a `|` or a backtick in a name ends none.
    for name in ["custom.&lt;b&gt;x", "custom.a`b|c"] {
        let row = html
            .split("<tr>")
            .find(|row| row.contains(&format!("<code>{name}</code>")))
            .unwrap_or_else(|| panic!("{html}"));
        assert_eq!(row.matches("<td").count(), 9, "{row}");
    }
}

/// The cells of each row of each table: (header, class, text without tags).
fn tables(html: &str) -> Vec<Vec<Vec<(bool, String, String)>>> {
    let cell = regex::Regex::new(r#"<(t[hd])(?: class="([^"]*)")?>(.*?)</t[hd]>"#).unwrap();
    let tag = regex::Regex::new(r"<[^>]*>").unwrap();
    html.split("<table>")
        .skip(1)
        .map(|table| {
            let table = table.split("</table>").next().unwrap();
            table
                .split("<tr>")
                .skip(1)
                .map(|row| {
                    cell.captures_iter(row)
                        .map(|c| {
                            let content = &c[3];
                            let text = if content.contains("<svg") {
                                "(chart)".to_string()
                            } else {
                                tag.replace_all(content, "").trim().to_string()
                            };
                            (
                                &c[1] == "th",
                                c.get(2).map_or("", |m| m.as_str()).to_string(),
                                text,
                            )
                        })
                        .collect()
                })
                .collect()
        })
        .collect()
}

#[test]
fn the_html_report_aligns_text_left_and_figures_right_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), REPORT_JOB);
    let mut s = summary::example(&config);
    let mut up = s.families[0].metrics[0].clone();
    up.name = "tcp.db.up".into();
    up.unit = "bool".into();
    (up.min, up.avg, up.p50, up.p95, up.max, up.last) = (1.0, 1.0, Some(1.0), Some(1.0), 1.0, 1.0);
    s.families[0].metrics.push(up);
    let html = render("templates/weekly.html.hbs", &s, &config);
    let style = html
        .split("<style>")
        .nth(1)
        .and_then(|rest| rest.split("</style>").next())
        .unwrap();
    let rule = |selector: &str| {
        style
            .lines()
            .find(|l| l.starts_with(selector))
            .unwrap_or_else(|| panic!("no `{selector}` rule in {style}"))
            .to_string()
    };
    assert!(rule("th, td {").contains("text-align: left"), "{style}");
    let num = rule("th.num, td.num {");
    assert!(num.contains("text-align: right"), "{num}");
    assert!(num.contains("white-space: nowrap"), "{num}");
    assert!(rule("td.when {").contains("white-space: nowrap"), "{style}");
    assert!(
        !style.contains("first-child"),
        "every column says its own alignment: {style}"
    );

    let figure = |text: &str| text.starts_with(|c: char| c.is_ascii_digit() || "–▲▼→".contains(c));
    let mut checked = 0;
    for table in tables(&html) {
        let head: Option<Vec<bool>> = table
            .iter()
            .find(|row| row.iter().all(|(th, _, _)| *th))
            .map(|row| {
                row.iter()
                    .map(|(_, class, _)| class.contains("num"))
                    .collect()
            });
        for row in table.iter().filter(|row| row.iter().all(|(th, _, _)| !th)) {
            for (i, (_, class, text)) in row.iter().enumerate() {
                let num = class.split(' ').any(|c| c == "num");
                if figure(text) {
                    assert!(
                        num || class.contains("when"),
                        "`{text}` is a figure: {row:?}"
                    );
                } else {
                    assert!(!num, "`{text}` is text, left-aligned: {row:?}");
                }
                if let Some(head) = &head {
                    assert_eq!(head[i], num, "a column aligns with its header: {row:?}");
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 50, "{checked} cells");
    assert!(
        html.contains("<td class=\"num\">100 % up</td>"),
        "on one line, right-aligned: {html}"
    );
}

fn write_lines(path: std::path::PathBuf, lines: &[String]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// A row of the alerts table or of "still firing" as a template writes it, from the alert's
/// name and severity.
type Row = fn(&str, &str) -> String;

#[test]
fn highlights_the_alerts_table_and_still_firing_agree_on_each_severity() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), REPORT_JOB);
    let var = dir.path().join("var");
    let samples: Vec<String> = (0..60)
        .map(|m| {
            Sample {
                ts: t("2026-11-29T10:00:00Z") + chrono::Duration::minutes(m),
                host: "web-1".into(),
                job: "monitor".into(),
                metrics: vec![(MetricName::from("cpu.total.usage_percent"), 50.0)],
                errors: vec![],
            }
            .to_json()
        })
        .collect();
    write_lines(var.join("metrics/2026-11-29.jsonl"), &samples);
    // cpu_high rose from warning to critical (a repeat at once), disk_full fell from critical
    // to warning (with its next repeat); backup_late is info. All three still fire.
    let event = |name: &str, kind, severity, at: &str, since: &str| {
        let mut e = AlertEvent::example(name, kind, severity, t(at));
        e.active_since = t(since);
        serde_json::to_string(&e).unwrap()
    };
    let since = "2026-11-29T09:00:00Z";
    write_lines(
        var.join("alerts/2026-11-29.jsonl"),
        &[
            event(
                "cpu_high",
                EventKind::Firing,
                Severity::Warning,
                "2026-11-29T10:00:00Z",
                since,
            ),
            event(
                "disk_full",
                EventKind::Firing,
                Severity::Critical,
                "2026-11-29T10:05:00Z",
                since,
            ),
            event(
                "cpu_high",
                EventKind::Repeat,
                Severity::Critical,
                "2026-11-29T10:30:00Z",
                since,
            ),
            event(
                "backup_late",
                EventKind::Firing,
                Severity::Info,
                "2026-11-29T11:00:00Z",
                since,
            ),
            event(
                "disk_full",
                EventKind::Repeat,
                Severity::Warning,
                "2026-11-29T14:05:00Z",
                since,
            ),
        ],
    );
    let s = summary::build(
        &config,
        "weekly",
        "Weekly performance report",
        Duration::from_secs(7 * 86_400),
        t(END),
    );
    assert!(
        s.highlights
            .iter()
            .any(|h| h.starts_with("3 alerts fired (2 critical, 0 warning, 1 info)")),
        "{:?}",
        s.highlights
    );
    let still = s
        .highlights
        .iter()
        .find(|h| h.starts_with("3 still firing at the end of the window: "))
        .unwrap_or_else(|| panic!("{:?}", s.highlights));
    for said in [
        "cpu_high (critical)",
        "disk_full (critical, now warning)",
        "backup_late (info)",
    ] {
        assert!(still.contains(said), "{said} in {still}");
    }
    for template in ["templates/weekly.md.hbs", "templates/weekly.html.hbs"] {
        let text = render(template, &s, &config);
        let (rule_row, firing_row): (Row, Row) = if template.ends_with(".md.hbs") {
            (
                |name, severity| format!("| {name} | {severity} | 1 | 0 |"),
                |name, severity| format!("- {name} on web-1, {severity}: since"),
            )
        } else {
            (
                |name, severity| {
                    format!("<tr><td>{name}</td><td>{severity}</td><td class=\"num\">1</td>")
                },
                |name, severity| {
                    format!("<td>{name}</td><td></td><td>web-1</td><td>{severity}</td>")
                },
            )
        };
        for (name, table, firing) in [
            ("cpu_high", "critical", "critical"),
            ("disk_full", "critical", "critical (now warning)"),
            ("backup_late", "info", "info"),
        ] {
            assert!(text.contains(&rule_row(name, table)), "{template}: {text}");
            assert!(
                text.contains(&firing_row(name, firing)),
                "{template}: {text}"
            );
        }
        assert!(
            text.contains("the highest it reached in the week"),
            "{template} states the rule: {text}"
        );
    }
}

#[test]
fn without_samples_the_highlights_name_alerts_the_saved_state_has_firing() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), REPORT_JOB);
    let now = Utc::now();
    // Firing since before the window (one that began inside it would be in the alert log).
    let since = now - chrono::Duration::days(10);
    let state = serde_json::json!({ "states": { "fp-disk": {
        "fingerprint": "fp-disk", "name": "disk_full", "labels": { "mount": "/var" },
        "rule_file": "rules/disk.rhai", "severity": "critical", "summary": null,
        "description": null, "phase": "firing", "pending_since": since, "firing_since": since,
        "last_active": now, "last_notified": now, "notified": "firing",
        "notified_severity": "critical", "peak_severity": "critical", "transitions": [],
        "flapping": false, "missing_since": null,
        "options": { "pending_for_ms": 0, "keep_firing_for_ms": 0,
                     "repeat_interval_ms": 14_400_000, "on_missing": "keep", "notify": null,
                     "metric": null },
        "explained": { "value": null, "threshold": null, "op": "", "window": null,
                       "baseline": null, "explanation": null },
        "facts": {}
    } } });
    let data_dir = dir.path().join("var");
    let path = runner::alerts::state_path(&data_dir, "monitor");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, state.to_string()).unwrap();
    assert_eq!(
        runner::alerts::read_state(&data_dir, "monitor")
            .firing()
            .count(),
        1,
        "the state file is one the monitor would write"
    );
    // The monitor was stopped for the whole window; the alert it left firing still counts.
    let s = summary::build(
        &config,
        "weekly",
        "Weekly performance report",
        Duration::from_secs(7 * 86_400),
        now,
    );
    assert_eq!(s.samples, 0);
    assert_eq!(
        s.highlights,
        [
            "No samples in this window: was the monitor running?",
            "1 still firing at the end of the window: disk_full {mount=/var} (critical).",
        ],
        "{:?}",
        s.highlights
    );
}

/// The per-database table says what each column shows: a rate of bytes is headed in bytes per
/// second, not "temp files/s" (issue 30 §6), and a window's mean says it is one, as the
/// server's table above it does.
#[test]
fn the_database_table_headers_name_each_figures_unit() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), REPORT_JOB);
    let s = summary::example(&config);
    let shop = &s.database[0].databases[0];
    assert_eq!(shop.name, "shop");
    assert_eq!(shop.temp_bytes_per_sec_avg, Some(4096.0));
    let expected = [
        "database",
        "peak connections",
        "commits/s, mean",
        "deadlocks",
        "temp file bytes/s, mean",
        "cache hits, mean",
    ];
    // (header, shop's cell) of each column, as each template shows them.
    let html = render("templates/weekly.html.hbs", &s, &config);
    let table = tables(&html)
        .into_iter()
        .find(|t| t[0][0].2 == "database")
        .unwrap_or_else(|| panic!("no per-database table in {html}"));
    let row = table.iter().find(|row| row[0].2 == "shop").unwrap();
    let html_columns: Vec<(String, String)> = table[0]
        .iter()
        .zip(row)
        .map(|(h, c)| (h.2.clone(), c.2.clone()))
        .collect();
    let md = render("templates/weekly.md.hbs", &s, &config);
    let cells = |prefix: &str| -> Vec<String> {
        let line = md
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line in {md}"));
        line.trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_string())
            .collect()
    };
    let md_columns: Vec<(String, String)> = cells("| database |")
        .into_iter()
        .zip(cells("| shop |"))
        .collect();
    for (template, columns) in [("html", html_columns), ("md", md_columns)] {
        let headers: Vec<&str> = columns.iter().map(|(h, _)| h.as_str()).collect();
        assert_eq!(headers, expected, "{template}");
        for (header, cell) in &columns {
            if cell.ends_with("B/s") {
                assert!(
                    header.contains("bytes/s") && !header.contains("files"),
                    "{template}: `{cell}` under `{header}`"
                );
            }
            if cell.ends_with('%') {
                assert!(
                    !header.contains("/s"),
                    "{template}: `{cell}` under `{header}`"
                );
            }
        }
        let temp = &columns[4].1;
        assert!(
            temp.ends_with("B/s"),
            "{template}: the temp column shows {temp}"
        );
    }
}
