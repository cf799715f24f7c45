//! Report windows in the jobs file's timezone: weekly reports across both DST changes of
//! Europe/Berlin cover calendar weeks that tile time (every sample in exactly one report, the
//! same local hour at both ends of the header); `--at` at a wall time the clocks skipped or
//! passed twice; reports of different windows written under different names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use runner::store::sample::Sample;
use runner::vocab::MetricName;

use crate::support::{jobs_file, run, stderr, stdout};

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

/// A jobs file in Berlin time with a weekly report, and a sample every 10 minutes over
/// `[from, to)`.
fn berlin_samples(from: &str, to: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let mut by_day: BTreeMap<String, String> = BTreeMap::new();
    let mut ts = t(from);
    while ts < t(to) {
        let sample = Sample {
            ts,
            host: "web-1".into(),
            job: "monitor".into(),
            metrics: vec![(MetricName::from("cpu.total.usage_percent"), 10.0)],
            errors: vec![],
        };
        by_day
            .entry(ts.format("%Y-%m-%d").to_string())
            .or_default()
            .push_str(&(sample.to_json() + "\n"));
        ts += chrono::Duration::minutes(10);
    }
    std::fs::create_dir_all(root.join("var/metrics")).unwrap();
    for (day, text) in by_day {
        std::fs::write(root.join(format!("var/metrics/{day}.jsonl")), text).unwrap();
    }
    let template = crate::support::root().join("templates/weekly.md.hbs");
    let file = jobs_file(
        &root,
        &format!(
            "timezone: Europe/Berlin\njobs:\n  monitor: {{ type: monitor, schedule: \"@every 10m\", probes: [{{ type: cpu }}] }}\n  weekly:\n    type: report\n    schedule: \"0 9 * * Mon\"\n    templates: [\"{}\"]\n",
            template.display()
        ),
    );
    (dir, file)
}

fn summary(jobs: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["report", "--jobs", jobs.to_str().unwrap(), "--summary"];
    all.extend_from_slice(args);
    let output = run(&all);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    serde_json::from_str(&stdout(&output)).unwrap()
}

fn time(v: &serde_json::Value) -> DateTime<Utc> {
    t(v.as_str().unwrap())
}

