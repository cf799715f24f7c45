//! The rotate job on real files: old files into verified zip archives, expiry, symlinks, and a
//! crash at every step losing nothing.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use runner::config::RotateSpec;
use runner::config::raw::GroupBy;
use runner::rotate::{Flow, Rotation, Step, Summary};
use runner::store::MetricsReader;

use crate::store::{lines, read, samples, t};

const DAY: Duration = Duration::from_secs(86_400);

/// An archive entry: name, content, mtime from the extended timestamp, unix mode.
type Entry = (String, Vec<u8>, Option<i64>, Option<u32>);

struct Fixture {
    _dir: tempfile::TempDir,
    data: PathBuf,
    logs: PathBuf,
    spec: RotateSpec,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("var");
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(data.join("metrics")).unwrap();
        std::fs::create_dir_all(&logs).unwrap();
        let spec = RotateSpec {
            paths: vec![data.join("metrics/*.jsonl"), logs.join("*.log")],
            max_age: 7 * DAY,
            max_size: None,
            archive_dir: data.join("archive"),
            archive_max_age: Some(90 * DAY),
            keep_archives: None,
            group_by: GroupBy::Day,
            compression: 6,
            postrotate: None,
            settle: std::time::Duration::ZERO,
        };
        Fixture {
            _dir: dir,
            data,
            logs,
            spec,
        }
    }

    fn rotation(&self) -> Rotation<'_> {
        Rotation {
            job: "rotate-logs",
            spec: &self.spec,
            data_dir: &self.data,
        }
    }

    fn run(&self, now: &str) -> Summary {
        self.rotation().run(t(now), &mut |_| Flow::Continue)
    }

    /// Writes `text` at `path` (under the temp folder) last modified at `mtime`.
    fn file(&self, path: &Path, text: &str, mtime: &str) -> Vec<u8> {
        std::fs::write(path, text).unwrap();
        set_mtime(path, t(mtime));
        text.as_bytes().to_vec()
    }

    fn archives(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = std::fs::read_dir(&self.spec.archive_dir)
            .map(|dir| dir.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        out.sort();
        out
    }

    /// Every entry of every archive: name → (content, mtime from the extended timestamp, mode).
    fn entries(&self) -> Vec<Entry> {
        let mut out = Vec::new();
        for path in self.archives() {
            if path.extension().is_none_or(|e| e != "zip") {
                continue;
            }
            let mut zip = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
            for i in 0..zip.len() {
                let mut entry = zip.by_index(i).unwrap();
                // Info-ZIP reads it as a signed 32-bit time_t.
                let mtime = entry.extra_data_fields().find_map(|f| match f {
                    zip::ExtraField::ExtendedTimestamp(ts) => {
                        ts.mod_time().map(|t| i64::from(t as i32))
                    }
                    _ => None,
                });
                // The whole mode as stored: `unix_mode()` clears setuid, setgid and sticky
                // (the zip reader's guard for extracting).
                let mode = Some(entry.external_attributes() >> 16).filter(|m| *m != 0);
                let name = entry.name().unwrap().to_string();
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).unwrap();
                out.push((name, bytes, mtime, mode));
            }
        }
        out
    }

    /// How many copies of `original` exist: the file itself if still there, plus archive
    /// entries named `entry` holding exactly its bytes.
    fn copies(&self, path: &Path, entry: &str, original: &[u8]) -> usize {
        let live = match std::fs::read(path) {
            Ok(bytes) => {
                assert_eq!(bytes, original, "{} changed", path.display());
                1
            }
            Err(_) => 0,
        };
        let archived = self
            .entries()
            .iter()
            .filter(|(name, bytes, _, _)| name == entry && bytes == original)
            .count();
        live + archived
    }
}

fn set_mtime(path: &Path, at: DateTime<Utc>) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(at.into()).unwrap();
}

fn log_text(tag: &str, lines: usize) -> String {
    (0..lines)
        .map(|i| {
            format!(
                "{tag} 10.0.0.{} GET /api/orders/{i} 200 {}ms\n",
                i % 250,
                i % 97
            )
        })
        .collect()
}

#[test]
fn old_files_are_archived_byte_for_byte_and_young_ones_left() {
    let fx = Fixture::new();
    let old_metrics = fx.data.join("metrics/2026-11-10.jsonl");
    let young_metrics = fx.data.join("metrics/2026-11-27.jsonl");
    let old_log = fx.logs.join("app.log");
    let young_log = fx.logs.join("worker.log");
    let m = fx.file(&old_metrics, &log_text("m", 2000), "2026-11-10T23:59:58Z");
    fx.file(&young_metrics, &log_text("y", 10), "2026-11-27T23:59:58Z");
    let a = fx.file(&old_log, &log_text("a", 3000), "2026-11-10T12:00:00Z");
    // setgid and sticky are kept with the permission bits.
    std::fs::set_permissions(&old_log, std::fs::Permissions::from_mode(0o3640)).unwrap();
    fx.file(&young_log, "fresh\n", "2026-11-28T08:00:00Z");

    let summary = fx.run("2026-11-28T09:00:00Z");

    assert_eq!(summary.problems, Vec::<String>::new());
    assert_eq!(summary.archived_files, 2);
    assert_eq!(summary.bytes_before, (m.len() + a.len()) as u64);
    assert!(summary.bytes_after > 0 && summary.bytes_after < summary.bytes_before / 3);
    assert!(!old_metrics.exists() && !old_log.exists());
    assert!(young_metrics.exists() && young_log.exists());
    // Same day but different folders: two archives, so names never clash.
    assert_eq!(summary.archives_written.len(), 2);
    let mut entries = fx.entries();
    entries.sort();
    let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(names, ["app.log", "metrics/2026-11-10.jsonl"]);
    assert_eq!(entries[0].1, a);
    assert_eq!(entries[1].1, m);
    assert_eq!(entries[0].2, Some(t("2026-11-10T12:00:00Z").timestamp()));
    assert_eq!(entries[1].2, Some(t("2026-11-10T23:59:58Z").timestamp()));
    assert_eq!(
        entries[0].3,
        Some(0o100000 | 0o3640),
        "a regular file, setgid and sticky"
    );
    for archive in &summary.archives_written {
        let name = archive.file_name().unwrap().to_string_lossy();
        assert!(name.starts_with("rotate-logs-20261128T090000-"), "{name}");
        assert!(name.ends_with(".zip"), "{name}");
    }
    assert!(
        summary.line().starts_with("2 files archived ("),
        "{}",
        summary.line()
    );
}

#[test]
fn the_metrics_reader_reads_archived_days_transparently() {
    let fx = Fixture::new();
    let all = samples(
        t("2026-11-10T00:00:00Z"),
        t("2026-11-13T00:00:00Z"),
        chrono::Duration::minutes(10),
    );
    for day in 10..13 {
        let day_samples: Vec<_> = all
            .iter()
            .filter(|s| s.ts.format("%d").to_string() == day.to_string())
            .cloned()
            .collect();
        let path = fx.data.join(format!("metrics/2026-11-{day}.jsonl"));
        fx.file(
            &path,
            &lines(&day_samples),
            &format!("2026-11-{day}T23:59:00Z"),
        );
    }
    let reader = MetricsReader::new(&fx.data, vec![fx.spec.archive_dir.clone()]);
    let before = read(&reader, "2026-11-10T00:00:00Z", "2026-11-13T00:00:00Z");
    assert_eq!(before, all);

    let summary = fx.run("2026-11-28T09:00:00Z");
    assert_eq!(summary.archived_files, 3);
    assert_eq!(summary.archives_written.len(), 3, "one archive per day");
    assert_eq!(
        std::fs::read_dir(fx.data.join("metrics")).unwrap().count(),
        0
    );
    let after = read(&reader, "2026-11-10T00:00:00Z", "2026-11-13T00:00:00Z");
    assert_eq!(after, all);
}

