//! Cancellation latency, in real time, on a `MemoryStore` and on a `SqliteStore` (a real
//! file in a fresh temporary directory, WAL, `synchronous = FULL`).
//!
//! Two paths are measured, each from the instant just before `client.cancel(id, ..)` is
//! called:
//!
//! - **cancel → first handler step**: workflow `parked_with_handler` declares an
//!   `on_cancel!` handler and parks on an hour-long `ctx.sleep`. The cancel resolves the sleep
//!   with a cancellation error, `?` leaves the workflow, the handler runs in that same step and
//!   starts the cleanup activity `stamp_cleanup`, which records `Instant::now()` as its first
//!   statement. So the end point is: the cancel request committed, the workflow's stepper
//!   woken, the step that runs the handler (load, inbox, resume) committed, the cleanup
//!   activity dispatched, its attempt recorded in the store, and its body polled.
//! - **cancel → activity sees it at its next heartbeat**: workflow `heartbeating_call` runs
//!   activity `spin_heartbeat` (heartbeat timeout 30 s, `WaitCancellationCompleted`, so the
//!   cancel is delivered to the running attempt). The activity calls `ctx.heartbeat(n)` then
//!   `tokio::time::sleep(1 ms)` in a loop; the end point is the instant the first
//!   `heartbeat` call that returns `Err(ActivityError::Cancelled)` returns. The floor
//!   therefore includes up to one heartbeat period; the table prints the period the activity
//!   really had (mean gap between its heartbeats before the cancel; `sleep(1 ms)` on tokio's
//!   millisecond timer gives about 2 ms, and the engine records each heartbeat in the store).
//!   The cancel is sent after a delay spread evenly over one period (golden-ratio sequence),
//!   so that it lands at every phase of the heartbeat loop rather than always just after a
//!   heartbeat. Below the table, the bench also counts the heartbeats that still returned
//!   `Ok` after `client.cancel` was called: the last of them bounds from below how long the
//!   engine took to deliver the cancel to the running attempt.
//!
//! Samples are sequential: one workflow at a time, each a fresh id, started, waited for until
//! it is parked (its first step committed, or five heartbeats seen), cancelled, and waited for
//! until it closes. A few warm-up samples are dropped. The tokio runtime is a hand-built
//! multi-thread runtime with two workers and real time (no paused clock). The table gives p50
//! (nearest rank), p99 (nearest rank), max and mean in microseconds, and the `client.cancel`
//! call itself (the request committed) for comparison.
//!
//! Run it with `cargo bench --bench cancel_latency`. Environment knobs:
//! `CANCEL_LATENCY_SAMPLES` (default 500 per row), `CANCEL_LATENCY_HEARTBEAT_US` (the
//! activity's sleep between heartbeats, default 1000; 0 means `yield_now`),
//! `CANCEL_LATENCY_BUDGET_SECS` (default 25: a row stops early, with fewer samples, once it
//! took that long). The SQLite file goes in `tempfile::tempdir()` (`TMPDIR` moves it).

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use workflow_core::prelude::*;
use workflow_core::{Client, SqliteStore};

// ----- what the activities record --------------------------------------------------------

/// What one workflow's activities recorded, keyed by workflow id in [`PROBES`].
#[derive(Debug, Default, Clone)]
struct Probe {
    /// When the cleanup activity of the handler started.
    cleanup_started: Option<Instant>,
    /// Heartbeats that returned `Ok`.
    beats: u64,
    first_beat: Option<Instant>,
    last_beat: Option<Instant>,
    /// When a heartbeat first returned the cancellation.
    cancel_seen: Option<Instant>,
    /// Set by the bench just before it calls `client.cancel`.
    cancel_called: Option<Instant>,
    /// Heartbeats that still returned `Ok` after `cancel_called`.
    late_beats: u64,
    /// The last of those.
    last_late_beat: Option<Instant>,
}

static PROBES: Mutex<BTreeMap<String, Probe>> = Mutex::new(BTreeMap::new());
/// Woken whenever a probe reaches a point a waiter may be looking for.
static CHANGED: Notify = Notify::const_new();

