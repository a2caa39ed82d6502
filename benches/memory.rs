//! Memory per parked workflow (issue: "100,000 workflows waiting on timers; bytes per
//! workflow in RAM and on disk, vs size_of the equivalent native future").
//!
//! ```text
//! cargo bench --bench memory
//! ```
//!
//! A counting global allocator (wrapping `std::alloc::System`) tracks the heap bytes the
//! program has requested and not freed, and the number of live allocations. Each measurement
//! runs in its own child process (this binary run again with `--phase <name>`), so that one
//! starts from a fresh heap and runtime, unaffected by what the others freed:
//!
//! - `native`: 100,000 `tokio::spawn`ed copies of the equivalent plain future (an `async fn`
//!   that awaits `tokio::time::sleep` for an hour): heap bytes per task.
//! - `sqlite`: an engine on a `SqliteStore` (a file in a temporary directory) starts 100,000
//!   `parked` workflows, each of which sleeps an hour on a durable timer. Once every one has
//!   taken its first step (the store has no workflow left to step), the heap growth divided
//!   by the count is the engine's RAM per workflow, while the data itself is on disk. After
//!   the engine is dropped and the WAL checkpointed, the file size divided by the count is
//!   the disk cost per workflow. SQLite's own memory (its page caches, bounded: 2 MiB per
//!   connection by default) comes from the C allocator and is not counted; the RSS column
//!   includes it. Starting is bounded by `SQLITE_START_BUDGET`: if it runs out, fewer
//!   workflows are measured and the output says so.
//! - `memory`: the same on a `MemoryStore`, where the data also lives in RAM. The heap left
//!   after the engine is dropped (the store being kept) is the store's share.
//! - `memory-cancel`: the same as `memory` with workflows parked on `ctx.cancelled()` instead
//!   of a timer, so the difference is what a pending timer costs.
//!
//! The parent prints `size_of` the generated state enum, of the native future, and a
//! summary. Heap bytes are the sizes requested (malloc's own per-allocation overhead, about
//! 8 to 16 bytes each, is not included; the live-allocation count lets you add it); RSS is
//! the process's resident memory growth over the same interval (Linux only).

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use workflow_core::prelude::*;
use workflow_core::{MemoryStore, SqliteStore, Store, Workflow};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Workflows (and native tasks) per measurement.
const COUNT: usize = 100_000;
/// How long starting workflows on SQLite may take before the bench stops starting more.
const SQLITE_START_BUDGET: Duration = Duration::from_secs(240);
/// Starts in flight at once.
const CONCURRENT_STARTS: usize = 64;
/// How long every workflow sleeps.
const PARK: Duration = Duration::from_secs(3_600);

// ----- counting allocator -----------------------------------------------------------------

/// `System`, counting the bytes requested and not yet freed, and the live allocations.
struct Counting;

