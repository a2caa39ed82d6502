//! Cancellation scopes (`workflow-core/SEMANTICS.md` R3, R5, R10, R13) and public scenarios 1–6, 8,
//! 17, 18 and 20: `ctx.cancellable(async { .. })`, `ctx.non_cancellable(async { .. })`,
//! `ctx.with_timeout(d, async { .. })`, `ctx.cancel_scope()`, and `on_cancel!` guarding a scope.
//! Inside a scope's async block, `ctx` is the scope's context.

use durable_workflows::journal;
use durable_workflows::testing::logs;
use std::time::Duration;
use workflow_core::prelude::*;
use workflow_core::{EventKind, HistoryEvent};

/// Heartbeats every second for `secs` seconds; accepts a cancel.
#[activity]
async fn slow(ctx: ActivityContext, secs: u64) -> Result<u64, ActivityError> {
    let id = ctx.info().workflow_id.clone();
    journal::write(&id, format!("slow {secs} started"));
    for _ in 0..secs {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Err(e) = ctx.heartbeat(()) {
            journal::write(&id, format!("slow {secs} cancelled"));
            return Err(e);
        }
    }
    journal::write(&id, format!("slow {secs} done"));
    Ok(secs)
}

#[activity]
async fn note(ctx: ActivityContext, what: String) -> Result<String, ActivityError> {
    journal::write(&ctx.info().workflow_id, format!("note {what}"));
    Ok(what)
}

// ----- scenarios 1 and 2 ------------------------------------------------------------------

#[workflow]
async fn timer_in_own_scope(ctx: WorkflowContext, handle: bool) -> Result<(), WorkflowError> {
    let r: Result<(), WorkflowError> = ctx
        .cancellable(async {
            let timer = ctx.sleep(Duration::from_millis(1)).start();
            ctx.cancel_scope();
            timer.await
        })
        .await;
    match r {
        Err(e) if e.is_cancellation() && handle => {
            ctx.log("timer cancelled");
            Ok(())
        }
        other => other,
    }
}

// ----- scenarios 3 and 4 ------------------------------------------------------------------

#[workflow]
async fn retry_after_cancel(ctx: WorkflowContext) -> Result<u64, WorkflowError> {
    match ctx.activity(slow, 30).await {
        Ok(v) => Ok(v),
        Err(first) => {
            ctx.log(format!("first call: {first}"));
            let again = ctx.activity(slow, 1).await;
            ctx.log(format!(
                "again on the cancelled context fails: {}",
                again.is_err()
            ));
            let last: Result<u64, WorkflowError> = ctx
                .non_cancellable(async { ctx.activity(slow, 2).await })
                .await;
            last
        }
    }
}

#[workflow]
async fn cleanup_then_rethrow(ctx: WorkflowContext) -> Result<u64, WorkflowError> {
    match ctx.activity(slow, 30).await {
        Ok(v) => Ok(v),
        Err(e) => {
            let _cleanup: Result<String, WorkflowError> = ctx
                .non_cancellable(async { ctx.activity(note, "cleanup".to_string()).await })
                .await;
            Err(e)
        }
    }
}

// ----- scenarios 5 and 6 ------------------------------------------------------------------

#[workflow]
async fn timeout_with_cleanup(ctx: WorkflowContext) -> Result<u64, WorkflowError> {
    let _setup: Result<String, WorkflowError> = ctx
        .non_cancellable(async { ctx.activity(note, "setup".to_string()).await })
        .await;
    let r: Result<u64, WorkflowError> = ctx
        .with_timeout(Duration::from_secs(1), async {
            ctx.activity(slow, 30).await
        })
        .await;
    if let Err(e) = r {
        if e.is_cancellation() {
            let _cleanup: Result<String, WorkflowError> = ctx
                .non_cancellable(async { ctx.activity(note, "cleanup".to_string()).await })
                .await;
        }
        return Err(e);
    }
    r
}

#[workflow]
async fn timeout_over_two(ctx: WorkflowContext) -> Result<u64, WorkflowError> {
    let r: Result<u64, WorkflowError> = ctx
        .with_timeout(Duration::from_secs(1), async {
            let a = ctx.activity(slow, 30).start();
            let b = ctx.activity(slow, 40).start();
            Ok(a.await? + b.await?)
        })
        .await;
    r
}

