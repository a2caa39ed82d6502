//! The engine on a real SQLite file: a workflow runs to its middle, the engine is dropped,
//! and a new engine opened on the same file finishes it without re-running completed
//! activities; damaged rows are recorded on their workflow without losing the others.

use durable_workflows::{journal, testing};
use workflow_core::prelude::*;
use workflow_core::{SqliteStore, WorkflowFault};

#[activity]
async fn step(ctx: ActivityContext, n: u32) -> Result<u32, ActivityError> {
    journal::write(&ctx.info().workflow_id, format!("step {n}"));
    Ok(n * 10)
}

#[workflow]
async fn three_days(ctx: WorkflowContext, start: u32) -> Result<u32, WorkflowError> {
    let mut total: u32 = 0;
    for n in start..start + 3 {
        total += ctx.activity(step, n).await?;
        // A day between steps: the workflow is parked on a durable timer.
        ctx.sleep(Duration::from_secs(86_400)).await?;
    }
    Ok(total)
}

async fn engine_on(path: &std::path::Path) -> Engine {
    Engine::builder()
        .register(three_days)
        .activity(step)
        .store(SqliteStore::open(path).unwrap())
        .build()
        .await
        .unwrap()
}

/// Lets the engine reach its next wait point on the paused clock.
async fn settle() {
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_workflow_resumes_from_the_database_file_in_a_new_engine() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("workflows.db");
    let id = "sqlite-resume";
    let engine = engine_on(&path).await;
    engine.client().start(three_days, id, 1).await.unwrap();
    assert!(journal::wait_for(id, "step 2", Duration::from_secs(200_000)).await);
    settle().await;
    assert_eq!(engine.client().describe(id).await.unwrap().state, "Sleep");
    engine.shutdown().await;
    drop(engine);

    // The machine's state is a row in the file: only the live locals are kept.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let snapshot: String = conn
        .query_row("SELECT snapshot FROM workflows WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .unwrap();
    drop(conn);
    let snapshot: serde_json::Value = serde_json::from_str(&snapshot).unwrap();
    assert_eq!(snapshot["machine"]["Sleep"]["total"], 30);

    let engine = engine_on(&path).await;
    let out = engine
        .client()
        .handle(three_days, id)
        .outcome()
        .await
        .unwrap();
    assert!(matches!(out, Outcome::Completed(60)), "{out:?}");
    assert_eq!(journal::lines(id), ["step 1", "step 2", "step 3"]);
    let history = engine.client().history(id).await.unwrap();
    let completed = testing::count(&history, |k| {
        matches!(k, workflow_core::EventKind::ActivityCompleted { .. })
    });
    assert_eq!(completed, 3, "every completed step is recorded once");
}

#[tokio::test(start_paused = true)]
async fn a_corrupt_snapshot_or_unknown_type_is_recorded_on_its_workflow_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("workflows.db");
    let engine = engine_on(&path).await;
    for id in ["sq-good", "sq-corrupt", "sq-unknown"] {
        engine.client().start(three_days, id, 1).await.unwrap();
        assert!(journal::wait_for(id, "step 1", Duration::from_secs(1_000)).await);
    }
    settle().await;
    engine.shutdown().await;
    drop(engine);

    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE workflows SET snapshot = '{\"machine\": 17' WHERE id = 'sq-corrupt'",
        [],
    )
    .unwrap();
    conn.execute(
        "UPDATE workflows SET workflow_type = 'renamed_since' WHERE id = 'sq-unknown'",
        [],
    )
    .unwrap();
    drop(conn);

    let engine = engine_on(&path).await;
    let out = engine
        .client()
        .handle(three_days, "sq-good")
        .outcome()
        .await
        .unwrap();
    assert!(matches!(out, Outcome::Completed(60)), "{out:?}");
    settle().await;

    let corrupt = engine.client().describe("sq-corrupt").await.unwrap();
    let fault = corrupt
        .stuck
        .clone()
        .expect("the corrupt snapshot is recorded");
    assert!(
        matches!(&fault, WorkflowFault::CorruptSnapshot { workflow_type, state, .. }
            if workflow_type == "three_days" && state == "Sleep"),
        "{fault:?}"
    );
    assert!(fault.to_string().contains("does not decode"), "{fault}");
    let unknown = engine.client().describe("sq-unknown").await.unwrap();
    let fault = unknown.stuck.expect("the unknown type is recorded");
    assert_eq!(
        fault,
        WorkflowFault::UnknownWorkflowType {
            workflow_type: "renamed_since".to_string(),
            state: "Sleep".to_string(),
        }
    );
    assert!(fault.to_string().contains("not registered"), "{fault}");
    // Both are kept, Running, with their history, and can still be terminated by id.
    assert_eq!(corrupt.status, WorkflowStatus::Running);
    assert!(!engine
        .client()
        .history("sq-corrupt")
        .await
        .unwrap()
        .is_empty());
    engine
        .client()
        .terminate("sq-corrupt", "snapshot damaged")
        .await
        .unwrap();
    assert_eq!(journal::lines("sq-corrupt"), ["step 1"]);
}

