//! The servicenow_fetch job against a fake instance: every page to the end, a row edited between
//! pages, 429 and an HTML page on the way, incremental runs, auth errors, and dry runs.

use serde_json::{Value, json};

use crate::fake_servicenow::{Between, FakeServiceNow, error_body};
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
    let output = run(&["run", "sync", "--jobs", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "Retry-After was not waited for"
    );
    let out = stdout(&output);
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
    let output = run(&["run", "sync", "--jobs", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let watermark = cache(dir.path())["watermark"].as_str().unwrap().to_string();
    sn.insert(json!({
        "sys_id": "f".repeat(32), "number": "INC0099999", "short_description": "new one", "state": "1",
        "category": "performance", "opened_at": "2026-11-28 08:00:00", "sys_updated_on": "2026-11-28 08:00:00"
    }));
    let before = sn.server.requests().len();
    let output = run(&["run", "sync", "--jobs", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let out = stdout(&output);
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
    let output = run(&["run", "sync", "--jobs", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
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