#[test]
fn group_by_file_makes_one_archive_per_file() {
    let mut fx = Fixture::new();
    fx.spec.group_by = GroupBy::File;
    for name in ["a.log", "b.log", "c.log"] {
        fx.file(
            &fx.logs.join(name),
            &log_text(name, 50),
            "2026-11-01T10:00:00Z",
        );
    }
    let summary = fx.run("2026-11-28T09:00:00Z");
    assert_eq!(summary.archived_files, 3);
    assert_eq!(summary.archives_written.len(), 3);
    let names: Vec<String> = fx
        .archives()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "rotate-logs-20261128T090000-1.zip",
            "rotate-logs-20261128T090000-2.zip",
            "rotate-logs-20261128T090000-3.zip"
        ]
    );
}

#[test]
fn two_runs_on_the_same_day_make_two_archives() {
    let fx = Fixture::new();
    let first = fx.file(&fx.logs.join("app.log"), "first\n", "2026-11-01T10:00:00Z");
    assert_eq!(fx.run("2026-11-28T09:00:00Z").archived_files, 1);
    // The application logged again under the same name, and that file aged too.
    let second = fx.file(&fx.logs.join("app.log"), "second\n", "2026-11-02T10:00:00Z");
    // Same second even: the counter tells them apart.
    let summary = fx.run("2026-11-28T09:00:00Z");
    assert_eq!(summary.archived_files, 1);
    let archives = fx.archives();
    assert_eq!(archives.len(), 2, "{archives:?}");
    let contents: Vec<Vec<u8>> = fx.entries().into_iter().map(|e| e.1).collect();
    assert!(contents.contains(&first) && contents.contains(&second));
}

#[test]
fn expired_archives_are_deleted_and_keep_archives_holds_the_count() {
    let mut fx = Fixture::new();
    // Archives made by runs on four past days.
    for (day, run) in [
        ("2026-08-10", "2026-08-28T09:00:00Z"),
        ("2026-09-20", "2026-10-08T09:00:00Z"),
        ("2026-10-20", "2026-11-08T09:00:00Z"),
        ("2026-11-01", "2026-11-17T09:00:00Z"),
    ] {
        fx.file(&fx.logs.join("app.log"), day, &format!("{day}T10:00:00Z"));
        assert_eq!(fx.run(run).archived_files, 1);
    }
    assert_eq!(fx.archives().len(), 4, "{:?}", fx.archives());

    // 90 days before 2026-11-28 is 2026-08-30: the archive of August 28 goes.
    let summary = fx.run("2026-11-28T09:00:00Z");
    assert_eq!(summary.archives_deleted.len(), 1);
    assert!(
        summary.archives_deleted[0]
            .to_string_lossy()
            .contains("rotate-logs-20260828T090000-1.zip")
    );
    assert_eq!(fx.archives().len(), 3);

    fx.spec.keep_archives = Some(2);
    let plan = fx.rotation().plan(t("2026-11-28T09:00:00Z"));
    assert_eq!(plan.expired.len(), 1);
    assert_eq!(fx.archives().len(), 3, "a plan changes nothing");
    let summary = fx.run("2026-11-28T09:00:00Z");
    assert_eq!(summary.archives_deleted, vec![plan.expired[0].0.clone()]);
    let left: Vec<String> = fx
        .archives()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        left,
        [
            "rotate-logs-20261108T090000-1.zip",
            "rotate-logs-20261117T090000-1.zip"
        ]
    );
}

#[test]
fn a_symlink_matched_by_the_glob_is_skipped_and_its_target_untouched() {
    let fx = Fixture::new();
    let outside = fx.data.parent().unwrap().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let target = outside.join("secret.log");
    let bytes = fx.file(&target, "not ours\n", "2026-11-01T10:00:00Z");
    std::os::unix::fs::symlink(&target, fx.logs.join("link.log")).unwrap();
    let summary = fx.run("2026-11-28T09:00:00Z");
    assert_eq!(summary.archived_files, 0);
    assert_eq!(summary.skipped.len(), 1);
    assert!(
        summary.skipped[0].contains("symlink"),
        "{:?}",
        summary.skipped
    );
    assert_eq!(std::fs::read(&target).unwrap(), bytes);
    assert!(
        std::fs::symlink_metadata(fx.logs.join("link.log"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(fx.entries().is_empty());
}

#[test]
fn a_crash_at_any_step_loses_nothing_and_the_next_run_completes() {
    for stop_at in [
        Step::Selected,
        Step::TmpWritten,
        Step::Renamed,
        Step::Verified,
        Step::MidDelete,
    ] {
        let fx = Fixture::new();
        let mut originals = BTreeMap::new();
        for name in ["a.log", "b.log", "c.log"] {
            let path = fx.logs.join(name);
            let bytes = fx.file(&path, &log_text(name, 500), "2026-11-01T10:00:00Z");
            originals.insert(name, (path, bytes));
        }
        let crashed = fx.rotation().run(t("2026-11-28T09:00:00Z"), &mut |step| {
            if step == stop_at {
                Flow::Stop
            } else {
                Flow::Continue
            }
        });
        assert!(
            crashed.problems.is_empty(),
            "{stop_at:?}: {:?}",
            crashed.problems
        );
        for (name, (path, bytes)) in &originals {
            // In the original, or in the archive, or (before the deletes) in both.
            let copies = fx.copies(path, name, bytes);
            assert!(
                (1..=2).contains(&copies),
                "{stop_at:?}: {name} after the crash: {copies}"
            );
        }
        if stop_at == Step::TmpWritten {
            assert!(
                fx.archives()
                    .iter()
                    .any(|p| p.to_string_lossy().ends_with(".zip.tmp"))
            );
        }

        let next = fx.run("2026-11-28T09:05:00Z");
        assert!(next.problems.is_empty(), "{stop_at:?}: {:?}", next.problems);
        for (name, (path, bytes)) in &originals {
            assert!(!path.exists(), "{stop_at:?}: {name} still there");
            assert_eq!(
                fx.copies(path, name, bytes),
                1,
                "{stop_at:?}: {name} after the next run"
            );
        }
        assert!(
            fx.archives()
                .iter()
                .all(|p| p.extension().is_some_and(|e| e == "zip")),
            "{stop_at:?}: {:?}",
            fx.archives()
        );
        let recovered_expected = match stop_at {
            Step::Renamed | Step::Verified => 3,
            Step::MidDelete => 2,
            _ => 0,
        };
        assert_eq!(next.recovered, recovered_expected, "{stop_at:?}");
    }
}

#[test]
fn a_corrupted_archive_fails_verification_and_the_originals_are_kept() {
    let fx = Fixture::new();
    let path = fx.logs.join("app.log");
    let bytes = fx.file(&path, &log_text("app", 4000), "2026-11-01T10:00:00Z");
    let summary = fx.rotation().run(t("2026-11-28T09:00:00Z"), &mut |step| {
        if step == Step::Renamed {
            // Flip one byte in the middle of the compressed data.
            let archive = fx
                .archives()
                .into_iter()
                .find(|p| p.extension().is_some_and(|e| e == "zip"))
                .unwrap();
            let mut zip_bytes = std::fs::read(&archive).unwrap();
            let start = {
                let mut zip = zip::ZipArchive::new(std::io::Cursor::new(&zip_bytes)).unwrap();
                let entry = zip.by_index(0).unwrap();
                (entry.data_start().unwrap() + entry.compressed_size() / 2) as usize
            };
            zip_bytes[start] ^= 0x55;
            std::fs::write(&archive, zip_bytes).unwrap();
        }
        Flow::Continue
    });
    assert_eq!(summary.archived_files, 0);
    assert_eq!(summary.problems.len(), 1, "{:?}", summary.problems);
    assert!(
        summary.problems[0].contains("does not verify"),
        "{:?}",
        summary.problems
    );
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "the original is kept");
    // The bad archive is set aside where readers do not look.
    let names: Vec<String> = fx
        .archives()
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1);
    assert!(names[0].ends_with(".zip.corrupt"), "{names:?}");
    // And the next run archives the file properly.
    let next = fx.run("2026-11-28T09:05:00Z");
    assert_eq!(next.archived_files, 1);
    assert_eq!(fx.copies(&path, "app.log", &bytes), 1);
}

#[test]
fn an_unreadable_file_is_reported_and_the_rest_rotated() {
    let fx = Fixture::new();
    let good = fx.file(&fx.logs.join("good.log"), "good\n", "2026-11-01T10:00:00Z");
    let bad = fx.logs.join("bad.log");
    fx.file(&bad, "bad\n", "2026-11-01T10:00:00Z");
    let elsewhere = fx.data.parent().unwrap().join("elsewhere.log");
    let summary = fx.rotation().run(t("2026-11-28T09:00:00Z"), &mut |step| {
        if step == Step::Selected {
            // Between selection and copy the file becomes something runner will not open
            // (as root, permissions cannot make a file unreadable).
            std::fs::rename(&bad, &elsewhere).unwrap();
            std::os::unix::fs::symlink(&elsewhere, &bad).unwrap();
        }
        Flow::Continue
    });
    assert_eq!(summary.archived_files, 1);
    assert_eq!(summary.problems.len(), 1, "{:?}", summary.problems);
    assert!(
        summary.problems[0].contains("bad.log"),
        "{:?}",
        summary.problems
    );
    assert!(!fx.logs.join("good.log").exists());
    assert_eq!(fx.copies(&fx.logs.join("good.log"), "good.log", &good), 1);
    assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "bad\n");
}

