//! Rules R1, R2, R4 (R4.3: failures of cleanup recorded), R6, R8, R9 of `workflow-core/SEMANTICS.md` for the workflow's root scope and
//! disconnected contexts, and public scenarios 9–12, 14 and 15. Every test runs on tokio's paused
//! clock: timers and heartbeats advance virtually, so hour-long waits take microseconds.

use durable_workflows::journal;
use durable_workflows::testing::{count, logs, until_state};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use workflow_core::prelude::*;
use workflow_core::{ActivityFailure, ClientError, EventKind, Workflow};

const LONG: Duration = Duration::from_secs(3600);

// ----- activities -------------------------------------------------------------------------

/// Heartbeats every second for `secs` seconds; accepts a cancel seen at a heartbeat.
#[activity]
async fn heartbeating(ctx: ActivityContext, secs: u64) -> Result<u64, ActivityError> {
    let id = ctx.info().workflow_id.clone();
    journal::write(&id, "heartbeating started");
    for i in 0..secs {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Err(e) = ctx.heartbeat(i) {
            journal::write(&id, format!("heartbeating saw cancel at heartbeat {i}"));
            return Err(e);
        }
    }
    journal::write(&id, "heartbeating finished");
    Ok(secs)
}

/// Heartbeats every second but ignores cancellation, and completes with its value.
#[activity]
async fn stubborn(ctx: ActivityContext, secs: u64) -> Result<u64, ActivityError> {
    let id = ctx.info().workflow_id.clone();
    journal::write(&id, "stubborn started");
    for i in 0..secs {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if ctx.heartbeat(i).is_err() && !ctx.is_cancelled() {
            unreachable!("a heartbeat error always comes with the cancel signal");
        }
    }
    journal::write(
        &id,
        format!("stubborn finished, cancelled = {}", ctx.is_cancelled()),
    );
    Ok(secs)
}

/// Never heartbeats: sleeps for `secs` seconds and completes.
#[activity]
async fn silent(ctx: ActivityContext, secs: u64) -> Result<u64, ActivityError> {
    let id = ctx.info().workflow_id.clone();
    journal::write(&id, "silent started");
    tokio::time::sleep(Duration::from_secs(secs)).await;
    journal::write(&id, "silent finished");
    Ok(secs)
}

/// Records that it ran and returns its input.
#[activity]
async fn quick(ctx: ActivityContext, label: String) -> Result<String, ActivityError> {
    journal::write(&ctx.info().workflow_id, format!("quick ran: {label}"));
    Ok(label)
}

/// Fails its first attempts with a retryable error.
#[activity]
async fn flaky(ctx: ActivityContext, failures: u32) -> Result<u32, ActivityError> {
    journal::write(
        &ctx.info().workflow_id,
        format!("flaky attempt {}", ctx.attempt()),
    );
    if ctx.attempt() <= failures {
        return Err(ActivityError::retryable("not yet"));
    }
    Ok(ctx.attempt())
}

/// Releases a hold; fails for good when the hold is already gone.
#[activity]
async fn release(ctx: ActivityContext, gone: bool) -> Result<(), ActivityError> {
    journal::write(
        &ctx.info().workflow_id,
        format!("release ran, gone: {gone}"),
    );
    if gone {
        return Err(ActivityError::non_retryable("the hold is already gone"));
    }
    Ok(())
}

/// Returns a cancellation error although nobody cancelled it (R6.5).
#[activity]
async fn claims_cancelled(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Err(ActivityError::Cancelled)
}

// ----- workflows --------------------------------------------------------------------------

/// What a scenario-9 workflow does once it sees the cancel.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub enum After {
    ReturnOk,
    ReturnCancellation,
    ReturnOtherError,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct WaitPlan {
    after: After,
    cleanup_sleep: bool,
}

