//! Cancellation scopes, after the TypeScript SDK's scope samples: cancel a timer from its
//! scope, clean up in a non-cancellable scope, put a timeout over several activities, notice
//! a cancel while shielded, nest scopes, and share an operation between scopes.
//!
//! Inside `ctx.cancellable(async { .. })` and its kin, `ctx` is the scope's context: what is
//! started there belongs to the scope. The program runs on tokio's paused clock, so the
//! minutes of timers below pass at once.
//!
//! Run it with `cargo run --example scopes`.

use std::time::Duration;
use workflow_core::prelude::*;
use workflow_core::{EventKind, Workflow};

/// Works for `secs` seconds, heartbeating; stops when cancelled.
#[activity]
async fn work(ctx: ActivityContext, secs: u64) -> Result<u64, ActivityError> {
    for _ in 0..secs {
        tokio::time::sleep(Duration::from_secs(1)).await;
        ctx.heartbeat(())?;
    }
    Ok(secs)
}

#[activity]
async fn clean_up(_ctx: ActivityContext, what: String) -> Result<String, ActivityError> {
    Ok(format!("cleaned up {what}"))
}

/// 1. Cancel a timer from inside its scope.
#[workflow]
async fn cancel_a_timer(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    let r: Result<(), WorkflowError> = ctx
        .cancellable(async {
            let timer = ctx.sleep(Duration::from_secs(60)).start();
            ctx.cancel_scope();
            timer.await
        })
        .await;
    match r {
        Err(e) if e.is_cancellation() => ctx.log("timer cancelled"),
        other => other?,
    }
    Ok(())
}

/// 2. When the workflow is cancelled, clean up in a non-cancellable scope, then rethrow.
#[workflow]
async fn non_cancellable_cleanup(ctx: WorkflowContext) -> Result<u64, WorkflowError> {
    match ctx.activity(work, 600).await {
        Ok(v) => Ok(v),
        Err(e) => {
            let done: Result<String, WorkflowError> = ctx
                .non_cancellable(async { ctx.activity(clean_up, "the order".to_string()).await })
                .await;
            ctx.log(format!("{} after: {e}", done?));
            Err(e)
        }
    }
}

/// 3. One timeout over several activities.
#[workflow]
async fn timeout_over_activities(ctx: WorkflowContext) -> Result<u64, WorkflowError> {
    let total: Result<u64, WorkflowError> = ctx
        .with_timeout(Duration::from_secs(5), async {
            let a = ctx.activity(work, 2).await?;
            let b = ctx.activity(work, 2).await?;
            let c = ctx.activity(work, 2).await?;
            Ok(a + b + c)
        })
        .await;
    if let Err(e) = &total {
        ctx.log(format!("gave up: {e}"));
    }
    total
}

/// 4. A shielded activity keeps running; the scope still sees the cancel request.
#[workflow]
async fn shielded(ctx: WorkflowContext) -> Result<u64, WorkflowError> {
    ctx.non_cancellable(async {
        let job = ctx.activity(work, 5).start();
        ctx.cancelled().await;
        ctx.log(format!(
            "cancel requested while shielded: {}; the activity keeps running",
            ctx.is_cancel_requested()
        ));
        job.await
    })
    .await
}

/// 5. Nested scopes: cancelling the inner one leaves the outer one running.
#[workflow]
async fn nested(ctx: WorkflowContext) -> Result<u64, WorkflowError> {
    ctx.cancellable(async {
        let inner: Result<u64, WorkflowError> = ctx
            .cancellable(async {
                let job = ctx.activity(work, 30).start();
                ctx.sleep(Duration::from_secs(1)).await?;
                ctx.cancel_scope();
                job.await
            })
            .await;
        ctx.log(format!(
            "inner scope ended with {inner:?}; the outer goes on"
        ));
        ctx.activity(work, 1).await
    })
    .await
}

/// 6. An operation started in the workflow's scope and awaited in a scope that cancels
/// itself is not cancelled: it belongs to the scope that started it.
#[workflow]
async fn shared_handle(ctx: WorkflowContext) -> Result<u64, WorkflowError> {
    let job = ctx.activity(work, 3).start();
    let seen: Result<u64, WorkflowError> = ctx
        .cancellable(async {
            ctx.cancel_scope();
            job.await
        })
        .await;
    ctx.log(format!(
        "awaited in a cancelled scope, the shared activity gave {seen:?}"
    ));
    seen
}

async fn run<W: Workflow>(
    engine: &Engine,
    wf: W,
    id: &str,
    input: W::Input,
    cancel_after: Option<u64>,
) where
    W::Output: std::fmt::Debug,
    W::Error: std::fmt::Debug,
{
    let client = engine.client();
    println!("\n== {id} ({})", W::NAME);
    let run = client.start(wf, id, input).await.expect("start");
    if let Some(secs) = cancel_after {
        tokio::time::sleep(Duration::from_secs(secs)).await;
        println!("   cancelling after {secs} s");
        client
            .cancel(id, "asked by the example")
            .await
            .expect("cancel");
    }
    let outcome = run.outcome().await.expect("outcome");
    for event in client.history(id).await.expect("history") {
        match &event.kind {
            EventKind::Log { message } => println!("   log: {message}"),
            EventKind::ActivityScheduled { .. }
            | EventKind::ActivityCancelRequested { .. }
            | EventKind::ActivityCompleted { .. }
            | EventKind::TimerStarted { .. }
            | EventKind::TimerFired { .. }
            | EventKind::TimerCancelled { .. }
            | EventKind::ScopeCancelled { .. }
            | EventKind::CancelRequested { .. } => println!("   {}", event.kind),
            _ => {}
        }
    }
    println!("   => {outcome:?}");
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::builder()
        .in_memory()
        .register(cancel_a_timer)
        .register(non_cancellable_cleanup)
        .register(timeout_over_activities)
        .register(shielded)
        .register(nested)
        .register(shared_handle)
        .activity(work)
        .activity(clean_up)
        .build()
        .await?;
    run(&engine, cancel_a_timer, "cancel-a-timer", (), None).await;
    run(
        &engine,
        non_cancellable_cleanup,
        "non-cancellable-cleanup",
        (),
        Some(3),
    )
    .await;
    run(
        &engine,
        timeout_over_activities,
        "timeout-over-activities",
        (),
        None,
    )
    .await;
    run(&engine, shielded, "shielded", (), Some(2)).await;
    run(&engine, nested, "nested", (), None).await;
    run(&engine, shared_handle, "shared-handle", (), None).await;
    engine.shutdown().await;
    Ok(())
}
