//! Parallel branches with a completion condition, after Windows Workflow Foundation's
//! `Parallel` sample: each branch runs as its own nested state machine; after a branch ends
//! the condition is checked, and once it holds the other branches are cancelled, running
//! their cancellation handlers.
//!
//! Run it with `cargo run --example parallel` (on tokio's paused clock: timers pass at once).

use std::time::Duration;
use workflow_core::prelude::*;
use workflow_core::{EventKind, Workflow};

#[activity]
async fn quote(_ctx: ActivityContext, carrier: String) -> Result<u64, ActivityError> {
    // Some carriers answer slower than others.
    let secs = carrier.len() as u64;
    tokio::time::sleep(Duration::from_secs(secs)).await;
    Ok(100 + secs)
}

/// WF's sample: branch 2 completes at once; the condition holds after any branch, so branch
/// 1 is cancelled and its handler runs.
#[workflow]
async fn any_branch(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    let outcome = ctx
        .parallel(
            |p| p.ended() >= 1,
            [
                async {
                    on_cancel!(|c| {
                        c.log("Branch 1 canceled.");
                    });
                    ctx.log("Branch 1 starting.");
                    ctx.sleep(Duration::from_secs(2)).await?;
                    ctx.log("Branch 1 complete.");
                    Ok(())
                },
                async {
                    ctx.log("Branch 2 complete.");
                    Ok(())
                },
            ],
        )
        .await?;
    ctx.log(format!("condition met: {}", outcome.condition_met));
    Ok(())
}

/// Ask three carriers for a quote and stop once two have answered.
#[workflow]
async fn two_quotes(ctx: WorkflowContext) -> Result<usize, WorkflowError> {
    let outcome = ctx
        .parallel(
            |p| p.completed >= 2,
            [
                async {
                    let q = ctx.activity(quote, "ups".to_string()).await?;
                    ctx.log(format!("ups quoted {q}"));
                    Ok(())
                },
                async {
                    let q = ctx.activity(quote, "dhl".to_string()).await?;
                    ctx.log(format!("dhl quoted {q}"));
                    Ok(())
                },
                async {
                    on_cancel!(|c| {
                        c.log("the slow carrier was not needed");
                    });
                    let q = ctx.activity(quote, "slowpost".to_string()).await?;
                    ctx.log(format!("slowpost quoted {q}"));
                    Ok(())
                },
            ],
        )
        .await?;
    Ok(outcome.results.iter().filter(|r| r.is_ok()).count())
}

async fn show<W: Workflow>(engine: &Engine, wf: W, id: &str)
where
    W::Input: Default,
    W::Output: std::fmt::Debug,
    W::Error: std::fmt::Debug,
{
    let client = engine.client();
    println!("\n== {id}");
    let outcome = client
        .start(wf, id, W::Input::default())
        .await
        .expect("start")
        .outcome()
        .await
        .expect("outcome");
    for event in client.history(id).await.expect("history") {
        match &event.kind {
            EventKind::Log { message } => println!("   {message}"),
            EventKind::ScopeCancelled { .. } | EventKind::ActivityCancelRequested { .. } => {
                println!("   ({})", event.kind)
            }
            _ => {}
        }
    }
    println!("   => {outcome:?}");
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::builder()
        .in_memory()
        .register(any_branch)
        .register(two_quotes)
        .activity(quote)
        .build()
        .await?;
    println!("Compiled states of `any_branch`:\n{}", any_branch::graph());
    show(&engine, any_branch, "any-branch").await;
    show(&engine, two_quotes, "two-quotes").await;
    engine.shutdown().await;
    Ok(())
}
