//! Pushes alert events through the outbox to a local webhook receiver and prints the rates.
//!
//!   cargo run --release --example outbox_bench -- [EVENTS]
//!
//! Each event is queued on its own (one append and one fsync each, as a monitor tick with one
//! event does) while the delivery loop sends them to a keep-alive HTTP server on 127.0.0.1 that
//! answers 204. Prints the cost of queueing (append + fsync) per event, and end-to-end events
//! per second until the last one is marked delivered.

// A harness, not the product: a panic here is the failure, with its message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_macros
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use runner::alerts::event::{AlertEvent, EventKind, event_id};
use runner::config::Config;
use runner::notify::Notifiers;
use runner::scheduler::clock::SystemClock;
use runner::vocab::Severity;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

/// Answers every request with 204 on kept-alive connections.
async fn receiver(listener: tokio::net::TcpListener) {
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(async move {
            let (read, mut write) = socket.into_split();
            let mut reader = BufReader::new(read);
            loop {
                let mut length = 0usize;
                let mut line = String::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).await.is_err() {
                    return;
                }
                if write
                    .write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
    }
}

fn event(n: u64) -> AlertEvent {
    let mut e = AlertEvent::example(
        "cpu_high",
        EventKind::Firing,
        Severity::Warning,
        chrono::Utc::now(),
    );
    e.labels = [("core".to_string(), (n % 8).to_string())].into();
    e.fingerprint = format!("{n:064x}");
    e.id = event_id(&e.fingerprint, e.kind, e.at);
    e.summary = format!("CPU busy on web-1 ({n})");
    e.description = "Sustained CPU usage slows every request this host serves.".into();
    e
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let count: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(10_000);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(receiver(listener));

    let dir = tempfile::tempdir()?;
    let file = dir.path().join("jobs.yaml");
    std::fs::write(
        &file,
        format!(
            "data_dir: var\nnotifiers:\n  hook: {{ type: webhook, url: \"http://{addr}/in\" }}\njobs:\n  m: {{ type: monitor, schedule: \"@every 10s\" }}\n"
        ),
    )?;
    let config = Config::load(&file).map_err(|p| p.render())?;
    let notifiers = Arc::new(Notifiers::new(&config, Arc::new(SystemClock)));
    let stop = CancellationToken::new();
    let handles = notifiers.start(stop.clone());
    let stats = notifiers.stats("hook").ok_or("no notifier")?;
    let to = vec!["hook".to_string()];

    let started = Instant::now();
    let mut queueing = Duration::ZERO;
    for n in 0..count {
        let e = event(n);
        let t = Instant::now();
        notifiers.dispatch(&to, std::slice::from_ref(&e));
        queueing += t.elapsed();
    }
    while stats.delivered() < count {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    stop.cancel();
    for h in handles {
        let _ = h.await;
    }
    println!(
        "{count} events through the outbox to a local webhook: {:.0} events/s end to end ({:.2} s); queueing (append + fsync) {:.0} µs an event",
        count as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        queueing.as_secs_f64() * 1e6 / count as f64
    );
    Ok(())
}
