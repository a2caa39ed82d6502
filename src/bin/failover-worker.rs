//! Test support for `tests/failover.rs`: a worker process for the failover workflows of
//! `durable_workflows::failover`, several of which share one store while the test kills,
//! restarts and freezes them.
//!
//! `failover-worker <DB-LOCATION> <SIDE-LOG> <WORKER-ID> <LEASE-MS>` builds an engine on the
//! store at DB-LOCATION (a `postgres://` URL or a SQLite path) under WORKER-ID with leases of
//! LEASE-MS, prints `ready` once built, and runs until killed; SIGTERM shuts the engine down
//! (its leases are released) and exits 0. The engine's warnings (a lost lease: "dropping the
//! workflow") go to stderr, one line each, prefixed with the time and the worker id.

use durable_workflows::failover;
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::{span, Event, Level, Metadata, Subscriber};

/// Prints WARN and ERROR events to stderr; ignores spans.
struct StderrWarnings {
    worker: String,
}

/// Collects an event's fields as `message key=value ...`.
struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

impl Subscriber for StderrWarnings {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= Level::WARN
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::WARN)
    }

    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }

    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}

    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        let line = format!(
            "{} {} {} {}:{}\n",
            failover::now_ms(),
            self.worker,
            event.metadata().level(),
            event.metadata().target(),
            fields.0
        );
        let _ = std::io::stderr().write_all(line.as_bytes());
    }

    fn enter(&self, _: &span::Id) {}

    fn exit(&self, _: &span::Id) {}
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, location, side_log, worker_id, lease_ms] = args.as_slice() else {
        return Err(
            "usage: failover-worker <DB-LOCATION> <SIDE-LOG> <WORKER-ID> <LEASE-MS>".into(),
        );
    };
    let lease_ms: u64 = lease_ms.parse()?;
    let _ = tracing::subscriber::set_global_default(StderrWarnings {
        worker: worker_id.clone(),
    });
    // Before the build: the engine resumes activities as it builds.
    failover::set_side_log(side_log, worker_id.clone());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let engine = failover::builder()
        .location(location.clone())
        .worker_id(worker_id.clone())
        .lease_duration(Duration::from_millis(lease_ms))
        .poll_interval(Duration::from_millis(100))
        .build()
        .await?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "ready")?;
    stdout.flush()?;
    term.recv().await;
    engine.shutdown().await;
    Ok(())
}
