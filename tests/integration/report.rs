//! The report against a week written by the test with known values: exact min, mean, max,
//! last and availability, p95 within the sketch's bound, the trend from rollups, alerts and
//! incidents of the week; the shipped templates; template errors with their place; and the
//! report's notifications to Slack and Google Drive through the outbox.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use runner::alerts::event::{AlertEvent, EventKind};
use runner::config::{Config, JobKind};
use runner::report::summary::{self, Summary};
use runner::scheduler::clock::SystemClock;
use runner::store::rollups::{HourRollup, Rollup, RollupStore};
use runner::store::sample::Sample;
use runner::template::bounds::Limits;
use runner::vocab::MetricName;
use runner::vocab::Severity;

use crate::http_server::{Request, Response, TestServer};
use crate::notify::{scripted, slack_ok, wait_for};
use crate::support::{PATIENCE, jobs_file, root, run, stderr, stdout};

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

const END: &str = "2026-11-30T08:00:00Z";

/// A pseudo-random but reproducible number in [0, 1).
fn noise(i: u64, salt: u64) -> f64 {
    let mut x = i
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(salt.wrapping_mul(1_442_695_040_888_963_407));
    x ^= x >> 29;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 32;
    (x % 1_000_000) as f64 / 1_000_000.0
}

/// The week written by the test, and what it knows about it.
struct Week {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    config: Config,
    cpu: Vec<f64>,
    db_up: Vec<f64>,
    /// Sample times (ms).
    times: Vec<i64>,
}

fn write_week(notifiers: &str, notify: &str) -> Week {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let end = t(END);
    let start = end - chrono::Duration::days(7);
    let mut cpu = Vec::new();
    let mut db_up = Vec::new();
    let mut times = Vec::new();
    let mut by_day: BTreeMap<String, String> = BTreeMap::new();
    let mut ts = start;
    let mut i = 0u64;
    while ts < end {
        let c = 20.0 + 60.0 * noise(i, 1);
        // The database is down for 12 samples on one afternoon, and one sample later.
        let up = if (3000..3012).contains(&i) || i == 7000 {
            0.0
        } else {
            1.0
        };
        // Missing samples for an hour: the monitor was stopped (no downtime counted for a gap).
        if !(5040..5100).contains(&i) {
            cpu.push(c);
            db_up.push(up);
            times.push(ts.timestamp_millis());
            let sample = Sample {
                ts,
                host: "web-1".into(),
                job: "monitor".into(),
                metrics: vec![
                    (MetricName::from("cpu.total.usage_percent"), c),
                    (MetricName::from("tcp.db.up"), up),
                    (MetricName::from("tcp.db.connect_ms"), 0.5 + noise(i, 2)),
                ],
                errors: if i == 4000 {
                    vec![("ping.gateway".into(), "timed out".into())]
                } else {
                    vec![]
                },
            };
            by_day
                .entry(ts.format("%Y-%m-%d").to_string())
                .or_default()
                .push_str(&(sample.to_json() + "\n"));
        }
        ts += chrono::Duration::minutes(1);
        i += 1;
    }
    std::fs::create_dir_all(root.join("var/metrics")).unwrap();
    std::fs::create_dir_all(root.join("var/archive")).unwrap();
    for (n, (day, text)) in by_day.iter().enumerate() {
        if n < 3 {
            // The first days are already rotated into an archive.
            let file = std::fs::File::create(root.join(format!(
                "var/archive/rotate-logs-20261127T023000-{}.zip",
                n + 1
            )))
            .unwrap();
            let mut zip = zip::ZipWriter::new(file);
            zip.start_file(
                format!("metrics/{day}.jsonl"),
                zip::write::SimpleFileOptions::default(),
            )
            .unwrap();
            std::io::Write::write_all(&mut zip, text.as_bytes()).unwrap();
            zip.finish().unwrap();
        } else {
            std::fs::write(root.join(format!("var/metrics/{day}.jsonl")), text).unwrap();
        }
    }
    // The week before, in hourly rollups: cpu averaged 40.
    let mut store = RollupStore::new(&root.join("var"), "monitor");
    let mut hour = start - chrono::Duration::days(7);
    while hour < start {
        let mut r = Rollup::default();
        r.add(30.0);
        r.add(50.0);
        store
            .append(&HourRollup {
                hour,
                metrics: [("cpu.total.usage_percent".to_string(), r)].into(),
            })
            .unwrap();
        hour += chrono::Duration::hours(1);
    }
    // Alerts of the week.
    let mut alerts = String::new();
    let mut push = |name: &str, kind: EventKind, severity: Severity, at: &str, active: &str| {
        let mut e = AlertEvent::example(name, kind, severity, t(at));
        e.active_since = t(active);
        e.host = "web-1".into();
        alerts.push_str(&(serde_json::to_string(&e).unwrap() + "\n"));
    };
    push(
        "db_down",
        EventKind::Firing,
        Severity::Critical,
        "2026-11-25T02:00:00Z",
        "2026-11-25T02:00:00Z",
    );
    push(
        "db_down",
        EventKind::Resolved,
        Severity::Critical,
        "2026-11-25T02:12:00Z",
        "2026-11-25T02:00:00Z",
    );
    push(
        "cpu_high",
        EventKind::Firing,
        Severity::Warning,
        "2026-11-29T10:00:00Z",
        "2026-11-29T09:55:00Z",
    );
    std::fs::create_dir_all(root.join("var/alerts")).unwrap();
    std::fs::write(root.join("var/alerts/2026-11-25.jsonl"), alerts).unwrap();
    // The incidents cache, as the fetch job leaves it.
    let cache = serde_json::json!({
        "schema_version": 1, "instance": "http://127.0.0.1:9", "query": "", "fetched_at": "2026-11-30T07:00:00Z",
        "watermark": "2026-11-29 12:00:00",
        "incidents": {
            "a": { "sys_id": "a", "number": "INC0010001", "short_description": "Checkout slow", "state": "6", "state_name": "Resolved",
                   "priority": "2", "priority_name": "High", "opened_at": "2026-11-25T02:05:00Z", "resolved_at": "2026-11-25T03:05:00Z",
                   "closed_at": null, "updated_at": null, "sys_updated_on": "2026-11-25 03:05:00" },
            "b": { "sys_id": "b", "number": "INC0010002", "short_description": "Search timeouts", "state": "2", "state_name": "In Progress",
                   "priority": "3", "priority_name": "Moderate", "opened_at": "2026-11-20T10:00:00Z", "resolved_at": null,
                   "closed_at": null, "updated_at": null, "sys_updated_on": "2026-11-29 12:00:00" }
        }
    });
    std::fs::create_dir_all(root.join("var/incidents")).unwrap();
    std::fs::write(root.join("var/incidents/incidents.json"), cache.to_string()).unwrap();
    let file = jobs_file(
        &root,
        &format!(
            "notifiers:\n  sn: {{ type: servicenow, instance: \"http://127.0.0.1:9\", username: u, password: p }}\n{notifiers}jobs:\n  monitor: {{ type: monitor, schedule: \"@every 1m\", probes: [{{ type: cpu }}] }}\n  sync: {{ type: servicenow_fetch, schedule: \"@hourly\", from: sn }}\n  weekly:\n    type: report\n    schedule: \"0 8 * * Mon\"\n    templates: [\"{}\", \"{}\"]\n    notify: [{notify}]\n",
            root_path("templates/weekly.md.hbs"),
            root_path("templates/weekly.html.hbs"),
        ),
    );
    let config = Config::load(&file).unwrap_or_else(|p| panic!("{}", p.render()));
    Week {
        _dir: dir,
        root,
        config,
        cpu,
        db_up,
        times,
    }
}