/// Heartbeats after which a heartbeating activity counts as running.
const READY_BEATS: u64 = 5;

fn update_probe(id: &str, f: impl FnOnce(&mut Probe) -> bool) {
    let wake = {
        let mut probes = PROBES.lock().unwrap_or_else(PoisonError::into_inner);
        f(probes.entry(id.to_string()).or_default())
    };
    if wake {
        CHANGED.notify_waiters();
    }
}

fn read_probe<T>(id: &str, f: impl Fn(&Probe) -> Option<T>) -> Option<T> {
    PROBES
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(id)
        .and_then(f)
}

/// Waits until `f` gives a value for `id`'s probe, or `timeout` passes.
async fn wait_probe<T>(id: &str, timeout: Duration, f: impl Fn(&Probe) -> Option<T>) -> Option<T> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        // Created before the check, so a wake-up between the check and the wait is not lost.
        let changed = CHANGED.notified();
        if let Some(value) = read_probe(id, &f) {
            return Some(value);
        }
        if tokio::time::timeout_at(deadline, changed).await.is_err() {
            return read_probe(id, &f);
        }
    }
}

// ----- activities and workflows -----------------------------------------------------------

/// The handler's cleanup: records when its body started.
#[activity]
async fn stamp_cleanup(ctx: ActivityContext) -> Result<(), ActivityError> {
    let now = Instant::now();
    update_probe(&ctx.info().workflow_id, |p| {
        p.cleanup_started.get_or_insert(now);
        true
    });
    Ok(())
}

/// Heartbeats, then sleeps `period_us` microseconds (yields when 0), until a heartbeat
/// returns the cancellation; records when it did. Gives up after ten minutes.
#[activity]
async fn spin_heartbeat(ctx: ActivityContext, period_us: u64) -> Result<u64, ActivityError> {
    let id = ctx.info().workflow_id.clone();
    let period = Duration::from_micros(period_us);
    let started = Instant::now();
    let mut n: u64 = 0;
    while started.elapsed() < Duration::from_secs(600) {
        let beat = ctx.heartbeat(n);
        let now = Instant::now();
        if let Err(e) = beat {
            update_probe(&id, |p| {
                p.cancel_seen.get_or_insert(now);
                true
            });
            return Err(e);
        }
        update_probe(&id, |p| {
            p.beats += 1;
            p.first_beat.get_or_insert(now);
            p.last_beat = Some(now);
            if p.cancel_called.is_some_and(|called| now > called) {
                p.late_beats += 1;
                p.last_late_beat = Some(now);
            }
            p.beats == READY_BEATS
        });
        n += 1;
        if period.is_zero() {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(period).await;
        }
    }
    Ok(n)
}

/// Parks on an hour-long sleep; a cancel runs the handler, which runs `stamp_cleanup`.
#[workflow]
async fn parked_with_handler(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    on_cancel!(|cleanup| {
        cleanup.activity(stamp_cleanup, ()).await.ok();
    });
    ctx.sleep(Duration::from_secs(3600)).await?;
    Ok(())
}

/// Runs `spin_heartbeat` with a cancellation type that tells the running attempt.
#[workflow]
async fn heartbeating_call(ctx: WorkflowContext, period_us: u64) -> Result<u64, WorkflowError> {
    let beats = ctx
        .activity(spin_heartbeat, period_us)
        .heartbeat_timeout(Duration::from_secs(30))
        .retry(RetryPolicy::no_retries())
        .cancellation(ActivityCancellationType::WaitCancellationCompleted)
        .await?;
    Ok(beats)
}

// ----- measuring --------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum Path {
    Handler,
    Heartbeat,
}

impl Path {
    fn label(self) -> &'static str {
        match self {
            Path::Handler => "cancel -> handler's cleanup started",
            Path::Heartbeat => "cancel -> heartbeat returns Cancelled",
        }
    }
}

