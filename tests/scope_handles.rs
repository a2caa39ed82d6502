//! Scopes as values (`workflow-core/SEMANTICS.md` R3.7): `ctx.cancellable(async { .. }).start()`
//! and its kin start a scope whose block runs beside the code that started it; the
//! `ScopeHandle` is awaited, raced or joined later, and cancels the scope from outside.

use durable_workflows::journal;
use durable_workflows::testing::logs;
use std::time::Duration;
use workflow_core::prelude::*;
use workflow_core::{EventKind, SqliteStore};

/// Heartbeats every second for `secs` seconds; accepts a cancel.
#[activity]
async fn slow(ctx: ActivityContext, secs: u64) -> Result<u64, ActivityError> {
    let id = ctx.info().workflow_id.clone();
    journal::write(&id, format!("slow {secs} started"));
    for _ in 0..secs {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Err(e) = ctx.heartbeat(()) {
            journal::write(&id, format!("slow {secs} cancelled"));
            return Err(e);
        }
    }
    journal::write(&id, format!("slow {secs} done"));
    Ok(secs)
}

#[activity]
async fn note(ctx: ActivityContext, what: String) -> Result<String, ActivityError> {
    journal::write(&ctx.info().workflow_id, format!("note {what}"));
    Ok(what)
}

#[activity]
async fn broken(_ctx: ActivityContext, secs: u64) -> Result<u64, ActivityError> {
    tokio::time::sleep(Duration::from_secs(secs)).await;
    Err(ActivityError::non_retryable("the card was declined"))
}

#[workflow]
async fn beside(ctx: WorkflowContext, n: u64) -> Result<String, WorkflowError> {
    let doubled: ScopeHandle<u64> = ctx
        .cancellable(async {
            let x = ctx.activity(slow, n).await?;
            Ok(x * 2)
        })
        .start();
    let mine = ctx.activity(slow, 1).await?;
    let theirs = doubled.await?;
    Ok(format!("{mine} {theirs}"))
}

#[workflow]
async fn fail_fast(ctx: WorkflowContext) -> Result<String, WorkflowError> {
    let sequence: ScopeHandle<u64> = ctx
        .cancellable(async {
            let a = ctx.activity(slow, 30).await?;
            let b = ctx.activity(slow, 31).await?;
            Ok(a + b)
        })
        .start();
    let payment: ScopeHandle<u64> = ctx
        .cancellable(async { ctx.activity(broken, 2).await })
        .start();
    let audit: ScopeHandle<String> = ctx
        .non_cancellable(async {
            ctx.activity(slow, 5).await?;
            ctx.activity(note, "audited".to_string()).await
        })
        .start();
    let first = ctx.race((sequence, payment)).await?;
    if let Some(Err(failure)) = first.get(payment) {
        let failure: WorkflowError = failure;
        sequence.cancel(ctx);
        let stopped = sequence.await;
        let audited = audit.await?;
        ctx.log(format!(
            "sequence cancelled: {}; {audited}",
            stopped.is_err_and(|e| e.is_cancellation())
        ));
        return Err(failure);
    }
    Ok("paid".to_string())
}

#[workflow]
async fn cancel_through_handle(ctx: WorkflowContext) -> Result<u64, WorkflowError> {
    let block: ScopeHandle<u64> = ctx
        .cancellable(async {
            on_cancel!(|cleanup| {
                cleanup.log("block handler ran");
            });
            ctx.activity(slow, 100).await
        })
        .start();
    ctx.sleep(Duration::from_secs(3)).await?;
    block.cancel(ctx);
    let r = block.await;
    ctx.log(format!(
        "block cancelled: {}",
        r.is_err_and(|e| e.is_cancellation())
    ));
    // The code that started the scope is not cancelled with it (R3.4).
    ctx.activity(slow, 1).await
}

#[workflow]
async fn cancel_reaches(ctx: WorkflowContext) -> Result<u64, WorkflowError> {
    let work: ScopeHandle<u64> = ctx
        .cancellable(async { ctx.activity(slow, 100).await })
        .start();
    let shield: ScopeHandle<u64> = ctx
        .non_cancellable(async {
            ctx.cancelled().await;
            ctx.activity(slow, 5).await
        })
        .start();
    let w = work.await;
    let s = shield.await?;
    ctx.log(format!(
        "work cancelled: {}, shield gave {s}",
        w.as_ref().is_err_and(|e| e.is_cancellation())
    ));
    w
}