#[test]
fn a_young_file_past_max_size_is_renamed_then_archived() {
    let mut fx = Fixture::new();
    fx.spec.max_size = Some(10_000);
    let big = fx.logs.join("app.log");
    let bytes = fx.file(&big, &log_text("big", 1000), "2026-11-28T08:59:00Z");
    fx.file(
        &fx.logs.join("small.log"),
        "small\n",
        "2026-11-28T08:59:00Z",
    );
    let summary = fx.run("2026-11-28T09:00:00Z");
    assert_eq!(summary.archived_files, 1, "{:?}", summary.problems);
    assert!(!big.exists());
    assert!(fx.logs.join("small.log").exists());
    let entries = fx.entries();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].0, "app.20261128T090000.log");
    assert_eq!(entries[0].1, bytes);
}

#[test]
fn a_dry_run_plan_lists_files_and_bytes_and_changes_nothing() {
    let fx = Fixture::new();
    let a = fx.file(
        &fx.logs.join("a.log"),
        &log_text("a", 100),
        "2026-11-01T10:00:00Z",
    );
    let b = fx.file(
        &fx.data.join("metrics/2026-11-02.jsonl"),
        &log_text("b", 100),
        "2026-11-02T10:00:00Z",
    );
    fx.file(&fx.logs.join("young.log"), "y\n", "2026-11-28T08:00:00Z");
    let plan = fx.rotation().plan(t("2026-11-28T09:00:00Z"));
    let mut planned: Vec<(String, u64)> = plan
        .candidates
        .iter()
        .map(|c| (c.entry.clone(), c.size))
        .collect();
    planned.sort();
    assert_eq!(
        planned,
        [
            ("a.log".to_string(), a.len() as u64),
            ("metrics/2026-11-02.jsonl".to_string(), b.len() as u64)
        ]
    );
    assert_eq!(plan.archives, 2);
    assert!(fx.logs.join("a.log").exists());
    assert!(fx.archives().is_empty());
}

#[test]
fn runner_dry_run_then_run_on_a_rotate_job() {
    let dir = tempfile::tempdir().unwrap();
    let file = crate::support::jobs_file(
        dir.path(),
        "jobs:\n  rot:\n    type: rotate\n    schedule: \"0 3 * * *\"\n    paths: [logs/*.log]\n    max_age: 7d\n",
    );
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    let old = dir.path().join("logs/app.log");
    std::fs::write(&old, log_text("app", 1000)).unwrap();
    set_mtime(&old, Utc::now() - chrono::Duration::days(20));
    let file = file.to_str().unwrap();

    let output = crate::support::run(&["dry-run", "rot", "--jobs", file]);
    let out = crate::support::stdout(&output);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        crate::support::stderr(&output)
    );
    assert!(out.contains("would archive 1 file,"), "{out}");
    assert!(
        out.contains("app.log") && out.contains("older than max_age"),
        "{out}"
    );
    assert!(old.exists(), "a dry run deleted the file");
    assert!(
        !dir.path().join("var/archive").exists(),
        "a dry run made the archive folder"
    );

    let output = crate::support::run(&["run", "rot", "--jobs", file]);
    let err = crate::support::stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{err}");
    assert!(err.contains("1 file archived"), "{err}");
    assert!(!old.exists());
    assert_eq!(
        std::fs::read_dir(dir.path().join("var/archive"))
            .unwrap()
            .count(),
        1
    );
}

#[test]
fn runners_own_log_past_max_size_is_split_and_still_reads_in_order() {
    let mut fx = Fixture::new();
    fx.spec.max_size = Some(4_096);
    let all = samples(
        t("2026-11-28T00:00:00Z"),
        t("2026-11-28T08:00:00Z"),
        chrono::Duration::minutes(1),
    );
    let (early, late) = all.split_at(300);
    let mut writer = runner::store::daily::DailyWriter::new(fx.data.join("metrics"));
    for sample in early {
        writer.append(sample.ts, &sample.to_json()).unwrap();
    }
    // The writer holds today's file open; it is past max_size, so it is renamed and archived.
    let summary = fx.run("2026-11-28T06:00:00Z");
    assert_eq!(summary.archived_files, 1, "{:?}", summary.problems);
    assert_eq!(
        fx.entries()[0].0,
        "metrics/2026-11-28.20261128T060000.jsonl"
    );
    for sample in late {
        writer.append(sample.ts, &sample.to_json()).unwrap();
    }
    let reader = MetricsReader::new(&fx.data, vec![fx.spec.archive_dir.clone()]);
    assert_eq!(
        read(&reader, "2026-11-28T00:00:00Z", "2026-11-28T08:00:00Z"),
        all
    );
}