fn root_path(rel: &str) -> String {
    root().join(rel).display().to_string()
}

fn build(week: &Week) -> Summary {
    summary::build(
        &week.config,
        "weekly",
        "Weekly performance report",
        Duration::from_secs(7 * 86_400),
        t(END),
    )
}

#[test]
fn the_summary_of_a_known_week_is_exact_where_it_says_so() {
    let week = write_week("", "log");
    let s = build(&week);
    assert_eq!(s.samples, week.cpu.len() as u64);
    assert_eq!(s.hosts, ["web-1"]);
    assert_eq!(
        s.sources.archive_entries, 3,
        "three days came from archives"
    );
    let cpu = summary::metric(&s, "cpu.total.usage_percent").unwrap();
    let min = week.cpu.iter().copied().fold(f64::INFINITY, f64::min);
    let max = week.cpu.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mean = week.cpu.iter().sum::<f64>() / week.cpu.len() as f64;
    assert_eq!(cpu.min, min);
    assert_eq!(cpu.max, max);
    assert!((cpu.avg - mean).abs() < 1e-9, "{} vs {mean}", cpu.avg);
    assert_eq!(cpu.last, *week.cpu.last().unwrap());
    assert_eq!(cpu.samples, week.cpu.len() as u64);
    let mut sorted = week.cpu.clone();
    sorted.sort_by(f64::total_cmp);
    let exact_p95 = sorted[((sorted.len() - 1) as f64 * 0.95).floor() as usize];
    let p95 = cpu.p95.unwrap();
    assert!(
        (p95 - exact_p95).abs() <= exact_p95 * s.quantile_error_percent / 100.0,
        "p95 {p95} vs exact {exact_p95}"
    );
    // The week before averaged 40.
    assert_eq!(cpu.previous_avg, Some(40.0));
    let change = cpu.change_percent.unwrap();
    assert!((change - (mean - 40.0) / 40.0 * 100.0).abs() < 1e-9);
    assert_eq!(cpu.series.len(), 168);
    assert_eq!(
        cpu.series.iter().filter(|p| p.is_none()).count(),
        1,
        "the hour without samples"
    );
    assert_eq!(cpu.unit, "percent");

    // Availability: 13 failed checks; each counts until the next check (one minute).
    let db = s
        .availability
        .iter()
        .find(|a| a.metric == "tcp.db.up")
        .unwrap();
    let failed = week.db_up.iter().filter(|v| **v < 0.5).count() as u64;
    assert_eq!((db.checks, db.failed), (week.db_up.len() as u64, failed));
    assert_eq!(
        db.availability_percent,
        (db.checks - failed) as f64 / db.checks as f64 * 100.0
    );
    let mut downtime = 0;
    for (i, up) in week.db_up.iter().enumerate() {
        if *up < 0.5 {
            downtime += (week
                .times
                .get(i + 1)
                .copied()
                .unwrap_or(t(END).timestamp_millis())
                - week.times[i])
                / 1000;
        }
    }
    assert_eq!(db.downtime_seconds, downtime);
    assert_eq!((db.probe.as_str(), db.target.as_str()), ("tcp", "db"));

    assert_eq!(s.probe_error_total, 1);
    assert_eq!(s.probe_errors[0].probe, "ping.gateway");

    // Alerts: two fired, one resolved after 12 minutes, one still firing.
    assert_eq!((s.alerts.fired, s.alerts.resolved), (2, 1));
    assert_eq!(s.alerts.by_severity.critical, 1);
    assert_eq!(s.alerts.median_time_to_resolve_seconds, Some(720));
    assert_eq!(s.alerts.still_firing[0].name, "cpu_high");
    // Incidents: one opened and resolved this week, one still open from before.
    assert!(s.incidents.configured);
    assert_eq!(s.incidents.opened.len(), 1);
    assert_eq!(s.incidents.resolved[0].number, "INC0010001");
    assert_eq!(s.incidents.open[0].number, "INC0010002");
    assert_eq!(
        s.incidents.open[0].age_seconds,
        Some((t(END) - t("2026-11-20T10:00:00Z")).num_seconds())
    );
    assert!(
        s.highlights.iter().any(|h| h.contains("2 alerts fired")),
        "{:?}",
        s.highlights
    );
    assert!(
        s.highlights
            .iter()
            .any(|h| h.starts_with("tcp db was available")),
        "{:?}",
        s.highlights
    );
}

