//! A running activity learns why it must stop (issue 12.1): a cancel, its workflow's close
//! (in this process or another), or its worker shutting down reaches the attempt at its next
//! heartbeat, and `ActivityContext::stop_reason` says which.
//!
//! Real time (a heartbeat every 20 ms), every wait bounded.

use durable_workflows::journal;
use std::time::Duration;
use workflow_core::prelude::*;
use workflow_core::{Client, EngineBuilder, SqliteStore, StopReason, Store};

/// Heartbeats until told to stop; writes why to the journal and accepts.
#[activity]
async fn watch(ctx: ActivityContext, _unit: ()) -> Result<String, ActivityError> {
    journal::write(
        &ctx.info().workflow_id,
        format!("attempt {}", ctx.attempt()),
    );
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if let Err(e) = ctx.heartbeat(()) {
            let why = ctx
                .stop_reason()
                .map_or("no reason".to_string(), |r| r.to_string());
            journal::write(&ctx.info().workflow_id, format!("stopped: {why}"));
            assert!(ctx.stop_reason().is_some(), "a stop has a reason");
            return Err(e);
        }
    }
}

#[workflow]
async fn watching(ctx: WorkflowContext, _unit: ()) -> Result<String, WorkflowError> {
    ctx.activity(watch, ())
        .cancellation(ActivityCancellationType::WaitCancellationCompleted)
        .await
}

fn builder() -> EngineBuilder {
    Engine::builder().register(watching).activity(watch)
}

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r6_2_a_cancel_reaches_the_running_attempt_as_cancel_requested() {
    let engine = builder().in_memory().build().await.unwrap();
    let client = engine.client();
    client.start(watching, "stop-cancel", ()).await.unwrap();
    assert!(journal::wait_for("stop-cancel", "attempt 1", WAIT).await);
    client
        .cancel("stop-cancel", "customer asked")
        .await
        .unwrap();
    assert!(journal::wait_for("stop-cancel", "stopped:", WAIT).await);
    assert_eq!(
        journal::count("stop-cancel", "stopped: cancel requested"),
        1
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r6_6_a_terminate_in_this_process_reaches_the_running_attempt() {
    let engine = builder().in_memory().build().await.unwrap();
    let client = engine.client();
    client.start(watching, "stop-term", ()).await.unwrap();
    assert!(journal::wait_for("stop-term", "attempt 1", WAIT).await);
    client.terminate("stop-term", "operator").await.unwrap();
    assert!(journal::wait_for("stop-term", "stopped:", WAIT).await);
    assert_eq!(
        journal::lines("stop-term").last().unwrap(),
        &format!(
            "stopped: {}",
            StopReason::WorkflowClosed {
                status: Some(WorkflowStatus::Terminated)
            }
        )
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r6_6_a_terminate_from_another_process_reaches_the_running_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("workflows.db");
    let engine = builder()
        .store(SqliteStore::open(&path).unwrap())
        .build()
        .await
        .unwrap();
    engine
        .client()
        .start(watching, "stop-remote", ())
        .await
        .unwrap();
    assert!(journal::wait_for("stop-remote", "attempt 1", WAIT).await);
    // A client of the file alone, as `wf terminate` in another terminal is.
    let remote = Client::connect(path.to_str().unwrap()).await.unwrap();
    remote
        .terminate("stop-remote", "from another process")
        .await
        .unwrap();
    assert!(journal::wait_for("stop-remote", "stopped:", WAIT).await);
    assert_eq!(
        journal::lines("stop-remote").last().unwrap(),
        "stopped: the workflow closed (terminated)"
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r6_6_a_graceful_shutdown_tells_running_attempts_and_their_task_runs_again_on_the_next_worker(
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("workflows.db");
    let engine = builder()
        .store(SqliteStore::open(&path).unwrap())
        .worker_id("stop-worker")
        .activity_grace(Duration::from_secs(5))
        .build()
        .await
        .unwrap();
    engine
        .client()
        .start(watching, "stop-shutdown", ())
        .await
        .unwrap();
    assert!(journal::wait_for("stop-shutdown", "attempt 1", WAIT).await);
    engine.shutdown().await;
    // Told within the grace period, not aborted first.
    assert_eq!(
        journal::lines("stop-shutdown").last().unwrap(),
        "stopped: the worker is shutting down"
    );
    // What the attempt returned was not recorded: the task is still there and the workflow
    // still waits for it.
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.tasks("stop-shutdown").await.unwrap().len(), 1);
    let record = store.load_workflow("stop-shutdown").await.unwrap();
    assert_eq!(record.status, WorkflowStatus::Running);
    drop(engine);

    let engine = builder()
        .store(store)
        .worker_id("stop-worker")
        .build()
        .await
        .unwrap();
    // The interrupted attempt runs again (under its own number: it never ended).
    let deadline = std::time::Instant::now() + WAIT;
    while journal::count("stop-shutdown", "attempt ") < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the task did not run again"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    engine
        .client()
        .cancel("stop-shutdown", "done")
        .await
        .unwrap();
    let outcome = engine.client().outcome_json("stop-shutdown").await.unwrap();
    assert!(matches!(outcome, Outcome::Canceled(_)), "{outcome:?}");
    engine.shutdown().await;
}