#[workflow]
async fn body_beats_timeout(ctx: WorkflowContext) -> Result<u64, WorkflowError> {
    ctx.with_timeout(Duration::from_secs(60), async {
        ctx.activity(slow, 2).await
    })
    .await
}

// ----- R10, R3.4, R3.6, scenario 8 ---------------------------------------------------------

#[workflow]
async fn shared_operations(ctx: WorkflowContext) -> Result<u64, WorkflowError> {
    let a = ctx.activity(slow, 3).start();
    let b = ctx.activity(slow, 5).start();
    // The scope awaits `a`, which the root scope owns: cancelling the scope does not cancel
    // it (R10), nor `b`, nor the parent (R3.4).
    let first: Result<u64, WorkflowError> = ctx
        .cancellable(async {
            ctx.cancel_scope();
            a.await
        })
        .await;
    let second = b.await?;
    Ok(first? * 100 + second)
}

#[workflow]
async fn born_cancelled(ctx: WorkflowContext) -> Result<String, WorkflowError> {
    ctx.cancelled().await;
    let inner: Result<String, WorkflowError> = ctx
        .cancellable(async {
            let cancelled_at_birth = ctx.is_cancel_requested();
            let r = ctx.activity(note, "never".to_string()).await;
            Ok(format!(
                "born cancelled: {cancelled_at_birth}, op failed: {}",
                r.is_err()
            ))
        })
        .await;
    inner
}

#[workflow]
async fn shielded_timer(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    ctx.cancellable(async {
        let outer = ctx;
        ctx.non_cancellable(async {
            let timer = ctx.sleep(Duration::from_secs(5)).start();
            outer.cancel_scope();
            ctx.log(format!(
                "outer cancelled; inner signal: {}",
                ctx.is_cancel_requested()
            ));
            timer.await
        })
        .await
    })
    .await
}

#[workflow]
async fn nested_scopes(ctx: WorkflowContext) -> Result<u64, WorkflowError> {
    ctx.cancellable(async {
        let inner: Result<u64, WorkflowError> = ctx
            .cancellable(async {
                let job = ctx.activity(slow, 30).start();
                ctx.sleep(Duration::from_secs(1)).await?;
                ctx.cancel_scope();
                job.await
            })
            .await;
        ctx.log(format!("inner failed: {}", inner.is_err()));
        // Resumed inside the inner scope, the outer scope's `ctx` is still the outer one.
        ctx.activity(slow, 1).await
    })
    .await
}

// ----- scenario 7, R10 with a race ----------------------------------------------------------

#[workflow]
async fn race_in_scope(ctx: WorkflowContext) -> Result<u64, WorkflowError> {
    let fast = ctx.activity(slow, 2).start();
    let long = ctx.activity(slow, 6).start();
    let winner: Result<u64, WorkflowError> = ctx
        .cancellable(async {
            let first = ctx.race([fast, long]).await?;
            ctx.log(format!("race won by #{}", first.index));
            ctx.cancel_scope();
            first
                .get(fast)
                .unwrap_or(Err(WorkflowError::application("the long one won")))
        })
        .await;
    // The loser belongs to the root scope: still running, and its result still arrives.
    let loser = long.await?;
    Ok(winner? * 100 + loser)
}

#[workflow]
async fn notice_cancel_without_cancelling(ctx: WorkflowContext) -> Result<String, WorkflowError> {
    // Started in a shield: a cancel of the workflow does not reach it.
    let job: Result<OpHandle<Result<u64, WorkflowError>>, WorkflowError> = ctx
        .non_cancellable(async { Ok(ctx.activity(slow, 4).start()) })
        .await;
    let job = job?;
    let cancel = ctx.cancelled().start();
    let first = ctx.race((job, cancel)).await?;
    if first.is(cancel) {
        let finished = job.await?;
        return Ok(format!(
            "noticed the cancel; the job still finished with {finished}"
        ));
    }
    Ok("no cancel".to_string())
}

// ----- scenarios 17, 18, 20 ----------------------------------------------------------------

#[workflow]
async fn host_cancel(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    ctx.cancellable(async {
        on_cancel!(|c| {
            c.log("CancellationHandler invoked.");
        });
        ctx.log("Starting the workflow.");
        ctx.sleep(Duration::from_secs(5)).await?;
        ctx.log("Ending the workflow.");
        Ok(())
    })
    .await
}