#[test]
fn the_shipped_templates_render_the_week_and_the_job_writes_them() {
    let week = write_week("", "log");
    // The job as the scheduler runs it, at the fixture's own "now": the files are named after
    // that day, and they hold the week's figures.
    let JobKind::Report(spec) = &week.config.job("weekly").unwrap().kind else {
        panic!("a report job")
    };
    let notifiers = runner::notify::Notifiers::render_only(&week.config, Arc::new(SystemClock));
    let line = runner::report::run_job(
        &week.config,
        "weekly",
        spec,
        t(END),
        &notifiers,
        &Limits::report(),
    )
    .unwrap();
    assert!(line.contains("var/reports/weekly-2026-11-30.md"), "{line}");
    let reports = week.root.join("var/reports");
    let mut written: Vec<String> = std::fs::read_dir(&reports)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    assert_eq!(written, ["weekly-2026-11-30.html", "weekly-2026-11-30.md"]);
    let md = std::fs::read_to_string(reports.join("weekly-2026-11-30.md")).unwrap();
    assert!(md.starts_with("# Weekly performance report\n"), "{md}");
    // The figures the test knows, formatted as the template prints them.
    let samples = week.cpu.len();
    let grouped = |n: usize| {
        let digits = n.to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        out
    };
    assert!(
        md.contains(&format!("{} samples", grouped(samples))),
        "{md}"
    );
    let min = week.cpu.iter().copied().fold(f64::INFINITY, f64::min);
    let max = week.cpu.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let avg = week.cpu.iter().sum::<f64>() / samples as f64;
    let row = md
        .lines()
        .find(|l| l.starts_with("| `cpu.total.usage_percent` |"))
        .unwrap_or_else(|| panic!("{md}"));
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    let percent = |v: f64| runner::template::measure(v, "percent");
    assert_eq!(cells[2], percent(min), "{row}");
    assert_eq!(cells[3], percent(avg), "{row}");
    assert_eq!(cells[6], percent(max), "{row}");
    assert_eq!(cells[7], percent(*week.cpu.last().unwrap()), "{row}");
    let html = std::fs::read_to_string(reports.join("weekly-2026-11-30.html")).unwrap();
    assert!(
        html.contains(&percent(avg)),
        "the html report shows the mean"
    );

    let s = build(&week);
    let zone = week.config.zone.clone();
    let md = runner::report::render::render(
        &root().join("templates/weekly.md.hbs"),
        &s,
        &zone,
        &Limits::report(),
    )
    .unwrap()
    .text;
    assert!(md.contains("| `cpu.total.usage_percent` |"), "{md}");
    assert!(md.contains("| tcp | db | "), "{md}");
    assert!(md.contains("INC0010002"), "{md}");
    assert!(md.contains("db_down"), "{md}");
    assert!(!md.contains("{{"), "{md}");
    let html = runner::report::render::render(
        &root().join("templates/weekly.html.hbs"),
        &s,
        &zone,
        &Limits::report(),
    )
    .unwrap()
    .text;
    assert!(html.starts_with("<!doctype html>"), "{html}");
    assert!(html.matches("<svg").count() >= 3, "a chart per metric");
    assert!(html.contains("<path d=\"M"), "{html}");
    assert!(html.contains("Checkout slow"));
}

