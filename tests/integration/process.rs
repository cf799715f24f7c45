//! The binary as a process: signals, exit codes and locks.

use crate::support::{PATIENCE, Running, command, jobs_file, root, run, stderr, stdout};
use std::time::Duration;

const EVERY_SECOND: &str = "jobs:\n  tick:\n    type: monitor\n    schedule: \"@every 1s\"\n";

#[test]
fn sigterm_stops_the_scheduler_with_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    // A grace longer than the test waits: a clean stop does not need it.
    let file = jobs_file(dir.path(), &format!("shutdown_grace: 10m\n{EVERY_SECOND}"));
    let mut runner = Running::spawn(command(&["--jobs", file.to_str().unwrap(), "-v"]));
    runner.wait_for_line("job scheduled", PATIENCE);
    runner.wait_for_line("run finished", PATIENCE);
    runner.signal("TERM");
    let (code, _) = runner.wait_exit(PATIENCE);
    assert_eq!(code, Some(0), "{}", runner.seen.join("\n"));
    runner.wait_for_line("runner stopped", PATIENCE);
    assert!(
        !runner.seen.iter().any(|l| l.contains("grace period over")),
        "{}",
        runner.seen.join("\n")
    );
}

#[test]
fn sigint_stops_the_scheduler_with_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let file = jobs_file(dir.path(), EVERY_SECOND);
    let mut runner = Running::spawn(command(&["--jobs", file.to_str().unwrap()]));
    runner.wait_for_line("job scheduled", PATIENCE);
    runner.signal("INT");
    let (code, _) = runner.wait_exit(PATIENCE);
    assert_eq!(code, Some(0));
}

#[test]
fn a_second_scheduler_on_the_same_data_dir_is_refused_with_the_pid() {
    let dir = tempfile::tempdir().unwrap();
    let file = jobs_file(dir.path(), EVERY_SECOND);
    let file = file.to_str().unwrap();
    let mut first = Running::spawn(command(&["--jobs", file]));
    first.wait_for_line("job scheduled", PATIENCE);
    let second = run(&["--jobs", file]);
    assert_eq!(second.status.code(), Some(3));
    let err = stderr(&second);
    assert!(
        err.contains(&format!("is already held by pid {}", first.child.id())),
        "{err}"
    );
    first.signal("TERM");
    assert_eq!(first.wait_exit(PATIENCE).0, Some(0));
    // After a clean stop there is nothing to take over, and nothing is said about it.
    let mut third = Running::spawn(command(&["--jobs", file]));
    third.wait_for_line("job scheduled", PATIENCE);
    assert!(
        !third.seen.iter().any(|l| l.contains("took over")),
        "{}",
        third.seen.join("\n")
    );
    // A runner killed outright leaves its pid in the lock file: the next one takes it over.
    third.signal("KILL");
    third.wait_exit(PATIENCE);
    let mut fourth = Running::spawn(command(&["--jobs", file]));
    let line = fourth.wait_for_line("took over the lock", PATIENCE);
    assert!(
        line.contains(&format!("pid={}", third.child.id())),
        "{line}"
    );
    fourth.signal("TERM");
    assert_eq!(fourth.wait_exit(PATIENCE).0, Some(0));
}

