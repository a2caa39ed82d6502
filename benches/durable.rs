//! Durable throughput on SQLite (BENCHMARKS.md §2): workflows/s and steps/s with 1, 100 and
//! 10,000 workflows running at once, against a raw SQLite insert loop with the same journal
//! and sync settings (WAL, `synchronous = FULL`) on the same disk, measured in the same run.
//!
//! ```text
//! cargo bench --bench durable
//! DURABLE_CONCURRENCY=1,100 cargo bench --bench durable     # some of the rows only
//! ```
//!
//! Each workflow runs `STEPS_PER_WORKFLOW` sequential trivial activities, so it commits
//! `STEPS_PER_WORKFLOW + 1` steps (the first step schedules the first activity, each result
//! is one more step). With concurrency `c`, `c` workflows are started together and the clock
//! stops when the last one has closed; the rows for 1 repeat that with one workflow at a
//! time. Every step is durable when it returns: the store's commit thread shares one
//! transaction and one sync among the writes waiting together (new workflows, activity
//! results, task attempts, step commits), and the table shows how many writes a transaction
//! carried.
//!
//! The baselines insert one small row per transaction (the rate a program gets when every
//! write must be on disk before it goes on), 256 rows per transaction (what batching buys on
//! this disk), and transactions that each write what one engine step writes (the floor for
//! one workflow stepping alone).

use std::sync::Arc;
use std::time::{Duration, Instant};
use workflow_core::prelude::*;
use workflow_core::SqliteStore;

const STEPS_PER_WORKFLOW: u64 = 10;

#[activity]
async fn increment(_ctx: ActivityContext, x: u64) -> Result<u64, ActivityError> {
    Ok(x + 1)
}

#[workflow]
async fn sequence(ctx: WorkflowContext, steps: u64) -> Result<u64, WorkflowError> {
    let mut total: u64 = 0;
    for _ in 0..steps {
        total = ctx.activity(increment, total).await?;
    }
    Ok(total)
}

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> BenchResult<()> {
    let concurrency: Vec<usize> = match std::env::var("DURABLE_CONCURRENCY") {
        Ok(list) => list
            .split(',')
            .map(|n| n.trim().parse())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("DURABLE_CONCURRENCY must be numbers like 1,100: {e}"))?,
        Err(_) => vec![1, 100, 10_000],
    };
    let dir = tempfile::tempdir()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;

    println!(
        "durable throughput on SQLite (WAL, synchronous = FULL), files in {}",
        dir.path().display()
    );
    println!(
        "each workflow: {STEPS_PER_WORKFLOW} sequential activities = {} steps\n",
        STEPS_PER_WORKFLOW + 1
    );

    let raw_single = raw_inserts(&dir.path().join("raw-1.db"), 2_000, 1)?;
    let raw_step = raw_step_shaped(&dir.path().join("raw-step.db"), 2_000)?;
    let raw_batched = raw_inserts(&dir.path().join("raw-256.db"), 50_000, 256)?;
    println!(
        "{:<44} {:>12.0} rows/s",
        "raw SQLite: 1 insert per transaction", raw_single
    );
    println!(
        "{:<44} {:>12.0} rows/s",
        "raw SQLite: 256 inserts per transaction", raw_batched
    );
    println!(
        "{:<44} {:>12.0} tx/s\n",
        "raw SQLite: a step's rows per transaction", raw_step
    );

    println!(
        "{:>11} {:>10} {:>10} {:>12} {:>12} {:>12} {:>14}",
        "concurrent",
        "workflows",
        "seconds",
        "workflows/s",
        "steps/s",
        "writes/tx",
        "steps/s ÷ raw"
    );
    for c in concurrency {
        let path = dir.path().join(format!("engine-{c}.db"));
        let row = rt.block_on(engine_run(&path, c))?;
        println!(
            "{:>11} {:>10} {:>10.2} {:>12.0} {:>12.0} {:>12.1} {:>13.2}x",
            c,
            row.workflows,
            row.elapsed.as_secs_f64(),
            row.workflows as f64 / row.elapsed.as_secs_f64(),
            row.steps as f64 / row.elapsed.as_secs_f64(),
            row.writes as f64 / row.transactions.max(1) as f64,
            row.steps as f64 / row.elapsed.as_secs_f64() / raw_single,
        );
    }
    Ok(())
}

