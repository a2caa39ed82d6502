//! Compensation, after Windows Workflow Foundation's `CompensableActivity` flight sample: the
//! flight reservation is a compensable block with a compensation (cancel the flight) and a
//! confirmation (confirm it). If the workflow completes, the confirmation runs; if it fails or
//! is cancelled, the compensation runs — on a fresh disconnected context, after the
//! workflow's code has returned, in reverse order of completion for several blocks.
//!
//! Run it with `cargo run --example compensation` (on tokio's paused clock).

use std::time::Duration;
use workflow_core::prelude::*;
use workflow_core::{EventKind, UnhandledErrorAction};

#[activity]
async fn airline(_ctx: ActivityContext, request: String) -> Result<String, ActivityError> {
    println!("   [airline] {request}");
    if request.starts_with("approval") {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    Ok(format!("{request}: ok"))
}

/// ReserveFlight (compensable), ManagerApproval, PurchaseFlight. `fail_purchase` makes the
/// purchase fail with an error nobody handles.
#[workflow]
async fn book_flight(ctx: WorkflowContext, fail_purchase: bool) -> Result<String, WorkflowError> {
    let trip: String = "LHR-JFK, 24 Nov".to_string();
    let reservation: Result<String, WorkflowError> = ctx
        .compensable(async { ctx.activity(airline, format!("reserve {trip}")).await })
        .compensate(async {
            ctx.activity(airline, format!("cancel {trip}")).await?;
            Ok(())
        })
        .confirm(async {
            ctx.activity(airline, format!("confirm {trip}")).await?;
            Ok(())
        })
        .await;
    let reservation = reservation?;
    ctx.activity(airline, format!("approval for {reservation}"))
        .await?;
    if fail_purchase {
        return Err(WorkflowError::application("the card was declined"));
    }
    ctx.activity(airline, format!("purchase {trip}")).await
}

async fn show(engine: &Engine, id: &str, fail_purchase: bool, cancel_after: Option<u64>) {
    let client = engine.client();
    println!("\n== {id}");
    let run = client
        .start(book_flight, id, fail_purchase)
        .await
        .expect("start");
    if let Some(secs) = cancel_after {
        tokio::time::sleep(Duration::from_secs(secs)).await;
        println!("   cancelling after {secs} s");
        client.cancel(id, "the trip is off").await.expect("cancel");
    }
    let outcome = run.outcome().await.expect("outcome");
    for event in client.history(id).await.expect("history") {
        if let EventKind::Log { message } = &event.kind {
            println!("   log: {message}");
        }
    }
    println!("   => {outcome:?}");
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::builder()
        .in_memory()
        .register(book_flight)
        .activity(airline)
        .unhandled_errors(UnhandledErrorAction::Cancel)
        .build()
        .await?;
    println!("Completes: the confirmation runs.");
    show(&engine, "trip-ok", false, None).await;
    println!("\nThe purchase fails, unhandled (engine set to cancel on unhandled errors): the compensation runs.");
    show(&engine, "trip-declined", true, None).await;
    println!("\nCancelled during the approval: the compensation runs.");
    show(&engine, "trip-cancelled", false, Some(1)).await;
    engine.shutdown().await;
    Ok(())
}
