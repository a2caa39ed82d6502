//! What a stuck workflow shows (issue 12.9): `describe` is never stale (an operation whose
//! result already waits in the inbox says so, and when it is applied), and `wf cancel` of a
//! stuck workflow says the cancel waits for the fault to be mended.

use std::path::Path;
use workflow_core::cli::{self, Cli};
use workflow_core::prelude::*;
use workflow_core::{EngineBuilder, SqliteStore, WorkflowFault};

#[workflow]
async fn napper(ctx: WorkflowContext, secs: u64) -> Result<u64, WorkflowError> {
    ctx.sleep(Duration::from_secs(secs)).await?;
    Ok(secs)
}

#[workflow]
async fn parent(ctx: WorkflowContext, secs: u64) -> Result<u64, WorkflowError> {
    let id = format!("{}-child", ctx.workflow_id());
    ctx.child(napper, id, secs).await
}

fn builder() -> EngineBuilder {
    Engine::builder().register(napper).register(parent)
}

/// Marks `id` as stored by other code: its next step finds a fingerprint mismatch.
fn break_fingerprint(db: &Path, id: &str) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let changed = conn
        .execute(
            "UPDATE workflows SET schema_fingerprint = 42 WHERE id = ?1",
            [id],
        )
        .unwrap();
    assert_eq!(changed, 1);
}

async fn stuck(engine: &Engine, id: &str) -> workflow_core::Description {
    for _ in 0..2000 {
        let d = engine.client().describe(id).await.unwrap();
        if d.stuck.is_some() {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{id} never got stuck");
}

#[tokio::test(start_paused = true)]
async fn describe_of_a_stuck_parent_says_its_childs_outcome_arrived_and_waits_for_the_fault() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("workflows.db");
    let engine = builder()
        .store(SqliteStore::open(&db).unwrap())
        .build()
        .await
        .unwrap();
    let client = engine.client();
    client.start(parent, "p", 60).await.unwrap();
    // Waiting for its child (whatever the macro named the state).
    for _ in 0..1000 {
        if client.describe("p").await.unwrap().pending.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let state = client.describe("p").await.unwrap().state;
    break_fingerprint(&db, "p");
    // The child completes; its outcome reaches the parent's inbox; the parent's step finds
    // the mismatch and leaves it stuck.
    let child = client.handle(napper, "p-child").outcome().await.unwrap();
    assert!(matches!(child, Outcome::Completed(60)));
    let d = stuck(&engine, "p").await;
    assert_eq!(d.state, state, "the stuck parent did not step");
    assert!(matches!(
        d.stuck,
        Some(WorkflowFault::SchemaMismatch { .. })
    ));
    assert_eq!(d.pending.len(), 1, "{d:?}");
    let waiting = &d.pending[0].waiting_for;
    assert!(
        waiting.contains("nothing: the child completed with 60")
            && waiting.contains("applied once the workflow's fault is mended"),
        "{waiting}"
    );
    // `list` says the same of a stuck workflow.
    let listed = client.list(Some(WorkflowStatus::Running)).await.unwrap();
    let p = listed.iter().find(|d| d.id == "p").unwrap();
    assert_eq!(&p.pending[0].waiting_for, waiting);
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn wf_cancel_of_a_stuck_workflow_says_the_cancel_waits_for_the_fault_to_be_mended() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("workflows.db");
    let engine = builder()
        .store(SqliteStore::open(&db).unwrap())
        .build()
        .await
        .unwrap();
    let client = engine.client();
    for id in ["healthy", "broken"] {
        client.start(napper, id, 3600).await.unwrap();
        durable_workflows::testing::until_state(&client, id, "Sleep").await;
    }
    break_fingerprint(&db, "broken");
    let cancel = |id: &str| Cli {
        db: db.to_string_lossy().into_owned(),
        json: false,
        command: cli::Command::Cancel {
            id: id.to_string(),
            reason: "no longer needed".to_string(),
        },
    };
    let out = cli::execute(cancel("healthy"), None).await.unwrap();
    assert_eq!(
        out,
        "cancel requested for `healthy` (no longer needed); the worker holding it delivers it\n"
    );
    // The first cancel makes the broken one step and find its fault.
    cli::execute(cancel("broken"), None).await.unwrap();
    stuck(&engine, "broken").await;
    let out = cli::execute(cancel("broken"), None).await.unwrap();
    assert!(
        out.starts_with("cancel was already requested for `broken`; nothing changed; but the workflow is stuck, so the cancel is not delivered until its fault is mended"),
        "{out}"
    );
    assert!(out.contains("schema fingerprint"), "{out}");
    engine.shutdown().await;
}