/// One measured cancel.
struct Sample {
    /// From before `client.cancel` to the end point.
    latency: Duration,
    /// How long `client.cancel` took (the request committed).
    cancel_call: Duration,
    /// The activity's mean heartbeat period before the cancel (heartbeat path only).
    period: Option<Duration>,
    /// Heartbeats that returned `Ok` after `client.cancel` was called, and how long after
    /// the call the last of them came (heartbeat path only).
    late: Option<(u64, Option<Duration>)>,
}

const PARK_TIMEOUT: Duration = Duration::from_secs(10);
const SEEN_TIMEOUT: Duration = Duration::from_secs(10);
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Waits until workflow `id` committed its first step (it is parked on its sleep).
async fn wait_first_step(client: &Client, id: &str) -> Result<(), String> {
    let deadline = Instant::now() + PARK_TIMEOUT;
    loop {
        match client.describe(id).await {
            Ok(d) if d.version >= 1 => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(format!("describe {id}: {e}")),
        }
        if Instant::now() > deadline {
            return Err(format!("{id} did not take its first step"));
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
}

/// The mean gap between the heartbeats a probe saw.
fn mean_period(p: &Probe) -> Option<Duration> {
    let (first, last) = (p.first_beat?, p.last_beat?);
    (p.beats > 1).then(|| (last - first) / (p.beats - 1) as u32)
}

/// Runs one sample on workflow `id`.
async fn sample(
    client: &Client,
    path: Path,
    id: &str,
    period_us: u64,
    phase_index: usize,
) -> Result<Sample, String> {
    let mut measured = match path {
        Path::Handler => {
            client
                .start(parked_with_handler, id, ())
                .await
                .map_err(|e| format!("start {id}: {e}"))?;
            wait_first_step(client, id).await?;
            cancel_and_wait(client, id, |p| p.cleanup_started).await?
        }
        Path::Heartbeat => {
            client
                .start(heartbeating_call, id, period_us)
                .await
                .map_err(|e| format!("start {id}: {e}"))?;
            let period = wait_probe(id, PARK_TIMEOUT, |p| {
                (p.beats >= READY_BEATS).then(|| mean_period(p)).flatten()
            })
            .await
            .ok_or_else(|| format!("{id}: the activity did not heartbeat {READY_BEATS} times"))?;
            // Woken by a heartbeat, this task is in phase with the activity: cancelling now
            // would always land just after a heartbeat and wait a whole period. Wait a
            // fraction of a period first, spread evenly over the samples (golden-ratio
            // sequence), so the cancel lands at every phase. A blocking thread sleeps with
            // finer resolution than tokio's millisecond timer.
            let fraction = (phase_index as f64 * 0.618_033_988_749_895).fract();
            let delay = period.mul_f64(fraction);
            let _ = tokio::task::spawn_blocking(move || std::thread::sleep(delay)).await;
            cancel_and_wait(client, id, |p| p.cancel_seen).await?
        }
    };
    // Not timed: only makes sure the workflow is gone before the next sample starts.
    match tokio::time::timeout(CLOSE_TIMEOUT, client.outcome_json(id)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(format!("{id}: no outcome: {e}")),
        Err(_) => return Err(format!("{id} did not close within {CLOSE_TIMEOUT:?}")),
    }
    if path == Path::Heartbeat {
        measured.period = read_probe(id, mean_period);
        measured.late = read_probe(id, |p| {
            let called = p.cancel_called?;
            let last = p
                .last_late_beat
                .map(|b| b.saturating_duration_since(called));
            Some((p.late_beats, last))
        });
    }
    Ok(measured)
}

/// Cancels `id` and waits until `end` reads the end point from its probe.
async fn cancel_and_wait(
    client: &Client,
    id: &str,
    end: impl Fn(&Probe) -> Option<Instant>,
) -> Result<Sample, String> {
    let t0 = Instant::now();
    update_probe(id, |p| {
        p.cancel_called = Some(t0);
        false
    });
    client
        .cancel(id, "cancel_latency bench")
        .await
        .map_err(|e| format!("cancel {id}: {e}"))?;
    let cancel_call = t0.elapsed();
    let at = wait_probe(id, SEEN_TIMEOUT, end)
        .await
        .ok_or_else(|| format!("{id}: the cancel was not seen within {SEEN_TIMEOUT:?}"))?;
    Ok(Sample {
        latency: at.saturating_duration_since(t0),
        cancel_call,
        period: None,
        late: None,
    })
}

/// Percentiles of one row, in microseconds.
struct Summary {
    n: usize,
    p50: f64,
    p99: f64,
    max: f64,
    mean: f64,
}

fn summarize(values: &[Duration]) -> Option<Summary> {
    if values.is_empty() {
        return None;
    }
    let mut us: Vec<f64> = values.iter().map(|d| d.as_secs_f64() * 1e6).collect();
    us.sort_by(f64::total_cmp);
    // Nearest rank: the smallest value with at least q of the samples at or below it.
    let rank = |q: f64| us[((q * us.len() as f64).ceil() as usize).clamp(1, us.len()) - 1];
    Some(Summary {
        n: us.len(),
        p50: rank(0.50),
        p99: rank(0.99),
        max: us[us.len() - 1],
        mean: us.iter().sum::<f64>() / us.len() as f64,
    })
}

struct Row {
    store: &'static str,
    path: Path,
    latency: Option<Summary>,
    cancel_call: Option<Summary>,
    period: Option<Summary>,
    /// Per sample: heartbeats answered `Ok` after `client.cancel` was called.
    late_counts: Vec<u64>,
    /// Over the samples that had such a heartbeat: how long after the call the last came.
    late_last: Option<Summary>,
    failures: Vec<String>,
    took: Duration,
    stopped_early: bool,
}

struct Settings {
    samples: usize,
    warmup: usize,
    period_us: u64,
    budget: Duration,
}

async fn measure(client: &Client, store: &'static str, path: Path, s: &Settings) -> Row {
    let tag = match path {
        Path::Handler => "handler",
        Path::Heartbeat => "heartbeat",
    };
    let started = Instant::now();
    let (mut latency, mut cancel_call, mut period) = (Vec::new(), Vec::new(), Vec::new());
    let (mut late_counts, mut late_last) = (Vec::new(), Vec::new());
    let mut failures = Vec::new();
    let mut stopped_early = false;
    for i in 0..s.warmup + s.samples {
        if started.elapsed() > s.budget {
            stopped_early = true;
            break;
        }
        let id = format!("{store}-{tag}-{i}");
        match sample(client, path, &id, s.period_us, i).await {
            Ok(m) if i >= s.warmup => {
                latency.push(m.latency);
                cancel_call.push(m.cancel_call);
                period.extend(m.period);
                if let Some((count, last)) = m.late {
                    late_counts.push(count);
                    late_last.extend(last);
                }
            }
            Ok(_) => {}
            Err(e) => {
                failures.push(e);
                // Leave nothing running behind a failed sample.
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, client.terminate(&id, "bench")).await;
            }
        }
        PROBES
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }
    Row {
        store,
        path,
        latency: summarize(&latency),
        cancel_call: summarize(&cancel_call),
        period: summarize(&period),
        late_counts,
        late_last: summarize(&late_last),
        failures,
        took: started.elapsed(),
        stopped_early,
    }
}

fn engine_builder() -> workflow_core::EngineBuilder {
    Engine::builder()
        .register(parked_with_handler)
        .register(heartbeating_call)
        .activity(stamp_cleanup)
        .activity(spin_heartbeat)
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| {
            eprintln!("{name}={v:?} is not a number; using {default}");
            default
        }),
        Err(_) => default,
    }
}

