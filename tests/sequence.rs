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

/// Past the machine cache's limit, workflows are decoded from their stored snapshots at
/// their next step; with no cache at all, at every step. Either way they complete the same.
#[tokio::test(start_paused = true)]
async fn workflows_beyond_the_machine_cache_resume_from_their_snapshots() {
    for limit in [0, 1, 3] {
        let engine = Engine::builder()
            .in_memory()
            .cached_machines(limit)
            .register(transfer)
            .activity(reserve)
            .activity(capture)
            .build()
            .await
            .unwrap();
        let client = engine.client();
        let mut runs = Vec::new();
        for i in 0..8u32 {
            let order = Order {
                id: i,
                amount: 40 + u64::from(i),
            };
            let run = client.start(transfer, format!("t-{limit}-{i}"), order);
            runs.push(run.await.unwrap());
        }
        for (i, run) in runs.into_iter().enumerate() {
            // "hold-4x" has 7 characters, plus the id.
            match run.outcome().await.unwrap() {
                Outcome::Completed(n) => assert_eq!(n, 7 + i as u64, "limit {limit}"),
                other => panic!("limit {limit}: {other:?}"),
            }
        }
        engine.shutdown().await;
    }
}