#[test]
fn a_cancelled_rotation_stops_at_its_next_step_and_leaves_everything_whole() {
    let fx = Fixture::new();
    let log = fx.logs.join("app.log");
    let original = fx.file(&log, &log_text("a", 3000), "2026-11-10T12:00:00Z");
    let cancel = tokio_util::sync::CancellationToken::new();
    cancel.cancel();
    let summary = runner::rotate::run_job(
        "logs",
        &fx.spec,
        &fx.data,
        t("2026-11-28T09:00:00Z"),
        &cancel,
    );
    assert_eq!(summary.archived_files, 0, "{}", summary.line());
    assert!(summary.archives_written.is_empty());
    assert_eq!(std::fs::read(&log).unwrap(), original);
    // The next run, not cancelled, does the work.
    let summary = fx.run("2026-11-28T09:00:00Z");
    assert_eq!(summary.archived_files, 1);
    assert_eq!(fx.copies(&log, "app.log", &original), 1);
}

#[test]
fn a_run_never_expires_the_archives_it_wrote_and_its_plan_agrees() {
    let mut fx = Fixture::new();
    fx.spec.keep_archives = Some(1);
    fx.spec.group_by = runner::config::raw::GroupBy::File;
    for name in ["a.log", "b.log", "c.log"] {
        fx.file(
            &fx.logs.join(name),
            &log_text(name, 50),
            "2026-11-10T12:00:00Z",
        );
    }
    let plan = fx.rotation().plan(t("2026-11-28T09:00:00Z"));
    assert_eq!((plan.archives, plan.expired.len()), (3, 0));
    let summary = fx.run("2026-11-28T09:00:00Z");
    assert_eq!(summary.archived_files, 3);
    assert!(
        summary.archives_deleted.is_empty(),
        "{:?}",
        summary.archives_deleted
    );
    assert_eq!(fx.archives().len(), 3);
    // The next run keeps one, the newest.
    fx.file(&fx.logs.join("d.log"), "d\n", "2026-11-11T12:00:00Z");
    let summary = fx.run("2026-11-29T09:00:00Z");
    assert_eq!(summary.archives_deleted.len(), 3);
    assert_eq!(fx.archives().len(), 1);
}

#[test]
fn another_jobs_or_a_users_files_are_never_taken_for_this_jobs() {
    let fx = Fixture::new();
    std::fs::create_dir_all(&fx.spec.archive_dir).unwrap();
    let dir = &fx.spec.archive_dir;
    // Job `rotate-logs-x` is writing; a user keeps a file with a similar name.
    let others = [
        dir.join("rotate-logs-x-20261128T085959-1.zip.tmp"),
        dir.join("rotate-logs-mine.zip.tmp"),
        dir.join("rotate-logs-x-20261001T090000-1.zip"),
    ];
    for path in &others {
        std::fs::write(path, "not ours").unwrap();
    }
    // This job's own leftover from a stopped run goes.
    let leftover = dir.join("rotate-logs-20261127T090000-1.zip.tmp");
    std::fs::write(&leftover, "partial").unwrap();
    fx.file(
        &fx.logs.join("app.log"),
        &log_text("a", 10),
        "2026-11-10T12:00:00Z",
    );
    let summary = fx.run("2026-11-28T09:00:00Z");
    assert_eq!(summary.problems, Vec::<String>::new());
    assert!(!leftover.exists());
    for path in &others {
        assert_eq!(
            std::fs::read(path).unwrap(),
            b"not ours",
            "{}",
            path.display()
        );
    }
}

#[test]
fn runners_own_files_keep_their_names_however_the_paths_are_spelled() {
    let mut fx = Fixture::new();
    // The same folder as data_dir/metrics, spelled another way.
    fx.spec.paths = vec![fx.logs.join("../var/./metrics/*.jsonl")];
    let day = fx.data.join("metrics/2026-11-10.jsonl");
    fx.file(&day, &log_text("m", 20), "2026-11-10T23:59:58Z");
    let summary = fx.run("2026-11-28T09:00:00Z");
    assert_eq!(summary.archived_files, 1, "{:?}", summary.problems);
    let names: Vec<String> = fx.entries().into_iter().map(|e| e.0).collect();
    assert_eq!(names, ["metrics/2026-11-10.jsonl"]);
}

#[test]
fn a_fifo_swapped_in_after_selection_is_reported_and_nothing_hangs() {
    let fx = Fixture::new();
    let log = fx.logs.join("app.log");
    fx.file(&log, &log_text("a", 10), "2026-11-10T12:00:00Z");
    // A FIFO matched by a pattern from the start is reported too.
    let fifo = fx.logs.join("pipe.log");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let (done, finished) = std::sync::mpsc::channel();
    let spec = fx.spec.clone();
    let (data, swapped) = (fx.data.clone(), log.clone());
    std::thread::spawn(move || {
        let rotation = Rotation {
            job: "rotate-logs",
            spec: &spec,
            data_dir: &data,
        };
        let summary = rotation.run(t("2026-11-28T09:00:00Z"), &mut |step| {
            if matches!(step, runner::rotate::Step::Selected) {
                std::fs::remove_file(&swapped).unwrap();
                assert!(
                    std::process::Command::new("mkfifo")
                        .arg(&swapped)
                        .status()
                        .unwrap()
                        .success()
                );
            }
            Flow::Continue
        });
        let _ = done.send(summary);
    });
    let summary = finished
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the rotation finished instead of waiting on a FIFO");
    assert_eq!(summary.archived_files, 0);
    assert!(
        summary
            .skipped
            .iter()
            .any(|s| s.contains("pipe.log is not a regular file")),
        "{:?}",
        summary.skipped
    );
    assert!(
        summary
            .problems
            .iter()
            .chain(&summary.skipped)
            .any(|s| s.contains("app.log")),
        "the swapped file is reported: {summary:?}"
    );
}

#[test]
fn a_file_from_before_1970_keeps_its_time_and_is_recovered_not_archived_twice() {
    let fx = Fixture::new();
    let log = fx.logs.join("old.log");
    let bytes = fx.file(&log, &log_text("o", 30), "1965-03-01T12:00:00Z");
    let crashed = fx.rotation().run(t("2026-11-28T09:00:00Z"), &mut |step| {
        if step == Step::Verified {
            Flow::Stop
        } else {
            Flow::Continue
        }
    });
    assert!(crashed.problems.is_empty(), "{:?}", crashed.problems);
    let entries = fx.entries();
    assert_eq!(entries[0].2, Some(t("1965-03-01T12:00:00Z").timestamp()));
    let next = fx.run("2026-11-28T09:05:00Z");
    assert_eq!((next.recovered, next.archived_files), (1, 0), "{next:?}");
    assert_eq!(fx.copies(&log, "old.log", &bytes), 1);
}

