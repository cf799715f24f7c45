//! The servicenow_fetch job against a fake instance: every page to the end, a row edited between
//! pages, 429 and an HTML page on the way, incremental runs, auth errors, and dry runs; and a
//! hostile instance that cannot exhaust the agent (repeated pages, oversized pages, endless
//! rows, huge fields, endless bodies).

use serde_json::{Value, json};

use crate::fake_servicenow::{Between, EndlessBody, FakeServiceNow, error_body, synthetic_index};
use crate::http_server::Response;
use crate::support::{jobs_file, run, stderr, stdout};

/// Not in number order, so ordering by sys_id differs from insertion.
fn sys_id(n: u32) -> String {
    format!("{:032x}", (u64::from(n) * 7919) % 100_003)
}

/// 237 incidents, updated a few seconds apart with some sharing a second (keyset ties).
fn seed(sn: &FakeServiceNow) {
    for n in 0..237u32 {
        let updated = 1_795_000_000 + i64::from(n / 3) * 60;
        let updated = chrono::DateTime::from_timestamp(updated, 0)
            .unwrap()
            .format("%Y-%m-%d %H:%M:%S")
            .to_string();
        let opened = chrono::DateTime::from_timestamp(1_794_900_000 + i64::from(n) * 300, 0)
            .unwrap()
            .format("%Y-%m-%d %H:%M:%S")
            .to_string();
        let state = ["1", "2", "3", "6", "7", "8", "42"][n as usize % 7];
        let priority = ["1", "2", "3", "4", "5"][n as usize % 5];
        let resolved = if state == "6" {
            updated.clone()
        } else {
            String::new()
        };
        sn.insert(json!({
            "sys_id": sys_id(n),
            "number": format!("INC{:07}", 20_000 + n),
            "short_description": format!("slow checkout {n}"),
            "state": state,
            "priority": priority,
            "category": "performance",
            "opened_at": opened,
            "resolved_at": resolved,
            "sys_updated_on": updated,
        }));
    }
}

fn job(dir: &std::path::Path, sn: &FakeServiceNow, password: &str) -> std::path::PathBuf {
    jobs_file(
        dir,
        &format!(
            "notifiers:\n  sn: {{ type: servicenow, instance: \"{}\", username: admin, password: \"{password}\", retry_initial: 20ms, retry_max: 100ms }}\njobs:\n  sync:\n    type: servicenow_fetch\n    schedule: \"0 * * * *\"\n    from: sn\n    query: \"category=performance\"\n    page_size: 100\n",
            sn.url()
        ),
    )
}

