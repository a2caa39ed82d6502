//! Compensable blocks (WF `CompensableActivity`, sagas; `workflow-core/SEMANTICS.md` R12) and
//! public scenarios 21 and 22: a completed block's compensation runs, in reverse completion order,
//! when the workflow is cancelled or fails unhandled; its confirmation runs when the workflow
//! completes. Handlers run on fresh disconnected contexts, after the workflow's code returned.

use durable_workflows::journal;
use durable_workflows::testing::{completed, logs, run};
use std::time::Duration;
use workflow_core::prelude::*;
use workflow_core::EventKind;

#[activity]
async fn flight(ctx: ActivityContext, what: String) -> Result<String, ActivityError> {
    journal::write(&ctx.info().workflow_id, what.clone());
    if what.starts_with("approve") {
        // The manager takes a while, heartbeating.
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            ctx.heartbeat(())?;
        }
    }
    Ok(what)
}

/// Books a trip: ReserveFlight is compensable (CancelFlight / ConfirmFlight), then
/// ManagerApproval and PurchaseFlight. `fail` makes the purchase step fail unhandled.
#[workflow]
async fn book_trip(ctx: WorkflowContext, fail: bool) -> Result<String, WorkflowError> {
    let trip: String = "LHR-JFK".to_string();
    let reservation: Result<String, WorkflowError> = ctx
        .compensable(async { ctx.activity(flight, format!("reserve {trip}")).await })
        .compensate(async {
            ctx.activity(flight, format!("cancel {trip}")).await?;
            Ok(())
        })
        .confirm(async {
            ctx.activity(flight, format!("confirm {trip}")).await?;
            Ok(())
        })
        .await;
    let reservation = reservation?;
    ctx.activity(flight, format!("approve {reservation}"))
        .await?;
    if fail {
        return Err(WorkflowError::application("the purchase failed"));
    }
    ctx.activity(flight, format!("purchase {trip}")).await?;
    Ok(reservation)
}

/// Fails with a non-retryable error when asked to undo anything.
#[activity]
async fn refund(_ctx: ActivityContext, what: String) -> Result<String, ActivityError> {
    Err(ActivityError::non_retryable(format!(
        "the bank refused to refund {what}"
    )))
}

/// A compensable charge whose compensation (the refund) fails, then a failure.
#[workflow]
async fn charge_then_fail(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    let charged: Result<String, WorkflowError> = ctx
        .compensable(async { ctx.activity(flight, "charge card".to_string()).await })
        .compensate(async {
            ctx.activity(refund, "the card".to_string()).await?;
            Ok(())
        })
        .await;
    charged?;
    Err(WorkflowError::application("the order could not be shipped"))
}

/// Two compensable blocks: compensation runs in reverse completion order.
#[workflow]
async fn two_blocks(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    let hotel: Result<String, WorkflowError> = ctx
        .compensable(async { ctx.activity(flight, "book hotel".to_string()).await })
        .compensate(async {
            ctx.activity(flight, "release hotel".to_string()).await?;
            Ok(())
        })
        .await;
    hotel?;
    let car: Result<String, WorkflowError> = ctx
        .compensable(async { ctx.activity(flight, "book car".to_string()).await })
        .compensate(async {
            ctx.activity(flight, "release car".to_string()).await?;
            Ok(())
        })
        .await;
    car?;
    ctx.log("both booked; now failing");
    Err(WorkflowError::application("no flight"))
}

/// Explicit compensation and confirmation.
#[workflow]
async fn explicit(ctx: WorkflowContext, confirm_first: bool) -> Result<String, WorkflowError> {
    let seat: Result<String, WorkflowError> = ctx
        .compensable(async { ctx.activity(flight, "hold seat".to_string()).await })
        .compensate(async {
            ctx.activity(flight, "release seat".to_string()).await?;
            Ok(())
        })
        .confirm(async {
            ctx.activity(flight, "keep seat".to_string()).await?;
            Ok(())
        })
        .await;
    seat?;
    if confirm_first {
        ctx.confirm().await?;
        let refused = ctx.compensate().await;
        return Ok(format!("compensating after confirming: {refused:?}"));
    }
    ctx.compensate().await?;
    ctx.log("compensated explicitly; nothing left for the close");
    Ok("done".to_string())
}

/// `ctx.confirm()` awaited at the top level, with code after it (it used to be dropped,
/// leaving the body without its value).
#[workflow]
async fn confirm_then_finish(ctx: WorkflowContext, trip: u32) -> Result<u32, WorkflowError> {
    let _seat: String = ctx
        .compensable(async { ctx.activity(flight, format!("hold {trip}")).await })
        .confirm(async {
            ctx.activity(flight, format!("keep {trip}")).await?;
            Ok(())
        })
        .await?;
    ctx.confirm().await?;
    ctx.log("confirmed explicitly");
    Ok(trip + 1)
}

/// A compensable block as the body's last expression: its value is the workflow's.
#[workflow]
async fn reserve_last(ctx: WorkflowContext, trip: u32) -> Result<String, WorkflowError> {
    ctx.log(format!("reserving {trip}"));
    ctx.compensable(async { ctx.activity(flight, format!("hold {trip}")).await })
        .confirm(async {
            ctx.activity(flight, format!("keep {trip}")).await?;
            Ok(())
        })
        .await
}