/// Runs `script` with `shell -c` and returns once it has printed its first line ("ready").
fn spawn_ready(shell: &str, script: &str) -> std::process::Child {
    let mut child = std::process::Command::new(shell)
        .arg("-c")
        .arg(script)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut ready,
    )
    .unwrap();
    child
}

/// A logger that keeps `log` open (for appending) and writes nothing for now.
fn holding_open(log: &Path) -> std::process::Child {
    spawn_ready(
        "sh",
        &format!("exec 3>>'{}'; echo ready; exec sleep 60", log.display()),
    )
}

#[test]
fn a_file_a_process_holds_open_for_writing_is_archived_but_not_deleted() {
    let fx = Fixture::new();
    let log = fx.logs.join("held.log");
    let bytes = fx.file(&log, &log_text("h", 40), "2026-11-10T12:00:00Z");
    let mut writer = holding_open(&log);
    set_mtime(&log, t("2026-11-10T12:00:00Z"));
    let summary = fx.run("2026-11-28T09:00:00Z");
    assert_eq!(summary.archived_files, 0, "{summary:?}");
    assert!(
        summary
            .skipped
            .iter()
            .any(|s| s.contains("held.log is archived but kept: process")),
        "{:?}",
        summary.skipped
    );
    assert_eq!(
        fx.copies(&log, "held.log", &bytes),
        2,
        "in the archive and still in place"
    );
    // Still held: the next run neither deletes it nor archives it again.
    let again = fx.run("2026-11-28T09:10:00Z");
    assert_eq!((again.recovered, again.archived_files), (0, 0), "{again:?}");
    assert_eq!(fx.archives().len(), 1);
    // Once the writer is gone, the next run deletes it: it is in the archive already.
    writer.kill().unwrap();
    writer.wait().unwrap();
    let last = fx.run("2026-11-28T09:20:00Z");
    assert_eq!(last.recovered, 1, "{last:?}");
    assert_eq!(fx.copies(&log, "held.log", &bytes), 1);
}

#[test]
fn the_plan_names_leftovers_and_renamed_files_and_corrupt_archives_expire() {
    let mut fx = Fixture::new();
    fx.spec.max_size = Some(100);
    std::fs::create_dir_all(&fx.spec.archive_dir).unwrap();
    let leftover = fx
        .spec
        .archive_dir
        .join("rotate-logs-20261127T090000-1.zip.tmp");
    std::fs::write(&leftover, "partial").unwrap();
    let corrupt = fx
        .spec
        .archive_dir
        .join("rotate-logs-20260101T090000-1.zip.corrupt");
    std::fs::write(&corrupt, "bad").unwrap();
    fx.file(
        &fx.logs.join("big.log"),
        &log_text("b", 50),
        "2026-11-28T08:59:00Z",
    );
    let plan = fx.rotation().plan(t("2026-11-28T09:00:00Z"));
    assert_eq!(plan.leftover_tmp, vec![leftover.clone()]);
    assert_eq!(plan.candidates.len(), 1);
    assert_eq!(plan.candidates[0].entry, "big.20261128T090000.log");
    assert_eq!(
        plan.expired.iter().map(|e| e.0.clone()).collect::<Vec<_>>(),
        vec![corrupt.clone()]
    );
    let summary = fx.run("2026-11-28T09:00:00Z");
    assert_eq!(fx.entries()[0].0, plan.candidates[0].entry);
    assert!(!leftover.exists() && !corrupt.exists(), "{summary:?}");
}

#[test]
fn names_that_are_not_utf8_stay_distinct_and_do_not_stop_the_others() {
    use std::os::unix::ffi::OsStrExt;
    let fx = Fixture::new();
    let odd = |b: u8| {
        fx.logs.join(std::ffi::OsStr::from_bytes(&[
            b'b', b'a', b'd', b, b'.', b'l', b'o', b'g',
        ]))
    };
    let a = fx.file(&odd(0xff), "ff\n", "2026-11-10T12:00:00Z");
    let b = fx.file(&odd(0xfe), "fe\n", "2026-11-10T12:00:00Z");
    let good = fx.file(&fx.logs.join("good.log"), "good\n", "2026-11-10T12:00:00Z");
    let summary = fx.run("2026-11-28T09:00:00Z");
    assert_eq!(summary.problems, Vec::<String>::new());
    assert_eq!(summary.archived_files, 3);
    let mut entries: Vec<(String, Vec<u8>)> =
        fx.entries().into_iter().map(|e| (e.0, e.1)).collect();
    entries.sort();
    assert_eq!(
        entries,
        [
            ("bad%FE.log".to_string(), b),
            ("bad%FF.log".to_string(), a),
            ("good.log".to_string(), good)
        ]
    );
    assert!(
        !fx.archives()
            .iter()
            .any(|p| p.to_string_lossy().ends_with(".tmp"))
    );
}

#[test]
fn a_rotation_with_problems_is_a_failed_run() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let log = logs.join("app.log");
    std::fs::write(&log, "old\n").unwrap();
    set_mtime(&log, t("2026-01-01T00:00:00Z"));
    // The archive folder cannot be made: a file is where it should be.
    std::fs::write(dir.path().join("blocked"), "").unwrap();
    let file = crate::support::jobs_file(
        dir.path(),
        "jobs:\n  rot:\n    type: rotate\n    schedule: \"@daily\"\n    paths: [logs/*.log]\n    max_age: 1d\n    archive_dir: blocked/archive\n",
    );
    let output = crate::support::run(&["run", "rot", "--jobs", file.to_str().unwrap()]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        crate::support::stderr(&output)
    );
    assert!(crate::support::stderr(&output).contains("cannot create"));
    assert!(log.exists(), "nothing is lost");
}

