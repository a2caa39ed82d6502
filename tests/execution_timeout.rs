//! Rule R5.3 of `workflow-core/SEMANTICS.md`: a workflow's execution timeout, given at the
//! start, is a cancel request of the whole workflow once it elapses, counted from the start
//! whether or not a worker ran the workflow meanwhile, and kept in the store so that it
//! survives a restart. Tokio's paused clock makes the waits virtual.

use durable_workflows::journal;
use durable_workflows::testing::{count, logs, until_state};
use std::time::Duration;
use workflow_core::prelude::*;
use workflow_core::{
    Clock, EngineBuilder, EventKind, SqliteStore, StartOptions, Store, MAX_EXECUTION_TIMEOUT,
};

const HOUR: Duration = Duration::from_secs(3600);

/// Tidies up after a cancel.
#[activity]
async fn tidy(ctx: ActivityContext, what: String) -> Result<(), ActivityError> {
    journal::write(&ctx.info().workflow_id, format!("tidy {what}"));
    Ok(())
}

/// Works for `hours` hours; a cancel runs its handler, which tidies up on a disconnected
/// context.
#[workflow]
async fn long_job(ctx: WorkflowContext, hours: u64) -> Result<u64, WorkflowError> {
    on_cancel!(|cleanup| {
        let reason = cleanup.cancel_reason().unwrap_or_default();
        cleanup.log(format!("handler ran: {reason}"));
        let _ = cleanup.activity(tidy, "the workbench".to_string()).await;
    });
    ctx.sleep(HOUR * hours as u32).await?;
    Ok(hours)
}

/// Works for an hour, and when cancelled meanwhile saves a draft in a non-cancellable scope
/// and completes with it.
#[workflow]
async fn forgiving(ctx: WorkflowContext) -> Result<String, WorkflowError> {
    match ctx.sleep(HOUR).await {
        Ok(()) => Ok("finished".to_string()),
        Err(e) => {
            let saved: Result<(), WorkflowError> = ctx
                .non_cancellable(async { ctx.activity(tidy, "the draft".to_string()).await })
                .await;
            saved?;
            Ok(format!("saved a draft after: {e}"))
        }
    }
}

fn builder() -> EngineBuilder {
    Engine::builder()
        .register(long_job)
        .register(forgiving)
        .activity(tidy)
}

async fn engine() -> Engine {
    builder().in_memory().build().await.unwrap()
}

fn timeout(after: Duration) -> StartOptions {
    StartOptions::default().execution_timeout(after)
}

#[tokio::test(start_paused = true)]
async fn r5_3_the_execution_timeout_cancels_the_workflow_and_its_handlers_run() {
    let e = engine().await;
    let c = e.client();
    let id = "r5-3-fires";
    let started = tokio::time::Instant::now();
    let run = c
        .start_with(long_job, id, 5, timeout(Duration::from_secs(30)))
        .await
        .unwrap();
    until_state(&c, id, "Sleep").await;
    let d = c.describe(id).await.unwrap();
    let deadline = d.execution_timeout.expect("describe shows the deadline");
    assert_eq!(deadline.after_ms, 30_000);
    assert_eq!(deadline.deadline_ms, d.created_at_ms + 30_000);
    assert!(d.to_string().contains("(execution timeout 30s)"), "{d}");
    assert!(d.pending.iter().all(|p| p.waiting_for.starts_with("timer")));
    assert_eq!(
        d.pending.len(),
        1,
        "the deadline is not a pending operation: {d}"
    );

    let out = run.outcome().await.unwrap();
    let reason = "workflow execution timed out after 30s";
    match &out {
        Outcome::Canceled(WorkflowError::Cancelled { reason: r }) => assert_eq!(r, reason),
        other => panic!("expected Canceled, got {other:?}"),
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(30) && elapsed < Duration::from_secs(31),
        "{elapsed:?}"
    );
    // The handler ran, saw the reason, and its activity ran on the disconnected context.
    let h = c.history(id).await.unwrap();
    assert_eq!(logs(&h), [format!("handler ran: {reason}")]);
    assert_eq!(journal::lines(id), ["tidy the workbench"]);
    assert_eq!(
        count(
            &h,
            |k| matches!(k, EventKind::CancelRequested { reason: r } if r == reason)
        ),
        1
    );
    let d = c.describe(id).await.unwrap();
    assert_eq!(d.cancel_reason.as_deref(), Some(reason));
}

