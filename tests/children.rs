//! Rule R7 of `workflow-core/SEMANTICS.md` (child workflows: the four cancellation types, parent
//! close policies, a child cancelled before it started), `ctx.cancel_external` (R1 from inside a
//! workflow), and public scenarios 14 (its child part) and 16. Every test runs on tokio's paused
//! clock.

use std::time::Duration;
use tokio::time::Instant;
use workflow_core::prelude::*;
use workflow_core::{ChildFailure, ClientError, EventKind, HistoryEvent};

const LONG: u64 = 3600;

// ----- child workflows --------------------------------------------------------------------

/// Sleeps `secs` seconds and returns them; a cancel ends the sleep with a cancellation error,
/// which it returns (so a cancelled sleeper closes Canceled).
#[workflow]
async fn sleeper(ctx: WorkflowContext, secs: u64) -> Result<u64, WorkflowError> {
    ctx.sleep(Duration::from_secs(secs)).await?;
    Ok(secs)
}

/// Sleeps; on cancel cleans up for 5 s on a disconnected context, then either returns `Ok(99)`
/// (`handle`) or rethrows the cancellation.
#[workflow]
async fn slow_to_cancel(ctx: WorkflowContext, handle: bool) -> Result<u64, WorkflowError> {
    let slept = ctx.sleep(Duration::from_secs(LONG)).await;
    if let Err(e) = slept {
        ctx.disconnected().sleep(Duration::from_secs(5)).await?;
        ctx.log("cleanup done");
        if handle {
            return Ok(99);
        }
        return Err(e);
    }
    Ok(0)
}

/// Fails at once.
#[workflow]
async fn failing(_ctx: WorkflowContext) -> Result<u64, WorkflowError> {
    Err(WorkflowError::application("boom"))
}

// ----- parents ----------------------------------------------------------------------------

/// Awaits a `slow_to_cancel` child with the given cancellation type and close policy, logs
/// what the call resolved with, and returns it.
#[workflow]
async fn awaits_child(
    ctx: WorkflowContext,
    plan: (ChildWorkflowCancellationType, ParentClosePolicy, bool),
) -> Result<u64, WorkflowError> {
    let child_id = format!("{}-child", ctx.workflow_id());
    let r = ctx
        .child(slow_to_cancel, child_id, plan.2)
        .cancellation(plan.0)
        .parent_close_policy(plan.1)
        .await;
    ctx.log(format!("child call resolved: {r:?}"));
    r
}

/// Awaits a `sleeper` child under the given id.
#[workflow]
async fn awaits_sleeper(ctx: WorkflowContext, child: (String, u64)) -> Result<u64, WorkflowError> {
    ctx.child(sleeper, child.0, child.1).await
}

/// Awaits a `failing` child.
#[workflow]
async fn awaits_failing(ctx: WorkflowContext) -> Result<u64, WorkflowError> {
    let id = format!("{}-child", ctx.workflow_id());
    ctx.child(failing, id, ()).await
}

/// Scenario 14's child part: waits for the cancel, then starts a child on the cancelled
/// context.
#[workflow]
async fn child_after_cancel(ctx: WorkflowContext) -> Result<String, WorkflowError> {
    ctx.cancelled().await;
    let id = format!("{}-child", ctx.workflow_id());
    let r = ctx.child(sleeper, id, 1).await;
    Ok(format!("child failed at once: {}", r.is_err()))
}

/// Starts a child and cancels its scope in the same step, before the child was started.
#[workflow]
async fn child_cancelled_in_same_step(ctx: WorkflowContext) -> Result<String, WorkflowError> {
    let r: Result<u64, WorkflowError> = ctx
        .cancellable(async {
            let id = format!("{}-child", ctx.workflow_id());
            let child = ctx.child(sleeper, id, 1).start();
            ctx.cancel_scope();
            child.await
        })
        .await;
    Ok(format!(
        "cancellation: {}",
        matches!(r, Err(e) if e.is_cancellation())
    ))
}

