use serde::{Deserialize, Serialize};
use workflow_core::prelude::*;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Order {
    id: u32,
    amount: u64,
}

#[activity]
async fn reserve(_ctx: ActivityContext, amount: u64) -> Result<String, ActivityError> {
    Ok(format!("hold-{amount}"))
}

#[activity]
async fn capture(_ctx: ActivityContext, hold: String) -> Result<u64, ActivityError> {
    Ok(hold.len() as u64)
}

#[workflow]
async fn transfer(ctx: WorkflowContext, order: Order) -> Result<u64, WorkflowError> {
    let hold = ctx.activity(reserve, order.amount).await?;
    ctx.sleep(Duration::from_secs(60)).await?;
    let r = ctx.activity(capture, hold).await?;
    Ok(r + order.id as u64)
}

#[tokio::test(start_paused = true)]
async fn sequence_runs_to_completion() {
    let engine = Engine::builder()
        .in_memory()
        .register(transfer)
        .activity(reserve)
        .activity(capture)
        .build()
        .await
        .unwrap();
    let run = engine
        .client()
        .start(transfer, "t-1", Order { id: 7, amount: 42 })
        .await
        .unwrap();
    let outcome = run.outcome().await.unwrap();
    assert!(matches!(outcome, Outcome::Completed(14)), "{outcome:?}");
    println!("{}", <transfer as workflow_core::Workflow>::graph());
}