#[workflow]
async fn started_timeout(ctx: WorkflowContext) -> Result<String, WorkflowError> {
    let lookup: ScopeHandle<u64> = ctx
        .with_timeout(Duration::from_secs(2), async {
            ctx.activity(slow, 60).await
        })
        .start();
    match lookup.await {
        Ok(v) => Ok(format!("got {v}")),
        Err(e) if e.is_cancellation() => Ok("timed out".to_string()),
        Err(e) => Err(e),
    }
}

#[workflow]
async fn joined(ctx: WorkflowContext, word: String) -> Result<String, WorkflowError> {
    let a: ScopeHandle<u64> = ctx
        .cancellable(async { ctx.activity(slow, 2).await })
        .start();
    // The block uses its own copy of `word`; the code goes on using the original.
    let b: ScopeHandle<String> = ctx
        .cancellable(async { ctx.activity(note, word.clone()).await })
        .start();
    let at_once: ScopeHandle<usize> = ctx.cancellable(async { Ok(word.len()) }).start();
    let op = ctx.activity(slow, 1).start();
    let all = ctx.join((a, b, op)).await?;
    let a: u64 = all.get(a).unwrap()?;
    let b: String = all.get(b).unwrap()?;
    let op: u64 = all.get(op).unwrap()?;
    let len = at_once.await?;
    Ok(format!("{a} {b} {op} {len} {word}"))
}

#[workflow]
async fn leaves_a_block(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    let _left: ScopeHandle<u64> = ctx
        .cancellable(async { ctx.activity(slow, 100).await })
        .start();
    ctx.activity(slow, 1).await?;
    Ok(())
}

#[workflow]
async fn parked_block(ctx: WorkflowContext, word: String) -> Result<String, WorkflowError> {
    let later: ScopeHandle<String> = ctx
        .cancellable(async {
            ctx.sleep(Duration::from_secs(3600)).await?;
            ctx.activity(note, word.clone()).await
        })
        .start();
    let got = later.await?;
    Ok(format!("{got} after an hour"))
}

