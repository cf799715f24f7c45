//! Where the probes read the kernel's files (`--proc-root`/`HOST_PROC`, `--sys-root`/
//! `HOST_SYS`): a root without what the probes need is said at start, with what it means and
//! what to do, and a run in which every probe failed is a failed run.

use std::time::Duration;

use crate::support::{PATIENCE, Running, command, jobs_file, root, run, stderr};

const LOAD_AND_DISK_IO: &str = "jobs:\n  m: { type: monitor, schedule: \"@every 1h\", probes: [{ type: load }, { type: disk_io }] }\n";

#[test]
fn a_sys_root_without_the_online_cpus_and_block_is_said_once_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = jobs_file(dir.path(), LOAD_AND_DISK_IO);
    let empty_sys = dir.path().join("sys");
    std::fs::create_dir(&empty_sys).unwrap();
    let proc_fixture = root().join("tests/fixtures/host/proc");
    let output = run(&[
        "run",
        "m",
        "--jobs",
        file.to_str().unwrap(),
        "--proc-root",
        proc_fixture.to_str().unwrap(),
        "--sys-root",
        empty_sys.to_str().unwrap(),
    ]);
    let err = stderr(&output);
    // load still measures: the run did not fail as a whole.
    assert_eq!(output.status.code(), Some(0), "{err}");
    let online = err
        .lines()
        .filter(|l| l.contains("devices/system/cpu/online"))
        .collect::<Vec<_>>();
    assert_eq!(online.len(), 1, "said once: {err}");
    assert!(
        online[0].contains("load1_per_core divides by the")
            && online[0].contains("CPUs of this process's view")
            && online[0].contains("HOST_SYS at the host's /sys"),
        "{err}"
    );
    assert!(err.contains("sys/block is missing"), "{err}");
    // The fixture has no diskstats either.
    assert!(err.contains("proc/diskstats is missing"), "{err}");
}

#[test]
fn a_wrong_host_proc_fails_runner_run_naming_the_probes_and_the_first_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = jobs_file(
        dir.path(),
        "jobs:\n  m: { type: monitor, schedule: \"@every 1h\", probes: [{ type: memory }, { type: load }] }\n",
    );
    let wrong = dir.path().join("not-proc");
    std::fs::create_dir(&wrong).unwrap();
    let output = command(&["run", "m", "--jobs", file.to_str().unwrap()])
        .env("HOST_PROC", &wrong)
        .env("HOST_SYS", root().join("tests/fixtures/host/sys"))
        .output()
        .unwrap();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(
        err.contains("every probe failed (memory, load); the first: memory: cannot read")
            && err.contains("not-proc/meminfo"),
        "{err}"
    );
    // Said before the tick, with what to do.
    assert!(
        err.contains("not-proc/loadavg is missing: the load probe fails every tick; point --proc-root or HOST_PROC at the host's /proc"),
        "{err}"
    );
    // The sample is still written, with its errors.
    let day = std::fs::read_dir(dir.path().join("var/metrics"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(std::fs::read_to_string(day).unwrap().contains("meminfo"));
}

#[test]
fn the_scheduler_says_a_missing_root_file_before_its_first_tick() {
    let dir = tempfile::tempdir().unwrap();
    let file = jobs_file(dir.path(), LOAD_AND_DISK_IO);
    let empty_sys = dir.path().join("sys");
    std::fs::create_dir(&empty_sys).unwrap();
    let mut cmd = command(&["--jobs", file.to_str().unwrap()]);
    cmd.env("HOST_SYS", &empty_sys);
    let mut runner = Running::spawn(cmd);
    // The job runs hourly: this is said at start, not at a tick.
    let line = runner.wait_for_line("devices/system/cpu/online is missing", PATIENCE);
    assert!(line.contains("HOST_SYS"), "{line}");
    runner.wait_for_line("sys/block is missing", PATIENCE);
    runner.signal("TERM");
    let (code, _) = runner.wait_exit(PATIENCE);
    assert_eq!(code, Some(0), "{}", runner.seen.join("\n"));
}

#[test]
fn pings_default_timeout_is_count_times_interval_and_a_second_as_documented() {
    use runner::config::probes::ping::PingSpec;
    use runner::config::probes::{ProbeKind, ProbeSpec};
    let spec = |count, interval_ms| {
        ProbeSpec::new(
            Some("gw"),
            ProbeKind::Ping(PingSpec {
                host: "127.0.0.1".into(),
                count,
                interval: Duration::from_millis(interval_ms),
            }),
        )
        .timeout
    };
    assert_eq!(spec(5, 200), Duration::from_millis(2_000));
    assert_eq!(spec(5, 100), Duration::from_millis(1_500));
    assert_eq!(spec(3, 200), Duration::from_millis(1_600));
    let doc = std::fs::read_to_string(root().join("docs/configuration.md")).unwrap();
    assert!(doc.contains("| count × interval + 1 s |"));
}
