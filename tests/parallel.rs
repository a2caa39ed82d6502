//! Parallel branches (WF `Parallel`, `workflow-core/SEMANTICS.md` R11) and public scenario 19:
//! every branch runs as its own nested state machine in its own scope; after each branch ends the
//! completion condition is evaluated, and once it holds the others are cancelled (their handlers
//! run) and the block completes when all have ended.

use durable_workflows::journal;
use durable_workflows::testing::{completed, logs, run};
use std::sync::Arc;
use std::time::Duration;
use workflow_core::prelude::*;
use workflow_core::{MemoryStore, ParallelOutcome};

#[activity]
async fn step(ctx: ActivityContext, what: String) -> Result<String, ActivityError> {
    journal::write(&ctx.info().workflow_id, format!("step {what}"));
    Ok(what)
}

/// Scenario 19, after WF's sample.
#[workflow]
async fn wf_parallel(ctx: WorkflowContext) -> Result<bool, WorkflowError> {
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
                    ctx.log("Branch 1 ending.");
                    Ok(())
                },
                async {
                    ctx.log("Branch 2 complete.");
                    Ok(())
                },
            ],
        )
        .await?;
    Ok(outcome.condition_met)
}

/// All branches run to their end; each uses its own copy of an outer local.
#[workflow]
async fn all_branches(
    ctx: WorkflowContext,
    order: String,
) -> Result<ParallelOutcome, WorkflowError> {
    let prefix: String = format!("order {order}");
    let outcome = ctx
        .parallel(
            |p| p.all_ended(),
            [
                async {
                    let a = ctx.activity(step, format!("{prefix}: pack")).await?;
                    ctx.sleep(Duration::from_secs(5)).await?;
                    ctx.log(format!("packed ({a})"));
                    Ok(())
                },
                async {
                    ctx.sleep(Duration::from_secs(1)).await?;
                    let b = ctx.activity(step, format!("{prefix}: bill")).await?;
                    ctx.log(format!("billed ({b})"));
                    Ok(())
                },
                async { Err(WorkflowError::application("no gift wrap today")) },
            ],
        )
        .await?;
    ctx.log(format!("after the block: {}", prefix));
    Ok(outcome)
}

/// Branches of a block the workflow is cancelled in: all are cancelled, handlers run, and the
/// workflow then decides (here: completes).
#[workflow]
async fn cancelled_block(ctx: WorkflowContext) -> Result<usize, WorkflowError> {
    let outcome = ctx
        .parallel(
            |p| p.all_ended(),
            [
                async {
                    on_cancel!(|c| {
                        c.log("first undone");
                        let _ = c.activity(step, "undo first".to_string()).await;
                    });
                    ctx.sleep(Duration::from_secs(60)).await?;
                    Ok(())
                },
                async {
                    on_cancel!(|c| {
                        c.log("second undone");
                    });
                    ctx.sleep(Duration::from_secs(90)).await?;
                    Ok(())
                },
            ],
        )
        .await?;
    Ok(outcome.results.iter().filter(|r| r.is_err()).count())
}

async fn engine_on(store: Arc<MemoryStore>) -> Engine {
    Engine::builder()
        .register(wf_parallel)
        .register(all_branches)
        .register(cancelled_block)
        .activity(step)
        // Engines built on a store's bytes are the same worker restarted in place.
        .worker_id("parallel-tests")
        .store_arc(store)
        .build()
        .await
        .unwrap()
}

async fn engine() -> Engine {
    engine_on(Arc::new(MemoryStore::new())).await
}

#[tokio::test(start_paused = true)]
async fn scenario_19_r11_completion_condition_cancels_the_other_branch_its_handler_runs() {
    let e = engine().await;
    assert!(completed(run(&e, wf_parallel, "s19", ()).await));
    let h = e.client().history("s19").await.unwrap();
    assert_eq!(
        logs(&h),
        [
            "Branch 1 starting.",
            "Branch 2 complete.",
            "Branch 1 canceled."
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn r11_all_branches_run_in_parallel_with_their_own_copies_of_outer_locals() {
    let e = engine().await;
    let t0 = tokio::time::Instant::now();
    let outcome = completed(run(&e, all_branches, "all", "7".to_string()).await);
    assert!(
        t0.elapsed() < Duration::from_secs(7),
        "branches overlap: {:?}",
        t0.elapsed()
    );
    assert_eq!(outcome.results.len(), 3);
    assert!(outcome.results[0].is_ok() && outcome.results[1].is_ok());
    assert!(matches!(&outcome.results[2], Err(e) if e.to_string() == "no gift wrap today"));
    assert!(outcome.condition_met);
    let h = e.client().history("all").await.unwrap();
    assert_eq!(
        logs(&h),
        [
            "billed (order 7: bill)",
            "packed (order 7: pack)",
            "after the block: order 7"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn r11_r1_3_cancelling_the_workflow_cancels_every_branch_and_runs_their_handlers() {
    let e = engine().await;
    let c = e.client();
    let run = c
        .start(cancelled_block, "cancelled-block", ())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    c.cancel("cancelled-block", "").await.unwrap();
    let out = run.outcome().await.unwrap();
    assert!(matches!(out, Outcome::Completed(2)), "{out:?}");
    let h = c.history("cancelled-block").await.unwrap();
    let mut l = logs(&h);
    l.sort();
    assert_eq!(l, ["first undone", "second undone"]);
    assert_eq!(journal::count("cancelled-block", "step undo first"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_parallel_block_resumes_from_a_snapshot_with_its_branch_machines() {
    let id = "parallel-resume";
    let store = Arc::new(MemoryStore::new());
    let e = engine_on(store.clone()).await;
    e.client()
        .start(all_branches, id, "9".to_string())
        .await
        .unwrap();
    assert!(journal::wait_for(id, "step order 9: bill", Duration::from_secs(3)).await);
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let bytes = store.to_bytes();
    e.shutdown().await;
    let tables: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let machine = &tables["workflows"][id]["snapshot"]["machine"];
    assert!(machine["Parallel"]["branch_0"].is_object(), "{machine}");

    let e = engine_on(Arc::new(MemoryStore::from_bytes(&bytes).unwrap())).await;
    let outcome = e.client().handle(all_branches, id).outcome().await.unwrap();
    assert!(matches!(outcome, Outcome::Completed(_)), "{outcome:?}");
    assert_eq!(journal::count(id, "step order 9: pack"), 1);
    assert_eq!(journal::count(id, "step order 9: bill"), 1);
}

#[test]
fn the_graph_shows_the_parallel_state_and_its_way_out() {
    use workflow_core::Workflow;
    let g = wf_parallel::graph();
    let names: Vec<&str> = g.states.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["Start", "Parallel", "Finished"], "{g}");
    assert!(
        g.transitions
            .iter()
            .any(|t| t.from == "Parallel" && t.to == "Finished"),
        "{g}"
    );
}
