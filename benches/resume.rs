//! Resume cost vs history length (issue: "resume after 10, 1,000 and 50,000 completed steps;
//! the cost must stay flat").
//!
//! ```text
//! cargo bench --bench resume
//! ```
//!
//! The engine resumes a workflow from its last snapshot instead of replaying its history, so
//! resuming should cost the same whatever the history length. To check it, for each N in
//! {10, 1,000, 50,000} and each store (`SqliteStore` on a file in a temporary directory,
//! `MemoryStore`):
//!
//! 1. Setup (not timed, once per N): an engine runs `long_history(N)`, which completes N
//!    activities one after the other and then parks on `ctx.cancelled()`. The stored data is
//!    kept: the SQLite file after a WAL checkpoint, or the memory store's bytes
//!    (`MemoryStore::to_bytes`). The setup time, the history length, the stored snapshot's
//!    size and the size of the whole store are printed.
//! 2. Resume (timed, `SAMPLES` times after one warm-up): a fresh copy of that data (file
//!    copy, or `MemoryStore::from_bytes`, made outside the timed part), then, timed: open
//!    the store (SQLite only), build a fresh engine on it (recovery runs: it finds the Running
//!    workflow), `client.cancel`, and wait for the outcome: the workflow takes its next step
//!    (decodes its snapshot, sees the cancel, returns) and closes. The two phases are
//!    reported apart ("recover": open + build; "step": cancel to outcome) and together.
//!    Every timed resume starts after the same idle pause (`SETTLE`), so that the rows differ
//!    only by N, not by how long the untimed copy took.
//!
//! The table gives p50 and p90 of the total and their ratios to N = 10's. For
//! context it also times reading the whole history back from the store: the least a
//! replay-based engine would do before its next step (it would then re-run the workflow
//! code through all N activity results); this engine does not read the history to resume.
//!
//! A last table checks that a workflow parked inside `for _ in 0..N` stores a snapshot of the
//! same size whatever N: a `for` loop over a range keeps its position in the state, not its
//! remaining items (before commit ea190e6 it kept them all, so every step of the loop stored
//! O(N) bytes).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use workflow_core::prelude::*;
use workflow_core::{MemoryStore, SqliteStore, Store, Workflow};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// History lengths (completed activity steps) to resume after.
const HISTORY_LENGTHS: [u64; 3] = [10, 1_000, 50_000];
/// Timed resumes per (store, N).
const SAMPLES: usize = 31;
/// Idle pause before every timed resume, so that each starts from the same state (runtime
/// workers parked, caches cold, as in a restarted process) whatever N: preparing the copy
/// of a large store takes longer than a small one, and without the pause the workers of the
/// small rows are still spinning from the previous sample while those of the large rows
/// have gone to sleep, which alone made the memory-store rows differ by 10x or more.
const SETTLE: Duration = Duration::from_millis(50);
/// The workflow id every setup uses.
const ID: &str = "resume-bench";

#[activity]
async fn noop(_ctx: ActivityContext, i: u64) -> Result<u64, ActivityError> {
    Ok(i)
}

/// Completes `n` activities in sequence, then waits for a cancel request and returns the sum
/// of the activity results (so the outcome proves the state survived the restart).
#[workflow]
async fn long_history(ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    let mut sum: u64 = 0;
    for i in 0..n {
        let r = ctx.activity(noop, i).await?;
        sum += r;
    }
    ctx.cancelled().await;
    Ok(sum)
}

/// A `for` loop over a range, parked on a timer at its first iteration.
#[workflow]
async fn for_range(ctx: WorkflowContext, n: u64) -> Result<(), WorkflowError> {
    for _ in 0..n {
        ctx.sleep(Duration::from_secs(3_600)).await?;
    }
    Ok(())
}

fn expected_sum(n: u64) -> u64 {
    n * n.saturating_sub(1) / 2
}

