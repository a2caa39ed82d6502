//! The seeds' Go cancellation sample, end to end.
//!
//! `YourWorkflow` starts `ActivityToBeCanceled` (it heartbeats every second; the workflow
//! waits for its cancellation to complete), then calls `ActivityToBeSkipped`. Once the first
//! activity is running, this program cancels the workflow by id, as the Go sample's
//! `cancel/main.go -wid` does. The cancellation handler (`on_cancel!`) then runs
//! `CleanupActivity` on a disconnected context, and the workflow completes.
//!
//! Run it with `cargo run --example cancellation`.

use durable_workflows::{go_sample, journal};
use std::time::{Duration, Instant};
use workflow_core::{Outcome, Workflow};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("The compiled state machine of `YourWorkflow`:\n");
    println!("{}", go_sample::your_workflow::graph());

    let engine = go_sample::engine().await?;
    let client = engine.client();
    let id = "your-workflow-1";
    journal::echo(true);
    let started = Instant::now();
    println!("Starting workflow {id}");
    let run = client.start(go_sample::your_workflow, id, ()).await?;

    // Wait until the long activity is running and has heartbeated once or twice.
    while journal::count(id, "ActivityToBeCanceled heartbeating") < 2 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("\nCancelling workflow {id} (as `cancel -wid {id}` does in the Go sample)");
    client.cancel(id, "").await?;
    println!(
        "Cancel recorded after {:.1?}; the workflow reacts at its next step.\n",
        started.elapsed()
    );
    println!("{}\n", client.describe(id).await?);

    let outcome = run.outcome().await?;
    println!("\nHistory of {id}:");
    for event in client.history(id).await? {
        println!("  {:>3}  {}", event.seq, event.kind);
    }
    let status = match &outcome {
        Outcome::Completed(()) => "Completed".to_string(),
        Outcome::Canceled(e) => format!("Canceled ({e})"),
        Outcome::Failed(e) => format!("Failed ({e})"),
        Outcome::Terminated(r) => format!("Terminated ({r})"),
    };
    println!(
        "\nCleanupActivity ran {} time(s); ActivityToBeSkipped ran {} time(s).",
        journal::count(id, "CleanupActivity ran"),
        journal::count(id, "ActivityToBeSkipped ran")
    );
    println!(
        "Workflow {id} finished in {:.1?}: {status}",
        started.elapsed()
    );
    engine.shutdown().await;
    Ok(())
}
