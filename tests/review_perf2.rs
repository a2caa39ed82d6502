//! Review of the second round of performance work: activity results and fired timers
//! delivered in memory to the workflow's next step, one timer queue per engine, the first
//! attempt recorded with its task, snapshots as JSON text, and compact `Instance` records.

use durable_workflows::testing::count;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use workflow_core::prelude::*;
use workflow_core::{Client, EventKind, MemoryStore, Store};

// ---------------------------------------------------------------------------------------
// In-memory results and cancels from the store's inbox
// ---------------------------------------------------------------------------------------

/// Clients by workflow id, for activities that act on their own workflow.
static CLIENTS: Mutex<BTreeMap<String, Client>> = Mutex::new(BTreeMap::new());

/// Returns "done"; a cancel of its workflow is requested right after it returned (by a task
/// that runs once this attempt is over and its result was handed to the engine), before the
/// workflow's next step.
#[activity]
async fn done_then_cancelled(ctx: ActivityContext) -> Result<String, ActivityError> {
    let id = ctx.info().workflow_id.clone();
    let client = CLIENTS.lock().unwrap().get(&id).cloned();
    if let Some(client) = client {
        tokio::spawn(async move {
            client.cancel(&id, "too late").await.unwrap();
        });
    }
    Ok("done".to_string())
}

#[workflow]
async fn awaits_done(ctx: WorkflowContext) -> Result<String, WorkflowError> {
    let r = ctx.activity(done_then_cancelled, ()).await?;
    Ok(r)
}