/// A writer that keeps its log open and reopens it on SIGUSR1, as nginx does; its pid goes to
/// `pid_file`. Returns the child (kill it to stop).
fn reopening_writer(log: &Path, pid_file: &Path) -> std::process::Child {
    let script = format!(
        "trap 'exec 3>>\"{log}\"' USR1; exec 3>>\"{log}\"; echo $$ > \"{pid}\"; i=0; while :; do echo \"line $i\" >&3; i=$((i+1)); sleep 0.02; done",
        log = log.display(),
        pid = pid_file.display()
    );
    let child = std::process::Command::new("bash")
        .arg("-c")
        .arg(script)
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while std::fs::read_to_string(pid_file).map_or(true, |p| p.trim().is_empty()) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the writer did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

#[test]
fn a_writer_told_to_reopen_by_postrotate_loses_no_line() {
    let mut fx = Fixture::new();
    let log = fx.logs.join("app.log");
    let pid_file = fx.logs.join("../writer.pid");
    fx.spec.max_size = Some(100);
    fx.spec.settle = Duration::from_millis(150);
    fx.spec.postrotate = Some(sigusr1(runner::config::SignalTarget::PidFile(
        pid_file.clone(),
    )));
    let mut writer = reopening_writer(&log, &pid_file);
    let mut archived = 0;
    // Until three renamed files were archived, however slowly a busy machine writes.
    for _ in 0..100 {
        if archived >= 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        let summary = fx.rotation().run(Utc::now(), &mut |_| Flow::Continue);
        assert!(summary.problems.is_empty(), "{:?}", summary.problems);
        archived += summary.archived_files;
    }
    writer.kill().unwrap();
    writer.wait().unwrap();
    assert!(
        archived >= 3,
        "renamed, reopened, settled and archived: {archived}"
    );
    // Every line the writer wrote is in the live file or in exactly one archive entry.
    let mut lines: Vec<u64> = fx
        .entries()
        .into_iter()
        .flat_map(|e| {
            String::from_utf8(e.1)
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .chain(
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .map(str::to_string),
        )
        .filter_map(|l| l.strip_prefix("line ")?.parse().ok())
        .collect();
    lines.sort();
    let last = *lines.last().unwrap();
    assert_eq!(
        lines,
        (0..=last).collect::<Vec<_>>(),
        "lost or doubled lines"
    );
}

#[test]
fn a_postrotate_command_runs_after_renames_and_its_failure_is_a_problem() {
    let mut fx = Fixture::new();
    fx.spec.max_size = Some(10);
    let marker = fx.logs.join("../reopened");
    fx.spec.postrotate = Some(runner::config::Postrotate::Command(vec![
        "touch".into(),
        marker.display().to_string(),
    ]));
    fx.file(
        &fx.logs.join("big.log"),
        &log_text("b", 5),
        "2026-11-28T08:59:00Z",
    );
    let summary = fx.run("2026-11-28T09:00:00Z");
    assert!(summary.problems.is_empty(), "{:?}", summary.problems);
    assert!(marker.exists());
    assert_eq!(summary.archived_files, 1);
    fx.spec.postrotate = Some(runner::config::Postrotate::Command(vec!["false".into()]));
    fx.file(
        &fx.logs.join("big.log"),
        &log_text("c", 5),
        "2026-11-28T09:59:00Z",
    );
    let summary = fx.run("2026-11-28T10:00:00Z");
    assert!(
        summary.problems[0].starts_with("postrotate `false`: exit status: 1"),
        "{:?}",
        summary.problems
    );
}

#[test]
fn a_full_archive_disk_is_filled_once_then_only_what_fits_is_tried() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let archive = dir.path().join("archive");
    let out = dir.path().join("out");
    for d in [&logs, &archive, &out] {
        std::fs::create_dir_all(d).unwrap();
    }
    // Six logs of 300 KB that do not compress, into a 1 MiB filesystem: three fit.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut originals = Vec::new();
    for i in 0..6 {
        let bytes: Vec<u8> = (0..300_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        let log = logs.join(format!("app{i}.log"));
        std::fs::write(&log, &bytes).unwrap();
        set_mtime(&log, t("2026-01-01T00:00:00Z"));
        originals.push((format!("app{i}.log"), bytes));
    }
    let file = crate::support::jobs_file(
        dir.path(),
        "jobs:\n  rot:\n    type: rotate\n    schedule: \"@daily\"\n    paths: [logs/*.log]\n    max_age: 1d\n    archive_dir: archive\n",
    );
    // The archive folder is a small filesystem of its own, in a mount namespace of the run's
    // own; what it holds afterwards is listed and copied out before the namespace goes.
    let script = format!(
        "mount -t tmpfs -o size=1m tmpfs '{a}' || exit 99; '{runner}' run rot --jobs '{f}'; code=$?; ls -A '{a}'; cp '{a}'/*.zip '{o}'/ 2>/dev/null; exit $code",
        a = archive.display(),
        runner = crate::support::runner_bin(),
        f = file.display(),
        o = out.display(),
    );
    let output = std::process::Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .current_dir(crate::support::root())
        .output()
        .expect("unshare runs (util-linux)");
    let (stdout, stderr) = (
        crate::support::stdout(&output),
        crate::support::stderr(&output),
    );
    assert_ne!(
        output.status.code(),
        Some(99),
        "cannot mount a tmpfs: {stderr}"
    );
    assert_eq!(
        output.status.code(),
        Some(1),
        "a run with problems fails: {stderr}"
    );
    assert!(
        stderr.contains("is full, and ") && stderr.contains("were not tried"),
        "{stderr}"
    );
    // Each attempt that fills the disk makes every program writing there fail: one only.
    // (Halving blindly filled it three times: all six, then three of them, then one.)
    assert_eq!(
        stderr.matches("archive_dir is full").count(),
        1,
        "the disk is filled once: {stderr}"
    );
    assert!(!stderr.contains("ZipWriter"), "{stderr}");
    assert!(
        !stdout.contains(".tmp"),
        "no partial archive is left: {stdout}"
    );
    // Every line of every original is in exactly one place: its log or one archive.
    let mut archived: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for entry in std::fs::read_dir(&out).unwrap() {
        let mut zip =
            zip::ZipArchive::new(std::fs::File::open(entry.unwrap().path()).unwrap()).unwrap();
        for i in 0..zip.len() {
            let mut member = zip.by_index(i).unwrap();
            let name = member
                .name()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_string();
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut member, &mut bytes).unwrap();
            assert!(archived.insert(name, bytes).is_none(), "archived twice");
        }
    }
    assert!(!archived.is_empty(), "what fits is archived");
    for (name, bytes) in &originals {
        let left = std::fs::read(logs.join(name)).ok();
        match (archived.get(name), left) {
            (Some(kept), None) => assert_eq!(kept, bytes, "{name}"),
            (None, Some(left)) => assert_eq!(&left, bytes, "{name}"),
            (a, l) => panic!("{name}: archived {}, left {}", a.is_some(), l.is_some()),
        }
    }
}

/// Every line `tag N` found in the live files under `dir` (any depth, hidden folders too) and
/// in every archive entry.
fn lines_found(fx: &Fixture, dir: &Path, tag: &str) -> Vec<u64> {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, out);
            } else if let Ok(text) = std::fs::read(&path) {
                out.push(String::from_utf8_lossy(&text).into_owned());
            }
        }
    }
    let mut texts = Vec::new();
    walk(dir, &mut texts);
    texts.extend(
        fx.entries()
            .into_iter()
            .map(|e| String::from_utf8_lossy(&e.1).into_owned()),
    );
    let prefix = format!("{tag} ");
    let mut found: Vec<u64> = texts
        .iter()
        .flat_map(|t| t.lines())
        .filter_map(|l| l.strip_prefix(&prefix)?.parse().ok())
        .collect();
    found.sort();
    found
}