/// The state `long_history` parks in once its loop is done: the one awaiting `cancelled`.
fn parked_state() -> Result<String, BoxError> {
    <long_history as Workflow>::graph()
        .states
        .into_iter()
        .find(|s| s.awaits.contains("cancel"))
        .map(|s| s.name)
        .ok_or_else(|| "long_history's graph has no state awaiting the cancel signal".into())
}

fn builder() -> workflow_core::EngineBuilder {
    Engine::builder().register(long_history).activity(noop)
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Sqlite,
    Memory,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Sqlite => "sqlite",
            Kind::Memory => "memory",
        }
    }
}

/// The stored data of one parked workflow with N completed steps, and what was measured
/// about it.
struct Prepared {
    kind: Kind,
    n: u64,
    setup: Duration,
    history_events: usize,
    snapshot_bytes: usize,
    store_bytes: u64,
    history_read: Duration,
    /// The SQLite file (checkpointed), or the memory store's bytes.
    data: Data,
}

enum Data {
    File(PathBuf),
    Bytes(Vec<u8>),
}

struct Sample {
    recover: Duration,
    step: Duration,
}

impl Sample {
    fn total(&self) -> Duration {
        self.recover + self.step
    }
}

fn main() -> Result<(), BoxError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    runtime.block_on(run())?;
    println!("\ntotal run time {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

async fn run() -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let parked = parked_state()?;
    println!(
        "resume cost vs history length: {SAMPLES} timed resumes per row (after 1 warm-up), \
         {} tokio workers",
        tokio::runtime::Handle::current().metrics().num_workers()
    );
    println!("workflow `long_history(N)`: N sequential activities, then parks in `{parked}`\n");

    let mut prepared = Vec::new();
    println!("setup (not timed):");
    for kind in [Kind::Sqlite, Kind::Memory] {
        for n in HISTORY_LENGTHS {
            let p = prepare(kind, n, dir.path(), &parked).await?;
            println!(
                "  {:<6} N = {:>6}: {:>8.2} s to run {} steps",
                kind.name(),
                n,
                p.setup.as_secs_f64(),
                n + 1
            );
            prepared.push(p);
        }
    }

    println!("\nstored data:");
    println!(
        "  {:<6} {:>6} {:>14} {:>14} {:>16} {:>16}",
        "store", "N", "history events", "snapshot B", "store B", "history read"
    );
    for p in &prepared {
        println!(
            "  {:<6} {:>6} {:>14} {:>14} {:>16} {:>13.2} ms",
            p.kind.name(),
            p.n,
            p.history_events,
            p.snapshot_bytes,
            p.store_bytes,
            ms(p.history_read)
        );
    }
    println!(
        "  (snapshot B: the stored snapshot's JSON; store B: the SQLite file after a WAL \
         checkpoint, or MemoryStore::to_bytes;\n   history read: Store::history of the \
         workflow, median of 3: what a replay-based engine must load first)"
    );

    println!("\nresume (fresh engine on a copy of the data, then cancel -> outcome):");
    println!(
        "  {:<6} {:>6} {:>12} {:>12} {:>12} {:>12} {:>9} {:>9}",
        "store", "N", "recover p50", "step p50", "total p50", "total p90", "ratio", "ratio"
    );
    println!(
        "  {:<6} {:>6} {:>12} {:>12} {:>12} {:>12} {:>9} {:>9}",
        "", "", "", "", "", "", "p50", "p90"
    );
    for kind in [Kind::Sqlite, Kind::Memory] {
        let mut base: Option<(Duration, Duration)> = None;
        for p in prepared.iter().filter(|p| p.kind == kind) {
            let samples = measure(p, dir.path()).await?;
            let recover = percentile(samples.iter().map(|s| s.recover), 50);
            let step = percentile(samples.iter().map(|s| s.step), 50);
            let p50 = percentile(samples.iter().map(Sample::total), 50);
            let p90 = percentile(samples.iter().map(Sample::total), 90);
            let (b50, b90) = *base.get_or_insert((p50, p90));
            println!(
                "  {:<6} {:>6} {:>9.2} ms {:>9.2} ms {:>9.2} ms {:>9.2} ms {:>8.2}x {:>8.2}x",
                kind.name(),
                p.n,
                ms(recover),
                ms(step),
                ms(p50),
                ms(p90),
                p50.as_secs_f64() / b50.as_secs_f64(),
                p90.as_secs_f64() / b90.as_secs_f64(),
            );
        }
    }
    println!(
        "  (recover: SqliteStore::open (sqlite) + Engine::build, which runs recovery; step: \
         client.cancel + outcome,\n   i.e. the next step: load the record, decode the \
         snapshot, resume, commit the close)"
    );

    println!("\nwhat a replay-based design would re-execute before that next step:");
    for p in prepared.iter().filter(|p| p.kind == Kind::Sqlite) {
        println!(
            "  N = {:>6}: re-run the workflow function through {:>6} activity results \
             ({:>6} history events, read in {:.2} ms); this engine decodes one {} B snapshot",
            p.n,
            p.n,
            p.history_events,
            ms(p.history_read),
            p.snapshot_bytes
        );
    }

    for_range_snapshots().await?;
    Ok(())
}