/// Starts a long child that it never awaits, then closes after 1 s.
#[workflow]
async fn leaves_child_running(
    ctx: WorkflowContext,
    policy: ParentClosePolicy,
) -> Result<(), WorkflowError> {
    let id = format!("{}-child", ctx.workflow_id());
    let _child = ctx
        .child(sleeper, id, LONG)
        .parent_close_policy(policy)
        .start();
    ctx.sleep(Duration::from_secs(1)).await?;
    Ok(())
}

/// Cancels another workflow.
#[workflow]
async fn canceller(ctx: WorkflowContext, target: String) -> Result<(), WorkflowError> {
    ctx.cancel_external(target, "by canceller").await
}

/// Sends a cancel to another workflow, then cancels the scope that sent it, in one step;
/// returns whether the call resolved with a cancellation.
#[workflow]
async fn sends_then_cancels(ctx: WorkflowContext, target: String) -> Result<bool, WorkflowError> {
    let sent: Result<(), WorkflowError> = ctx
        .cancellable(async {
            let request = ctx
                .cancel_external(target, "sent before its scope's cancel")
                .start();
            ctx.cancel_scope();
            request.await
        })
        .await;
    Ok(sent.is_err_and(|e| e.is_cancellation()))
}

// ----- helpers ----------------------------------------------------------------------------

async fn engine() -> Engine {
    Engine::builder()
        .in_memory()
        .register(sleeper)
        .register(slow_to_cancel)
        .register(failing)
        .register(awaits_child)
        .register(awaits_sleeper)
        .register(awaits_failing)
        .register(child_after_cancel)
        .register(child_cancelled_in_same_step)
        .register(leaves_child_running)
        .register(canceller)
        .register(sends_then_cancels)
        .build()
        .await
        .unwrap()
}

/// The history as short tags of the child-related events, for order checks.
fn tags(h: &[HistoryEvent]) -> Vec<String> {
    h.iter()
        .filter_map(|e| match &e.kind {
            EventKind::ChildStarted { .. } => Some("child started".into()),
            EventKind::ChildCompleted { .. } => Some("child completed".into()),
            EventKind::ChildFailed { failure, .. } => Some(format!("child {failure}")),
            EventKind::ChildCancelRequested { .. } => Some("cancel sent to child".into()),
            EventKind::ChildAbandoned { .. } => Some("child abandoned".into()),
            EventKind::ChildCancelRecorded { .. } => Some("child recorded cancel".into()),
            EventKind::OperationCancelled { .. } => Some("call cancelled".into()),
            EventKind::OperationSkipped { .. } => Some("skipped".into()),
            EventKind::CancelRequested { .. } => Some("cancel request".into()),
            EventKind::ParentClosePolicyApplied { policy, .. } => {
                Some(format!("close policy {policy:?}"))
            }
            EventKind::Log { .. } => Some("log".into()),
            _ => None,
        })
        .collect()
}

