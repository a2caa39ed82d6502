//! Resumability: a workflow runs to its middle, its store is taken as bytes, the engine is
//! dropped, and a brand-new engine built from those bytes runs it to the end. Nothing that
//! completed runs again: there is no replay, the snapshot is the state.

use durable_workflows::journal;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use workflow_core::prelude::*;
use workflow_core::{MemoryStore, Workflow};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Shipment {
    order: u32,
    items: Vec<String>,
}

#[activity]
async fn pack(ctx: ActivityContext, item: String) -> Result<String, ActivityError> {
    journal::write(&ctx.info().workflow_id, format!("pack {item}"));
    Ok(format!("box({item})"))
}

#[activity]
async fn ship(ctx: ActivityContext, boxes: Vec<String>) -> Result<String, ActivityError> {
    journal::write(&ctx.info().workflow_id, format!("ship {}", boxes.len()));
    Ok(format!("shipped {}", boxes.join("+")))
}

#[workflow]
async fn fulfil(ctx: WorkflowContext, s: Shipment) -> Result<String, WorkflowError> {
    let order: u32 = s.order;
    let items: Vec<String> = s.items;
    let mut boxes: Vec<String> = Vec::new();
    for item in items {
        boxes.push(ctx.activity(pack, item).await?);
        // A day between items: the workflow is parked on a durable timer.
        ctx.sleep(Duration::from_secs(86_400)).await?;
    }
    let receipt = ctx.activity(ship, boxes).await?;
    Ok(format!("order {order}: {receipt}"))
}

async fn engine_on(store: MemoryStore) -> Engine {
    Engine::builder()
        .register(fulfil)
        .activity(pack)
        .activity(ship)
        // The fresh engine is the same worker restarted in place: it takes the workflows
        // over at once instead of waiting for the dropped one's leases to expire.
        .worker_id("resume-tests")
        .store(store)
        .build()
        .await
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn snapshot_bytes_resume_in_a_fresh_engine_without_rerunning_completed_activities() {
    let id = "resume-fulfil";
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::builder()
        .register(fulfil)
        .activity(pack)
        .activity(ship)
        .worker_id("resume-tests")
        .store_arc(store.clone())
        .build()
        .await
        .unwrap();
    let input = Shipment {
        order: 7,
        items: vec!["a".into(), "b".into(), "c".into()],
    };
    engine.client().start(fulfil, id, input).await.unwrap();
    // Run to the middle: two items packed, parked on the second day's timer.
    assert!(journal::wait_for(id, "pack b", Duration::from_secs(100_000)).await);
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let d = engine.client().describe(id).await.unwrap();
    assert_eq!(d.state, "Sleep");
    let bytes = store.to_bytes();
    engine.shutdown().await;
    drop(engine);

    // The stored machine is a plain value of the generated enum.
    let tables: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let machine = tables["workflows"][id]["snapshot"]["machine"].clone();
    let state: <fulfil as Workflow>::State = serde_json::from_value(machine.clone()).unwrap();
    assert_eq!(serde_json::to_value(&state).unwrap(), machine);
    // Only what is live is stored: the boxes packed so far and the items still to pack.
    assert_eq!(
        machine["Sleep"]["boxes"],
        serde_json::json!(["box(a)", "box(b)"])
    );
    assert_eq!(machine["Sleep"]["iter0"], serde_json::json!(["c"]));
    assert_eq!(machine["Sleep"]["order"], 7);
    assert!(
        machine["Sleep"].get("s").is_none(),
        "the input is dead once split: {machine}"
    );

    let engine = engine_on(MemoryStore::from_bytes(&bytes).unwrap()).await;
    let run = engine.client().handle(fulfil, id);
    let out = run.outcome().await.unwrap();
    assert!(
        matches!(&out, Outcome::Completed(r) if r == "order 7: shipped box(a)+box(b)+box(c)"),
        "{out:?}"
    );
    assert_eq!(journal::lines(id), ["pack a", "pack b", "pack c", "ship 3"]);
}
