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

/// Another program pinging at ~500/s in the same namespace (its replies reach every raw ICMP
/// socket of the namespace) must not read as loss: 0 % on every one of runner's ticks, for
/// IPv4 and IPv6. The ticks come 2 s apart, so a socket that keeps other programs' replies
/// between ticks would be full by the next one.
#[test]
fn other_programs_pinging_fast_do_not_read_as_loss() {
    let pinger = std::env::current_exe().unwrap();
    for (kind, range) in SOCKET_KINDS {
        let dir = tempfile::tempdir().unwrap();
        let jobs = dir.path().join("jobs.yaml");
        std::fs::write(
            &jobs,
            "data_dir: var\njobs:\n  m:\n    type: monitor\n    schedule: \"@every 2s\"\n    probes:\n      - { type: ping, name: v4, host: 127.0.0.1, count: 3 }\n      - { type: ping, name: v6, host: \"::1\", count: 3 }\n",
        )
        .unwrap();
        // The pinger is this test binary's `pinger` below; runner runs until it has had 4
        // ticks' time, then is stopped (124: stopped by `timeout`).
        let script = format!(
            "set -e\nip link set lo up\n{range}\nRUNNER_TEST_PINGER=12 '{}' --exact ping::pinger --ignored --test-threads 1 >/dev/null 2>&1 &\npinger=$!\ntrap 'kill $pinger' EXIT\nsleep 1\nstatus=0\ntimeout -s TERM 9 '{}' --jobs '{}' -q || status=$?\n[ $status = 0 ] || [ $status = 124 ]\n",
            pinger.display(),
            runner_bin(),
            jobs.display()
        );
        let output = Command::new("unshare")
            .args(["--user", "--map-root-user", "--net", "sh", "-c", &script])
            .current_dir(dir.path())
            .output()
            .expect("unshare runs (util-linux)");
        assert!(
            output.status.success(),
            "{kind}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let mut ticks = 0;
        for file in std::fs::read_dir(dir.path().join("var/metrics")).unwrap() {
            let text = std::fs::read_to_string(file.unwrap().path()).unwrap();
            for line in text.lines() {
                let sample: serde_json::Value = serde_json::from_str(line).unwrap();
                for family in ["v4", "v6"] {
                    assert_eq!(
                        sample["metrics"][format!("ping.{family}.loss_percent")],
                        0.0,
                        "{kind}: {sample}"
                    );
                }
                ticks += 1;
            }
        }
        assert!(ticks >= 3, "{kind}: only {ticks} ticks");
    }
}

/// Not a test: the concurrent pinger of the test above, run as a child process inside its
/// namespace. With `RUNNER_TEST_PINGER=SECONDS` it sends echo requests to 127.0.0.2 and ::1
/// from raw sockets, each every 2 ms (~500/s), with its own identifier, and reads its replies
/// like a ping program does.
#[test]
#[ignore]
fn pinger() {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    let Some(seconds) = std::env::var("RUNNER_TEST_PINGER").ok() else {
        return;
    };
    let until = Instant::now() + Duration::from_secs(seconds.parse().unwrap());
    let v4 = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)).unwrap();
    let v6 = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6)).unwrap();
    v4.set_nonblocking(true).unwrap();
    v6.set_nonblocking(true).unwrap();
    let to4 = SockAddr::from("127.0.0.2:0".parse::<SocketAddr>().unwrap());
    let to6 = SockAddr::from("[::1]:0".parse::<SocketAddr>().unwrap());
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1500];
    let mut seq: u16 = 0;
    // Paced by the clock, not by sleeps, so the time spent sending does not slow it down.
    let mut next = Instant::now();
    while next < until {
        seq = seq.wrapping_add(1);
        for (socket, to, kind) in [(&v4, &to4, 8u8), (&v6, &to6, 128u8)] {
            let mut packet = vec![kind, 0, 0, 0, 0xbe, 0xef];
            packet.extend_from_slice(&seq.to_be_bytes());
            packet.extend_from_slice(b"other-pinger-abc");
            if kind == 8 {
                // The kernel fills in ICMPv6 checksums itself; ICMPv4's is ours.
                let mut sum: u32 = packet
                    .chunks(2)
                    .map(|p| u32::from(u16::from_be_bytes([p[0], p[1]])))
                    .sum();
                while sum > 0xffff {
                    sum = (sum & 0xffff) + (sum >> 16);
                }
                packet[2..4].copy_from_slice(&(!(sum as u16)).to_be_bytes());
            }
            let _ = socket.send_to(&packet, to);
            while socket.recv(&mut buf).is_ok() {}
        }
        next += Duration::from_millis(2);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}