/// Runs the sync job of `file`, checks it succeeds and returns its stdout.
fn sync_succeeds(file: &std::path::Path) -> String {
    let output = run(&["run", "sync", "--jobs", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    stdout(&output)
}

/// Runs the sync job of `file`, checks it fails and returns its stderr.
fn sync_fails(file: &std::path::Path) -> String {
    let output = run(&["run", "sync", "--jobs", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    stderr(&output)
}

fn cache(dir: &std::path::Path) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(dir.join("var/incidents/incidents.json")).unwrap(),
    )
    .unwrap()
}

#[test]
fn every_incident_lands_once_despite_an_edit_between_pages_a_429_and_an_html_page() {
    let sn = FakeServiceNow::start(Some("admin:pw"), None);
    seed(&sn);
    let edited = sys_id(5);
    {
        let mut s = sn.state.lock().unwrap();
        // After page one: someone edits an incident of page one, then the instance says
        // "too many requests", then it answers with its hibernation page once.
        s.after_list.push((1, Between::Edit(edited.clone())));
        s.after_list.push((
            1,
            Between::Answer(error_body(429, "Too many requests", "").header("Retry-After", "1")),
        ));
        s.after_list.push((
            1,
            Between::Answer(
                Response::new(200, "<html>Instance hibernating</html>")
                    .header("Content-Type", "text/html"),
            ),
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = job(dir.path(), &sn, "pw");
    let started = std::time::Instant::now();
    let out = sync_succeeds(&file);
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "Retry-After was not waited for"
    );
    assert!(
        out.contains("full fetch: 238 rows in 3 pages: 237 new, 1 updated, 237 cached (2 retries)"),
        "{out}"
    );
    let cache = cache(dir.path());
    let incidents = cache["incidents"].as_object().unwrap();
    assert_eq!(incidents.len(), 237);
    let numbers: std::collections::BTreeSet<&str> = incidents
        .values()
        .map(|i| i["number"].as_str().unwrap())
        .collect();
    assert_eq!(numbers.len(), 237, "each once");
    assert_eq!(
        incidents[&edited]["short_description"],
        "edited between pages"
    );
    let first = &incidents[&sys_id(0)];
    assert_eq!(first["state_name"], "New");
    assert_eq!(first["priority_name"], "Critical");
    assert_eq!(
        first["opened_at"], "2026-11-17T07:20:00Z",
        "seeded as `2026-11-17 07:20:00`, UTC"
    );
    let custom = incidents.values().find(|i| i["state"] == "42").unwrap();
    assert_eq!(
        custom["state_name"], "42",
        "an unknown state keeps its code"
    );
    // Every page asked for stored values, without reference links, in keyset order.
    let lists: Vec<_> = sn
        .server
        .requests()
        .into_iter()
        .filter(|r| r.path() == "/api/now/table/incident")
        .collect();
    for r in &lists {
        assert_eq!(r.query("sysparm_display_value").as_deref(), Some("false"));
        assert_eq!(
            r.query("sysparm_exclude_reference_link").as_deref(),
            Some("true")
        );
        assert_eq!(r.query("sysparm_limit").as_deref(), Some("100"));
        assert!(
            r.query("sysparm_query")
                .unwrap()
                .ends_with("^ORDERBYsys_updated_on^ORDERBYsys_id")
        );
    }
    assert!(
        lists[1]
            .query("sysparm_query")
            .unwrap()
            .starts_with("category=performance^sys_updated_on>")
    );
}

#[test]
fn the_next_run_is_incremental() {
    let sn = FakeServiceNow::start(Some("admin:pw"), None);
    seed(&sn);
    let dir = tempfile::tempdir().unwrap();
    let file = job(dir.path(), &sn, "pw");
    sync_succeeds(&file);
    let watermark = cache(dir.path())["watermark"].as_str().unwrap().to_string();
    sn.insert(json!({
        "sys_id": "f".repeat(32), "number": "INC0099999", "short_description": "new one", "state": "1",
        "category": "performance", "opened_at": "2026-11-28 08:00:00", "sys_updated_on": "2026-11-28 08:00:00"
    }));
    let before = sn.server.requests().len();
    let out = sync_succeeds(&file);
    // The rows of the watermark's second again (they may have changed since), and the new one.
    assert!(
        out.starts_with("incremental fetch: 4 rows in 1 pages: 1 new, 3 updated, 238 cached"),
        "{out}"
    );
    let query = sn.server.requests()[before].query("sysparm_query").unwrap();
    assert_eq!(
        query,
        format!(
            "category=performance^sys_updated_on>={watermark}^ORDERBYsys_updated_on^ORDERBYsys_id"
        )
    );
    assert_eq!(cache(dir.path())["watermark"], "2026-11-28 08:00:00");
}

#[test]
fn a_refused_login_names_the_instance_not_the_password_and_writes_nothing() {
    let sn = FakeServiceNow::start(Some("admin:pw"), None);
    seed(&sn);
    let dir = tempfile::tempdir().unwrap();
    let file = job(dir.path(), &sn, "hunter2");
    let err = sync_fails(&file);
    assert!(
        err.contains(&format!(
            "ServiceNow {}: HTTP 401: User Not Authenticated",
            sn.url()
        )),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
    assert!(!dir.path().join("var/incidents/incidents.json").exists());
}

#[test]
fn dry_run_fetches_and_counts_without_writing() {
    let sn = FakeServiceNow::start(Some("admin:pw"), None);
    seed(&sn);
    let dir = tempfile::tempdir().unwrap();
    let file = job(dir.path(), &sn, "pw");
    let output = run(&["dry-run", "sync", "--jobs", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let out = stdout(&output);
    assert!(
        out.contains("full fetch: 237 rows in 3 pages: 237 new, 0 updated, 237 cached"),
        "{out}"
    );
    assert!(out.contains("nothing written"), "{out}");
    assert!(!dir.path().join("var/incidents").exists());
}

fn list_requests(sn: &FakeServiceNow) -> Vec<crate::http_server::Request> {
    sn.server
        .requests()
        .into_iter()
        .filter(|r| r.path() == "/api/now/table/incident")
        .collect()
}

fn job_with(dir: &std::path::Path, instance: &str, page_size: u32) -> std::path::PathBuf {
    jobs_file(
        dir,
        &format!(
            "notifiers:\n  sn: {{ type: servicenow, instance: \"{instance}\", username: admin, password: pw, timeout: 5s, retry_initial: 20ms, retry_max: 100ms }}\njobs:\n  sync:\n    type: servicenow_fetch\n    schedule: \"0 * * * *\"\n    from: sn\n    query: \"category=performance\"\n    page_size: {page_size}\n",
        ),
    )
}

#[test]
fn an_instance_that_ignores_the_keyset_and_repeats_a_page_stops_the_run_at_once() {
    let sn = FakeServiceNow::start(Some("admin:pw"), None);
    seed(&sn);
    {
        let mut s = sn.state.lock().unwrap();
        s.ignore_keyset = true;
        // Without the check the client would page for ever: the stand-in refuses after 50.
        s.max_lists = Some(50);
    }
    let dir = tempfile::tempdir().unwrap();
    let file = job(dir.path(), &sn, "pw");
    let err = sync_fails(&file);
    assert!(
        err.contains("page 2 repeats rows already fetched")
            && err.contains("ignores the keyset condition"),
        "{err}"
    );
    assert_eq!(list_requests(&sn).len(), 2, "the second page gave it away");
    // The first page is kept; the watermark did not move, so the next run asks again.
    let cache = cache(dir.path());
    assert_eq!(cache["incidents"].as_object().unwrap().len(), 100);
    assert_eq!(cache["watermark"], Value::Null);
}

#[test]
fn a_page_with_more_rows_than_asked_for_is_refused_and_not_kept() {
    let sn = FakeServiceNow::start(Some("admin:pw"), None);
    seed(&sn);
    // Page one honours `sysparm_limit`; page two brings every remaining row at once.
    sn.state.lock().unwrap().ignore_limit_from = Some(1);
    let dir = tempfile::tempdir().unwrap();
    let file = job(dir.path(), &sn, "pw");
    let err = sync_fails(&file);
    assert!(
        err.contains("page 2 has 137 rows, more than the 100 asked for (`sysparm_limit`)"),
        "{err}"
    );
    assert_eq!(
        list_requests(&sn).len(),
        2,
        "a refused page is not asked again"
    );
    let cache = cache(dir.path());
    assert_eq!(
        cache["incidents"].as_object().unwrap().len(),
        100,
        "page one only"
    );
    assert_eq!(cache["watermark"], Value::Null);
}

#[test]
fn endless_new_rows_stop_at_the_per_run_cap_and_the_next_run_goes_on_from_there() {
    let sn = FakeServiceNow::start(Some("admin:pw"), None);
    {
        let mut s = sn.state.lock().unwrap();
        s.synthetic = Some(u64::MAX);
        s.max_lists = Some(30);
    }
    let dir = tempfile::tempdir().unwrap();
    let file = job_with(dir.path(), &sn.url(), 10_000);
    let out = sync_succeeds(&file);
    let watermark = crate::fake_servicenow::synthetic_row(99_999)["sys_updated_on"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        out.contains(&format!(
            "full fetch: 100000 rows in 10 pages: 100000 new, 0 updated, 100000 cached; stopped at 100000 rows, the most one run keeps; the next run goes on from {watermark}"
        )),
        "{out}"
    );
    assert_eq!(list_requests(&sn).len(), 10);
    assert_eq!(cache(dir.path())["watermark"], watermark.as_str());

    // The instance's rows end after all: the next run fetches the rest, from the watermark.
    {
        let mut s = sn.state.lock().unwrap();
        s.synthetic = Some(100_050);
    }
    let out = sync_succeeds(&file);
    assert!(
        out.contains("incremental fetch: 51 rows in 1 pages: 50 new, 1 updated, 100050 cached"),
        "{out}"
    );
    let lists = list_requests(&sn);
    assert_eq!(lists.len(), 11);
    let query = lists[10].query("sysparm_query").unwrap();
    assert!(
        query.contains(&format!("sys_updated_on>={watermark}")),
        "{query}"
    );
    let cache = cache(dir.path());
    let incidents = cache["incidents"].as_object().unwrap();
    assert_eq!(incidents.len(), 100_050, "nothing lost between the runs");
    assert_eq!(
        synthetic_index(cache["watermark"].as_str().unwrap()),
        100_049
    );
}

#[test]
fn a_huge_field_is_cut_to_4_kib_at_a_character_boundary_before_it_is_cached() {
    let sn = FakeServiceNow::start(Some("admin:pw"), None);
    seed(&sn);
    // 1 MB of two-byte characters after one one-byte one: a cut at 4093 bytes would split one.
    let huge = format!("x{}", "é".repeat(500_000));
    sn.insert(json!({
        "sys_id": "e".repeat(32), "number": "INC0077777", "short_description": huge,
        "state": "1", "category": format!("perf{}", "y".repeat(100_000)),
        "opened_at": "2026-11-28 08:00:00", "sys_updated_on": "2026-11-28 08:00:00"
    }));
    // The query matches the category whatever its length: ask for everything.
    let dir = tempfile::tempdir().unwrap();
    let file = jobs_file(
        dir.path(),
        &format!(
            "notifiers:\n  sn: {{ type: servicenow, instance: \"{}\", username: admin, password: pw }}\njobs:\n  sync:\n    type: servicenow_fetch\n    schedule: \"0 * * * *\"\n    from: sn\n    page_size: 100\n",
            sn.url()
        ),
    );
    let out = sync_succeeds(&file);
    assert!(out.contains("238 cached"), "{out}");
    let cache = cache(dir.path());
    let incident = &cache["incidents"][&"e".repeat(32)];
    for value in [
        &incident["short_description"],
        &incident["fields"]["category"],
    ] {
        let value = value.as_str().unwrap();
        assert!(value.len() <= 4096, "{} bytes kept", value.len());
        assert!(value.len() >= 4090, "{} bytes kept", value.len());
        assert!(value.ends_with('…'), "marked as cut");
    }
    let short = incident["short_description"].as_str().unwrap();
    assert!(huge.starts_with(short.trim_end_matches('…')));
    let bytes = std::fs::metadata(dir.path().join("var/incidents/incidents.json"))
        .unwrap()
        .len();
    assert!(bytes < 512 * 1024, "the cache is {bytes} bytes");
}

#[test]
fn an_answer_larger_than_the_byte_cap_is_refused_unread() {
    // Declared: a `Content-Length` over the cap (1.6 MiB for 100 rows) is refused before
    // reading, and not asked again (the same request would get the same answer).
    let sn = FakeServiceNow::start(Some("admin:pw"), None);
    seed(&sn);
    let row = json!({
        "sys_id": "d".repeat(32), "number": "INC0066666", "state": "1",
        "short_description": "z".repeat(2 << 20), "sys_updated_on": "2026-11-28 08:00:00"
    });
    sn.answer_next(Response::json(200, json!({"result": [row]}).to_string()));
    let dir = tempfile::tempdir().unwrap();
    let file = job(dir.path(), &sn, "pw");
    let err = sync_fails(&file);
    assert!(
        err.contains("HTTP 200: the answer is larger than 1.6 MiB, the most runner reads for this request, so it was refused: lower the job's `page_size`"),
        "{err}"
    );
    assert_eq!(list_requests(&sn).len(), 1);
    assert!(!dir.path().join("var/incidents/incidents.json").exists());

    // Undeclared: a body that never ends is read up to the cap, then dropped.
    let endless = EndlessBody::start();
    let dir = tempfile::tempdir().unwrap();
    let file = job_with(dir.path(), &endless.url(), 100);
    let err = sync_fails(&file);
    assert!(err.contains("the answer is larger than 1.6 MiB"), "{err}");
    // What the server got out before the client hung up: the cap and what the sockets buffer,
    // not the 64 MiB a connection gives up at (nor six of them, retried).
    let sent = endless.sent.load(std::sync::atomic::Ordering::SeqCst);
    assert!(sent < EndlessBody::GIVE_UP / 2, "{sent} bytes sent");
}