static HEAP_BYTES: AtomicIsize = AtomicIsize::new(0);
static LIVE_ALLOCS: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the
// counters are only updated around those calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            HEAP_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
            LIVE_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            HEAP_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
            LIVE_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        HEAP_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        LIVE_ALLOCS.fetch_sub(1, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            HEAP_BYTES.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Heap bytes, live allocations and resident memory at one moment.
#[derive(Clone, Copy)]
struct Mark {
    heap: isize,
    allocs: isize,
    rss: Option<isize>,
}

impl Mark {
    fn now() -> Mark {
        Mark {
            heap: HEAP_BYTES.load(Ordering::Relaxed),
            allocs: LIVE_ALLOCS.load(Ordering::Relaxed),
            rss: rss_bytes(),
        }
    }
}

/// Growth from `from` to `to`, per item.
struct PerItem {
    heap: f64,
    allocs: f64,
    rss: Option<f64>,
}

fn per_item(from: Mark, to: Mark, count: usize) -> PerItem {
    let n = count.max(1) as f64;
    PerItem {
        heap: (to.heap - from.heap) as f64 / n,
        allocs: (to.allocs - from.allocs) as f64 / n,
        rss: from.rss.zip(to.rss).map(|(a, b)| (b - a) as f64 / n),
    }
}

/// Resident set size of this process (Linux), from `/proc/self/status`.
fn rss_bytes() -> Option<isize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: isize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Heap bytes owned by each of `k` values of `make()` held at once (their inline size, in the
/// vector allocated beforehand, is not included).
fn heap_per<T>(k: usize, mut make: impl FnMut() -> Result<T, BoxError>) -> Result<f64, BoxError> {
    let mut held = Vec::with_capacity(k);
    let before = HEAP_BYTES.load(Ordering::Relaxed);
    for _ in 0..k {
        held.push(make()?);
    }
    let after = HEAP_BYTES.load(Ordering::Relaxed);
    drop(held);
    Ok((after - before) as f64 / k as f64)
}

// ----- the workflows and their native equivalent ------------------------------------------

/// Sleeps an hour on a durable timer.
#[workflow]
async fn parked(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    ctx.sleep(PARK).await?;
    Ok(())
}

/// Waits for a cancel request: parked without a timer.
#[workflow]
async fn parked_untimed(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    ctx.cancelled().await;
    Ok(())
}

/// `parked` as a plain future.
async fn parked_native() -> Result<(), WorkflowError> {
    tokio::time::sleep(PARK).await;
    Ok(())
}

// ----- the phases (each in its own process) -----------------------------------------------

/// What a phase reports to the parent: `@key value` lines on stdout.
fn report(key: &str, value: impl std::fmt::Display) {
    println!("@{key} {value}");
}

fn report_per_item(prefix: &str, p: &PerItem) {
    report(&format!("{prefix}heap"), p.heap);
    report(&format!("{prefix}allocs"), p.allocs);
    if let Some(rss) = p.rss {
        report(&format!("{prefix}rss"), rss);
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, BoxError> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn phase_native() -> Result<(), BoxError> {
    let rt = runtime()?;
    rt.block_on(async {
        let mut handles = Vec::with_capacity(COUNT);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let before = Mark::now();
        let started = Instant::now();
        for _ in 0..COUNT {
            handles.push(tokio::spawn(parked_native()));
        }
        // Let every task be polled once, so that its sleep is registered with the timer.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = Mark::now();
        report("count", COUNT);
        report("start_s", started.elapsed().as_secs_f64());
        report_per_item("", &per_item(before, after, COUNT));
        for h in &handles {
            h.abort();
        }
        for h in handles {
            let _ = h.await;
        }
        Ok(())
    })
}

fn phase_engine(kind: &str) -> Result<(), BoxError> {
    let rt = runtime()?;
    rt.block_on(engine_measurement(kind))
}

async fn engine_measurement(kind: &str) -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("parked.db");
    let untimed = kind == "memory-cancel";
    let (budget, memory) = match kind {
        "sqlite" => (SQLITE_START_BUDGET, None),
        _ => (Duration::MAX, Some(Arc::new(MemoryStore::new()))),
    };

    let before = Mark::now();
    let mut sqlite = None;
    let store: Arc<dyn Store> = match &memory {
        Some(m) => m.clone(),
        None => {
            let s = SqliteStore::open(&path)?;
            sqlite = Some(s.clone());
            Arc::new(s)
        }
    };
    let engine = Engine::builder()
        .register(parked)
        .register(parked_untimed)
        .store_arc(store.clone())
        .build()
        .await?;
    let client = engine.client();

    // Start, at most CONCURRENT_STARTS at once, until COUNT or the budget runs out.
    let started_at = Instant::now();
    let mut in_flight = tokio::task::JoinSet::new();
    let mut started = 0usize;
    let mut next = 0usize;
    let mut last_report = Instant::now();
    loop {
        while in_flight.len() < CONCURRENT_STARTS && next < COUNT && started_at.elapsed() < budget {
            let client = client.clone();
            let id = format!("wf-{next:06}");
            next += 1;
            in_flight.spawn(async move {
                if untimed {
                    client.start(parked_untimed, id, ()).await.map(drop)
                } else {
                    client.start(parked, id, ()).await.map(drop)
                }
            });
        }
        match in_flight.join_next().await {
            Some(joined) => {
                joined??;
                started += 1;
            }
            None => break,
        }
        if last_report.elapsed() > Duration::from_secs(20) {
            last_report = Instant::now();
            eprintln!(
                "  ... {kind}: {started} started after {:.0} s",
                started_at.elapsed().as_secs_f64()
            );
        }
    }
    let start_time = started_at.elapsed();
    drop(in_flight);

    // Wait until no workflow is left to step: every one has committed its first step and
    // is parked (on its timer, or on the cancel signal).
    let mut polls = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        polls += 1;
        if store
            .workflows_to_step(engine.worker_id())
            .await?
            .is_empty()
        {
            break;
        }
        if polls > 1_200 {
            return Err(format!("{kind}: workflows still unstepped after 10 minutes").into());
        }
    }
    let park_time = started_at.elapsed();
    // Let the last timers be armed and the finished steppers be reaped.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let probe = client.describe("wf-000000").await?;
    let expected = if untimed { "AwaitCancel" } else { "Sleep" };
    if probe.state != expected || probe.status != WorkflowStatus::Running {
        return Err(format!("{kind}: first workflow not parked as expected:\n{probe}").into());
    }
    drop(probe);
    let parked_mark = Mark::now();

    let snapshot = store.load_workflow("wf-000000").await?.snapshot;
    report("count", started);
    report("start_s", start_time.as_secs_f64());
    report("park_s", park_time.as_secs_f64());
    report("snapshot_bytes", serde_json::to_vec(&snapshot)?.len());
    drop(snapshot);
    report_per_item("", &per_item(before, parked_mark, started));
    if let Some(s) = sqlite.take() {
        let (transactions, writes) = s.commit_stats();
        report("writes", writes);
        report("write_transactions", transactions);
    }

    engine.shutdown().await;
    drop((engine, client, store));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let dropped = Mark::now();
    // What outlives the engine: the memory store's tables (we hold the store), or nothing
    // but runtime leftovers with SQLite.
    report_per_item("kept_", &per_item(before, dropped, started));

    if let Some(memory) = memory {
        let running = memory.running_workflows().await?;
        let armed = running.iter().filter(|w| w.timers.len() == 1).count();
        report("running", running.len());
        report("with_timer", armed);
        drop(running);
        // What the parts of one parked workflow own on the heap: its snapshot as the memory
        // store holds it (its JSON text), and the decoded runtime state the engine caches.
        let snapshot = memory.load_workflow("wf-000000").await?.snapshot;
        report(
            "snapshot_value_heap",
            heap_per(1_000, || Ok(snapshot.clone()))?,
        );
        report(
            "instance_heap",
            heap_per(1_000, || {
                let parts: serde_json::Value = snapshot.decode()?;
                Ok(serde_json::from_value::<workflow_core::Instance>(
                    parts["instance"].clone(),
                )?)
            })?,
        );
    } else {
        disk_report(&path, started)?;
    }
    Ok(())
}

/// File size per workflow after a WAL checkpoint, and what the rows hold.
fn disk_report(path: &Path, count: usize) -> Result<(), BoxError> {
    let conn = rusqlite::Connection::open(path)?;
    // The engine's commit thread may still be closing its connection: retry while busy.
    for attempt in 0.. {
        let (busy, log, done): (i64, i64, i64) =
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
        if busy == 0 && log == done {
            break;
        }
        if attempt == 50 {
            return Err(format!("WAL checkpoint stays busy ({done} of {log} frames)").into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let count_of = |sql: &str| -> Result<f64, BoxError> {
        Ok(conn
            .query_row(sql, [], |r| r.get::<_, Option<f64>>(0))?
            .unwrap_or(0.0))
    };
    let n = count.max(1) as f64;
    report("disk", std::fs::metadata(path)?.len() as f64 / n);
    report(
        "running",
        count_of("SELECT COUNT(*) FROM workflows WHERE status = 'running'")?,
    );
    report("with_timer", count_of("SELECT COUNT(*) FROM timers")?);
    report(
        "history_rows",
        count_of("SELECT COUNT(*) FROM history")? / n,
    );
    report(
        "row_bytes",
        count_of(
            "SELECT AVG(LENGTH(snapshot) + LENGTH(id) + LENGTH(workflow_type) \
             + LENGTH(state_name)) FROM workflows",
        )?,
    );
    report(
        "history_bytes",
        count_of("SELECT SUM(LENGTH(event)) FROM history")? / n,
    );
    Ok(())
}

// ----- the parent -------------------------------------------------------------------------

type Results = BTreeMap<String, f64>;

/// Runs this binary again with `--phase name` and collects its `@key value` lines.
fn run_phase(name: &str) -> Result<Results, BoxError> {
    let exe = std::env::current_exe()?;
    let started = Instant::now();
    let output = std::process::Command::new(exe)
        .args(["--phase", name])
        .stderr(std::process::Stdio::inherit())
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!("phase `{name}` failed ({}):\n{stdout}", output.status).into());
    }
    let mut results = Results::new();
    for line in stdout.lines() {
        match line.strip_prefix('@').and_then(|l| l.split_once(' ')) {
            Some((key, value)) => {
                let value = value
                    .parse()
                    .map_err(|e| format!("phase `{name}`: bad value in `{line}`: {e}"))?;
                results.insert(key.to_string(), value);
            }
            None => println!("{line}"),
        }
    }
    results.insert("wall_s".to_string(), started.elapsed().as_secs_f64());
    Ok(results)
}

fn get(r: &Results, key: &str) -> f64 {
    r.get(key).copied().unwrap_or(f64::NAN)
}

fn bytes_cell(r: &Results, key: &str) -> String {
    match r.get(key) {
        Some(v) => format!("{v:>9.0}"),
        None => format!("{:>9}", "n/a"),
    }
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--phase") {
        let phase = args.get(i + 1).map(String::as_str).unwrap_or("");
        return match phase {
            "native" => phase_native(),
            "sqlite" | "memory" | "memory-cancel" => phase_engine(phase),
            other => Err(format!("unknown phase `{other}`").into()),
        };
    }
    let started = Instant::now();

    type State = <parked as Workflow>::State;
    println!("memory per parked workflow ({COUNT} per measurement, each in its own process)\n");
    println!("static sizes:");
    println!(
        "  size_of::<{}>() (the generated state enum)  {:>5} B",
        std::any::type_name::<State>()
            .rsplit("::")
            .next()
            .unwrap_or("State"),
        std::mem::size_of::<State>()
    );
    println!(
        "  size_of::<workflow_core::Instance>() (runtime state kept beside it)  {:>5} B",
        std::mem::size_of::<workflow_core::Instance>()
    );
    println!(
        "  size_of::<(OpId, OpRecord)>() (one entry of Instance's operation table)  {:>5} B \
         (a BTreeMap leaf node has room for 11: {} B)",
        std::mem::size_of::<(workflow_core::OpId, workflow_core::OpRecord)>(),
        11 * std::mem::size_of::<(workflow_core::OpId, workflow_core::OpRecord)>()
    );
    println!(
        "  size_of_val(&parked_native()) (the equivalent native future)  {:>5} B",
        std::mem::size_of_val(&parked_native())
    );

    let mut rows: Vec<(&str, Results)> = Vec::new();
    for phase in ["native", "sqlite", "memory", "memory-cancel"] {
        eprintln!("running phase `{phase}` ...");
        let results = run_phase(phase)?;
        rows.push((phase, results));
    }

    println!("\nheap per item (counted by the global allocator), resident memory per item:");
    println!(
        "  {:<34} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "measurement", "count", "heap B", "allocs", "RSS B", "kept B", "setup s"
    );
    for (phase, r) in &rows {
        let label = match *phase {
            "native" => "tokio::spawn(native future)",
            "sqlite" => "engine + SqliteStore (timer)",
            "memory" => "engine + MemoryStore (timer)",
            _ => "engine + MemoryStore (cancelled())",
        };
        println!(
            "  {:<34} {:>7.0} {} {:>9.1} {} {} {:>9.1}",
            label,
            get(r, "count"),
            bytes_cell(r, "heap"),
            get(r, "allocs"),
            bytes_cell(r, "rss"),
            bytes_cell(r, "kept_heap"),
            get(r, "park_s").max(get(r, "start_s")),
        );
    }
    println!(
        "  (heap B: heap growth per item while all are parked; allocs: live allocations per \
         item;\n   kept B: heap still held per item once the engine is dropped: the memory \
         store's tables;\n   setup s: time to start them all and see them parked)"
    );

    let sqlite = &rows[1].1;
    let memory = &rows[2].1;
    let untimed = &rows[3].1;
    let native = get(&rows[0].1, "heap");
    let engine_part = |r: &Results| get(r, "heap") - get(r, "kept_heap");
    let timer_engine = engine_part(memory) - engine_part(untimed);
    let timer_store = get(memory, "kept_heap") - get(untimed, "kept_heap");
    let instance_inline = std::mem::size_of::<workflow_core::Instance>() as f64;
    let instance_heap = get(memory, "instance_heap");
    println!("\nper parked workflow:");
    println!(
        "  RAM, engine on SQLite (data on disk): {:>7.0} B heap ({:.1}x a spawned native task)",
        get(sqlite, "heap"),
        get(sqlite, "heap") / native
    );
    println!(
        "    a workflow in the engine's machine cache (the last {} stepped; the rest are \
         decoded from disk at their next step): Instance {:.0} B inline + {:.0} B heap, \
         machine {} B boxed",
        workflow_core::DEFAULT_CACHED_MACHINES,
        instance_inline,
        instance_heap,
        std::mem::size_of::<State>()
    );
    println!(
        "    the pending timer (its entries in the engine's timer queue): {timer_engine:.0} B \
         (engine heap, timer vs cancelled() on MemoryStore)"
    );
    println!(
        "  RAM, engine on MemoryStore:            {:>7.0} B heap ({:.0} B engine runtime + \
         {:.0} B store tables; {:.1}x a native task)",
        get(memory, "heap"),
        engine_part(memory),
        get(memory, "kept_heap"),
        get(memory, "heap") / native
    );
    println!(
        "    the snapshot as the store holds it (its JSON text): {:.0} B heap; \
         the timer's rows: {timer_store:.0} B",
        get(memory, "snapshot_value_heap")
    );
    println!(
        "  disk, SQLite file after a WAL checkpoint: {:>7.0} B (row {:.0} B of JSON/text, \
         {:.1} history rows holding {:.0} B of events)",
        get(sqlite, "disk"),
        get(sqlite, "row_bytes"),
        get(sqlite, "history_rows"),
        get(sqlite, "history_bytes")
    );
    println!(
        "  stored snapshot (JSON): {:.0} B",
        get(sqlite, "snapshot_bytes")
    );
    println!(
        "  native: size_of_val(future) {} B; heap per spawned task {:.0} B",
        std::mem::size_of_val(&parked_native()),
        native
    );

    let sqlite_count = get(sqlite, "count");
    println!(
        "\nSQLite: started and parked {:.0} workflows in {:.1} s ({:.0} starts/s){}",
        sqlite_count,
        get(sqlite, "park_s"),
        sqlite_count / get(sqlite, "park_s"),
        if sqlite_count < COUNT as f64 {
            format!(
                "; the start budget of {} s ran out before {COUNT}",
                SQLITE_START_BUDGET.as_secs()
            )
        } else {
            String::new()
        }
    );
    println!(
        "  SqliteStore group commit: {:.0} writes (starts and steps) in {:.0} transactions \
         ({:.1} per sync)",
        get(sqlite, "writes"),
        get(sqlite, "write_transactions"),
        get(sqlite, "writes") / get(sqlite, "write_transactions")
    );
    for (phase, r) in &rows {
        let (running, armed) = (get(r, "running"), get(r, "with_timer"));
        if *phase != "native" {
            println!("  check {phase}: {running:.0} running, {armed:.0} with a stored timer");
        }
    }
    println!("\ntotal run time {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