#[tokio::test(start_paused = true)]
async fn the_default_store_is_the_sqlite_file_named_by_wf_db() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("default.db");
    // This binary's other tests choose their store explicitly, so setting the variable here
    // cannot change them.
    std::env::set_var("WF_DB", &path);
    let engine = Engine::builder()
        .register(three_days)
        .activity(step)
        .build()
        .await
        .unwrap();
    engine
        .client()
        .start(three_days, "by-default", 0)
        .await
        .unwrap();
    engine.shutdown().await;
    drop(engine);
    let reopened = SqliteStore::open(&path).unwrap();
    let record = workflow_core::Store::load_workflow(&reopened, "by-default")
        .await
        .unwrap();
    assert_eq!(record.workflow_type, "three_days");
}

/// A database file deleted under a running engine: every write is refused with an error that
/// names the file, so a workflow started afterwards is not reported started, and a parked
/// workflow whose timer fires runs no activity on the strength of a commit that was lost.
#[tokio::test(start_paused = true)]
async fn an_engine_whose_database_file_was_deleted_reports_nothing_done() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("workflows.db");
    let engine = engine_on(&path).await;
    let before = "sq-parked-before-delete";
    engine.client().start(three_days, before, 1).await.unwrap();
    assert!(journal::wait_for(before, "step 1", Duration::from_secs(1_000)).await);
    settle().await;
    assert_eq!(
        engine.client().describe(before).await.unwrap().state,
        "Sleep"
    );
    for suffix in ["", "-wal", "-shm"] {
        std::fs::remove_file(dir.path().join(format!("workflows.db{suffix}"))).unwrap();
    }

    let err = engine
        .client()
        .start(three_days, "sq-started-after-delete", 1)
        .await
        .expect_err("a start into a deleted file is refused")
        .to_string();
    assert!(
        err.contains(&path.display().to_string()) && err.contains("deleted or replaced"),
        "{err}"
    );
    assert!(journal::lines("sq-started-after-delete").is_empty());
    // The day passes and the timer fires: the step that would dispatch the next activity
    // cannot be committed, so the activity does not run.
    tokio::time::sleep(Duration::from_secs(86_400 + 60)).await;
    assert_eq!(journal::lines(before), ["step 1"]);
    assert!(!path.exists(), "nothing created the file again");
    engine.shutdown().await;
}

/// `wf` processes started on one new (empty) file while another process holds its write
/// lock (as one does while it creates the schema): switching the file to WAL is refused at
/// once ("database is locked") rather than waited for, so each `wf` waits and tries again,
/// and then they race one another to create the schema; every one of them succeeds.
#[test]
fn wf_processes_opening_a_new_file_another_process_is_writing_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..5 {
        let path = dir.path().join(format!("race-{round}.db"));
        std::fs::write(&path, b"").unwrap();
        let writer = rusqlite::Connection::open(&path).unwrap();
        writer.execute_batch("BEGIN IMMEDIATE").unwrap();
        let children: Vec<_> = (0..6)
            .map(|_| {
                std::process::Command::new(env!("CARGO_BIN_EXE_wf"))
                    .arg("--db")
                    .arg(&path)
                    .arg("list")
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("the wf binary starts")
            })
            .collect();
        // Long enough for the processes to meet the lock.
        std::thread::sleep(std::time::Duration::from_millis(300));
        writer.execute_batch("COMMIT").unwrap();
        drop(writer);
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(String::from_utf8_lossy(&out.stdout), "no workflows\n");
        }
    }
}
