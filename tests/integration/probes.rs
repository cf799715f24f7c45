//! Checks of truth: each system probe against what the test measures or does itself.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use runner::probes::cpu::CpuProbe;
use runner::probes::disk_io::DiskIoProbe;
use runner::probes::memory::MemoryProbe;
use runner::probes::net_io::NetIoProbe;
use runner::probes::{Output, ProcRoot};

fn value(out: &Output, name: &str) -> Option<f64> {
    out.metrics
        .iter()
        .find(|(n, _)| n.as_ref() == name)
        .map(|(_, v)| *v)
}

/// Runs `collect` and returns the instants just before and just after it.
fn timed(mut collect: impl FnMut(&mut Output)) -> (Output, Instant, Instant) {
    let mut out = Output::default();
    let before = Instant::now();
    collect(&mut out);
    (out, before, Instant::now())
}

fn meminfo_kib(text: &str, key: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(&format!("{key}:")))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{key} in /proc/meminfo"))
}

#[test]
fn memory_matches_proc_meminfo() {
    let mut probe = MemoryProbe::new(ProcRoot::default());
    let mut out = Output::default();
    probe.collect(&mut out).unwrap();
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    let total = meminfo_kib(&text, "MemTotal");
    let available = meminfo_kib(&text, "MemAvailable");
    let used = (total - available) / total * 100.0;
    let got = value(&out, "memory.used_percent").unwrap();
    assert!((got - used).abs() < 1.0, "probe {got} vs meminfo {used}");
    assert_eq!(value(&out, "memory.total_bytes"), Some(total * 1024.0));
    let swap_total = meminfo_kib(&text, "SwapTotal");
    match value(&out, "memory.swap_used_percent") {
        Some(got) => {
            let want = (swap_total - meminfo_kib(&text, "SwapFree")) / swap_total * 100.0;
            assert!((got - want).abs() < 1.0, "swap {got} vs {want}");
        }
        None => assert_eq!(swap_total, 0.0, "swap exists but was not reported"),
    }
    // Paging rates need two readings: the first has none, never a made-up 0.
    assert_eq!(value(&out, "memory.swap_in_per_sec"), None);
    std::thread::sleep(Duration::from_millis(50));
    let mut out = Output::default();
    probe.collect(&mut out).unwrap();
    assert!(value(&out, "memory.major_faults_per_sec").is_some());
}

#[test]
fn a_busy_core_shows_in_cpu_usage() {
    let cores = std::thread::available_parallelism().unwrap().get() as f64;
    let mut probe = CpuProbe::new(ProcRoot::default(), true);
    let mut first = Output::default();
    probe.collect(&mut first).unwrap();
    // The first reading would be the average since boot: it must not be reported.
    assert_eq!(value(&first, "cpu.total.usage_percent"), None);
    let busy = std::thread::spawn(|| {
        let until = Instant::now() + Duration::from_secs(2);
        let mut x: u64 = 0;
        while Instant::now() < until {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        x
    });
    busy.join().unwrap();
    let mut out = Output::default();
    probe.collect(&mut out).unwrap();
    let usage = value(&out, "cpu.total.usage_percent").unwrap();
    let floor = 100.0 / cores * 0.85;
    assert!(
        usage >= floor,
        "usage {usage} % below {floor} % with one of {cores} cores busy"
    );
    assert!(usage <= 100.0);
    let user = value(&out, "cpu.total.user_percent").unwrap();
    assert!(user >= floor * 0.8, "user {user}");
    assert!(value(&out, "cpu.core0.usage_percent").is_some());
}

#[test]
fn written_and_synced_bytes_show_in_disk_io() {
    // On the build disk, not /tmp (which may be RAM).
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut probe = DiskIoProbe::new(ProcRoot::default(), None);
    let (_, before_first, _) = timed(|out| probe.collect(out).unwrap());
    let size = 64 * 1024 * 1024;
    let mut file = std::fs::File::create(dir.path().join("blob")).unwrap();
    let chunk = vec![0x5a_u8; 1024 * 1024];
    for _ in 0..64 {
        file.write_all(&chunk).unwrap();
    }
    file.sync_all().unwrap();
    let (out, _, after_second) = timed(|out| probe.collect(out).unwrap());
    // The two reads were at most this far apart, so rate × this is at least what was counted.
    let secs = after_second.duration_since(before_first).as_secs_f64();
    let rate = value(&out, "disk_io.total.write_bytes_per_sec").expect("a total write rate");
    let counted = rate * secs;
    assert!(
        counted >= size as f64 * 0.9,
        "counted {counted:.0} bytes written, wrote and synced {size}"
    );
    assert!(value(&out, "disk_io.total.writes_per_sec").unwrap() > 0.0);
    let util = value(&out, "disk_io.total.util_percent").unwrap();
    assert!((0.0..=100.0).contains(&util), "{util}");
}

#[test]
fn bytes_sent_over_loopback_show_in_net_io() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let size = 8 * 1024 * 1024;
    let reader = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut got = 0;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = conn.read(&mut buf).unwrap();
            if n == 0 {
                break got;
            }
            got += n;
        }
    });
    let mut probe = NetIoProbe::new(ProcRoot::default(), Some(vec!["lo".to_string()]));
    let (_, before_first, _) = timed(|out| probe.collect(out).unwrap());
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.write_all(&vec![7u8; size]).unwrap();
    drop(conn);
    assert_eq!(reader.join().unwrap(), size);
    std::thread::sleep(Duration::from_millis(200));
    let (out, _, after_second) = timed(|out| probe.collect(out).unwrap());
    // At most this far apart: rate × this is at least what the kernel counted.
    let secs = after_second.duration_since(before_first).as_secs_f64();
    let rx = value(&out, "net_io.lo.rx_bytes_per_sec").unwrap() * secs;
    let tx = value(&out, "net_io.lo.tx_bytes_per_sec").unwrap() * secs;
    assert!(
        rx >= size as f64,
        "lo received {rx:.0} bytes, {size} were sent"
    );
    assert!(tx >= size as f64, "lo sent {tx:.0} bytes, {size} were sent");
    // And not wildly more: TCP/IP headers add a few percent; other tests may share loopback.
    assert!(
        rx < size as f64 * 4.0,
        "lo received {rx:.0} bytes for {size} sent"
    );
    // Loopback never counts in the total.
    assert_eq!(value(&out, "net_io.total.rx_bytes_per_sec"), None);
}