async fn engine() -> Engine {
    Engine::builder()
        .in_memory()
        .register(beside)
        .register(fail_fast)
        .register(cancel_through_handle)
        .register(cancel_reaches)
        .register(started_timeout)
        .register(joined)
        .register(leaves_a_block)
        .register(parked_block)
        .activity(slow)
        .activity(note)
        .activity(broken)
        .build()
        .await
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn r3_7_a_started_scope_runs_beside_the_code_and_its_handle_gives_the_blocks_value() {
    let e = engine().await;
    let id = "beside";
    let out = e.client().start(beside, id, 3).await.unwrap();
    assert_eq!(
        out.outcome().await.unwrap(),
        Outcome::Completed("1 6".to_string())
    );
    let lines = journal::lines(id);
    let pos = |l: &str| lines.iter().position(|x| x == l).unwrap();
    assert!(
        pos("slow 3 started") < pos("slow 1 done") && pos("slow 1 started") < pos("slow 3 done"),
        "the block and the code ran side by side: {lines:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn r3_7_side_by_side_sequences_fail_fast_and_the_shielded_one_finishes() {
    let e = engine().await;
    let c = e.client();
    let id = "fail-fast";
    let out = c
        .start(fail_fast, id, ())
        .await
        .unwrap()
        .outcome()
        .await
        .unwrap();
    assert!(
        matches!(&out, Outcome::Failed(err) if err.to_string().contains("declined")),
        "{out:?}"
    );
    let h = c.history(id).await.unwrap();
    assert_eq!(logs(&h), ["sequence cancelled: true; audited"]);
    assert_eq!(journal::count(id, "slow 30 cancelled"), 1);
    assert_eq!(journal::count(id, "slow 31"), 0, "the sequence stopped");
    assert_eq!(journal::count(id, "slow 5 done"), 1, "the shield ran on");
}

#[tokio::test(start_paused = true)]
async fn r3_7_r3_4_cancel_through_the_handle_runs_the_blocks_handler_and_spares_the_starter() {
    let e = engine().await;
    let c = e.client();
    let id = "through-handle";
    let out = c
        .start(cancel_through_handle, id, ())
        .await
        .unwrap()
        .outcome()
        .await
        .unwrap();
    assert_eq!(out, Outcome::Completed(1));
    let h = c.history(id).await.unwrap();
    assert_eq!(logs(&h), ["block handler ran", "block cancelled: true"]);
    assert_eq!(journal::count(id, "slow 100 cancelled"), 1);
    assert!(h.iter().any(|e| matches!(
        &e.kind,
        EventKind::ScopeCancelled { reason, .. } if reason == "cancelled through its handle"
    )));
}

#[tokio::test(start_paused = true)]
async fn r3_7_r3_2_r3_3_a_workflow_cancel_reaches_started_scopes_but_not_started_shields() {
    let e = engine().await;
    let c = e.client();
    let id = "cancel-reaches";
    let run = c.start(cancel_reaches, id, ()).await.unwrap();
    assert!(journal::wait_for(id, "slow 100 started", Duration::from_secs(5)).await);
    c.cancel(id, "customer left").await.unwrap();
    let out = run.outcome().await.unwrap();
    assert!(matches!(out, Outcome::Canceled(_)), "{out:?}");
    let h = c.history(id).await.unwrap();
    assert_eq!(logs(&h), ["work cancelled: true, shield gave 5"]);
    assert_eq!(journal::count(id, "slow 100 cancelled"), 1);
    assert_eq!(journal::count(id, "slow 5 done"), 1);
}

#[tokio::test(start_paused = true)]
async fn r3_7_r5_1_a_started_timeout_scope_times_out_into_its_handle() {
    let e = engine().await;
    let id = "started-timeout";
    let out = e.client().start(started_timeout, id, ()).await.unwrap();
    assert_eq!(
        out.outcome().await.unwrap(),
        Outcome::Completed("timed out".to_string())
    );
    // The activity learns of the cancel at its next heartbeat.
    assert!(journal::wait_for(id, "slow 60 cancelled", Duration::from_secs(5)).await);
}

#[tokio::test(start_paused = true)]
async fn r3_7_started_scopes_join_and_race_with_operations_of_any_value_type() {
    let e = engine().await;
    let out = e
        .client()
        .start(joined, "joined", "hello".to_string())
        .await
        .unwrap();
    assert_eq!(
        out.outcome().await.unwrap(),
        Outcome::Completed("2 hello 1 5 hello".to_string())
    );
}

#[tokio::test(start_paused = true)]
async fn r3_7_a_block_still_running_when_the_workflow_returns_is_dropped_and_its_activity_told() {
    let e = engine().await;
    let c = e.client();
    let id = "leaves-a-block";
    let out = c
        .start(leaves_a_block, id, ())
        .await
        .unwrap()
        .outcome()
        .await
        .unwrap();
    assert_eq!(out, Outcome::Completed(()));
    assert!(journal::wait_for(id, "slow 100 cancelled", Duration::from_secs(10)).await);
    let h = c.history(id).await.unwrap();
    assert!(
        h.iter().any(|e| matches!(
            &e.kind,
            EventKind::ScopeEnded { error: Some(why), .. } if why.contains("workflow closed")
        )),
        "{h:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn r3_7_describe_shows_a_handle_waiting_for_its_block() {
    let e = engine().await;
    let c = e.client();
    let id = "describe-block";
    c.start(parked_block, id, "x".to_string()).await.unwrap();
    let mut waiting = Vec::new();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        waiting = c
            .describe(id)
            .await
            .unwrap()
            .pending
            .iter()
            .map(|p| p.waiting_for.clone())
            .collect();
        if waiting.len() == 2 {
            break;
        }
    }
    assert!(
        waiting.iter().any(|w| w.contains("block of started scope")),
        "{waiting:?}"
    );
    assert!(waiting.iter().any(|w| w.contains("timer")), "{waiting:?}");
}

#[tokio::test(start_paused = true)]
async fn r3_7_a_parked_block_resumes_from_the_snapshot_in_a_new_engine() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blocks.db");
    let id = "parked-block";
    let build = || async {
        Engine::builder()
            .register(parked_block)
            .activity(note)
            .worker_id("scope-handles")
            .store(SqliteStore::open(&path).unwrap())
            .build()
            .await
            .unwrap()
    };
    let first = build().await;
    first
        .client()
        .start(parked_block, id, "word".to_string())
        .await
        .unwrap();
    // Parked: the block waits on its hour-long timer, the code on the handle.
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let d = first.client().describe(id).await.unwrap();
        if d.pending.len() == 2 {
            break;
        }
    }
    first.shutdown().await;
    drop(first);
    let second = build().await;
    let c = second.client();
    let run = c.handle(parked_block, id);
    tokio::time::sleep(Duration::from_secs(3700)).await;
    assert_eq!(
        run.outcome().await.unwrap(),
        Outcome::Completed("word after an hour".to_string())
    );
    assert_eq!(journal::count(id, "note word"), 1);
}