/// Runs `long_history(n)` to its parked state on a fresh store and keeps the stored data.
async fn prepare(kind: Kind, n: u64, dir: &Path, parked: &str) -> Result<Prepared, BoxError> {
    let path = dir.join(format!("base-{n}.db"));
    let memory = Arc::new(MemoryStore::new());
    let store: Arc<dyn Store> = match kind {
        Kind::Sqlite => Arc::new(SqliteStore::open(&path)?),
        Kind::Memory => memory.clone(),
    };
    let engine = builder().store_arc(store.clone()).build().await?;
    let client = engine.client();
    let started = Instant::now();
    client.start(long_history, ID, n).await?;
    wait_parked(&client, n, parked, kind).await?;
    let setup = started.elapsed();

    let history_events = client.history(ID).await?.len();
    let snapshot = store.load_workflow(ID).await?.snapshot;
    let snapshot_bytes = serde_json::to_vec(&snapshot)?.len();
    let mut reads = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let events = store.history(ID).await?;
        reads.push(t.elapsed());
        std::hint::black_box(events);
    }
    let history_read = percentile(reads.into_iter(), 50);
    engine.shutdown().await;
    drop((engine, client, store));

    let (store_bytes, data) = match kind {
        Kind::Sqlite => {
            checkpoint(&path)?;
            (std::fs::metadata(&path)?.len(), Data::File(path))
        }
        Kind::Memory => {
            let bytes = memory.to_bytes();
            (bytes.len() as u64, Data::Bytes(bytes))
        }
    };
    Ok(Prepared {
        kind,
        n,
        setup,
        history_events,
        snapshot_bytes,
        store_bytes,
        history_read,
        data,
    })
}

/// Waits (polling `describe`) until the workflow has completed its `n` steps and parked.
async fn wait_parked(client: &Client, n: u64, parked: &str, kind: Kind) -> Result<(), BoxError> {
    let started = Instant::now();
    let mut last_report = Instant::now();
    loop {
        let d = client.describe(ID).await?;
        if d.status != WorkflowStatus::Running || d.stuck.is_some() {
            return Err(format!("setup workflow did not park: {d}").into());
        }
        if d.state == parked {
            if d.version != n + 1 {
                return Err(format!("parked after {} steps, expected {}", d.version, n + 1).into());
            }
            return Ok(());
        }
        if last_report.elapsed() > Duration::from_secs(15) {
            last_report = Instant::now();
            eprintln!(
                "  ... {} N = {n}: {} of {} steps after {:.0} s",
                kind.name(),
                d.version,
                n + 1,
                started.elapsed().as_secs_f64()
            );
        }
        tokio::time::sleep(Duration::from_millis(if n > 100 { 50 } else { 2 })).await;
    }
}

/// Moves everything in the WAL into the database file, so the file alone holds the data.
fn checkpoint(path: &Path) -> Result<(), BoxError> {
    let conn = rusqlite::Connection::open(path)?;
    let (busy, log, done): (i64, i64, i64) =
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    if busy != 0 || log != done {
        return Err(format!(
            "WAL checkpoint of {} incomplete (busy {busy}, {done} of {log} frames)",
            path.display()
        )
        .into());
    }
    Ok(())
}