#[test]
fn template_errors_name_the_template_line_and_column() {
    let week = write_week("", "log");
    let s = build(&week);
    let dir = tempfile::tempdir().unwrap();
    let unknown = dir.path().join("unknown.md.hbs");
    std::fs::write(
        &unknown,
        "# {{title}}\n\n{{#each families}}\n{{titel}}\n{{/each}}\n",
    )
    .unwrap();
    let err = runner::report::render::render(&unknown, &s, &week.config.zone, &Limits::report())
        .unwrap_err();
    assert_eq!(err.path, unknown);
    assert_eq!(err.at, Some((4, 1)), "{err}");
    assert!(err.message.contains("titel"), "{err}");
    let syntax = dir.path().join("syntax.html.hbs");
    std::fs::write(&syntax, "<h1>{{title}}</h1>\n<p>{{#if samples}}</p>\n").unwrap();
    let err = runner::report::render::render(&syntax, &s, &week.config.zone, &Limits::report())
        .unwrap_err();
    assert_eq!(err.path, syntax);
    assert!(err.at.is_some_and(|(line, _)| line >= 2), "{err}");

    // `runner check` renders the report job's templates against an example summary.
    let jobs = jobs_file(
        dir.path(),
        &format!(
            "jobs:\n  weekly: {{ type: report, schedule: \"0 8 * * Mon\", templates: [\"{}\"] }}\n",
            unknown.display()
        ),
    );
    let output = run(&["check", "--jobs", jobs.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains(&format!("--> {}:4:1", unknown.display())),
        "{err}"
    );
    assert!(err.contains("= field: jobs.weekly.templates"), "{err}");
}

#[test]
fn check_finds_a_misspelt_field_in_a_branch_the_example_does_not_take() {
    // Issue 27: the example summary has alerts, so its render never took this `else`, and
    // `check` passed a template whose report then failed every week without an alert.
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("quiet.md.hbs");
    std::fs::write(
        &template,
        "# {{title}}\n{{#if alerts.fired}}{{alerts.fired}} fired{{else}}{{period.lable}}{{/if}}\n",
    )
    .unwrap();
    let slack = dir.path().join("slack.hbs");
    std::fs::write(
        &slack,
        "{{#each events}}{{summary}}{{#if incident}} {{incident.numbr}}{{/if}}{{/each}}\n",
    )
    .unwrap();
    let jobs = jobs_file(
        dir.path(),
        &format!(
            "notifiers:\n  chat: {{ type: slack, webhook_url: \"\", template: \"{}\" }}\njobs:\n  weekly: {{ type: report, schedule: \"0 8 * * Mon\", templates: [\"{}\"] }}\n",
            slack.display(),
            template.display()
        ),
    );
    let config = Config::load(&jobs).unwrap();
    let example = summary::example(&config);
    assert!(
        runner::report::render::render(&template, &example, &config.zone, &Limits::report())
            .is_ok(),
        "the example render alone does not see the `else`"
    );

    let output = run(&["check", "--jobs", jobs.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains("error: `period.lable` is not a field: `period` has no field `lable`"),
        "{err}"
    );
    assert!(
        err.contains(&format!("--> {}:2:51", template.display())),
        "{err}"
    );
    assert!(err.contains("= field: jobs.weekly.templates"), "{err}");
    assert!(
        err.contains(
            "= help: did you mean `period.label`? `runner report --summary` prints every field"
        ),
        "{err}"
    );
    // The Slack template's `incident` is there only for alerts with an incident.
    assert!(
        err.contains("`incident.numbr` is not a field: `incident` has no field `numbr`"),
        "{err}"
    );
    assert!(
        err.contains(&format!("--> {}:1:", slack.display())),
        "{err}"
    );
    assert!(err.contains("= field: notifiers.chat.template"), "{err}");
    assert!(err.contains("did you mean `incident.number`?"), "{err}");
    // Each said once: the static check's words, not the render's too.
    assert_eq!(err.matches("period.lable").count(), 2, "{err}");

    // Fixed, both pass.
    std::fs::write(
        &template,
        "# {{title}}\n{{#if alerts.fired}}{{alerts.fired}} fired{{else}}{{period.label}}{{/if}}\n",
    )
    .unwrap();
    std::fs::write(
        &slack,
        "{{#each events}}{{summary}}{{#if incident}} {{incident.number}}{{/if}}{{/each}}\n",
    )
    .unwrap();
    let output = run(&["check", "--jobs", jobs.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn runner_report_renders_a_custom_template_and_prints_the_summary() {
    let week = write_week("", "log");
    let jobs = week.root.join("jobs.yaml");
    let custom = week.root.join("mine.txt.hbs");
    std::fs::write(
        &custom,
        "{{#each families}}{{#each metrics}}{{name}} p95 {{measure p95 unit}}\n{{/each}}{{/each}}",
    )
    .unwrap();
    let output = run(&[
        "report",
        "--jobs",
        jobs.to_str().unwrap(),
        "--template",
        custom.to_str().unwrap(),
        "--window",
        "30d",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let out = stdout(&output);
    assert!(out.contains("cpu.total.usage_percent p95 "), "{out}");
    let output = run(&["report", "--jobs", jobs.to_str().unwrap(), "--summary"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(json["schema_version"], 1);
    assert!(json["families"].is_array());
    assert!(
        !week.root.join("var/reports").exists(),
        "runner report writes nothing without --out"
    );
}

#[test]
fn without_servicenow_the_report_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let file = jobs_file(
        dir.path(),
        "jobs:\n  weekly: { type: report, schedule: \"0 8 * * Mon\" }\n",
    );
    let config = Config::load(&file).unwrap();
    let s = summary::build(
        &config,
        "weekly",
        "t",
        Duration::from_secs(86_400),
        Utc::now(),
    );
    assert!(!s.incidents.configured);
    assert_eq!(
        s.incidents.note,
        "ServiceNow not configured: no servicenow_fetch job."
    );
    assert_eq!(
        s.highlights,
        ["No samples in this window: was the monitor running?"]
    );
    // Every shipped template renders even an empty week.
    for template in ["templates/weekly.md.hbs", "templates/weekly.html.hbs"] {
        let out = runner::report::render::render(
            &root().join(template),
            &s,
            &config.zone,
            &Limits::report(),
        )
        .unwrap();
        assert!(out.text.contains("ServiceNow not configured"), "{template}");
    }
    // A fetch job whose notifier is off says why, in words that read the same in HTML.
    let yaml = "data_dir: var\nnotifiers:\n  sn: { type: servicenow, instance: \"${SERVICENOW_INSTANCE:-}\", username: u, password: p }\njobs:\n  sync: { type: servicenow_fetch, schedule: \"@hourly\", from: sn }\n  weekly: { type: report, schedule: \"0 8 * * Mon\" }\n";
    let config = runner::config::build::parse(&file, yaml, &|_| None).unwrap();
    let s = summary::build(
        &config,
        "weekly",
        "t",
        Duration::from_secs(3_600),
        Utc::now(),
    );
    assert!(
        s.incidents.note.starts_with("ServiceNow not configured: "),
        "{}",
        s.incidents.note
    );
    assert!(!s.incidents.note.contains('`'), "{}", s.incidents.note);
}

#[tokio::test]
async fn the_report_goes_to_slack_and_google_drive_through_the_outbox() {
    let slack = TestServer::start(scripted(vec![], slack_ok()));
    // Google's token and upload endpoints: the first token is refused once by the upload.
    let tokens = std::sync::Mutex::new(0u32);
    let google = TestServer::start(move |r: &Request| {
        if r.path() == "/token" {
            let mut n = tokens.lock().unwrap();
            *n += 1;
            return Response::json(
                200,
                format!(
                    "{{\"access_token\":\"ya29.t{n}\",\"expires_in\":3599,\"token_type\":\"Bearer\"}}"
                ),
            );
        }
        match r.header("authorization") {
            Some("Bearer ya29.t1") => Response::json(
                401,
                r#"{"error":{"code":401,"message":"Invalid Credentials"}}"#,
            ),
            Some(_) => Response::json(200, r#"{"kind":"drive#file","id":"1AbC","name":"x"}"#),
            None => Response::json(401, "{}"),
        }
    });
    let notifiers = format!(
        "  slack: {{ type: slack, webhook_url: \"{}\", group_wait: 0s }}\n  drive: {{ type: gdrive, folder_id: F0lder, client_id: cid, client_secret: \"${{GSECRET:-csecret}}\", refresh_token: rtok, token_url: \"{}\", upload_url: \"{}\", retry_initial: 20ms }}\n",
        slack.url("/hook"),
        google.url("/token"),
        google.url("/upload/drive/v3/files")
    );
    let week = write_week(&notifiers, "log, slack, drive");
    let config = Arc::new(Config::load(&week.root.join("jobs.yaml")).unwrap());
    let notifiers = Arc::new(runner::notify::Notifiers::new(
        &config,
        Arc::new(SystemClock),
    ));
    let stop = tokio_util::sync::CancellationToken::new();
    let handles = notifiers.start(stop.clone());
    let JobKind::Report(spec) = &config.job("weekly").unwrap().kind else {
        panic!()
    };
    let line = runner::report::run_job(
        &config,
        "weekly",
        spec,
        t(END),
        &notifiers,
        &Limits::report(),
    )
    .unwrap();
    assert!(line.contains("weekly-2026-11-30.md"), "{line}");
    wait_for(PATIENCE, "the Slack message", || {
        !slack.requests().is_empty()
    })
    .await;
    wait_for(PATIENCE, "two uploads", || {
        google
            .requests()
            .iter()
            .filter(|r| {
                r.path() == "/upload/drive/v3/files"
                    && r.header("authorization") == Some("Bearer ya29.t2")
            })
            .count()
            == 2
    })
    .await;
    let message = slack.requests()[0].json();
    assert_eq!(
        message["blocks"][0]["text"]["text"],
        ":bar_chart: Weekly performance report, web-1, 2026-11-23 to 2026-11-30"
    );
    assert!(
        message["blocks"][1]["text"]["text"]
            .as_str()
            .unwrap()
            .contains("2 alerts fired"),
        "{message}"
    );
    let uploads: Vec<Request> = google
        .requests()
        .into_iter()
        .filter(|r| r.path() == "/upload/drive/v3/files")
        .collect();
    let first = uploads
        .iter()
        .find(|r| r.header("authorization") == Some("Bearer ya29.t2"))
        .unwrap();
    assert_eq!(first.query("uploadType").as_deref(), Some("multipart"));
    let content_type = first.header("content-type").unwrap();
    let boundary = content_type
        .strip_prefix("multipart/related; boundary=")
        .unwrap();
    let body = first.text();
    assert!(
        body.starts_with(&format!(
            "--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n"
        )),
        "{body}"
    );
    assert!(body.contains("\"parents\":[\"F0lder\"]"), "{body}");
    assert!(
        body.contains("# Weekly performance report") || body.contains("<!doctype html>"),
        "{body}"
    );
    assert!(body.trim_end().ends_with(&format!("--{boundary}--")));
    let token_form = google
        .requests()
        .into_iter()
        .find(|r| r.path() == "/token")
        .unwrap()
        .text();
    assert!(
        token_form.contains("grant_type=refresh_token")
            && token_form.contains("refresh_token=rtok"),
        "{token_form}"
    );
    stop.cancel();
    for h in handles {
        let _ = h.await;
    }
}

#[test]
fn dry_run_renders_to_stdout_shows_the_notice_and_writes_nothing() {
    let hook = TestServer::start(scripted(vec![], Response::new(204, "")));
    let notifiers = format!(
        "  hook: {{ type: webhook, url: \"{}\" }}\n",
        hook.url("/reports?key=secret")
    );
    let week = write_week(&notifiers, "log, hook");
    let output = run(&[
        "dry-run",
        "weekly",
        "--jobs",
        week.root.join("jobs.yaml").to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let out = stdout(&output);
    assert!(out.contains("weekly.md.hbs (would be written to "), "{out}");
    assert!(out.contains("# Weekly performance report"), "{out}");
    assert!(out.contains("<!doctype html>"), "{out}");
    assert!(
        out.contains(&format!("hook: POST {}", hook.url(""))),
        "{out}"
    );
    assert!(out.contains("\"type\": \"report.ready\""), "{out}");
    assert!(!out.contains("secret"), "{out}");
    assert!(!week.root.join("var/reports").exists());
    assert!(!week.root.join("var/outbox").exists());
    assert!(hook.requests().is_empty());
}

#[test]
fn alerts_firing_since_before_the_window_count_as_still_firing_from_their_true_start() {
    let week = write_week("", "log");
    // disk_full fired ten days before the window's end and repeats every 4 h, never resolved;
    // memory_high fired before the window and resolved inside it.
    let began = t(END) - chrono::Duration::days(10);
    let mut by_day: BTreeMap<String, String> = BTreeMap::new();
    let mut push = |name: &str, kind: EventKind, at: DateTime<Utc>, active: DateTime<Utc>| {
        let mut e = AlertEvent::example(name, kind, Severity::Critical, at);
        e.active_since = active;
        e.host = "web-1".into();
        by_day
            .entry(at.format("%Y-%m-%d").to_string())
            .or_default()
            .push_str(&(serde_json::to_string(&e).unwrap() + "\n"));
    };
    push(
        "disk_full",
        EventKind::Firing,
        began,
        began - chrono::Duration::minutes(5),
    );
    let mut at = began + chrono::Duration::hours(4);
    while at < t(END) {
        push(
            "disk_full",
            EventKind::Repeat,
            at,
            began - chrono::Duration::minutes(5),
        );
        at += chrono::Duration::hours(4);
    }
    let memory = t(END) - chrono::Duration::days(8);
    push("memory_high", EventKind::Firing, memory, memory);
    push(
        "memory_high",
        EventKind::Resolved,
        t(END) - chrono::Duration::days(6),
        memory,
    );
    for (day, text) in by_day {
        let path = week.root.join(format!("var/alerts/{day}.jsonl"));
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        std::io::Write::write_all(&mut file, text.as_bytes()).unwrap();
    }
    let s = build(&week);
    let still: Vec<(&str, DateTime<Utc>)> = s
        .alerts
        .still_firing
        .iter()
        .map(|sp| (sp.name.as_str(), sp.from))
        .collect();
    assert_eq!(
        still,
        [
            ("disk_full", began),
            ("cpu_high", t("2026-11-29T10:00:00Z"))
        ],
        "both, the older first, each from its true start"
    );
    assert_eq!(s.alerts.longest[0].name, "disk_full");
    assert_eq!(s.alerts.longest[0].seconds, 10 * 86_400);
    let memory_spell = s
        .alerts
        .longest
        .iter()
        .find(|sp| sp.name == "memory_high")
        .unwrap();
    assert_eq!(
        (memory_spell.from, memory_spell.seconds),
        (memory, 2 * 86_400)
    );
    assert!(
        s.highlights
            .iter()
            .any(|h| h
                == "2 still firing at the end of the window: disk_full (critical), cpu_high (warning)."),
        "{:?}",
        s.highlights
    );
}

#[test]
fn the_previous_window_is_whole_hours_before_it_never_an_hour_reaching_into_it() {
    let week = write_week("", "log");
    // The hour the window starts in was rolled up with this window's data: 1000.
    let start = t(END) - chrono::Duration::days(7);
    let mut r = Rollup::default();
    r.add(1000.0);
    RollupStore::new(&week.root.join("var"), "monitor")
        .append(&HourRollup {
            hour: start,
            metrics: [("cpu.total.usage_percent".to_string(), r)].into(),
        })
        .unwrap();
    // A window that starts half an hour into that hour.
    let s = summary::build(
        &week.config,
        "weekly",
        "Weekly performance report",
        Duration::from_secs(7 * 86_400),
        t(END) + chrono::Duration::minutes(30),
    );
    let cpu = summary::metric(&s, "cpu.total.usage_percent").unwrap();
    assert_eq!(cpu.previous_avg, Some(40.0));
    let change = (cpu.avg - 40.0) / 40.0 * 100.0;
    assert!((cpu.change_percent.unwrap() - change).abs() < 1e-9);
}

/// The incidents cache with one incident of each kind the report must show in full.
fn write_incidents(root: &std::path::Path) {
    let cache = serde_json::json!({
        "schema_version": 1, "instance": "http://127.0.0.1:9", "query": "", "fetched_at": "2026-11-30T07:00:00Z",
        "watermark": "2026-11-29 12:00:00",
        "incidents": {
            "a": { "sys_id": "a", "number": "INC0010001", "short_description": "Checkout | cart <b>slow</b>", "state": "6", "state_name": "Resolved",
                   "priority": "2", "priority_name": "High", "opened_at": "2026-11-25T02:05:00Z", "resolved_at": "2026-11-25T03:05:00Z",
                   "closed_at": null, "updated_at": null, "sys_updated_on": "2026-11-25 03:05:00" },
            "b": { "sys_id": "b", "number": "INC0010002", "short_description": "Search timeouts", "state": "2", "state_name": "In Progress",
                   "priority": "3", "priority_name": "Moderate", "opened_at": "2026-11-20T10:00:00Z", "resolved_at": null,
                   "closed_at": null, "updated_at": null, "sys_updated_on": "2026-11-29 12:00:00" },
            "c": { "sys_id": "c", "number": "INC0010003", "short_description": "Duplicate of INC0010002", "state": "8", "state_name": "Canceled",
                   "priority": "4", "priority_name": "Low", "opened_at": "2026-11-26T09:00:00Z", "resolved_at": null,
                   "closed_at": null, "updated_at": "2026-11-26T09:30:00Z", "sys_updated_on": "2026-11-26 09:30:00" }
        }
    });
    std::fs::write(root.join("var/incidents/incidents.json"), cache.to_string()).unwrap();
}

#[test]
fn runner_report_renders_a_past_window_into_files_with_every_incident_in_full() {
    let week = write_week("", "log");
    write_incidents(&week.root);
    let jobs = week.root.join("jobs.yaml");
    let out = week.root.join("out");
    let output = run(&[
        "report",
        "--jobs",
        jobs.to_str().unwrap(),
        "--at",
        END,
        "--out-dir",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let md = std::fs::read_to_string(out.join("weekly-2026-11-30.md")).unwrap();
    let html = std::fs::read_to_string(out.join("weekly-2026-11-30.html")).unwrap();
    assert!(md.starts_with("# Weekly performance report\n"), "{md}");
    // The description's `|` and HTML cannot break the table: seven cells, backslash-escaped
    // (an entity would show as written where the text lands in a code span).
    let row = md
        .lines()
        .find(|l| l.starts_with("| INC0010001 |"))
        .expect("the resolved incident's row");
    assert_eq!(row.matches(" | ").count() + 2, 8, "{row}");
    assert!(
        row.contains("Checkout \\| cart \\<b\\>slow\\</b\\>"),
        "{row}"
    );
    // Every list has number, description, state, priority, opened, resolved and age.
    let open = md
        .lines()
        .skip_while(|l| !l.starts_with("Still open at its end"))
        .find(|l| l.starts_with("| INC0010002 |"))
        .expect("the open incident, opened before the window");
    assert!(
        open.contains("| Search timeouts | In Progress | Moderate | 2026-11-20"),
        "{open}"
    );
    // Canceled after half an hour: its age stops there.
    let canceled = md
        .lines()
        .find(|l| l.starts_with("| INC0010003 |"))
        .unwrap();
    assert!(canceled.ends_with("| 30m |"), "{canceled}");
    for heading in [
        "<h3>Opened in the week</h3>",
        "<h3>Resolved in the week</h3>",
        "<h3>Still open at its end</h3>",
    ] {
        assert!(html.contains(heading), "{heading}");
    }
    assert!(
        html.contains("<td>Checkout | cart &lt;b&gt;slow&lt;/b&gt;</td>"),
        "{html}"
    );

    // Without --out-dir: one report on stdout (the Markdown), and a word on the other.
    let output = run(&["report", "--jobs", jobs.to_str().unwrap(), "--at", END]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let printed = stdout(&output);
    assert!(
        printed.starts_with("# Weekly performance report"),
        "{printed}"
    );
    assert!(!printed.contains("<html"), "only one report is printed");
    assert!(
        stderr(&output).contains("not printed:"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn an_hour_long_report_speaks_of_the_hour_and_charts_it_by_the_minute() {
    let week = write_week("", "log");
    let jobs = week.root.join("jobs.yaml");
    let out = week.root.join("out");
    let output = run(&[
        "report",
        "--jobs",
        jobs.to_str().unwrap(),
        "--window",
        "1h",
        "--at",
        END,
        "--out-dir",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    // Shorter than a day: the name has the end's local time, so hours do not overwrite.
    let stamp = week.config.zone.strftime(t(END), "%Y-%m-%d-%H%M");
    let md = std::fs::read_to_string(out.join(format!("weekly-{stamp}.md"))).unwrap();
    let html = std::fs::read_to_string(out.join(format!("weekly-{stamp}.html"))).unwrap();
    assert!(md.starts_with("# Hourly performance report\n"), "{md}");
    assert!(md.contains("Compared with the hour before"), "{md}");
    assert!(md.contains("| over the hour |"), "{md}");
    assert!(md.contains("No alert fired in the hour."), "{md}");
    assert!(md.contains("Still firing at the end of the hour:"), "{md}");
    assert!(!md.to_lowercase().contains("week"), "{md}");
    // A sample a minute: the hour's charts are lines of 60 points, not one hourly dot.
    assert!(
        html.contains("<path d=\"M") && !html.contains("<circle "),
        "an hour is charted by the minute"
    );
    let path = html
        .split("<path d=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert_eq!(path.matches('L').count(), 59, "{path}");
}

#[test]
fn a_long_window_over_a_short_history_charts_the_history_by_a_step_that_fits_it() {
    // A week of samples in a 60-day report: charted by the window, the week would be 14 dots
    // of 12 hours at the end of a line of nothing; by the history, 168 hours.
    let week = write_week("", "log");
    let jobs = week.root.join("jobs.yaml");
    let output = run(&[
        "report",
        "--jobs",
        jobs.to_str().unwrap(),
        "--window",
        "60d",
        "--at",
        END,
        "--summary",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(json["period"]["chart_step_s"], 3600, "{}", json["period"]);
    let chart_from: DateTime<Utc> = json["period"]["chart_from"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let from: DateTime<Utc> = json["period"]["from"].as_str().unwrap().parse().unwrap();
    assert!(
        chart_from > from + chrono::Duration::days(50),
        "{}",
        json["period"]
    );
    let series = json["families"][0]["metrics"][0]["series"]
        .as_array()
        .unwrap();
    let filled = series.iter().filter(|p| !p.is_null()).count();
    assert!(
        (167..=170).contains(&filled),
        "{filled} of {}",
        series.len()
    );
    // The figures are the window's all the same.
    assert_eq!(json["samples"], week.times.len(), "{}", json["samples"]);
    let out = week.root.join("out");
    let output = run(&[
        "report",
        "--jobs",
        jobs.to_str().unwrap(),
        "--window",
        "60d",
        "--at",
        END,
        "--out-dir",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let md = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "md"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .unwrap();
    assert!(
        md.contains("| since "),
        "the chart column says where it starts: {md}"
    );
}

#[test]
fn a_failing_template_is_said_in_plain_words_and_never_renames_the_others_file() {
    let week = write_week("", "log");
    std::fs::write(week.root.join("a.md.hbs"), "# {{title}}\n{{nosuch}}\n").unwrap();
    std::fs::write(week.root.join("b.md.hbs"), "# {{title}} b\n").unwrap();
    let jobs = jobs_file(
        &week.root,
        "jobs:\n  monitor: { type: monitor, schedule: \"@every 1m\", probes: [{ type: cpu }] }\n  r: { type: report, schedule: \"@daily\", templates: [a.md.hbs, b.md.hbs] }\n",
    );
    let out = week.root.join("out");
    let output = run(&[
        "report",
        "--jobs",
        jobs.to_str().unwrap(),
        "--at",
        END,
        "--out-dir",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1), "a template failed");
    let err = stderr(&output);
    assert!(
        err.contains("a.md.hbs:2:1: `nosuch` is not a field here"),
        "{err}"
    );
    assert!(!err.contains("Some("), "{err}");
    let written: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(written, ["r-2026-11-30-b.md"], "named as when both render");
}
