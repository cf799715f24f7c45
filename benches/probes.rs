//! `cargo bench --bench probes`: the access-log parser, a tick of 100 tcp probes, and the
//! `connections` probe against `ss` (`scripts/connections-cost.sh` for 10k and 100k sockets).

// A harness, not the product: a panic here is the failure, with its message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_macros
)]

use std::cell::RefCell;
use std::io::Write;
use std::net::TcpListener;

use divan::counter::ItemsCount;
use runner::probes::access_log::parse_combined;

mod common;

fn main() {
    divan::main();
}

const LINES: usize = 100_000;

fn combined_lines() -> String {
    let mut text = String::with_capacity(LINES * 200);
    for i in 0..LINES {
        let status = [200, 200, 200, 304, 404, 500][i % 6];
        text.push_str(&format!(
            "10.{}.{}.{} - - [28/Nov/2026:10:{:02}:{:02} +0000] \"GET /shop/item/{i}?ref=home HTTP/1.1\" {status} {} \"https://shop.example/\" \"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36\" 0.{:03} sid-{}\n",
            i % 7, i % 13, i % 251, (i / 60) % 60, i % 60, 512 + i % 4096, i % 1000, i % 5000
        ));
    }
    text
}

/// The parser alone: status, client, request time and session of combined lines.
#[divan::bench]
fn parse_combined_lines(bencher: divan::Bencher) {
    let text = combined_lines();
    bencher.counter(ItemsCount::new(LINES)).bench(|| {
        let mut errors = 0;
        for line in text.lines() {
            let parsed = parse_combined(line, Some(0), Some(1)).expect("parses");
            errors += usize::from(parsed.status >= 500);
        }
        errors
    });
}

/// The whole probe: read 100 000 appended lines from the file, tally them, count distinct
/// clients and sessions, compute percentiles.
#[divan::bench(sample_count = 20)]
fn access_log_tick(bencher: divan::Bencher) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    std::fs::write(&path, "").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let set = RefCell::new(common::probe_set(
        dir.path(),
        "- { type: access_log, name: web, path: access.log, extra_fields: [request_time, session] }",
    ));
    rt.block_on(set.borrow_mut().collect());
    let text = combined_lines();
    bencher
        .counter(ItemsCount::new(LINES))
        .with_inputs(|| {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            f.write_all(text.as_bytes()).unwrap();
        })
        .bench_local_values(|()| {
            let out = rt.block_on(set.borrow_mut().collect());
            assert!(out.errors.is_empty(), "{:?}", out.errors);
        });
}

/// 100 tcp probes to 100 local listeners in one tick. The tick takes about as long as its
/// slowest probe when the probes really run at once; one after another it would be their sum.
#[divan::bench(sample_count = 50)]
fn tick_of_100_tcp_probes(bencher: divan::Bencher) {
    let dir = tempfile::tempdir().unwrap();
    let listeners: Vec<TcpListener> = (0..100)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let probes: String = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| {
            format!(
                "- {{ type: tcp, name: t{i}, host: 127.0.0.1, port: {} }}\n",
                l.local_addr().unwrap().port()
            )
        })
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let set = RefCell::new(common::probe_set(dir.path(), &probes));
    let mut worst_ratio: f64 = 0.0;
    bencher.bench_local(|| {
        let started = std::time::Instant::now();
        let out = rt.block_on(set.borrow_mut().collect());
        let tick_ms = started.elapsed().as_secs_f64() * 1000.0;
        let slowest = out
            .metrics
            .iter()
            .filter(|(n, _)| n.ends_with(".connect_ms"))
            .map(|(_, v)| *v)
            .fold(0.0, f64::max);
        let sum: f64 = out
            .metrics
            .iter()
            .filter(|(n, _)| n.ends_with(".connect_ms"))
            .map(|(_, v)| *v)
            .sum();
        assert_eq!(
            out.metrics
                .iter()
                .filter(|(n, _)| n.ends_with(".up"))
                .count(),
            100
        );
        worst_ratio = worst_ratio.max(tick_ms / slowest);
        (tick_ms, slowest, sum)
    });
    println!("100 tcp probes: worst tick / slowest probe = {worst_ratio:.2}");
    drop(listeners);
}

/// The loopback table the `connections` benches read: the ports `scripts/connections-cost.sh`
/// holds its connections on (`RUNNER_BENCH_CONNECTION_PORTS`, in a network namespace of its
/// own), else 1,000 connections opened here to one listener.
fn connection_ports() -> &'static [u16] {
    static TABLE: std::sync::OnceLock<(Vec<u16>, Vec<std::net::TcpStream>)> =
        std::sync::OnceLock::new();
    &TABLE
        .get_or_init(|| {
            if let Ok(ports) = std::env::var("RUNNER_BENCH_CONNECTION_PORTS") {
                let ports = ports.split(',').map(|p| p.parse().unwrap()).collect();
                return (ports, Vec::new());
            }
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let mut keep = Vec::new();
            for _ in 0..1_000 {
                keep.push(std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap());
                keep.push(listener.accept().unwrap().0);
            }
            (vec![listener.local_addr().unwrap().port()], keep)
        })
        .0
}

fn connections_probe(netlink: bool) -> runner::probes::connections::ConnectionsProbe {
    use runner::probes::connections::ConnectionsProbe;
    let root = runner::probes::ProcRoot {
        proc: "/proc".into(),
        sys: "/sys".into(),
    };
    let ports = connection_ports().to_vec();
    let mut probe = if netlink {
        ConnectionsProbe::new(root, ports, "bench")
    } else {
        ConnectionsProbe::from_files(root, ports, "bench")
    };
    let mut out = runner::probes::Output::default();
    probe.collect(&mut out).unwrap();
    assert_eq!(
        probe.reads_netlink(),
        netlink,
        "netlink sock_diag unavailable"
    );
    println!(
        "connections probe ({}): {:?}",
        if netlink { "netlink" } else { "/proc" },
        out.metrics
    );
    probe
}

/// One tick of the `connections` probe as it runs: netlink `sock_diag`, filtered in the kernel.
#[divan::bench(sample_count = 20)]
fn connections_probe_netlink(bencher: divan::Bencher) {
    let mut probe = connections_probe(true);
    bencher.bench_local(|| {
        let mut out = runner::probes::Output::default();
        probe.collect(&mut out).unwrap();
        out
    });
}

/// The same tick from `/proc/net/tcp*` (the fallback, and what the probe read before).
#[divan::bench(sample_count = 20)]
fn connections_probe_proc(bencher: divan::Bencher) {
    let mut probe = connections_probe(false);
    bencher.bench_local(|| {
        let mut out = runner::probes::Output::default();
        probe.collect(&mut out).unwrap();
        out
    });
}

/// What the probe is held to: `ss -tn state established | wc -l` over the same table.
#[divan::bench(sample_count = 20)]
fn connections_ss_established(bencher: divan::Bencher) {
    connection_ports();
    bencher.bench_local(|| {
        let out = std::process::Command::new("sh")
            .args(["-c", "ss -tn state established | wc -l"])
            .output()
            .unwrap();
        assert!(out.status.success());
        out.stdout
    });
}