#[test]
fn run_job_is_refused_while_the_job_lock_is_held() {
    let dir = tempfile::tempdir().unwrap();
    let file = jobs_file(dir.path(), EVERY_SECOND);
    let lock_path = runner::lock::job_lock_path(&dir.path().join("var"), "tick");
    let held = runner::lock::LockFile::try_acquire(&lock_path, "job `tick`").unwrap();
    let output = run(&["run", "tick", "--jobs", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert_eq!(
        stderr(&output),
        format!(
            "error: job `tick` is already running in pid {}\n",
            std::process::id()
        )
    );
    drop(held);
    let output = run(&["run", "tick", "--jobs", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn run_names_the_jobs_when_the_name_is_wrong() {
    let output = run(&["run", "monitr", "--jobs", "jobs/jobs.yaml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains(
        "error: no job named `monitr` in jobs/jobs.yaml (jobs: monitor, servicenow-sync, weekly-report, rotate-logs)"
    ));
}

#[test]
fn run_of_a_job_that_is_off_says_why_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(crate::support::root().join("jobs/jobs.yaml")).unwrap();
    let file = dir.path().join("jobs.yaml");
    std::fs::write(&file, shipped.replace("data_dir: ../var", "data_dir: var")).unwrap();
    let output = run(&["run", "servicenow-sync", "--jobs", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "job `servicenow-sync` is off: its ServiceNow notifier `servicenow` is off: `instance` is empty; nothing to do\n"
    );
}

#[test]
fn jobs_lists_three_next_runs_in_the_file_timezone() {
    let output = run(&["jobs", "--jobs", "jobs/examples/central-europe.yaml"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let out = stdout(&output);
    assert!(
        out.starts_with("jobs in jobs/examples/central-europe.yaml (times in Europe/Berlin)\n"),
        "{out}"
    );
    let daily = out
        .split("daily-report (report)")
        .nth(1)
        .expect("daily-report listed");
    let times: Vec<&str> = daily
        .lines()
        .filter(|l| l.contains(" 09:00:00 +0"))
        .take(3)
        .collect();
    assert_eq!(times.len(), 3, "{out}");
    assert!(out.contains("schedule: */5 * * * * *"), "{out}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = jobs_file(dir.path(), EVERY_SECOND);
    let output = run(&[
        "run",
        "tick",
        "--jobs",
        file.to_str().unwrap(),
        "--log-format",
        "json",
    ]);
    assert_eq!(output.status.code(), Some(0));
    let err = stderr(&output);
    assert!(!err.is_empty());
    for line in err.lines() {
        let value: serde_json::Value = serde_json::from_str(line).expect("a JSON object");
        assert!(
            value.get("level").is_some() && value.get("message").is_some(),
            "{line}"
        );
    }
}

/// Every line of stderr is a JSON object with a level and a message.
#[track_caller]
fn all_json(err: &str) -> Vec<serde_json::Value> {
    assert!(!err.is_empty());
    err.lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON object ({e}): {line}"));
            assert!(
                value.get("level").is_some() && value.get("message").is_some(),
                "{line}"
            );
            value
        })
        .collect()
}

#[test]
fn in_json_mode_errors_and_diagnostics_are_json_too() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "data_dir: var\njobs:\n  m:\n    type: monitr\n    schedule: \"@every 1s\"\n",
    )
    .unwrap();
    let bad = bad.to_str().unwrap();
    // A broken file at start, and `check` of it: each problem located.
    for args in [vec!["--jobs", bad], vec!["check", "--jobs", bad]] {
        let output = run(&[&args[..], &["--log-format", "json"]].concat());
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let lines = all_json(&stderr(&output));
        let problem = lines
            .iter()
            .find(|l| l["message"].as_str().unwrap().contains("monitr"))
            .expect("the problem");
        assert_eq!(problem["line"], 4, "{problem}");
        assert_eq!(problem["field"], "jobs.m", "{problem}");
        assert!(problem["file"].as_str().unwrap().ends_with("bad.yaml"));
    }
    // An unknown job name, and the lock held by a running scheduler.
    let file = jobs_file(dir.path(), EVERY_SECOND);
    let file = file.to_str().unwrap();
    let output = run(&["run", "nosuch", "--jobs", file, "--log-format", "json"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        all_json(&stderr(&output))[0]["message"]
            .as_str()
            .unwrap()
            .contains("no job named `nosuch`")
    );
    let mut first = Running::spawn(command(&["--jobs", file]));
    first.wait_for_line("job scheduled", PATIENCE);
    let output = run(&["--jobs", file, "--log-format", "json"]);
    assert_eq!(output.status.code(), Some(3));
    all_json(&stderr(&output));
    first.signal("TERM");
    first.wait_exit(PATIENCE);
}

#[test]
fn small_messages_say_what_holds() {
    // A path that is not there is a usage error, not a failed test.
    let output = run(&["test", "/nonexistent/rules"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("no such file or folder: /nonexistent/rules"));
    // Sub-second schedules list distinct times.
    let dir = tempfile::tempdir().unwrap();
    let file = jobs_file(
        dir.path(),
        "timezone: UTC\njobs:\n  fast:\n    type: monitor\n    schedule: \"@every 500ms\"\n",
    );
    let output = run(&["jobs", "--jobs", file.to_str().unwrap()]);
    let listing = stdout(&output);
    let times: Vec<&str> = listing
        .lines()
        .filter(|l| l.contains("+00:00"))
        .map(str::trim)
        .collect::<Vec<_>>();
    let mut distinct = times.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "{times:?}");
    // A TZ that names no zone is said, not silently UTC.
    let file = jobs_file(dir.path(), EVERY_SECOND);
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_runner"));
    cmd.args(["check", "--jobs", file.to_str().unwrap()])
        .env("TZ", "Not/AZone");
    let output = cmd.output().unwrap();
    assert!(
        stderr(&output).contains("the machine's timezone cannot be determined"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn usage_errors_exit_2() {
    let output = run(&["--no-such-flag"]);
    assert_eq!(output.status.code(), Some(2));
    let output = run(&["--version"]);
    assert_eq!(output.status.code(), Some(0));
    assert!(stdout(&output).starts_with("runner "));
}

/// Processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
        })
        .collect()
}

#[test]
fn no_command_a_probe_started_outlives_runner() {
    for (marker, second_signal) in [("31.4159", false), ("31.2718", true)] {
        let dir = tempfile::tempdir().unwrap();
        let file = jobs_file(
            dir.path(),
            &format!(
                "shutdown_grace: 1s\njobs:\n  m:\n    type: monitor\n    schedule: \"@every 1s\"\n    probes: [{{ type: command, name: slow, shell: \"sleep {marker}; echo 1\", timeout_ms: 60000 }}]\n"
            ),
        );
        let mut runner = Running::spawn(command(&["--jobs", file.to_str().unwrap()]));
        runner.wait_for_line("job scheduled", PATIENCE);
        let start = std::time::Instant::now();
        while processes_with(marker).is_empty() {
            assert!(start.elapsed() < PATIENCE, "the command never started");
            std::thread::sleep(Duration::from_millis(20));
        }
        runner.signal("TERM");
        if second_signal {
            runner.wait_for_line("stopping", PATIENCE);
            runner.signal("TERM");
        }
        let (code, _) = runner.wait_exit(PATIENCE);
        assert_eq!(code, Some(if second_signal { 130 } else { 0 }), "{marker}");
        // Killed with SIGKILL on the way out: gone, or a zombie of an exited parent for an
        // instant; give the kernel a moment.
        let start = std::time::Instant::now();
        while !processes_with(marker).is_empty() {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "{marker}: `sleep` outlived runner: {:?}",
                processes_with(marker)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn proc_root_and_host_proc_point_the_probes_at_another_tree() {
    let dir = tempfile::tempdir().unwrap();
    let file = jobs_file(
        dir.path(),
        "jobs:\n  m: { type: monitor, schedule: \"@every 10s\", probes: [{ type: memory }, { type: load }] }\n",
    );
    let fixture = root().join("tests/fixtures/host/proc");
    let sys_fixture = root().join("tests/fixtures/host/sys");
    let by_flag = run(&[
        "run",
        "m",
        "--jobs",
        file.to_str().unwrap(),
        "--proc-root",
        fixture.to_str().unwrap(),
        "--sys-root",
        sys_fixture.to_str().unwrap(),
    ]);
    assert_eq!(by_flag.status.code(), Some(0), "{}", stderr(&by_flag));
    let by_env = command(&["run", "m", "--jobs", file.to_str().unwrap()])
        .env("HOST_PROC", &fixture)
        .env("HOST_SYS", &sys_fixture)
        .output()
        .unwrap();
    assert_eq!(by_env.status.code(), Some(0), "{}", stderr(&by_env));
    let mut samples = Vec::new();
    for entry in std::fs::read_dir(dir.path().join("var/metrics")).unwrap() {
        for line in std::fs::read_to_string(entry.unwrap().path())
            .unwrap()
            .lines()
        {
            samples.push(serde_json::from_str::<serde_json::Value>(line).unwrap());
        }
    }
    assert_eq!(samples.len(), 2);
    for sample in samples {
        let m = &sample["metrics"];
        assert_eq!(m["memory.used_percent"], 75.0, "{sample}");
        assert_eq!(m["memory.total_bytes"], 4_096_000_000.0, "{sample}");
        assert_eq!(m["load.load1"], 3.5, "{sample}");
        assert_eq!(m["load.load15"], 1.0, "{sample}");
        // The host's seven online CPUs (`0-6`), not this machine's.
        assert_eq!(m["load.load1_per_core"], 0.5, "{sample}");
    }
}

#[test]
fn under_systemd_it_says_ready_once_its_jobs_are_scheduled_and_stopping_at_the_signal() {
    let dir = tempfile::tempdir().unwrap();
    let file = jobs_file(
        dir.path(),
        "jobs:\n  m: { type: monitor, schedule: \"@every 1h\", probes: [{ type: load }] }\n",
    );
    let socket_path = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut cmd = command(&["--jobs", file.to_str().unwrap()]);
    cmd.env("NOTIFY_SOCKET", &socket_path);
    let mut running = Running::spawn(cmd);
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).expect("READY=1 within the patience");
    let ready = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert_eq!(ready, "READY=1\nSTATUS=1 job scheduled");
    running.signal("TERM");
    let n = socket.recv(&mut buf).expect("STOPPING=1 at the signal");
    assert_eq!(&buf[..n], b"STOPPING=1");
    assert_eq!(running.wait_exit(PATIENCE).0, Some(0));
}

#[test]
fn the_systemd_unit_asks_for_readiness_and_runs_flags_runner_takes() {
    let unit = std::fs::read_to_string(root().join("dist/runner.service")).unwrap();
    assert!(unit.contains("\nType=notify\n"), "{unit}");
    let dir = tempfile::tempdir().unwrap();
    let file = jobs_file(
        dir.path(),
        "jobs:\n  m: { type: monitor, schedule: \"@every 1h\", probes: [{ type: load }] }\n",
    );
    for key in ["ExecStartPre=", "ExecStart="] {
        let line = unit
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no {key}"));
        let args: Vec<String> = line[key.len()..]
            .split_whitespace()
            .skip(1)
            .map(|a| {
                if a == "/etc/runner/jobs/jobs.yaml" {
                    file.display().to_string()
                } else {
                    a.to_string()
                }
            })
            .collect();
        // The same command line, checking only (the scheduler itself is tested elsewhere).
        let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
        if !args.contains(&"check") {
            args.insert(0, "check");
        }
        let output = run(&args);
        assert_eq!(output.status.code(), Some(0), "{line}: {}", stderr(&output));
    }
}

#[test]
fn the_systemd_unit_is_hardened_without_taking_what_probes_need() {
    let unit = std::fs::read_to_string(root().join("dist/runner.service")).unwrap();
    // What the probes cannot do without: ping's raw socket, sock_diag sessions, every process.
    for needed in ["CapabilityBoundingSet=CAP_NET_RAW", "AF_NETLINK"] {
        assert!(unit.contains(needed), "{needed}");
    }
    for losing in [
        "ProtectProc=",
        "ProcSubset=",
        "PrivateNetwork=",
        "PrivateUsers=",
    ] {
        assert!(
            !unit.lines().any(|l| l.starts_with(losing)),
            "{losing} would lose a probe"
        );
    }
    // systemd's own rating, where systemd is installed (the bar: 3.0 or lower).
    let Ok(output) = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=yes"])
        .arg(root().join("dist/runner.service"))
        .output()
    else {
        return;
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let level: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for runner.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no overall level: {text}{}", stderr(&output)));
    assert!(level <= 3.0, "exposure {level}:\n{text}");
}

#[test]
fn the_units_install_steps_give_a_rotate_job_that_archives_runners_own_metrics() {
    let unit = std::fs::read_to_string(root().join("dist/runner.service")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (etc, state) = (dir.path().join("etc"), dir.path().join("state"));
    std::fs::create_dir_all(&state).unwrap();
    // The header's copy and edit steps, literally, with the two system folders moved here.
    for step in unit
        .lines()
        .filter_map(|l| l.strip_prefix("#   "))
        .filter(|l| l.starts_with("install -d /etc/runner") || l.starts_with("sed "))
    {
        let step = step
            .replace("/etc/runner", &etc.display().to_string())
            .replace("/var/lib/runner", &state.display().to_string());
        let status = std::process::Command::new("sh")
            .args(["-c", &step])
            .current_dir(root())
            .status()
            .unwrap();
        assert!(status.success(), "{step}");
    }
    let jobs = etc.join("jobs/jobs.yaml");
    let day = state.join("metrics/2026-01-01.jsonl");
    std::fs::create_dir_all(day.parent().unwrap()).unwrap();
    std::fs::write(&day, "{}\n").unwrap();
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_767_225_600);
    std::fs::File::options()
        .write(true)
        .open(&day)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let output = run(&["run", "rotate-logs", "--jobs", jobs.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(!day.exists(), "the old metrics day is archived and removed");
    let archives = std::fs::read_dir(state.join("archive")).unwrap().count();
    assert_eq!(archives, 1, "{}", stderr(&output));
}

#[test]
fn completions_and_the_manual_page_know_every_command() {
    for shell in ["bash", "zsh", "fish"] {
        let output = run(&["completions", shell]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{shell}: {}",
            stderr(&output)
        );
        let script = stdout(&output);
        for word in [
            "dry-run",
            "report",
            "--listen",
            "--proc-root",
            "completions",
        ] {
            // fish writes long options as `-l listen`.
            let word = match (shell, word.strip_prefix("--")) {
                ("fish", Some(long)) => format!("-l {long}"),
                _ => word.to_string(),
            };
            assert!(script.contains(&word), "{shell} lacks {word}");
        }
        if shell == "bash" {
            // bash itself reads it without a syntax error.
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("runner.bash");
            std::fs::write(&file, &script).unwrap();
            let checked = std::process::Command::new("bash")
                .arg("-n")
                .arg(&file)
                .output()
                .unwrap();
            assert!(
                checked.status.success(),
                "{}",
                String::from_utf8_lossy(&checked.stderr)
            );
        }
    }
    let output = run(&["man"]);
    assert_eq!(output.status.code(), Some(0));
    let page = stdout(&output);
    assert!(page.contains(".TH runner 1"), "{page}");
    for word in ["dry\\-run", "report", "\\-\\-listen"] {
        assert!(page.contains(word), "the manual lacks {word}");
    }
    assert_eq!(run(&["completions", "tcsh"]).status.code(), Some(2));
}

/// Copies a folder of the repository into `to`, as the Dockerfile's COPY does.
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn the_dockerfile_copies_what_exists_and_its_image_layout_runs_the_shipped_jobs_file() {
    // No Docker engine here: what the image would run is rebuilt in a folder and run.
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let image = tempfile::tempdir().unwrap();
    let mut env = Vec::new();
    let mut continued = String::new();
    for line in dockerfile.lines().filter(|l| !l.starts_with('#')) {
        continued.push_str(line.trim_end_matches('\\'));
        if line.ends_with('\\') {
            continued.push(' ');
            continue;
        }
        let words: Vec<&str> = continued.split_whitespace().collect();
        match words.as_slice() {
            ["COPY", from, .., to] if !from.starts_with("--from") => {
                let sources = &words[1..words.len() - 1];
                for source in sources {
                    assert!(
                        root().join(source).exists(),
                        "COPY {source}: not in the repository"
                    );
                }
                if let [one] = sources
                    && to.starts_with("/opt/runner/")
                {
                    copy_tree(&root().join(one), &image.path().join(&to[1..]));
                }
            }
            ["ENV", settings @ ..] => {
                for setting in settings {
                    let (key, value) = setting.split_once('=').unwrap();
                    env.push((key.to_string(), value.to_string()));
                }
            }
            _ => {}
        }
        continued.clear();
    }
    let value = |key: &str| {
        env.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no ENV {key}"))
    };
    assert_eq!(value("HOST_PROC"), "/host/proc");
    assert_eq!(value("HOST_SYS"), "/host/sys");
    // RUNNER_JOBS names the jobs file when --jobs is not given: the shipped one, checked clean
    // where the image puts it, with the image's command line.
    let jobs = image.path().join(&value("RUNNER_JOBS")[1..]);
    assert!(jobs.exists(), "{}", jobs.display());
    let cmd_line = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("CMD "))
        .expect("a CMD");
    let cmd: Vec<String> = serde_json::from_str(cmd_line).unwrap();
    let mut args = vec!["check".to_string()];
    args.extend(cmd);
    // In a folder without jobs/jobs.yaml, so only RUNNER_JOBS can name it.
    let output = command(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .current_dir(image.path())
        .env("RUNNER_JOBS", &jobs)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let listed = command(&["jobs"])
        .current_dir(image.path())
        .env("RUNNER_JOBS", &jobs)
        .output()
        .unwrap();
    assert!(
        stdout(&listed).contains("weekly-report"),
        "{}",
        stdout(&listed)
    );
    // --jobs wins over RUNNER_JOBS.
    let output = command(&["jobs", "--jobs", "/nonexistent/jobs.yaml"])
        .current_dir(image.path())
        .env("RUNNER_JOBS", &jobs)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(
        stderr(&output).contains("/nonexistent/jobs.yaml"),
        "{}",
        stderr(&output)
    );
    let ignored = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    assert!(
        ignored.lines().any(|l| l == "target"),
        "the build context leaves target/ out"
    );
}

/// A pipe whose reader is already gone: every write to it fails with EPIPE at once, whatever
/// the output's size, as when `| head -1` has read its line and left.
fn closed_pipe() -> std::io::PipeWriter {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    writer
}

#[test]
fn commands_whose_reader_went_away_end_quietly_with_their_own_status() {
    let dir = tempfile::tempdir().unwrap();
    let good = jobs_file(dir.path(), EVERY_SECOND);
    let broken = dir.path().join("broken.yaml");
    std::fs::write(&broken, "jobs:\n  a:\n    type: monitr\n").unwrap();
    let (good, broken) = (good.to_str().unwrap(), broken.to_str().unwrap());
    let cases: [(&[&str], i32); 8] = [
        (&["man"], 0),
        (&["completions", "bash"], 0),
        (&["--jobs", good, "jobs"], 0),
        (&["--jobs", good, "check"], 0),
        (&["--jobs", good, "dry-run", "tick"], 0),
        (&["test", "rules"], 0),
        // Still a failure: `set -o pipefail; runner check | head` must not pass a broken file.
        (&["--jobs", broken, "check"], 1),
        (&["--jobs", broken, "jobs"], 1),
    ];
    for (args, expected) in cases {
        let output = command(args)
            .stdout(closed_pipe())
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(expected), "{args:?}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "{args:?}: {err}"
        );
    }
    // stderr closed too, as with `runner --jobs broken.yaml 2>&1 | head -1`.
    for args in [&["--jobs", broken][..], &["--jobs", broken, "check"]] {
        let status = command(args)
            .stdout(closed_pipe())
            .stderr(closed_pipe())
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(1), "{args:?}");
    }
}

#[test]
fn the_scheduler_keeps_ticking_with_a_closed_stderr_and_stops_on_sigterm() {
    for verbosity in [None, Some("-v")] {
        let dir = tempfile::tempdir().unwrap();
        let file = jobs_file(dir.path(), &format!("shutdown_grace: 10m\n{EVERY_SECOND}"));
        let mut args = vec!["--jobs", file.to_str().unwrap()];
        args.extend(verbosity);
        let mut child = command(&args)
            .stdout(closed_pipe())
            .stderr(closed_pipe())
            .spawn()
            .unwrap();
        // Three ticks logged after the first line on stderr failed to be written.
        let metrics = dir.path().join("var/metrics");
        let lines = || -> usize {
            std::fs::read_dir(&metrics)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .map(|text| text.lines().count())
                .sum()
        };
        let deadline = std::time::Instant::now() + PATIENCE;
        while lines() < 3 {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("{verbosity:?}: runner stopped with {status} instead of ticking");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{verbosity:?}: no ticks"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let deadline = std::time::Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("{verbosity:?}: SIGTERM did not stop runner");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(status.code(), Some(0), "{verbosity:?}");
    }
}
