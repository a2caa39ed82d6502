//! Several worker processes on one store, driven by a client in another process (this one).
//!
//! 1. **Throughput on PostgreSQL with 1, 2 and 4 worker processes** (`src/bin/bench-worker.rs`)
//!    on one server, each in a fresh schema. The client starts `BENCH_WORKFLOWS` (default 400)
//!    `BenchChain` workflows of `BENCH_ACTIVITIES` (default 4) activities each, 64 starts in
//!    flight, and the clock runs from the first start until the last workflow closed (the client
//!    waits on the store's hints). Steps are the store's own count (the sum of the workflows'
//!    versions). **Baseline, in the same run:** the same server's raw rate of single-row
//!    inserts, autocommit with `synchronous_commit = on`, from as many connections as there
//!    are worker processes, each inserting for 3 s in a loop, once before and once after
//!    the workflows (the mean is the baseline; both are printed, as the disk's sync rate
//!    drifts on a shared VM).
//! 2. **Cross-process latency** on PostgreSQL and on SQLite, one worker process, sequential
//!    samples (`BENCH_LATENCY_SAMPLES`, default 200):
//!    - *start → first activity starts*: the client records the time, calls `client.start`
//!      of `BenchFirstActivity`, whose first activity returns the moment it began; the sample
//!      is the difference (µs clocks of one machine);
//!    - *cancel → closed*: a `BenchParked` workflow is started and waited for until its first
//!      step committed (it parks on an hour-long timer); the sample runs from just before
//!      `client.cancel` until `outcome` returned Canceled in the client, so it includes the
//!      hint back to the client.
//!
//! Without a PostgreSQL server (`WF_TEST_POSTGRES`, default
//! `postgres://postgres@127.0.0.1:5432/test`) the PostgreSQL rows are skipped with a message.
//! Run it with `cargo bench --bench scale_out`.

use durable_workflows::bench::{bench_chain, bench_first_activity, bench_parked, now_us};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use workflow_core::postgres_testing::fresh_schema_url;
use workflow_core::{Client, Outcome, WorkflowStatus};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Worker processes, stopped (SIGTERM, then killed) when dropped.
struct Workers(Vec<Child>);

