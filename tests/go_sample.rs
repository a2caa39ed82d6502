//! Public scenario 13: the seeds' Go sample, end to end.

use durable_workflows::{go_sample, journal};
use std::time::Duration;
use workflow_core::{EventKind, Outcome, StateKind, Workflow};

#[tokio::test(start_paused = true)]
async fn scenario_13_go_sample_cleanup_runs_once_skipped_activity_never_runs_completed() {
    let engine = go_sample::engine().await.unwrap();
    let client = engine.client();
    let id = "go-sample-13";
    let run = client
        .start(go_sample::your_workflow, id, ())
        .await
        .unwrap();
    assert!(
        journal::wait_for(
            id,
            "ActivityToBeCanceled heartbeating",
            Duration::from_secs(10)
        )
        .await
    );
    client.cancel(id, "").await.unwrap();

    let outcome = run.outcome().await.unwrap();
    assert!(matches!(outcome, Outcome::Completed(())), "{outcome:?}");

    let lines = journal::lines(id);
    assert_eq!(
        journal::count(id, "ActivityToBeCanceled received the cancel"),
        1,
        "{lines:?}"
    );
    assert_eq!(
        journal::count(id, "ActivityToBeSkipped ran"),
        0,
        "{lines:?}"
    );
    assert_eq!(journal::count(id, "CleanupActivity ran"), 1, "{lines:?}");

    let history = client.history(id).await.unwrap();
    let logs: Vec<String> = history
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Log { message } => Some(message.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(logs[0], "cancel workflow started");
    assert!(
        logs[1].starts_with("ActivityToBeCanceled returns Err(Activity"),
        "{logs:?}"
    );
    assert!(
        logs[2].starts_with("Error from ActivityToBeSkipped: Err(Cancelled"),
        "{logs:?}"
    );
    assert_eq!(logs[3], "Workflow Execution complete.");
    // The skipped activity was never scheduled; the cleanup ran in the handler.
    assert!(history.iter().any(|e| matches!(&e.kind, EventKind::OperationSkipped { what, .. } if what.contains("ActivityToBeSkipped"))));
    assert!(!history.iter().any(|e| matches!(&e.kind, EventKind::ActivityScheduled { activity, .. } if activity == "ActivityToBeSkipped")));
    let handler_at = history
        .iter()
        .position(|e| matches!(e.kind, EventKind::HandlerStarted { .. }))
        .unwrap();
    let cleanup_at = history
        .iter()
        .position(|e| matches!(&e.kind, EventKind::ActivityCompleted { activity, .. } if activity == "CleanupActivity"))
        .unwrap();
    assert!(handler_at < cleanup_at);
}

#[tokio::test(start_paused = true)]
async fn go_sample_without_cancel_never_runs_cleanup() {
    let engine = go_sample::engine().await.unwrap();
    let client = engine.client();
    let id = "go-sample-no-cancel";
    client
        .start(go_sample::your_workflow, id, ())
        .await
        .unwrap();
    assert!(
        journal::wait_for(
            id,
            "ActivityToBeCanceled heartbeating (3)",
            Duration::from_secs(10)
        )
        .await
    );
    let d = client.describe(id).await.unwrap();
    assert_eq!(d.state, "ActivityToBeCanceled");
    assert_eq!(journal::count(id, "CleanupActivity"), 0);
    client.terminate(id, "test over").await.unwrap();
}

#[test]
fn go_sample_graph_has_a_cancel_branch_into_the_handler() {
    let g = go_sample::your_workflow::graph();
    let handler = g
        .states
        .iter()
        .find(|s| s.kind == StateKind::Handler)
        .unwrap();
    assert_eq!(handler.name, "OnCancelCleanupActivity");
    // The handler's state keeps its disconnected context and how the workflow was leaving.
    assert_eq!(handler.fields, ["pending_exit", "cleanup"]);
    assert!(g
        .transitions
        .iter()
        .any(|t| t.on_cancel && t.from == "ActivityToBeSkipped" && t.to == handler.name));
}

#[test]
fn graph_renders_as_mermaid_and_dot_with_the_cancel_branch() {
    let g = go_sample::your_workflow::graph();
    let mermaid = g.to_mermaid();
    assert!(mermaid.starts_with("stateDiagram-v2\n"), "{mermaid}");
    assert!(
        mermaid.contains("    ActivityToBeSkipped --> OnCancelCleanupActivity: on cancel\n"),
        "{mermaid}"
    );
    assert!(
        mermaid.contains("    ActivityToBeCanceled --> ActivityToBeSkipped\n"),
        "{mermaid}"
    );
    let dot = g.to_dot();
    assert!(dot.contains("\"ActivityToBeSkipped\" -> \"OnCancelCleanupActivity\" [label=\"on cancel\", style=dashed];"), "{dot}");
}

/// The generated enum, checked by the compiler: this exhaustive match only compiles if
/// `YourWorkflowState` has exactly these variants with exactly these fields.
#[allow(dead_code)]
fn generated_state_enum_has_one_variant_per_suspension_point(
    state: go_sample::YourWorkflowState,
) -> String {
    use go_sample::YourWorkflowState as S;
    use workflow_core::__private::{Exit, OpId, ScopeId};
    match state {
        S::Start {} => "start".into(),
        S::ActivityToBeCanceled { op_id } => format!("{op_id}"),
        S::ActivityToBeSkipped { op_id } => format!("{op_id}"),
        S::OnCancelCleanupActivity {
            op_id,
            pending_exit,
            cleanup,
        } => {
            let _: (
                OpId,
                Exit<Result<(), workflow_core::WorkflowError>>,
                ScopeId,
            ) = (op_id, pending_exit, cleanup);
            "handler".into()
        }
        S::Finished => "finished".into(),
    }
}
