//! Local activities (R6.7): `ctx.local_activity(..)` runs an `#[activity]` in the worker that
//! steps the workflow, without a task record; its start and its end are committed with steps.
//! A cancel of its scope reaches the running function at once, by its cancellation type
//! (`TryCancel` and `Abandon` resolve the call at once, `WaitCancellationCompleted` waits for
//! the function); a `with_timeout` or `ctx.cancel_scope()` reaches it the same way; attempts
//! time out and are retried in the worker, long back-offs on a durable timer; a call in a
//! cancelled scope fails at once (R9); and one whose end was not committed runs again after a
//! crash (at least once), checked on a SQLite file with a second engine.

use durable_workflows::journal;
use std::sync::Arc;
use workflow_core::prelude::*;
use workflow_core::{ActivityFailure, EventKind, MemoryStore, OpKind, Store, TimeoutKind};

/// Runs for `secs` seconds unless told to stop; when told, notes why and, with `linger`,
/// takes that many seconds more before it accepts.
#[activity]
async fn patient(ctx: ActivityContext, work: (u64, u64)) -> Result<String, ActivityError> {
    let (secs, linger) = work;
    let id = ctx.info().workflow_id.clone();
    journal::write(&id, format!("patient started, attempt {}", ctx.attempt()));
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(secs)) => {
            journal::write(&id, "patient ended untold");
            Ok(format!("worked {secs} s"))
        }
        _ = ctx.cancelled() => {
            let why = ctx.stop_reason().map(|r| r.to_string()).unwrap_or_default();
            journal::write(&id, format!("patient told: {why}"));
            tokio::time::sleep(Duration::from_secs(linger)).await;
            journal::write(&id, "patient stopped");
            Err(ActivityError::Cancelled)
        }
    }
}

/// The same work, as a plain activity, and a local one, side by side.
#[workflow]
async fn both_kinds(ctx: WorkflowContext, secs: u64) -> Result<String, WorkflowError> {
    let remote = ctx.activity(patient, (secs, 0)).await?;
    let local = ctx.local_activity(patient, (secs, 0)).await?;
    Ok(format!("{remote}, {local}"))
}

fn engine_builder() -> workflow_core::EngineBuilder {
    Engine::builder()
        .register(both_kinds)
        .register(stop_me)
        .register(timed_out)
        .register(cancel_from_inside)
        .register(flaky_call)
        .register(after_cancel)
        .register(closes_early)
        .activity(patient)
        .activity(flaky)
}

async fn engine() -> (Engine, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    let engine = engine_builder()
        .store_arc(store.clone())
        .build()
        .await
        .unwrap();
    (engine, store)
}

