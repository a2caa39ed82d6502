//! Whatever the engine accepts reads back (issue 11.3): a value nested deeper than a stored
//! value may (`json_limits::MAX_VALUE_DEPTH`) is refused where it comes in, with a typed
//! error and nothing stored, and one at the limit survives a restart.

use serde_json::{json, Value};
use std::path::Path;
use workflow_core::json_limits::MAX_VALUE_DEPTH;
use workflow_core::prelude::*;
use workflow_core::{Client, ClientError, SqliteStore, WorkflowFault};

fn nested(depth: usize) -> Value {
    (0..depth).fold(json!("core"), |inner, _| json!([inner]))
}

#[activity]
async fn echo(_ctx: ActivityContext, value: Value) -> Result<Value, ActivityError> {
    Ok(value)
}

#[activity]
async fn deep_result(_ctx: ActivityContext, depth: u64) -> Result<Value, ActivityError> {
    Ok(nested(depth as usize))
}

/// Keeps its input across a long sleep and returns it.
#[workflow]
async fn keep(ctx: WorkflowContext, input: Value) -> Result<Value, WorkflowError> {
    ctx.sleep(Duration::from_secs(3600)).await?;
    Ok(input)
}

/// Calls `echo` with a value `depth` levels deep; returns what the call gave, as text.
#[workflow]
async fn send_deep(ctx: WorkflowContext, depth: u64) -> Result<String, WorkflowError> {
    match ctx.activity(echo, nested(depth as usize)).await {
        Ok(v) => Ok(format!(
            "echoed {} levels",
            workflow_core::json_limits::value_depth(&v)
        )),
        Err(e) => Ok(format!("refused: {e}")),
    }
}

/// Gets a value `depth` levels deep from an activity.
#[workflow]
async fn receive_deep(ctx: WorkflowContext, depth: u64) -> Result<String, WorkflowError> {
    match ctx.activity(deep_result, depth).await {
        Ok(_) => Ok("received".to_string()),
        Err(e) => Ok(format!("failed: {e}")),
    }
}

/// Returns a value `depth` levels deep.
#[workflow]
async fn return_deep(_ctx: WorkflowContext, depth: u64) -> Result<Value, WorkflowError> {
    Ok(nested(depth as usize))
}

/// Holds a value `depth` levels deep in a local across a sleep.
#[workflow]
async fn hold_deep(ctx: WorkflowContext, depth: u64) -> Result<usize, WorkflowError> {
    let held: Value = nested(depth as usize);
    ctx.sleep(Duration::from_secs(60)).await?;
    Ok(workflow_core::json_limits::value_depth(&held))
}

async fn engine_on(path: &Path) -> Engine {
    Engine::builder()
        .register(keep)
        .register(send_deep)
        .register(receive_deep)
        .register(return_deep)
        .register(hold_deep)
        .activity(echo)
        .activity(deep_result)
        .store(SqliteStore::open(path).unwrap())
        .build()
        .await
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_workflow_input_deeper_than_the_limit_is_refused_at_the_door_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("workflows.db");
    let engine = engine_on(&path).await;
    let remote = Client::connect(path.to_str().unwrap()).await.unwrap();
    // 126 and 127 levels used to be accepted and to strand the workflow after a restart.
    for (client, depth) in [(engine.client(), 126), (remote.clone(), 127), (remote, 65)] {
        let id = format!("deep-{depth}");
        match client.start(keep, id.as_str(), nested(depth)).await {
            Err(ClientError::TooDeep { what, depth: d }) => {
                assert_eq!((what.as_str(), d), ("the input of workflow `keep`", depth));
            }
            other => panic!("depth {depth}: expected TooDeep, got {:?}", other.err()),
        }
        assert!(
            matches!(client.describe(&id).await, Err(ClientError::NotFound(_))),
            "nothing is stored for {id}"
        );
    }
    let err = engine
        .client()
        .start_json("keep", "deep-json", nested(200))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("nests 200 levels deep, more than the 64"),
        "{err}"
    );
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_input_at_the_limit_is_resumed_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("workflows.db");
    let engine = engine_on(&path).await;
    let input = nested(MAX_VALUE_DEPTH);
    engine
        .client()
        .start(keep, "at-limit", input.clone())
        .await
        .unwrap();
    durable_workflows::testing::until_state(&engine.client(), "at-limit", "Sleep").await;
    engine.shutdown().await;
    drop(engine);

    let engine = engine_on(&path).await;
    let outcome = engine
        .client()
        .handle(keep, "at-limit")
        .outcome()
        .await
        .unwrap();
    assert!(
        matches!(&outcome, Outcome::Completed(v) if *v == input),
        "{outcome:?}"
    );
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_activity_input_too_deep_fails_the_call_and_no_task_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("workflows.db");
    let engine = engine_on(&path).await;
    let client = engine.client();
    let run = client.start(send_deep, "send-200", 200).await.unwrap();
    match run.outcome().await.unwrap() {
        Outcome::Completed(text) => {
            assert!(text.starts_with("refused:"), "{text}");
            assert!(text.contains("the input of activity `echo`"), "{text}");
            assert!(text.contains("nests 200 levels deep"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    let history = client.history("send-200").await.unwrap();
    assert!(
        !history
            .iter()
            .any(|e| matches!(e.kind, workflow_core::EventKind::ActivityScheduled { .. })),
        "nothing was scheduled: {history:?}"
    );
    let ok = client.start(send_deep, "send-60", 60).await.unwrap();
    assert!(
        matches!(ok.outcome().await.unwrap(), Outcome::Completed(t) if t == "echoed 60 levels")
    );
    engine.shutdown().await;
    drop(engine);
    // The file opens and lists as before.
    let engine = engine_on(&path).await;
    assert_eq!(engine.client().list(None).await.unwrap().len(), 2);
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_activity_result_too_deep_fails_the_attempt_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_on(&dir.path().join("workflows.db")).await;
    let run = engine
        .client()
        .start(receive_deep, "receive", 100)
        .await
        .unwrap();
    match run.outcome().await.unwrap() {
        Outcome::Completed(text) => {
            assert!(
                text.contains("the output of activity `deep_result` cannot be stored"),
                "{text}"
            );
            assert!(text.contains("nests 100 levels deep"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_result_too_deep_fails_the_workflow_saying_why() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_on(&dir.path().join("workflows.db")).await;
    let run = engine
        .client()
        .start(return_deep, "result", 90)
        .await
        .unwrap();
    let outcome = engine.client().outcome_json("result").await.unwrap();
    let text = format!("{outcome:?}");
    assert!(text.contains("Failed"), "{text}");
    assert!(
        text.contains("the result of workflow `result` nests 90 levels deep"),
        "{text}"
    );
    drop(run);
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_state_too_deep_to_read_back_is_never_committed() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_on(&dir.path().join("workflows.db")).await;
    let client = engine.client();
    client.start(hold_deep, "held", 126).await.unwrap();
    let mut stuck = None;
    for _ in 0..1000 {
        stuck = client.describe("held").await.unwrap().stuck;
        if stuck.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    match stuck {
        Some(WorkflowFault::Engine { message }) => {
            assert!(message.contains("nests"), "{message}");
            assert!(message.contains("nothing was committed"), "{message}");
        }
        other => panic!("expected an engine fault, got {other:?}"),
    }
    let d = client.describe("held").await.unwrap();
    assert_eq!(
        (d.state.as_str(), d.version),
        ("Start", 0),
        "the start state is kept"
    );
    engine.shutdown().await;
}