/// A fresh file with the store's journal and sync settings.
fn raw_connection(path: &std::path::Path) -> BenchResult<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if mode != "wal" {
        return Err(format!("{} did not switch to WAL (got {mode})", path.display()).into());
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

/// Rows per second inserted into a fresh file with the store's settings, `per_tx` rows per
/// transaction. Each row is about the size of a small step's history event.
fn raw_inserts(path: &std::path::Path, rows: usize, per_tx: usize) -> BenchResult<f64> {
    let mut conn = raw_connection(path)?;
    conn.execute_batch(
        "CREATE TABLE events (workflow_id TEXT NOT NULL, seq INTEGER NOT NULL, event TEXT NOT NULL,
         PRIMARY KEY (workflow_id, seq)) WITHOUT ROWID",
    )?;
    let payload = r#"{"kind":"ActivityCompleted","op":3,"activity":"increment","result":42}"#;
    let start = Instant::now();
    let mut seq = 0i64;
    while (seq as usize) < rows {
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO events (workflow_id, seq, event) VALUES (?1, ?2, ?3)",
            )?;
            for _ in 0..per_tx {
                seq += 1;
                insert.execute(rusqlite::params!["raw", seq, payload])?;
            }
        }
        tx.commit()?;
    }
    Ok(seq as f64 / start.elapsed().as_secs_f64())
}

/// Transactions per second that each write what one step of the engine writes (update the
/// workflow row's snapshot and version, append a history event, drop the finished task,
/// insert the next one), one after another: the floor for one workflow stepping alone.
fn raw_step_shaped(path: &std::path::Path, steps: usize) -> BenchResult<f64> {
    let mut conn = raw_connection(path)?;
    conn.execute_batch(
        "CREATE TABLE workflows (id TEXT PRIMARY KEY, snapshot TEXT NOT NULL, version INTEGER NOT NULL);
         CREATE TABLE history (workflow_id TEXT NOT NULL, seq INTEGER NOT NULL, event TEXT NOT NULL,
             PRIMARY KEY (workflow_id, seq)) WITHOUT ROWID;
         CREATE TABLE tasks (workflow_id TEXT NOT NULL, op INTEGER NOT NULL, input TEXT NOT NULL,
             PRIMARY KEY (workflow_id, op)) WITHOUT ROWID;
         INSERT INTO workflows VALUES ('raw', '{}', 0);",
    )?;
    // About the size of this benchmark's stored snapshots.
    let snapshot = format!(
        r#"{{"machine":{{"Increment":{{"op_id":4}}}},"pad":"{}"}}"#,
        "x".repeat(300)
    );
    let event = r#"{"kind":"ActivityCompleted","op":3,"activity":"increment"}"#;
    let start = Instant::now();
    for step in 0..steps as i64 {
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE workflows SET snapshot = ?1, version = version + 1 WHERE id = 'raw'",
            [&snapshot],
        )?;
        tx.execute(
            "INSERT INTO history (workflow_id, seq, event) VALUES ('raw', ?1, ?2)",
            rusqlite::params![step, event],
        )?;
        tx.execute(
            "DELETE FROM tasks WHERE workflow_id = 'raw' AND op = ?1",
            [step],
        )?;
        tx.execute(
            "INSERT INTO tasks (workflow_id, op, input) VALUES ('raw', ?1, '42')",
            [step + 1],
        )?;
        tx.commit()?;
    }
    Ok(steps as f64 / start.elapsed().as_secs_f64())
}

struct Row {
    workflows: usize,
    steps: u64,
    elapsed: Duration,
    transactions: u64,
    writes: u64,
}

/// Runs `concurrency` workflows at once (or, for 1, 20 workflows one after another) on a
/// fresh SQLite file and times them.
async fn engine_run(path: &std::path::Path, concurrency: usize) -> BenchResult<Row> {
    let store = Arc::new(SqliteStore::open(path)?);
    let engine = Engine::builder()
        .store_arc(store.clone())
        .register(sequence)
        .activity(increment)
        .build()
        .await?;
    let client = engine.client();
    let (rounds, per_round) = if concurrency == 1 {
        (20, 1)
    } else {
        (1, concurrency)
    };
    let (tx0, w0) = store.commit_stats();
    let start = Instant::now();
    for round in 0..rounds {
        let runs: Vec<_> = (0..per_round)
            .map(|i| {
                let client = client.clone();
                tokio::spawn(async move {
                    let run = client
                        .start(sequence, format!("wf-{round}-{i}"), STEPS_PER_WORKFLOW)
                        .await?;
                    run.outcome().await
                })
            })
            .collect();
        for run in runs {
            match run.await?? {
                Outcome::Completed(n) if n == STEPS_PER_WORKFLOW => {}
                other => return Err(format!("a workflow did not complete: {other:?}").into()),
            }
        }
    }
    let elapsed = start.elapsed();
    let (tx1, w1) = store.commit_stats();
    engine.shutdown().await;
    let workflows = rounds * per_round;
    Ok(Row {
        workflows,
        steps: workflows as u64 * (STEPS_PER_WORKFLOW + 1),
        elapsed,
        transactions: tx1 - tx0,
        writes: w1 - w0,
    })
}
