//! Cross-process behaviour of the SQLite store, the engine's watcher and `wf`.
//!
//! `wf` commands are run through `workflow_core::cli::execute`, which opens its own
//! `SqliteStore` (its own connections) on the file, exactly as the `wf` binary in another
//! terminal would. The engine under test polls the file every 20 ms.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use workflow_core::cli::{self, Cli};
use workflow_core::prelude::*;
use workflow_core::{SqliteStore, Store, WorkflowRecord};

/// Sleeps an hour and returns the seconds.
#[workflow]
async fn napper(ctx: WorkflowContext, secs: u64) -> Result<u64, WorkflowError> {
    ctx.sleep(Duration::from_secs(secs)).await?;
    Ok(secs)
}

/// Awaits a `napper` child (default parent close policy: Terminate) and returns how the
/// call resolved.
#[workflow]
async fn minds_child(ctx: WorkflowContext, child: String) -> Result<String, WorkflowError> {
    let resolved = ctx.child(napper, child, 3600u64).await;
    Ok(format!("{resolved:?}"))
}

static PANICKY_RUNS: AtomicUsize = AtomicUsize::new(0);

/// Panics in its first step (R2.4: stays Running, stuck, retried at the next event).
#[workflow]
async fn panicky(_ctx: WorkflowContext) -> Result<(), WorkflowError> {
    PANICKY_RUNS.fetch_add(1, Ordering::SeqCst);
    panic!("review: workflow code panics");
}

async fn engine_on(db: &std::path::Path) -> Engine {
    Engine::builder()
        .register(napper)
        .register(minds_child)
        .register(panicky)
        .store(SqliteStore::open(db).unwrap())
        .poll_interval(Duration::from_millis(20))
        .build()
        .await
        .unwrap()
}

/// `wf --db DB terminate ID` (another process's view of the file).
async fn wf_terminate(db: &std::path::Path, id: &str) {
    let cli = Cli {
        db: db.to_string_lossy().into_owned(),
        json: false,
        command: cli::Command::Terminate {
            id: id.to_string(),
            reason: "terminated with wf".to_string(),
        },
    };
    cli::execute(cli, None).await.unwrap();
}

async fn wait_until<F>(store: &SqliteStore, id: &str, within: Duration, done: F) -> WorkflowRecord
where
    F: Fn(&WorkflowRecord) -> bool,
{
    let deadline = Instant::now() + within;
    loop {
        if let Ok(record) = store.load_workflow(id).await {
            if done(&record) || Instant::now() > deadline {
                return record;
            }
        } else if Instant::now() > deadline {
            panic!("{id} was never stored");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `wf terminate` on a child while the worker runs: the in-process `terminate` tells the
/// parent (its child call resolves with `Terminated`); `wf terminate` only writes the child's
/// row, and the worker's poller looks only at Running workflows with inbox entries, so the
/// parent waits for a child that is already closed (until the worker restarts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r7_wf_terminate_of_a_child_reaches_its_parent_while_the_worker_runs() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("workflows.db");
    let engine = engine_on(&db).await;
    let observer = SqliteStore::open(&db).unwrap();
    engine
        .client()
        .start(minds_child, "parent-a", "parent-a-child".to_string())
        .await
        .unwrap();
    let child = wait_until(&observer, "parent-a-child", Duration::from_secs(10), |r| {
        r.version > 0
    })
    .await;
    assert_eq!(child.status, WorkflowStatus::Running);

    wf_terminate(&db, "parent-a-child").await;

    let parent = wait_until(&observer, "parent-a", Duration::from_secs(5), |r| {
        r.status != WorkflowStatus::Running
    })
    .await;
    assert_eq!(
        parent.status,
        WorkflowStatus::Completed,
        "the parent never heard that its child was terminated by `wf terminate`: {parent:?}"
    );
    engine.shutdown().await;
}

/// An outcome awaited in the worker process for a workflow that `wf terminate` closes from
/// another process: the engine never learns of the close (no `on_closed`), so the waiter
/// is never woken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_awaited_in_the_worker_sees_a_terminate_from_wf() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("workflows.db");
    let engine = engine_on(&db).await;
    let observer = SqliteStore::open(&db).unwrap();
    let run = engine
        .client()
        .start(napper, "napping", 3600u64)
        .await
        .unwrap();
    wait_until(&observer, "napping", Duration::from_secs(10), |r| {
        r.version > 0
    })
    .await;

    // The waiter is in place (it read the Running row) before `wf` terminates.
    let waiting = tokio::spawn(async move { run.outcome().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    wf_terminate(&db, "napping").await;

    let outcome = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .map(|joined| joined.unwrap());
    engine.shutdown().await;
    let outcome =
        outcome.expect("outcome() still waits 5 s after `wf terminate` closed the workflow");
    assert!(matches!(outcome, Ok(Outcome::Terminated(_))), "{outcome:?}");
}

/// R2.4: a panic in workflow code leaves the workflow Running and stuck, "retried at the
/// next event". On a shared store the poller selects every Running workflow with
/// version 0 (or a non-empty inbox) on every tick, stuck or not, so the panicking code
/// runs again every poll interval, forever (each time also rewriting the stuck message).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r2_4_a_stuck_workflow_is_not_rerun_on_every_poll() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("workflows.db");
    let engine = engine_on(&db).await;
    engine.client().start(panicky, "panics", ()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let runs = PANICKY_RUNS.load(Ordering::SeqCst);
    engine.shutdown().await;
    assert!(
        runs <= 2,
        "with no new event, the panicking workflow code ran {runs} times in 1 s (poll every 20 ms)"
    );
}

/// Numbers in JSON columns: the memory store hands back the `serde_json::Value` it was
/// given; the SQLite store re-parses the text. Every f64 must come back bit for bit.
#[tokio::test]
async fn floats_in_an_input_come_back_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("wf.db")).unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut values = Vec::new();
    while values.len() < 2000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let f = f64::from_bits(x);
        if f.is_finite() {
            values.push(f);
        }
    }
    let input = serde_json::json!(values);
    store
        .create_workflow(workflow_core::NewWorkflow {
            id: "floats".into(),
            workflow_type: "t".into(),
            schema: 1,
            snapshot: (&input).into(),
            state_name: "Start".into(),
            input: input.clone(),
            at_ms: 0,
            parent: None,
            lease: None,
        })
        .await
        .unwrap();
    let back: serde_json::Value = store
        .load_workflow("floats")
        .await
        .unwrap()
        .snapshot
        .decode()
        .unwrap();
    let differ: Vec<(f64, f64)> = values
        .iter()
        .zip(back.as_array().unwrap())
        .map(|(a, b)| (*a, b.as_f64().unwrap()))
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .collect();
    assert!(
        differ.is_empty(),
        "{} of {} differ, e.g. {:?}",
        differ.len(),
        values.len(),
        &differ[..differ.len().min(3)]
    );
}