/// One warm-up and `SAMPLES` timed resumes, each on its own copy of the data.
async fn measure(p: &Prepared, dir: &Path) -> Result<Vec<Sample>, BoxError> {
    let mut samples = Vec::with_capacity(SAMPLES);
    for k in 0..=SAMPLES {
        let sample = match &p.data {
            Data::File(base) => resume_sqlite(base, &dir.join(format!("rep-{k}.db")), p.n).await?,
            Data::Bytes(bytes) => resume_memory(bytes, p.n).await?,
        };
        if k > 0 {
            samples.push(sample);
        }
    }
    Ok(samples)
}

async fn resume_sqlite(base: &Path, path: &Path, n: u64) -> Result<Sample, BoxError> {
    std::fs::copy(base, path)?;
    tokio::time::sleep(SETTLE).await;
    let t0 = Instant::now();
    let store = SqliteStore::open(path)?;
    let engine = builder().store(store).build().await?;
    let t1 = Instant::now();
    finish(&engine, n).await?;
    let t2 = Instant::now();
    engine.shutdown().await;
    drop(engine);
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(file));
    }
    Ok(Sample {
        recover: t1 - t0,
        step: t2 - t1,
    })
}

async fn resume_memory(bytes: &[u8], n: u64) -> Result<Sample, BoxError> {
    let store = Arc::new(MemoryStore::from_bytes(bytes)?);
    tokio::time::sleep(SETTLE).await;
    let t0 = Instant::now();
    let engine = builder().store_arc(store.clone()).build().await?;
    let t1 = Instant::now();
    finish(&engine, n).await?;
    let t2 = Instant::now();
    engine.shutdown().await;
    drop((engine, store));
    Ok(Sample {
        recover: t1 - t0,
        step: t2 - t1,
    })
}

/// The event and the step being timed: cancel, then the workflow's outcome.
async fn finish(engine: &Engine, n: u64) -> Result<(), BoxError> {
    let client = engine.client();
    client.cancel(ID, "resume bench").await?;
    match client.handle(long_history, ID).outcome().await? {
        Outcome::Completed(sum) if sum == expected_sum(n) => Ok(()),
        other => Err(format!("resumed workflow ended with {other:?}, expected Completed").into()),
    }
}

/// Snapshot size of `for_range(N)` parked at its first iteration, on a memory store.
async fn for_range_snapshots() -> Result<(), BoxError> {
    println!(
        "\nsnapshot of a workflow parked in `for _ in 0..N {{ ctx.sleep(..).await? }}` \
         (first iteration):"
    );
    let mut sizes = Vec::new();
    for n in HISTORY_LENGTHS {
        let store = Arc::new(MemoryStore::new());
        let engine = Engine::builder()
            .register(for_range)
            .store_arc(store.clone())
            .build()
            .await?;
        let id = format!("for-range-{n}");
        engine.client().start(for_range, id.as_str(), n).await?;
        let record = loop {
            let record = store.load_workflow(&id).await?;
            if record.version >= 1 {
                break record;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        engine.shutdown().await;
        let size = serde_json::to_vec(&record.snapshot)?.len();
        println!("  N = {n:>6}: {size:>8} B  (state `{}`)", record.state_name);
        sizes.push(size);
    }
    let (least, most) = (
        sizes.iter().min().copied().unwrap_or(0),
        sizes.iter().max().copied().unwrap_or(0),
    );
    if most > least + 64 {
        println!("  GROWS with N: the state holds the loop's remaining items");
    } else {
        println!("  flat: the state keeps the loop's position, not its remaining items");
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The `p`th percentile (nearest rank) of some durations.
fn percentile(values: impl Iterator<Item = Duration>, p: usize) -> Duration {
    let mut v: Vec<Duration> = values.collect();
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    let rank = (p * v.len()).div_ceil(100).clamp(1, v.len());
    v[rank - 1]
}