/// Weekly reports on Mondays at 09:00 Berlin time around a DST change: each starts where the
/// one before ended, the week across the change has `hours`, every sample is in exactly one
/// report, and the header shows 09:00 at both ends.
#[track_caller]
fn weekly_reports_tile(mondays: [&str; 4], changed: usize, hours: i64) {
    let (_dir, jobs) = berlin_samples("2026-01-01T00:00:00Z", "2026-12-31T00:00:00Z");
    let mut previous_to = None;
    let mut first_from = None;
    let mut total = 0;
    for (n, monday) in mondays.iter().enumerate().skip(1) {
        let s = summary(&jobs, &["--at", &format!("{monday} 09:00")]);
        let (from, to) = (time(&s["period"]["from"]), time(&s["period"]["to"]));
        if let Some(previous_to) = previous_to {
            assert_eq!(from, previous_to, "report {n} starts where {} ended", n - 1);
        }
        let expected = if n == changed { hours } else { 168 };
        assert_eq!((to - from).num_hours(), expected, "report {n}: {s}");
        assert_eq!(s["period"]["label"], "week");
        assert_eq!(s["period"]["chart_step_s"], 3600);
        total += s["samples"].as_u64().unwrap();
        first_from.get_or_insert(from);
        previous_to = Some(to);
    }
    // Six samples an hour over the three weeks: none in no report, none in two.
    let covered = previous_to.unwrap() - first_from.unwrap();
    assert_eq!(covered.num_hours(), 168 * 2 + hours);
    assert_eq!(total, (covered.num_minutes() / 10) as u64);

    // The rendered header: 09:00 to 09:00 of the week across the change.
    let jobs_text = jobs.to_str().unwrap();
    let output = run(&[
        "report",
        "--jobs",
        jobs_text,
        "--at",
        &format!("{} 09:00", mondays[changed]),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let header = format!(
        "{} 09:00 to {} 09:00 (Europe/Berlin)",
        mondays[changed - 1],
        mondays[changed]
    );
    assert!(stdout(&output).contains(&header), "{}", stdout(&output));
}

#[test]
fn weekly_reports_tile_the_autumn_change_with_a_week_of_169_hours() {
    // Summer time ends Sunday 2026-10-25.
    weekly_reports_tile(
        ["2026-10-12", "2026-10-19", "2026-10-26", "2026-11-02"],
        2,
        169,
    );
}

#[test]
fn weekly_reports_tile_the_spring_change_with_a_week_of_167_hours() {
    // Summer time starts Sunday 2026-03-29.
    weekly_reports_tile(
        ["2026-03-16", "2026-03-23", "2026-03-30", "2026-04-06"],
        2,
        167,
    );
}

#[test]
fn at_a_wall_time_the_clocks_skipped_is_refused_and_one_they_repeated_says_which_it_took() {
    let (_dir, jobs) = berlin_samples("2026-03-28T00:00:00Z", "2026-03-29T00:00:00Z");
    let jobs = jobs.to_str().unwrap();
    // 02:30 does not exist in Berlin on 2026-03-29: which instant was meant is a guess.
    let output = run(&[
        "report",
        "--jobs",
        jobs,
        "--summary",
        "--at",
        "2026-03-29 02:30",
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", stdout(&output));
    assert_eq!(
        stderr(&output).trim(),
        "error: --at: `2026-03-29 02:30` does not exist in Europe/Berlin: the clocks jumped ahead to 2026-03-29 03:00:00 +02:00 (2026-03-29T01:00:00Z); give a time that exists, or one with its offset such as `2026-03-29T03:00:00+02:00`"
    );
    assert!(stdout(&output).is_empty());

    // 02:30 happened twice on 2026-10-25: the first is taken, and stderr says so.
    let output = run(&[
        "report",
        "--jobs",
        jobs,
        "--summary",
        "--at",
        "2026-10-25 02:30",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stderr(&output).trim(),
        "note: --at `2026-10-25 02:30` happened twice in Europe/Berlin (the clocks went back); took the first, 2026-10-25 02:30:00 +02:00 (2026-10-25T00:30:00Z); for the second give `2026-10-25T02:30:00+01:00`"
    );
    let s: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(time(&s["period"]["to"]), t("2026-10-25T00:30:00Z"));
    // What the note offers gives the second.
    let s = summary(Path::new(jobs), &["--at", "2026-10-25T02:30:00+01:00"]);
    assert_eq!(time(&s["period"]["to"]), t("2026-10-25T01:30:00Z"));
}

/// The files `runner report --out-dir` writes for `--window` ending at each of `ats`.
fn written(window: &str, ats: &[&str]) -> Vec<String> {
    let (dir, jobs) = berlin_samples("2026-10-24T00:00:00Z", "2026-10-26T00:00:00Z");
    let out = dir.path().join("out");
    for at in ats {
        let output = run(&[
            "report",
            "--jobs",
            jobs.to_str().unwrap(),
            "--window",
            window,
            "--at",
            at,
            "--out-dir",
            out.to_str().unwrap(),
        ]);
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    }
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn reports_of_different_windows_get_different_file_names() {
    // Hourly reports of one day, the repeated hour of the autumn change among them.
    assert_eq!(
        written(
            "1h",
            &[
                "2026-10-25 01:00",
                "2026-10-25 02:30",
                "2026-10-25T02:30:00+01:00",
                "2026-10-25 09:00",
            ]
        ),
        [
            "weekly-2026-10-25-0100.md",
            "weekly-2026-10-25-0230+0100.md",
            "weekly-2026-10-25-0230+0200.md",
            "weekly-2026-10-25-0900.md",
        ]
    );
    // A window of whole days keeps the date alone, as a weekly report always had.
    assert_eq!(
        written("1d", &["2026-10-24 09:00", "2026-10-25 09:00"]),
        ["weekly-2026-10-24.md", "weekly-2026-10-25.md"]
    );
    assert_eq!(
        written("90s", &["2026-10-25 09:00:00", "2026-10-25 09:00:30"]),
        ["weekly-2026-10-25-090000.md", "weekly-2026-10-25-090030.md"]
    );
}

#[tokio::test]
async fn a_scheduled_report_ends_at_the_occurrence_it_is_for_not_when_it_got_going() {
    use runner::scheduler::clock::{SharedClock, VirtualClock};
    let (dir, _) = berlin_samples("2026-10-12T00:00:00Z", "2026-10-27T00:00:00Z");
    // No templates: the job writes the summary as JSON.
    let jobs = jobs_file(
        dir.path(),
        "timezone: Europe/Berlin\njobs:\n  weekly: { type: report, schedule: \"0 9 * * Mon\" }\n",
    );
    let config = std::sync::Arc::new(runner::config::Config::load(&jobs).unwrap());
    let due = t("2026-10-26T08:00:00Z");
    // The run starts 1.5 s after its occurrence (a busy machine).
    let clock: SharedClock = VirtualClock::new(due + chrono::Duration::milliseconds(1_500));
    let notifiers = std::sync::Arc::new(runner::notify::Notifiers::new(&config, clock.clone()));
    let job = std::sync::Arc::new(runner::job::Job::new(
        config,
        "weekly",
        clock.clone(),
        notifiers,
    ));
    let info = runner::scheduler::RunInfo {
        scheduled: due,
        started: clock.now(),
        cancel: tokio_util::sync::CancellationToken::new(),
    };
    job.run_once(info).await.unwrap();
    let text =
        std::fs::read_to_string(dir.path().join("var/reports/weekly-2026-10-26.json")).unwrap();
    let s: serde_json::Value = serde_json::from_str(&text).unwrap();
    // 09:00 CET back to 09:00 CEST: the week of 169 hours, to the millisecond.
    assert_eq!(time(&s["period"]["to"]), due);
    assert_eq!(time(&s["period"]["from"]), t("2026-10-19T07:00:00Z"));
    assert_eq!(s["samples"], 169 * 6);
}
