//! The engine on a real SQLite file: a workflow runs to its middle, the engine is dropped,
//! and a new engine opened on the same file finishes it without re-running completed
//! activities; damaged rows (and snapshots that are not text) are recorded on their workflow
//! without losing the others; writes that share a group commit's transaction fail alone.

use durable_workflows::{journal, testing};
use std::sync::Arc;
use workflow_core::prelude::*;
use workflow_core::{SqliteStore, StoreError, WorkflowFault};

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

// ---------------------------------------------------------------------------------------
// Snapshots that are not text
// ---------------------------------------------------------------------------------------

#[workflow]
async fn nap(ctx: WorkflowContext, secs: u64) -> Result<u64, WorkflowError> {
    ctx.sleep(Duration::from_secs(secs)).await?;
    Ok(secs)
}

/// A stored snapshot that is not JSON becomes a `CorruptSnapshot` on its workflow, and
/// `SqliteStore` hands it on as a string so that it hides nothing. That holds for text
/// only: the row reader takes the column as a Rust `String`, so a snapshot that is a BLOB
/// or text that is not UTF-8 (a torn write, a tool that wrote bytes) fails the row, hence
/// `running_workflows`, hence `build`: no workflow of the file runs.
#[tokio::test(start_paused = true)]
async fn a_snapshot_that_is_not_utf8_text_is_recorded_on_its_workflow_and_hides_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("workflows.db");
    let open = || async {
        Engine::builder()
            .register(nap)
            .store(SqliteStore::open(&path).unwrap())
            .build()
            .await
    };
    let engine = open().await.unwrap();
    for id in ["bytes-good", "bytes-blob", "bytes-latin1"] {
        engine.client().start(nap, id, 60).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    engine.shutdown().await;
    drop(engine);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE workflows SET snapshot = X'7B226D61' WHERE id = 'bytes-blob'",
        [],
    )
    .unwrap();
    conn.execute(
        "UPDATE workflows SET snapshot = CAST(X'22E922' AS TEXT) WHERE id = 'bytes-latin1'",
        [],
    )
    .unwrap();
    drop(conn);

    let engine = match open().await {
        Ok(engine) => engine,
        Err(e) => panic!("one damaged snapshot stops the whole engine: {e}"),
    };
    let good = engine.client().handle(nap, "bytes-good").outcome().await;
    assert!(matches!(good, Ok(Outcome::Completed(60))), "{good:?}");
    for id in ["bytes-blob", "bytes-latin1"] {
        // Their timers fired with the good one's; their steps may still be on their way.
        let mut d = engine.client().describe(id).await.unwrap();
        for _ in 0..200 {
            if d.stuck.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            d = engine.client().describe(id).await.unwrap();
        }
        assert_eq!(d.status, WorkflowStatus::Running, "{d}");
        assert!(
            matches!(d.stuck, Some(WorkflowFault::CorruptSnapshot { .. })),
            "{id}: {d}"
        );
    }
    engine.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Every write through the group committer
// ---------------------------------------------------------------------------------------

fn new_workflow(id: &str) -> workflow_core::NewWorkflow {
    workflow_core::NewWorkflow {
        id: id.to_string(),
        workflow_type: "group_commit".to_string(),
        schema: 1,
        snapshot: serde_json::json!({}).into(),
        state_name: "Start".to_string(),
        input: serde_json::Value::Null,
        at_ms: 0,
        parent: None,
        lease: None,
    }
}