#[tokio::test(start_paused = true)]
async fn r5_3_a_workflow_that_handles_the_timeout_completes() {
    let e = engine().await;
    let c = e.client();
    let id = "r5-3-handled";
    let run = c
        .start_with(forgiving, id, (), timeout(Duration::from_secs(90)))
        .await
        .unwrap();
    let out = run.outcome().await.unwrap();
    assert_eq!(
        out,
        Outcome::Completed(
            "saved a draft after: cancelled: workflow execution timed out after 1m30s".to_string()
        )
    );
    assert_eq!(journal::lines(id), ["tidy the draft"]);
}

#[tokio::test(start_paused = true)]
async fn r5_3_a_workflow_that_completes_before_its_deadline_is_not_cancelled() {
    let e = engine().await;
    let c = e.client();
    let id = "r5-3-in-time";
    let run = c
        .start_with(long_job, id, 1, timeout(HOUR * 2))
        .await
        .unwrap();
    assert_eq!(run.outcome().await.unwrap(), Outcome::Completed(1));
    // Past the deadline, nothing more happens to the closed workflow.
    tokio::time::sleep(HOUR * 3).await;
    let h = c.history(id).await.unwrap();
    let deadline = c.describe(id).await.unwrap().execution_timeout.unwrap();
    assert_eq!(
        count(
            &h,
            |k| matches!(k, EventKind::TimerStarted { fire_at_ms, .. }
            if *fire_at_ms == deadline.deadline_ms)
        ),
        1,
        "the deadline's timer was started: {h:#?}"
    );
    assert_eq!(
        count(&h, |k| matches!(k, EventKind::CancelRequested { .. })),
        0
    );
    assert!(logs(&h).is_empty());
    let d = c.describe(id).await.unwrap();
    assert_eq!(d.status, WorkflowStatus::Completed);
    assert_eq!(d.cancel_reason, None);
}

/// The deadline passes while no engine runs: a workflow started and parked by one engine,
/// and one started by a client that is not a worker and never stepped, are both cancelled
/// by the next engine on the same SQLite file, their handlers running there.
#[tokio::test(start_paused = true)]
async fn r5_3_a_deadline_that_passed_while_no_engine_ran_fires_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("workflows.db");
    // One engine time across the restart, following tokio's paused clock.
    let clock = Clock::new();
    let on_file = || {
        builder()
            .store(SqliteStore::open(&path).unwrap())
            .clock(clock)
    };
    let first = on_file().build().await.unwrap();
    first
        .client()
        .start_with(long_job, "r5-3-parked", 5, timeout(Duration::from_secs(60)))
        .await
        .unwrap();
    until_state(&first.client(), "r5-3-parked", "Sleep").await;
    first.shutdown().await;
    drop(first);

    let store: std::sync::Arc<dyn Store> = std::sync::Arc::new(SqliteStore::open(&path).unwrap());
    Client::of_store(store.clone())
        .start_with(
            long_job,
            "r5-3-never-ran",
            5,
            timeout(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    assert_eq!(
        store.load_workflow("r5-3-never-ran").await.unwrap().version,
        0
    );

    tokio::time::sleep(Duration::from_secs(120)).await;
    let second = on_file().build().await.unwrap();
    let reason = "workflow execution timed out after 1m";
    for id in ["r5-3-parked", "r5-3-never-ran"] {
        let out = second
            .client()
            .handle(long_job, id)
            .outcome()
            .await
            .unwrap();
        assert!(
            matches!(&out, Outcome::Canceled(WorkflowError::Cancelled { reason: r }) if r == reason),
            "{id}: {out:?}"
        );
        assert_eq!(journal::lines(id), ["tidy the workbench"], "{id}");
    }
    second.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn r5_3_a_zero_or_absurdly_long_execution_timeout_is_refused_and_nothing_is_stored() {
    let e = engine().await;
    let remote = Client::of_store(e.store());
    for client in [e.client(), remote] {
        for (after, says) in [
            (Duration::ZERO, "at least 1 ms"),
            (MAX_EXECUTION_TIMEOUT * 2, "longer than the 36500 days"),
        ] {
            let err = client
                .start_with(long_job, "r5-3-bad", 1, timeout(after))
                .await
                .unwrap_err();
            assert!(
                matches!(&err, workflow_core::ClientError::InvalidOption { .. }),
                "{err:?}"
            );
            let text = err.to_string();
            assert!(
                text.starts_with("invalid execution timeout of workflow `long_job`")
                    && text.contains(says),
                "{text}"
            );
        }
    }
    assert!(matches!(
        e.client().describe("r5-3-bad").await,
        Err(workflow_core::ClientError::NotFound(_))
    ));
}