async fn run_all(s: &Settings) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();

    let engine = engine_builder()
        .in_memory()
        .build()
        .await
        .map_err(|e| format!("memory engine: {e}"))?;
    for path in [Path::Handler, Path::Heartbeat] {
        rows.push(measure(&engine.client(), "memory", path, s).await);
    }
    engine.shutdown().await;

    let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let file = dir.path().join("cancel_latency.db");
    let store = SqliteStore::open(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    let engine = engine_builder()
        .store(store)
        .build()
        .await
        .map_err(|e| format!("sqlite engine: {e}"))?;
    for path in [Path::Handler, Path::Heartbeat] {
        rows.push(measure(&engine.client(), "sqlite", path, s).await);
    }
    engine.shutdown().await;
    println!("SQLite file: {} (removed)", file.display());
    Ok(rows)
}

fn print_table(rows: &[Row], s: &Settings) {
    let cell = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.0}"));
    println!();
    println!(
        "{:<7} {:<38} {:>5} {:>9} {:>9} {:>9} {:>9}   {:>12} {:>12}",
        "store", "path", "n", "p50 µs", "p99 µs", "max µs", "mean µs", "cancel() p50", "hb period"
    );
    for row in rows {
        let l = row.latency.as_ref();
        println!(
            "{:<7} {:<38} {:>5} {:>9} {:>9} {:>9} {:>9}   {:>12} {:>12}",
            row.store,
            row.path.label(),
            l.map_or(0, |l| l.n),
            cell(l.map(|l| l.p50)),
            cell(l.map(|l| l.p99)),
            cell(l.map(|l| l.max)),
            cell(l.map(|l| l.mean)),
            cell(row.cancel_call.as_ref().map(|c| c.p50)),
            cell(row.period.as_ref().map(|p| p.mean)),
        );
    }
    println!();
    println!(
        "cancel() p50: how long `client.cancel` took (cancel request committed), µs. \
         hb period: the activity's mean gap between heartbeats before the cancel, µs \
         (it sleeps {} µs between heartbeats{}).",
        s.period_us,
        if s.period_us == 0 { ", yield_now" } else { "" }
    );
    for row in rows {
        if let Some(c) = &row.cancel_call {
            println!(
                "  {} {}: cancel() p50 {:.0} p99 {:.0} max {:.0} µs; row took {:.1?}{}",
                row.store,
                row.path.label(),
                c.p50,
                c.p99,
                c.max,
                row.took,
                if row.stopped_early {
                    " (stopped early: time budget)"
                } else {
                    ""
                }
            );
        }
        if !row.late_counts.is_empty() {
            let n = row.late_counts.len();
            let with = row.late_counts.iter().filter(|&&c| c > 0).count();
            let max = row.late_counts.iter().max().copied().unwrap_or(0);
            let mean = row.late_counts.iter().sum::<u64>() as f64 / n as f64;
            print!(
                "    heartbeats still answered Ok after cancel() was called: in {with} of {n} \
                 samples, mean {mean:.2}, max {max}"
            );
            match &row.late_last {
                Some(l) => println!(
                    "; the last such Ok came p50 {:.0} p99 {:.0} max {:.0} µs after the call \
                     (the engine had not delivered the cancel by then)",
                    l.p50, l.p99, l.max
                ),
                None => println!(),
            }
        }
        if !row.failures.is_empty() {
            println!(
                "  {} {}: {} failed sample(s), first: {}",
                row.store,
                row.path.label(),
                row.failures.len(),
                row.failures[0]
            );
        }
    }
}

fn main() {
    let settings = Settings {
        samples: env_number("CANCEL_LATENCY_SAMPLES", 500).max(1) as usize,
        warmup: 10,
        period_us: env_number("CANCEL_LATENCY_HEARTBEAT_US", 1000),
        budget: Duration::from_secs(env_number("CANCEL_LATENCY_BUDGET_SECS", 25)),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cancel_latency: could not build the tokio runtime: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "cancel_latency: {} samples per row after {} warm-up, sequential, real time, \
         multi-thread tokio runtime (2 workers)",
        settings.samples, settings.warmup
    );
    let started = Instant::now();
    match runtime.block_on(run_all(&settings)) {
        Ok(rows) => print_table(&rows, &settings),
        Err(e) => {
            eprintln!("cancel_latency: {e}");
            std::process::exit(1);
        }
    }
    println!("\ntotal run time {:.1?}", started.elapsed());
}