/// Queues `writes` behind a write lock held by another connection, so that the commit
/// thread takes them as one group once the lock is released; returns their results in
/// order, and how many transactions and writes the store counted meanwhile.
async fn in_one_group<T: Send + 'static>(
    path: &std::path::Path,
    store: &Arc<SqliteStore>,
    writes: Vec<BoxedWrite<T>>,
) -> (Vec<Result<T, StoreError>>, (u64, u64)) {
    let (tx_before, writes_before) = store.commit_stats();
    let blocker = rusqlite::Connection::open(path).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    // A first write takes the commit thread, which now waits for the lock ...
    let s = Arc::clone(store);
    let first = tokio::spawn(async move {
        workflow_core::Store::create_workflow(&*s, new_workflow("group-opener")).await
    });
    let waited = std::time::Instant::now();
    while store.commit_stats().0 == tx_before {
        assert!(waited.elapsed() < std::time::Duration::from_secs(10));
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // ... while these queue up behind it.
    let handles: Vec<_> = writes.into_iter().map(tokio::spawn).collect();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    blocker.execute_batch("ROLLBACK").unwrap();
    first.await.unwrap().unwrap();
    let mut results = Vec::new();
    for h in handles {
        results.push(h.await.unwrap());
    }
    let (tx_after, writes_after) = store.commit_stats();
    (
        results,
        (tx_after - tx_before, writes_after - writes_before),
    )
}

/// One store write, to run in a group.
type BoxedWrite<T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, StoreError>> + Send>>;

/// Two creates of one id in the same group: one wins, the other is `AlreadyExists`, and
/// the refused one undoes only its own savepoint.
#[tokio::test(flavor = "multi_thread")]
async fn duplicate_creates_in_one_commit_group_give_already_exists_and_keep_the_rest() {
    use workflow_core::Store;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("workflows.db");
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    let create = |id: &'static str| -> BoxedWrite<()> {
        let s = Arc::clone(&store);
        Box::pin(async move { s.create_workflow(new_workflow(id)).await })
    };
    let writes = vec![create("dup"), create("dup"), create("other")];
    let (results, (transactions, writes)) = in_one_group(&path, &store, writes).await;
    assert_eq!(
        (transactions, writes),
        (2, 4),
        "the three queued writes share a group"
    );
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let exists = results
        .iter()
        .filter(|r| matches!(r, Err(StoreError::AlreadyExists(id)) if id == "dup"))
        .count();
    assert_eq!((ok, exists), (2, 1), "{results:?}");
    assert!(results[2].is_ok(), "{results:?}");
    for id in ["dup", "other", "group-opener"] {
        let history = store.history(id).await.unwrap();
        assert_eq!(
            history.len(),
            1,
            "{id}: one WorkflowStarted, not two: {history:?}"
        );
    }
}

/// A write that fails for a reason of its own must not fail the unrelated writes that happen
/// to share its group's transaction: each was its own transaction before group commit. Here
/// SQLite itself refuses the one write (a trigger on the file aborts the inbox insert for one
/// workflow), so the store reports it as `Backend`, as it would any other SQL error.
#[tokio::test(flavor = "multi_thread")]
async fn a_write_sqlite_refuses_fails_alone_not_its_commit_group() {
    use workflow_core::{Event, Store};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("workflows.db");
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    store
        .create_workflow(new_workflow("refused"))
        .await
        .unwrap();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER refuse_inbox BEFORE INSERT ON inbox \
             WHEN NEW.workflow_id = 'refused' \
             BEGIN SELECT RAISE(ABORT, 'this write is refused'); END;",
        )
        .unwrap();
    let s = Arc::clone(&store);
    let signal: BoxedWrite<()> = Box::pin(async move {
        let cancel = Event::CancelRequested { reason: "x".into() };
        s.enqueue_event("refused", cancel).await.map(|_| ())
    });
    let s = Arc::clone(&store);
    let innocent: BoxedWrite<()> =
        Box::pin(async move { s.create_workflow(new_workflow("innocent")).await });
    let (results, (transactions, writes)) =
        in_one_group(&path, &store, vec![signal, innocent]).await;
    assert_eq!(
        (transactions, writes),
        (2, 3),
        "the two queued writes share a group"
    );
    assert!(
        matches!(&results[0], Err(StoreError::Backend(m)) if m.contains("this write is refused")),
        "{:?}",
        results[0]
    );
    assert!(results[1].is_ok(), "{:?}", results[1]);
    assert!(store.load_workflow("innocent").await.is_ok());
}