#[workflow]
async fn wait_for_cancel(ctx: WorkflowContext, plan: WaitPlan) -> Result<String, WorkflowError> {
    let before = ctx.is_cancel_requested();
    ctx.cancelled().await;
    let reason = ctx.cancel_reason().unwrap_or_default();
    ctx.log(format!(
        "saw cancel (before: {before}, now: {}), reason {reason:?}",
        ctx.is_cancel_requested()
    ));
    if plan.cleanup_sleep {
        ctx.disconnected().sleep(Duration::from_secs(30)).await?;
        ctx.log("cleanup sleep done");
    }
    match plan.after {
        After::ReturnOk => Ok(format!("handled: {reason}")),
        After::ReturnCancellation => Err(WorkflowError::cancelled(reason)),
        After::ReturnOtherError => Err(WorkflowError::application("cleanup failed")),
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ActivityPlan {
    cancellation: ActivityCancellationType,
    secs: u64,
    /// Run the stubborn activity (ignores cancels) instead of the heartbeating one.
    stubborn: bool,
}

/// Calls one long activity and reports how the call resolved; returns the error if it failed.
#[workflow]
async fn call_long_activity(
    ctx: WorkflowContext,
    plan: ActivityPlan,
) -> Result<u64, WorkflowError> {
    let result = if plan.stubborn {
        ctx.activity(stubborn, plan.secs)
            .heartbeat_timeout(Duration::from_secs(5))
            .cancellation(plan.cancellation)
            .await
    } else {
        ctx.activity(heartbeating, plan.secs)
            .heartbeat_timeout(Duration::from_secs(5))
            .cancellation(plan.cancellation)
            .await
    };
    ctx.log(format!("call resolved: {result:?}"));
    result
}

#[workflow]
async fn call_silent(
    ctx: WorkflowContext,
    cancellation: ActivityCancellationType,
) -> Result<u64, WorkflowError> {
    let r = ctx.activity(silent, 600).cancellation(cancellation).await;
    ctx.log(format!("silent resolved: {r:?}"));
    r
}

/// Scenario 14: after the cancel, an activity and a sleep on the cancelled context fail at
/// once; nothing is dispatched.
#[workflow]
async fn use_cancelled_context(ctx: WorkflowContext) -> Result<String, WorkflowError> {
    ctx.cancelled().await;
    let a = ctx
        .activity(quick, "on cancelled context".to_string())
        .await;
    let s = ctx.sleep(LONG).await;
    let zero = ctx.sleep(Duration::ZERO).await;
    Ok(format!(
        "activity: {}, sleep: {}, zero sleep: {}",
        a.is_err(),
        s.is_err(),
        zero.is_err()
    ))
}

/// Scenario 15 (and R4.1): a heartbeating activity under `WaitCancellationCompleted` returns
/// normally on cancel; a follow-up activity and timer on a disconnected context succeed.
#[workflow]
async fn disconnected_follow_up(ctx: WorkflowContext) -> Result<String, WorkflowError> {
    let first = ctx
        .activity(stubborn, 20)
        .heartbeat_timeout(Duration::from_secs(5))
        .cancellation(ActivityCancellationType::WaitCancellationCompleted)
        .await?;
    let cleanup = ctx.disconnected();
    let label = cleanup.activity(quick, format!("after {first}")).await?;
    cleanup.sleep(Duration::from_secs(10)).await?;
    let skipped = ctx
        .activity(quick, "on the cancelled root".to_string())
        .await;
    Ok(format!("{label}; root call failed: {}", skipped.is_err()))
}

#[workflow]
async fn try_cancel_then_linger(ctx: WorkflowContext) -> Result<String, WorkflowError> {
    let r = ctx.activity(silent, 600).await;
    ctx.disconnected().sleep(Duration::from_secs(900)).await?;
    Ok(format!("call: {r:?}"))
}

#[workflow]
async fn sleeper(ctx: WorkflowContext, secs: u64) -> Result<String, WorkflowError> {
    let slept = ctx.sleep(Duration::from_secs(secs)).await;
    ctx.log(format!("sleep resolved: {slept:?}"));
    slept?;
    Ok("slept".to_string())
}

#[workflow]
async fn retrying(ctx: WorkflowContext, failures: u32) -> Result<u32, WorkflowError> {
    ctx.activity(flaky, failures)
        .retry(RetryPolicy::default().with_initial_interval(Duration::from_secs(600)))
        .await
}

#[workflow]
async fn bad_activity(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    ctx.activity(claims_cancelled, ())
        .retry(RetryPolicy::no_retries())
        .await
}

#[workflow]
async fn handler_on_return(ctx: WorkflowContext, fail: bool) -> Result<String, WorkflowError> {
    on_cancel!(|cleanup| {
        cleanup.log("handler ran");
        let r = cleanup.activity(quick, "cleanup".to_string()).await;
        cleanup.log(format!("cleanup activity: {}", r.is_ok()));
    });
    ctx.sleep(LONG).await?;
    if fail {
        return Err(WorkflowError::application("boom"));
    }
    Ok("finished".to_string())
}

/// Holds something for an hour; a cancel releases it in the handler, whose activity fails
/// when `gone` (the handler handles it, as a handler must, R4.2).
#[workflow]
async fn hold_and_release(ctx: WorkflowContext, gone: bool) -> Result<(), WorkflowError> {
    on_cancel!(|cleanup| {
        if let Err(e) = cleanup.activity(release, gone).await {
            cleanup.log(format!("release failed: {e}"));
        }
    });
    ctx.sleep(LONG).await?;
    Ok(())
}

/// A handler guarding the rest of a loop body: each iteration is guarded on its own.
#[workflow]
async fn handler_per_iteration(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    let mut done: u32 = 0;
    while done < n {
        on_cancel!(|undo| {
            undo.log(format!("undo step {done}"));
            undo.sleep(Duration::from_secs(1)).await.ok();
            undo.log(format!("undo step {done} finished"));
        });
        ctx.sleep(Duration::from_secs(10)).await?;
        done += 1;
    }
    Ok(done)
}

#[workflow]
async fn panics(ctx: WorkflowContext, when: u32) -> Result<(), WorkflowError> {
    ctx.sleep(Duration::from_secs(1)).await?;
    if when == 1 {
        panic!("workflow code panicked on purpose");
    }
    Ok(())
}

// ----- helpers ----------------------------------------------------------------------------

async fn engine() -> Engine {
    Engine::builder()
        .in_memory()
        .register(wait_for_cancel)
        .register(call_long_activity)
        .register(call_silent)
        .register(use_cancelled_context)
        .register(disconnected_follow_up)
        .register(sleeper)
        .register(try_cancel_then_linger)
        .register(retrying)
        .register(bad_activity)
        .register(handler_on_return)
        .register(panics)
        .register(handler_per_iteration)
        .register(hold_and_release)
        .activity(heartbeating)
        .activity(stubborn)
        .activity(silent)
        .activity(quick)
        .activity(flaky)
        .activity(claims_cancelled)
        .activity(release)
        .build()
        .await
        .unwrap()
}

/// Starts `call_long_activity`, waits until the activity has started (its first journal
/// line), cancels the workflow and returns how it closed.
async fn cancel_long_activity(
    client: &Client,
    id: &str,
    cancellation: ActivityCancellationType,
    secs: u64,
    ignores_cancel: bool,
) -> Outcome<u64, WorkflowError> {
    let plan = ActivityPlan {
        cancellation,
        secs,
        stubborn: ignores_cancel,
    };
    let run = client.start(call_long_activity, id, plan).await.unwrap();
    let started = if ignores_cancel {
        "stubborn started"
    } else {
        "heartbeating started"
    };
    assert!(journal::wait_for(id, started, Duration::from_secs(5)).await);
    client.cancel(id, "").await.unwrap();
    run.outcome().await.unwrap()
}

/// Starts `wait_for_cancel` and lets it reach its `ctx.cancelled()`.
async fn start_waiting(
    client: &Client,
    id: &str,
    after: After,
    cleanup_sleep: bool,
) -> workflow_core::WorkflowRun<wait_for_cancel> {
    let plan = WaitPlan {
        after,
        cleanup_sleep,
    };
    let run = client.start(wait_for_cancel, id, plan).await.unwrap();
    until_state(client, id, "AwaitCancel").await;
    run
}

// ----- R1 delivery ------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn r1_1_cancel_returns_once_recorded_without_waiting_for_the_workflow() {
    let e = engine().await;
    let c = e.client();
    let id = "r1-1";
    // A silent activity under WaitCancellationCompleted keeps the workflow busy for 600 s.
    c.start(
        call_silent,
        id,
        ActivityCancellationType::WaitCancellationCompleted,
    )
    .await
    .unwrap();
    until_state(&c, id, "Silent").await;
    let t0 = tokio::time::Instant::now();
    c.cancel(id, "stop").await.unwrap();
    assert_eq!(t0.elapsed(), Duration::ZERO, "cancel must not wait");
    let d = c.describe(id).await.unwrap();
    assert_eq!(d.status, WorkflowStatus::Running);
    assert_eq!(d.cancel_reason.as_deref(), Some("stop"));
}

#[tokio::test(start_paused = true)]
async fn r1_1_terminate_runs_no_workflow_code() {
    let e = engine().await;
    let c = e.client();
    let id = "r1-1-terminate";
    let run = c.start(handler_on_return, id, false).await.unwrap();
    until_state(&c, id, "Sleep").await;
    c.terminate(id, "operator").await.unwrap();
    assert!(matches!(run.outcome().await.unwrap(), Outcome::Terminated(r) if r == "operator"));
    let h = c.history(id).await.unwrap();
    assert!(
        logs(&h).is_empty(),
        "the handler must not run: {:?}",
        logs(&h)
    );
    assert_eq!(journal::count(id, "quick ran"), 0);
}

#[tokio::test(start_paused = true)]
async fn r1_2_cancel_unknown_id_is_not_found_and_closed_is_already_closed() {
    let e = engine().await;
    let c = e.client();
    assert!(
        matches!(c.cancel("nobody", "").await, Err(ClientError::NotFound(id)) if id == "nobody")
    );
    let run = c.start(sleeper, "r1-2", 1).await.unwrap();
    assert!(run.outcome().await.unwrap().is_completed());
    assert!(matches!(
        c.cancel("r1-2", "").await,
        Err(ClientError::AlreadyClosed {
            status: WorkflowStatus::Completed,
            ..
        })
    ));
}

#[tokio::test(start_paused = true)]
async fn r1_3_pending_timer_gets_its_cancel_in_the_step_that_processes_the_request() {
    let e = engine().await;
    let c = e.client();
    let id = "r1-3";
    let run = c.start(sleeper, id, 3600).await.unwrap();
    until_state(&c, id, "Sleep").await;
    c.cancel(id, "now").await.unwrap();
    assert!(run.outcome().await.unwrap().is_canceled());
    let h = c.history(id).await.unwrap();
    let req = h
        .iter()
        .position(|e| matches!(e.kind, EventKind::CancelRequested { .. }))
        .unwrap();
    // The timer is cancelled right after the request, in the same step (same time, no other
    // event in between).
    assert!(
        matches!(h[req + 1].kind, EventKind::TimerCancelled { .. }),
        "{h:#?}"
    );
    assert_eq!(h[req].at_ms, h[req + 1].at_ms);
}

#[tokio::test(start_paused = true)]
async fn r1_4_a_second_cancel_changes_nothing() {
    let e = engine().await;
    let c = e.client();
    let id = "r1-4";
    let run = start_waiting(&c, id, After::ReturnCancellation, true).await;
    c.cancel(id, "first").await.unwrap();
    c.cancel(id, "second").await.unwrap();
    let out = run.outcome().await.unwrap();
    assert!(
        matches!(&out, Outcome::Canceled(WorkflowError::Cancelled { reason }) if reason == "first"),
        "{out:?}"
    );
    let h = c.history(id).await.unwrap();
    assert_eq!(
        count(&h, |k| matches!(k, EventKind::CancelRequested { .. })),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn r1_5_reason_reaches_the_workflow_the_history_and_describe() {
    let e = engine().await;
    let c = e.client();
    let id = "r1-5";
    let run = start_waiting(&c, id, After::ReturnOk, false).await;
    c.cancel(id, "customer asked").await.unwrap();
    assert!(
        matches!(run.outcome().await.unwrap(), Outcome::Completed(s) if s == "handled: customer asked")
    );
    let h = c.history(id).await.unwrap();
    assert!(h.iter().any(
        |e| matches!(&e.kind, EventKind::CancelRequested { reason } if reason == "customer asked")
    ));
    assert_eq!(
        c.describe(id).await.unwrap().cancel_reason.as_deref(),
        Some("customer asked")
    );

    // A missing reason is the empty string.
    let run = start_waiting(&c, "r1-5-empty", After::ReturnOk, false).await;
    c.cancel("r1-5-empty", "").await.unwrap();
    assert!(matches!(run.outcome().await.unwrap(), Outcome::Completed(s) if s == "handled: "));
}

#[tokio::test(start_paused = true)]
async fn r1_6_cancelled_signal_and_is_cancel_requested() {
    let e = engine().await;
    let c = e.client();
    let id = "r1-6";
    let run = start_waiting(&c, id, After::ReturnOk, false).await;
    // Nothing resolves the signal but a cancel: an hour later it still waits.
    tokio::time::sleep(LONG).await;
    assert_eq!(c.describe(id).await.unwrap().state, "AwaitCancel");
    c.cancel(id, "r").await.unwrap();
    run.outcome().await.unwrap();
    let h = c.history(id).await.unwrap();
    assert_eq!(
        logs(&h)[0],
        "saw cancel (before: false, now: true), reason \"r\""
    );
    assert_eq!(
        count(&h, |k| matches!(k, EventKind::CancelSignalled { .. })),
        1
    );
}

// ----- R2 final status, scenario 9 --------------------------------------------------------

async fn scenario_9(
    after: After,
    cleanup_sleep: bool,
) -> (Outcome<String, WorkflowError>, Vec<String>) {
    let e = engine().await;
    let c = e.client();
    let id = format!("s9-{after:?}-{cleanup_sleep}");
    let run = start_waiting(&c, &id, after, cleanup_sleep).await;
    c.cancel(&id, "stop").await.unwrap();
    let out = run.outcome().await.unwrap();
    (out, logs(&c.history(&id).await.unwrap()))
}

#[tokio::test(start_paused = true)]
async fn r2_1_scenario_9a_returning_ok_after_a_cancel_is_completed() {
    for cleanup in [false, true] {
        let (out, logs) = scenario_9(After::ReturnOk, cleanup).await;
        assert!(matches!(out, Outcome::Completed(_)), "{out:?}");
        assert_eq!(logs.contains(&"cleanup sleep done".to_string()), cleanup);
    }
}

#[tokio::test(start_paused = true)]
async fn r2_2_scenario_9b_cancel_requested_and_cancellation_error_gives_canceled() {
    for cleanup in [false, true] {
        let (out, logs) = scenario_9(After::ReturnCancellation, cleanup).await;
        assert!(
            matches!(out, Outcome::Canceled(ref e) if e.is_cancellation()),
            "{out:?}"
        );
        assert_eq!(logs.contains(&"cleanup sleep done".to_string()), cleanup);
    }
}

#[tokio::test(start_paused = true)]
async fn r2_3_scenario_9c_another_error_after_a_cancel_is_failed() {
    for cleanup in [false, true] {
        let (out, _) = scenario_9(After::ReturnOtherError, cleanup).await;
        assert!(
            matches!(out, Outcome::Failed(WorkflowError::Application { .. })),
            "{out:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn r2_3_cancellation_error_without_a_cancel_request_is_failed() {
    let e = engine().await;
    let c = e.client();
    // An activity that claims to be cancelled when nobody asked fails (R6.5), and the workflow
    // returning that error is Failed, not Canceled.
    let out = c
        .start(bad_activity, "r2-3", ())
        .await
        .unwrap()
        .outcome()
        .await
        .unwrap();
    match out {
        Outcome::Failed(WorkflowError::Activity {
            failure: ActivityFailure::Application { message, .. },
            ..
        }) => {
            assert!(message.contains("no cancel was requested"), "{message}")
        }
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn r2_4_a_panic_leaves_the_workflow_running_and_stuck() {
    let e = engine().await;
    let c = e.client();
    let id = "r2-4";
    c.start(panics, id, 1).await.unwrap();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if c.describe(id).await.unwrap().stuck.is_some() {
            break;
        }
    }
    let d = c.describe(id).await.unwrap();
    assert_eq!(d.status, WorkflowStatus::Running);
    assert!(
        matches!(&d.stuck, Some(workflow_core::WorkflowFault::Panicked { message, .. })
            if message.contains("workflow code panicked on purpose")),
        "{d:?}"
    );
    // The step was not committed: the machine is still where it was before the panic.
    assert_eq!(d.state, "Sleep");
}

// ----- R4 cleanup -------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn r4_1_scenario_15_only_disconnected_operations_run_after_cancel() {
    let e = engine().await;
    let c = e.client();
    let id = "s15";
    let run = c.start(disconnected_follow_up, id, ()).await.unwrap();
    assert!(journal::wait_for(id, "stubborn started", Duration::from_secs(5)).await);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    c.cancel(id, "").await.unwrap();
    let out = run.outcome().await.unwrap();
    assert!(
        matches!(&out, Outcome::Completed(s) if s == "after 20; root call failed: true"),
        "{out:?}"
    );
    assert_eq!(journal::count(id, "quick ran: after 20"), 1);
    assert_eq!(journal::count(id, "quick ran: on the cancelled root"), 0);
}

#[tokio::test(start_paused = true)]
async fn r4_2_handler_runs_with_a_disconnected_context_when_the_scope_ends_cancelled() {
    let e = engine().await;
    let c = e.client();
    let id = "r4-2";
    let run = c.start(handler_on_return, id, false).await.unwrap();
    until_state(&c, id, "Sleep").await;
    c.cancel(id, "").await.unwrap();
    // The sleep's cancellation error leaves the workflow through `?`: the handler runs first,
    // its activity runs on the disconnected context, then the error closes it Canceled.
    let out = run.outcome().await.unwrap();
    assert!(matches!(out, Outcome::Canceled(_)), "{out:?}");
    let h = c.history(id).await.unwrap();
    assert_eq!(logs(&h), ["handler ran", "cleanup activity: true"]);
    assert_eq!(journal::count(id, "quick ran: cleanup"), 1);
}

#[tokio::test(start_paused = true)]
async fn r4_2_handler_does_not_run_without_a_cancel() {
    let e = engine().await;
    let c = e.client();
    for (id, fail) in [("r4-2-ok", false), ("r4-2-err", true)] {
        let out = c
            .start(handler_on_return, id, fail)
            .await
            .unwrap()
            .outcome()
            .await
            .unwrap();
        assert_eq!(out.is_completed(), !fail);
        assert!(logs(&c.history(id).await.unwrap()).is_empty());
    }
}

#[tokio::test(start_paused = true)]
async fn r4_2_a_handler_inside_a_loop_guards_the_current_iteration() {
    let e = engine().await;
    let c = e.client();
    let out = c
        .start(handler_per_iteration, "r4-2-loop-ok", 3)
        .await
        .unwrap()
        .outcome()
        .await
        .unwrap();
    assert!(matches!(out, Outcome::Completed(3)), "{out:?}");
    assert!(logs(&c.history("r4-2-loop-ok").await.unwrap()).is_empty());

    let id = "r4-2-loop";
    let run = c.start(handler_per_iteration, id, 3).await.unwrap();
    tokio::time::sleep(Duration::from_secs(15)).await; // in the second iteration
    c.cancel(id, "").await.unwrap();
    let out = run.outcome().await.unwrap();
    assert!(matches!(out, Outcome::Canceled(_)), "{out:?}");
    assert_eq!(
        logs(&c.history(id).await.unwrap()),
        ["undo step 1", "undo step 1 finished"]
    );
}

/// Starts `hold_and_release`, cancels it once it holds, and returns how it closed with its
/// cleanup failures.
async fn cancel_hold(
    c: &Client,
    id: &str,
    gone: bool,
) -> workflow_core::OutcomeWithCleanup<(), WorkflowError> {
    let run = c.start(hold_and_release, id, gone).await.unwrap();
    until_state(c, id, "Sleep").await;
    c.cancel(id, "the customer left").await.unwrap();
    run.outcome_with_cleanup().await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn r4_3_an_activity_a_handler_awaits_that_fails_is_recorded_on_the_workflow() {
    let e = engine().await;
    let c = e.client();
    let id = "r4-3-fails";
    let closed = cancel_hold(&c, id, true).await;
    assert!(closed.outcome.is_canceled(), "{closed:?}");
    let expected = "cancellation handler `on_cancel#0` of workflow `hold_and_release` (state \
                    `OnCancelRelease`): activity `release` failed: the hold is already gone";
    // The outcome shows it, ...
    assert_eq!(closed.cleanup_failures, [expected]);
    // ... `describe` and `list` show it, ...
    let d = c.describe(id).await.unwrap();
    assert_eq!(d.handler_failures, [expected]);
    assert!(
        d.to_string().contains(&format!("CLEANUP   {expected}")),
        "{d}"
    );
    let listed = c.list(None).await.unwrap();
    let row = listed.iter().find(|d| d.id == id).unwrap();
    assert_eq!(row.handler_failures, [expected]);
    // ... and the history records it where it happened, after the handler's own line.
    let h = c.history(id).await.unwrap();
    let failed = h
        .iter()
        .position(
            |e| matches!(&e.kind, EventKind::CleanupFailed { message } if message == expected),
        )
        .unwrap_or_else(|| panic!("{h:#?}"));
    let released = h
        .iter()
        .position(|e| matches!(&e.kind, EventKind::ActivityFailed { activity, .. } if activity == "release"))
        .unwrap();
    assert!(released < failed);
    assert_eq!(
        logs(&h),
        ["release failed: activity `release` failed: the hold is already gone"]
    );
}

#[tokio::test(start_paused = true)]
async fn r4_3_a_handler_whose_activity_succeeds_records_nothing() {
    let e = engine().await;
    let c = e.client();
    let id = "r4-3-ok";
    let closed = cancel_hold(&c, id, false).await;
    assert!(closed.outcome.is_canceled(), "{closed:?}");
    assert!(closed.cleanup_failures.is_empty(), "{closed:?}");
    assert_eq!(journal::count(id, "release ran, gone: false"), 1);
    let d = c.describe(id).await.unwrap();
    assert!(d.handler_failures.is_empty(), "{d:?}");
    assert!(!d.to_string().contains("CLEANUP"), "{d}");
    let h = c.history(id).await.unwrap();
    assert_eq!(
        count(&h, |k| matches!(k, EventKind::CleanupFailed { .. })),
        0
    );
}

// ----- R6 activities, scenarios 10–12 -----------------------------------------------------

#[tokio::test(start_paused = true)]
async fn r6_scenario_10_try_cancel_resolves_at_once_and_the_activity_sees_it_at_its_next_heartbeat()
{
    let e = engine().await;
    let c = e.client();
    let id = "s10";
    let plan = ActivityPlan {
        cancellation: ActivityCancellationType::TryCancel,
        secs: 60,
        stubborn: false,
    };
    let run = c.start(call_long_activity, id, plan).await.unwrap();
    assert!(journal::wait_for(id, "heartbeating started", Duration::from_secs(5)).await);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    c.cancel(id, "").await.unwrap();
    let out = run.outcome().await.unwrap();
    let closed_at = tokio::time::Instant::now();
    assert!(
        matches!(out, Outcome::Canceled(WorkflowError::Cancelled { .. })),
        "{out:?}"
    );
    // The activity learns of it at its next heartbeat (t = 3 s), after the workflow closed.
    assert!(
        journal::wait_for(
            id,
            "heartbeating saw cancel at heartbeat 2",
            Duration::from_secs(2)
        )
        .await
    );
    assert!(tokio::time::Instant::now() > closed_at);
}

#[tokio::test(start_paused = true)]
async fn r6_scenario_11_abandon_unblocks_at_once_and_the_activity_runs_to_its_end_untold() {
    let e = engine().await;
    let c = e.client();
    let id = "s11";
    let out = cancel_long_activity(&c, id, ActivityCancellationType::Abandon, 10, true).await;
    assert!(matches!(out, Outcome::Canceled(_)), "{out:?}");
    assert!(journal::wait_for(id, "stubborn finished", Duration::from_secs(20)).await);
    assert_eq!(
        journal::lines(id),
        ["stubborn started", "stubborn finished, cancelled = false"]
    );
    let h = c.history(id).await.unwrap();
    assert_eq!(
        count(&h, |k| matches!(k, EventKind::ActivityAbandoned { .. })),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn r6_scenario_12_wait_cancellation_completed_resolves_with_the_activity_outcome() {
    let e = engine().await;
    let c = e.client();
    // The activity accepts the cancel: the call resolves with a cancellation error only when
    // the activity has ended.
    let id = "s12-accepts";
    let out = cancel_long_activity(
        &c,
        id,
        ActivityCancellationType::WaitCancellationCompleted,
        60,
        false,
    )
    .await;
    assert!(
        matches!(
            &out,
            Outcome::Canceled(WorkflowError::Activity {
                failure: ActivityFailure::Cancelled,
                ..
            })
        ),
        "{out:?}"
    );
    assert_eq!(journal::count(id, "heartbeating saw cancel"), 1);

    // The activity ignores the cancel and completes: its value is returned.
    let id = "s12-ignores";
    let out = cancel_long_activity(
        &c,
        id,
        ActivityCancellationType::WaitCancellationCompleted,
        8,
        true,
    )
    .await;
    assert!(matches!(out, Outcome::Completed(8)), "{out:?}");
    assert_eq!(journal::lines(id)[1], "stubborn finished, cancelled = true");
}

#[tokio::test(start_paused = true)]
async fn r6_2_an_activity_that_never_heartbeats_is_waited_for_and_describe_says_so() {
    let e = engine().await;
    let c = e.client();
    let id = "r6-2";
    let run = c
        .start(
            call_silent,
            id,
            ActivityCancellationType::WaitCancellationCompleted,
        )
        .await
        .unwrap();
    until_state(&c, id, "Silent").await;
    c.cancel(id, "").await.unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let d = c.describe(id).await.unwrap();
    assert_eq!(d.status, WorkflowStatus::Running);
    assert!(
        d.pending[0]
            .waiting_for
            .contains("to finish after a cancel"),
        "{d:?}"
    );
    assert!(d.to_string().contains("WaitCancellationCompleted"), "{d}");
    // It ends on its own after 600 s and its value is returned.
    assert!(matches!(
        run.outcome().await.unwrap(),
        Outcome::Completed(600)
    ));
    assert_eq!(journal::lines(id), ["silent started", "silent finished"]);
}

#[tokio::test(start_paused = true)]
async fn r6_3_a_late_result_after_try_cancel_is_absorbed() {
    let e = engine().await;
    let c = e.client();
    let id = "r6-3";
    let run = c.start(try_cancel_then_linger, id, ()).await.unwrap();
    until_state(&c, id, "Silent").await;
    c.cancel(id, "").await.unwrap();
    // The call resolved at once; the workflow lingers on a disconnected timer while the
    // activity (which never heartbeats) finishes: its result is recorded and ignored.
    let out = run.outcome().await.unwrap();
    assert!(
        matches!(&out, Outcome::Completed(s) if s.starts_with("call: Err(Cancelled")),
        "{out:?}"
    );
    assert_eq!(journal::lines(id), ["silent started", "silent finished"]);
    let h = c.history(id).await.unwrap();
    assert_eq!(
        count(&h, |k| matches!(k, EventKind::ResultIgnored { .. })),
        1,
        "{h:#?}"
    );
    assert_eq!(
        count(&h, |k| matches!(k, EventKind::ActivityCompleted { .. })),
        0
    );
}

#[tokio::test(start_paused = true)]
async fn r6_1_r6_4_a_cancel_stops_retries_waiting_in_back_off_and_the_attempt_never_starts() {
    let e = engine().await;
    let c = e.client();
    let id = "r6-4";
    let run = c.start(retrying, id, 5).await.unwrap();
    assert!(journal::wait_for(id, "flaky attempt 1", Duration::from_secs(5)).await);
    // The second attempt waits 600 s in back-off; cancel during it.
    tokio::time::sleep(Duration::from_secs(60)).await;
    c.cancel(id, "").await.unwrap();
    let out = run.outcome().await.unwrap();
    assert!(out.is_canceled(), "{out:?}");
    tokio::time::sleep(LONG).await;
    assert_eq!(journal::lines(id), ["flaky attempt 1"]);
}

#[tokio::test(start_paused = true)]
async fn r6_4_retries_follow_the_policy_then_succeed() {
    let e = engine().await;
    let c = e.client();
    let out = c
        .start(retrying, "r6-4-ok", 2)
        .await
        .unwrap()
        .outcome()
        .await
        .unwrap();
    assert!(matches!(out, Outcome::Completed(3)), "{out:?}");
    assert_eq!(journal::count("r6-4-ok", "flaky attempt"), 3);
}

#[tokio::test(start_paused = true)]
async fn r6_5_an_activity_claiming_cancellation_without_a_request_fails() {
    let e = engine().await;
    let out = e
        .client()
        .start(bad_activity, "r6-5", ())
        .await
        .unwrap()
        .outcome()
        .await
        .unwrap();
    assert!(
        matches!(out, Outcome::Failed(ref err) if !err.is_cancellation()),
        "{out:?}"
    );
}

// ----- R8 timers, R9 and scenario 14 ------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn r8_cancelling_a_timer_resolves_its_sleep_at_once_and_zero_resolves_immediately() {
    let e = engine().await;
    let c = e.client();
    let id = "r8";
    let run = c.start(sleeper, id, 3600).await.unwrap();
    until_state(&c, id, "Sleep").await;
    let t0 = tokio::time::Instant::now();
    c.cancel(id, "").await.unwrap();
    assert!(run.outcome().await.unwrap().is_canceled());
    assert!(t0.elapsed() < Duration::from_secs(1));
    let h = c.history(id).await.unwrap();
    assert!(
        logs(&h)[0].starts_with("sleep resolved: Err(Cancelled"),
        "{:?}",
        logs(&h)
    );

    let out = c
        .start(sleeper, "r8-zero", 0)
        .await
        .unwrap()
        .outcome()
        .await
        .unwrap();
    assert!(out.is_completed());
    let h = c.history("r8-zero").await.unwrap();
    assert_eq!(
        count(&h, |k| matches!(k, EventKind::TimerStarted { .. })),
        0
    );
}

#[tokio::test(start_paused = true)]
async fn r9_scenario_14_operations_on_a_cancelled_context_fail_at_once_and_never_dispatch() {
    let e = engine().await;
    let c = e.client();
    let id = "s14";
    let run = c.start(use_cancelled_context, id, ()).await.unwrap();
    until_state(&c, id, "AwaitCancel").await;
    let t0 = tokio::time::Instant::now();
    c.cancel(id, "").await.unwrap();
    let out = run.outcome().await.unwrap();
    assert!(
        matches!(&out, Outcome::Completed(s) if s == "activity: true, sleep: true, zero sleep: true"),
        "{out:?}"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "the hour-long sleep must not run"
    );
    assert_eq!(journal::count(id, "quick ran"), 0);
    let h = c.history(id).await.unwrap();
    assert_eq!(
        count(&h, |k| matches!(k, EventKind::OperationSkipped { .. })),
        3
    );
    assert_eq!(
        count(&h, |k| matches!(
            k,
            EventKind::ActivityScheduled { .. } | EventKind::TimerStarted { .. }
        )),
        0
    );
}

#[test]
fn state_enum_round_trips_through_serde() {
    // The state is a plain serde value: a suspended state survives a JSON round trip.
    let state = <sleeper as Workflow>::start(42);
    let json = serde_json::to_string(&state).unwrap();
    let back: <sleeper as Workflow>::State = serde_json::from_str(&json).unwrap();
    assert_eq!(serde_json::to_string(&back).unwrap(), json);
    assert_eq!(json, r#"{"Start":{"secs":42}}"#);
}

// ----- a handler that panics --------------------------------------------------------------

/// A handler that gives up with a panic, at once or after an await of its own.
#[workflow]
async fn handler_panics(ctx: WorkflowContext, after_await: bool) -> Result<String, WorkflowError> {
    on_cancel!(|cleanup| {
        cleanup.log("handler started");
        if after_await {
            cleanup.sleep(Duration::from_secs(1)).await.ok();
            cleanup.log("handler slept");
        }
        panic!("the handler panicked on purpose");
    });
    ctx.sleep(LONG).await?;
    Ok("finished".to_string())
}

#[tokio::test(start_paused = true)]
async fn r4_2_a_handler_that_panics_is_reported_like_a_panicking_step_and_not_committed() {
    let e = Engine::builder()
        .in_memory()
        .register(handler_panics)
        .build()
        .await
        .unwrap();
    let c = e.client();
    // The state the machine was in before the step that panicked, and what was committed
    // before that step.
    for (id, after_await, state, committed_logs) in [
        ("r4-2-panic-at-once", false, "Sleep", &[][..]),
        (
            "r4-2-panic-after-await",
            true,
            "OnCancelSleep",
            &["handler started"][..],
        ),
    ] {
        c.start(handler_panics, id, after_await).await.unwrap();
        until_state(&c, id, "Sleep").await;
        c.cancel(id, "").await.unwrap();
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if c.describe(id).await.unwrap().stuck.is_some() {
                break;
            }
        }
        let d = c.describe(id).await.unwrap();
        assert_eq!(d.status, WorkflowStatus::Running, "{id}");
        assert!(
            matches!(&d.stuck, Some(workflow_core::WorkflowFault::Panicked { message, .. })
                if message.contains("the handler panicked on purpose")),
            "{id}: {d:?}"
        );
        assert_eq!(d.state, state, "{id}");
        assert_eq!(logs(&c.history(id).await.unwrap()), committed_logs, "{id}");
    }
}