#[workflow]
async fn unhandled_error(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    ctx.cancellable(async {
        on_cancel!(|c| {
            c.log("CancellationHandler invoked.");
        });
        ctx.log("Starting the workflow.");
        if ctx.workflow_id().starts_with("s18") {
            return Err(WorkflowError::application(
                "An ApplicationException was thrown.",
            ));
        }
        ctx.log("Ending the workflow.");
        Ok(())
    })
    .await
}

#[workflow]
async fn try_catch(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    let r: Result<(), WorkflowError> = ctx
        .cancellable(async {
            on_cancel!(|c| {
                c.log("Sequence canceled.");
            });
            ctx.log("Sequence starting.");
            Err(WorkflowError::application("thrown in the sequence"))
        })
        .await;
    if r.is_err() {
        ctx.log("Exception caught.");
    }
    Ok(())
}

// ----- helpers ----------------------------------------------------------------------------

async fn engine_with(action: UnhandledErrorAction) -> Engine {
    Engine::builder()
        .in_memory()
        .register(timer_in_own_scope)
        .register(retry_after_cancel)
        .register(cleanup_then_rethrow)
        .register(timeout_with_cleanup)
        .register(timeout_over_two)
        .register(body_beats_timeout)
        .register(shared_operations)
        .register(born_cancelled)
        .register(shielded_timer)
        .register(host_cancel)
        .register(unhandled_error)
        .register(try_catch)
        .register(race_in_scope)
        .register(notice_cancel_without_cancelling)
        .register(nested_scopes)
        .activity(slow)
        .activity(note)
        .unhandled_errors(action)
        .build()
        .await
        .unwrap()
}

async fn engine() -> Engine {
    engine_with(UnhandledErrorAction::Fail).await
}

/// The history as short tags, for order checks.
fn tags(h: &[HistoryEvent]) -> Vec<String> {
    h.iter()
        .filter_map(|e| match &e.kind {
            EventKind::ActivityScheduled { activity, .. } => Some(format!("schedule {activity}")),
            EventKind::ActivityCompleted { activity, .. } => Some(format!("done {activity}")),
            EventKind::CancelRequested { .. } => Some("cancel request".into()),
            EventKind::ActivityCancelRequested { activity, .. } => {
                Some(format!("cancel {activity}"))
            }
            EventKind::TimerStarted { .. } => Some("timer started".into()),
            EventKind::TimerFired { .. } => Some("timer fired".into()),
            EventKind::TimerCancelled { .. } => Some("timer cancelled".into()),
            EventKind::OperationSkipped { what, .. } => Some(format!("skipped {what}")),
            _ => None,
        })
        .collect()
}

// ----- tests ------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn scenario_1_timer_cancelled_in_its_own_scope_handled() {
    let e = engine().await;
    let c = e.client();
    let out = c
        .start(timer_in_own_scope, "s1", true)
        .await
        .unwrap()
        .outcome()
        .await
        .unwrap();
    assert!(matches!(out, Outcome::Completed(())), "{out:?}");
    let h = c.history("s1").await.unwrap();
    assert_eq!(logs(&h), ["timer cancelled"]);
    assert_eq!(tags(&h), ["timer started", "timer cancelled"]);
}