async fn history(client: &Client, id: &str) -> Vec<EventKind> {
    client
        .history(id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

fn lines(history: &[EventKind]) -> Vec<String> {
    history.iter().map(|e| e.to_string()).collect()
}

#[tokio::test(start_paused = true)]
async fn r6_7_a_local_activity_writes_no_task_and_its_result_is_committed_with_the_step() {
    let (engine, store) = engine().await;
    let client = engine.client();
    let id = "no-task";
    let run = client.start(both_kinds, id, 10).await.unwrap();

    // The plain activity runs first: it has a task row while it runs.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        store.tasks(id).await.unwrap().len(),
        1,
        "a plain activity's task"
    );

    // The local one runs next: no task row, and `describe` shows it pending.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(journal::count(id, "patient started"), 2);
    assert!(store.tasks(id).await.unwrap().is_empty(), "no task record");
    let described = client.describe(id).await.unwrap();
    assert_eq!(described.state, "LocalPatient");
    let [pending] = &described.pending[..] else {
        panic!("one pending operation: {:?}", described.pending);
    };
    assert!(matches!(pending.kind, OpKind::LocalActivity { .. }));
    assert!(
        pending
            .waiting_for
            .contains("local activity `patient` to complete"),
        "{}",
        pending.waiting_for
    );

    assert_eq!(
        run.outcome().await.unwrap(),
        Outcome::Completed("worked 10 s, worked 10 s".to_string())
    );
    let stored = client.history(id).await.unwrap();
    let seen = lines(&stored.iter().map(|e| e.kind.clone()).collect::<Vec<_>>());
    assert!(
        seen.iter()
            .any(|l| l == "op#2 local activity `patient` started (TryCancel)"),
        "{seen:#?}"
    );
    // The result went in with the step that applied it, the one that completed the workflow.
    let n = stored.len();
    assert!(
        matches!(
            &stored[n - 2].kind,
            EventKind::LocalActivityCompleted { attempts: 1, .. }
        ),
        "{seen:#?}"
    );
    assert_eq!(
        stored[n - 2].kind.to_string(),
        "op#2 local activity `patient` completed"
    );
    assert!(matches!(
        stored[n - 1].kind,
        EventKind::WorkflowCompleted { .. }
    ));
    assert_eq!(stored[n - 2].at_ms, stored[n - 1].at_ms);
}

/// Waits for a cancel while a local activity of the given type runs: the function runs 600 s
/// unless told, and lingers 20 s once told. Yields what the call gave, or the error's text.
#[workflow]
async fn stop_me(
    ctx: WorkflowContext,
    cancellation: ActivityCancellationType,
) -> Result<String, WorkflowError> {
    let got = ctx
        .local_activity(patient, (600, 20))
        .start_to_close_timeout(Duration::from_secs(3600))
        .cancellation(cancellation)
        .await;
    match got {
        Ok(value) => Ok(value),
        Err(e) if e.is_cancellation() => Ok(format!("cancelled: {e}")),
        Err(e) => Err(e),
    }
}

/// Starts `stop_me` with `cancellation`, cancels it after 5 s, and returns the outcome with
/// the engine time the call took to resolve after the cancel.
async fn cancel_while_running(
    id: &str,
    cancellation: ActivityCancellationType,
) -> (Outcome<String, WorkflowError>, Duration, Client) {
    let (engine, store) = engine().await;
    let client = engine.client();
    let run = client.start(stop_me, id, cancellation).await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(journal::count(id, "patient started"), 1);
    assert!(store.tasks(id).await.unwrap().is_empty());
    let cancelled_at = tokio::time::Instant::now();
    client.cancel(id, "customer asked").await.unwrap();
    let outcome = run.outcome().await.unwrap();
    (outcome, cancelled_at.elapsed(), client)
}

#[tokio::test(start_paused = true)]
async fn r6_7_try_cancel_tells_the_running_function_at_once_and_resolves_the_call_at_once() {
    let id = "try-cancel";
    let (outcome, took, client) =
        cancel_while_running(id, ActivityCancellationType::TryCancel).await;
    assert_eq!(
        outcome,
        Outcome::Completed("cancelled: cancelled: customer asked".to_string())
    );
    assert!(
        took < Duration::from_secs(1),
        "resolved at once, took {took:?}"
    );
    // Told without a heartbeat, with the reason, while it still lingers.
    assert_eq!(
        journal::lines(id)[1],
        "patient told: cancel requested: customer asked"
    );
    assert_eq!(journal::count(id, "patient stopped"), 0);
    let seen = lines(&history(&client, id).await);
    assert!(
        seen.iter().any(|l| l
            == "op#1 local activity `patient` cancelled: told to stop, its call resolved (TryCancel)"),
        "{seen:#?}"
    );
}

#[tokio::test(start_paused = true)]
async fn r6_7_abandon_resolves_the_call_at_once_and_the_function_is_never_told() {
    let id = "abandon";
    let (outcome, took, _client) =
        cancel_while_running(id, ActivityCancellationType::Abandon).await;
    assert_eq!(
        outcome,
        Outcome::Completed("cancelled: cancelled: customer asked".to_string())
    );
    assert!(
        took < Duration::from_secs(1),
        "resolved at once, took {took:?}"
    );
    // Neither the cancel nor the close that followed reaches it: it runs to its end.
    assert!(journal::wait_for(id, "patient ended untold", Duration::from_secs(700)).await);
    assert_eq!(journal::count(id, "patient told"), 0);
}

#[tokio::test(start_paused = true)]
async fn r6_7_wait_cancellation_completed_waits_for_the_function_to_end() {
    let id = "wait-cancel";
    let (outcome, took, client) =
        cancel_while_running(id, ActivityCancellationType::WaitCancellationCompleted).await;
    assert_eq!(
        outcome,
        Outcome::Completed("cancelled: activity `patient` failed: activity was cancelled".into())
    );
    assert!(
        took >= Duration::from_secs(20),
        "waited for the function's 20 s, took {took:?}"
    );
    assert_eq!(
        journal::lines(id)[1..],
        [
            "patient told: cancel requested: customer asked",
            "patient stopped"
        ]
    );
    let seen = lines(&history(&client, id).await);
    assert!(
        seen.iter()
            .any(|l| l == "op#1 local activity `patient` failed: activity was cancelled"),
        "{seen:#?}"
    );
}

/// A local activity inside a `with_timeout` of 2 s.
#[workflow]
async fn timed_out(ctx: WorkflowContext) -> Result<String, WorkflowError> {
    ctx.with_timeout(Duration::from_secs(2), async {
        ctx.local_activity(patient, (600, 0))
            .start_to_close_timeout(Duration::from_secs(3600))
            .await
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn r5_1_a_timeout_reaches_a_running_local_activity_at_once() {
    let (engine, _store) = engine().await;
    let id = "timed-out";
    let run = engine.client().start(timed_out, id, ()).await.unwrap();
    let outcome = run.outcome().await.unwrap();
    assert!(
        outcome.is_failed(),
        "R5.2: nobody cancelled it: {outcome:?}"
    );
    assert_eq!(
        journal::lines(id),
        [
            "patient started, attempt 1",
            "patient told: cancel requested: timed out after 2000 ms",
            "patient stopped"
        ]
    );
}

/// Starts a local activity, waits a second, cancels its own scope, and awaits the call.
#[workflow]
async fn cancel_from_inside(ctx: WorkflowContext) -> Result<String, WorkflowError> {
    let got: Result<String, WorkflowError> = ctx
        .cancellable(async {
            let call = ctx
                .local_activity(patient, (600, 0))
                .start_to_close_timeout(Duration::from_secs(3600))
                .start();
            ctx.sleep(Duration::from_secs(1)).await?;
            ctx.cancel_scope();
            call.await
        })
        .await;
    Ok(format!("{}", got.is_err_and(|e| e.is_cancellation())))
}

#[tokio::test(start_paused = true)]
async fn r3_2_cancelling_the_scope_from_inside_reaches_a_running_local_activity() {
    let (engine, _store) = engine().await;
    let id = "cancel-from-inside";
    let run = engine
        .client()
        .start(cancel_from_inside, id, ())
        .await
        .unwrap();
    assert_eq!(
        run.outcome().await.unwrap(),
        Outcome::Completed("true".into())
    );
    assert!(journal::wait_for(id, "patient stopped", Duration::from_secs(10)).await);
    assert_eq!(
        journal::lines(id)[1],
        "patient told: cancel requested: cancelled from inside the scope"
    );
}

/// Fails its first `fail` attempts, then returns its attempt number.
#[activity]
async fn flaky(ctx: ActivityContext, fail: u32) -> Result<u32, ActivityError> {
    let attempt = ctx.attempt();
    journal::write(&ctx.info().workflow_id, format!("flaky attempt {attempt}"));
    if attempt <= fail {
        return Err(ActivityError::retryable(format!("boom {attempt}")));
    }
    Ok(attempt)
}

/// Calls `flaky` as a local activity with the given first back-off (seconds) and attempts.
#[workflow]
async fn flaky_call(ctx: WorkflowContext, plan: (u32, u64, u32)) -> Result<u32, WorkflowError> {
    let (fail, backoff, attempts) = plan;
    let policy = RetryPolicy::default()
        .with_initial_interval(Duration::from_secs(backoff))
        .with_maximum_attempts(attempts);
    ctx.local_activity(flaky, fail).retry(policy).await
}

#[tokio::test(start_paused = true)]
async fn r6_7_retries_run_in_the_worker_and_the_history_lists_the_failures() {
    let (engine, store) = engine().await;
    let client = engine.client();
    let id = "retries";
    let run = client.start(flaky_call, id, (2, 1, 5)).await.unwrap();
    assert_eq!(run.outcome().await.unwrap(), Outcome::Completed(3));
    assert_eq!(journal::count(id, "flaky attempt"), 3);
    assert!(store.tasks(id).await.unwrap().is_empty());
    let seen = lines(&history(&client, id).await);
    // Nothing was committed between the start and the end: the retries ran in the worker.
    assert_eq!(
        seen,
        [
            "workflow `flaky_call` started with input [2,1,5]",
            "op#1 local activity `flaky` started (TryCancel)",
            "op#1 local activity `flaky` completed at attempt 3 (earlier attempts failed: boom \
             1; boom 2)",
            "workflow completed: 3",
        ]
    );

    // Out of attempts: the call fails with the last failure.
    let id = "out-of-attempts";
    let run = client.start(flaky_call, id, (9, 1, 2)).await.unwrap();
    assert!(run.outcome().await.unwrap().is_failed());
    let seen = lines(&history(&client, id).await);
    assert!(
        seen.iter().any(|l| l
            == "op#1 local activity `flaky` failed: boom 2 at attempt 2 (earlier attempts \
                failed: boom 1)"),
        "{seen:#?}"
    );
}

#[tokio::test(start_paused = true)]
async fn r6_7_a_back_off_longer_than_the_threshold_waits_on_a_durable_timer() {
    let (engine, store) = engine().await;
    let client = engine.client();
    let id = "long-back-off";
    // A first back-off of 5 minutes, past the 1 minute the worker waits out itself.
    let run = client.start(flaky_call, id, (1, 300, 3)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(journal::count(id, "flaky attempt"), 1);
    let running = store.running_workflows().await.unwrap();
    let ours = running.iter().find(|w| w.record.id == id).unwrap();
    assert_eq!(ours.timers.len(), 1, "the back-off is a durable timer");
    let described = client.describe(id).await.unwrap();
    assert!(
        described.pending[0]
            .waiting_for
            .contains("to run attempt 2 at"),
        "{:?}",
        described.pending
    );
    assert_eq!(run.outcome().await.unwrap(), Outcome::Completed(2));
    let seen = lines(&history(&client, id).await);
    assert!(
        seen.iter().any(|l| l
            .starts_with("op#1 local activity `flaky` attempt 1 failed (boom 1); attempt 2 at")),
        "{seen:#?}"
    );
    assert!(
        seen.iter().any(|l| l
            == "op#1 local activity `flaky` completed at attempt 2 (earlier attempts failed: \
                boom 1)"),
        "{seen:#?}"
    );
}

#[tokio::test(start_paused = true)]
async fn r6_7_an_attempt_past_its_start_to_close_timeout_times_out() {
    let (engine, _store) = engine().await;
    let client = engine.client();
    let id = "start-to-close";
    // A function of 600 s under the default start-to-close timeout (10 s), without retries.
    let run = client.start(closes_early, id, 0).await.unwrap();
    let outcome = run.outcome().await.unwrap();
    let Outcome::Failed(error) = &outcome else {
        panic!("{outcome:?}");
    };
    assert!(error.to_string().contains("start-to-close"), "{error}");
    assert_eq!(journal::count(id, "patient started"), 1);
    assert_eq!(
        journal::count(id, "patient ended"),
        0,
        "the attempt was ended"
    );
    let history = history(&client, id).await;
    assert!(history.iter().any(|e| matches!(
        e,
        EventKind::LocalActivityFailed {
            failure: ActivityFailure::Timeout {
                kind: TimeoutKind::StartToClose
            },
            attempts: 1,
            ..
        }
    )));
}

/// With `secs == 0`: a local activity of 600 s under the default start-to-close timeout,
/// without retries. Otherwise: a local activity of 600 s started, and the workflow returns
/// after `secs` seconds, closing with it still running.
#[workflow]
async fn closes_early(ctx: WorkflowContext, secs: u64) -> Result<String, WorkflowError> {
    if secs == 0 {
        return ctx
            .local_activity(patient, (600, 0))
            .retry(RetryPolicy::no_retries())
            .await;
    }
    let _running = ctx
        .local_activity(patient, (600, 0))
        .start_to_close_timeout(Duration::from_secs(3600))
        .start();
    ctx.sleep(Duration::from_secs(secs)).await?;
    Ok("closed".to_string())
}

#[tokio::test(start_paused = true)]
async fn r6_6_the_workflows_close_tells_a_running_local_activity_at_once() {
    let (engine, _store) = engine().await;
    let id = "closes-early";
    let run = engine.client().start(closes_early, id, 3).await.unwrap();
    assert_eq!(
        run.outcome().await.unwrap(),
        Outcome::Completed("closed".into())
    );
    assert!(journal::wait_for(id, "patient stopped", Duration::from_secs(10)).await);
    assert_eq!(
        journal::lines(id)[1],
        "patient told: the workflow closed (completed)"
    );
}

/// Waits for its cancel, then calls a local activity on the cancelled context.
#[workflow]
async fn after_cancel(ctx: WorkflowContext) -> Result<String, WorkflowError> {
    ctx.cancelled().await;
    match ctx.local_activity(patient, (1, 0)).await {
        Ok(v) => Ok(v),
        Err(e) => Ok(format!("failed at once: {e}")),
    }
}

#[tokio::test(start_paused = true)]
async fn r9_a_local_activity_in_a_cancelled_scope_fails_at_once_and_never_runs() {
    let (engine, _store) = engine().await;
    let client = engine.client();
    let id = "after-cancel";
    let run = client.start(after_cancel, id, ()).await.unwrap();
    client.cancel(id, "stop").await.unwrap();
    assert_eq!(
        run.outcome().await.unwrap(),
        Outcome::Completed("failed at once: cancelled: stop".into())
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(journal::lines(id).is_empty(), "it never ran");
    let seen = lines(&history(&client, id).await);
    assert!(
        seen.iter()
            .any(|l| l == "op#2 local activity `patient` skipped: its scope was already cancelled"),
        "{seen:#?}"
    );
}

/// Runs once per process until told otherwise: the first run (in the engine that crashes)
/// waits far longer than the test, a run in a later engine returns at once.
#[activity]
async fn once_per_engine(ctx: ActivityContext, crash_first: bool) -> Result<String, ActivityError> {
    let id = ctx.info().workflow_id.clone();
    let runs = journal::count(&id, "once_per_engine started");
    journal::write(&id, format!("once_per_engine started (run {})", runs + 1));
    if crash_first && runs == 0 {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    Ok(format!("done in run {}", runs + 1))
}

#[workflow]
async fn survives(ctx: WorkflowContext) -> Result<String, WorkflowError> {
    ctx.local_activity(once_per_engine, true)
        .start_to_close_timeout(Duration::from_secs(7200))
        .await
}

fn crash_engine(db: &std::path::Path) -> workflow_core::EngineBuilder {
    Engine::builder()
        .register(survives)
        .register(stop_me)
        .activity(once_per_engine)
        .activity(patient)
        // The second engine is the first restarted in place: it takes the workflow over at
        // once instead of waiting for the dead one's lease to expire.
        .worker_id("local-activity-crash")
        .sqlite(db)
}

#[test]
fn r6_7_a_local_activity_whose_end_was_not_committed_runs_again_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("workflows.db");
    let id = "survives";
    // Told to stop before the crash, under `WaitCancellationCompleted`: not run again.
    let told = "told-before-the-crash";
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    };

    // The first engine starts the workflow; its local activity runs, and the process dies
    // (the runtime is dropped: nothing more runs, nothing is shut down or released).
    let first = runtime();
    first.block_on(async {
        let engine = crash_engine(&db).build().await.unwrap();
        engine.client().start(survives, id, ()).await.unwrap();
        assert!(journal::wait_for(id, "once_per_engine started", Duration::from_secs(20)).await);
        let described = engine.client().describe(id).await.unwrap();
        assert_eq!(described.state, "LocalOncePerEngine");
        assert!(described.tasks.is_empty(), "no task record");
        let wait = ActivityCancellationType::WaitCancellationCompleted;
        engine.client().start(stop_me, told, wait).await.unwrap();
        assert!(journal::wait_for(told, "patient started", Duration::from_secs(20)).await);
        engine
            .client()
            .cancel(told, "before the crash")
            .await
            .unwrap();
        // Told, and lingering 20 s before it accepts: the crash comes first.
        assert!(journal::wait_for(told, "patient told", Duration::from_secs(20)).await);
        std::mem::forget(engine); // a crash: no shutdown
    });
    first.shutdown_background();

    // A second engine on the same file runs it again, and it completes.
    let second = runtime();
    second.block_on(async {
        let engine = crash_engine(&db).build().await.unwrap();
        let client = engine.client();
        let outcome = tokio::time::timeout(
            Duration::from_secs(30),
            client.handle(survives, id).outcome(),
        )
        .await
        .expect("the workflow completes on the second engine")
        .unwrap();
        assert_eq!(outcome, Outcome::Completed("done in run 2".into()));
        assert_eq!(
            journal::lines(id),
            [
                "once_per_engine started (run 1)",
                "once_per_engine started (run 2)"
            ],
            "at least once: the run whose end was not committed ran again"
        );
        let history = history(&client, id).await;
        let started = history
            .iter()
            .filter(|e| matches!(e, EventKind::LocalActivityStarted { .. }))
            .count();
        let completed = history
            .iter()
            .filter(|e| matches!(e, EventKind::LocalActivityCompleted { .. }))
            .count();
        assert_eq!((started, completed), (1, 1), "{history:#?}");

        let outcome = tokio::time::timeout(
            Duration::from_secs(30),
            client.handle(stop_me, told).outcome(),
        )
        .await
        .expect("the call told to stop ends on the second engine")
        .unwrap();
        assert_eq!(
            outcome,
            Outcome::Completed(
                "cancelled: activity `patient` failed: activity was cancelled".into()
            )
        );
        assert_eq!(
            journal::count(told, "patient started"),
            1,
            "a call already told to stop is not run again"
        );
        engine.shutdown().await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r6_7_a_cancel_written_by_another_process_reaches_a_running_local_activity() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("workflows.db");
    let engine = engine_builder().sqlite(&path).build().await.unwrap();
    let id = "remote-cancel";
    let run = engine
        .client()
        .start(stop_me, id, ActivityCancellationType::TryCancel)
        .await
        .unwrap();
    assert!(journal::wait_for(id, "patient started", Duration::from_secs(10)).await);
    // A client of the file alone, as `wf cancel` in another terminal is: the request reaches
    // the worker through the store's change feed, and its next step tells the function.
    let remote = Client::connect(path.to_str().unwrap()).await.unwrap();
    remote.cancel(id, "from another process").await.unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(10), run.outcome())
        .await
        .expect("the call resolves at once")
        .unwrap();
    assert_eq!(
        outcome,
        Outcome::Completed("cancelled: cancelled: from another process".into())
    );
    assert!(journal::wait_for(id, "patient told", Duration::from_secs(10)).await);
    assert_eq!(
        journal::lines(id)[1],
        "patient told: cancel requested: from another process"
    );
    engine.shutdown().await;
}