/// An activity that finished before the cancel was requested is a result, not a
/// cancellation: the step must apply the events in the order they arrived. The result was
/// handed to the engine in memory first, the cancel request reached the store's inbox
/// after it; the step applies every inbox event before every in-memory one, so the cancel
/// resolves the (`TryCancel`) call with a cancellation error, the finished result is
/// "ignored", the history says the cancel came first, and the workflow closes Canceled
/// instead of Completed. (With both events in the inbox, as before, it completed.)
#[tokio::test(start_paused = true)]
async fn r6_3_a_result_delivered_before_a_cancel_is_applied_before_it() {
    let engine = Engine::builder()
        .in_memory()
        .register(awaits_done)
        .activity(done_then_cancelled)
        .build()
        .await
        .unwrap();
    let client = engine.client();
    let id = "result-then-cancel";
    CLIENTS
        .lock()
        .unwrap()
        .insert(id.to_string(), client.clone());
    let run = client.start(awaits_done, id, ()).await.unwrap();
    let outcome = run.outcome().await.unwrap();
    let history = client.history(id).await.unwrap();
    let kinds: Vec<&EventKind> = history.iter().map(|e| &e.kind).collect();
    assert_eq!(
        count(&history, |k| matches!(k, EventKind::ResultIgnored { .. })),
        0,
        "the result that arrived first was ignored: {kinds:#?}"
    );
    let completed_at = kinds
        .iter()
        .position(|k| matches!(k, EventKind::ActivityCompleted { .. }));
    let cancel_at = kinds
        .iter()
        .position(|k| matches!(k, EventKind::CancelRequested { .. }));
    assert!(
        completed_at.is_some() && completed_at < cancel_at,
        "the history must show the result before the cancel: {kinds:#?}"
    );
    assert!(
        matches!(&outcome, Outcome::Completed(r) if r == "done"),
        "{outcome:?}"
    );
    engine.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// The timer queue
// ---------------------------------------------------------------------------------------

#[workflow]
async fn nap(ctx: WorkflowContext, secs: u64) -> Result<u64, WorkflowError> {
    ctx.sleep(Duration::from_secs(secs)).await?;
    Ok(secs)
}

/// `Engine` says "dropping the handles does not stop" the tasks it spawned: activities and
/// steps indeed go on, and so did each timer's own task. The timer driver holds the engine
/// only weakly, so once the handles are gone and no activity or step is running, the
/// engine is freed, its task set aborts the driver, and a sleeping workflow never wakes
/// (until a restart), while one that was running an activity goes on until its next sleep.
#[tokio::test(start_paused = true)]
async fn dropping_the_engine_handles_does_not_stop_a_sleeping_workflow() {
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::builder()
        .register(nap)
        .store_arc(store.clone())
        .build()
        .await
        .unwrap();
    let run = engine
        .client()
        .start(nap, "dropped-engine", 10)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let timers = store.running_workflows().await.unwrap()[0].timers.len();
    assert_eq!(timers, 1, "asleep");
    drop(run);
    drop(engine);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let record = store.load_workflow("dropped-engine").await.unwrap();
    assert_eq!(record.status, WorkflowStatus::Completed);
}

/// One driver sleeps until the earliest deadline: a timer armed while it sleeps for a later
/// one (another workflow's) wakes it and fires on time, two timers with the same deadline
/// both fire, and none fires before its deadline (paused clock: exact virtual times).
#[tokio::test(start_paused = true)]
async fn an_earlier_timer_armed_while_the_driver_sleeps_fires_on_time_and_none_early() {
    let engine = Engine::builder()
        .in_memory()
        .register(nap)
        .build()
        .await
        .unwrap();
    let client = engine.client();
    let t0 = tokio::time::Instant::now();
    let long = client.start(nap, "nap-100", 100).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let a = client.start(nap, "nap-5a", 5).await.unwrap();
    let b = client.start(nap, "nap-5b", 5).await.unwrap();
    let (a, b) = tokio::join!(a.outcome(), b.outcome());
    let short_done = t0.elapsed();
    assert!(a.unwrap().is_completed() && b.unwrap().is_completed());
    assert!(
        short_done >= Duration::from_secs(6) && short_done < Duration::from_secs(7),
        "the 5 s naps started at 1 s ended at {short_done:?}"
    );
    assert!(long.outcome().await.unwrap().is_completed());
    let long_done = t0.elapsed();
    assert!(
        long_done >= Duration::from_secs(100) && long_done < Duration::from_secs(101),
        "the 100 s nap ended at {long_done:?}"
    );
    engine.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Snapshots as JSON text in SQLite
// ---------------------------------------------------------------------------------------

/// A stored snapshot that is not JSON becomes a `CorruptSnapshot` on its workflow, and
/// `SqliteStore` hands it on as a string so that it hides nothing. That holds for text
/// only: the row reader takes the column as a Rust `String`, so a snapshot that is a BLOB
/// or text that is not UTF-8 (a torn write, a tool that wrote bytes) fails the row, hence
/// `running_workflows`, hence `build`: no workflow of the file runs.
#[tokio::test(start_paused = true)]
async fn a_snapshot_that_is_not_utf8_text_is_recorded_on_its_workflow_and_hides_no_other() {
    use workflow_core::{SqliteStore, WorkflowFault};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("workflows.db");
    let open = || async {
        Engine::builder()
            .register(nap)
            .store(SqliteStore::open(&path).unwrap())
            .build()
            .await
    };
    let engine = open().await.unwrap();
    for id in ["bytes-good", "bytes-blob", "bytes-latin1"] {
        engine.client().start(nap, id, 60).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    engine.shutdown().await;
    drop(engine);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE workflows SET snapshot = X'7B226D61' WHERE id = 'bytes-blob'",
        [],
    )
    .unwrap();
    conn.execute(
        "UPDATE workflows SET snapshot = CAST(X'22E922' AS TEXT) WHERE id = 'bytes-latin1'",
        [],
    )
    .unwrap();
    drop(conn);

    let engine = match open().await {
        Ok(engine) => engine,
        Err(e) => panic!("one damaged snapshot stops the whole engine: {e}"),
    };
    let good = engine.client().handle(nap, "bytes-good").outcome().await;
    assert!(matches!(good, Ok(Outcome::Completed(60))), "{good:?}");
    for id in ["bytes-blob", "bytes-latin1"] {
        // Their timers fired with the good one's; their steps may still be on their way.
        let mut d = engine.client().describe(id).await.unwrap();
        for _ in 0..200 {
            if d.stuck.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            d = engine.client().describe(id).await.unwrap();
        }
        assert_eq!(d.status, WorkflowStatus::Running, "{d}");
        assert!(
            matches!(d.stuck, Some(WorkflowFault::CorruptSnapshot { .. })),
            "{id}: {d}"
        );
    }
    engine.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Compact Instance records
// ---------------------------------------------------------------------------------------

/// Snapshots written before the compact format (every field, `null`s and empties spelled
/// out) and after it (empty and absent fields left out) decode to the same `Instance`; an
/// empty cancel reason (R1.5: a missing reason is "") is a value, not "absent", and is kept.
#[test]
fn old_and_compact_instances_decode_alike_and_an_empty_reason_is_kept() {
    use workflow_core::Instance;
    let old = serde_json::json!({
        "next_op": 3,
        "scopes": [
            {"parent": null, "kind": "Root", "cancel_requested": "", "signal": ""},
            {"parent": 0, "kind": "Cancellable", "cancel_requested": null, "signal": null}
        ],
        "ops": {},
        "cancel_reason": "",
        "unhandled_cancel": null,
        "children": {},
        "compensables": [],
        "closing": null,
        "explicit": []
    });
    let from_old: Instance = serde_json::from_value(old).unwrap();
    let compact = serde_json::to_value(&from_old).unwrap();
    assert_eq!(
        compact,
        serde_json::json!({
            "next_op": 3,
            "scopes": [
                {"kind": "Root", "cancel_requested": "", "signal": ""},
                {"parent": 0, "kind": "Cancellable"}
            ],
            "ops": {},
            "cancel_reason": ""
        })
    );
    let from_compact: Instance = serde_json::from_value(compact).unwrap();
    assert_eq!(from_compact, from_old);
}
