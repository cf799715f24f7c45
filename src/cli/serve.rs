//! `runner` without a command: the scheduler in the foreground until SIGINT or SIGTERM, under
//! the data_dir's lock, with the notifiers' delivery loops beside it.

use std::path::Path;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::{block_on, exit, load, log_warnings};
use crate::config::ListenSpec;
use crate::lock::{LockError, LockFile, scheduler_lock_path};
use crate::notify::Notifiers;
use crate::scheduler::clock::{SharedClock, SystemClock};
use crate::scheduler::{Scheduler, Shutdown};

pub fn run(file: &Path, listen: Option<&str>) -> u8 {
    let config = match load(file) {
        Ok(config) => Arc::new(config),
        Err(code) => return code,
    };
    // `--listen`, else RUNNER_LISTEN, else the jobs file's `listen`.
    let from_env = std::env::var("RUNNER_LISTEN")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let listen = match listen.map(str::to_string).or(from_env) {
        Some(text) => match ListenSpec::parse(&text, config.listen_auth.clone()) {
            Ok(spec) => Some(spec),
            Err(e) => {
                super::fail(format_args!("--listen / RUNNER_LISTEN: {e}"));
                return exit::USAGE;
            }
        },
        None => config.listen.clone(),
    };
    let lock_path = scheduler_lock_path(&config.data_dir);
    let lock = match LockFile::try_acquire(&lock_path, "the scheduler of this data_dir") {
        Ok(lock) => lock,
        Err(e @ LockError::Held { .. }) => {
            error!(data_dir = %config.data_dir.display(), "{e}");
            super::fail(format_args!(
                "another runner is already running on {}: {e}",
                config.data_dir.display()
            ));
            return exit::BUSY;
        }
        Err(e @ LockError::Io { .. }) => {
            error!(data_dir = %config.data_dir.display(), "{e}");
            super::fail(format_args!(
                "cannot use data_dir {}: {e}\n  = help: data_dir must be a folder this user can write (runner creates it when missing)",
                config.data_dir.display()
            ));
            return exit::FAILED;
        }
    };
    block_on(async move {
        // Listen for signals before saying anything is scheduled: a SIGTERM that arrives in
        // between must stop runner gracefully, not kill it.
        let signals = match Signals::listen() {
            Ok(signals) => signals,
            Err(e) => {
                error!(error = %e, "cannot listen for SIGTERM/SIGINT");
                return exit::FAILED;
            }
        };
        // Said only once signals are ours, like everything after it: a supervisor that sees
        // this line may stop runner at once.
        if let Some(pid) = lock.took_over_from {
            info!(pid, lock = %lock_path.display(), "took over the lock left by a runner that is gone");
        }
        let clock: SharedClock = Arc::new(SystemClock);
        // Bound before anything starts, so a port in use stops the start with that message.
        let listener = match &listen {
            Some(spec) => match tokio::net::TcpListener::bind(spec.address).await {
                Ok(listener) => Some((listener, spec.clone())),
                Err(e) => {
                    error!(address = %spec.address, error = %e, "cannot listen");
                    super::fail(format_args!("cannot listen on {}: {e}", spec.address));
                    return exit::FAILED;
                }
            },
            None => None,
        };
        let status = match &listener {
            Some((l, spec)) => format!(
                "{}://{}/",
                if config.listen_tls.is_some() {
                    "https"
                } else {
                    "http"
                },
                l.local_addr().unwrap_or(spec.address)
            ),
            None => "off (`listen:` or --listen serves /metrics and a status page)".to_string(),
        };
        info!(
            host = %config.host,
            jobs_file = %config.file.display(),
            timezone = %config.zone.name(),
            metrics = %config.data_dir.join("metrics").join("<UTC day>.jsonl").display(),
            alerts = %config.data_dir.join("alerts").join("<UTC day>.jsonl").display(),
            reports = %crate::report::summary::reports_dir(&config.data_dir).display(),
            status = %status,
            "runner starting"
        );
        log_warnings(&config);
        // Before the first tick, which may be an hour away: a root without what the probes
        // read is said now, with what to do.
        crate::monitor::check_roots(&config);
        let notifiers = Arc::new(Notifiers::new(&config, clock.clone()));
        // Delivery goes on through the shutdown grace, for what the last runs queue.
        let delivery_stop = CancellationToken::new();
        let deliverers = notifiers.start(delivery_stop.clone());
        // Remote write drains beside the notifiers, with the same grace.
        let remote_write = config.remote_write.as_ref().and_then(|spec| {
            crate::remote_write::RemoteWriter::new(spec, &config.data_dir, clock.clone())
                .inspect_err(|e| error!(error = %e, "remote write cannot start; nothing is pushed"))
                .ok()
        });
        let remote_write_stats = remote_write.as_ref().map(|w| w.stats());
        let remote_writer = remote_write.map(|w| tokio::spawn(w.run(delivery_stop.clone())));
        let (entries, mut running, _) =
            super::reload::entries(config.clone(), &clock, &notifiers, None);
        super::loaded::record(&config);
        if entries.is_empty() {
            warn!("no job is on; runner waits for a signal and does nothing");
        }
        let stop = CancellationToken::new();
        let (hup, mut hups) = tokio::sync::mpsc::unbounded_channel::<()>();
        // The configuration that runs now, for the file watcher (`watch: true`) and the status
        // pages; a reload that goes in replaces it.
        let current = Arc::new(std::sync::RwLock::new(config.clone()));
        tokio::spawn(super::watch::watch(
            current.clone(),
            hup.clone(),
            stop.clone(),
        ));
        tokio::spawn(signals.watch(stop.clone(), hup));
        tokio::spawn(crate::footprint::release_periodically(stop.clone()));
        let mut scheduler = Scheduler::new(clock.clone(), config.zone.clone(), entries);
        if let Some(every) = super::sd_notify::watchdog() {
            // Half the interval, as sd_watchdog_enabled(3) advises: a ping late by a busy
            // moment still arrives in time.
            info!(
                watchdog_s = every.as_secs_f64(),
                "pinging systemd's watchdog from the scheduler loop"
            );
            scheduler = scheduler.with_watchdog(
                every / 2,
                Arc::new(|| super::sd_notify::notify("WATCHDOG=1")),
            );
        }
        let mut context = None;
        if listener.is_some() {
            running.listening = Some(status.clone());
        }
        if let Some((listener, spec)) = listener {
            info!(
                url = %status,
                "serving the status page, /metrics, /api/v1/alerts and /-/healthy"
            );
            let shared = Arc::new(crate::status::Context {
                config: current.clone(),
                scheduler: scheduler.state(),
                notifiers: notifiers.clone(),
                clock: clock.clone(),
                started: clock.now(),
                reloads: std::sync::Mutex::default(),
                remote_write: remote_write_stats,
            });
            tokio::spawn(crate::status::serve(
                listener,
                spec,
                shared.clone(),
                stop.clone(),
            ));
            context = Some(shared);
        }
        // SIGHUP: check the files again and swap in what changed.
        let (to_scheduler, reloads) = tokio::sync::mpsc::unbounded_channel();
        {
            let (file, clock, notifiers) = (config.file.clone(), clock.clone(), notifiers.clone());
            tokio::spawn(async move {
                while hups.recv().await.is_some() {
                    info!(jobs_file = %file.display(), "reloading");
                    let outcome = super::reload::on_request(
                        &file,
                        &mut running,
                        &clock,
                        &notifiers,
                        &to_scheduler,
                    )
                    .await;
                    if outcome.ok {
                        *current
                            .write()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) =
                            running.config.clone();
                    }
                    if let Some(context) = &context {
                        let mut counts = context
                            .reloads
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        if outcome.ok {
                            counts.succeeded += 1;
                        } else {
                            counts.failed += 1;
                        }
                        counts.last = Some((outcome.ok, clock.now()));
                    }
                }
            });
        }
        let scheduled = config
            .jobs
            .values()
            .filter(|j| j.inactive_reason().is_none())
            .count();
        super::sd_notify::notify(&format!(
            "READY=1\nSTATUS={} scheduled",
            crate::vocab::words::plural(scheduled, "job")
        ));
        let shutdown = scheduler
            .run_reloadable(stop, config.shutdown_grace, reloads)
            .await;
        // What is still queued stays in the outbox and goes out after the next start.
        delivery_stop.cancel();
        futures_util::future::join_all(deliverers).await;
        if let Some(writer) = remote_writer {
            let _ = writer.await;
        }
        match shutdown {
            Shutdown::Clean => {
                info!("runner stopped");
                exit::OK
            }
            Shutdown::Abandoned(jobs) => {
                warn!(?jobs, "runner stopped with jobs still running");
                exit::OK
            }
        }
    })
}

/// SIGTERM, SIGINT and SIGHUP, listened for from the start (SIGHUP's default would end runner).
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn listen() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// SIGHUP: reload. First SIGTERM or SIGINT: stop scheduling and let running jobs finish.
    /// Second: leave now.
    async fn watch(mut self, stop: CancellationToken, hup: tokio::sync::mpsc::UnboundedSender<()>) {
        let name = loop {
            tokio::select! {
                _ = self.term.recv() => break "SIGTERM",
                _ = self.int.recv() => break "SIGINT",
                _ = self.hup.recv() => {
                    let _ = hup.send(());
                }
            }
        };
        info!(
            signal = name,
            "stopping: no new runs; running jobs may finish"
        );
        super::sd_notify::notify("STOPPING=1");
        stop.cancel();
        tokio::select! {
            _ = self.term.recv() => {},
            _ = self.int.recv() => {},
        }
        warn!("second signal: leaving without waiting for running jobs");
        crate::probes::command::kill_running_commands();
        std::process::exit(i32::from(exit::INTERRUPTED));
    }
}
