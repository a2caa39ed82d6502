//! A stored snapshot that decodes but describes no state the engine could have written (a
//! scope tree with a cycle, an operation counter at the top of its range) fails only its own
//! workflow, with a `CorruptSnapshot` fault, and never hangs or panics the worker (issue 11.1).
//!
//! Each test parks workflows on a real SQLite file, damages some snapshots with SQL, and
//! starts a new engine on the file. Real time, every wait bounded.

use std::path::Path;
use std::time::{Duration, Instant};
use workflow_core::prelude::*;
use workflow_core::{Description, SqliteStore, WorkflowFault};

#[activity]
async fn note(_ctx: ActivityContext, n: u32) -> Result<u32, ActivityError> {
    Ok(n)
}

/// Parks on an hour-long sleep; once woken (by a cancel), starts one more operation.
#[workflow]
async fn parked(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    let slept = ctx.sleep(Duration::from_secs(3600)).await;
    let noted = ctx.activity(note, n).await;
    slept?;
    noted
}

async fn engine_on(path: &Path) -> Engine {
    Engine::builder()
        .register(parked)
        .activity(note)
        .store(SqliteStore::open(path).unwrap())
        .build()
        .await
        .unwrap()
}

/// Parks each of `ids` on its sleep in a fresh file, then applies `damage` (SQL) to the file.
async fn parked_file(dir: &Path, ids: &[&str], damage: &[String]) -> std::path::PathBuf {
    let path = dir.join("workflows.db");
    let engine = engine_on(&path).await;
    for id in ids {
        engine.client().start(parked, *id, 7).await.unwrap();
    }
    for id in ids {
        wait_for(&engine, id, |d| d.state == "Sleep").await;
    }
    engine.shutdown().await;
    drop(engine);
    let conn = rusqlite::Connection::open(&path).unwrap();
    for sql in damage {
        assert_eq!(conn.execute(sql, []).unwrap(), 1, "{sql}");
    }
    path
}

/// Waits (at most 20 s of real time) until `id`'s description satisfies `done`.
async fn wait_for(engine: &Engine, id: &str, done: impl Fn(&Description) -> bool) -> Description {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let d = engine.client().describe(id).await.unwrap();
        if done(&d) {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "`{id}` did not get there in 20 s (a hung step?): {d:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn set_instance(id: &str, path: &str, json: &str) -> String {
    format!(
        "UPDATE workflows SET snapshot = json_set(snapshot, '$.instance.{path}', json('{json}')) \
         WHERE id = '{id}'"
    )
}

/// Asserts that `id` is Running and stuck with a `CorruptSnapshot` whose message says `says`.
async fn assert_corrupt(engine: &Engine, id: &str, says: &str) {
    let d = wait_for(engine, id, |d| d.stuck.is_some()).await;
    assert_eq!(d.status, WorkflowStatus::Running, "kept for the operator");
    match d.stuck {
        Some(WorkflowFault::CorruptSnapshot {
            workflow_type,
            state,
            message,
        }) => {
            assert_eq!(
                (workflow_type.as_str(), state.as_str()),
                ("parked", "Sleep")
            );
            assert!(message.contains(says), "`{says}` in: {message}");
        }
        other => panic!("`{id}`: expected a CorruptSnapshot, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scope_cycle_is_a_corrupt_snapshot_and_the_other_workflows_still_step() {
    let dir = tempfile::tempdir().unwrap();
    // Two damaged workflows used to spin both worker threads for good.
    let cycle = r#"{"kind":"Cancellable","parent":0}"#;
    let damage = [
        set_instance("cycle-1", "scopes[0]", cycle),
        set_instance("cycle-2", "scopes[0]", cycle),
    ];
    let path = parked_file(dir.path(), &["cycle-1", "cycle-2", "healthy"], &damage).await;

    let engine = engine_on(&path).await;
    let client = engine.client();
    for id in ["cycle-1", "cycle-2", "healthy"] {
        client.cancel(id, "customer asked").await.unwrap();
    }
    let healthy = wait_for(&engine, "healthy", |d| d.status.is_closed()).await;
    assert_eq!(healthy.status, WorkflowStatus::Canceled);
    assert_corrupt(&engine, "cycle-1", "scope 0 must be the root").await;
    assert_corrupt(&engine, "cycle-2", "scope 0 must be the root").await;
    // The damaged workflows keep their cancel request for when the snapshot is repaired, and
    // can be terminated.
    client
        .terminate("cycle-1", "snapshot damaged")
        .await
        .unwrap();
    let d = wait_for(&engine, "cycle-1", |d| d.status.is_closed()).await;
    assert_eq!(d.status, WorkflowStatus::Terminated);
    engine.shutdown().await;

    // Every restart reads the same fault again without hanging.
    let engine = engine_on(&path).await;
    engine.client().cancel("cycle-2", "again").await.unwrap();
    assert_corrupt(&engine, "cycle-2", "scope 0 must be the root").await;
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_counter_at_the_top_of_its_range_is_a_corrupt_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let damage = [format!(
        "UPDATE workflows SET snapshot = replace(snapshot, \
           '\"next_op\":' || json_extract(snapshot, '$.instance.next_op'), \
           '\"next_op\":{}') WHERE id = 'counter'",
        u64::MAX
    )];
    let path = parked_file(dir.path(), &["counter", "healthy"], &damage).await;
    let engine = engine_on(&path).await;
    for id in ["counter", "healthy"] {
        engine.client().cancel(id, "customer asked").await.unwrap();
    }
    let healthy = wait_for(&engine, "healthy", |d| d.status.is_closed()).await;
    assert_eq!(healthy.status, WorkflowStatus::Canceled);
    assert_corrupt(&engine, "counter", "operation counter 18446744073709551615").await;
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_in_a_scope_that_does_not_exist_is_a_corrupt_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let damage = [
        "UPDATE workflows SET snapshot = json_set(snapshot, '$.instance.ops.1.scope', 4000000000) \
         WHERE id = 'lost-scope'"
            .to_string(),
    ];
    let path = parked_file(dir.path(), &["lost-scope"], &damage).await;
    let engine = engine_on(&path).await;
    engine
        .client()
        .cancel("lost-scope", "customer asked")
        .await
        .unwrap();
    assert_corrupt(
        &engine,
        "lost-scope",
        "scope 4000000000, which does not exist",
    )
    .await;
    engine.shutdown().await;
}
