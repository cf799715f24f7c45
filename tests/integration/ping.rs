//! ping against hosts that answer, stay silent, or are unreachable behind a router. The silent
//! and unreachable hosts live in private network namespaces the test makes (`unshare`, a veth
//! pair, a second namespace routing with an `unreachable` route): nothing leaves the machine.
//! Each case runs twice, once with the kernel's unprivileged ICMP datagram sockets and once
//! with raw sockets, since the two deliver ICMP errors differently.

use std::path::Path;
use std::process::Command;

use crate::support::runner_bin;

/// How each kind of socket is had: opening `ping_group_range` to the namespace's root group
/// lets runner use datagram sockets; a new namespace starts with it closed, so raw sockets.
const SOCKET_KINDS: [(&str, &str); 2] = [
    (
        "datagram",
        "echo '0 0' > /proc/sys/net/ipv4/ping_group_range",
    ),
    ("raw", "true"),
];

/// Runs `runner run m` on `probes` inside a fresh network namespace prepared by `setup`, and
/// returns the sample it logged.
fn sample_in_namespace(setup: &str, socket_kind: &str, probes: &str) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let jobs = dir.path().join("jobs.yaml");
    std::fs::write(
        &jobs,
        format!("data_dir: var\njobs:\n  m:\n    type: monitor\n    schedule: \"@every 10s\"\n    probes:\n{probes}"),
    )
    .unwrap();
    let script = format!(
        "set -e\nip link set lo up\n{setup}\n{socket_kind}\n'{}' run m --jobs '{}'\n",
        runner_bin(),
        jobs.display()
    );
    let output = Command::new("unshare")
        .args(["--user", "--map-root-user", "--net", "sh", "-c", &script])
        .output()
        .expect("unshare runs (util-linux)");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    read_sample(&dir.path().join("var/metrics"))
}

fn read_sample(dir: &Path) -> serde_json::Value {
    let file = std::fs::read_dir(dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = std::fs::read_to_string(file).unwrap();
    serde_json::from_str(text.lines().last().unwrap()).unwrap()
}

#[test]
fn a_router_that_answers_unreachable_means_loss_with_its_reason() {
    // The probe's namespace reaches 10.8.0.0/24 through a router namespace whose route for it
    // is `unreachable`: the router answers each echo with "host unreachable", quoting it.
    let setup = "ip link add name va type veth peer name vb
ip addr add 10.9.0.1/24 dev va
ip link set va up
unshare --net sleep 60 &
router=$!
sleep 0.2
ip link set vb netns $router
nsenter -t $router -n sh -c 'ip link set lo up; ip addr add 10.9.0.2/24 dev vb; ip link set vb up; echo 1 > /proc/sys/net/ipv4/ip_forward; ip route add unreachable 10.8.0.0/24'
ip route add 10.8.0.0/24 via 10.9.0.2
trap 'kill $router' EXIT";
    for (kind, range) in SOCKET_KINDS {
        let sample = sample_in_namespace(
            setup,
            range,
            "      - { type: ping, name: behind, host: 10.8.0.5, count: 3, interval_ms: 50 }\n",
        );
        assert_eq!(
            sample["metrics"]["ping.behind.loss_percent"], 100.0,
            "{kind}: {sample}"
        );
        assert!(
            sample["metrics"]["ping.behind.rtt_avg_ms"].is_null(),
            "{kind}: an error is no reply: {sample}"
        );
        assert_eq!(
            sample["errors"]["ping.behind"], "3 of 3 echoes lost: host unreachable (from 10.9.0.2)",
            "{kind}"
        );
    }
}

#[test]
fn a_silent_host_means_loss_and_says_so_and_loopback_answers_in_microseconds() {
    for (kind, range) in SOCKET_KINDS {
        let sample = sample_in_namespace(
            "echo 1 > /proc/sys/net/ipv4/icmp_echo_ignore_all",
            range,
            "      - { type: ping, name: silent, host: 127.0.0.1, count: 2, interval_ms: 20, timeout_ms: 600 }\n      - { type: ping, name: v6, host: \"::1\", count: 5, interval_ms: 10 }\n",
        );
        assert_eq!(
            sample["metrics"]["ping.silent.loss_percent"], 100.0,
            "{kind}: {sample}"
        );
        assert_eq!(
            sample["errors"]["ping.silent"], "2 of 2 echoes lost: no reply within 560 ms",
            "{kind}"
        );
        // ::1 still answers (the IPv4 setting is the IPv4 stack's): every round trip is a real,
        // positive time from the send call to the kernel's receive stamp.
        let metrics = &sample["metrics"];
        assert_eq!(metrics["ping.v6.loss_percent"], 0.0, "{kind}: {sample}");
        let min = metrics["ping.v6.rtt_min_ms"].as_f64().unwrap();
        assert!(min > 0.0, "{kind}: a reply never reads 0: {sample}");
    }
}