/// Waits (virtually) until workflow `id` exists and has stepped.
async fn wait_started(c: &Client, id: &str) {
    for _ in 0..1000 {
        if let Ok(d) = c.describe(id).await {
            if d.version > 0 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("workflow `{id}` never started");
}

fn status_of(d: Result<workflow_core::Description, ClientError>) -> Option<WorkflowStatus> {
    d.ok().map(|d| d.status)
}

/// Starts `awaits_child` with `plan`, cancels it once the child runs, and returns the
/// parent's outcome with the virtual time it took after the cancel.
async fn cancel_parent_of_child(
    c: &Client,
    id: &str,
    plan: (ChildWorkflowCancellationType, ParentClosePolicy, bool),
) -> (Outcome<u64, WorkflowError>, Duration) {
    let run = c.start(awaits_child, id, plan).await.unwrap();
    wait_started(c, &format!("{id}-child")).await;
    let t0 = Instant::now();
    c.cancel(id, "stop").await.unwrap();
    let out = run.outcome().await.unwrap();
    (out, t0.elapsed())
}

// ----- tests ------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn scenario_16_parent_cancelled_while_awaiting_a_child_both_are_canceled() {
    let e = engine().await;
    let c = e.client();
    let plan = (
        ChildWorkflowCancellationType::WaitCancellationCompleted,
        ParentClosePolicy::Terminate,
        false,
    );
    let (out, elapsed) = cancel_parent_of_child(&c, "s16", plan).await;
    assert!(
        matches!(
            &out,
            Outcome::Canceled(WorkflowError::Child {
                failure: ChildFailure::Canceled { .. },
                ..
            })
        ),
        "{out:?}"
    );
    assert!(
        elapsed >= Duration::from_secs(5),
        "waited for the child's cleanup"
    );
    let child = c.describe("s16-child").await.unwrap();
    assert_eq!(child.status, WorkflowStatus::Canceled);
    assert_eq!(child.cancel_reason.as_deref(), Some("stop"));
    let h = c.history("s16").await.unwrap();
    assert_eq!(
        tags(&h),
        [
            "child started",
            "cancel request",
            "cancel sent to child",
            "child recorded cancel",
            "child was canceled: cancelled: stop",
            "log"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn r7_wait_cancellation_completed_resolves_with_the_childs_own_outcome() {
    let e = engine().await;
    let c = e.client();
    let plan = (
        ChildWorkflowCancellationType::WaitCancellationCompleted,
        ParentClosePolicy::Terminate,
        true,
    );
    let (out, elapsed) = cancel_parent_of_child(&c, "wcc", plan).await;
    // The child handled the cancel and returned Ok: the parent gets its value and completes.
    assert!(matches!(out, Outcome::Completed(99)), "{out:?}");
    assert!(elapsed >= Duration::from_secs(5));
    let child = c.describe("wcc-child").await.unwrap();
    assert_eq!(child.status, WorkflowStatus::Completed);
}

#[tokio::test(start_paused = true)]
async fn r7_wait_cancellation_requested_resolves_once_the_child_recorded_the_request() {
    let e = engine().await;
    let c = e.client();
    let plan = (
        ChildWorkflowCancellationType::WaitCancellationRequested,
        ParentClosePolicy::Abandon,
        false,
    );
    let (out, elapsed) = cancel_parent_of_child(&c, "wcr", plan).await;
    assert!(
        matches!(&out, Outcome::Canceled(WorkflowError::Cancelled { reason }) if reason == "stop"),
        "{out:?}"
    );
    assert!(
        elapsed < Duration::from_secs(1),
        "did not wait for the cleanup"
    );
    let h = c.history("wcr").await.unwrap();
    assert_eq!(
        tags(&h),
        [
            "child started",
            "cancel request",
            "cancel sent to child",
            "child recorded cancel",
            "log",
            "close policy Abandon"
        ]
    );
    // The child got the request and finishes its cleanup on its own.
    let child = c.handle(slow_to_cancel, "wcr-child");
    assert_eq!(
        child.describe().await.unwrap().cancel_reason.as_deref(),
        Some("stop")
    );
    assert!(matches!(
        child.outcome().await.unwrap(),
        Outcome::Canceled(_)
    ));
}

#[tokio::test(start_paused = true)]
async fn r7_try_cancel_sends_the_cancel_and_resolves_at_once() {
    let e = engine().await;
    let c = e.client();
    let plan = (
        ChildWorkflowCancellationType::TryCancel,
        ParentClosePolicy::Abandon,
        false,
    );
    let (out, elapsed) = cancel_parent_of_child(&c, "try", plan).await;
    assert!(
        matches!(&out, Outcome::Canceled(WorkflowError::Cancelled { .. })),
        "{out:?}"
    );
    assert!(elapsed < Duration::from_secs(1));
    // Resolved in the step that sent the cancel: the parent closed before the child could
    // even record it.
    let h = c.history("try").await.unwrap();
    assert_eq!(
        tags(&h),
        [
            "child started",
            "cancel request",
            "cancel sent to child",
            "call cancelled",
            "log",
            "close policy Abandon"
        ]
    );
    let child = c.handle(slow_to_cancel, "try-child");
    assert!(matches!(
        child.outcome().await.unwrap(),
        Outcome::Canceled(_)
    ));
    let child_history = child.history().await.unwrap();
    assert!(child_history
        .iter()
        .any(|e| matches!(&e.kind, EventKind::Log { message } if message == "cleanup done")));
}

#[tokio::test(start_paused = true)]
async fn r7_abandon_never_tells_the_child_and_resolves_at_once() {
    let e = engine().await;
    let c = e.client();
    let plan = (
        ChildWorkflowCancellationType::Abandon,
        ParentClosePolicy::Abandon,
        false,
    );
    let (out, elapsed) = cancel_parent_of_child(&c, "abandon", plan).await;
    assert!(
        matches!(&out, Outcome::Canceled(WorkflowError::Cancelled { .. })),
        "{out:?}"
    );
    assert!(elapsed < Duration::from_secs(1));
    let h = c.history("abandon").await.unwrap();
    assert_eq!(
        tags(&h),
        [
            "child started",
            "cancel request",
            "child abandoned",
            "log",
            "close policy Abandon"
        ]
    );
    let child = c.describe("abandon-child").await.unwrap();
    assert_eq!(child.status, WorkflowStatus::Running);
    assert_eq!(child.cancel_reason, None, "never told");
}

#[tokio::test(start_paused = true)]
async fn r7_a_child_that_completes_gives_the_parent_its_value() {
    let e = engine().await;
    let c = e.client();
    let run = c
        .start(awaits_sleeper, "ok", ("ok-child".to_string(), 2))
        .await
        .unwrap();
    assert!(matches!(
        run.outcome().await.unwrap(),
        Outcome::Completed(2)
    ));
    let child = c.describe("ok-child").await.unwrap();
    assert_eq!(child.status, WorkflowStatus::Completed);
    let h = c.history("ok").await.unwrap();
    assert_eq!(tags(&h), ["child started", "child completed"]);
    let shown: Vec<String> = h.iter().map(|e| e.kind.to_string()).collect();
    assert!(
        shown
            .iter()
            .any(|s| s.contains("child workflow `sleeper` started as `ok-child`")),
        "{shown:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn r7_a_child_that_fails_gives_the_parent_its_error_and_it_is_no_cancellation() {
    let e = engine().await;
    let c = e.client();
    let out = c
        .start(awaits_failing, "fail", ())
        .await
        .unwrap()
        .outcome()
        .await
        .unwrap();
    match &out {
        Outcome::Failed(
            err @ WorkflowError::Child {
                workflow,
                id,
                failure,
            },
        ) => {
            assert_eq!((workflow.as_str(), id.as_str()), ("failing", "fail-child"));
            assert_eq!(
                failure,
                &ChildFailure::Failed {
                    message: "boom".into()
                }
            );
            assert!(!err.is_cancellation());
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn r7_a_terminated_child_resolves_the_call_with_terminated() {
    let e = engine().await;
    let c = e.client();
    let run = c
        .start(awaits_sleeper, "term", ("term-child".to_string(), LONG))
        .await
        .unwrap();
    wait_started(&c, "term-child").await;
    c.terminate("term-child", "operator").await.unwrap();
    let out = run.outcome().await.unwrap();
    assert!(
        matches!(
            &out,
            Outcome::Failed(WorkflowError::Child {
                failure: ChildFailure::Terminated { reason },
                ..
            }) if reason == "operator"
        ),
        "{out:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn scenario_14_r9_a_child_started_on_a_cancelled_context_never_starts() {
    let e = engine().await;
    let c = e.client();
    let run = c.start(child_after_cancel, "s14", ()).await.unwrap();
    wait_started(&c, "s14").await;
    c.cancel("s14", "").await.unwrap();
    let out = run.outcome().await.unwrap();
    assert!(
        matches!(&out, Outcome::Completed(s) if s == "child failed at once: true"),
        "{out:?}"
    );
    assert!(matches!(
        c.describe("s14-child").await,
        Err(ClientError::NotFound(_))
    ));
    assert_eq!(
        tags(&c.history("s14").await.unwrap()),
        ["cancel request", "skipped"]
    );
}

#[tokio::test(start_paused = true)]
async fn r7_a_child_cancelled_before_it_started_never_starts() {
    let e = engine().await;
    let c = e.client();
    let out = c
        .start(child_cancelled_in_same_step, "early", ())
        .await
        .unwrap()
        .outcome()
        .await
        .unwrap();
    assert!(
        matches!(&out, Outcome::Completed(s) if s == "cancellation: true"),
        "{out:?}"
    );
    assert!(matches!(
        c.describe("early-child").await,
        Err(ClientError::NotFound(_))
    ));
}

async fn close_with_running_child(id: &str, policy: ParentClosePolicy) -> Client {
    let e = engine().await;
    let c = e.client();
    let out = c
        .start(leaves_child_running, id, policy)
        .await
        .unwrap()
        .outcome()
        .await
        .unwrap();
    assert!(matches!(out, Outcome::Completed(())), "{out:?}");
    let h = c.history(id).await.unwrap();
    assert_eq!(
        tags(&h),
        ["child started", format!("close policy {policy:?}").as_str()]
    );
    c
}

#[tokio::test(start_paused = true)]
async fn r7_parent_close_policy_terminate_terminates_a_running_child() {
    let c = close_with_running_child("pcp-t", ParentClosePolicy::Terminate).await;
    let child = c.handle(sleeper, "pcp-t-child");
    let out = child.outcome().await.unwrap();
    assert!(
        matches!(&out, Outcome::Terminated(reason) if reason == "the parent workflow closed"),
        "{out:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn r7_parent_close_policy_request_cancel_cancels_a_running_child() {
    let c = close_with_running_child("pcp-c", ParentClosePolicy::RequestCancel).await;
    let child = c.handle(sleeper, "pcp-c-child");
    let out = child.outcome().await.unwrap();
    assert!(matches!(&out, Outcome::Canceled(_)), "{out:?}");
    assert_eq!(
        child.describe().await.unwrap().cancel_reason.as_deref(),
        Some("the parent workflow closed")
    );
}

#[tokio::test(start_paused = true)]
async fn r7_parent_close_policy_abandon_leaves_a_running_child_alone() {
    let c = close_with_running_child("pcp-a", ParentClosePolicy::Abandon).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    let d = c.describe("pcp-a-child").await.unwrap();
    assert_eq!((d.status, d.cancel_reason), (WorkflowStatus::Running, None));
    let out = c.handle(sleeper, "pcp-a-child").outcome().await.unwrap();
    assert!(matches!(out, Outcome::Completed(LONG)), "{out:?}");
}

#[tokio::test(start_paused = true)]
async fn r7_terminating_a_parent_applies_the_close_policy_to_its_children() {
    let e = engine().await;
    let c = e.client();
    c.start(awaits_sleeper, "tp", ("tp-child".to_string(), LONG))
        .await
        .unwrap();
    wait_started(&c, "tp-child").await;
    c.terminate("tp", "operator").await.unwrap();
    let out = c.handle(sleeper, "tp-child").outcome().await.unwrap();
    assert!(matches!(out, Outcome::Terminated(_)), "{out:?}");
}

#[tokio::test(start_paused = true)]
async fn r7_a_child_id_already_in_use_fails_the_start() {
    let e = engine().await;
    let c = e.client();
    c.start(sleeper, "taken", LONG).await.unwrap();
    let out = c
        .start(awaits_sleeper, "dup", ("taken".to_string(), 1))
        .await
        .unwrap()
        .outcome()
        .await
        .unwrap();
    assert!(
        matches!(
            &out,
            Outcome::Failed(WorkflowError::Child {
                failure: ChildFailure::StartFailed { message },
                ..
            }) if message.contains("already exists")
        ),
        "{out:?}"
    );
    // The workflow that held the id is untouched.
    assert_eq!(
        status_of(c.describe("taken").await),
        Some(WorkflowStatus::Running)
    );
}

#[tokio::test(start_paused = true)]
async fn r7_an_unregistered_child_workflow_fails_the_start() {
    let e = Engine::builder()
        .in_memory()
        .register(awaits_sleeper)
        .build()
        .await
        .unwrap();
    let out = e
        .client()
        .start(awaits_sleeper, "unreg", ("unreg-child".to_string(), 1))
        .await
        .unwrap()
        .outcome()
        .await
        .unwrap();
    assert!(
        matches!(
            &out,
            Outcome::Failed(WorkflowError::Child {
                failure: ChildFailure::StartFailed { message },
                ..
            }) if message.contains("not registered")
        ),
        "{out:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn r1_cancel_external_cancels_a_running_workflow() {
    let e = engine().await;
    let c = e.client();
    let victim = c.start(sleeper, "victim", LONG).await.unwrap();
    wait_started(&c, "victim").await;
    let out = c
        .start(canceller, "canceller", "victim".to_string())
        .await
        .unwrap()
        .outcome()
        .await
        .unwrap();
    assert!(matches!(out, Outcome::Completed(())), "{out:?}");
    assert!(matches!(
        victim.outcome().await.unwrap(),
        Outcome::Canceled(_)
    ));
    assert_eq!(
        victim.describe().await.unwrap().cancel_reason.as_deref(),
        Some("by canceller")
    );
}

/// A cancel request sent to another workflow stays sent: cancelling the scope that sent it
/// resolves the call, but does not retract the request (issue 12.2).
#[tokio::test(start_paused = true)]
async fn r1_a_cancel_sent_to_another_workflow_stays_sent_when_its_scope_is_cancelled() {
    let e = engine().await;
    let c = e.client();
    let victim = c.start(sleeper, "victim-2", LONG).await.unwrap();
    wait_started(&c, "victim-2").await;
    let out = c
        .start(sends_then_cancels, "sender", "victim-2".to_string())
        .await
        .unwrap()
        .outcome()
        .await
        .unwrap();
    assert!(matches!(out, Outcome::Completed(true)), "{out:?}");
    assert!(matches!(
        victim.outcome().await.unwrap(),
        Outcome::Canceled(_)
    ));
    assert_eq!(
        victim.describe().await.unwrap().cancel_reason.as_deref(),
        Some("sent before its scope's cancel")
    );
}

#[tokio::test(start_paused = true)]
async fn r1_2_cancel_external_of_an_unknown_or_closed_workflow_is_an_error() {
    let e = engine().await;
    let c = e.client();
    let out = c
        .start(canceller, "c1", "nobody".to_string())
        .await
        .unwrap()
        .outcome()
        .await
        .unwrap();
    assert!(
        matches!(&out, Outcome::Failed(WorkflowError::ExternalCancel { id, .. }) if id == "nobody"),
        "{out:?}"
    );
    let done = c.start(sleeper, "done", 0).await.unwrap();
    assert!(matches!(
        done.outcome().await.unwrap(),
        Outcome::Completed(0)
    ));
    let out = c
        .start(canceller, "c2", "done".to_string())
        .await
        .unwrap()
        .outcome()
        .await
        .unwrap();
    assert!(
        matches!(&out, Outcome::Failed(WorkflowError::ExternalCancel { message, .. }) if message.contains("already closed")),
        "{out:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn r7_describe_says_what_a_child_call_waits_for() {
    let e = engine().await;
    let c = e.client();
    c.start(awaits_sleeper, "desc", ("desc-child".to_string(), LONG))
        .await
        .unwrap();
    wait_started(&c, "desc-child").await;
    let d = c.describe("desc").await.unwrap();
    assert_eq!(d.pending.len(), 1);
    assert_eq!(
        d.pending[0].waiting_for,
        "child workflow `sleeper` (id `desc-child`) to close"
    );
}
