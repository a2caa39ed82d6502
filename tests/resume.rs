//! Resumability: a workflow runs to its middle, its store is taken as bytes, the engine is
//! dropped, and a brand-new engine built from those bytes runs it to the end. Nothing that
//! completed runs again: there is no replay, the snapshot is the state. A step that leaves the
//! snapshot out because the engine holds the machine never decodes the left-out snapshot, even
//! when another step evicts that machine from the cache.

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

#[activity]
async fn echo_u64(_ctx: ActivityContext, x: u64) -> Result<u64, ActivityError> {
    Ok(x)
}

#[workflow]
async fn many_steps(ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    let mut total: u64 = 0;
    for i in 0..n {
        total += ctx.activity(echo_u64, i).await?;
    }
    Ok(total)
}

/// A step asks the store to leave the snapshot out when the engine holds the machine of the
/// stored version. Another workflow's step may evict that machine from the bounded cache at
/// any moment; a step that checked the cache and took the machine later would then decode
/// the left-out (null) snapshot and mark a healthy workflow stuck with a `CorruptSnapshot`.
/// Real threads are needed for an eviction to land between the two, so this runs on a
/// multi-threaded runtime with many more workflows than cached machines.
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn a_machine_evicted_by_another_step_is_never_decoded_from_a_left_out_snapshot() {
    const WORKFLOWS: u64 = 64;
    const STEPS: u64 = 300;
    let engine = Engine::builder()
        .in_memory()
        .cached_machines(8)
        .register(many_steps)
        .activity(echo_u64)
        .build()
        .await
        .unwrap();
    let client = engine.client();
    for i in 0..WORKFLOWS {
        client
            .start(many_steps, format!("evict-{i}"), STEPS)
            .await
            .unwrap();
    }
    let started = std::time::Instant::now();
    loop {
        let mut running = 0;
        for i in 0..WORKFLOWS {
            let d = client.describe(&format!("evict-{i}")).await.unwrap();
            assert!(d.stuck.is_none(), "evict-{i} is stuck: {:?}", d.stuck);
            if d.status == WorkflowStatus::Running {
                running += 1;
            } else {
                assert_eq!(d.result, Some(serde_json::json!(STEPS * (STEPS - 1) / 2)));
            }
        }
        if running == 0 {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "{running} workflows still running"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    engine.shutdown().await;
}