#[test]
fn a_program_opening_an_original_while_the_group_is_deleted_loses_no_line() {
    let fx = Fixture::new();
    for i in 0..3000 {
        fx.file(
            &fx.logs.join(format!("a-{i:04}.log")),
            "old\n",
            "2026-11-10T12:00:00Z",
        );
    }
    let target = fx.logs.join("zz-target.log");
    fx.file(&target, "old\n", "2026-11-10T12:00:00Z");
    let first = fx.logs.join("a-0000.log");
    let done = fx.logs.join("../done");
    // A daemon (another process: runner does not count its own) that opens `zz-target.log`
    // for appending as soon as the first original disappears, and writes its 50 lines once
    // the rotation is over.
    let mut daemon = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "echo ready; while [ -e '{first}' ]; do :; done; exec 3>>'{target}'; \
             while [ ! -e '{done}' ]; do sleep 0.01; done; \
             for i in $(seq 0 49); do echo \"daemon $i\" >&3; done",
            first = first.display(),
            target = target.display(),
            done = done.display()
        ))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(daemon.stdout.as_mut().unwrap()),
        &mut ready,
    )
    .unwrap();
    let summary = fx.run("2026-11-28T09:00:00Z");
    std::fs::write(&done, "").unwrap();
    daemon.wait().unwrap();
    assert!(summary.problems.is_empty(), "{:?}", summary.problems);
    assert!(summary.archived_files >= 3000, "{}", summary.line());
    assert_eq!(
        lines_found(&fx, &fx.logs, "daemon"),
        (0..50).collect::<Vec<_>>(),
        "lines lost: {}",
        summary.line()
    );
}

#[test]
fn a_writer_that_never_reopens_is_named_and_waited_for_not_called_corrupt() {
    let mut fx = Fixture::new();
    let log = fx.logs.join("app.log");
    fx.spec.max_size = Some(100);
    fx.spec.settle = Duration::from_millis(100);
    // Big enough that copying it takes a while, so the writer's next line lands meanwhile.
    std::fs::write(&log, log_text("big", 60_000)).unwrap();
    // A writer that keeps its log open, writes a line now and then, and never reopens it.
    let writer = spawn_ready(
        "bash",
        &format!(
            "exec 3>>'{}'; echo ready; i=0; while :; do echo \"line $i\" >&3; i=$((i+1)); sleep 0.2; done",
            log.display()
        ),
    );
    let pid = writer.id().to_string();
    let _stop = KillOnDrop(writer);
    for _ in 0..6 {
        let summary = fx.rotation().run(Utc::now(), &mut |_| Flow::Continue);
        assert!(summary.problems.is_empty(), "{:?}", summary.problems);
        assert!(
            summary
                .skipped
                .iter()
                .any(|s| s.contains(&pid) && s.contains("postrotate")),
            "{:?}",
            summary.skipped
        );
        std::thread::sleep(Duration::from_millis(150));
        // The dry run asks the run's question: the renamed file still written waits, it is
        // not one the run would archive.
        let plan = fx.rotation().plan(Utc::now());
        assert!(
            plan.summary.skipped.iter().any(|s| s.contains(&pid)),
            "{:?}",
            plan.summary.skipped
        );
    }
    let archives = fx.archives();
    assert!(
        archives
            .iter()
            .all(|p| !p.to_string_lossy().ends_with(".corrupt")),
        "{archives:?}"
    );
    assert!(fx.entries().is_empty(), "no copy piles up: {archives:?}");
}

/// Kills a helper process when the test ends, failed or not (a writer left running would
/// hold the test's output open).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn after_a_run_stopped_between_verify_and_delete_the_plan_is_what_the_run_does() {
    for stop_at in [Step::Verified, Step::MidDelete] {
        let mut fx = Fixture::new();
        fx.spec.keep_archives = Some(1);
        for name in ["a.log", "b.log"] {
            fx.file(
                &fx.logs.join(name),
                &log_text(name, 50),
                "2026-11-01T10:00:00Z",
            );
        }
        fx.rotation().run(t("2026-11-28T09:00:00Z"), &mut |step| {
            if step == stop_at {
                Flow::Stop
            } else {
                Flow::Continue
            }
        });
        let now = t("2026-11-28T10:00:00Z");
        let plan = fx.rotation().plan(now);
        let summary = fx.rotation().run(now, &mut |_| Flow::Continue);
        assert!(summary.problems.is_empty(), "{:?}", summary.problems);
        assert_eq!(
            (plan.candidates.len(), plan.archives),
            (summary.archived_files, summary.archives_written.len()),
            "{stop_at:?}: the plan said {plan:?}; the run did {}",
            summary.line()
        );
        assert_eq!(
            plan.expired
                .iter()
                .map(|(p, _)| p.clone())
                .collect::<Vec<_>>(),
            summary.archives_deleted,
            "{stop_at:?}: {}",
            summary.line()
        );
        assert_eq!(plan.recovered.len(), summary.recovered, "{stop_at:?}");
        assert_eq!(fx.entries().len(), 2, "{stop_at:?}: each file once");
    }
}

#[test]
fn a_percent_in_a_name_never_collides_with_an_escaped_byte_nor_blocks_the_group() {
    use std::os::unix::ffi::OsStrExt;
    let fx = Fixture::new();
    let raw = fx.file(
        &fx.logs.join(std::ffi::OsStr::from_bytes(b"bad\xff.log")),
        "raw\n",
        "2026-11-10T12:00:00Z",
    );
    let percent = fx.file(
        &fx.logs.join("bad%FF.log"),
        "percent\n",
        "2026-11-10T12:00:00Z",
    );
    let good = fx.file(&fx.logs.join("good.log"), "good\n", "2026-11-10T12:00:00Z");
    let summary = fx.run("2026-11-28T09:00:00Z");
    assert_eq!(summary.problems, Vec::<String>::new());
    assert_eq!(summary.archived_files, 3, "{}", summary.line());
    let mut contents: Vec<Vec<u8>> = fx.entries().into_iter().map(|e| e.1).collect();
    contents.sort();
    let mut want = vec![raw, percent, good];
    want.sort();
    assert_eq!(contents, want);
    let mut names: Vec<String> = fx.entries().into_iter().map(|e| e.0).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 3, "{names:?}");
}

#[test]
fn look_alikes_of_the_jobs_archive_names_are_never_touched() {
    let mut fx = Fixture::new();
    fx.spec.archive_max_age = Some(DAY);
    fx.spec.keep_archives = Some(1);
    std::fs::create_dir_all(&fx.spec.archive_dir).unwrap();
    let look_alikes = [
        "rotate-logs- 2024101T000000-1.zip",
        "rotate-logs-20240101T000000-01.zip",
        "rotate-logs-20240101T000000-0.zip",
        "rotate-logs-20240101T000000-+1.zip",
        "rotate-logs-20240101T000000- 1.zip",
        "rotate-logs-20240101T000000-1 .zip",
        "rotate-logs-2024101T0000000-1.zip",
        "rotate-logs- 2024101T000000-1.zip.tmp",
        "rotate-logs-20240101T000000-01.zip.tmp",
        "rotate-logs-20240101T000000-01.zip.corrupt",
    ];
    for name in look_alikes {
        std::fs::write(fx.spec.archive_dir.join(name), "a user's file").unwrap();
    }
    let own = fx
        .spec
        .archive_dir
        .join("rotate-logs-20240101T000000-1.zip");
    std::fs::write(&own, "").unwrap();
    fx.file(&fx.logs.join("old.log"), "old\n", "2026-11-10T12:00:00Z");
    let summary = fx.run("2026-11-28T09:00:00Z");
    for name in look_alikes {
        assert!(
            fx.spec.archive_dir.join(name).exists(),
            "{name} was taken for the job's own: {}",
            summary.line()
        );
    }
    assert!(!own.exists(), "the job's own expired archive is deleted");
}