impl Workers {
    fn start(location: &str, n: usize) -> Workers {
        let mut children = Vec::new();
        for i in 0..n {
            let mut child = Command::new(env!("CARGO_BIN_EXE_bench-worker"))
                .args([location, &format!("bench-worker-{i}")])
                .stdout(Stdio::piped())
                .spawn()
                .expect("start bench-worker");
            let mut line = String::new();
            let stdout = child.stdout.take().expect("piped stdout");
            std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
                .expect("read from bench-worker");
            assert_eq!(line.trim(), "ready", "bench-worker {i} did not start");
            children.push(child);
        }
        Workers(children)
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &self.0 {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        for child in &mut self.0 {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

struct Throughput {
    workers: usize,
    workflows_per_s: f64,
    steps_per_s: f64,
    raw_inserts_per_s: f64,
    raw_spread: (f64, f64),
}

async fn throughput(workers: usize, workflows: usize, activities: u32) -> Option<Throughput> {
    let url = fresh_schema_url(&format!("bench_scale_{workers}")).await?;
    // The baseline's table in a schema of its own: the workflow schema must hold only ours.
    let raw_url = fresh_schema_url(&format!("bench_raw_{workers}")).await?;
    // The disk's sync rate drifts on a shared VM: the baseline is measured before and after
    // the workflows, and their mean is the figure.
    let raw_before = raw_insert_rate(&raw_url, workers, Duration::from_secs(3)).await;
    let _workers = Workers::start(&url, workers);
    let client = Client::connect(&url).await.expect("connect the client");
    let started = Instant::now();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(64));
    let mut runs = tokio::task::JoinSet::new();
    for i in 0..workflows {
        let permit = semaphore.clone().acquire_owned().await.expect("semaphore");
        let client = client.clone();
        runs.spawn(async move {
            let run = client
                .start(bench_chain, format!("chain-{i}"), activities)
                .await
                .expect("start");
            drop(permit);
            let outcome = run.outcome().await.expect("outcome");
            assert_eq!(outcome, Outcome::Completed(activities));
        });
    }
    while let Some(done) = runs.join_next().await {
        done.expect("a workflow task panicked");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let steps: u64 = client
        .store()
        .list_workflows(Some(WorkflowStatus::Completed))
        .await
        .expect("list")
        .iter()
        .map(|w| w.version)
        .sum();
    drop(_workers);
    let raw_after = raw_insert_rate(&raw_url, workers, Duration::from_secs(3)).await;
    Some(Throughput {
        workers,
        workflows_per_s: workflows as f64 / elapsed,
        steps_per_s: steps as f64 / elapsed,
        raw_inserts_per_s: (raw_before + raw_after) / 2.0,
        raw_spread: (raw_before.min(raw_after), raw_before.max(raw_after)),
    })
}

/// Single-row autocommit inserts with `synchronous_commit = on` from `connections`
/// connections for `for_time`, in rows per second.
async fn raw_insert_rate(url: &str, connections: usize, for_time: Duration) -> f64 {
    let mut tasks = tokio::task::JoinSet::new();
    let (setup, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect for the raw baseline");
    tokio::spawn(conn);
    setup
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS raw_inserts (id BIGSERIAL PRIMARY KEY, \
             workflow_id TEXT NOT NULL, payload TEXT NOT NULL)",
        )
        .await
        .expect("create the raw table");
    for c in 0..connections {
        let url = url.to_string();
        tasks.spawn(async move {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("connect for the raw baseline");
            tokio::spawn(conn);
            client
                .batch_execute("SET synchronous_commit = on")
                .await
                .expect("set synchronous_commit");
            let insert = client
                .prepare("INSERT INTO raw_inserts (workflow_id, payload) VALUES ($1, $2)")
                .await
                .expect("prepare");
            let payload = "{\"machine\":{\"Step\":{\"n\":1}},\"instance\":{}}".to_string();
            let id = format!("raw-{c}");
            let end = Instant::now() + for_time;
            let mut n = 0u64;
            while Instant::now() < end {
                client
                    .execute(&insert, &[&id, &payload])
                    .await
                    .expect("insert");
                n += 1;
            }
            n
        });
    }
    let mut rows = 0;
    while let Some(n) = tasks.join_next().await {
        rows += n.expect("an insert task panicked");
    }
    rows as f64 / for_time.as_secs_f64()
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

struct Latency {
    store: &'static str,
    start_to_activity: Vec<u64>,
    cancel_to_closed: Vec<u64>,
}

async fn latency(store: &'static str, location: &str, samples: usize) -> Latency {
    let _worker = Workers::start(location, 1);
    let client = Client::connect(location).await.expect("connect the client");
    let mut start_to_activity = Vec::with_capacity(samples);
    let mut cancel_to_closed = Vec::with_capacity(samples);
    let warm_up = 5;
    for i in 0..samples + warm_up {
        let t0 = now_us();
        let run = client
            .start(bench_first_activity, format!("first-{i}"), ())
            .await
            .expect("start");
        let Outcome::Completed(began) = run.outcome().await.expect("outcome") else {
            panic!("BenchFirstActivity did not complete");
        };
        if i >= warm_up {
            start_to_activity.push(began.saturating_sub(t0));
        }

        let run = client
            .start(bench_parked, format!("parked-{i}"), ())
            .await
            .expect("start");
        let parked = Instant::now() + Duration::from_secs(10);
        while run.describe().await.expect("describe").version == 0 {
            assert!(
                Instant::now() < parked,
                "parked-{i} never took its first step"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let t0 = Instant::now();
        run.cancel("bench").await.expect("cancel");
        let outcome = run.outcome().await.expect("outcome");
        assert!(outcome.is_canceled(), "parked-{i} closed as {outcome:?}");
        if i >= warm_up {
            cancel_to_closed.push(t0.elapsed().as_micros() as u64);
        }
    }
    start_to_activity.sort_unstable();
    cancel_to_closed.sort_unstable();
    Latency {
        store,
        start_to_activity,
        cancel_to_closed,
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let workflows = env_or("BENCH_WORKFLOWS", 400);
        let activities = env_or("BENCH_ACTIVITIES", 4) as u32;
        let samples = env_or("BENCH_LATENCY_SAMPLES", 200);

        println!("scale_out: {workflows} workflows of {activities} activities each");
        println!(
            "{:>8} {:>12} {:>10} {:>16} {:>16} {:>12}",
            "workers", "workflows/s", "steps/s", "raw inserts/s", "(before, after)", "steps / raw"
        );
        let mut postgres = true;
        for workers in [1, 2, 4] {
            match throughput(workers, workflows, activities).await {
                Some(t) => println!(
                    "{:>8} {:>12.0} {:>10.0} {:>16.0} {:>16} {:>11.2}x",
                    t.workers,
                    t.workflows_per_s,
                    t.steps_per_s,
                    t.raw_inserts_per_s,
                    format!("({:.0}, {:.0})", t.raw_spread.0, t.raw_spread.1),
                    t.steps_per_s / t.raw_inserts_per_s
                ),
                None => {
                    println!("(PostgreSQL rows skipped: no server)");
                    postgres = false;
                    break;
                }
            }
        }

        let mut rows = Vec::new();
        if postgres {
            if let Some(url) = fresh_schema_url("bench_latency").await {
                rows.push(latency("postgres", &url, samples).await);
            }
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("latency.db");
        rows.push(latency("sqlite", &file.to_string_lossy(), samples).await);
        println!();
        println!("cross-process latency, {samples} sequential samples, µs");
        println!(
            "{:>9} {:<28} {:>8} {:>8} {:>8}",
            "store", "path", "p50", "p99", "max"
        );
        for row in &rows {
            for (path, s) in [
                ("start -> first activity", &row.start_to_activity),
                ("cancel -> closed (client)", &row.cancel_to_closed),
            ] {
                println!(
                    "{:>9} {:<28} {:>8} {:>8} {:>8}",
                    row.store,
                    path,
                    percentile(s, 50.0),
                    percentile(s, 99.0),
                    s.last().copied().unwrap_or(0)
                );
            }
        }
    });
}