#[tokio::test(start_paused = true)]
async fn scenario_2_r3_5_unhandled_scope_cancellation_fails_the_workflow() {
    let e = engine().await;
    let out = e
        .client()
        .start(timer_in_own_scope, "s2", false)
        .await
        .unwrap()
        .outcome()
        .await
        .unwrap();
    assert!(
        matches!(&out, Outcome::Failed(err) if err.is_cancellation()),
        "{out:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn scenario_3_retry_on_cancelled_context_fails_then_runs_in_non_cancellable_scope() {
    let e = engine().await;
    let c = e.client();
    let id = "s3";
    let run = c.start(retry_after_cancel, id, ()).await.unwrap();
    assert!(journal::wait_for(id, "slow 30 started", Duration::from_secs(5)).await);
    c.cancel(id, "").await.unwrap();
    let out = run.outcome().await.unwrap();
    assert!(matches!(out, Outcome::Completed(2)), "{out:?}");
    let h = c.history(id).await.unwrap();
    assert_eq!(logs(&h)[1], "again on the cancelled context fails: true");
    assert_eq!(journal::count(id, "slow 1"), 0, "never dispatched");
    assert_eq!(journal::count(id, "slow 2 done"), 1);
}

#[tokio::test(start_paused = true)]
async fn scenario_4_cleanup_in_non_cancellable_scope_then_rethrow_is_canceled() {
    let e = engine().await;
    let c = e.client();
    let id = "s4";
    let run = c.start(cleanup_then_rethrow, id, ()).await.unwrap();
    assert!(journal::wait_for(id, "slow 30 started", Duration::from_secs(5)).await);
    c.cancel(id, "").await.unwrap();
    let out = run.outcome().await.unwrap();
    assert!(matches!(out, Outcome::Canceled(_)), "{out:?}");
    let h = c.history(id).await.unwrap();
    assert_eq!(
        tags(&h),
        [
            "schedule slow",
            "cancel request",
            "cancel slow",
            "schedule note",
            "done note"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn scenario_5_r5_2_timeout_cancels_the_activity_cleanup_runs_failed_not_canceled() {
    let e = engine().await;
    let c = e.client();
    let id = "s5";
    let out = c
        .start(timeout_with_cleanup, id, ())
        .await
        .unwrap()
        .outcome()
        .await
        .unwrap();
    assert!(
        matches!(&out, Outcome::Failed(err) if err.is_cancellation()),
        "{out:?}"
    );
    let h = c.history(id).await.unwrap();
    assert_eq!(
        tags(&h),
        [
            "schedule note",
            "done note",
            "timer started",
            "schedule slow",
            "timer fired",
            "cancel slow",
            "schedule note",
            "done note"
        ]
    );
    assert_eq!(journal::lines(id)[..2], ["note setup", "slow 30 started"]);
    assert_eq!(journal::count(id, "note cleanup"), 1);
}

#[tokio::test(start_paused = true)]
async fn scenario_6_timeout_sends_cancel_to_both_parallel_activities() {
    let e = engine().await;
    let c = e.client();
    let id = "s6";
    let out = c
        .start(timeout_over_two, id, ())
        .await
        .unwrap()
        .outcome()
        .await
        .unwrap();
    assert!(
        matches!(&out, Outcome::Failed(err) if err.is_cancellation()),
        "{out:?}"
    );
    let h = c.history(id).await.unwrap();
    let cancels = tags(&h).iter().filter(|t| *t == "cancel slow").count();
    assert_eq!(cancels, 2, "{:?}", tags(&h));
}

#[tokio::test(start_paused = true)]
async fn r5_1_a_body_that_finishes_first_cancels_the_timeout_timer() {
    let e = engine().await;
    let c = e.client();
    let out = c
        .start(body_beats_timeout, "r5-1", ())
        .await
        .unwrap()
        .outcome()
        .await
        .unwrap();
    assert!(matches!(out, Outcome::Completed(2)), "{out:?}");
    let h = c.history("r5-1").await.unwrap();
    assert_eq!(
        tags(&h),
        [
            "timer started",
            "schedule slow",
            "done slow",
            "timer cancelled"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn r10_r3_4_cancelling_the_awaiting_scope_cancels_neither_shared_operations_nor_parent() {
    let e = engine().await;
    let c = e.client();
    let out = c
        .start(shared_operations, "r10", ())
        .await
        .unwrap()
        .outcome()
        .await
        .unwrap();
    assert!(matches!(out, Outcome::Completed(305)), "{out:?}");
    let h = c.history("r10").await.unwrap();
    assert!(
        !tags(&h).iter().any(|t| t.starts_with("cancel ")),
        "{:?}",
        tags(&h)
    );
}

#[tokio::test(start_paused = true)]
async fn r3_6_a_cancellable_scope_under_a_cancelled_scope_is_born_cancelled() {
    let e = engine().await;
    let c = e.client();
    let run = c.start(born_cancelled, "r3-6", ()).await.unwrap();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    c.cancel("r3-6", "").await.unwrap();
    let out = run.outcome().await.unwrap();
    assert!(
        matches!(&out, Outcome::Completed(s) if s == "born cancelled: true, op failed: true"),
        "{out:?}"
    );
    assert_eq!(journal::count("r3-6", "note"), 0);
}

#[tokio::test(start_paused = true)]
async fn scenario_8_r3_3_non_cancellable_scope_inside_a_cancelled_scope_keeps_its_timer() {
    let e = engine().await;
    let c = e.client();
    let out = c
        .start(shielded_timer, "s8", ())
        .await
        .unwrap()
        .outcome()
        .await
        .unwrap();
    assert!(matches!(out, Outcome::Completed(())), "{out:?}");
    let h = c.history("s8").await.unwrap();
    assert_eq!(logs(&h), ["outer cancelled; inner signal: true"]);
    assert_eq!(tags(&h), ["timer started", "timer fired"]);
}

#[tokio::test(start_paused = true)]
async fn scenario_17_host_cancel_runs_the_scope_handler_and_cancels() {
    let e = engine().await;
    let c = e.client();
    let run = c.start(host_cancel, "s17", ()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    c.cancel("s17", "").await.unwrap();
    let out = run.outcome().await.unwrap();
    assert!(matches!(out, Outcome::Canceled(_)), "{out:?}");
    let h = c.history("s17").await.unwrap();
    assert_eq!(
        logs(&h),
        ["Starting the workflow.", "CancellationHandler invoked."]
    );
}

#[tokio::test(start_paused = true)]
async fn scenario_18_r13_unhandled_error_with_cancel_action_runs_handler_and_cancels() {
    let e = engine_with(UnhandledErrorAction::Cancel).await;
    let c = e.client();
    let out = c
        .start(unhandled_error, "s18", ())
        .await
        .unwrap()
        .outcome()
        .await
        .unwrap();
    assert!(matches!(out, Outcome::Canceled(_)), "{out:?}");
    let h = c.history("s18").await.unwrap();
    assert_eq!(
        logs(&h),
        ["Starting the workflow.", "CancellationHandler invoked."]
    );

    // With the default action the same error fails the workflow.
    let e = engine().await;
    let out = e
        .client()
        .start(unhandled_error, "s18-fail", ())
        .await
        .unwrap()
        .outcome()
        .await
        .unwrap();
    assert!(matches!(out, Outcome::Failed(_)), "{out:?}");
}

#[tokio::test(start_paused = true)]
async fn scenario_20_error_leaving_a_scope_runs_its_handler_then_is_caught() {
    let e = engine().await;
    let c = e.client();
    let out = c
        .start(try_catch, "s20", ())
        .await
        .unwrap()
        .outcome()
        .await
        .unwrap();
    assert!(matches!(out, Outcome::Completed(())), "{out:?}");
    let h = c.history("s20").await.unwrap();
    assert_eq!(
        logs(&h),
        [
            "Sequence starting.",
            "Sequence canceled.",
            "Exception caught."
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn scenario_7_r10_a_scope_races_root_operations_and_cancels_itself_the_loser_runs_on() {
    let e = engine().await;
    let c = e.client();
    let id = "s7";
    let out = c
        .start(race_in_scope, id, ())
        .await
        .unwrap()
        .outcome()
        .await
        .unwrap();
    assert!(matches!(out, Outcome::Completed(206)), "{out:?}");
    let h = c.history(id).await.unwrap();
    assert_eq!(logs(&h), ["race won by #0"]);
    assert!(
        !tags(&h).iter().any(|t| t.starts_with("cancel ")),
        "{:?}",
        tags(&h)
    );
    assert_eq!(journal::count(id, "slow 6 done"), 1);
}

#[tokio::test(start_paused = true)]
async fn r3_4_cancelling_an_inner_scope_leaves_the_outer_scope_running() {
    let e = engine().await;
    let c = e.client();
    let out = c
        .start(nested_scopes, "r3-4", ())
        .await
        .unwrap()
        .outcome()
        .await
        .unwrap();
    assert!(matches!(out, Outcome::Completed(1)), "{out:?}");
    assert_eq!(
        logs(&c.history("r3-4").await.unwrap()),
        ["inner failed: true"]
    );
    assert_eq!(journal::count("r3-4", "slow 30 cancelled"), 1);
}

#[tokio::test(start_paused = true)]
async fn r10_racing_against_the_cancel_signal_notices_a_cancel_without_cancelling_the_operation() {
    let e = engine().await;
    let c = e.client();
    let id = "r10-notice";
    let run = c
        .start(notice_cancel_without_cancelling, id, ())
        .await
        .unwrap();
    assert!(journal::wait_for(id, "slow 4 started", Duration::from_secs(5)).await);
    c.cancel(id, "").await.unwrap();
    let out = run.outcome().await.unwrap();
    assert!(
        matches!(&out, Outcome::Completed(s) if s == "noticed the cancel; the job still finished with 4"),
        "{out:?}"
    );
    assert_eq!(journal::count(id, "slow 4 done"), 1);
}