async fn engine_with(action: UnhandledErrorAction) -> Engine {
    Engine::builder()
        .in_memory()
        .register(book_trip)
        .register(two_blocks)
        .register(explicit)
        .register(confirm_then_finish)
        .register(reserve_last)
        .register(charge_then_fail)
        .activity(flight)
        .activity(refund)
        .unhandled_errors(action)
        .build()
        .await
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn scenario_21_r12_unhandled_error_with_cancel_action_compensates_then_cancels() {
    let e = engine_with(UnhandledErrorAction::Cancel).await;
    let out = run(&e, book_trip, "s21", true).await;
    assert!(matches!(out, Outcome::Canceled(_)), "{out:?}");
    assert_eq!(
        journal::lines("s21"),
        [
            "reserve LHR-JFK",
            "approve reserve LHR-JFK",
            "cancel LHR-JFK"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn scenario_22_r12_completion_confirms_the_completed_block() {
    let e = engine_with(UnhandledErrorAction::Fail).await;
    let value = completed(run(&e, book_trip, "s22", false).await);
    assert_eq!(value, "reserve LHR-JFK");
    assert_eq!(
        journal::lines("s22"),
        [
            "reserve LHR-JFK",
            "approve reserve LHR-JFK",
            "purchase LHR-JFK",
            "confirm LHR-JFK"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn r12_cancelling_the_workflow_compensates_on_a_disconnected_context() {
    let e = engine_with(UnhandledErrorAction::Fail).await;
    let c = e.client();
    let id = "r12-cancel";
    let run = c.start(book_trip, id, false).await.unwrap();
    assert!(journal::wait_for(id, "approve", Duration::from_secs(5)).await);
    c.cancel(id, "trip called off").await.unwrap();
    let out = run.outcome().await.unwrap();
    assert!(matches!(out, Outcome::Canceled(_)), "{out:?}");
    assert_eq!(
        journal::lines(id),
        [
            "reserve LHR-JFK",
            "approve reserve LHR-JFK",
            "cancel LHR-JFK"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn r12_compensation_runs_in_reverse_completion_order_when_the_workflow_fails() {
    let e = engine_with(UnhandledErrorAction::Fail).await;
    let out = run(&e, two_blocks, "r12-order", ()).await;
    assert!(matches!(out, Outcome::Failed(_)), "{out:?}");
    assert_eq!(
        journal::lines("r12-order"),
        ["book hotel", "book car", "release car", "release hotel"]
    );
    let h = e.client().history("r12-order").await.unwrap();
    assert_eq!(
        logs(&h),
        [
            "both booked; now failing",
            "compensating 2 completed block(s)"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn r12_explicit_compensation_runs_now_and_not_again_at_the_close() {
    let e = engine_with(UnhandledErrorAction::Fail).await;
    assert_eq!(
        completed(run(&e, explicit, "r12-explicit", false).await),
        "done"
    );
    assert_eq!(
        journal::lines("r12-explicit"),
        ["hold seat", "release seat"]
    );
}

#[tokio::test(start_paused = true)]
async fn r12_compensating_a_confirmed_block_is_an_error() {
    let e = engine_with(UnhandledErrorAction::Fail).await;
    let out = completed(run(&e, explicit, "r12-confirmed", true).await);
    assert!(out.contains("cannot be compensated"), "{out}");
    // Confirmed once, explicitly; not confirmed again at the close, never released.
    assert_eq!(journal::lines("r12-confirmed"), ["hold seat", "keep seat"]);
}

#[tokio::test(start_paused = true)]
async fn r12_code_after_an_explicit_confirm_runs_in_the_same_workflow() {
    let e = engine_with(UnhandledErrorAction::Fail).await;
    assert_eq!(
        completed(run(&e, confirm_then_finish, "r12-confirm-tail", 7).await),
        8
    );
    assert_eq!(journal::lines("r12-confirm-tail"), ["hold 7", "keep 7"]);
}

#[tokio::test(start_paused = true)]
async fn r12_a_compensable_block_can_be_the_workflows_last_expression() {
    let e = engine_with(UnhandledErrorAction::Fail).await;
    let out = completed(run(&e, reserve_last, "r12-tail", 3).await);
    assert_eq!(out, "hold 3");
    assert_eq!(journal::lines("r12-tail"), ["hold 3", "keep 3"]);
}

/// A compensation that fails is recorded on the workflow itself, not only as a line of its
/// history: `describe` (and `list`) show it after the workflow closed (issue 12.7).
#[tokio::test(start_paused = true)]
async fn r12_a_failed_compensation_is_recorded_on_the_workflow() {
    let e = engine_with(UnhandledErrorAction::Cancel).await;
    let c = e.client();
    let out = run(&e, charge_then_fail, "refund-refused", ()).await;
    assert!(out.is_canceled(), "{out:?}");
    let d = c.describe("refund-refused").await.unwrap();
    assert_eq!(d.handler_failures.len(), 1, "{d:?}");
    let failure = &d.handler_failures[0];
    assert!(
        failure.starts_with("compensation handler of compensable block #")
            && failure.contains("the bank refused to refund the card"),
        "{failure}"
    );
    assert!(
        d.to_string().contains(&format!("CLEANUP   {failure}")),
        "{d}"
    );
    let listed = c.list(None).await.unwrap();
    let row = listed.iter().find(|d| d.id == "refund-refused").unwrap();
    assert_eq!(&row.handler_failures, &d.handler_failures);
    // The outcome shows it too, and the history has it as a failure of the cleanup.
    let closed = c
        .handle(charge_then_fail, "refund-refused")
        .outcome_with_cleanup()
        .await
        .unwrap();
    assert!(closed.outcome.is_canceled());
    assert_eq!(&closed.cleanup_failures, &d.handler_failures);
    let history = c.history("refund-refused").await.unwrap();
    assert!(history
        .iter()
        .any(|e| matches!(&e.kind, EventKind::CleanupFailed { message } if message == failure)));
    // A workflow whose handlers all succeeded has none.
    let ok = run(&e, book_trip, "trip-ok", false).await;
    completed(ok);
    assert!(c
        .describe("trip-ok")
        .await
        .unwrap()
        .handler_failures
        .is_empty());
}