/// A postrotate that sends SIGUSR1 to `target`.
fn sigusr1(target: runner::config::SignalTarget) -> runner::config::Postrotate {
    runner::config::Postrotate::Signal {
        signal: libc::SIGUSR1,
        name: "SIGUSR1".into(),
        target,
    }
}

/// Runs the job on one big old log, cancelled as soon as its archive is being written, and
/// checks the run stopped with nothing archived and the log untouched.
fn cancel_while_compressing(fx: &Fixture) -> Summary {
    let log = fx.logs.join("big.log");
    let original = fx.file(&log, &log_text("b", 200_000), "2026-11-10T12:00:00Z");
    let cancel = tokio_util::sync::CancellationToken::new();
    // Cancelled while the archive is being written: the run stops at its next step.
    let watcher = {
        let (cancel, dir) = (cancel.clone(), fx.spec.archive_dir.clone());
        std::thread::spawn(move || {
            let start = std::time::Instant::now();
            while start.elapsed() < Duration::from_secs(30) {
                let tmp = std::fs::read_dir(&dir)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .any(|e| e.file_name().to_string_lossy().ends_with(".zip.tmp"));
                if tmp {
                    cancel.cancel();
                    return;
                }
                std::thread::yield_now();
            }
        })
    };
    let summary = runner::rotate::run_job(
        "rotate-logs",
        &fx.spec,
        &fx.data,
        t("2026-11-28T09:00:00Z"),
        &cancel,
    );
    watcher.join().unwrap();
    assert!(cancel.is_cancelled());
    assert_eq!(summary.archived_files, 0, "{}", summary.line());
    assert_eq!(std::fs::read(&log).unwrap(), original);
    summary
}

#[test]
fn a_postrotate_signal_to_a_process_that_is_not_running_is_not_a_failure() {
    let mut fx = Fixture::new();
    fx.spec.max_size = Some(10);
    fx.spec.postrotate = Some(sigusr1(runner::config::SignalTarget::Process(
        "no-such-daemon".into(),
    )));
    let log = fx.logs.join("app.log");
    std::fs::write(&log, log_text("a", 20)).unwrap();
    let summary = fx.rotation().run(Utc::now(), &mut |_| Flow::Continue);
    assert_eq!(summary.problems, Vec::<String>::new());
    assert_eq!(summary.archived_files, 1, "{}", summary.line());
    assert!(
        summary.skipped.iter().any(|s| s.contains("no-such-daemon")),
        "{:?}",
        summary.skipped
    );
}

#[test]
fn a_cancelled_rotation_leaves_no_unfinished_archive() {
    let fx = Fixture::new();
    cancel_while_compressing(&fx);
    assert_eq!(fx.archives(), Vec::<PathBuf>::new(), "nothing left behind");
}

#[test]
fn the_summary_line_says_what_happened_when_originals_are_kept() {
    let fx = Fixture::new();
    let log = fx.logs.join("held.log");
    fx.file(&log, &log_text("h", 40), "2026-11-10T12:00:00Z");
    let writer = KillOnDrop(holding_open(&log));
    set_mtime(&log, t("2026-11-10T12:00:00Z"));
    let kept = fx.run("2026-11-28T09:00:00Z").line();
    assert!(!kept.contains("0 B into"), "{kept}");
    assert!(kept.contains("1 file copied into 1 new archive"), "{kept}");
    assert!(kept.contains("kept in place"), "{kept}");
    drop(writer);
    // Nothing was interrupted: the original was kept for its writer.
    let later = fx.run("2026-11-28T09:10:00Z").line();
    assert!(!later.contains("interrupted"), "{later}");
    assert!(
        later.contains("1 original already in an archive deleted"),
        "{later}"
    );
}

#[test]
fn a_postrotate_signal_reaches_a_process_whose_name_is_longer_than_the_kernel_keeps() {
    let mut fx = Fixture::new();
    // `comm` keeps 15 bytes of this name; the rotation must still find the process.
    let name = "a-long-daemon-name-of-runner";
    let program = fx.logs.join(format!("../{name}"));
    std::fs::copy("/bin/sleep", &program).unwrap();
    let daemon = std::process::Command::new(&program)
        .arg("60")
        .spawn()
        .unwrap();
    let mut daemon = KillOnDrop(daemon);
    std::thread::sleep(Duration::from_millis(100));
    fx.spec.max_size = Some(10);
    fx.spec.postrotate = Some(sigusr1(runner::config::SignalTarget::Process(name.into())));
    std::fs::write(fx.logs.join("app.log"), log_text("a", 20)).unwrap();
    let summary = fx.rotation().run(Utc::now(), &mut |_| Flow::Continue);
    assert_eq!(summary.problems, Vec::<String>::new());
    let mut exited = None;
    for _ in 0..100 {
        exited = daemon.0.try_wait().unwrap();
        if exited.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        exited.and_then(|s| s.signal()),
        Some(libc::SIGUSR1),
        "{:?}",
        summary.skipped
    );
}

#[test]
fn a_rotation_cancelled_while_compressing_names_the_file_that_cannot_finish() {
    let fx = Fixture::new();
    let summary = cancel_while_compressing(&fx);
    assert!(
        summary
            .skipped
            .iter()
            .any(|s| s.contains("big.log") && s.contains("timeout")),
        "{:?}",
        summary.skipped
    );
}

/// Writes `etc/jobs.yaml` under `dir` with a data_dir of `srv/lib/runner` (its metrics folder
/// made) and one daily rotate job on `paths`; returns the data_dir and the jobs file.
fn rotate_jobs_with_data_dir(dir: &Path, paths: &str) -> (PathBuf, PathBuf) {
    let data = dir.join("srv/lib/runner");
    std::fs::create_dir_all(data.join("metrics")).unwrap();
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    let file = dir.join("etc/jobs.yaml");
    std::fs::write(
        &file,
        format!(
            "data_dir: {}\njobs:\n  rot:\n    type: rotate\n    schedule: \"0 3 * * *\"\n    paths: [\"{paths}\"]\n    max_age: 7d\n",
            data.display()
        ),
    )
    .unwrap();
    (data, file)
}

#[test]
fn a_rotate_path_can_name_runners_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let (data, file) = rotate_jobs_with_data_dir(dir.path(), "${data_dir}/metrics/*.jsonl");
    let old = data.join("metrics/2026-01-01.jsonl");
    std::fs::write(&old, "{}\n").unwrap();
    set_mtime(&old, Utc::now() - chrono::Duration::days(20));
    let output = crate::support::run(&["run", "rot", "--jobs", file.to_str().unwrap()]);
    let err = crate::support::stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{err}");
    assert!(err.contains("1 file archived"), "{err}");
    assert!(!old.exists());
}

#[test]
fn check_warns_when_a_rotate_job_misses_runners_own_logs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("var/metrics")).unwrap();
    let (_data, file) = rotate_jobs_with_data_dir(dir.path(), "../var/metrics/*.jsonl");
    let output = crate::support::run(&["check", "--jobs", file.to_str().unwrap()]);
    let all = format!(
        "{}{}",
        crate::support::stdout(&output),
        crate::support::stderr(&output)
    );
    assert!(all.contains("not runner's own"), "{all}");
    assert!(all.contains("${data_dir}/metrics/*.jsonl"), "{all}");
}
