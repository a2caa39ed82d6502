//! Operations started without waiting (`.start()`), awaited later through their handles:
//! several activities run at the same time, handles are kept in the state like any local, and
//! a cancel gives every pending operation its cancel action in creation order (R1.3).

use durable_workflows::journal;
use std::time::Duration;
use workflow_core::prelude::*;
use workflow_core::{EventKind, OpId};

/// Takes `secs` seconds, writing when it starts and ends.
#[activity]
async fn slow_echo(ctx: ActivityContext, secs: u64) -> Result<u64, ActivityError> {
    let id = ctx.info().workflow_id.clone();
    journal::write(&id, format!("start {secs}"));
    for _ in 0..secs {
        tokio::time::sleep(Duration::from_secs(1)).await;
        ctx.heartbeat(())?;
    }
    journal::write(&id, format!("end {secs}"));
    Ok(secs)
}

#[workflow]
async fn fan_out(ctx: WorkflowContext, secs: (u64, u64)) -> Result<u64, WorkflowError> {
    let a = ctx.activity(slow_echo, secs.0).start();
    let b = ctx.activity(slow_echo, secs.1).start();
    // Awaiting the longer one first does not delay the other: both already run.
    let second = b.await?;
    let first = a.await?;
    Ok(first * 100 + second)
}

#[workflow]
async fn three_pending(ctx: WorkflowContext) -> Result<String, WorkflowError> {
    let timer = ctx.sleep(Duration::from_secs(3600)).start();
    let tried = ctx.activity(slow_echo, 50).start();
    let waited = ctx
        .activity(slow_echo, 3)
        .cancellation(ActivityCancellationType::WaitCancellationCompleted)
        .start();
    let w = waited.await;
    let t = timer.await;
    let r = tried.await;
    Ok(format!(
        "timer {}, try {}, wait {}",
        t.is_err(),
        r.is_err(),
        w.is_err()
    ))
}

#[workflow]
async fn joined(ctx: WorkflowContext) -> Result<String, WorkflowError> {
    let a = ctx.activity(slow_echo, 3).start();
    let t = ctx.sleep(Duration::from_secs(1)).start();
    let all = ctx.join((a, t)).await?;
    let a = all
        .get(a)
        .unwrap_or(Err(WorkflowError::application("missing")))?;
    let t = all
        .get(t)
        .unwrap_or(Err(WorkflowError::application("missing")));
    Ok(format!("activity {a}, timer {t:?}"))
}

async fn engine() -> Engine {
    Engine::builder()
        .in_memory()
        .register(fan_out)
        .register(three_pending)
        .register(joined)
        .activity(slow_echo)
        .build()
        .await
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn started_activities_run_at_the_same_time() {
    let e = engine().await;
    let id = "fan-out";
    let t0 = tokio::time::Instant::now();
    let out = e
        .client()
        .start(fan_out, id, (2, 5))
        .await
        .unwrap()
        .outcome()
        .await
        .unwrap();
    assert!(matches!(out, Outcome::Completed(205)), "{out:?}");
    // Both started before either ended, and the whole took the longer one's time.
    assert_eq!(&journal::lines(id)[..2], ["start 2", "start 5"]);
    assert!(t0.elapsed() < Duration::from_secs(6), "{:?}", t0.elapsed());
}

#[tokio::test(start_paused = true)]
async fn r1_3_cancel_reaches_every_pending_operation_in_creation_order() {
    let e = engine().await;
    let c = e.client();
    let id = "three-pending";
    let run = c.start(three_pending, id, ()).await.unwrap();
    assert!(journal::wait_for(id, "start 3", Duration::from_secs(5)).await);
    let d = c.describe(id).await.unwrap();
    assert_eq!(d.pending.len(), 3, "{d}");
    c.cancel(id, "stop").await.unwrap();
    let out = run.outcome().await.unwrap();
    // The waited activity accepted the cancel at a heartbeat; all three failed.
    assert!(
        matches!(&out, Outcome::Completed(s) if s == "timer true, try true, wait true"),
        "{out:?}"
    );

    let h = c.history(id).await.unwrap();
    let req = h
        .iter()
        .position(|e| matches!(e.kind, EventKind::CancelRequested { .. }))
        .unwrap();
    let actions: Vec<(OpId, &str)> = h[req + 1..]
        .iter()
        .take_while(|e| e.at_ms == h[req].at_ms)
        .filter_map(|e| match &e.kind {
            EventKind::TimerCancelled { op } => Some((*op, "timer cancelled")),
            EventKind::ActivityCancelRequested { op, .. } => Some((*op, "activity cancel sent")),
            _ => None,
        })
        .collect();
    assert_eq!(
        actions,
        [
            (OpId(1), "timer cancelled"),
            (OpId(2), "activity cancel sent"),
            (OpId(3), "activity cancel sent"),
        ]
    );
}

#[test]
fn handles_are_stored_as_plain_state() {
    use workflow_core::Workflow;
    let g = fan_out::graph();
    let await_b = g.states.iter().find(|s| s.name == "AwaitB").unwrap();
    assert_eq!(await_b.fields, ["a"]);
    assert_eq!(await_b.awaits, "operation started as `b`");
}

#[tokio::test(start_paused = true)]
async fn join_waits_for_every_operation_of_any_types() {
    let e = engine().await;
    let id = "joined";
    let t0 = tokio::time::Instant::now();
    let out = e
        .client()
        .start(joined, id, ())
        .await
        .unwrap()
        .outcome()
        .await
        .unwrap();
    assert!(
        matches!(&out, Outcome::Completed(s) if s == "activity 3, timer Ok(())"),
        "{out:?}"
    );
    assert!(t0.elapsed() >= Duration::from_secs(3));
}
